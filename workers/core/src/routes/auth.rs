//! `auth`: checks a username and password and issues a token bound to the client's reply queue,
//! with the apartments the user owns, and a refresh token that starts a new session (see the
//! `refresh` route). Attempts go through the login [`throttle`] first.

use schemars::JsonSchema;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::{Callers, Context, ErrorCode, HandlerError, HandlerResult, Route, body};
use crate::accounts::credentials::{parse_password, parse_username};
use crate::accounts::sign_in::{row_holder, signed_in};
use crate::accounts::throttle;
use crate::call::Path;
use crate::contract;
use crate::types::ParseError;

#[derive(Debug)]
pub struct Request {
    /// Trimmed and in lower case.
    pub username: String,
    pub password: SecretString,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Body {
    #[schemars(with = "contract::Username")]
    pub username: String,
    #[schemars(with = "contract::Password")]
    pub password: String,
}

impl Route for Request {
    const PATH: &str = "/auth";
    const SUMMARY: &str = "Log in; the reply carries a token bound to this queue_name.";
    type Body = Body;
    type Reply = crate::accounts::sign_in::AuthData;
    const CALLERS: Callers = Callers::Anyone;

    fn parse(
        _: &Path,
        raw: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self, ParseError> {
        let b: Body = body(raw)?;
        Ok(Self {
            username: parse_username(&b.username)?,
            password: parse_password(b.password)?,
        })
    }

    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        run(cx, &self.username, &self.password).await
    }
}

async fn run(cx: &Context<'_>, username: &str, password: &SecretString) -> HandlerResult {
    let (services, call) = (cx.services, cx.call);
    // Leave to check the password (or a refusal while a throttle limit holds), and the user's row.
    let throttle::Granted { lease, user } =
        throttle::reserve(services, username, &call.source).await?;
    // This attempt now counts in the throttle's limits, which bound the queues it can make.
    cx.vouch();
    // A user without a password here (a Cognito pool's, `c-…`) cannot log in with one: its hash
    // is absent, and the check below runs against a dummy hash like an unknown user's.
    let (user, hash) = match user {
        Some(row) => match row.get::<_, Option<String>>(1) {
            Some(hash) => (Some(row_holder(&row, username)?), Some(hash)),
            None => (None, None),
        },
        None => (None, None),
    };
    // No connection is held during the deliberately slow check.
    let verified = services.passwords.verify(password.clone(), hash).await?;
    let user = user.filter(|_| verified);
    throttle::settle(
        &*crate::store::client(&services.store).await?,
        lease,
        user.is_some(),
    )
    .await?;
    let Some((holder, apartments_version)) = user else {
        return Err(HandlerError::rejected(
            ErrorCode::Unauthorized,
            "invalid username or password",
        ));
    };
    let refresh = crate::accounts::issue_refresh(
        &*crate::store::client(&services.store).await?,
        holder.user_id,
        holder.epoch,
        None,
        crate::accounts::random_token(),
    )
    .await?;
    Request::reply(&signed_in(services, call, &holder, apartments_version, refresh).await?)
}
