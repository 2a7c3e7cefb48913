//! `user`: an operator adds a user of any role (`POST /users`). A provider's user names the
//! provider it acts for; a taken username is `conflict`.

use schemars::JsonSchema;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Callers, Context, ErrorCode, HandlerError, HandlerResult, Kind, Route, body};
use crate::accounts::credentials::{hash, insert, parse_new_password, parse_new_username};
use crate::call::Path;
use crate::contract;
use crate::idempotency;
use crate::types::{ParseError, ProviderId, Role, UserId};

#[derive(Debug, Serialize, JsonSchema)]
pub struct Request {
    pub username: String,
    #[serde(skip)]
    pub password: SecretString,
    pub role: Role,
    pub provider_id: Option<ProviderId>,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Body {
    #[schemars(with = "contract::NewUsername")]
    pub username: String,
    #[schemars(with = "contract::NewPassword")]
    pub password: String,
    #[schemars(extend("enum" = ["household", "provider", "operator"]))]
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub provider_id: Option<i64>,
}

/// The reply's data, kind `user`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct UserData {
    pub id: UserId,
    pub username: String,
    pub role: Role,
    pub provider_id: Option<ProviderId>,
}

impl Route for Request {
    const PATH: &str = "/users";
    const SUMMARY: &str = "Adds a user of any role.";
    type Body = Body;
    type Reply = UserData;
    const CALLERS: Callers = Callers::Roles(&[Role::Operator]);

    fn parse(_: &Path, raw: Map<String, Value>) -> Result<Self, ParseError> {
        let b: Body = body(raw)?;
        let role = Role::parse(&b.role)?;
        let provider_id = b
            .provider_id
            .map(|id| ProviderId::from_body("provider_id", id))
            .transpose()?;
        if (role == Role::Provider) != provider_id.is_some() {
            return Err(ParseError::new(
                "`provider_id` is required for the provider role, and only for it",
            ));
        }
        Ok(Self {
            username: parse_new_username(&b.username)?,
            password: parse_new_password(b.password)?,
            role,
            provider_id,
        })
    }

    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        // The slow hash first, holding no connection.
        let hash = hash(cx.services, &self.password).await?;
        idempotency::once(cx, Kind::User, self, async |tx| {
            if let Some(provider) = self.provider_id {
                let exists = tx
                    .query_opt("SELECT 1 FROM providers WHERE id = $1", &[&provider.0])
                    .await?;
                if exists.is_none() {
                    return Err(HandlerError::rejected(
                        ErrorCode::NotFound,
                        format!("provider {provider} does not exist"),
                    ));
                }
            }
            let id = insert(tx, &self.username, &hash, self.role, self.provider_id).await?;
            let data = Request::reply(&UserData {
                id,
                username: self.username.clone(),
                role: self.role,
                provider_id: self.provider_id,
            })?;
            Ok(data)
        })
        .await
    }
}
