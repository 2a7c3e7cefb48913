//! The account as its holder sees it (the `me` reply, shown again after a profile change): who
//! they are, their apartments and their notification preferences, every event with its channels
//! spelled out.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::sign_in::{Apartment, apartments_page};
use crate::error::HandlerError;
use crate::notify::Event;
use crate::services::Services;
use crate::types::{Role, UserId};

#[derive(Debug, Serialize, JsonSchema)]
pub struct MeData {
    pub user: MeUser,
    pub apartments: Vec<Apartment>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub more_apartments: bool,
    pub notification_preferences: BTreeMap<&'static str, Channels>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct MeUser {
    pub id: UserId,
    pub username: Option<String>,
    pub email: Option<String>,
    pub email_verified: bool,
    pub display_name: Option<String>,
    /// The verified phone number texts go to (E.164).
    pub phone: Option<String>,
    /// A number waiting for its code (`POST /me/phone/verify`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_pending: Option<String>,
    pub created_at: DateTime<Utc>,
    pub role: Role,
}

/// Whether an event is mailed, shown in the inbox and texted (to a verified number only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "NotificationChannels")]
pub struct Channels {
    pub email: bool,
    pub inbox: bool,
    pub sms: bool,
}

/// The preferences as stored (`{"<event>": {"email": bool, "inbox": bool, "sms": bool}}`, a
/// missing mail or inbox means on, a missing text off), spelled out for every event; security
/// mail is always on.
pub fn preferences(stored: &Value) -> BTreeMap<&'static str, Channels> {
    Event::PREFERABLE
        .iter()
        .map(|event| {
            let set = |channel: &str, unset: bool| {
                stored
                    .get(event.as_str())
                    .and_then(|e| e.get(channel))
                    .and_then(Value::as_bool)
                    .unwrap_or(unset)
            };
            let email = *event == Event::AccountSecurity || set("email", true);
            (
                event.as_str(),
                Channels {
                    email,
                    inbox: set("inbox", true),
                    sms: set("sms", false),
                },
            )
        })
        .collect()
}

/// The reply of `me` for `user`, read on `client` (inside a transaction, it sees its changes).
pub async fn data(
    client: &impl GenericClient,
    services: &Services,
    user: UserId,
) -> Result<MeData, HandlerError> {
    let row = client
        .query_one(
            "SELECT username, email, email_verified, display_name, created_at, role,
                    notification_preferences, apartments_version, phone,
                    (SELECT v.phone FROM phone_verifications v WHERE v.user_id = users.id
                     AND v.expires_at > now()) AS phone_pending
             FROM users WHERE id = $1",
            &[&user.0],
        )
        .await?;
    let (apartments, more_apartments) =
        apartments_page(services, user, row.get("apartments_version")).await?;
    Ok(MeData {
        user: MeUser {
            id: user,
            username: row.get("username"),
            email: row.get("email"),
            email_verified: row.get("email_verified"),
            display_name: row.get("display_name"),
            phone: row.get("phone"),
            phone_pending: row.get("phone_pending"),
            created_at: row.get("created_at"),
            role: Role::parse(row.get("role")).map_err(HandlerError::internal)?,
        },
        apartments,
        more_apartments,
        notification_preferences: preferences(&row.get("notification_preferences")),
    })
}
