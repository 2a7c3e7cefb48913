//! `password_reset`: asks for a mail with a link to choose a new password
//! (`POST /auth/password-reset`). The link goes only to an account's verified address: an address
//! someone set without proving it is theirs never receives one. The reply is the same whether or
//! not an account has the address, and as fast (the mail goes after the reply), so it reveals
//! none; requests are throttled per source address. The same request delivered twice mails once.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{Callers, Context, HandlerResult, Route, body};
use crate::accounts::{self, Purpose};
use crate::call::Path;
use crate::contract;
use crate::notify::{self, Event};
use crate::types::{ParseError, UserId};

#[derive(Debug)]
pub struct Request {
    pub email: String,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Body {
    #[schemars(with = "contract::Email")]
    pub email: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ResetData {
    pub message: &'static str,
}

impl Route for Request {
    const PATH: &str = "/auth/password-reset";
    const SUMMARY: &str = "Asks for a password-reset token to be sent to the address; the reply is the same whether or not an account has it.";
    type Body = Body;
    type Reply = ResetData;
    const CALLERS: Callers = Callers::Anyone;

    fn parse(_: &Path, raw: Map<String, Value>) -> Result<Self, ParseError> {
        let b: Body = body(raw)?;
        Ok(Self {
            email: accounts::parse_email(&b.email)?,
        })
    }

    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        let mut client = crate::store::client(&cx.services.store).await?;
        let tx = client.transaction().await?;
        tx.execute(
            "SELECT set_config('qbill.request_id', $1, true)",
            &[&cx.call.request_id.to_string()],
        )
        .await?;
        accounts::throttle(
            &tx,
            "password_reset",
            cx.call.source.as_str(),
            cx.services.anonymous.resets_per_source,
            None,
        )
        .await?;
        cx.vouch();
        let user = tx
            .query_opt(
                "SELECT id, username FROM users WHERE email = $1 AND email_verified AND deleted_at IS NULL",
                &[&self.email],
            )
            .await?;
        let mut mail = None;
        if let Some(row) = user {
            let (user, username) = (UserId(row.get("id")), row.get::<_, String>("username"));
            // Keyed by the request: the same request again records nothing new.
            let key = format!("reset:{}", cx.call.request_id);
            let seen = tx
                .query_opt("SELECT 1 FROM notifications WHERE key = $1", &[&key])
                .await?;
            if seen.is_none() {
                let nonce = accounts::create_email_token(
                    &tx,
                    &cx.services.tokens,
                    user,
                    Purpose::PasswordReset,
                    &self.email,
                )
                .await?;
                mail = notify::record(
                    &tx,
                    user,
                    Event::PasswordReset,
                    &key,
                    &json!({ "nonce": nonce, "username": username }),
                    Some(&self.email),
                )
                .await?;
            }
        }
        tx.commit().await?;
        cx.mail_after_commit(mail);
        Request::reply(&ResetData {
            message: "if an account has this address, a mail with a link to choose a new password is on its way",
        })
    }
}
