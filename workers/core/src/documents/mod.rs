//! Documents people keep: a payment's receipt, a provider's bill, an apartment's statement, as
//! PDF or CSV. What each holds is read from the database ([`load`]); [`render`] turns it into
//! bytes; [`store`] keeps them in S3 and hands out presigned links; [`issue`] ties the three and
//! makes a document immutable: the same subject and format give the same bytes, once.

pub mod load;
pub mod render;
pub mod sample;
pub mod store;

use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::Object;
use rust_decimal::Decimal;
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::{ErrorCode, HandlerError};
use crate::types::{ApartmentId, BillId, Currency, ProviderId, UserId, amount};
pub use store::{Files, Link};

/// What a document is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// A payment's receipt.
    Receipt(Uuid),
    /// A bill, as it stands.
    Bill(BillId),
    /// The apartment's account over whole UTC days, both included.
    Statement { from: NaiveDate, to: NaiveDate },
    /// A provider's settlements over closed UTC days, both included.
    Settlement { from: NaiveDate, to: NaiveDate },
}

/// Whose documents: an apartment's (receipts, bills, statements) or a provider's (settlements).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Apartment(ApartmentId),
    Provider(ProviderId),
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Apartment(id) => write!(f, "apartment {id}"),
            Self::Provider(id) => write!(f, "provider {id}"),
        }
    }
}

impl Subject {
    pub fn kind(self) -> Kind {
        match self {
            Self::Receipt(_) => Kind::Receipt,
            Self::Bill(_) => Kind::Bill,
            Self::Statement { .. } => Kind::Statement,
            Self::Settlement { .. } => Kind::Settlement,
        }
    }
}

/// The reply's data of the document routes, kind `document`: the document as issued, with a
/// presigned link to it.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct DocumentData {
    pub document_id: Uuid,
    pub kind: Kind,
    pub format: Format,
    /// A presigned GET of the file.
    pub url: String,
    pub expires_at: DateTime<Utc>,
    /// Of the file's bytes, in hex.
    pub sha256: String,
    pub bytes: i64,
    pub created_at: DateTime<Utc>,
}

impl DocumentData {
    /// `issued`, with a fresh link to its file.
    pub async fn linked(files: &Files, issued: &Issued) -> Result<Self, HandlerError> {
        let link = files
            .link(&issued.object_key, files.config.url_lifetime)
            .await
            .map_err(HandlerError::Transient)?;
        Ok(Self {
            document_id: issued.id,
            kind: issued.kind,
            format: issued.format,
            url: link.url,
            expires_at: link.expires_at,
            sha256: crate::types::hex(&issued.sha256),
            bytes: issued.bytes,
            created_at: issued.created_at,
        })
    }
}

/// A document as issued: what the reply and the receipt mail tell of it.
#[derive(Debug, Clone)]
pub struct Issued {
    pub id: Uuid,
    pub kind: Kind,
    pub format: Format,
    pub object_key: String,
    pub sha256: [u8; 32],
    pub bytes: i64,
    pub created_at: DateTime<Utc>,
}

/// The document of `subject` in `format` for `apartment`, issued now if it was not before: read
/// what it holds, render it, store the file, record it. The same subject and format give the
/// same document whoever asks and however often, and two requests at once issue it once (they
/// take turns on a lock named after it). A bill's subject is the bill in its current status: a
/// bill paid since its document was issued gets a new one; the old one stays as it was.
///
/// `NotFound` when the apartment has no such payment or bill. The caller checked that `user` may
/// read the apartment.
pub async fn issue(
    files: &Files,
    client: &mut Object,
    owner: Owner,
    user: UserId,
    subject: Subject,
    format: Format,
) -> Result<Issued, HandlerError> {
    let tx = client.transaction().await?;
    let missing = |what: String| {
        HandlerError::rejected(ErrorCode::NotFound, format!("{owner} has no {what}"))
    };
    let (document, canonical) = match (owner, subject) {
        (Owner::Provider(provider), Subject::Settlement { from, to }) => (
            Document::Settlement(
                load::settlement(&tx, provider, from, to)
                    .await?
                    .ok_or_else(|| missing("such provider".to_owned()))?,
            ),
            format!("{from}/{to}"),
        ),
        (Owner::Provider(_), _) | (Owner::Apartment(_), Subject::Settlement { .. }) => {
            return Err(HandlerError::internal(anyhow::anyhow!(
                "{owner} has no {} documents",
                subject.kind().as_str()
            )));
        }
        (Owner::Apartment(apartment), Subject::Receipt(payment)) => {
            let receipt = load::receipt(&tx, apartment, payment)
                .await?
                .ok_or_else(|| missing(format!("payment {payment}")))?;
            (Document::Receipt(receipt), payment.to_string())
        }
        (Owner::Apartment(apartment), Subject::Bill(bill)) => {
            let loaded = load::bill(&tx, apartment, bill)
                .await?
                .ok_or_else(|| missing(format!("bill {bill}")))?;
            let canonical = format!("{bill}:{}", loaded.status);
            (Document::Bill(loaded), canonical)
        }
        (Owner::Apartment(apartment), Subject::Statement { from, to }) => (
            Document::Statement(load::statement(&tx, apartment, from, to).await?),
            format!("{from}/{to}"),
        ),
    };
    let kind = subject.kind();
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&format!(
            "document {owner} {} {} {canonical}",
            kind.as_str(),
            format.as_str()
        )],
    )
    .await?;
    let (apartment_id, provider_id) = match owner {
        Owner::Apartment(a) => (Some(a.0), None),
        Owner::Provider(p) => (None, Some(p.0)),
    };
    const FOUND: &str = "SELECT id, object_key, sha256, bytes, created_at FROM documents
                         WHERE (apartment_id = $1 OR provider_id = $2) AND kind = $3 AND format = $4 AND subject = $5";
    let found = tx
        .query_opt(
            FOUND,
            &[
                &apartment_id,
                &provider_id,
                &kind.as_str(),
                &format.as_str(),
                &canonical,
            ],
        )
        .await?;
    if let Some(row) = found {
        tx.commit().await?;
        return issued(kind, format, &row);
    }
    if let Owner::Apartment(apartment) = owner
        && kind == Kind::Statement
    {
        bound_statements(&tx, apartment).await?;
    }

    let bytes = tokio::task::spawn_blocking(move || render::render(&document, format))
        .await
        .map_err(HandlerError::internal)?
        .map_err(HandlerError::internal)?;
    let sha256: [u8; 32] = Sha256::digest(&bytes).into();
    let id = Uuid::new_v4();
    let object_key = match owner {
        Owner::Apartment(apartment) => format!("documents/{apartment}/{id}.{}", format.as_str()),
        Owner::Provider(provider) => {
            format!("documents/providers/{provider}/{id}.{}", format.as_str())
        }
    };
    let filename = format!(
        "qbill-{}-{}.{}",
        kind.as_str(),
        canonical.replace([':', '/'], "_"),
        format.as_str()
    );
    let size = bytes.len() as i64;
    files
        .put(
            &object_key,
            bytes,
            &sha256,
            format.content_type(),
            &filename,
        )
        .await
        .map_err(HandlerError::Transient)?;
    tx.execute(
        "SELECT set_config('qbill.actor', $1, true)",
        &[&user.0.to_string()],
    )
    .await?;
    let row = tx
        .query_one(
            "INSERT INTO documents (id, apartment_id, provider_id, kind, format, subject, object_key, sha256, bytes, created_by)
             VALUES ($1, $2, $10, $3, $4, $5, $6, $7, $8, $9)
             RETURNING id, object_key, sha256, bytes, created_at",
            &[
                &id,
                &apartment_id,
                &kind.as_str(),
                &format.as_str(),
                &canonical,
                &object_key,
                &sha256.as_slice(),
                &size,
                &user.0,
                &provider_id,
            ],
        )
        .await?;
    tx.commit().await?;
    tracing::info!(document.id = %id, document.kind = kind.as_str(), document.format = format.as_str(), document.bytes = size, "document issued");
    issued(kind, format, &row)
}

/// New statements of one apartment a day. Receipts and bills are bounded by the payments and
/// bills there are; a statement's window is anyone's choice, and each new one is a new file kept
/// in S3, so each apartment gets this many new windows a day (asking again for one issued already
/// is free).
pub const NEW_STATEMENTS_PER_DAY: i64 = 20;

/// Refuses a new statement of `apartment` once [`NEW_STATEMENTS_PER_DAY`] were issued in the last
/// day; new statements of one apartment take turns, so concurrent ones cannot pass the bound.
async fn bound_statements(
    tx: &tokio_postgres::Transaction<'_>,
    apartment: ApartmentId,
) -> Result<(), HandlerError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&format!("new statements of {apartment}")],
    )
    .await?;
    let issued: i64 = tx
        .query_one(
            "SELECT count(*) FROM documents
             WHERE apartment_id = $1 AND kind = 'statement' AND created_at > now() - interval '1 day'",
            &[&apartment.0],
        )
        .await?
        .get(0);
    if issued >= NEW_STATEMENTS_PER_DAY {
        return Err(HandlerError::rejected(
            ErrorCode::Forbidden,
            format!(
                "apartment {apartment} had {NEW_STATEMENTS_PER_DAY} new statements in the last day; \
                 ask again tomorrow, or for a statement issued already"
            ),
        ));
    }
    Ok(())
}

fn issued(kind: Kind, format: Format, row: &tokio_postgres::Row) -> Result<Issued, HandlerError> {
    let sha256: &[u8] = row.get("sha256");
    Ok(Issued {
        id: row.get("id"),
        kind,
        format,
        object_key: row.get("object_key"),
        sha256: sha256.try_into().map_err(HandlerError::internal)?,
        bytes: row.get("bytes"),
        created_at: row.get("created_at"),
    })
}

/// Which document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[schemars(rename = "DocumentKind")]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Receipt,
    Bill,
    Statement,
    Settlement,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Receipt => "receipt",
            Self::Bill => "bill",
            Self::Statement => "statement",
            Self::Settlement => "settlement",
        }
    }
}

/// In which form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[schemars(rename = "DocumentFormat")]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Pdf,
    Csv,
    /// A spreadsheet (Office Open XML) with typed cells: statements and settlements.
    Xlsx,
}

impl Format {
    /// The format named `raw` (`pdf`, `csv`, `xlsx`), or why not.
    pub fn parse(raw: &str) -> Result<Self, crate::types::ParseError> {
        match raw {
            "pdf" => Ok(Self::Pdf),
            "csv" => Ok(Self::Csv),
            "xlsx" => Ok(Self::Xlsx),
            other => Err(crate::types::ParseError::new(format!(
                "`format` must be pdf, csv or xlsx, not {other:?}"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pdf => "pdf",
            Self::Csv => "csv",
            Self::Xlsx => "xlsx",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Pdf => "application/pdf",
            Self::Csv => "text/csv; charset=utf-8; header=present",
            Self::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
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
    Settlement(Settlement),
}

impl Document {
    pub fn kind(&self) -> Kind {
        match self {
            Self::Receipt(_) => Kind::Receipt,
            Self::Bill(_) => Kind::Bill,
            Self::Statement(_) => Kind::Statement,
            Self::Settlement(_) => Kind::Settlement,
        }
    }
}

/// A provider's settlements over closed UTC days, `from` to `to` (both included), with every
/// line.
#[derive(Debug, Clone, Serialize)]
pub struct Settlement {
    pub provider_id: ProviderId,
    pub provider: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// The days with activity, oldest first (then by currency).
    pub days: Vec<SettlementDay>,
    /// Sums over the days, by currency.
    pub totals: Vec<SettlementTotals>,
}

/// What a settlement sums.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SettlementTotals {
    pub currency: String,
    pub payments: i64,
    pub refunds_count: i64,
    #[serde(with = "amount")]
    pub gross: Decimal,
    #[serde(with = "amount")]
    pub refunds: Decimal,
    #[serde(with = "amount")]
    pub fees: Decimal,
    #[serde(with = "amount")]
    pub net: Decimal,
    #[serde(with = "amount")]
    pub collected_elsewhere: Decimal,
}

/// One provider's day in one currency.
#[derive(Debug, Clone, Serialize)]
pub struct SettlementDay {
    pub day: NaiveDate,
    #[serde(flatten)]
    pub totals: SettlementTotals,
    /// In time order.
    pub lines: Vec<SettlementLine>,
}

/// A payment's part for the provider, or a refund's.
#[derive(Debug, Clone, Serialize)]
pub struct SettlementLine {
    pub at: DateTime<Utc>,
    /// `payment` or `refund`.
    pub kind: String,
    pub payment_id: Uuid,
    pub refund_id: Option<Uuid>,
    /// `card`, `external` or `ledger`.
    pub via: String,
    /// Positive; a refund's is given back.
    #[serde(with = "amount")]
    pub amount: Decimal,
    #[serde(with = "amount")]
    pub fee: Decimal,
}

impl SettlementLine {
    /// What the line adds to the net: a payment's part less its fee, a refund taken off.
    pub fn net(&self) -> Decimal {
        if self.kind == "refund" {
            -self.amount
        } else {
            self.amount - self.fee
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

impl Statement {
    /// The statement of these providers' accounts, with its sums over them.
    pub fn new(
        apartment: Apartment,
        currency: Currency,
        from: NaiveDate,
        to: NaiveDate,
        providers: Vec<ProviderAccount>,
    ) -> Self {
        let sum = |f: fn(&ProviderAccount) -> Decimal| providers.iter().map(f).sum::<Decimal>();
        Self {
            apartment,
            currency,
            from,
            to,
            opening: sum(|a| a.opening),
            charged: sum(|a| a.charged),
            credited: sum(|a| a.credited),
            paid: sum(|a| a.paid),
            closing: sum(|a| a.closing),
            providers,
        }
    }
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
    /// The bill's id (bills, voids), the payment's (payments) or the refund's (refunds, credits).
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
    /// Money of a payment given back (its part for this provider): owed more, unless a credit
    /// goes with it.
    Refund,
    /// What a partial refund takes off the bills it gave money back for: the bills stay paid.
    Credit,
}
