//! What a PDF template reads from `/data.json`: the document with every amount, day and instant
//! formatted for people here in Rust, next to the plain value it came from, so the templates only
//! lay text out. Ids travel as strings and are printed as they are.

use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

use super::super::{Bill, Document, EntryKind, ProviderAccount, Receipt, Statement};
use crate::format;
use crate::types::amount_string;

/// The top of every document, then its own part.
#[derive(Debug, Serialize)]
pub(super) struct View<'a> {
    /// `receipt`, `bill` or `statement`.
    kind: &'static str,
    /// `Receipt`, `Bill` or `Statement`.
    pub title: &'static str,
    /// Which receipt, bill or statement: `payment 8a6e0f4e-…`, `bill 100042`,
    /// `1 Dec 2025 – 30 Nov 2026`.
    pub subject: String,
    /// Whose document: `Apartment 12`, `Provider 1`.
    owner_label: String,
    /// The same in the footer: `apartment 12`, `provider 1`.
    owner_ref: String,
    /// The apartment's address, the provider's name.
    address: &'a str,
    currency: &'a str,
    #[serde(flatten)]
    part: Part<'a>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Part<'a> {
    Receipt(ReceiptView<'a>),
    Bill(BillView<'a>),
    Statement(StatementView<'a>),
    Settlement(SettlementView),
}

/// An amount: `value` as the contract carries it (`-1234.50`), `text` for people (`-€1,234.50`).
#[derive(Debug, Serialize)]
struct Money {
    value: String,
    text: String,
}

impl Money {
    fn new(amount: Decimal, currency: &str) -> Self {
        Self {
            value: amount_string(amount),
            text: format::money(amount, currency),
        }
    }
}

#[derive(Debug, Serialize)]
struct ReceiptView<'a> {
    payment_id: String,
    paid_at: String,
    paid_at_text: String,
    total: Money,
    bills: Vec<ReceiptBillView<'a>>,
}

#[derive(Debug, Serialize)]
struct ReceiptBillView<'a> {
    bill_id: String,
    utility: &'a str,
    provider: &'a str,
    period_text: String,
    amount: Money,
}

#[derive(Debug, Serialize)]
struct BillView<'a> {
    bill_id: String,
    provider: &'a str,
    account_number: Option<&'a str>,
    utility: &'a str,
    period_text: String,
    issued_text: String,
    due_text: String,
    /// `open`, `overdue`, `paid` or `void`.
    status: &'a str,
    late_fee_of: Option<String>,
    payment_id: Option<String>,
    total: Money,
    lines: Vec<LineView<'a>>,
}

#[derive(Debug, Serialize)]
struct LineView<'a> {
    description: &'a str,
    quantity: Option<&'a str>,
    /// With the currency and every place the provider gave; as sent if it is not a decimal.
    unit_price_text: Option<String>,
    amount: Money,
}

#[derive(Debug, Serialize)]
struct StatementView<'a> {
    from_text: String,
    to_text: String,
    /// For the date column: `1 Dec 2025`.
    from_short: String,
    to_short: String,
    opening: Money,
    charged: Money,
    credited: Money,
    paid: Money,
    closing: Money,
    providers: Vec<AccountView<'a>>,
}

#[derive(Debug, Serialize)]
struct AccountView<'a> {
    provider: &'a str,
    opening: Money,
    charged: Money,
    credited: Money,
    paid: Money,
    closing: Money,
    entries: Vec<EntryView<'a>>,
}

#[derive(Debug, Serialize)]
struct EntryView<'a> {
    date_text: String,
    /// `bill 100042`, `void of bill 100042`, `payment 8a6e0f4e-…`.
    reference_text: String,
    description: &'a str,
    amount: Money,
    balance: Money,
}

impl<'a> View<'a> {
    pub fn new(document: &'a Document) -> Self {
        match document {
            Document::Receipt(r) => receipt(r),
            Document::Bill(b) => bill(b),
            Document::Statement(s) => statement(s),
            Document::Settlement(s) => settlement(s),
        }
    }
}

fn receipt(r: &Receipt) -> View<'_> {
    let currency = r.currency.as_str();
    View {
        kind: "receipt",
        title: "Receipt",
        subject: format!("payment {}", r.payment_id),
        owner_label: format!("Apartment {}", r.apartment.id),
        owner_ref: format!("apartment {}", r.apartment.id),
        address: &r.apartment.address,
        currency,
        part: Part::Receipt(ReceiptView {
            payment_id: r.payment_id.to_string(),
            paid_at: instant(r.paid_at),
            paid_at_text: format::time(r.paid_at),
            total: Money::new(r.total, currency),
            bills: r
                .bills
                .iter()
                .map(|b| ReceiptBillView {
                    bill_id: b.bill_id.to_string(),
                    utility: &b.utility,
                    provider: &b.provider,
                    period_text: format::period(b.period_start, b.period_end),
                    amount: Money::new(b.amount, currency),
                })
                .collect(),
        }),
    }
}

fn bill(b: &Bill) -> View<'_> {
    let currency = b.currency.as_str();
    View {
        kind: "bill",
        title: "Bill",
        subject: format!("bill {}", b.bill_id),
        owner_label: format!("Apartment {}", b.apartment.id),
        owner_ref: format!("apartment {}", b.apartment.id),
        address: &b.apartment.address,
        currency,
        part: Part::Bill(BillView {
            bill_id: b.bill_id.to_string(),
            provider: &b.provider,
            account_number: b.account_number.as_deref(),
            utility: &b.utility,
            period_text: format::period(b.period_start, b.period_end),
            issued_text: format::day(b.issued_at.date_naive()),
            due_text: format::day(b.due_date),
            status: &b.status,
            late_fee_of: b.late_fee_of.map(|id| id.to_string()),
            payment_id: b.payment_id.map(|id| id.to_string()),
            total: Money::new(b.total, currency),
            lines: b
                .lines
                .iter()
                .map(|l| LineView {
                    description: &l.description,
                    quantity: l.quantity.as_deref(),
                    unit_price_text: l
                        .unit_price
                        .as_deref()
                        .map(|p| format::unit_price(p, currency).unwrap_or_else(|| p.to_owned())),
                    amount: Money::new(l.amount, currency),
                })
                .collect(),
        }),
    }
}

fn statement(s: &Statement) -> View<'_> {
    let currency = s.currency.as_str();
    let money = |amount| Money::new(amount, currency);
    View {
        kind: "statement",
        title: "Statement",
        subject: format!(
            "{} – {}",
            format::short_day(s.from),
            format::short_day(s.to)
        ),
        owner_label: format!("Apartment {}", s.apartment.id),
        owner_ref: format!("apartment {}", s.apartment.id),
        address: &s.apartment.address,
        currency,
        part: Part::Statement(StatementView {
            from_text: format::day(s.from),
            to_text: format::day(s.to),
            from_short: format::short_day(s.from),
            to_short: format::short_day(s.to),
            opening: money(s.opening),
            charged: money(s.charged),
            credited: money(s.credited),
            paid: money(s.paid),
            closing: money(s.closing),
            providers: s.providers.iter().map(|a| account(a, currency)).collect(),
        }),
    }
}

fn account<'a>(a: &'a ProviderAccount, currency: &str) -> AccountView<'a> {
    let money = |amount| Money::new(amount, currency);
    AccountView {
        provider: &a.provider,
        opening: money(a.opening),
        charged: money(a.charged),
        credited: money(a.credited),
        paid: money(a.paid),
        closing: money(a.closing),
        entries: a
            .entries
            .iter()
            .map(|e| EntryView {
                date_text: format::short_day(e.at.date_naive()),
                reference_text: match e.kind {
                    EntryKind::Bill => format!("bill {}", e.reference),
                    EntryKind::Void => format!("void of bill {}", e.reference),
                    EntryKind::Payment => format!("payment {}", e.reference),
                    EntryKind::Refund => format!("refund {}", short(&e.reference)),
                    EntryKind::Credit => format!("credit {}", short(&e.reference)),
                },
                description: &e.description,
                amount: money(e.amount),
                balance: money(e.balance),
            })
            .collect(),
    }
}

/// RFC 3339 in UTC to the second: `2026-12-03T14:05:09Z`.
pub(super) fn instant(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[derive(Debug, Serialize)]
struct SettlementView {
    from_text: String,
    to_text: String,
    /// By currency.
    totals: Vec<SettlementTotalsView>,
    days: Vec<SettlementDayView>,
}

#[derive(Debug, Serialize)]
struct SettlementTotalsView {
    currency: String,
    payments: String,
    refunds_count: String,
    gross: Money,
    refunds: Money,
    fees: Money,
    net: Money,
    /// Gross less refunds: what the lines' amounts add up to.
    moved: Money,
    collected_elsewhere: Money,
    /// What qbill pays out: net less what the provider collected itself.
    payout: Money,
}

#[derive(Debug, Serialize)]
struct SettlementDayView {
    day_text: String,
    totals: SettlementTotalsView,
    lines: Vec<SettlementLineView>,
}

#[derive(Debug, Serialize)]
struct SettlementLineView {
    time_text: String,
    /// `payment 8a6e0f4e`, `refund 5b1e0f4e of payment 8a6e0f4e`.
    what: String,
    via: String,
    amount: Money,
    fee: Money,
    net: Money,
}

fn settlement_totals(t: &crate::documents::SettlementTotals) -> SettlementTotalsView {
    let money = |amount| Money::new(amount, &t.currency);
    SettlementTotalsView {
        currency: t.currency.clone(),
        payments: t.payments.to_string(),
        refunds_count: t.refunds_count.to_string(),
        gross: money(t.gross),
        refunds: money(t.refunds),
        fees: money(t.fees),
        net: money(t.net),
        moved: money(t.gross - t.refunds),
        collected_elsewhere: money(t.collected_elsewhere),
        payout: money(t.net - t.collected_elsewhere),
    }
}

fn settlement(s: &crate::documents::Settlement) -> View<'_> {
    View {
        kind: "settlement",
        title: "Settlement",
        subject: format!(
            "{} – {}",
            format::short_day(s.from),
            format::short_day(s.to)
        ),
        owner_label: format!("Provider {}", s.provider_id),
        owner_ref: format!("provider {}", s.provider_id),
        address: &s.provider,
        currency: s.totals.first().map_or("", |t| t.currency.as_str()),
        part: Part::Settlement(SettlementView {
            from_text: format::day(s.from),
            to_text: format::day(s.to),
            totals: s.totals.iter().map(settlement_totals).collect(),
            days: s
                .days
                .iter()
                .map(|d| SettlementDayView {
                    day_text: format::day(d.day),
                    totals: settlement_totals(&d.totals),
                    lines: d
                        .lines
                        .iter()
                        .map(|l| {
                            let money = |amount| Money::new(amount, &d.totals.currency);
                            SettlementLineView {
                                time_text: l.at.format("%H:%M").to_string(),
                                what: match l.refund_id {
                                    Some(refund) => format!(
                                        "refund {} of payment {}",
                                        short(&refund.to_string()),
                                        short(&l.payment_id.to_string())
                                    ),
                                    None => format!("payment {}", short(&l.payment_id.to_string())),
                                },
                                via: l.via.clone(),
                                amount: money(if l.kind == "refund" {
                                    -l.amount
                                } else {
                                    l.amount
                                }),
                                fee: money(l.fee),
                                net: money(l.net()),
                            }
                        })
                        .collect(),
                })
                .collect(),
        }),
    }
}

/// The start of a refund's id, as a reference fits a statement's column (the CSV has it whole).
fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}
