//! `webhook_deliveries`: what was sent to one of a provider's webhook endpoints
//! (`POST /providers/{provider_id}/webhooks/{webhook_id}/deliveries` {`status`?, `before_id`?}),
//! newest first, [`PAGE`] at a time: each delivery's event, status and next attempt, and its
//! attempts (when, the endpoint's status code or why there was none, how long it took).

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{Callers, Context, HandlerResult, Route, body};
use crate::call::Path;
use crate::common::provider_access;
use crate::events::{Type, webhooks};
use crate::types::{ParseError, ProviderId, Role};

/// Deliveries a page.
pub const PAGE: i64 = 50;
/// The last attempts shown for each delivery.
pub const ATTEMPTS_SHOWN: i64 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Sending,
    Delivered,
    Failed,
}

#[derive(Debug)]
pub struct Request {
    pub provider: ProviderId,
    pub endpoint: Uuid,
    pub status: Option<Status>,
    pub before_id: Option<i64>,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Body {
    /// Only deliveries in this status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Status")]
    pub status: Option<Status>,
    /// The next page: deliveries older than this one (the last of the page before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub before_id: Option<i64>,
}

/// One attempt.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Attempt {
    pub at: DateTime<Utc>,
    /// The endpoint's HTTP status, when it answered.
    pub status_code: Option<i32>,
    /// Why it did not count: the status and the start of the answer, or why there was none.
    pub error: Option<String>,
    pub duration_ms: i32,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Delivery {
    pub id: i64,
    pub event_id: i64,
    pub event_type: Type,
    pub status: Status,
    /// A delivery a replay made.
    pub replay: bool,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// The last attempts, newest first.
    pub last_attempts: Vec<Attempt>,
}

/// The reply's data, kind `webhook_deliveries`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DeliveriesData {
    pub endpoint_id: Uuid,
    pub deliveries: Vec<Delivery>,
    /// The `before_id` of the next page, when there is one.
    pub next_before_id: Option<i64>,
}

impl Route for Request {
    const PATH: &str = "/providers/{provider_id}/webhooks/{webhook_id}/deliveries";
    const SUMMARY: &str =
        "What was sent to a webhook endpoint: each delivery's status and its attempts, newest first.";
    type Body = Body;
    type Reply = DeliveriesData;
    const CALLERS: Callers = Callers::Roles(&[Role::Provider, Role::Operator]);

    fn parse(path: &Path, raw: Map<String, Value>) -> Result<Self, ParseError> {
        let b: Body = body(raw)?;
        if b.before_id.is_some_and(|id| id < 1) {
            return Err(ParseError::new("`before_id` must be a positive whole number"));
        }
        Ok(Self {
            provider: path.provider()?,
            endpoint: path.webhook()?,
            status: b.status,
            before_id: b.before_id,
        })
    }

    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        let client = crate::store::client(&cx.services.store).await?;
        provider_access(cx, &*client, self.provider).await?;
        webhooks::load(&*client, self.provider, self.endpoint, false).await?;
        let status = self
            .status
            .map(|s| serde_json::to_value(s).expect("a status serialises"))
            .and_then(|v| v.as_str().map(str::to_owned));
        let rows = client
            .query(
                "SELECT d.id, d.event_id, ev.type, d.status, d.replay, d.attempts, d.created_at,
                        d.next_attempt_at, d.delivered_at,
                        coalesce((SELECT jsonb_agg(jsonb_build_object('at', a.at, 'status_code', a.status_code,
                                                                      'error', a.error, 'duration_ms', a.duration_ms)
                                                   ORDER BY a.at DESC)
                                  FROM (SELECT * FROM webhook_attempts WHERE delivery_id = d.id
                                        ORDER BY at DESC LIMIT $5) a), '[]') AS last_attempts
                 FROM webhook_deliveries d JOIN events ev ON ev.id = d.event_id
                 WHERE d.endpoint_id = $1 AND ($2::text IS NULL OR d.status = $2)
                   AND ($3::bigint IS NULL OR d.id < $3)
                 ORDER BY d.id DESC LIMIT $4",
                &[
                    &self.endpoint,
                    &status,
                    &self.before_id,
                    &(PAGE + 1),
                    &ATTEMPTS_SHOWN,
                ],
            )
            .await?;
        let mut deliveries = rows
            .iter()
            .map(|r| {
                let read = |name: &str| -> Result<Value, anyhow::Error> {
                    Ok(Value::String(r.try_get::<_, String>(name)?))
                };
                Ok(Delivery {
                    id: r.try_get("id")?,
                    event_id: r.try_get("event_id")?,
                    event_type: serde_json::from_value(read("type")?)?,
                    status: serde_json::from_value(read("status")?)?,
                    replay: r.try_get("replay")?,
                    attempts: r.try_get("attempts")?,
                    created_at: r.try_get("created_at")?,
                    next_attempt_at: r.try_get("next_attempt_at")?,
                    delivered_at: r.try_get("delivered_at")?,
                    last_attempts: serde_json::from_value(r.try_get("last_attempts")?)?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()
            .map_err(super::HandlerError::internal)?;
        let next_before_id = if deliveries.len() as i64 > PAGE {
            deliveries.truncate(PAGE as usize);
            deliveries.last().map(|d| d.id)
        } else {
            None
        };
        Request::reply(&DeliveriesData {
            endpoint_id: self.endpoint,
            deliveries,
            next_before_id,
        })
    }
}
