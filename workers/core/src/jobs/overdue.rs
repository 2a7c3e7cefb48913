//! The overdue job: marks the open bills past their due date plus their provider's grace days
//! `overdue`, and charges the provider's late fee on each, once, as a bill of its own (same
//! apartment, account, provider, utility, period and currency, `late_fee_of` naming the bill, due
//! [`FEE_DUE_AFTER_DAYS`] days after it is charged). No fee is charged on a fee.
//!
//! A bill becomes overdue once (nothing turns it back to open), and its fee is charged in the
//! same transaction, guarded by the unique `late_fee_of`: running the job again, or two at once,
//! changes nothing twice. Bills are taken in batches of [`BATCH`], in id order and skipping those
//! another transaction holds (a payment under way, the other job): a skipped bill is marked by
//! the next run if it is still open then.
//!
//! Each bill marked notifies its households (`bill.overdue`), each fee charged too
//! (`late_fee.created`), in the same transaction; the sender job mails them.

use deadpool_postgres::Pool;

use crate::notify::{self, Event};
use serde::Serialize;

/// Bills marked per transaction.
pub const BATCH: i64 = 1000;
/// A late fee is due this many days after it is charged.
pub const FEE_DUE_AFTER_DAYS: i32 = 14;

/// What one run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Bills marked overdue.
    pub marked: u64,
    /// Late fees charged.
    pub fees: u64,
    /// Apartments whose bills changed.
    pub apartments: u64,
}

const TAKE: &str = "SELECT b.id FROM bills b JOIN providers p ON p.id = b.provider_id
                    WHERE b.status = 'open' AND b.due_date + p.grace_days < (now() AT TIME ZONE 'UTC')::date
                    ORDER BY b.id LIMIT $1 FOR UPDATE OF b SKIP LOCKED";

const CHARGE: &str = "INSERT INTO bills (apartment_id, account_id, provider_id, utility, period_start, period_end,
                                         due_date, amount, currency, late_fee_of, lines)
    SELECT b.apartment_id, b.account_id, b.provider_id, b.utility, b.period_start, b.period_end,
           (now() AT TIME ZONE 'UTC')::date + $2::integer, f.fee, b.currency, b.id,
           jsonb_build_array(jsonb_build_object('description', 'Late fee on bill ' || b.id, 'quantity', '1',
                                                'unit_price', f.fee::text, 'amount', f.fee::text))
    FROM bills b JOIN providers p ON p.id = b.provider_id
    CROSS JOIN LATERAL (
        SELECT CASE WHEN p.late_fee_cap IS NULL THEN x.fee ELSE least(x.fee, p.late_fee_cap) END AS fee
        FROM (SELECT CASE p.late_fee_kind WHEN 'fixed' THEN p.late_fee_value
                      ELSE round(b.amount * p.late_fee_value / 100, 2) END AS fee) x
    ) f
    WHERE b.id = ANY($1) AND b.late_fee_of IS NULL AND p.late_fee_kind IS NOT NULL AND f.fee > 0
    ORDER BY b.id
    ON CONFLICT (late_fee_of) DO NOTHING";

/// Runs the job once, batch after batch, until no open bill is past its grace.
pub async fn run(pool: &Pool) -> anyhow::Result<Report> {
    let mut report = Report::default();
    loop {
        let mut client = crate::store::client(pool).await?;
        let tx = client.transaction().await?;
        let ids: Vec<i64> = tx
            .query(TAKE, &[&BATCH])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if ids.is_empty() {
            break;
        }
        tx.execute(
            "UPDATE bills SET status = 'overdue' WHERE id = ANY($1)",
            &[&ids],
        )
        .await?;
        let fees = tx.execute(CHARGE, &[&ids, &FEE_DUE_AFTER_DAYS]).await?;
        let apartments: Vec<i64> = tx
            .query(
                "SELECT DISTINCT apartment_id FROM bills WHERE id = ANY($1) AND apartment_id IS NOT NULL ORDER BY 1",
                &[&ids],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        crate::common::bump_apartments(&tx, &apartments).await?;
        // The households hear of it; the sender mails them.
        let fee_ids: Vec<i64> = tx
            .query(
                "SELECT id FROM bills WHERE late_fee_of = ANY($1) ORDER BY id",
                &[&ids],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        notify::bills(&tx, Event::BillOverdue, &ids).await?;
        notify::bills(&tx, Event::LateFeeCreated, &fee_ids).await?;
        tx.commit().await?;
        report.marked += ids.len() as u64;
        report.fees += fees;
        report.apartments += apartments.len() as u64;
        tracing::info!(
            job = "overdue",
            marked = ids.len(),
            fees,
            apartments = apartments.len(),
            "batch of overdue bills committed"
        );
        if (ids.len() as i64) < BATCH {
            break;
        }
    }
    tracing::info!(
        job = "overdue",
        marked = report.marked,
        fees = report.fees,
        apartments = report.apartments,
        "overdue job done"
    );
    Ok(report)
}
