//! Refunds through the gateway with the local processor (localstripe): an operator gives back a
//! card payment in parts, never beyond what it took, even with two refunds sent at once; a
//! refund of the rest makes the bills due again, and the household sees it all; hostile bodies
//! stop at the gateway, and only operators refund.

use qbill::client::GatewayClient;
use qbill_tests::{count, db_pool, test_card};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::lifecycle::{Session, error};
use crate::{REPLY_TIMEOUT, served};

/// A household of its own that paid two of its bills by card: (client, apartment, the bills,
/// the payment's id and total).
async fn paid(prefix: &str) -> (GatewayClient, i64, Vec<i64>, String, Decimal) {
    let db = db_pool(&served().admin_url);
    let (mut client, me) = crate::household(prefix, 2).await;
    let bills: Vec<i64> = db
        .get()
        .await
        .unwrap()
        .query(
            "SELECT id FROM bills WHERE apartment_id = $1 AND status IN ('open', 'overdue') ORDER BY id LIMIT 2",
            &[&me.apartment_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let reply = client
        .request(
            &format!("/apartments/{}/payments", me.apartment_id),
            Uuid::new_v4(),
            json!({ "bills_id": bills, "payment_method": test_card().await }),
            REPLY_TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(reply["data"]["status"], "succeeded", "{reply}");
    let total = amount(&reply["data"]["total"]);
    let id = reply["data"]["payment_id"].as_str().unwrap().to_owned();
    (client, me.apartment_id, bills, id, total)
}

fn amount(value: &Value) -> Decimal {
    value.as_str().expect("an amount").parse().unwrap()
}

fn path(payment: &str) -> String {
    format!("/payments/{payment}/refund")
}

/// What the processor gave back for the payment, in cents, from its own list.
async fn refunded_at_processor(payment: &str) -> i64 {
    let intent: String = db_pool(&served().admin_url)
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT intent_id FROM payments WHERE id = $1::text::uuid",
            &[&payment],
        )
        .await
        .unwrap()
        .get(0);
    let list: Value = reqwest::Client::new()
        .get(format!(
            "{}/v1/refunds?payment_intent={intent}",
            qbill_tests::env("QBILL_STRIPE_API_BASE")
        ))
        .basic_auth(qbill_tests::env("QBILL_STRIPE_SECRET_KEY"), Some(""))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["amount"].as_i64().unwrap())
        .sum()
}

#[tokio::test]
async fn refunds_in_parts_never_beyond_the_total_and_a_whole_one_makes_the_bills_due_again() {
    let (mut home, apartment, bills, payment, total) = paid("refund-parts").await;
    let mut ops = Session::login("ops", "ops-password").await;

    let first = ops
        .ask(
            &path(&payment),
            json!({ "amount": "1.00", "reason": "estimated reading" }),
        )
        .await;
    assert_eq!(first["kind"], "refund", "{first}");
    assert_eq!(first["data"]["status"], "succeeded", "{first}");
    let second = ops
        .ask(
            &path(&payment),
            json!({ "amount": "0.50", "reason": "goodwill" }),
        )
        .await;
    assert_eq!(second["data"]["status"], "succeeded", "{second}");
    assert_eq!(
        amount(&second["data"]["payment_refunded"]),
        Decimal::new(150, 2)
    );
    assert_eq!(refunded_at_processor(&payment).await, 150);

    // Beyond what is left: refused, and the processor asked for nothing.
    let beyond = total - Decimal::new(150, 2) + Decimal::new(1, 2);
    let refused = ops
        .ask(
            &path(&payment),
            json!({ "amount": format!("{beyond:.2}"), "reason": "too much" }),
        )
        .await;
    assert_eq!(error(&refused), "conflict", "{refused}");
    assert_eq!(refunded_at_processor(&payment).await, 150);

    // The household's bills stay paid after partial refunds; it reads them on the payment.
    let read = home
        .request(
            &format!("/apartments/{apartment}/payments/{payment}"),
            Uuid::new_v4(),
            json!({}),
            REPLY_TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(
        read["data"]["refunds"].as_array().unwrap().len(),
        2,
        "{read}"
    );
    assert_eq!(amount(&read["data"]["refunded"]), Decimal::new(150, 2));

    // The rest: refunded whole, the bills due again and payable again.
    let rest = ops
        .ask(&path(&payment), json!({ "reason": "moved out" }))
        .await;
    assert_eq!(rest["data"]["status"], "succeeded", "{rest}");
    assert_eq!(amount(&rest["data"]["payment_refunded"]), total);
    let cents = i64::try_from(total * Decimal::from(100)).unwrap();
    assert_eq!(refunded_at_processor(&payment).await, cents);
    let utils = home
        .utils(apartment, Uuid::new_v4(), REPLY_TIMEOUT)
        .await
        .unwrap();
    let open = qbill_tests::bill_ids(&utils["data"]["bills"]);
    assert!(bills.iter().all(|b| open.contains(b)), "{open:?}");
    let history = home
        .request(
            &format!("/apartments/{apartment}/histories"),
            Uuid::new_v4(),
            json!({}),
            REPLY_TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(
        history["data"]["refunds"].as_array().unwrap().len(),
        3,
        "{history}"
    );
    let mailed = count(
        &db_pool(&served().admin_url),
        "SELECT count(*) FROM notifications n JOIN apartment_owners o ON o.user_id = n.user_id
         WHERE o.apartment_id = $1 AND n.event = 'refund.succeeded'",
        &[&apartment],
    )
    .await;
    assert_eq!(mailed, 3);
    let again = home
        .request(
            &format!("/apartments/{apartment}/payments"),
            Uuid::new_v4(),
            json!({ "bills_id": bills, "payment_method": test_card().await }),
            REPLY_TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(again["data"]["status"], "succeeded", "{again}");
}

#[tokio::test]
async fn two_refunds_sent_at_once_never_give_back_more_than_the_payment() {
    let (_, _, _, payment, total) = paid("refund-race").await;
    let mut one = Session::login("ops", "ops-password").await;
    let mut other = Session::login("ops", "ops-password").await;
    let part = (total * Decimal::new(7, 1)).round_dp(2);
    let body = json!({ "amount": format!("{part:.2}"), "reason": "sent twice by two operators" });
    let at = path(&payment);
    let (a, b) = tokio::join!(one.ask(&at, body.clone()), other.ask(&at, body.clone()));
    let ok = [&a, &b].iter().filter(|r| r["status"] == "ok").count();
    assert_eq!(ok, 1, "{a}\n{b}");
    let refused = if a["status"] == "ok" { &b } else { &a };
    assert_eq!(error(refused), "conflict", "{refused}");
    let cents = i64::try_from(part * Decimal::from(100)).unwrap();
    assert_eq!(refunded_at_processor(&payment).await, cents);
}

#[tokio::test]
async fn hostile_refunds_stop_at_the_gateway_and_only_operators_refund() {
    let (mut home, _, _, payment, _) = paid("refund-hostile").await;
    let ops = Session::login("ops", "ops-password").await;
    let q = ops.client.queue().to_string();
    let base = || json!({ "queue_name": q, "request_id": Uuid::new_v4(), "reason": "r" });
    let mut cases = Vec::new();
    for (field, value) in [
        ("amount", json!(1.5)),
        ("amount", json!("1.5")),
        ("amount", json!("-1.00")),
        ("reason", json!("")),
        ("reason", json!("x".repeat(201))),
        ("payment_id", json!(payment)),
    ] {
        let mut body = base();
        body[field] = value;
        cases.push(body);
    }
    let mut missing = base();
    missing.as_object_mut().unwrap().remove("reason");
    cases.push(missing);
    for body in cases {
        let accepted = ops
            .client
            .post_raw(&path(&payment), body.to_string())
            .await
            .unwrap();
        assert_eq!(accepted.status, 400, "{body}: {}", accepted.body);
    }
    // No token: refused by the gateway.
    let anonymous = GatewayClient::new(&served().gateway, Uuid::new_v4());
    let accepted = anonymous
        .post_raw(&path(&payment), base().to_string())
        .await
        .unwrap();
    assert_eq!(accepted.status, 400, "{}", accepted.body);
    // The household that paid, and a provider, may not refund.
    let by_household = home
        .request(
            &path(&payment),
            Uuid::new_v4(),
            json!({ "reason": "I want it back" }),
            REPLY_TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(error(&by_household), "forbidden", "{by_household}");
    let mut northwind = Session::login("northwind", "northwind-password").await;
    let by_provider = northwind
        .ask(&path(&payment), json!({ "reason": "ours" }))
        .await;
    assert_eq!(error(&by_provider), "forbidden", "{by_provider}");
    assert_eq!(
        count(
            &db_pool(&served().admin_url),
            "SELECT count(*) FROM refunds WHERE payment_id = $1::text::uuid",
            &[&payment]
        )
        .await,
        0
    );
    assert_eq!(refunded_at_processor(&payment).await, 0);
}
