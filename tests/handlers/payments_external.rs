//! `payments_external`: payments made outside qbill, recorded by an operator or the provider whose
//! bills they pay: all or none, once per request id, audited, with the household's receipt and
//! the cache moved on; every hostile body and every caller who may not is refused, and changes
//! nothing.

use qbill_core::envelope::attribute;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{DEMO, Fixture, error_code, northwind, operator};

const OPERATOR: (i64, &str) = (3, "ops");
/// Northwind Energy's API user.
const NORTHWIND: (i64, &str, i64) = (4, "northwind", 1);

fn today() -> String {
    chrono::Utc::now().date_naive().to_string()
}

/// Apartment 1's open bills of one provider (or of any), oldest first.
async fn open_bills(f: &Fixture, provider: Option<i64>) -> Vec<i64> {
    f.db.pool
        .get()
        .await
        .unwrap()
        .query(
            "SELECT id FROM bills WHERE apartment_id = 1 AND status IN ('open', 'overdue')
             AND ($1::bigint IS NULL OR provider_id = $1) ORDER BY id",
            &[&provider],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn record(f: &Fixture, token: &str, body: Value) -> Value {
    f.ask("payments_external", Some(1), Some(token), body).await
}

fn transfer(bills: &[i64]) -> Value {
    json!({ "bills_id": bills, "method": "bank_transfer", "reference": "TRF 2026-12 0042",
            "received_on": today() })
}

/// Payments, bills paid and audit rows: what a refused request must leave as it was.
async fn books(f: &Fixture) -> (i64, i64, i64) {
    (
        f.db.count("SELECT count(*) FROM payments", &[]).await,
        f.db.count("SELECT count(*) FROM bills WHERE status = 'paid'", &[])
            .await,
        f.db.count("SELECT count(*) FROM audit_events", &[]).await,
    )
}

#[tokio::test]
async fn an_operator_records_a_transfer_that_settles_the_bills_with_a_receipt_for_the_household() {
    let f = Fixture::new().await;
    let bills = open_bills(&f, None).await;
    let chosen = &bills[..2];
    let before = f.demo_utils(1).await;
    let reply = record(&f, &operator(&f), transfer(chosen)).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(reply["kind"], "payments_external");
    let data = &reply["data"];
    assert_eq!(data["status"], "succeeded");
    assert_eq!(data["external"]["method"], "bank_transfer");
    assert_eq!(data["external"]["reference"], "TRF 2026-12 0042");
    assert_eq!(data["external"]["received_on"], today());
    assert_eq!(data["bills_id"], json!(chosen));
    let id = data["payment_id"].as_str().unwrap().to_owned();

    // The total is the bills' sum, to the cent, as the database adds it.
    let db = f.db.pool.get().await.unwrap();
    let sum: rust_decimal::Decimal = db
        .query_one(
            "SELECT sum(amount) FROM bills WHERE id = ANY($1)",
            &[&chosen.to_vec()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(data["total"], sum.to_string());
    let row = db
        .query_one(
            "SELECT user_id, recorded_by, processor, status FROM payments WHERE id = $1::text::uuid",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>("user_id"), DEMO.0, "the household pays");
    assert_eq!(row.get::<_, Option<i64>>("recorded_by"), Some(OPERATOR.0));
    assert_eq!(row.get::<_, &str>("processor"), "external");
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM bills WHERE id = ANY($1) AND status = 'paid' AND payment_id = $2::text::uuid",
            &[&chosen.to_vec(), &id],
        )
        .await,
        2
    );
    // The household's debts moved on at once (the cache keyed on the apartment's version).
    let after = f.demo_utils(1).await;
    assert_ne!(before, after);
    let open = crate::bill_ids(&after["bills"]);
    assert!(
        !open.contains(&chosen[0]) && !open.contains(&chosen[1]),
        "{open:?}"
    );
    // The receipt is the household's.
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM notifications WHERE user_id = $1 AND key = 'payment.succeeded:' || $2",
            &[&DEMO.0, &id],
        )
        .await,
        1
    );
    // Audited as the operator's, with how the money came.
    let audit = db
        .query_one(
            "SELECT actor_user, new_state FROM audit_events WHERE entity = 'payment' AND entity_id = $1
             AND action = 'created'",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(audit.get::<_, Option<i64>>("actor_user"), Some(OPERATOR.0));
    let state: Value = audit.get("new_state");
    assert_eq!(state["external_method"], "bank_transfer");
    assert_eq!(state["recorded_by"], OPERATOR.0);
    // The household reads it back with how it was paid, recorded by the request.
    let mut read = qbill_tests::message(
        "payment",
        Some(1),
        Some(&f.token(DEMO)),
        json!({ "queue_name": f.queue.to_string(), "request_id": Uuid::new_v4() }),
    );
    read.attributes
        .insert(attribute::PAYMENT_ID.into(), id.clone());
    let read = f.send(read).await;
    assert_eq!(read["data"]["external"], data["external"], "{read}");
    assert_eq!(read["data"]["history"][0]["status"], "succeeded", "{read}");
}

#[tokio::test]
async fn the_same_request_twice_is_one_payment() {
    let f = Fixture::new().await;
    let bills = open_bills(&f, None).await;
    let request = Uuid::new_v4();
    let token = operator(&f);
    let first = f
        .ask_as(
            request,
            "payments_external",
            Some(1),
            Some(&token),
            transfer(&bills[..1]),
        )
        .await;
    let second = f
        .ask_as(
            request,
            "payments_external",
            Some(1),
            Some(&token),
            transfer(&bills[..1]),
        )
        .await;
    assert_eq!(first["status"], "ok", "{first}");
    assert_eq!(first["data"], second["data"]);
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM payments WHERE $1 = ANY(bills)",
            &[&bills[0]]
        )
        .await,
        1
    );
    // The same id for other bills is a different request: refused, nothing recorded.
    let other = f
        .ask_as(
            request,
            "payments_external",
            Some(1),
            Some(&token),
            transfer(&bills[1..2]),
        )
        .await;
    assert_eq!(error_code(&other), "conflict", "{other}");
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM payments WHERE $1 = ANY(bills)",
            &[&bills[1]]
        )
        .await,
        0
    );
}

#[tokio::test]
async fn a_provider_records_payments_of_its_own_bills_only() {
    let f = Fixture::new().await;
    let own = open_bills(&f, Some(NORTHWIND.2)).await;
    let others = open_bills(&f, Some(2)).await;
    assert!(!own.is_empty() && !others.is_empty());
    let token = northwind(&f);
    let before = books(&f).await;
    // One of its own and one of another provider's: nothing is recorded.
    let mixed = record(&f, &token, transfer(&[own[0], others[0]])).await;
    assert_eq!(error_code(&mixed), "forbidden", "{mixed}");
    assert_eq!(books(&f).await, before);
    let cash = record(
        &f,
        &token,
        json!({ "bills_id": [own[0]], "method": "cash", "reference": "desk receipt 118",
                "received_on": today() }),
    )
    .await;
    assert_eq!(cash["status"], "ok", "{cash}");
    assert_eq!(cash["data"]["external"]["method"], "cash");
}

#[tokio::test]
async fn households_may_not_record_payments_made_elsewhere() {
    let f = Fixture::new().await;
    let bills = open_bills(&f, None).await;
    let before = books(&f).await;
    let reply = record(&f, &f.token(DEMO), transfer(&bills[..1])).await;
    assert_eq!(error_code(&reply), "forbidden", "{reply}");
    let reply = f
        .ask("payments_external", Some(1), None, transfer(&bills[..1]))
        .await;
    assert_eq!(error_code(&reply), "unauthorized", "{reply}");
    assert_eq!(books(&f).await, before);
}

#[tokio::test]
async fn bills_paid_voided_held_by_a_card_or_of_another_apartment_refuse_the_whole_payment() {
    let f = Fixture::new().await;
    let bills = open_bills(&f, None).await;
    let token = operator(&f);
    let paid = f.pay(1, &bills[..1]).await;
    assert_eq!(paid["status"], "ok", "{paid}");
    let db = f.db.pool.get().await.unwrap();
    db.execute(
        "UPDATE bills SET status = 'void', voided_at = now(), void_reason = 'test' WHERE id = $1",
        &[&bills[1]],
    )
    .await
    .unwrap();
    // A card payment under way holds bills[2].
    let holder = Uuid::new_v4();
    db.execute(
        "INSERT INTO payments (id, apartment_id, user_id, request_id, total, currency, status, processor, bills)
         SELECT $1, 1, 1, $1, amount, currency, 'pending', 'stripe', ARRAY[id] FROM bills WHERE id = $2",
        &[&holder, &bills[2]],
    )
    .await
    .unwrap();
    db.execute(
        "UPDATE bills SET reserved_by = $1 WHERE id = $2",
        &[&holder, &bills[2]],
    )
    .await
    .unwrap();
    let elsewhere: i64 = db
        .query_one(
            "SELECT id FROM bills WHERE apartment_id <> 1 AND status IN ('open', 'overdue') LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let free = bills[3];
    let before = books(&f).await;
    for (with, code) in [
        (bills[0], "already_paid"),
        (bills[1], "conflict"),
        (bills[2], "conflict"),
        (elsewhere, "not_found"),
        (99_999_999, "not_found"),
    ] {
        let reply = record(&f, &token, transfer(&[free, with])).await;
        assert_eq!(error_code(&reply), code, "bill {with}: {reply}");
        assert!(
            reply["error"]["message"]
                .as_str()
                .unwrap()
                .contains(&with.to_string()),
            "{reply}"
        );
    }
    let missing = f
        .ask(
            "payments_external",
            Some(424_242),
            Some(&token),
            transfer(&[free]),
        )
        .await;
    assert_eq!(error_code(&missing), "not_found", "{missing}");
    assert_eq!(books(&f).await, before, "nothing was recorded");
}

#[tokio::test]
async fn hostile_bodies_are_refused_and_change_nothing() {
    let f = Fixture::new().await;
    let bills = open_bills(&f, None).await;
    let token = operator(&f);
    let future = (chrono::Utc::now().date_naive() + chrono::Duration::days(2)).to_string();
    let ancient = (chrono::Utc::now().date_naive() - chrono::Duration::days(800)).to_string();
    let b = bills[0];
    let before = books(&f).await;
    for body in [
        json!({}),
        json!({ "bills_id": [], "method": "cash", "reference": "r", "received_on": today() }),
        json!({ "bills_id": [b, b], "method": "cash", "reference": "r", "received_on": today() }),
        json!({ "bills_id": [-1], "method": "cash", "reference": "r", "received_on": today() }),
        json!({ "bills_id": (1..=101).collect::<Vec<i64>>(), "method": "cash", "reference": "r", "received_on": today() }),
        json!({ "bills_id": [b], "method": "card", "reference": "r", "received_on": today() }),
        json!({ "bills_id": [b], "method": "cash", "reference": "", "received_on": today() }),
        json!({ "bills_id": [b], "method": "cash", "reference": "   ", "received_on": today() }),
        json!({ "bills_id": [b], "method": "cash", "reference": "a\u{0}b", "received_on": today() }),
        json!({ "bills_id": [b], "method": "cash", "reference": "x".repeat(101), "received_on": today() }),
        json!({ "bills_id": [b], "method": "cash", "reference": "r", "received_on": future }),
        json!({ "bills_id": [b], "method": "cash", "reference": "r", "received_on": ancient }),
        json!({ "bills_id": [b], "method": "cash", "reference": "r", "received_on": "2026-02-30" }),
        json!({ "bills_id": [b], "method": "cash", "reference": "r", "received_on": "yesterday" }),
        json!({ "bills_id": [b], "method": "cash", "reference": "r", "received_on": today(), "total": "0.01" }),
        json!({ "bills_id": [b], "method": "cash", "reference": "r", "received_on": today(), "user_id": 2 }),
        json!({ "bills_id": ["1; DROP TABLE payments"], "method": "cash", "reference": "r", "received_on": today() }),
    ] {
        let reply = record(&f, &token, body.clone()).await;
        assert_eq!(error_code(&reply), "invalid_request", "{body}: {reply}");
    }
    assert_eq!(books(&f).await, before);
}
