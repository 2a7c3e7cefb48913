//! `me`: the caller's account (`POST /me`): who they are, their apartments and their
//! notification preferences, every event with both channels spelled out.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Callers, Context, HandlerResult, Route, body};
use crate::accounts::profile::data;
use crate::call::Path;
use crate::types::{ParseError, Role};

#[derive(Debug, Serialize, JsonSchema)]
pub struct Request {}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Body {}

impl Route for Request {
    const PATH: &str = "/me";
    const SUMMARY: &str = "The caller's own account.";
    type Body = Body;
    type Reply = crate::accounts::profile::MeData;
    const CALLERS: Callers = Callers::Roles(Role::EVERYONE);

    fn parse(_: &Path, raw: Map<String, Value>) -> Result<Self, ParseError> {
        let _: Body = body(raw)?;
        Ok(Self {})
    }

    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        let client = crate::store::client(&cx.services.store).await?;
        Self::reply(&data(&*client, cx.services, cx.caller()?.user_id).await?)
    }
}
