//! `webhook_rotate`: a new signing secret for one of a provider's webhook endpoints
//! (`POST /providers/{provider_id}/webhooks/{webhook_id}/rotate`), shown in the reply. The old
//! secret signs beside the new one for [`ROTATION_OVERLAP`] (each delivery carries both
//! signatures), so the receiver can switch at its pace; a second rotation within that time
//! replaces the new secret and keeps the oldest one's deadline.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{Callers, Context, HandlerError, HandlerResult, Kind, Route, body};
use crate::call::Path;
use crate::common::provider_access;
use crate::events::webhooks::{self, Created, Endpoint, ROTATION_OVERLAP, new_secret};
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

impl Route for Request {
    const PATH: &str = "/providers/{provider_id}/webhooks/{webhook_id}/rotate";
    const SUMMARY: &str =
        "Gives a webhook endpoint a new signing secret; the old one still signs for 24 hours.";
    type Body = Body;
    type Reply = Created;
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
        // The reply kept for repeats holds no secret: the current one is read after.
        let data = idempotency::once(cx, Kind::WebhookRotate, self, async |tx| {
            webhooks::load(tx, self.provider, self.endpoint, true).await?;
            tx.execute(
                "UPDATE webhook_endpoints
                 SET previous_secret = CASE WHEN previous_secret_until > now() THEN previous_secret ELSE secret END,
                     previous_secret_until = CASE WHEN previous_secret_until > now() THEN previous_secret_until
                                                  ELSE now() + make_interval(secs => $3) END,
                     secret = $2, updated_at = now()
                 WHERE id = $1",
                &[
                    &self.endpoint,
                    &new_secret(),
                    &(ROTATION_OVERLAP.num_seconds() as f64),
                ],
            )
            .await?;
            let endpoint = webhooks::load(tx, self.provider, self.endpoint, false).await?;
            serde_json::to_value(endpoint).map_err(HandlerError::internal)
        })
        .await?;
        let endpoint: Endpoint = serde_json::from_value(data).map_err(HandlerError::internal)?;
        let client = crate::store::client(&cx.services.store).await?;
        let secret = webhooks::secret(&*client, self.provider, endpoint.id).await?;
        Request::reply(&Created { endpoint, secret })
    }
}
