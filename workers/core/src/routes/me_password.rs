//! `me_password`: the caller changes their password, giving the current one
//! (`POST /me/password`), which is checked through the login throttle (a wrong one counts as a
//! failed login for the user's name and the caller's address). Every session ends, this one
//! included (log in again), every unused verification and reset link with it, and a security mail
//! says so.

use schemars::JsonSchema;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Callers, Context, ErrorCode, HandlerError, HandlerResult, Kind, Route, body};
use crate::accounts::{self, credentials, policy};
use crate::call::Path;
use crate::contract;
use crate::idempotency;
use crate::types::ParseError;
use crate::types::Role;

#[derive(Debug, Serialize, JsonSchema)]
pub struct Request {
    #[serde(skip)]
    pub password: SecretString,
    #[serde(skip)]
    pub new_password: SecretString,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Body {
    #[schemars(with = "contract::Password")]
    pub password: String,
    #[schemars(with = "contract::Password")]
    pub new_password: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct PasswordData {
    pub password_changed: bool,
    pub message: &'static str,
}

impl Route for Request {
    const PATH: &str = "/me/password";
    const SUMMARY: &str = "Changes the caller's password, given the current one.";
    type Body = Body;
    type Reply = PasswordData;
    const CALLERS: Callers = Callers::Roles(Role::EVERYONE);

    fn parse(_: &Path, raw: Map<String, Value>) -> Result<Self, ParseError> {
        let b: Body = body(raw)?;
        let new_password = credentials::parse_password(b.new_password)
            .map_err(|_| ParseError::new("`new_password` must be 1 to 1024 bytes"))?;
        policy::check(new_password.expose_secret(), &[])?;
        Ok(Self {
            password: credentials::parse_password(b.password)?,
            new_password,
        })
    }

    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        let user = cx.caller()?.user_id;
        if cx.services.cognito.is_some() {
            return Err(HandlerError::rejected(
                ErrorCode::Forbidden,
                "passwords are kept by the Cognito user pool; change yours there",
            ));
        }
        let (username, email) =
            accounts::check_current_password(cx.services, user, &cx.call.source, &self.password)
                .await?;
        let local = email.as_deref().and_then(|e| e.split('@').next());
        policy::check(
            self.new_password.expose_secret(),
            &[
                username.as_deref().unwrap_or_default(),
                local.unwrap_or_default(),
            ],
        )
        .map_err(|e| HandlerError::rejected(ErrorCode::InvalidRequest, e.0))?;
        let hash = credentials::hash(cx.services, &self.new_password).await?;
        let mut mail = None;
        // The fingerprint holds neither password: a repeat of this request id replays.
        let data = idempotency::once(cx, Kind::MePassword, self, async |tx| {
            mail = accounts::set_password(tx, user, &hash, "password_changed", cx.call.request_id)
                .await?;
            Request::reply(&PasswordData {
                password_changed: true,
                message: "the password is changed; every session was ended, log in again",
            })
        })
        .await?;
        cx.mail_after_commit(mail);
        Ok(data)
    }
}
