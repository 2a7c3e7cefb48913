//! `signup`: anyone opens a household account (`POST /auth/signup`) with a username, an email
//! address and a password (see [`crate::accounts::policy`]), and gets a verification mail.
//!
//! Signup reveals no email address: an address already in use gets the same reply, the new
//! account is opened without it, and the mail goes to the address's owner instead, saying someone
//! tried. A taken username is `conflict`. Signups are throttled per source address and in all
//! ([`crate::config::AnonymousLimits`]).

use schemars::JsonSchema;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio_postgres::error::SqlState;

use super::{Callers, Context, ErrorCode, HandlerError, HandlerResult, Kind, Route, body};
use crate::accounts::{self, Purpose, credentials, policy};
use crate::call::Path;
use crate::contract;
use crate::idempotency::{self, Claim};
use crate::notify::{self, Event};
use crate::types::{ParseError, UserId};

#[derive(Debug, Serialize, JsonSchema)]
pub struct Request {
    pub username: String,
    pub email: String,
    #[serde(skip)]
    pub password: SecretString,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Body {
    #[schemars(with = "contract::Username")]
    pub username: String,
    #[schemars(with = "contract::Email")]
    pub email: String,
    #[schemars(with = "contract::Password")]
    pub password: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SignupData {
    pub user: NewUser,
    /// Always `sent`: whether the address was free is not told.
    pub email_verification: &'static str,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct NewUser {
    pub id: UserId,
    pub username: String,
}

impl Route for Request {
    const PATH: &str = "/auth/signup";
    const SUMMARY: &str = "Opens an account with a username, an email address and a password; the address is confirmed with `/auth/verify-email`.";
    type Body = Body;
    type Reply = SignupData;
    const CALLERS: Callers = Callers::Anyone;

    fn parse(_: &Path, raw: Map<String, Value>) -> Result<Self, ParseError> {
        let b: Body = body(raw)?;
        let username = credentials::parse_new_username(&b.username)?;
        let email = accounts::parse_email(&b.email)?;
        let password = credentials::parse_password(b.password)?;
        Ok(Self {
            username,
            email,
            password,
        })
    }

    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        let hash = credentials::hash(cx.services, &self.password).await?;
        let fingerprint = idempotency::fingerprint(Kind::Signup, self);
        let mut client = crate::store::client(&cx.services.store).await?;
        let tx = client.transaction().await?;
        // A duplicate of this request waits here for the first to end, then replays it.
        tx.execute(
            "SELECT pg_advisory_xact_lock(7251401, hashtext($1)), set_config('qbill.request_id', $1, true)",
            &[&cx.call.request_id.to_string()],
        )
        .await?;
        let seen = tx
            .query_opt(
                "SELECT user_id FROM processed_requests WHERE request_id = $1",
                &[&cx.call.request_id.0],
            )
            .await?;
        if let Some(row) = seen {
            let user = UserId(row.get(0));
            return idempotency::replay(&tx, cx.call, user, Kind::Signup, &fingerprint).await;
        }
        let limits = cx.services.anonymous;
        accounts::throttle(
            &tx,
            "signup",
            cx.call.source.as_str(),
            limits.signups_per_source,
            Some(limits.signups),
        )
        .await?;
        // Counted by the throttle: the reply may make the queue, so the refusal of a weak
        // password (judged here, not when the body is read) reaches a client's first request.
        cx.vouch();
        let local = self.email.split('@').next().unwrap_or_default();
        policy::check(self.password.expose_secret(), &[&self.username, local])
            .map_err(|e| HandlerError::rejected(ErrorCode::InvalidRequest, e.0))?;
        let owner: Option<i64> = tx
            .query_opt(
                "SELECT id FROM users WHERE email = $1 AND email_verified",
                &[&self.email],
            )
            .await?
            .map(|r| r.get(0));
        let email = owner.is_none().then_some(self.email.as_str());
        let inserted = tx
            .query_one(
                "INSERT INTO users (username, password_hash, email) VALUES ($1, $2, $3) RETURNING id",
                &[&self.username, &hash, &email],
            )
            .await;
        let user = match inserted {
            Ok(row) => UserId(row.get(0)),
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                let on_email = e
                    .as_db_error()
                    .and_then(|d| d.constraint())
                    .is_some_and(|c| c == "users_by_email");
                // Another signup took the address at this moment: the message is tried again.
                return Err(if on_email {
                    HandlerError::Transient(e.into())
                } else {
                    HandlerError::rejected(
                        ErrorCode::Conflict,
                        format!("the username {} is taken; choose another", self.username),
                    )
                });
            }
            Err(e) => return Err(e.into()),
        };
        if let Claim::Replay(reply) =
            idempotency::claim(&tx, cx.call, user, Kind::Signup, &fingerprint).await?
        {
            return Ok(reply);
        }
        let mail = match owner {
            None => {
                let nonce = accounts::create_email_token(
                    &tx,
                    &cx.services.tokens,
                    user,
                    Purpose::VerifyEmail,
                    &self.email,
                )
                .await?;
                notify::record(
                    &tx,
                    user,
                    Event::VerifyEmail,
                    &format!("verify:{nonce}"),
                    &json!({ "nonce": nonce, "username": self.username }),
                    Some(&self.email),
                )
                .await?
            }
            Some(owner) => {
                notify::record(
                    &tx,
                    UserId(owner),
                    Event::AccountSecurity,
                    &format!("security:{}", cx.call.request_id),
                    &notify::security("signup_attempt"),
                    Some(&self.email),
                )
                .await?
            }
        };
        let data = Request::reply(&SignupData {
            user: NewUser {
                id: user,
                username: self.username.clone(),
            },
            email_verification: "sent",
        })?;
        idempotency::record(&tx, cx.call, &data).await?;
        tx.commit().await?;
        cx.mail_after_commit(mail);
        Ok(data)
    }
}
