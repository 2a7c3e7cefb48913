//! Documents people keep: a payment's receipt, a provider's bill, an apartment's statement, as
//! PDF or CSV. What each holds is read from the database ([`load`]); [`render`] turns it into
//! bytes; [`store`] keeps them in S3 and hands out presigned links; [`issue`] ties the three and
//! makes a document immutable: the same subject and format give the same bytes, once.

pub mod render;
pub mod sample;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use uuid::Uuid;

use crate::types::{ApartmentId, BillId, Currency, amount};

/// Which document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Receipt,
    Bill,
    Statement,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Receipt => "receipt",
            Self::Bill => "bill",
            Self::Statement => "statement",
        }
    }
}

/// In which form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Pdf,
    Csv,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pdf => "pdf",
            Self::Csv => "csv",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Pdf => "application/pdf",
            Self::Csv => "text/csv; charset=utf-8; header=present",
        }
    }
}

/// A document's contents, as read from the database.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Document {
    Receipt(Receipt),
    Bill(Bill),
    Statement(Statement),
}

impl Document {
    pub fn kind(&self) -> Kind {
        match self {
            Self::Receipt(_) => Kind::Receipt,
            Self::Bill(_) => Kind::Bill,
            Self::Statement(_) => Kind::Statement,
        }
    }
}

/// The apartment a document is about.
#[derive(Debug, Clone, Serialize)]
pub struct Apartment {
    pub id: ApartmentId,
    pub address: String,
}

/// A payment's receipt.
#[derive(Debug, Clone, Serialize)]
pub struct Receipt {
    pub apartment: Apartment,
    pub payment_id: Uuid,
    pub paid_at: DateTime<Utc>,
    pub currency: Currency,
    #[serde(with = "amount")]
    pub total: Decimal,
    /// In bill id order.
    pub bills: Vec<ReceiptBill>,
}

/// A bill a payment settled.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiptBill {
    pub bill_id: BillId,
    /// As people read it: `cold water`, not `cold_water`.
    pub utility: String,
    pub provider: String,
    pub period_start: NaiveDate,
    pub period_end: NaiveDate,
    #[serde(with = "amount")]
    pub amount: Decimal,
}

/// A provider's bill, as it stands when the document is issued.
#[derive(Debug, Clone, Serialize)]
pub struct Bill {
    pub apartment: Apartment,
    pub bill_id: BillId,
    pub provider: String,
    /// The provider's account number; none for seeded bills and late fees of them.
    pub account_number: Option<String>,
    pub utility: String,
    pub period_start: NaiveDate,
    pub period_end: NaiveDate,
    pub due_date: NaiveDate,
    pub issued_at: DateTime<Utc>,
    /// `open`, `overdue`, `paid` or `void`.
    pub status: String,
    pub currency: Currency,
    #[serde(with = "amount")]
    pub total: Decimal,
    /// For a late fee: the bill it is charged on.
    pub late_fee_of: Option<BillId>,
    /// For a paid bill: the payment that settled it.
    pub payment_id: Option<Uuid>,
    /// As the provider itemised it; a bill sent without lines has one, its utility and period.
    pub lines: Vec<BillLine>,
}

/// A line of a bill: decimals as the provider sent them (quantities and unit prices of up to six
/// places), the amount negative for a credit.
#[derive(Debug, Clone, Serialize)]
pub struct BillLine {
    pub description: String,
    pub quantity: Option<String>,
    pub unit_price: Option<String>,
    #[serde(with = "amount")]
    pub amount: Decimal,
}

/// An apartment's account over whole past days, `from` to `to` (both included, UTC days).
#[derive(Debug, Clone, Serialize)]
pub struct Statement {
    pub apartment: Apartment,
    pub currency: Currency,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// Every provider with a balance or an entry in the window, by name.
    pub providers: Vec<ProviderAccount>,
    /// Sums over the providers.
    #[serde(with = "amount")]
    pub opening: Decimal,
    #[serde(with = "amount")]
    pub charged: Decimal,
    #[serde(with = "amount")]
    pub credited: Decimal,
    #[serde(with = "amount")]
    pub paid: Decimal,
    #[serde(with = "amount")]
    pub closing: Decimal,
}

/// One provider's part of a statement: what was owed at the start, what happened, what is owed
/// at the end (`closing = opening + charged - credited - paid`).
#[derive(Debug, Clone, Serialize)]
pub struct ProviderAccount {
    pub provider: String,
    #[serde(with = "amount")]
    pub opening: Decimal,
    #[serde(with = "amount")]
    pub charged: Decimal,
    #[serde(with = "amount")]
    pub credited: Decimal,
    #[serde(with = "amount")]
    pub paid: Decimal,
    #[serde(with = "amount")]
    pub closing: Decimal,
    /// In time order (then bill id order).
    pub entries: Vec<Entry>,
}

/// A change of what is owed to one provider.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub at: DateTime<Utc>,
    pub kind: EntryKind,
    /// The bill's id (bills, voids) or the payment's (payments).
    pub reference: String,
    /// For people: `electricity, 1 Nov – 30 Nov 2026`, `bill 100042 voided`, `payment of bills
    /// 100042, 100043`.
    pub description: String,
    /// Positive: owed more (a bill); negative: owed less (a void, a payment).
    #[serde(with = "amount")]
    pub amount: Decimal,
    /// What was owed to this provider after the entry.
    #[serde(with = "amount")]
    pub balance: Decimal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A bill issued to the apartment.
    Bill,
    /// A bill its provider voided.
    Void,
    /// The part of a payment that settled this provider's bills.
    Payment,
}
