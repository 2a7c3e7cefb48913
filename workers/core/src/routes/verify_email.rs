//! `verify_email`: the token of a verification mail marks its address verified
//! (`POST /auth/verify-email`). Tokens are single use and expire after
//! [`crate::accounts::EMAIL_TOKEN_TTL`]; a token for an address the account no longer has does
//! nothing.

use schemars::JsonSchema;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Callers, Context, ErrorCode, HandlerError, HandlerResult, Kind, Route, body};
use crate::accounts::credentials::{bad_token, parse_token};
use crate::accounts::{self, Purpose};
use crate::call::Path;
use crate::contract;
use crate::idempotency;
use crate::types::{ParseError, UserId, hex};

#[derive(Debug)]
pub struct Request {
    pub token: SecretString,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Body {
    #[schemars(with = "contract::IssuedToken")]
    pub token: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct VerifiedData {
    pub user_id: UserId,
    pub email: String,
    pub email_verified: bool,
}

impl Route for Request {
    const PATH: &str = "/auth/verify-email";
    const SUMMARY: &str = "Confirms an email address with the token sent to it.";
    type Body = Body;
    type Reply = VerifiedData;
    const CALLERS: Callers = Callers::Anyone;

    fn parse(_: &Path, raw: Map<String, Value>) -> Result<Self, ParseError> {
        let b: Body = body(raw)?;
        Ok(Self {
            token: parse_token(b.token)?,
        })
    }

    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        let token = accounts::find_email_token(
            &*crate::store::client(&cx.services.store).await?,
            self.token.expose_secret(),
            Purpose::VerifyEmail,
        )
        .await?
        .ok_or_else(|| bad_token("verification"))?;
        // A token that was mailed (used or not): the reply may make the queue.
        cx.vouch();
        let fingerprint = hex(&token.hash);
        idempotency::once_as(cx, token.user, Kind::VerifyEmail, &fingerprint, async |tx| {
            if !accounts::use_email_token(tx, &token.hash).await? {
                return Err(bad_token("verification"));
            }
            let verified = tx
                .execute(
                    "UPDATE users SET email_verified = true WHERE id = $1 AND email = $2 AND deleted_at IS NULL",
                    &[&token.user.0, &token.email],
                )
                .await
                .map_err(|e| {
                    // An address counts as taken once verified: another account verified it first.
                    if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
                        HandlerError::rejected(
                            ErrorCode::Conflict,
                            "this address was verified by another account; choose another",
                        )
                    } else {
                        e.into()
                    }
                })?;
            if verified == 0 {
                return Err(HandlerError::rejected(
                    ErrorCode::Conflict,
                    "this address is no longer the account's; verify the account's current address",
                ));
            }
            Request::reply(&VerifiedData {
                user_id: token.user,
                email: token.email.clone(),
                email_verified: true,
            })
        })
        .await
    }
}
