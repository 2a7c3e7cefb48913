//! `webhook`: changes one of a provider's webhook endpoints
//! (`POST /providers/{provider_id}/webhooks/{webhook_id}` {`url`?, `events`?, `enabled`?}) and
//! shows it; an empty body only shows it. A new URL is checked as a new endpoint's is. Enabling an
//! endpoint that was disabled sends what waits for it again from now on (what it missed while
//! disabled is replayed with `webhook_replay`); disabling it holds its deliveries.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{Callers, Context, ErrorCode, HandlerError, HandlerResult, Kind, Route, body};
use crate::call::Path;
use crate::common::provider_access;
use crate::events::Type;
use crate::events::webhooks::{self, Endpoint, type_names};
use crate::idempotency;
use crate::types::{ParseError, ProviderId, Role};

#[derive(Debug, Serialize)]
pub struct Request {
    pub provider: ProviderId,
    pub endpoint: Uuid,
    pub url: Option<String>,
    pub types: Option<Vec<Type>>,
    pub enabled: Option<bool>,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Body {
    /// A new URL, checked as a new endpoint's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 8, max = 2048))]
    pub url: Option<String>,
    /// The event types to deliver from now on; empty: every type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Vec<Type>", length(max = 10))]
    pub events: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

impl Route for Request {
    const PATH: &str = "/providers/{provider_id}/webhooks/{webhook_id}";
    const SUMMARY: &str =
        "Shows one of the provider's webhook endpoints, or changes its URL, event types or whether it is enabled.";
    type Body = Body;
    type Reply = Endpoint;
    const CALLERS: Callers = Callers::Roles(&[Role::Provider, Role::Operator]);

    fn parse(path: &Path, raw: Map<String, Value>) -> Result<Self, ParseError> {
        let b: Body = body(raw)?;
        Ok(Self {
            provider: path.provider()?,
            endpoint: path.webhook()?,
            url: b.url.map(|u| u.trim().to_owned()),
            types: b
                .events
                .as_deref()
                .map(webhooks::parse_types)
                .transpose()?,
            enabled: b.enabled,
        })
    }

    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        let client = crate::store::client(&cx.services.store).await?;
        provider_access(cx, &*client, self.provider).await?;
        if self.url.is_none() && self.types.is_none() && self.enabled.is_none() {
            let endpoint = webhooks::load(&*client, self.provider, self.endpoint, false).await?;
            return Request::reply(&endpoint);
        }
        drop(client);
        let url = match &self.url {
            Some(raw) => Some(
                cx.services
                    .outbound
                    .check_endpoint(raw)
                    .await
                    .map_err(|e| {
                        HandlerError::rejected(ErrorCode::InvalidRequest, format!("url: {e}"))
                    })?
                    .to_string(),
            ),
            None => None,
        };
        idempotency::once(cx, Kind::Webhook, self, async |tx| {
            webhooks::load(tx, self.provider, self.endpoint, true).await?;
            tx.execute(
                "UPDATE webhook_endpoints SET url = coalesce($2, url), types = coalesce($3, types),
                     enabled = coalesce($4, enabled), updated_at = now(),
                     disabled_reason = CASE WHEN coalesce($4, enabled) THEN NULL
                                            WHEN $4 = false THEN 'disabled by its provider'
                                            ELSE disabled_reason END
                 WHERE id = $1",
                &[
                    &self.endpoint,
                    &url,
                    &self.types.as_deref().map(type_names),
                    &self.enabled,
                ],
            )
            .await?;
            let endpoint = webhooks::load(tx, self.provider, self.endpoint, false).await?;
            Request::reply(&endpoint)
        })
        .await
    }
}
