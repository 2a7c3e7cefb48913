//! `me_delete`: the caller erases their personal data (`POST /me/delete`), giving their password.
//!
//! Erased: the username, email address, display name, password hash, Cognito id, preferences,
//! sessions (every token ends), mailed tokens, the inbox and pending mails, failed-login and
//! link-attempt counts, the username in the audit event of the account's creation, and the
//! replies kept for repeats of its requests (but its payments' receipts). The
//! apartments are unlinked from the account. Kept, under the account's id alone (a pseudonym once
//! nothing else names it): payments and the audit trail, because they are the books
//! (`docs/data-deletion.md` says what and why). One last security mail goes to the verified
//! address, which the outbox forgets once it is sent. A second call changes nothing: the token is
//! refused, and the same request id replays.

use schemars::JsonSchema;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Callers, Context, HandlerResult, Kind, Route, body};
use crate::accounts::credentials;
use crate::call::Path;
use crate::common::bump_apartments;
use crate::contract;
use crate::idempotency;
use crate::notify::{self, Event};
use crate::types::{ParseError, Role, UserId};

#[derive(Debug, Serialize, JsonSchema)]
pub struct Request {
    #[serde(skip)]
    pub password: SecretString,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Body {
    #[schemars(with = "contract::Password")]
    pub password: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct DeletedData {
    pub deleted: bool,
    /// The id payments and the audit trail keep.
    pub user_id: UserId,
}

impl Route for Request {
    const PATH: &str = "/me/delete";
    const SUMMARY: &str = "Deletes the caller's account, given its password.";
    type Body = Body;
    type Reply = DeletedData;
    const CALLERS: Callers = Callers::Roles(Role::EVERYONE);

    fn parse(_: &Path, raw: Map<String, Value>) -> Result<Self, ParseError> {
        let b: Body = body(raw)?;
        Ok(Self {
            password: credentials::parse_password(b.password)?,
        })
    }

    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        let user = cx.caller()?.user_id;
        crate::accounts::check_current_password(cx.services, user, &cx.call.source, &self.password)
            .await?;
        let mut mail = None;
        let data = idempotency::once(cx, Kind::MeDelete, self, async |tx| {
            let row = tx
                .query_one(
                    "SELECT username, email, email_verified FROM users WHERE id = $1 FOR UPDATE",
                    &[&user.0],
                )
                .await?;
            let username: Option<String> = row.get("username");
            let email: Option<String> = row.get("email");
            let verified: bool = row.get("email_verified");
            // The last mail, recorded while the account still has an address.
            mail = notify::record(
                tx,
                user,
                Event::AccountSecurity,
                &format!("security:{}", cx.call.request_id),
                &notify::security("account_deleted"),
                email.as_deref().filter(|_| verified),
            )
            .await?;
            let keep = mail.unwrap_or(0);
            tx.execute(
                "DELETE FROM notifications WHERE user_id = $1 AND id <> $2",
                &[&user.0, &keep],
            )
            .await?;
            let apartments: Vec<i64> = tx
                .query(
                    "DELETE FROM apartment_owners WHERE user_id = $1 RETURNING apartment_id",
                    &[&user.0],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let mut apartments = apartments;
            apartments.sort_unstable();
            bump_apartments(tx, &apartments).await?;
            for statement in [
                "DELETE FROM refresh_tokens WHERE user_id = $1",
                "DELETE FROM email_tokens WHERE user_id = $1",
                "DELETE FROM link_failures WHERE user_id = $1",
            ] {
                tx.execute(statement, &[&user.0]).await?;
            }
            if let Some(username) = &username {
                tx.execute(
                    "DELETE FROM login_throttle WHERE (scope = 'username' AND key = $1)
                        OR (scope = 'pair' AND left(key, length($1) + 1) = $1 || ' ')",
                    &[username],
                )
                .await?;
                tx.execute("DELETE FROM login_checks WHERE username = $1", &[username])
                    .await?;
            }
            crate::notify::sms::forget_number(tx, user).await?;
            tx.execute(
                "UPDATE users SET username = NULL, password_hash = NULL, email = NULL, email_verified = false,
                        display_name = NULL, notification_preferences = '{}', cognito_sub = NULL,
                        deleted_at = now(), session_epoch = session_epoch + 1,
                        apartments_version = cache_version()
                 WHERE id = $1",
                &[&user.0],
            )
            .await?;
            tx.execute("SELECT erase_user_from_audit($1)", &[&user.0])
                .await?;
            // The replies kept for repeats of the account's requests hold its name, address,
            // display name and apartments (`me`, `signup`, `verify_email`, ...): erased too. The
            // receipts of its payments are the books and hold no personal data; this request's
            // own reply is kept for its repeats.
            tx.execute(
                "UPDATE processed_requests SET reply = $2
                 WHERE user_id = $1 AND kind NOT IN ('payments', 'me_delete') AND reply IS NOT NULL",
                &[&user.0, &crate::idempotency::erased()],
            )
            .await?;
            Request::reply(&DeletedData {
                deleted: true,
                user_id: user,
            })
        })
        .await?;
        cx.mail_after_commit(mail);
        // After the commit: the saved cards and the customer at the processor go too. The
        // account's row keeps the customer's id until they are gone, so a failure here is
        // finished by the reconcile job (docs/data-deletion.md).
        if let Some(processor) = cx.services.processor.as_deref()
            && let Err(e) = crate::processor::saved::forget(cx.services, processor, user).await
        {
            tracing::warn!(error = format!("{e:#}"), "the processor's customer of a deleted account is left to the reconcile job");
        }
        Ok(data)
    }
}
