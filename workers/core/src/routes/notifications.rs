//! `notifications`: the caller's in-app inbox (`POST /me/notifications`), oldest first, from
//! after `since_id` (the previous page's `next_since_id`): each notification with its event,
//! when it happened, its subject and plain-text body (the mail's templates) and its data.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Callers, Context, HandlerError, HandlerResult, Route, body};
use crate::call::Path;
use crate::notify::{Event, templates};
use crate::types::ParseError;
use crate::types::Role;

/// Notifications in one reply at most.
pub const PAGE: i64 = 50;

#[derive(Debug, Serialize, JsonSchema)]
pub struct Request {
    pub since_id: i64,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Body {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "since_id_schema")]
    pub since_id: Option<Value>,
}

/// A whole number from 0; any other value the worker refuses, saying why.
fn since_id_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "integer", "minimum": 0 })
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct NotificationsData {
    pub notifications: Vec<Notification>,
    /// Pass it as `since_id` for the next page (the same as sent when nothing is new).
    pub next_since_id: i64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Notification {
    pub id: i64,
    pub event: String,
    pub at: DateTime<Utc>,
    pub subject: String,
    pub body: String,
    pub data: Value,
}

impl Route for Request {
    const PATH: &str = "/me/notifications";
    const SUMMARY: &str = "The caller's notifications, those after `since_id` when it is given.";
    type Body = Body;
    type Reply = NotificationsData;
    const CALLERS: Callers = Callers::Roles(Role::EVERYONE);

    fn parse(_: &Path, raw: Map<String, Value>) -> Result<Self, ParseError> {
        let b: Body = body(raw)?;
        let since_id = match b.since_id {
            None | Some(Value::Null) => 0,
            Some(v) => v.as_i64().filter(|n| *n >= 0).ok_or_else(|| {
                ParseError::new("`since_id` must be a whole number from 0 to 9223372036854775807")
            })?,
        };
        Ok(Self { since_id })
    }

    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        let user = cx.caller()?.user_id;
        let client = crate::store::client(&cx.services.store).await?;
        let name: Option<String> = client
            .query_one(
                "SELECT coalesce(display_name, username) FROM users WHERE id = $1",
                &[&user.0],
            )
            .await?
            .get(0);
        let rows = client
            .query(
                "SELECT id, event, created_at, data FROM notifications
                 WHERE user_id = $1 AND in_inbox AND id > $2 ORDER BY id LIMIT $3",
                &[&user.0, &self.since_id, &PAGE],
            )
            .await?;
        let web_url = &cx.services.mail.config.web_url;
        let mut notifications = Vec::with_capacity(rows.len());
        for row in rows {
            let event: String = row.get("event");
            let data: Value = row.get("data");
            let rendered = templates::render(
                Event::parse(&event).map_err(HandlerError::internal)?,
                &data,
                name.as_deref().unwrap_or("there"),
                web_url,
            )
            .map_err(HandlerError::Internal)?;
            notifications.push(Notification {
                id: row.get("id"),
                event,
                at: row.get("created_at"),
                subject: rendered.subject,
                body: rendered.text,
                data,
            });
        }
        let next_since_id = notifications.last().map_or(self.since_id, |n| n.id);
        Request::reply(&NotificationsData {
            notifications,
            next_since_id,
        })
    }
}
