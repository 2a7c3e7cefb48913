//! Events: what happened to a provider's bills and money, told to the provider as it happens.
//!
//! Triggers write one row per change in the transaction of the change (`sql/V24__events.sql`:
//! never one for a change that rolled back, never two for one), each with its deliveries to the
//! provider's webhook endpoints. From there:
//! - [`deliver`] sends the deliveries, signed as Standard Webhooks ([`webhooks`]), at least once,
//!   with a lease and backoff, to addresses the [`outbound`] guard allows;
//! - the `events` route reads the provider's [`feed`], to poll or replay;
//! - [`bus`] puts every event on the deployment's EventBridge bus, in the feed's order.
//!
//! The `events` job ([`crate::jobs::events`]) runs the senders and forgets events after
//! [`KEPT_DAYS`].

pub mod bus;
pub mod catalogue;
pub mod deliver;
pub mod feed;
pub mod outbound;
pub mod webhooks;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::types::{ParseError, ProviderId};

/// How long events are kept, and so how far back the feed and a replay reach.
pub const KEPT_DAYS: i32 = 30;

/// The version of every payload's schema: a field added keeps it; a field changed or removed
/// makes a new one.
pub const VERSION: u32 = 1;

macro_rules! types {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// What happened: one vocabulary for webhooks, the feed and the bus.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
        pub enum Type {
            $($(#[$doc])* #[serde(rename = $name)] $variant,)*
        }

        impl Type {
            pub const ALL: &[Type] = &[$(Type::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)*
                }
            }
        }
    };
}

types! {
    /// A provider's bill arrived.
    BillCreated => "bill.created",
    /// A provider voided a bill.
    BillVoided => "bill.voided",
    /// A bill went past its due date and grace days.
    BillOverdue => "bill.overdue",
    /// A bill was paid (one event per bill, naming its payment).
    BillPaid => "bill.paid",
    /// A late fee was charged on an overdue bill: a bill of its own.
    LateFeeCreated => "late_fee.created",
    /// A payment settled: one event per provider whose bills it paid, with that provider's part.
    PaymentSucceeded => "payment.succeeded",
    /// A card payment was declined or given up on; its bills are due again.
    PaymentFailed => "payment.failed",
    /// Money of a payment given back: one event per provider, with its part.
    RefundSucceeded => "refund.succeeded",
    /// A household linked one of the provider's accounts to its apartment.
    AccountLinked => "account.linked",
    /// A UTC day closed into the provider's settlement.
    SettlementClosed => "settlement.closed",
}

impl Type {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        Self::ALL
            .iter()
            .copied()
            .find(|t| t.as_str() == raw)
            .ok_or_else(|| {
                ParseError::new(format!(
                    "unknown event type `{raw}` (known: {})",
                    Self::ALL
                        .iter()
                        .map(|t| t.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }

    /// A list of types as a request names them: each known, none twice.
    pub fn parse_list(raw: &[String]) -> Result<Vec<Self>, ParseError> {
        let mut types = Vec::with_capacity(raw.len());
        for name in raw {
            let t = Self::parse(name)?;
            if types.contains(&t) {
                return Err(ParseError::new(format!(
                    "event type `{name}` is listed twice"
                )));
            }
            types.push(t);
        }
        Ok(types)
    }
}

/// One event as every consumer gets it: the body of a webhook, an item of the feed, the
/// `detail` of a bus event.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Event {
    /// The event's own id, never reused; `webhook-id` is `evt_` and this. The feed orders events
    /// by commit, which this may not follow.
    pub id: i64,
    #[serde(rename = "type")]
    pub kind: Type,
    /// When the change happened.
    pub timestamp: DateTime<Utc>,
    pub provider_id: ProviderId,
    /// The payload's schema version: a field added keeps it, a field changed or removed makes a
    /// new one.
    pub version: u32,
    /// The payload, as its type's schema in the catalogue says.
    pub data: Value,
}

impl Event {
    /// The event of a row with `id`, `type`, `provider_id`, `occurred_at` and `data`.
    pub fn from_row(row: &tokio_postgres::Row) -> anyhow::Result<Self> {
        let kind: &str = row.try_get("type")?;
        Ok(Self {
            id: row.try_get("id")?,
            kind: Type::parse(kind)?,
            timestamp: row.try_get("occurred_at")?,
            provider_id: ProviderId(row.try_get("provider_id")?),
            version: VERSION,
            data: row.try_get("data")?,
        })
    }

    /// Its id as a webhook's `webhook-id`, the same on every attempt and replay.
    pub fn message_id(&self) -> String {
        format!("evt_{}", self.id)
    }
}
