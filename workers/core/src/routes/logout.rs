//! `logout`: ends the session of a refresh token (`POST /auth/logout`): every token of its family
//! is revoked. Access tokens already issued stay valid until they expire, which is soon. The reply
//! is the same for a token that is unknown or ended already.

use schemars::JsonSchema;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Callers, Context, HandlerResult, Route, body};
use crate::accounts;
use crate::accounts::credentials::parse_refresh_token;
use crate::call::Path;
use crate::contract;
use crate::types::ParseError;

#[derive(Debug)]
pub struct Request {
    pub refresh_token: SecretString,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Body {
    #[schemars(with = "contract::IssuedToken")]
    pub refresh_token: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct LogoutData {
    pub logged_out: bool,
}

impl Route for Request {
    const PATH: &str = "/auth/logout";
    const SUMMARY: &str = "Ends the session of a refresh token, which can no longer be exchanged.";
    type Body = Body;
    type Reply = LogoutData;
    const CALLERS: Callers = Callers::Anyone;

    fn parse(_: &Path, raw: Map<String, Value>) -> Result<Self, ParseError> {
        let b: Body = body(raw)?;
        Ok(Self {
            refresh_token: parse_refresh_token(b.refresh_token)?,
        })
    }

    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        let hash = accounts::sha256(self.refresh_token.expose_secret());
        let client = crate::store::client(&cx.services.store).await?;
        let known = client
            .query_opt(
                "WITH family AS (SELECT family FROM refresh_tokens WHERE hash = $1),
                      revoked AS (UPDATE refresh_tokens SET revoked_at = now()
                                  WHERE family = (SELECT family FROM family) AND revoked_at IS NULL)
                 SELECT 1 FROM family",
                &[&hash],
            )
            .await?;
        // The reply is the same either way; it makes the queue only for a token that was issued.
        if known.is_some() {
            cx.vouch();
        }
        Request::reply(&LogoutData { logged_out: true })
    }
}
