//! The payload of each event type, version 1: what `sql/V24__events.sql` writes, as types whose
//! JSON Schemas `qbill contract` writes into `docs/events.md`. [`check`] reads a
//! payload into its type, refusing a field the type does not name, so a test that reads every
//! event it made proves the triggers and the schemas agree.

use chrono::{DateTime, NaiveDate, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::Type;
use crate::contract;

/// The bill payloads: a bill as its provider sees it, and what the event adds.
macro_rules! bill_payload {
    ($(#[$doc:meta])* $name:ident { $($(#[$field_doc:meta])* pub $field:ident: $type:ty,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Serialize, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            pub bill_id: i64,
            /// The provider's own id for it (none for a late fee).
            pub external_id: Option<String>,
            /// The provider's account it was billed to.
            pub account_number: Option<String>,
            pub utility: String,
            #[schemars(with = "contract::Date")]
            pub period_start: NaiveDate,
            #[schemars(with = "contract::Date")]
            pub period_end: NaiveDate,
            #[schemars(with = "contract::Date")]
            pub due_date: NaiveDate,
            #[schemars(with = "contract::Amount")]
            pub amount: String,
            pub currency: String,
            /// `open`, `overdue`, `paid` or `void`, after the change.
            pub status: String,
            /// For a late fee: the bill it was charged on.
            pub late_fee_of: Option<i64>,
            $($(#[$field_doc])* pub $field: $type,)*
        }
    };
}

bill_payload! {
    /// `bill.created`, `bill.overdue` and `late_fee.created`: the bill.
    Bill {}
}

bill_payload! {
    /// `bill.voided`: the bill, and why.
    BillVoided {
        pub reason: Option<String>,
        pub voided_at: DateTime<Utc>,
    }
}

bill_payload! {
    /// `bill.paid`: the bill, and the payment that paid it.
    BillPaid {
        pub payment_id: Uuid,
    }
}

/// `payment.succeeded` and `payment.failed`: a payment's part for this provider.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Payment {
    pub payment_id: Uuid,
    /// This provider's bills in the payment.
    pub bills: Vec<i64>,
    /// What of the payment is for those bills.
    #[schemars(with = "contract::Amount")]
    pub amount: String,
    pub currency: String,
    /// The whole payment, every provider's bills.
    #[schemars(with = "contract::Amount")]
    pub payment_total: String,
    /// `succeeded`, `failed` or `canceled`.
    pub status: String,
    /// `card`, `external` (made elsewhere and recorded) or `ledger`.
    pub via: String,
    /// When it settled (`payment.succeeded`).
    #[serde(default)]
    pub paid_at: Option<DateTime<Utc>>,
    /// The processor's decline code (`payment.failed`).
    #[serde(default)]
    pub failure_code: Option<String>,
}

/// `refund.succeeded`: a refund's part for this provider.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Refund {
    pub refund_id: Uuid,
    pub payment_id: Uuid,
    /// This provider's part of the refund.
    #[schemars(with = "contract::Amount")]
    pub amount: String,
    pub currency: String,
    /// The whole refund, every provider's part.
    #[schemars(with = "contract::Amount")]
    pub refund_total: String,
    pub reason: String,
    pub succeeded_at: DateTime<Utc>,
    /// Whether the payment is now refunded whole (its bills are due again).
    pub payment_refunded_whole: bool,
}

/// `account.linked`: a household linked the provider's account to its apartment.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountLinked {
    pub account_number: String,
    pub linked_at: DateTime<Utc>,
}

/// `settlement.closed`: a UTC day's settlement in one currency (the `settlements` route's item).
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SettlementClosed {
    #[schemars(with = "contract::Date")]
    pub day: NaiveDate,
    pub currency: String,
    pub payments: i32,
    pub refunds_count: i32,
    #[schemars(with = "contract::Amount")]
    pub gross: String,
    #[schemars(with = "contract::Amount")]
    pub refunds: String,
    #[schemars(with = "contract::Amount")]
    pub fees: String,
    #[schemars(with = "contract::LineAmount")]
    pub net: String,
    #[schemars(with = "contract::Amount")]
    pub collected_elsewhere: String,
}

/// The JSON Schema of `kind`'s payload.
pub fn schema(kind: Type, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    match kind {
        Type::BillCreated | Type::BillOverdue | Type::LateFeeCreated => {
            generator.subschema_for::<Bill>()
        }
        Type::BillVoided => generator.subschema_for::<BillVoided>(),
        Type::BillPaid => generator.subschema_for::<BillPaid>(),
        Type::PaymentSucceeded | Type::PaymentFailed => generator.subschema_for::<Payment>(),
        Type::RefundSucceeded => generator.subschema_for::<Refund>(),
        Type::AccountLinked => generator.subschema_for::<AccountLinked>(),
        Type::SettlementClosed => generator.subschema_for::<SettlementClosed>(),
    }
}

/// Reads `data` as `kind`'s payload; an error names what does not fit.
pub fn check(kind: Type, data: &Value) -> Result<(), serde_json::Error> {
    fn read<T: serde::de::DeserializeOwned>(data: &Value) -> Result<(), serde_json::Error> {
        T::deserialize(data).map(|_| ())
    }
    match kind {
        Type::BillCreated | Type::BillOverdue | Type::LateFeeCreated => read::<Bill>(data),
        Type::BillVoided => read::<BillVoided>(data),
        Type::BillPaid => read::<BillPaid>(data),
        Type::PaymentSucceeded | Type::PaymentFailed => read::<Payment>(data),
        Type::RefundSucceeded => read::<Refund>(data),
        Type::AccountLinked => read::<AccountLinked>(data),
        Type::SettlementClosed => read::<SettlementClosed>(data),
    }
}
