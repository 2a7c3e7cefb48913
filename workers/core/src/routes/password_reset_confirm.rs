//! `password_reset_confirm`: the token of a reset mail sets a new password
//! (`POST /auth/password-reset/confirm`). Every session of the account ends (access tokens issued
//! before are refused from the next request on, refresh tokens are revoked), and a security mail
//! says so.

use schemars::JsonSchema;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Callers, Context, ErrorCode, HandlerError, HandlerResult, Kind, Route, body};
use crate::accounts::credentials::{bad_token, parse_token};
use crate::accounts::{self, Purpose, credentials, policy};
use crate::call::Path;
use crate::contract;
use crate::idempotency;
use crate::types::{ParseError, hex};

#[derive(Debug)]
pub struct Request {
    pub token: SecretString,
    pub new_password: SecretString,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Body {
    #[schemars(with = "contract::IssuedToken")]
    pub token: String,
    #[schemars(with = "contract::Password")]
    pub new_password: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ResetDoneData {
    pub password_reset: bool,
    pub message: &'static str,
}

impl Route for Request {
    const PATH: &str = "/auth/password-reset/confirm";
    const SUMMARY: &str = "Sets a new password with the reset token sent by email.";
    type Body = Body;
    type Reply = ResetDoneData;
    const CALLERS: Callers = Callers::Anyone;

    fn parse(_: &Path, raw: Map<String, Value>) -> Result<Self, ParseError> {
        let b: Body = body(raw)?;
        let new_password = credentials::parse_password(b.new_password)
            .map_err(|_| ParseError::new("`new_password` must be 1 to 1024 bytes"))?;
        Ok(Self {
            token: parse_token(b.token)?,
            new_password,
        })
    }

    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        let token = accounts::find_email_token(
            &*crate::store::client(&cx.services.store).await?,
            self.token.expose_secret(),
            Purpose::PasswordReset,
        )
        .await?
        .ok_or_else(|| bad_token("password reset"))?;
        // A token that was mailed: the reply may make the queue, so the refusal of a weak password
        // (judged here, not when the body is read) reaches the page the mail's link opened.
        cx.vouch();
        policy::check(self.new_password.expose_secret(), &[])
            .map_err(|e| HandlerError::rejected(ErrorCode::InvalidRequest, e.0))?;
        let hash = credentials::hash(cx.services, &self.new_password).await?;
        let fingerprint = hex(&token.hash);
        let mut mail = None;
        let data = idempotency::once_as(
            cx,
            token.user,
            Kind::PasswordResetConfirm,
            &fingerprint,
            async |tx| {
                if !accounts::use_email_token(tx, &token.hash).await? {
                    return Err(bad_token("password reset"));
                }
                // Good only for the address it was mailed to, while that is the account's
                // verified address.
                let username: Option<String> = tx
                    .query_opt(
                        "SELECT username FROM users
                         WHERE id = $1 AND deleted_at IS NULL AND email = $2 AND email_verified
                         FOR UPDATE",
                        &[&token.user.0, &token.email],
                    )
                    .await?
                    .and_then(|r| r.get(0));
                let Some(username) = username else {
                    return Err(bad_token("password reset"));
                };
                let local = token.email.split('@').next().unwrap_or_default();
                policy::check(self.new_password.expose_secret(), &[&username, local])
                    .map_err(|e| HandlerError::rejected(ErrorCode::InvalidRequest, e.0))?;
                mail = accounts::set_password(
                    tx,
                    token.user,
                    &hash,
                    "password_reset",
                    cx.call.request_id,
                )
                .await?;
                Request::reply(&ResetDoneData {
                    password_reset: true,
                    message: "the password is set; every session was ended, log in again",
                })
            },
        )
        .await?;
        cx.mail_after_commit(mail);
        Ok(data)
    }
}
