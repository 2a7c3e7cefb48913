//! `email_undo`: the link of the security mail that told an account's verified address of a
//! change puts that address back (`POST /auth/email-undo`), for [`crate::accounts::EMAIL_UNDO_TTL`]
//! (7 days). It is the owner's way back from a change someone else made: the address becomes the
//! account's again, verified, every session ends (whoever changed it is signed out) and every
//! unused verification and reset link ends, so a reset can then go only to this address.
//! Single use; a password change or another address change does not end it.

use schemars::JsonSchema;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio_postgres::error::SqlState;

use super::{Callers, Context, ErrorCode, HandlerError, HandlerResult, Kind, Route, body};
use crate::accounts::credentials::{bad_token, parse_token};
use crate::accounts::{self, Purpose};
use crate::call::Path;
use crate::contract;
use crate::idempotency;
use crate::notify::{self, Event};
use crate::types::{ParseError, hex};

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
pub struct UndoneData {
    pub email: String,
    pub email_verified: bool,
    pub message: &'static str,
}

impl Route for Request {
    const PATH: &str = "/auth/email-undo";
    const SUMMARY: &str =
        "Puts back the verified address a change replaced, with the link mailed to it.";
    type Body = Body;
    type Reply = UndoneData;
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
            Purpose::EmailUndo,
        )
        .await?
        .ok_or_else(|| bad_token("address"))?;
        // A token that was mailed: the reply may make the queue.
        cx.vouch();
        let fingerprint = hex(&token.hash);
        let mut mail = None;
        let data = idempotency::once_as(cx, token.user, Kind::EmailUndo, &fingerprint, async |tx| {
            if !accounts::use_email_token(tx, &token.hash).await? {
                return Err(bad_token("address"));
            }
            let restored = tx
                .execute(
                    "UPDATE users SET email = $2, email_verified = true
                     WHERE id = $1 AND deleted_at IS NULL",
                    &[&token.user.0, &token.email],
                )
                .await
                .map_err(|e| {
                    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                        HandlerError::rejected(
                            ErrorCode::Conflict,
                            "this address was verified by another account since; contact support",
                        )
                    } else {
                        e.into()
                    }
                })?;
            if restored == 0 {
                return Err(bad_token("address"));
            }
            accounts::end_sessions(tx, token.user).await?;
            accounts::end_links(tx, token.user).await?;
            mail = notify::record(
                tx,
                token.user,
                Event::AccountSecurity,
                &format!("security:{}", cx.call.request_id),
                &notify::security("email_restored"),
                Some(&token.email),
            )
            .await?;
            Request::reply(&UndoneData {
                email: token.email.clone(),
                email_verified: true,
                message: "the address is the account's again; every session was ended. If someone else changed it, reset your password now",
            })
        })
        .await?;
        cx.mail_after_commit(mail);
        Ok(data)
    }
}
