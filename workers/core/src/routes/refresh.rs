//! `refresh`: trades a refresh token for a new access token and a new refresh token
//! (`POST /auth/refresh`, reply kind `auth`), bound to the request's reply queue.
//!
//! Refresh tokens rotate on every use and are kept hashed. Presenting a token that was already
//! used means a copy of it is in someone else's hands: its whole family (every token descended
//! from the same login) is revoked, and both holders must log in again (OAuth 2.0 security best
//! current practice, refresh token rotation). The same request delivered twice is not a reuse: it
//! gets the same new refresh token again, which is derived from the request and the old token,
//! but only while that new token is unused and for [`REDELIVERY_WINDOW`] after the rotation. A
//! "redelivery" later than that, or after the new token was used, is a replay of an old token
//! and its request id (both can leak together): it counts as reuse, and the family is revoked.

use schemars::JsonSchema;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{Callers, Context, ErrorCode, HandlerError, HandlerResult, Route, body};
use crate::accounts;
use crate::accounts::credentials::parse_refresh_token;
use crate::call::Path;
use crate::contract;
use crate::types::{ParseError, UserId};

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

/// How long after a rotation the same request, delivered again, is answered again.
pub const REDELIVERY_WINDOW: std::time::Duration = std::time::Duration::from_secs(5 * 60);

fn refused(why: &str) -> HandlerError {
    HandlerError::rejected(
        ErrorCode::Unauthorized,
        format!("{why}; log in again at /auth"),
    )
}

impl Route for Request {
    const PATH: &str = "/auth/refresh";
    const SUMMARY: &str = "Exchanges a refresh token for a new token bound to this queue_name.";
    type Body = Body;
    type Reply = crate::accounts::sign_in::AuthData;
    const CALLERS: Callers = Callers::Anyone;

    fn parse(_: &Path, raw: Map<String, Value>) -> Result<Self, ParseError> {
        let b: Body = body(raw)?;
        Ok(Self {
            refresh_token: parse_refresh_token(b.refresh_token)?,
        })
    }

    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        let hash = accounts::sha256(self.refresh_token.expose_secret());
        let mut client = crate::store::client(&cx.services.store).await?;
        let tx = client.transaction().await?;
        let Some(token) = tx
            .query_opt(
                "SELECT user_id, family, epoch, expires_at > now() AS live, rotated_by,
                        revoked_at IS NOT NULL AS revoked,
                        rotated_at > now() - make_interval(secs => $2) AS lately
                 FROM refresh_tokens WHERE hash = $1 FOR UPDATE",
                &[&hash, &REDELIVERY_WINDOW.as_secs_f64()],
            )
            .await?
        else {
            return Err(refused("this refresh token is not valid"));
        };
        // A refresh token that was issued: the reply may make the queue.
        cx.vouch();
        let user = UserId(token.get("user_id"));
        let family: Uuid = token.get("family");
        let epoch: i32 = token.get("epoch");
        let (live, rotated_by, revoked, lately): (bool, Option<Uuid>, bool, Option<bool>) = (
            token.get("live"),
            token.get("rotated_by"),
            token.get("revoked"),
            token.get("lately"),
        );
        let row = tx
            .query_opt(
                "SELECT id, password_hash, role, provider_id, apartments_version, session_epoch, username
                 FROM users WHERE id = $1 AND deleted_at IS NULL",
                &[&user.0],
            )
            .await?;
        let Some(row) = row else {
            return Err(refused("this account no longer exists"));
        };
        if revoked || !live || row.get::<_, i32>("session_epoch") != epoch {
            return Err(refused("this session has ended"));
        }
        let next = cx.services.tokens.derive(
            "refresh-rotation",
            &[cx.call.request_id.0.as_bytes().as_slice(), &hash].concat(),
        );
        // This request delivered again: answered again only while what it minted is unused, and
        // not for long.
        let redelivered = match rotated_by {
            Some(by) if by == cx.call.request_id.0 && lately == Some(true) => tx
                .query_opt(
                    "SELECT 1 FROM refresh_tokens
                     WHERE hash = $1 AND rotated_at IS NULL AND revoked_at IS NULL",
                    &[&accounts::sha256(&next)],
                )
                .await?
                .is_some(),
            _ => false,
        };
        match rotated_by {
            Some(_) if redelivered => {}
            Some(_) => {
                tx.execute(
                    "UPDATE refresh_tokens SET revoked_at = now() WHERE family = $1 AND revoked_at IS NULL",
                    &[&family],
                )
                .await?;
                tx.commit().await?;
                tracing::warn!(
                    auth.refused = "refresh token reused",
                    "a rotated refresh token was presented again; its family is revoked"
                );
                return Err(refused(
                    "this refresh token was used already, so every session that came from it has been ended",
                ));
            }
            None => {
                tx.execute(
                    "UPDATE refresh_tokens SET rotated_at = now(), rotated_by = $2 WHERE hash = $1",
                    &[&hash, &cx.call.request_id.0],
                )
                .await?;
            }
        }
        let refresh = accounts::issue_refresh(&tx, user, epoch, Some(family), next).await?;
        tx.commit().await?;
        let username: String = row.get("username");
        let (holder, apartments_version) = crate::accounts::sign_in::row_holder(&row, &username)?;
        let data = crate::accounts::sign_in::signed_in(
            cx.services,
            cx.call,
            &holder,
            apartments_version,
            refresh,
        )
        .await?;
        Self::reply(&data)
    }
}
