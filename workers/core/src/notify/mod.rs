//! Notifications: what the engine tells a household without being asked.
//!
//! A change that should notify someone records the event with [`record`] in its own transaction
//! (`notify()` in `sql/V11__households.sql`: the user's preferences decide inbox, mail, both or
//! neither), under a unique key, so a retried request or job never notifies twice. After the
//! commit the route sends the mails it recorded at once ([`outbox::send_now`]); the outbox row is
//! what guarantees the mail if that attempt fails: the sender job ([`crate::jobs::notify`]) drains
//! it with retries and backoff. Mails are rendered from the [`templates`] and sent by
//! [`crate::mail`]; texts, for users who turned SMS on, go the same way from [`sms`].

pub mod outbox;
pub mod sms;
pub mod templates;

use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::HandlerError;
use crate::types::{ParseError, UserId};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Event {
    /// A bill arrived for an account linked to one of the user's apartments.
    #[serde(rename = "bill.created")]
    BillCreated,
    /// A bill is due in [`crate::jobs::due_soon::DAYS_BEFORE`] days.
    #[serde(rename = "bill.due_soon")]
    BillDueSoon,
    #[serde(rename = "bill.overdue")]
    BillOverdue,
    #[serde(rename = "late_fee.created")]
    LateFeeCreated,
    /// The receipt.
    #[serde(rename = "payment.succeeded")]
    PaymentSucceeded,
    /// Money of a payment given back.
    #[serde(rename = "refund.succeeded")]
    RefundSucceeded,
    /// The password changed or was reset, the email changed, the account was deleted, or
    /// someone tried to sign up with the user's address. Its mail cannot be turned off.
    #[serde(rename = "account.security")]
    AccountSecurity,
    /// The mail that verifies an address (never in the inbox, no preference).
    #[serde(rename = "account.verify_email")]
    VerifyEmail,
    /// The mail with a password reset link (never in the inbox, no preference).
    #[serde(rename = "account.password_reset")]
    PasswordReset,
    /// A provider's webhook endpoint was disabled after its deliveries failed for 3 days.
    #[serde(rename = "webhook.disabled")]
    WebhookDisabled,
}

impl Event {
    /// The events a user may set preferences for.
    pub const PREFERABLE: &[Event] = &[
        Self::BillCreated,
        Self::BillDueSoon,
        Self::BillOverdue,
        Self::LateFeeCreated,
        Self::PaymentSucceeded,
        Self::RefundSucceeded,
        Self::AccountSecurity,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::BillCreated => "bill.created",
            Self::BillDueSoon => "bill.due_soon",
            Self::BillOverdue => "bill.overdue",
            Self::LateFeeCreated => "late_fee.created",
            Self::PaymentSucceeded => "payment.succeeded",
            Self::RefundSucceeded => "refund.succeeded",
            Self::AccountSecurity => "account.security",
            Self::VerifyEmail => "account.verify_email",
            Self::PasswordReset => "account.password_reset",
            Self::WebhookDisabled => "webhook.disabled",
        }
    }

    /// Every event: those with preferences, the two mails of an account, and a provider's.
    pub const ALL: &[Event] = &[
        Self::BillCreated,
        Self::BillDueSoon,
        Self::BillOverdue,
        Self::LateFeeCreated,
        Self::PaymentSucceeded,
        Self::RefundSucceeded,
        Self::AccountSecurity,
        Self::VerifyEmail,
        Self::PasswordReset,
        Self::WebhookDisabled,
    ];

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        Self::ALL
            .iter()
            .copied()
            .find(|e| e.as_str() == raw)
            .ok_or_else(|| ParseError::new(format!("unknown event `{raw}`")))
    }
}

/// Records `event` for `user` in the caller's transaction, under `key` (the same key again
/// changes nothing). `to` is the address of a verification or reset mail, or of a security mail
/// that must reach an address the user is leaving; other mail goes to the verified address.
/// Returns the outbox id of a mail to send once the transaction commits.
pub async fn record(
    tx: &impl GenericClient,
    user: UserId,
    event: Event,
    key: &str,
    data: &Value,
    to: Option<&str>,
) -> Result<Option<i64>, HandlerError> {
    let statement = tx
        .prepare_cached("SELECT notify($1, $2, $3, $4, $5)")
        .await?;
    let row = tx
        .query_one(&statement, &[&user.0, &event.as_str(), &key, data, &to])
        .await?;
    Ok(row.get(0))
}

/// A security event's data: what changed, and when.
pub fn security(change: &str) -> Value {
    serde_json::json!({ "change": change, "at": chrono::Utc::now() })
}

/// Records `event` about each of the bills `ids` for every owner of its apartment (bills of
/// unlinked accounts notify no one), keyed by event, bill and user. Returns the outbox ids of the
/// mails to send.
pub async fn bills(
    tx: &impl GenericClient,
    event: Event,
    ids: &[i64],
) -> Result<Vec<i64>, HandlerError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let statement = tx.prepare_cached(BILL_EVENTS).await?;
    let rows = tx.query(&statement, &[&ids, &event.as_str()]).await?;
    Ok(rows.iter().filter_map(|r| r.get(0)).collect())
}

const BILL_EVENTS: &str = "SELECT notify(o.user_id, $2, $2 || ':' || b.id || ':' || o.user_id,
        jsonb_build_object('bill_id', b.id, 'apartment_id', b.apartment_id, 'provider', p.name,
                           'utility', replace(b.utility, '_', ' '), 'amount', b.amount::text,
                           'currency', b.currency, 'due_date', b.due_date, 'late_fee_of', b.late_fee_of,
                           'days', b.due_date - (now() AT TIME ZONE 'UTC')::date))
    FROM bills b JOIN providers p ON p.id = b.provider_id JOIN apartment_owners o ON o.apartment_id = b.apartment_id
    WHERE b.id = ANY($1) ORDER BY b.id, o.user_id";
