//! The database side of a run: the users it logs in as, made with the seed generator, and the
//! check afterwards that every receipt the harness holds is in the books exactly once.

use std::collections::HashMap;

use anyhow::Context;
use deadpool_postgres::Pool;
use qbill_core::seed;
use rust_decimal::Decimal;
use serde::Serialize;
use uuid::Uuid;

use crate::load::{Receipt, User};

/// Creates `count` users under `prefix` (kept if they exist), each with `periods` months of
/// unpaid bills, and reads their unpaid bills.
pub async fn users(
    pool: &Pool,
    prefix: &str,
    count: u32,
    periods: u32,
) -> anyhow::Result<Vec<User>> {
    let generated = seed::users(pool, prefix, count, periods)
        .await
        .context("creating the load-test users")?;
    let mut users: Vec<User> = generated
        .into_iter()
        .map(|u| User {
            password: format!("{prefix}-password"),
            unpaid: Vec::new(),
            user_id: u.user_id,
            username: u.username,
            apartment: u.apartment_id,
        })
        .collect();
    // Fresh rows have no statistics yet, and the planner would scan where it should look up.
    if let Err(e) = pool
        .get()
        .await?
        .batch_execute("ANALYZE users, apartments, apartment_owners, bills")
        .await
    {
        eprintln!(
            "could not ANALYZE the seeded tables ({e}); figures may suffer until autovacuum does"
        );
    }
    refresh_unpaid(pool, &mut users).await?;
    Ok(users)
}

/// Reads the users' unpaid bills afresh.
pub async fn refresh_unpaid(pool: &Pool, users: &mut [User]) -> anyhow::Result<()> {
    let apartments: Vec<i64> = users.iter().map(|u| u.apartment).collect();
    let rows = pool
        .get()
        .await?
        .query(
            "SELECT apartment_id, id FROM bills WHERE apartment_id = ANY($1) AND status IN ('open', 'overdue') ORDER BY id",
            &[&apartments],
        )
        .await?;
    let mut unpaid: HashMap<i64, Vec<i64>> = HashMap::new();
    for row in rows {
        unpaid.entry(row.get(0)).or_default().push(row.get(1));
    }
    for user in users {
        user.unpaid = unpaid.remove(&user.apartment).unwrap_or_default();
    }
    Ok(())
}

/// What the books say of the receipts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Books {
    /// Receipts the harness holds.
    pub receipts: u64,
    /// Receipts whose payment is in the books once, with the same id, bills and total.
    pub found_once: u64,
    /// Receipts with no payment of their request id.
    pub missing: u64,
    /// Request ids with more than one payment.
    pub duplicated: u64,
    /// Receipts whose payment differs (id, bills, total or apartment).
    pub mismatched: u64,
    /// Payments of the run's apartments for which the harness holds no receipt: requests that
    /// timed out on the client's side but were done. Not an error.
    pub paid_without_receipt: u64,
}

impl Books {
    pub fn balanced(&self) -> bool {
        self.found_once == self.receipts
            && self.missing == 0
            && self.duplicated == 0
            && self.mismatched == 0
    }
}

/// A payment as the books hold it: id, apartment, total, bills.
type Booked = (Uuid, i64, Decimal, Vec<i64>);

pub async fn check(pool: &Pool, receipts: &[Receipt], apartments: &[i64]) -> anyhow::Result<Books> {
    let client = pool.get().await?;
    let request_ids: Vec<Uuid> = receipts.iter().map(|r| r.request_id).collect();
    let rows = client
        .query(
            "SELECT p.request_id, p.id, p.apartment_id, p.total,
                    coalesce(array_agg(b.id ORDER BY b.id) FILTER (WHERE b.id IS NOT NULL), '{}')
             FROM payments p LEFT JOIN bills b ON b.payment_id = p.id AND b.status = 'paid'
             WHERE p.request_id = ANY($1)
             GROUP BY p.id",
            &[&request_ids],
        )
        .await?;
    let mut payments: HashMap<Uuid, Vec<Booked>> = HashMap::new();
    for row in rows {
        payments.entry(row.get(0)).or_default().push((
            row.get(1),
            row.get(2),
            row.get(3),
            row.get(4),
        ));
    }
    let mut books = Books {
        receipts: receipts.len() as u64,
        ..Books::default()
    };
    for receipt in receipts {
        match payments.get(&receipt.request_id).map(Vec::as_slice) {
            None | Some([]) => books.missing += 1,
            Some([(id, apartment, total, bills)]) => {
                let mut expected = receipt.bills.clone();
                expected.sort_unstable();
                if *id == receipt.payment_id
                    && *apartment == receipt.apartment
                    && *total == receipt.total
                    && *bills == expected
                {
                    books.found_once += 1;
                } else {
                    books.mismatched += 1;
                }
            }
            Some(_) => books.duplicated += 1,
        }
    }
    let unreceipted: i64 = client
        .query_one(
            "SELECT count(*) FROM payments WHERE apartment_id = ANY($1) AND NOT (request_id = ANY($2))",
            &[&apartments, &request_ids],
        )
        .await?
        .get(0);
    books.paid_without_receipt = unreceipted as u64;
    Ok(books)
}
