//! `webhook_delete`: a provider deletes one of its webhook endpoints
//! (`POST /providers/{provider_id}/webhooks/{webhook_id}/delete`), with its deliveries and their
//! attempts; the events stay in the feed.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{Callers, Context, HandlerResult, Kind, Route, body};
use crate::call::Path;
use crate::common::provider_access;
use crate::events::webhooks;
use crate::idempotency;
use crate::types::{ParseError, ProviderId, Role};

#[derive(Debug, Serialize)]
pub struct Request {
    pub provider: ProviderId,
    pub endpoint: Uuid,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Body {}

/// The reply's data, kind `webhook_delete`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DeletedEndpointData {
    pub deleted: Uuid,
    /// Deliveries that were still waiting, dropped with it.
    pub pending_dropped: i64,
}

impl Route for Request {
    const PATH: &str = "/providers/{provider_id}/webhooks/{webhook_id}/delete";
    const SUMMARY: &str = "Deletes one of the provider's webhook endpoints and its deliveries.";
    type Body = Body;
    type Reply = DeletedEndpointData;
    const CALLERS: Callers = Callers::Roles(&[Role::Provider, Role::Operator]);

    fn parse(path: &Path, raw: Map<String, Value>) -> Result<Self, ParseError> {
        let _: Body = body(raw)?;
        Ok(Self {
            provider: path.provider()?,
            endpoint: path.webhook()?,
        })
    }

    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        {
            let client = crate::store::client(&cx.services.store).await?;
            provider_access(cx, &*client, self.provider).await?;
        }
        idempotency::once(cx, Kind::WebhookDelete, self, async |tx| {
            let endpoint = webhooks::load(tx, self.provider, self.endpoint, true).await?;
            tx.execute(
                "DELETE FROM webhook_endpoints WHERE id = $1",
                &[&self.endpoint],
            )
            .await?;
            Request::reply(&DeletedEndpointData {
                deleted: self.endpoint,
                pending_dropped: endpoint.pending,
            })
        })
        .await
    }
}
