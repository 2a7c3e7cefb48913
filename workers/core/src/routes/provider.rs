//! `provider`: an operator adds a provider and its first API user (`POST /providers`), in one
//! transaction. A taken name or username is `conflict`.

use schemars::JsonSchema;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio_postgres::error::SqlState;

use super::{Callers, Context, ErrorCode, HandlerError, HandlerResult, Kind, Route, body};
use crate::accounts::credentials::{hash, insert, parse_new_password, parse_new_username};
use crate::call::Path;
use crate::common::text;
use crate::contract;
use crate::idempotency;
use crate::types::{Currency, ParseError, ProviderId, Role};

/// The longest provider name.
pub const MAX_NAME_CHARS: usize = 100;

#[derive(Debug, Serialize, JsonSchema)]
pub struct Request {
    pub name: String,
    pub currency: Currency,
    pub username: String,
    #[serde(skip)]
    pub password: SecretString,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Body {
    #[schemars(length(min = 1, max = 100))]
    pub name: String,
    #[schemars(with = "contract::Currency")]
    pub currency: String,
    #[schemars(with = "contract::NewUsername")]
    pub username: String,
    #[schemars(with = "contract::NewPassword")]
    pub password: String,
}

/// The reply's data, kind `provider`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ProviderData {
    pub provider_id: ProviderId,
    pub name: String,
    pub currency: Currency,
    pub username: String,
}

impl Route for Request {
    const PATH: &str = "/providers";
    const SUMMARY: &str = "Adds a provider and its first user.";
    type Body = Body;
    type Reply = ProviderData;
    const CALLERS: Callers = Callers::Roles(&[Role::Operator]);

    fn parse(_: &Path, raw: Map<String, Value>) -> Result<Self, ParseError> {
        let b: Body = body(raw)?;
        Ok(Self {
            name: text("name", &b.name, MAX_NAME_CHARS)?,
            currency: Currency::parse(&b.currency)?,
            username: parse_new_username(&b.username)?,
            password: parse_new_password(b.password)?,
        })
    }

    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        let hash = hash(cx.services, &self.password).await?;
        idempotency::once(cx, Kind::Provider, self, async |tx| {
            let inserted = tx
                .query_one(
                    "INSERT INTO providers (name, currency) VALUES ($1, $2) RETURNING id",
                    &[&self.name, &self.currency.as_str()],
                )
                .await;
            let provider = match inserted {
                Ok(row) => ProviderId(row.get(0)),
                Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                    return Err(HandlerError::rejected(
                        ErrorCode::Conflict,
                        format!("a provider named {:?} exists already", self.name),
                    ));
                }
                Err(e) => return Err(e.into()),
            };
            insert(tx, &self.username, &hash, Role::Provider, Some(provider)).await?;
            let data = Request::reply(&ProviderData {
                provider_id: provider,
                name: self.name.clone(),
                currency: self.currency,
                username: self.username.clone(),
            })?;
            Ok(data)
        })
        .await
    }
}
