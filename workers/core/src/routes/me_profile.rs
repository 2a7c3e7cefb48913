//! `me_profile`: changes the caller's email address, display name, phone number or notification
//! preferences (`POST /me/profile`, reply kind `me`). Preferences merge into the stored ones, per
//! event and channel; security mail cannot be turned off.
//!
//! A new `phone` (E.164, such as `+447700900123`) is texted a six-digit code
//! ([`crate::notify::sms`]) and becomes the account's number once `me_phone_verify` is given the
//! code within [`PHONE_CODE_MINUTES`]; codes are throttled per user and per number, so the route
//! cannot be used to flood someone's phone. `phone: null` removes the number (and its texts not
//! yet sent). Texts go only to a verified number, for the events whose `sms` channel is on.
//!
//! Changing the address takes the current `password` (checked through the login throttle: a
//! wrong one is `unauthorized` and counts as a failed login), so a stolen access token cannot
//! move the account to its holder's mailbox. Address changes are throttled per user. The new
//! address is unverified until its mail's link is followed; every unused verification and reset
//! link ends. The old address, if verified, is told, with a link that puts it back for 7 days
//! (`email_undo`). The reply is the same whether or not another account has the address: an
//! address counts as taken only once verified, and if it is, its owner gets a mail saying someone
//! tried, and no verification link goes out, so the route reveals no address.

use schemars::JsonSchema;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{Callers, Context, HandlerError, HandlerResult, Kind, Route, body};
use crate::accounts::{self, Purpose};
use crate::call::Path;
use crate::common::text;
use crate::contract;
use crate::idempotency;
use crate::notify::{self, Event};
use crate::types::{ParseError, Role, UserId};

/// A display name has at most this many characters.
pub const MAX_DISPLAY_NAME: usize = 100;
/// Address changes of one user an hour.
pub const EMAIL_CHANGES_PER_HOUR: i64 = 5;
/// Codes texted for one user an hour, and to one number an hour (whoever asks).
pub const PHONE_CODES_PER_USER_PER_HOUR: i64 = 5;
pub const PHONE_CODES_PER_NUMBER_PER_HOUR: i64 = 3;
/// How long a texted code works.
pub const PHONE_CODE_MINUTES: i32 = 10;

#[derive(Debug, Serialize, JsonSchema)]
pub struct Request {
    pub email: Option<String>,
    /// The current password, required with `email`.
    #[serde(skip)]
    pub password: Option<SecretString>,
    /// `Some(None)` clears the name.
    pub display_name: Option<Option<String>>,
    /// `Some(None)` removes the number.
    pub phone: Option<Option<String>>,
    /// `{"<event>": {"email"?: bool, "inbox"?: bool}}`.
    pub notification_preferences: Option<Map<String, Value>>,
}

/// `null` (clears it) or a text of at most 100 characters; no `type`, so that null passes, as
/// with a policy's late fee. The worker refuses anything else.
fn display_name_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "maxLength": 100 })
}

/// `null` (removes it) or a number as a person writes it; the worker reads it as E.164.
fn phone_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "maxLength": 24 })
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
// At least one change (the envelope's fields make minProperties useless here), and a new address
// takes the current password.
#[schemars(extend("allOf" = [
    { "anyOf": [
        { "required": ["email"] },
        { "required": ["display_name"] },
        { "required": ["phone"] },
        { "required": ["notification_preferences"] },
    ] },
    { "anyOf": [{ "not": { "required": ["email"] } }, { "required": ["password"] }] },
]))]
pub struct Body {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "contract::Email")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "contract::Password")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "display_name_schema")]
    pub display_name: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "phone_schema")]
    pub phone: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "contract::NotificationPreferences")]
    pub notification_preferences: Option<Map<String, Value>>,
}

impl Route for Request {
    const PATH: &str = "/me/profile";
    const SUMMARY: &str = "Changes the caller's email address (given the current password), display name (null clears it), phone number (texted a code to verify; null removes it) or notification preferences, at least one of them.";
    type Body = Body;
    type Reply = crate::accounts::profile::MeData;
    const CALLERS: Callers = Callers::Roles(Role::EVERYONE);

    fn parse(_: &Path, raw: Map<String, Value>) -> Result<Self, ParseError> {
        let names_display = raw.contains_key("display_name");
        let names_phone = raw.contains_key("phone");
        let b: Body = body(raw)?;
        let phone = match (names_phone, b.phone) {
            (false, _) => None,
            (true, None | Some(Value::Null)) => Some(None),
            (true, Some(Value::String(s))) => Some(Some(parse_phone(&s)?)),
            (true, Some(_)) => {
                return Err(ParseError::new(
                    "`phone` must be a number such as +447700900123, or null to remove it",
                ));
            }
        };
        let display_name = match (names_display, b.display_name) {
            (false, _) => None,
            (true, None | Some(Value::Null)) => Some(None),
            (true, Some(Value::String(s))) => {
                Some(Some(text("display_name", &s, MAX_DISPLAY_NAME)?))
            }
            (true, Some(_)) => {
                return Err(ParseError::new(
                    "`display_name` must be a string, or null to clear it",
                ));
            }
        };
        let notification_preferences = b
            .notification_preferences
            .map(parse_preferences)
            .transpose()?;
        let email = b.email.as_deref().map(accounts::parse_email).transpose()?;
        if email.is_none()
            && display_name.is_none()
            && phone.is_none()
            && notification_preferences.is_none()
        {
            return Err(ParseError::new(
                "name at least one of `email`, `display_name`, `phone` and `notification_preferences`",
            ));
        }
        let password = b
            .password
            .map(crate::accounts::credentials::parse_password)
            .transpose()?;
        if email.is_some() && password.is_none() {
            return Err(ParseError::new(
                "changing `email` takes your current `password` too",
            ));
        }
        Ok(Self {
            email,
            password,
            display_name,
            phone,
            notification_preferences,
        })
    }

    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        let user = cx.caller()?.user_id;
        if let (Some(_), Some(password)) = (&self.email, &self.password) {
            accounts::check_current_password(cx.services, user, &cx.call.source, password).await?;
        }
        let mut mails = Vec::new();
        let mut texts = Vec::new();
        let data = idempotency::once(cx, Kind::MeProfile, self, async |tx| {
            let row = tx
                .query_one(
                    "SELECT email, email_verified, notification_preferences, username FROM users WHERE id = $1 FOR UPDATE",
                    &[&user.0],
                )
                .await?;
            let (old, verified): (Option<String>, bool) =
                (row.get("email"), row.get("email_verified"));
            let mut stored: Value = row.get("notification_preferences");
            let username: Option<String> = row.get("username");
            if let Some(email) = self.email.as_ref().filter(|e| old.as_ref() != Some(*e)) {
                accounts::throttle(
                    tx,
                    "email_change",
                    &format!("user:{user}"),
                    EMAIL_CHANGES_PER_HOUR,
                    None,
                )
                .await?;
                mails.extend(change_email(cx, tx, user, email, old.as_deref(), verified, username.as_deref()).await?);
            }
            if let Some(name) = &self.display_name {
                tx.execute(
                    "UPDATE users SET display_name = $2 WHERE id = $1",
                    &[&user.0, name],
                )
                .await?;
            }
            match &self.phone {
                None => {}
                Some(Some(phone)) => {
                    texts.extend(ask_for_code(tx, &cx.services.tokens, user, phone).await?)
                }
                Some(None) => notify::sms::forget_number(tx, user).await?,
            }
            if let Some(changes) = &self.notification_preferences {
                merge(&mut stored, changes);
                tx.execute(
                    "UPDATE users SET notification_preferences = $2 WHERE id = $1",
                    &[&user.0, &stored],
                )
                .await?;
            }
            Self::reply(&crate::accounts::profile::data(tx, cx.services, user).await?)
        })
        .await?;
        for mail in mails {
            cx.mail_after_commit(mail);
        }
        notify::sms::send_now(cx.services, &texts).await;
        Ok(data)
    }
}

/// A phone number as a person writes it (spaces, dashes, dots and brackets between the digits),
/// in E.164: `+`, then 8 to 15 digits, the first not 0.
pub fn parse_phone(raw: &str) -> Result<String, ParseError> {
    let compact: String = raw
        .trim()
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    let digits = compact.strip_prefix('+').unwrap_or_default();
    let valid = (8..=15).contains(&digits.len())
        && digits.chars().all(|c| c.is_ascii_digit())
        && !digits.starts_with('0');
    if valid {
        Ok(compact)
    } else {
        Err(ParseError::new(format!(
            "`phone` must be a number in international form, a + and its country code first, such as +447700900123; not {raw:?}"
        )))
    }
}

/// Starts verifying `phone` for `user`: a new code (the last one asked for is the only one that
/// works), texted after the commit. The number already verified is left as it is.
async fn ask_for_code(
    tx: &deadpool_postgres::Transaction<'_>,
    tokens: &crate::token::Tokens,
    user: UserId,
    phone: &str,
) -> Result<Option<i64>, HandlerError> {
    let current: Option<String> = tx
        .query_one("SELECT phone FROM users WHERE id = $1", &[&user.0])
        .await?
        .get(0);
    if current.as_deref() == Some(phone) {
        return Ok(None);
    }
    accounts::throttle(
        tx,
        "phone_code",
        &format!("user:{user}"),
        PHONE_CODES_PER_USER_PER_HOUR,
        None,
    )
    .await?;
    // Counted by a keyed digest of the number: the throttle's rows never hold it.
    accounts::throttle(
        tx,
        "phone_code_number",
        &format!("phone:{}", tokens.email_token(&format!("throttle:{phone}"))),
        PHONE_CODES_PER_NUMBER_PER_HOUR,
        None,
    )
    .await?;
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    tx.execute(
        "INSERT INTO phone_verifications (user_id, phone, nonce, expires_at)
         VALUES ($1, $2, $3, now() + make_interval(mins => $4))
         ON CONFLICT (user_id) DO UPDATE SET phone = EXCLUDED.phone, nonce = EXCLUDED.nonce,
             expires_at = EXCLUDED.expires_at, failed_attempts = 0, created_at = now()",
        &[&user.0, &phone, &nonce, &PHONE_CODE_MINUTES],
    )
    .await?;
    let id: i64 = tx
        .query_one(
            "INSERT INTO sms_outbox (user_id, key, event, data, phone, status, next_attempt_at)
             VALUES ($1, $2, $3, jsonb_build_object('nonce', $4::text), $5, 'pending', now())
             RETURNING id",
            &[
                &user.0,
                &format!("{}:{nonce}", notify::sms::VERIFY),
                &notify::sms::VERIFY,
                &nonce,
                &phone,
            ],
        )
        .await?
        .get(0);
    Ok(Some(id))
}

/// Gives `user` the address `email`, unverified, and records the mails that go with it: the
/// verification link to the new address, unless another account has it verified (its owner is
/// told someone tried instead); the change, with a link that puts it back, to the old address if
/// it was verified. Every unused verification and reset link of the account ends first.
async fn change_email(
    cx: &Context<'_>,
    tx: &deadpool_postgres::Transaction<'_>,
    user: UserId,
    email: &str,
    old: Option<&str>,
    old_verified: bool,
    username: Option<&str>,
) -> Result<Vec<Option<i64>>, HandlerError> {
    let mut mails = Vec::new();
    let owner: Option<i64> = tx
        .query_opt(
            "SELECT id FROM users WHERE email = $1 AND email_verified AND id <> $2",
            &[&email, &user.0],
        )
        .await?
        .map(|r| r.get(0));
    tx.execute(
        "UPDATE users SET email = $2, email_verified = false WHERE id = $1",
        &[&user.0, &email],
    )
    .await?;
    accounts::end_links(tx, user).await?;
    let key = format!("security:{}", cx.call.request_id);
    match owner {
        None => {
            let nonce = accounts::create_email_token(
                tx,
                &cx.services.tokens,
                user,
                Purpose::VerifyEmail,
                email,
            )
            .await?;
            mails.push(
                notify::record(
                    tx,
                    user,
                    Event::VerifyEmail,
                    &format!("verify:{nonce}"),
                    &json!({ "nonce": nonce, "username": username }),
                    Some(email),
                )
                .await?,
            );
        }
        // Taken: its owner hears of the attempt, and the caller's reply is the same.
        Some(owner) => mails.push(
            notify::record(
                tx,
                UserId(owner),
                Event::AccountSecurity,
                &format!("{key}:taken"),
                &notify::security("address_attempt"),
                Some(email),
            )
            .await?,
        ),
    }
    if let (Some(old), true) = (old, old_verified) {
        let nonce =
            accounts::create_email_token(tx, &cx.services.tokens, user, Purpose::EmailUndo, old)
                .await?;
        let mut data = notify::security("email_changed");
        data["undo_nonce"] = Value::String(nonce);
        mails.push(notify::record(tx, user, Event::AccountSecurity, &key, &data, Some(old)).await?);
    }
    Ok(mails)
}

/// Checks preferences: known events, channels `email`, `inbox` and `sms`, booleans; security
/// mail on.
fn parse_preferences(raw: Map<String, Value>) -> Result<Map<String, Value>, ParseError> {
    for (event, channels) in &raw {
        let known = Event::parse(event)
            .ok()
            .filter(|e| Event::PREFERABLE.contains(e))
            .ok_or_else(|| {
                ParseError::new(format!(
                    "`notification_preferences` has no event `{event}`; the events are {}",
                    Event::PREFERABLE
                        .iter()
                        .map(|e| e.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        let channels = channels.as_object().ok_or_else(|| {
            ParseError::new(format!(
                "`notification_preferences.{event}` must be an object like {{\"email\": true, \"inbox\": false}}"
            ))
        })?;
        for (channel, on) in channels {
            if !matches!(channel.as_str(), "email" | "inbox" | "sms") || !on.is_boolean() {
                return Err(ParseError::new(format!(
                    "`notification_preferences.{event}` takes `email`, `inbox` and `sms`, each true or false"
                )));
            }
        }
        if known == Event::AccountSecurity && channels.get("email") == Some(&Value::Bool(false)) {
            return Err(ParseError::new(
                "security mail (account.security by email) cannot be turned off",
            ));
        }
    }
    Ok(raw)
}

/// Merges `changes` into `stored`, per event and channel.
fn merge(stored: &mut Value, changes: &Map<String, Value>) {
    if !stored.is_object() {
        *stored = Value::Object(Map::new());
    }
    let stored = stored.as_object_mut().expect("an object");
    for (event, channels) in changes {
        let entry = stored
            .entry(event.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if let (Some(entry), Some(channels)) = (entry.as_object_mut(), channels.as_object()) {
            for (channel, on) in channels {
                entry.insert(channel.clone(), on.clone());
            }
        }
    }
}
