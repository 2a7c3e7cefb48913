//! `me_sessions`: the caller's live sessions (`POST /me/sessions`): each login that can still be
//! refreshed, newest first, with when it began, when it was last refreshed and when it ends if
//! it is not. A session is a refresh token family: a login starts one, each refresh rotates its
//! token, and a logout, a reuse of a rotated token, a password change or reset, or the end of its
//! 30 days ends it. It tells the holder whether someone else is signed in as them; changing the
//! password ends every one of them.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{Callers, Context, ErrorCode, HandlerError, HandlerResult, Route, body};
use crate::call::Path;
use crate::types::{ParseError, Role};

/// The most sessions one reply lists; an account with more says so (`more_sessions`).
pub const MAX_SESSIONS: i64 = 100;

#[derive(Debug)]
pub struct Request {}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Body {}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SessionsData {
    pub sessions: Vec<LiveSession>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub more_sessions: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct LiveSession {
    /// The session's own id (its refresh token family): it names the session, and opens nothing.
    pub id: Uuid,
    pub started_at: DateTime<Utc>,
    pub refreshed_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// The families of the user's refresh tokens whose newest token can still be refreshed: not
/// rotated, not revoked, not expired, issued in the user's current session epoch.
const LIVE_SESSIONS: &str = "SELECT t.family AS id, min(t.issued_at) AS started_at,
        max(t.issued_at) AS refreshed_at, max(t.expires_at) AS expires_at
    FROM refresh_tokens t JOIN users u ON u.id = t.user_id
    WHERE t.user_id = $1 AND t.epoch = u.session_epoch
    GROUP BY t.family
    HAVING bool_or(t.rotated_at IS NULL AND t.revoked_at IS NULL AND t.expires_at > now())
    ORDER BY refreshed_at DESC, id
    LIMIT $2";

impl Route for Request {
    const PATH: &str = "/me/sessions";
    const SUMMARY: &str = "The caller's live sessions (logins that can still be refreshed), newest first.";
    type Body = Body;
    type Reply = SessionsData;
    const CALLERS: Callers = Callers::Roles(Role::EVERYONE);

    fn parse(_: &Path, raw: Map<String, Value>) -> Result<Self, ParseError> {
        let _: Body = body(raw)?;
        Ok(Self {})
    }

    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        let user = cx.caller()?.user_id;
        if cx.services.cognito.is_some() {
            return Err(HandlerError::rejected(
                ErrorCode::Forbidden,
                "sessions are kept by the Cognito user pool; see yours there",
            ));
        }
        let client = crate::store::client(&cx.services.store).await?;
        let statement = client.prepare_cached(LIVE_SESSIONS).await?;
        let rows = client
            .query(&statement, &[&user.0, &(MAX_SESSIONS + 1)])
            .await?;
        let more_sessions = rows.len() as i64 > MAX_SESSIONS;
        let sessions = rows
            .iter()
            .take(MAX_SESSIONS as usize)
            .map(|row| LiveSession {
                id: row.get("id"),
                started_at: row.get("started_at"),
                refreshed_at: row.get("refreshed_at"),
                expires_at: row.get("expires_at"),
            })
            .collect();
        Request::reply(&SessionsData {
            sessions,
            more_sessions,
        })
    }
}
