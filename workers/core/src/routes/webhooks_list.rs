//! `webhooks_list`: a provider's webhook endpoints (`POST /providers/{provider_id}/webhooks/list`),
//! oldest first, each with how many deliveries wait; never their secrets.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Callers, Context, HandlerResult, Route, body};
use crate::call::Path;
use crate::common::provider_access;
use crate::events::webhooks::{COLUMNS, Endpoint};
use crate::types::{ParseError, ProviderId, Role};

#[derive(Debug)]
pub struct Request {
    pub provider: ProviderId,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Body {}

/// The reply's data, kind `webhooks_list`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct EndpointsData {
    pub provider_id: ProviderId,
    pub endpoints: Vec<Endpoint>,
}

impl Route for Request {
    const PATH: &str = "/providers/{provider_id}/webhooks/list";
    const SUMMARY: &str = "The provider's webhook endpoints, without their secrets.";
    type Body = Body;
    type Reply = EndpointsData;
    const CALLERS: Callers = Callers::Roles(&[Role::Provider, Role::Operator]);

    fn parse(path: &Path, raw: Map<String, Value>) -> Result<Self, ParseError> {
        let _: Body = body(raw)?;
        Ok(Self {
            provider: path.provider()?,
        })
    }

    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        let client = crate::store::client(&cx.services.store).await?;
        provider_access(cx, &*client, self.provider).await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM webhook_endpoints e WHERE e.provider_id = $1 ORDER BY e.created_at, e.id"
                ),
                &[&self.provider.0],
            )
            .await?;
        let endpoints = rows
            .iter()
            .map(Endpoint::from_row)
            .collect::<Result<_, _>>()?;
        Request::reply(&EndpointsData {
            provider_id: self.provider,
            endpoints,
        })
    }
}
