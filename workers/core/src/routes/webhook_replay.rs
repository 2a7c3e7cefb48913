//! `webhook_replay`: sends one of a provider's webhook endpoints its events again
//! (`POST /providers/{provider_id}/webhooks/{webhook_id}/replay` {`since`}): every kept event of
//! the provider since then, of the types the endpoint wants, as new deliveries with the events'
//! own `webhook-id`s (a receiver that has one already sees it again and drops it). Events are
//! kept 30 days; at most [`MAX_EVENTS`] a replay (the reply names the last one sent, to go on
//! from), and [`MAX_PER_HOUR`] replays an endpoint an hour. A disabled endpoint gets them once it
//! is enabled.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{Callers, Context, ErrorCode, HandlerError, HandlerResult, Kind, Route, body};
use crate::call::Path;
use crate::common::provider_access;
use crate::events::webhooks;
use crate::idempotency;
use crate::types::{ParseError, ProviderId, Role};

/// Events one replay sends at most.
pub const MAX_EVENTS: i64 = 10_000;
/// Replays an endpoint may have in an hour.
pub const MAX_PER_HOUR: i64 = 10;

#[derive(Debug, Serialize)]
pub struct Request {
    pub provider: ProviderId,
    pub endpoint: Uuid,
    pub since: DateTime<Utc>,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Body {
    /// Events from this time on (RFC 3339, such as `2026-12-01T00:00:00Z`).
    #[schemars(length(min = 10, max = 40))]
    pub since: String,
}

/// The reply's data, kind `webhook_replay`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct ReplayData {
    pub endpoint_id: Uuid,
    pub since: DateTime<Utc>,
    /// Deliveries made.
    pub events: i64,
    /// The first and the last event sent again.
    pub first_event_id: Option<i64>,
    pub last_event_id: Option<i64>,
    /// Whether more events than [`MAX_EVENTS`] were there: replay again from after the last one's
    /// time.
    pub truncated: bool,
    /// Whether the endpoint is enabled (a disabled one gets them once enabled).
    pub enabled: bool,
}

impl Route for Request {
    const PATH: &str = "/providers/{provider_id}/webhooks/{webhook_id}/replay";
    const SUMMARY: &str =
        "Sends a webhook endpoint the provider's kept events again, from a time on.";
    type Body = Body;
    type Reply = ReplayData;
    const CALLERS: Callers = Callers::Roles(&[Role::Provider, Role::Operator]);

    fn parse(path: &Path, raw: Map<String, Value>) -> Result<Self, ParseError> {
        let b: Body = body(raw)?;
        let since = DateTime::parse_from_rfc3339(b.since.trim())
            .map_err(|_| {
                ParseError::new(format!(
                    "`since` must be a time such as 2026-12-01T00:00:00Z, not {:?}",
                    b.since
                ))
            })?
            .with_timezone(&Utc);
        Ok(Self {
            provider: path.provider()?,
            endpoint: path.webhook()?,
            since,
        })
    }

    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        {
            let client = crate::store::client(&cx.services.store).await?;
            provider_access(cx, &*client, self.provider).await?;
        }
        if self.since > Utc::now() {
            return Err(HandlerError::rejected(
                ErrorCode::InvalidRequest,
                "`since` is in the future",
            ));
        }
        let user = cx.caller()?.user_id;
        idempotency::once(cx, Kind::WebhookReplay, self, async |tx| {
            // The endpoint locked: two replays at once count each other.
            let endpoint = webhooks::load(tx, self.provider, self.endpoint, true).await?;
            let recent: i64 = tx
                .query_one(
                    "SELECT count(*) FROM webhook_replays WHERE endpoint_id = $1 AND at > now() - interval '1 hour'",
                    &[&self.endpoint],
                )
                .await?
                .get(0);
            if recent >= MAX_PER_HOUR {
                return Err(HandlerError::rejected(
                    ErrorCode::Conflict,
                    format!("endpoint {} was replayed {MAX_PER_HOUR} times in the last hour, the most it may be; try again later", self.endpoint),
                ));
            }
            let row = tx
                .query_one(
                    "WITH chosen AS (
                         SELECT ev.id FROM events ev
                         WHERE ev.provider_id = $2 AND ev.occurred_at >= $3
                           AND (cardinality($4::text[]) = 0 OR ev.type = ANY ($4))
                         ORDER BY ev.id LIMIT $5::bigint + 1),
                     made AS (
                         INSERT INTO webhook_deliveries (endpoint_id, event_id, replay)
                         SELECT $1, id, true FROM chosen ORDER BY id LIMIT $5::bigint
                         RETURNING event_id)
                     SELECT count(*), min(event_id), max(event_id), (SELECT count(*) FROM chosen) > $5::bigint FROM made",
                    &[
                        &self.endpoint,
                        &self.provider.0,
                        &self.since,
                        &webhooks::type_names(&endpoint.types),
                        &MAX_EVENTS,
                    ],
                )
                .await?;
            let events: i64 = row.get(0);
            tx.execute(
                "INSERT INTO webhook_replays (endpoint_id, since, events, requested_by) VALUES ($1, $2, $3, $4)",
                &[&self.endpoint, &self.since, &(events as i32), &user.0],
            )
            .await?;
            Request::reply(&ReplayData {
                endpoint_id: self.endpoint,
                since: self.since,
                events,
                first_event_id: row.get(1),
                last_event_id: row.get(2),
                truncated: row.get(3),
                enabled: endpoint.enabled,
            })
        })
        .await
    }
}
