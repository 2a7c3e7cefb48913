//! Payments made elsewhere, through the gateway: an operator records a household's bank
//! transfer, the household sees its bills paid and its receipt; a provider may record only its own
//! bills' payments, a household none; hostile bodies stop at the gateway.

use qbill_tests::{count, db_pool};
use serde_json::json;
use uuid::Uuid;

use crate::REPLY_TIMEOUT;
use crate::lifecycle::{Session, error};

/// A household of its own (from the seed generator), logged in: (session, apartment, its open
/// bills with their providers).
async fn household() -> (Session, i64, Vec<(i64, i64)>) {
    let db = db_pool(&crate::served().admin_url);
    let prefix = format!("ext-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let me = qbill_core::seed::users(&db, &prefix, 1, 2)
        .await
        .unwrap()
        .remove(0);
    let session = Session::login(&me.username, &format!("{prefix}-password")).await;
    let bills = db
        .get()
        .await
        .unwrap()
        .query(
            "SELECT id, provider_id FROM bills WHERE apartment_id = $1 AND status IN ('open', 'overdue') ORDER BY id",
            &[&me.apartment_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    (session, me.apartment_id, bills)
}

/// The payments in the books for `apartment`.
async fn payments_of(apartment: i64) -> i64 {
    count(
        &db_pool(&crate::served().admin_url),
        "SELECT count(*) FROM payments WHERE apartment_id = $1",
        &[&apartment],
    )
    .await
}

#[tokio::test]
async fn an_operator_records_a_transfer_and_the_household_sees_its_bills_paid() {
    let (mut home, apartment, bills) = household().await;
    let mut ops = Session::login("ops", "ops-password").await;
    let path = format!("/apartments/{apartment}/payments/external");
    let today = chrono::Utc::now().date_naive().to_string();
    let body = json!({ "bills_id": [bills[0].0, bills[1].0], "method": "bank_transfer",
                       "reference": "SEPA 7781-22", "received_on": today });
    let request = Uuid::new_v4();
    let reply = ops.ask_as(&path, request, body.clone()).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(reply["kind"], "payments_external");
    assert_eq!(reply["data"]["status"], "succeeded");
    assert_eq!(reply["data"]["external"]["reference"], "SEPA 7781-22");
    // Sent again (a client that lost the reply): the same receipt, one payment.
    let again = ops.ask_as(&path, request, body).await;
    assert_eq!(again["data"], reply["data"]);
    assert_eq!(payments_of(apartment).await, 1);

    let utils = home
        .client
        .utils(apartment, Uuid::new_v4(), REPLY_TIMEOUT)
        .await
        .unwrap();
    let open = qbill_tests::bill_ids(&utils["data"]["bills"]);
    assert!(
        !open.contains(&bills[0].0) && !open.contains(&bills[1].0),
        "{open:?}"
    );
    let id = reply["data"]["payment_id"].as_str().unwrap();
    let read = home
        .ask(&format!("/apartments/{apartment}/payments/{id}"), json!({}))
        .await;
    assert_eq!(
        read["data"]["external"]["method"], "bank_transfer",
        "{read}"
    );
}

#[tokio::test]
async fn a_provider_records_only_its_own_bills_and_a_household_none() {
    let (mut home, apartment, bills) = household().await;
    let path = format!("/apartments/{apartment}/payments/external");
    let today = chrono::Utc::now().date_naive().to_string();
    // Northwind (provider 1) and a bill that is not its own.
    let mut northwind = Session::login("northwind", "northwind-password").await;
    let other = bills
        .iter()
        .find(|(_, p)| *p != 1)
        .expect("a bill of another provider");
    let refused = northwind
        .ask(
            &path,
            json!({ "bills_id": [other.0], "method": "cheque", "reference": "CHQ 1", "received_on": today }),
        )
        .await;
    assert_eq!(error(&refused), "forbidden", "{refused}");
    let by_household = home
        .ask(
            &path,
            json!({ "bills_id": [other.0], "method": "cash", "reference": "mine", "received_on": today }),
        )
        .await;
    assert_eq!(error(&by_household), "forbidden", "{by_household}");
    // Its own bill (the seed gives every household gas and electricity from Northwind).
    let own = bills
        .iter()
        .find(|(_, p)| *p == 1)
        .expect("a Northwind bill");
    let recorded = northwind
        .ask(
            &path,
            json!({ "bills_id": [own.0], "method": "cheque", "reference": "CHQ 2", "received_on": today }),
        )
        .await;
    assert_eq!(recorded["status"], "ok", "{recorded}");
    assert_eq!(
        count(
            &db_pool(&crate::served().admin_url),
            "SELECT count(*) FROM payments WHERE $1 = ANY(bills)",
            &[&other.0]
        )
        .await,
        0
    );
}

#[tokio::test]
async fn hostile_bodies_of_payments_made_elsewhere_are_refused_by_the_gateway() {
    let (_, apartment, bills) = household().await;
    let ops = Session::login("ops", "ops-password").await;
    let q = ops.client.queue().to_string();
    let path = format!("/apartments/{apartment}/payments/external");
    let b = bills[0].0;
    let base = || {
        json!({ "queue_name": q, "request_id": Uuid::new_v4(), "bills_id": [b], "method": "cash",
                "reference": "r", "received_on": "2026-12-01" })
    };
    let mut cases = Vec::new();
    for (field, value) in [
        ("method", json!("card")),
        ("method", json!(1)),
        ("reference", json!("")),
        ("reference", json!("x".repeat(101))),
        ("bills_id", json!([])),
        ("bills_id", json!([b, b])),
        ("bills_id", json!(["1"])),
        ("received_on", json!(20261201)),
        ("total", json!("0.01")),
    ] {
        let mut body = base();
        body[field] = value;
        cases.push(body);
    }
    let mut missing = base();
    missing.as_object_mut().unwrap().remove("received_on");
    cases.push(missing);
    for body in cases {
        let accepted = ops.client.post_raw(&path, body.to_string()).await.unwrap();
        assert_eq!(accepted.status, 400, "{body}: {}", accepted.body);
    }
    // No token: the gateway takes no request without the header. A token that is not one gets
    // through the gateway and is refused by the worker.
    let mut anonymous = qbill::client::GatewayClient::new(&crate::served().gateway, Uuid::new_v4());
    let accepted = anonymous.post_raw(&path, base().to_string()).await.unwrap();
    assert_eq!(accepted.status, 400, "{}", accepted.body);
    anonymous.set_token(Some("not-a-token".to_owned()));
    qbill_tests::reply_queue_url(
        &qbill_tests::sqs().await,
        qbill_core::types::QueueName::parse(&anonymous.queue().to_string()).unwrap(),
    )
    .await;
    let forged = anonymous
        .request(
            &path,
            Uuid::new_v4(),
            json!({ "bills_id": [b], "method": "cash", "reference": "r", "received_on": "2026-12-01" }),
            REPLY_TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(error(&forged), "unauthorized", "{forged}");
    assert_eq!(payments_of(apartment).await, 0);
}
