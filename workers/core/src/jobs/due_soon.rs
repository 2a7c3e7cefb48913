//! The due-soon job: tells households of the open bills due within [`DAYS_BEFORE`] days
//! (`bill.due_soon`), once per bill and household: the notification's unique key makes a second
//! run, or two at once, record nothing new. Bills are taken in batches of [`BATCH`] in id order.
//! Run it daily; the sender job mails what it records.

use deadpool_postgres::Pool;
use serde::Serialize;

use crate::notify::{self, Event};

/// A bill is "due soon" from this many days before its due date.
pub const DAYS_BEFORE: i32 = 3;
pub const BATCH: i64 = 1000;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Bills due soon that were looked at.
    pub bills: u64,
    /// Mails recorded by this run (not recorded before).
    pub mails: u64,
}

const TAKE: &str = "SELECT id FROM bills
    WHERE status = 'open' AND apartment_id IS NOT NULL AND id > $1
      AND due_date BETWEEN (now() AT TIME ZONE 'UTC')::date AND (now() AT TIME ZONE 'UTC')::date + $2::integer
    ORDER BY id LIMIT $3";

pub async fn run(pool: &Pool) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let mut after = 0i64;
    loop {
        let mut client = crate::store::client(pool).await?;
        let tx = client.transaction().await?;
        let ids: Vec<i64> = tx
            .query(TAKE, &[&after, &DAYS_BEFORE, &BATCH])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let Some(last) = ids.last().copied() else {
            break;
        };
        let mails = notify::bills(&tx, Event::BillDueSoon, &ids).await?;
        tx.commit().await?;
        report.bills += ids.len() as u64;
        report.mails += mails.len() as u64;
        after = last;
        if (ids.len() as i64) < BATCH {
            break;
        }
    }
    tracing::info!(
        job = "due-soon",
        bills = report.bills,
        mails = report.mails,
        "due-soon job done"
    );
    Ok(report)
}
