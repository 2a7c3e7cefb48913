//! The overdue job on the demo set: Northwind Energy gives 10 days of grace and charges 5 %
//! (at most 15.00); Clearwater Utilities has no policy (no grace, no fee). What is past due
//! depends on today, so the expectations are read from the database before the job runs.

use qbill_core::jobs::overdue;
use qbill_tests::count;
use rust_decimal::Decimal;

use crate::{DEMO, Fixture};

const PAST_GRACE: &str = "SELECT count(*) FROM bills b JOIN providers p ON p.id = b.provider_id
     WHERE b.status = 'open' AND b.due_date + p.grace_days < (now() AT TIME ZONE 'UTC')::date";

#[tokio::test]
async fn two_overdue_jobs_at_once_mark_each_bill_once_and_charge_each_fee_once() {
    let f = Fixture::new().await;
    let pool = &f.db.pool;
    // The demo's late fee falls due long ago: it becomes overdue too, but no fee is charged on it.
    pool.get()
        .await
        .unwrap()
        .execute(
            "UPDATE bills SET due_date = '2026-01-01' WHERE id = 9002",
            &[],
        )
        .await
        .unwrap();
    let past_grace = count(pool, PAST_GRACE, &[]).await;
    let charged: i64 = count(
        pool,
        &format!("{PAST_GRACE} AND p.late_fee_kind IS NOT NULL AND b.late_fee_of IS NULL"),
        &[],
    )
    .await;
    assert!(past_grace > 0, "the demo set has bills past their grace");

    let (a, b) = tokio::join!(overdue::run(pool), overdue::run(pool));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.marked + b.marked, past_grace as u64, "{a:?} {b:?}");
    assert_eq!(a.fees + b.fees, charged as u64, "{a:?} {b:?}");
    assert_eq!(count(pool, PAST_GRACE, &[]).await, 0);

    let again = overdue::run(pool).await.unwrap();
    assert_eq!((again.marked, again.fees), (0, 0), "nothing twice");
    assert_eq!(
        count(
            pool,
            "SELECT count(*) FROM bills WHERE late_fee_of IS NOT NULL",
            &[]
        )
        .await,
        1 + charged,
        "one fee per bill, and the demo's own"
    );
    assert_eq!(
        count(
            pool,
            "SELECT count(*) FROM bills WHERE late_fee_of = 9002",
            &[]
        )
        .await,
        0,
        "no fee on a fee"
    );
    assert_eq!(
        count(
            pool,
            "SELECT count(*) FROM bills WHERE id = 9002 AND status = 'overdue'",
            &[]
        )
        .await,
        1
    );
    // Each fee is 5 % of its bill, to the cent, at most 15.00, in the bill's apartment.
    let rows = pool
        .get()
        .await
        .unwrap()
        .query(
            "SELECT fee.amount, bill.amount, fee.apartment_id = bill.apartment_id, fee.status
             FROM bills fee JOIN bills bill ON bill.id = fee.late_fee_of WHERE fee.id <> 9002",
            &[],
        )
        .await
        .unwrap();
    for row in &rows {
        let (fee, bill): (Decimal, Decimal) = (row.get(0), row.get(1));
        let expected = (bill * Decimal::new(5, 2))
            .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
            .min(Decimal::new(1500, 2));
        assert_eq!(fee, expected, "on {bill}");
        assert!(row.get::<_, bool>(2));
        assert_eq!(row.get::<_, &str>(3), "open");
    }
    // Clearwater has no policy: its overdue bills carry no fee.
    assert_eq!(
        count(
            pool,
            "SELECT count(*) FROM bills fee JOIN bills b ON b.id = fee.late_fee_of WHERE b.provider_id = 2",
            &[]
        )
        .await,
        0
    );
}

#[tokio::test]
async fn utils_shows_overdue_bills_with_their_days_and_fees_after_the_job() {
    let f = Fixture::new().await;
    let before = f.demo_utils(1).await;
    overdue::run(&f.db.pool).await.unwrap();
    let after = f.demo_utils(1).await;
    let bills = after["bills"].as_array().unwrap();
    let overdue: Vec<&serde_json::Value> =
        bills.iter().filter(|b| b["status"] == "overdue").collect();
    assert!(!overdue.is_empty(), "{after}");
    for bill in &overdue {
        assert!(bill["days_overdue"].as_i64().unwrap() > 0, "{bill}");
    }
    assert!(
        bills.len() > before["bills"].as_array().unwrap().len(),
        "the fees are bills of the apartment"
    );
    // Each fee says which bill it is on, an overdue one of the same apartment.
    let fees: Vec<&serde_json::Value> = bills
        .iter()
        .filter(|b| !b["late_fee_of"].is_null())
        .collect();
    assert!(!fees.is_empty(), "{after}");
    for fee in fees {
        assert!(
            overdue.iter().any(|b| b["bill_id"] == fee["late_fee_of"]),
            "{fee}"
        );
    }
    // The cache did not serve the list from before the job.
    assert_ne!(after["totals"], before["totals"]);
    let detail = f
        .ask("bill", Some(1), Some(&f.token(DEMO)), serde_json::json!({}))
        .await;
    assert_eq!(
        crate::error_code(&detail),
        "invalid_request",
        "no bill id in the path"
    );
}
