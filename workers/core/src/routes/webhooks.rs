//! `webhooks`: a provider registers a webhook endpoint (`POST /providers/{provider_id}/webhooks`
//! {`url`, `events`}), for its own users and operators. The reply shows the endpoint's signing
//! secret (`whsec_…`); the same request again shows it again, and nothing else ever does (a
//! rotation makes a new one). From then on each event of the provider of a type the endpoint
//! wants (every type when `events` is empty) is delivered to it, signed as Standard Webhooks
//! ([`crate::events::webhooks`]), at least once.
//!
//! The URL must be `https`, without credentials, and its host must resolve to public addresses
//! only ([`crate::events::outbound`]): an endpoint on a private, loopback or link-local address,
//! or the metadata service, is refused here and at every delivery. At most
//! [`MAX_ENDPOINTS_PER_PROVIDER`] endpoints a provider.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Callers, Context, ErrorCode, HandlerError, HandlerResult, Kind, Route, body};
use crate::call::Path;
use crate::common::provider_access;
use crate::events::Type;
use crate::events::webhooks::{
    self, COLUMNS, Created, Endpoint, MAX_ENDPOINTS_PER_PROVIDER, new_secret, type_names,
};
use crate::idempotency;
use crate::types::{ParseError, ProviderId, Role};

#[derive(Debug, Serialize)]
pub struct Request {
    pub provider: ProviderId,
    pub url: String,
    pub types: Vec<Type>,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Body {
    /// Where to deliver: `https://…`, on a public address.
    #[schemars(length(min = 8, max = 2048))]
    pub url: String,
    /// The event types to deliver; empty or left out: every type.
    #[serde(default)]
    #[schemars(with = "Vec<Type>", length(max = 10))]
    pub events: Vec<String>,
}

impl Route for Request {
    const PATH: &str = "/providers/{provider_id}/webhooks";
    const SUMMARY: &str =
        "Registers a webhook endpoint for the provider's events; the reply shows its signing secret once.";
    type Body = Body;
    type Reply = Created;
    const CALLERS: Callers = Callers::Roles(&[Role::Provider, Role::Operator]);

    fn parse(path: &Path, raw: Map<String, Value>) -> Result<Self, ParseError> {
        let b: Body = body(raw)?;
        Ok(Self {
            provider: path.provider()?,
            url: b.url.trim().to_owned(),
            types: webhooks::parse_types(&b.events)?,
        })
    }

    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        {
            let client = crate::store::client(&cx.services.store).await?;
            provider_access(cx, &*client, self.provider).await?;
        }
        // The name resolved before any transaction: the sender checks it again at every delivery.
        let url = cx
            .services
            .outbound
            .check_endpoint(&self.url)
            .await
            .map_err(|e| HandlerError::rejected(ErrorCode::InvalidRequest, format!("url: {e}")))?;
        let id = cx.call.request_id.0;
        let data = idempotency::once(cx, Kind::Webhooks, self, async |tx| {
            // The provider's row locked: two registrations at once count each other.
            tx.execute(
                "SELECT 1 FROM providers WHERE id = $1 FOR NO KEY UPDATE",
                &[&self.provider.0],
            )
            .await?;
            let count: i64 = tx
                .query_one(
                    "SELECT count(*) FROM webhook_endpoints WHERE provider_id = $1",
                    &[&self.provider.0],
                )
                .await?
                .get(0);
            if count >= MAX_ENDPOINTS_PER_PROVIDER {
                return Err(HandlerError::rejected(
                    ErrorCode::Conflict,
                    format!(
                        "provider {} has {MAX_ENDPOINTS_PER_PROVIDER} webhook endpoints, the most it may have; delete one first",
                        self.provider
                    ),
                ));
            }
            let inserted = tx
                .execute(
                    "INSERT INTO webhook_endpoints (id, provider_id, url, types, secret)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
                    &[
                        &id,
                        &self.provider.0,
                        &url.as_str(),
                        &type_names(&self.types),
                        &new_secret(),
                    ],
                )
                .await?;
            if inserted == 0 {
                return Err(HandlerError::rejected(
                    ErrorCode::Conflict,
                    "this request_id was already used; use a new request_id",
                ));
            }
            let row = tx
                .query_one(
                    &format!("SELECT {COLUMNS} FROM webhook_endpoints e WHERE e.id = $1"),
                    &[&id],
                )
                .await?;
            // The reply kept for repeats holds no secret: it is read afresh below.
            serde_json::to_value(Endpoint::from_row(&row)?).map_err(HandlerError::internal)
        })
        .await?;
        let endpoint: Endpoint = serde_json::from_value(data).map_err(HandlerError::internal)?;
        let client = crate::store::client(&cx.services.store).await?;
        let secret = webhooks::secret(&*client, self.provider, endpoint.id).await?;
        Request::reply(&Created { endpoint, secret })
    }
}
