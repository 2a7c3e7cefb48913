use std::sync::Arc;

use rust_decimal::Decimal;
use serde_json::json;
use uuid::Uuid;

use crate::{DEMO, Fixture, bill_ids, error_code};

#[tokio::test]
async fn paying_bills_settles_them_and_returns_a_receipt() {
    let f = Fixture::new().await;
    let reply = f.pay(1, &[1081, 1092]).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let receipt = &reply["data"];
    assert_eq!(receipt["apartment_id"], 1);
    assert_eq!(receipt["bills_id"], json!([1081, 1092]));
    assert_eq!(receipt["currency"], "EUR");
    let expected: Decimal = {
        let client = f.db.pool.get().await.unwrap();
        client
            .query_one(
                "SELECT sum(amount) FROM bills WHERE id IN (1081, 1092)",
                &[],
            )
            .await
            .unwrap()
            .get(0)
    };
    assert_eq!(
        receipt["total"]
            .as_str()
            .unwrap()
            .parse::<Decimal>()
            .unwrap(),
        expected
    );
    let payment: Uuid = receipt["payment_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM bills WHERE payment_id = $1 AND status = 'paid'",
            &[&payment]
        )
        .await,
        2
    );
    let unpaid = bill_ids(&f.demo_utils(1).await["bills"]);
    assert!(!unpaid.contains(&1081) && !unpaid.contains(&1092));
    assert_eq!(unpaid.len(), 10);
}

#[tokio::test]
async fn paying_the_same_bill_twice_gets_already_paid_and_charges_once() {
    let f = Fixture::new().await;
    assert_eq!(f.pay(1, &[1081]).await["status"], "ok");
    let again = f.pay(1, &[1081]).await;
    assert_eq!(error_code(&again), "already_paid");
    assert_eq!(f.db.count("SELECT count(*) FROM payments WHERE apartment_id = 1 AND paid_at > now() - interval '1 hour'", &[]).await, 1);
}

#[tokio::test]
async fn resending_a_payment_with_the_same_request_id_returns_the_same_receipt_and_charges_once() {
    let f = Fixture::new().await;
    let request = Uuid::new_v4();
    let token = f.token(DEMO);
    let first = f
        .ask_as(
            request,
            "payments",
            Some(1),
            Some(&token),
            json!({ "bills_id": [1081, 1082] }),
        )
        .await;
    let second = f
        .ask_as(
            request,
            "payments",
            Some(1),
            Some(&token),
            json!({ "bills_id": [1082, 1081] }),
        )
        .await;
    assert_eq!(first["status"], "ok", "{first}");
    assert_eq!(first, second, "the same request gets the same reply");
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM payments WHERE request_id = $1",
            &[&request]
        )
        .await,
        1
    );
}

#[tokio::test]
async fn the_same_request_id_for_a_different_payment_is_refused_as_a_conflict() {
    let f = Fixture::new().await;
    let request = Uuid::new_v4();
    let token = f.token(DEMO);
    assert_eq!(
        f.ask_as(
            request,
            "payments",
            Some(1),
            Some(&token),
            json!({ "bills_id": [1081] })
        )
        .await["status"],
        "ok"
    );
    let other = f
        .ask_as(
            request,
            "payments",
            Some(1),
            Some(&token),
            json!({ "bills_id": [1082] }),
        )
        .await;
    assert_eq!(error_code(&other), "conflict");
    assert!(
        bill_ids(&f.demo_utils(1).await["bills"]).contains(&1082),
        "bill 1082 must stay unpaid"
    );
}

#[tokio::test]
async fn one_bad_bill_rejects_the_whole_payment_and_pays_nothing() {
    let f = Fixture::new().await;
    for (bills, code) in [
        (vec![1081, 999_999], "not_found"), // unknown
        (vec![1081, 3081], "not_found"),    // demo2's apartment
        (vec![1081, 2081], "not_found"),    // demo's other apartment
        (vec![1081, 1051], "already_paid"), // settled in the seed
    ] {
        let reply = f.pay(1, &bills).await;
        assert_eq!(error_code(&reply), code, "{bills:?}");
    }
    assert!(
        bill_ids(&f.demo_utils(1).await["bills"]).contains(&1081),
        "bill 1081 must stay unpaid"
    );
    assert_eq!(
        f.db.count("SELECT count(*) FROM processed_requests", &[])
            .await,
        0,
        "rejected requests leave no record"
    );
}

#[tokio::test]
async fn paying_another_users_apartment_is_forbidden_and_pays_nothing() {
    let f = Fixture::new().await;
    let reply = f.pay(3, &[3081]).await;
    assert_eq!(error_code(&reply), "forbidden");
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM bills WHERE id = 3081 AND status = 'open'",
            &[]
        )
        .await,
        1
    );
}

#[tokio::test]
async fn fifty_concurrent_payments_over_ten_bills_pay_each_bill_exactly_once() {
    let f = Arc::new(Fixture::new().await);
    let bills = [1081, 1082, 1083, 1084, 1091, 1092, 1093, 1094, 1101, 1102];
    // Fifty payments of two adjacent bills each over ten bills, all at once.
    let attempts: Vec<_> = (0..50)
        .map(|i| {
            let f = f.clone();
            let pair = [bills[i % bills.len()], bills[(i + 1) % bills.len()]];
            tokio::spawn(async move { f.pay(1, &pair).await })
        })
        .collect();
    let mut ok = 0;
    for attempt in attempts {
        let reply = attempt.await.unwrap();
        match reply["status"].as_str() {
            Some("ok") => ok += 1,
            _ => assert_eq!(error_code(&reply), "already_paid", "{reply}"),
        }
    }
    assert!(ok >= 1);
    let paid = f.db.count("SELECT count(*) FROM bills WHERE apartment_id = 1 AND id = ANY($1) AND status = 'paid'", &[&bills.to_vec()]).await;
    assert_eq!(
        paid,
        2 * ok,
        "every successful payment settled its two bills, and no bill twice"
    );
    println!(
        "reliability: 50 concurrent payments over 10 bills: succeeded={ok} already_paid={} bills_paid={paid} paid_twice=0",
        50 - ok
    );
    let (sum_payments, sum_bills): (Decimal, Decimal) = {
        let client = f.db.pool.get().await.unwrap();
        let row = client
            .query_one(
                "SELECT (SELECT sum(total) FROM payments WHERE apartment_id = 1 AND paid_at > now() - interval '1 hour'),
                        (SELECT sum(b.amount) FROM bills b JOIN payments p ON p.id = b.payment_id
                         WHERE b.apartment_id = 1 AND p.paid_at > now() - interval '1 hour')",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(sum_payments, sum_bills);
}

#[tokio::test]
async fn duplicates_of_one_request_delivered_at_once_make_one_payment() {
    let f = Arc::new(Fixture::new().await);
    let request = Uuid::new_v4();
    let token = f.token(DEMO);
    let copies: Vec<_> = (0..8)
        .map(|_| {
            let (f, token) = (f.clone(), token.clone());
            tokio::spawn(async move {
                f.ask_as(
                    request,
                    "payments",
                    Some(1),
                    Some(&token),
                    json!({ "bills_id": [1101, 1102] }),
                )
                .await
            })
        })
        .collect();
    let mut replies = Vec::new();
    for copy in copies {
        replies.push(copy.await.unwrap());
    }
    assert!(
        replies.iter().all(|r| r == &replies[0]),
        "every copy gets the same receipt: {replies:?}"
    );
    assert_eq!(replies[0]["status"], "ok");
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM payments WHERE request_id = $1",
            &[&request]
        )
        .await,
        1
    );
}

/// entity, entity id, action, actor, old status, new status
type AuditRow = (
    String,
    String,
    String,
    Option<i64>,
    Option<String>,
    Option<String>,
);

#[tokio::test]
async fn every_payment_and_bill_change_is_audited_with_who_and_which_request() {
    let f = Fixture::new().await;
    let request = Uuid::new_v4();
    let reply = f
        .ask_as(
            request,
            "payments",
            Some(1),
            Some(&f.token(DEMO)),
            json!({ "bills_id": [1081, 1082] }),
        )
        .await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let client = f.db.pool.get().await.unwrap();
    let rows = client
        .query(
            "SELECT entity, entity_id, action, actor_user, old_state->>'status', new_state->>'status'
             FROM audit_events WHERE request_id = $1 ORDER BY id",
            &[&request],
        )
        .await
        .unwrap();
    let events: Vec<AuditRow> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect();
    let payment_id = reply["data"]["payment_id"].as_str().unwrap().to_owned();
    assert_eq!(
        events,
        vec![
            (
                "payment".into(),
                payment_id,
                "created".into(),
                Some(DEMO.0),
                None,
                None
            ),
            (
                "bill".into(),
                "1081".into(),
                "status_changed".into(),
                Some(DEMO.0),
                Some("open".into()),
                Some("paid".into())
            ),
            (
                "bill".into(),
                "1082".into(),
                "status_changed".into(),
                Some(DEMO.0),
                Some("open".into()),
                Some("paid".into())
            ),
        ]
    );
    // A rejected payment leaves no trace but its absence.
    let again = f.pay(1, &[1081]).await;
    assert_eq!(error_code(&again), "already_paid");
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM audit_events WHERE entity = 'payment'",
            &[]
        )
        .await,
        1 + 9,
        "the seed's 9 payments and this one"
    );
    // Nobody edits history, not even the owner, without dropping the guard first.
    let error = client
        .execute("DELETE FROM audit_events", &[])
        .await
        .expect_err("append-only");
    assert!(
        error.to_string().contains("append-only") || format!("{error:?}").contains("append-only"),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_bill_of_an_account_no_household_linked_cannot_be_paid_from_any_apartment() {
    let f = Fixture::new().await;
    // 9001 is the demo's overdue bill of Northwind's unlinked account: it has no apartment.
    let reply = f.pay(1, &[9001]).await;
    assert_eq!(error_code(&reply), "not_found", "{reply}");
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM bills WHERE id = 9001 AND status = 'overdue'",
            &[]
        )
        .await,
        1
    );
}
