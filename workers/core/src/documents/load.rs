//! What a document holds, read from the database: `None` when the apartment has no such payment
//! or bill, or there is no such provider.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::GenericClient;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::{
    Apartment, Bill, BillLine, Entry, EntryKind, ProviderAccount, Receipt, ReceiptBill, Settlement,
    SettlementDay, SettlementLine, SettlementTotals, Statement,
};
use crate::error::HandlerError;
use crate::format::period;
use crate::types::{ApartmentId, BillId, Currency, ProviderId};

/// The apartment and its currency.
async fn apartment(
    client: &impl GenericClient,
    id: ApartmentId,
) -> Result<(Apartment, Currency), HandlerError> {
    let row = client
        .query_one(
            "SELECT address, currency FROM apartments WHERE id = $1",
            &[&id.0],
        )
        .await?;
    let currency = Currency::parse(row.get("currency")).map_err(HandlerError::internal)?;
    Ok((
        Apartment {
            id,
            address: row.get("address"),
        },
        currency,
    ))
}

/// A utility as people read it: `cold water`, not `cold_water`.
fn utility(code: &str) -> String {
    code.replace('_', " ")
}

/// The receipt of payment `payment`, if it was made for `apartment`.
pub async fn receipt(
    client: &impl GenericClient,
    apartment_id: ApartmentId,
    payment: Uuid,
) -> Result<Option<Receipt>, HandlerError> {
    let Some(row) = client
        .query_opt(
            "SELECT paid_at, total, currency FROM payments WHERE id = $1 AND apartment_id = $2",
            &[&payment, &apartment_id.0],
        )
        .await?
    else {
        return Ok(None);
    };
    let (apartment, _) = apartment(client, apartment_id).await?;
    let bills = client
        .query(
            "SELECT b.id, b.utility, v.name AS provider, b.period_start, b.period_end, b.amount
             FROM bills b JOIN providers v ON v.id = b.provider_id
             WHERE b.payment_id = $1 ORDER BY b.id",
            &[&payment],
        )
        .await?
        .iter()
        .map(|r| ReceiptBill {
            bill_id: BillId(r.get("id")),
            utility: utility(r.get("utility")),
            provider: r.get("provider"),
            period_start: r.get("period_start"),
            period_end: r.get("period_end"),
            amount: r.get("amount"),
        })
        .collect();
    Ok(Some(Receipt {
        apartment,
        payment_id: payment,
        paid_at: row.get("paid_at"),
        currency: Currency::parse(row.get("currency")).map_err(HandlerError::internal)?,
        total: row.get("total"),
        bills,
    }))
}

/// Bill `bill` as it stands, if it is a bill of `apartment`.
pub async fn bill(
    client: &impl GenericClient,
    apartment_id: ApartmentId,
    bill: BillId,
) -> Result<Option<Bill>, HandlerError> {
    let Some(row) = client
        .query_opt(
            "SELECT v.name AS provider, s.account_number, b.utility, b.period_start, b.period_end, b.due_date,
                    b.issued_at, b.status, b.currency, b.amount, b.late_fee_of, b.payment_id, b.lines
             FROM bills b JOIN providers v ON v.id = b.provider_id
                  LEFT JOIN service_accounts s ON s.id = b.account_id
             WHERE b.id = $1 AND b.apartment_id = $2",
            &[&bill.0, &apartment_id.0],
        )
        .await?
    else {
        return Ok(None);
    };
    let (apartment, _) = apartment(client, apartment_id).await?;
    let code: String = row.get("utility");
    let (period_start, period_end, total): (NaiveDate, NaiveDate, Decimal) = (
        row.get("period_start"),
        row.get("period_end"),
        row.get("amount"),
    );
    let lines = match row.get::<_, Option<serde_json::Value>>("lines") {
        Some(lines) => serde_json::from_value::<Vec<StoredLine>>(lines)
            .map_err(HandlerError::internal)?
            .into_iter()
            .map(|l| {
                Ok(BillLine {
                    description: l.description,
                    quantity: Some(l.quantity),
                    unit_price: Some(l.unit_price),
                    amount: l.amount.parse().map_err(HandlerError::internal)?,
                })
            })
            .collect::<Result<Vec<_>, HandlerError>>()?,
        None => vec![BillLine {
            description: format!("{}, {}", utility(&code), period(period_start, period_end)),
            quantity: None,
            unit_price: None,
            amount: total,
        }],
    };
    Ok(Some(Bill {
        apartment,
        bill_id: bill,
        provider: row.get("provider"),
        account_number: row.get("account_number"),
        utility: utility(&code),
        period_start,
        period_end,
        due_date: row.get("due_date"),
        issued_at: row.get("issued_at"),
        status: row.get("status"),
        currency: Currency::parse(row.get("currency")).map_err(HandlerError::internal)?,
        total,
        late_fee_of: row.get::<_, Option<i64>>("late_fee_of").map(BillId),
        payment_id: row.get("payment_id"),
        lines,
    }))
}

/// A line as `bills.lines` keeps it (the provider's strings).
#[derive(serde::Deserialize)]
struct StoredLine {
    description: String,
    quantity: String,
    unit_price: String,
    amount: String,
}

/// Every change of what the apartment owes, before `until`, by provider: bills issued, bills
/// voided, each payment's part for each provider, and each refund's (money given back; a refund
/// of a payment not refunded whole comes with its credit, since its bills stay paid). In time
/// order, then bills before voids before payments before refunds before credits, then by
/// reference.
const CHANGES: &str = "
    SELECT v.name AS provider, b.issued_at AS at, 0 AS kind, b.id::text AS reference, b.amount,
           b.utility, b.period_start, b.period_end, b.late_fee_of, NULL::text AS bills
    FROM bills b JOIN providers v ON v.id = b.provider_id
    WHERE b.apartment_id = $1 AND b.issued_at < $2
    UNION ALL
    SELECT v.name, b.voided_at, 1, b.id::text, -b.amount, b.utility, b.period_start, b.period_end,
           b.late_fee_of, NULL
    FROM bills b JOIN providers v ON v.id = b.provider_id
    WHERE b.apartment_id = $1 AND b.voided_at < $2
    UNION ALL
    SELECT v.name, p.paid_at, 2, p.id::text, -sum(b.amount), NULL, NULL, NULL, NULL,
           string_agg(b.id::text, ', ' ORDER BY b.id)
    FROM payments p JOIN bills b ON b.payment_id = p.id JOIN providers v ON v.id = b.provider_id
    WHERE p.apartment_id = $1 AND p.paid_at < $2
    GROUP BY v.name, p.id, p.paid_at
    UNION ALL
    SELECT v.name, r.succeeded_at, k.kind, r.id::text, k.sign * rp.amount, NULL, NULL, NULL, NULL,
           p.id::text || ' ' || r.reason
    FROM payments p JOIN refunds r ON r.payment_id = p.id JOIN refund_parts rp ON rp.refund_id = r.id
         JOIN providers v ON v.id = rp.provider_id
         -- A partial refund is a credit too: the bills it gave money back for stay paid.
         CROSS JOIN LATERAL (VALUES (3, 1), (4, -1)) AS k(kind, sign)
    WHERE p.apartment_id = $1 AND r.succeeded_at < $2 AND (k.kind = 3 OR p.refunded < p.total)
    ORDER BY at, kind, reference";

/// The apartment's statement over the whole UTC days `from` to `to`.
pub async fn statement(
    client: &impl GenericClient,
    apartment_id: ApartmentId,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Statement, HandlerError> {
    let (apartment, currency) = apartment(client, apartment_id).await?;
    let start = day_start(from);
    let end = day_start(
        to.succ_opt()
            .ok_or_else(|| HandlerError::internal(anyhow::anyhow!("no day after {to}")))?,
    );
    let rows = client.query(CHANGES, &[&apartment_id.0, &end]).await?;
    let mut accounts: BTreeMap<String, ProviderAccount> = BTreeMap::new();
    for row in &rows {
        let provider: String = row.get("provider");
        let at: DateTime<Utc> = row.get("at");
        let amount: Decimal = row.get("amount");
        let account = accounts
            .entry(provider.clone())
            .or_insert_with(|| ProviderAccount {
                provider,
                opening: Decimal::ZERO,
                charged: Decimal::ZERO,
                credited: Decimal::ZERO,
                paid: Decimal::ZERO,
                closing: Decimal::ZERO,
                entries: Vec::new(),
            });
        if at < start {
            account.opening += amount;
            account.closing += amount;
            continue;
        }
        let reference: String = row.get("reference");
        let (kind, description) = match row.get::<_, i32>("kind") {
            0 => {
                account.charged += amount;
                let what = format!(
                    "{}, {}",
                    utility(row.get("utility")),
                    period(row.get("period_start"), row.get("period_end"))
                );
                let description = match row.get::<_, Option<i64>>("late_fee_of") {
                    Some(of) => format!("late fee on bill {of} ({what})"),
                    None => what,
                };
                (EntryKind::Bill, description)
            }
            1 => {
                account.credited -= amount;
                (EntryKind::Void, format!("bill {reference} voided"))
            }
            2 => {
                account.paid -= amount;
                let bills: String = row.get("bills");
                let noun = if bills.contains(',') { "bills" } else { "bill" };
                (EntryKind::Payment, format!("payment of {noun} {bills}"))
            }
            kind => {
                // `bills` holds the payment's id, then the reason.
                let text: String = row.get("bills");
                let (payment, reason) = text.split_once(' ').unwrap_or((&text, ""));
                let payment = payment.get(..8).unwrap_or(payment);
                if kind == 3 {
                    account.paid -= amount;
                    (
                        EntryKind::Refund,
                        format!("refund of payment {payment}: {reason}"),
                    )
                } else {
                    account.credited -= amount;
                    (EntryKind::Credit, format!("credit: {reason}"))
                }
            }
        };
        account.closing += amount;
        account.entries.push(Entry {
            at,
            kind,
            reference,
            description,
            amount,
            balance: account.closing,
        });
    }
    let providers: Vec<ProviderAccount> = accounts
        .into_values()
        .filter(|a| !a.entries.is_empty() || !a.opening.is_zero())
        .collect();
    Ok(Statement::new(apartment, currency, from, to, providers))
}

/// Midnight UTC at the start of `day`.
pub fn day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()
}

/// Provider `provider`'s settlements over the closed days `from` to `to`, with their lines;
/// `None` if there is no such provider. The caller checked that every day is closed.
pub async fn settlement(
    client: &impl GenericClient,
    provider: ProviderId,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Option<Settlement>, HandlerError> {
    let Some(name) = client
        .query_opt("SELECT name FROM providers WHERE id = $1", &[&provider.0])
        .await?
    else {
        return Ok(None);
    };
    let days = client
        .query(
            "SELECT day, currency, payments, refunds_count, gross, refunds, fees, net, collected_elsewhere
             FROM settlements WHERE provider_id = $1 AND day BETWEEN $2 AND $3 ORDER BY day, currency",
            &[&provider.0, &from, &to],
        )
        .await?;
    let lines = client
        .query(
            "SELECT day, currency, at, kind, payment_id, refund_id, via, amount, fee
             FROM settlement_lines WHERE provider_id = $1 AND day BETWEEN $2 AND $3
             ORDER BY day, currency, at, kind, payment_id, refund_id",
            &[&provider.0, &from, &to],
        )
        .await?;
    let mut days: Vec<SettlementDay> = days
        .iter()
        .map(|r| SettlementDay {
            day: r.get("day"),
            totals: SettlementTotals {
                currency: r.get("currency"),
                payments: r.get::<_, i32>("payments").into(),
                refunds_count: r.get::<_, i32>("refunds_count").into(),
                gross: r.get("gross"),
                refunds: r.get("refunds"),
                fees: r.get("fees"),
                net: r.get("net"),
                collected_elsewhere: r.get("collected_elsewhere"),
            },
            lines: Vec::new(),
        })
        .collect();
    for row in &lines {
        let (day, currency): (NaiveDate, &str) = (row.get("day"), row.get("currency"));
        let Some(settled) = days
            .iter_mut()
            .find(|d| d.day == day && d.totals.currency == currency)
        else {
            return Err(HandlerError::internal(anyhow::anyhow!(
                "a settlement line of {day} {currency} without its settlement"
            )));
        };
        settled.lines.push(SettlementLine {
            at: row.get("at"),
            kind: row.get("kind"),
            payment_id: row.get("payment_id"),
            refund_id: row.get("refund_id"),
            via: row.get("via"),
            amount: row.get("amount"),
            fee: row.get("fee"),
        });
    }
    let mut totals: Vec<SettlementTotals> = Vec::new();
    for d in &days {
        let t = match totals.iter_mut().find(|t| t.currency == d.totals.currency) {
            Some(t) => t,
            None => {
                totals.push(SettlementTotals {
                    currency: d.totals.currency.clone(),
                    ..SettlementTotals::default()
                });
                totals.last_mut().expect("just pushed")
            }
        };
        t.payments += d.totals.payments;
        t.refunds_count += d.totals.refunds_count;
        t.gross += d.totals.gross;
        t.refunds += d.totals.refunds;
        t.fees += d.totals.fees;
        t.net += d.totals.net;
        t.collected_elsewhere += d.totals.collected_elsewhere;
    }
    totals.sort_by(|a, b| a.currency.cmp(&b.currency));
    Ok(Some(Settlement {
        provider_id: provider,
        provider: name.get(0),
        from,
        to,
        days,
        totals,
    }))
}
