//! `refund`: operators give back all or part of a card payment through the local processor
//! (localstripe). Partial refunds add up to the payment's total and never beyond it, even sent
//! together; a payment refunded whole has its bills due again; the same request twice is one
//! refund; the processor's refund events and the reconciliation settle a refund once. Every
//! hostile body and every caller who may not is refused, and changes nothing.

use qbill_core::envelope::attribute;
use qbill_core::types::Role;
use qbill_tests::message;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::card_payments::{
    GOOD_CARD, WEBHOOK_SECRET, card, card_fixture, deliver, now, pay_with, processor, read_payment,
    webhook,
};
use crate::{DEMO, Fixture, bill_ids, error_code, operator, token};

/// Asks for a refund of `payment` as `token`, under `request_id`.
async fn refund_as(
    f: &Fixture,
    request_id: Uuid,
    token: &str,
    payment: &str,
    fields: Value,
) -> Value {
    let mut body = json!({ "queue_name": f.queue.to_string(), "request_id": request_id });
    body.as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    f.send(on_payment(
        message("refund", None, None, body),
        payment,
        Some(token),
    ))
    .await
}

/// A request as the gateway enqueues it for `POST /payments/{payment}/refund`: the payment from
/// the path, the `Authorization` header as sent (if any).
fn on_payment(
    mut request: qbill_core::envelope::InboundMessage,
    payment: &str,
    token: Option<&str>,
) -> qbill_core::envelope::InboundMessage {
    use qbill_core::envelope::AUTHORIZATION_MARKER;
    request
        .attributes
        .insert(attribute::PAYMENT_ID.into(), payment.to_owned());
    let header = token.map(|t| format!("Bearer {t}")).unwrap_or_default();
    request.attributes.insert(
        attribute::AUTHORIZATION.into(),
        format!("{AUTHORIZATION_MARKER}{header}"),
    );
    request
}

async fn refund(f: &Fixture, payment: &str, fields: Value) -> Value {
    refund_as(f, Uuid::new_v4(), &operator(f), payment, fields).await
}

/// A card payment of apartment 1's first `n` open bills, settled; its id and total.
async fn paid(f: &Fixture, n: usize) -> (String, Decimal, Vec<i64>) {
    let bills = bill_ids(&f.demo_utils(1).await["bills"]);
    let chosen = bills[..n].to_vec();
    let reply = pay_with(f, 1, &chosen, Some(&card(GOOD_CARD).await)).await;
    assert_eq!(reply["data"]["status"], "succeeded", "{reply}");
    let total = reply["data"]["total"].as_str().unwrap().parse().unwrap();
    (
        reply["data"]["payment_id"].as_str().unwrap().to_owned(),
        total,
        chosen,
    )
}

/// What a refused refund must leave as it was: refunds, what payments gave back, bills paid,
/// audit rows, notifications.
async fn books(f: &Fixture) -> (i64, String, i64, i64, i64) {
    let row = f
        .db
        .pool
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT (SELECT count(*) FROM refunds), (SELECT coalesce(sum(refunded), 0)::text FROM payments),
                    (SELECT count(*) FROM bills WHERE status = 'paid'), (SELECT count(*) FROM audit_events),
                    (SELECT count(*) FROM notifications)",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4))
}

/// The processor's refunds of the payment's intent.
async fn processor_refunds(f: &Fixture, payment: &str) -> Vec<Value> {
    let intent: String =
        f.db.pool
            .get()
            .await
            .unwrap()
            .query_one(
                "SELECT intent_id FROM payments WHERE id = $1",
                &[&Uuid::parse_str(payment).unwrap()],
            )
            .await
            .unwrap()
            .get(0);
    processor(
        reqwest::Method::GET,
        &format!("/v1/refunds?payment_intent={intent}"),
        &[],
    )
    .await["data"]
        .as_array()
        .unwrap()
        .clone()
}

/// Puts the books back as they were before the processor's answer to refund `refund` (of
/// `payment`, its only refund) came: pending, nothing given back.
async fn unanswered(f: &Fixture, refund: &str, payment: &str) {
    f.db.pool
        .get()
        .await
        .unwrap()
        .batch_execute(&format!(
            "UPDATE refunds SET status = 'pending', succeeded_at = NULL, processor_refund_id = NULL WHERE id = '{refund}';
             UPDATE payments SET refunded = 0 WHERE id = '{payment}';
             DELETE FROM refund_parts WHERE refund_id = '{refund}';"
        ))
        .await
        .unwrap();
}

fn money(value: &Value) -> Decimal {
    value.as_str().expect("an amount").parse().unwrap()
}

#[tokio::test]
async fn partial_refunds_add_up_to_the_total_and_a_whole_refund_makes_the_bills_due_again() {
    let f = card_fixture().await;
    let (payment, total, bills) = paid(&f, 2).await;

    let first = refund(
        &f,
        &payment,
        json!({ "amount": "1.25", "reason": "meter misread" }),
    )
    .await;
    assert_eq!(first["status"], "ok", "{first}");
    assert_eq!(first["kind"], "refund", "{first}");
    let data = &first["data"];
    assert_eq!(data["status"], "succeeded", "{first}");
    assert_eq!(data["amount"], "1.25");
    assert_eq!(data["reason"], "meter misread");
    assert_eq!(money(&data["payment_refunded"]), Decimal::new(125, 2));
    assert_eq!(
        data["bills_reopened"],
        json!([]),
        "a partial refund leaves the bills paid"
    );
    // The processor gave back exactly that, for this refund.
    let at_processor = processor_refunds(&f, &payment).await;
    assert_eq!(at_processor.len(), 1, "{at_processor:?}");
    assert_eq!(at_processor[0]["amount"], 125);
    assert_eq!(at_processor[0]["metadata"]["refund_id"], data["refund_id"]);
    assert_eq!(at_processor[0]["metadata"]["reason"], "meter misread");

    let second = refund(
        &f,
        &payment,
        json!({ "amount": "2.00", "reason": "goodwill" }),
    )
    .await;
    assert_eq!(second["data"]["status"], "succeeded", "{second}");
    assert_eq!(
        money(&second["data"]["payment_refunded"]),
        Decimal::new(325, 2)
    );

    // More than is left: refused, in words, and nothing changed here or at the processor.
    let before = books(&f).await;
    let beyond = total - Decimal::new(325, 2) + Decimal::new(1, 2);
    let refused = refund(
        &f,
        &payment,
        json!({ "amount": format!("{beyond:.2}"), "reason": "too much" }),
    )
    .await;
    assert_eq!(error_code(&refused), "conflict", "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("more than what is left"),
        "{refused}"
    );
    assert_eq!(books(&f).await, before);
    assert_eq!(processor_refunds(&f, &payment).await.len(), 2);

    // The rest, by leaving the amount out: the payment is refunded whole, its bills due again.
    let rest = refund(&f, &payment, json!({ "reason": "moved out" })).await;
    let data = &rest["data"];
    assert_eq!(data["status"], "succeeded", "{rest}");
    assert_eq!(money(&data["amount"]), total - Decimal::new(325, 2));
    assert_eq!(money(&data["payment_refunded"]), total);
    let reopened: Vec<i64> = data["bills_reopened"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_i64().unwrap())
        .collect();
    assert_eq!(reopened, bills);
    let open = bill_ids(&f.demo_utils(1).await["bills"]);
    assert!(bills.iter().all(|b| open.contains(b)), "{open:?}");
    let client = f.db.pool.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT refunded::text, (SELECT count(*) FROM bills WHERE payment_id = p.id),
                    (SELECT sum(rp.amount)::text FROM refund_parts rp JOIN refunds r ON r.id = rp.refund_id
                     WHERE r.payment_id = p.id),
                    (SELECT count(*) FROM audit_events WHERE entity = 'refund' AND action = 'status_changed'
                     AND new_state->>'status' = 'succeeded' AND new_state->>'via' = 'confirm'),
                    (SELECT count(*) FROM notifications WHERE event = 'refund.succeeded' AND user_id = 1)
             FROM payments p WHERE id = $1",
            &[&Uuid::parse_str(&payment).unwrap()],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0).parse::<Decimal>().unwrap(), total);
    assert_eq!(
        row.get::<_, i64>(1),
        0,
        "no bill names the payment any more"
    );
    assert_eq!(
        row.get::<_, String>(2).parse::<Decimal>().unwrap(),
        total,
        "the providers' parts add up to what was given back"
    );
    assert_eq!(row.get::<_, i64>(3), 3, "three refunds, each audited once");
    assert_eq!(row.get::<_, i64>(4), 3, "the household heard of each");

    // Nothing is left to give back.
    let more = refund(&f, &payment, json!({ "reason": "again" })).await;
    assert_eq!(error_code(&more), "conflict", "{more}");
    assert!(
        more["error"]["message"]
            .as_str()
            .unwrap()
            .contains("in full"),
        "{more}"
    );

    // The payment route lists the refunds and what they gave back; the history names them.
    let read = read_payment(&f, DEMO, &payment).await;
    assert_eq!(money(&read["data"]["refunded"]), total, "{read}");
    assert_eq!(
        read["data"]["refunds"].as_array().unwrap().len(),
        3,
        "{read}"
    );
    let history = f
        .ask("histories", Some(1), Some(&f.token(DEMO)), json!({}))
        .await;
    let refunds = history["data"]["refunds"].as_array().unwrap();
    assert_eq!(refunds.len(), 3, "{history}");
    assert_eq!(refunds.iter().filter(|r| r["whole"] == true).count(), 1);
    assert!(
        history["data"]["settled"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["payment_id"] != json!(payment)),
        "the reopened bills left the settled ones: {history}"
    );
    // A bill due again is paid again.
    let again = pay_with(&f, 1, &bills, Some(&card(GOOD_CARD).await)).await;
    assert_eq!(again["data"]["status"], "succeeded", "{again}");
}

#[tokio::test]
async fn two_refunds_at_once_never_give_back_more_than_the_payment() {
    let f = card_fixture().await;
    let (payment, total, _) = paid(&f, 2).await;
    // Each asks for more than half: together they would be more than the payment took.
    let part = (total * Decimal::new(6, 1)).round_dp(2);
    let body = json!({ "amount": format!("{part:.2}"), "reason": "race" });
    let (a, b) = tokio::join!(
        refund(&f, &payment, body.clone()),
        refund(&f, &payment, body.clone())
    );
    let outcomes = [&a, &b].map(|r| r["status"].as_str().unwrap().to_owned());
    assert_eq!(
        outcomes.iter().filter(|o| *o == "ok").count(),
        1,
        "{a}\n{b}"
    );
    let refused = if a["status"] == "ok" { &b } else { &a };
    assert_eq!(error_code(refused), "conflict", "{refused}");
    let given: String =
        f.db.pool
            .get()
            .await
            .unwrap()
            .query_one(
                "SELECT refunded::text FROM payments WHERE id = $1",
                &[&Uuid::parse_str(&payment).unwrap()],
            )
            .await
            .unwrap()
            .get(0);
    assert_eq!(given.parse::<Decimal>().unwrap(), part);
    assert_eq!(processor_refunds(&f, &payment).await.len(), 1);
}

#[tokio::test]
async fn the_same_refund_request_twice_is_one_refund() {
    let f = card_fixture().await;
    let (payment, _, _) = paid(&f, 1).await;
    let id = Uuid::new_v4();
    let body = json!({ "amount": "0.50", "reason": "twice" });
    let first = refund_as(&f, id, &operator(&f), &payment, body.clone()).await;
    let second = refund_as(&f, id, &operator(&f), &payment, body).await;
    assert_eq!(first["data"]["status"], "succeeded", "{first}");
    assert_eq!(
        first["data"]["refund_id"], second["data"]["refund_id"],
        "{second}"
    );
    assert_eq!(second["data"]["status"], "succeeded", "{second}");
    assert_eq!(books(&f).await.0, 1, "one refund in the books");
    assert_eq!(processor_refunds(&f, &payment).await.len(), 1);
}

#[tokio::test]
async fn a_refund_the_worker_lost_track_of_is_found_again_not_made_twice() {
    // The worker died after the processor made the refund and before it was recorded: the
    // request comes again and finds it by its metadata.
    let f = card_fixture().await;
    let (payment, _, _) = paid(&f, 1).await;
    let id = Uuid::new_v4();
    let first = refund_as(
        &f,
        id,
        &operator(&f),
        &payment,
        json!({ "amount": "0.40", "reason": "lost" }),
    )
    .await;
    let refund_id = first["data"]["refund_id"].as_str().unwrap().to_owned();
    // Put the books back as they were before the answer came.
    unanswered(&f, &refund_id, &payment).await;
    let again = refund_as(
        &f,
        id,
        &operator(&f),
        &payment,
        json!({ "amount": "0.40", "reason": "lost" }),
    )
    .await;
    assert_eq!(again["data"]["status"], "succeeded", "{again}");
    assert_eq!(again["data"]["refund_id"], json!(refund_id));
    assert_eq!(
        processor_refunds(&f, &payment).await.len(),
        1,
        "not made twice"
    );
}

#[tokio::test]
async fn refund_events_settle_a_pending_refund_once_and_a_late_failure_changes_nothing() {
    let f = card_fixture().await;
    let (payment, _, _) = paid(&f, 1).await;
    // A refund the processor took but has not settled yet (a bank that takes days).
    let refund_id = Uuid::new_v4();
    let admin = f.db.pool.get().await.unwrap();
    admin
        .execute(
            "INSERT INTO refunds (id, payment_id, request_id, requested_by, amount, currency, reason)
             VALUES ($1, $2, $3, 3, 0.75, 'EUR', 'slow bank')",
            &[&refund_id, &Uuid::parse_str(&payment).unwrap(), &Uuid::new_v4()],
        )
        .await
        .unwrap();
    let object = |status: &str| {
        json!({ "id": "re_handler_test_1", "object": "refund", "status": status, "amount": 75,
                "currency": "eur", "metadata": { "refund_id": refund_id.to_string() } })
    };
    let state = async || {
        let row = admin
            .query_one(
                "SELECT r.status, p.refunded::text,
                        (SELECT count(*) FROM audit_events WHERE entity = 'refund' AND entity_id = $2
                         AND action = 'status_changed')
                 FROM refunds r JOIN payments p ON p.id = r.payment_id WHERE r.id = $1",
                &[&refund_id, &refund_id.to_string()],
            )
            .await
            .unwrap();
        (
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, i64>(2),
        )
    };
    // A forged one changes nothing.
    deliver(
        &f,
        &webhook(
            "evt_r0",
            "refund.updated",
            &object("succeeded"),
            "whsec_forged",
            now(),
        ),
    )
    .await;
    assert_eq!(state().await, ("pending".into(), "0.00".into(), 0));
    let settled = webhook(
        "evt_r1",
        "refund.updated",
        &object("succeeded"),
        WEBHOOK_SECRET,
        now(),
    );
    deliver(&f, &settled).await;
    assert_eq!(state().await, ("succeeded".into(), "0.75".into(), 1));
    // The same event again, and a later one saying it failed: nothing moves.
    deliver(&f, &settled).await;
    deliver(
        &f,
        &webhook(
            "evt_r2",
            "refund.failed",
            &object("failed"),
            WEBHOOK_SECRET,
            now(),
        ),
    )
    .await;
    assert_eq!(state().await, ("succeeded".into(), "0.75".into(), 1));
    let via: String = admin
        .query_one(
            "SELECT new_state->>'via' FROM audit_events WHERE entity = 'refund' AND entity_id = $1
             AND action = 'status_changed'",
            &[&refund_id.to_string()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(via, "webhook");
}

#[tokio::test]
async fn reconcile_settles_a_refund_whose_answer_never_came() {
    let f = card_fixture().await;
    let (payment, _, _) = paid(&f, 1).await;
    let reply = refund(
        &f,
        &payment,
        json!({ "amount": "0.30", "reason": "reconciled" }),
    )
    .await;
    let refund_id = reply["data"]["refund_id"].as_str().unwrap().to_owned();
    // The books as if the processor's answer never came (no webhook either).
    unanswered(&f, &refund_id, &payment).await;
    let admin = f.db.pool.get().await.unwrap();
    let since = chrono::Utc::now() - chrono::Duration::minutes(5);
    let report = qbill_core::jobs::reconcile::run(&f.engine.services, since)
        .await
        .unwrap();
    assert!(report.refunds_healed >= 1, "{report:?}");
    let ours: Vec<_> = report
        .discrepancies
        .iter()
        .filter(|d| d.payment.map(|p| p.to_string()) == Some(payment.clone()))
        .collect();
    assert!(ours.is_empty(), "{ours:?}");
    let row = admin
        .query_one(
            "SELECT r.status, p.refunded::text FROM refunds r JOIN payments p ON p.id = r.payment_id
             WHERE r.id = $1::text::uuid",
            &[&refund_id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "succeeded");
    assert_eq!(row.get::<_, String>(1), "0.30");
    // Run again: nothing more to heal for this payment.
    let again = qbill_core::jobs::reconcile::run(&f.engine.services, since)
        .await
        .unwrap();
    assert_eq!(
        admin
            .query_one(
                "SELECT refunded::text FROM payments WHERE id = $1::text::uuid",
                &[&payment]
            )
            .await
            .unwrap()
            .get::<_, String>(0),
        "0.30",
        "{again:?}"
    );
}

#[tokio::test]
async fn hostile_refunds_and_callers_who_may_not_are_refused_and_change_nothing() {
    let f = card_fixture().await;
    let (payment, _, _) = paid(&f, 1).await;
    let before = books(&f).await;
    // Roles: a household (even the payer) and a provider may not refund.
    for who in [
        f.token(DEMO),
        token(&f, (4, "northwind"), Role::Provider, Some(1)),
    ] {
        let reply = refund_as(
            &f,
            Uuid::new_v4(),
            &who,
            &payment,
            json!({ "reason": "mine" }),
        )
        .await;
        assert_eq!(error_code(&reply), "forbidden", "{reply}");
    }
    let no_token = f
        .send(on_payment(
            message(
                "refund",
                None,
                None,
                json!({ "queue_name": f.queue.to_string(), "request_id": Uuid::new_v4(), "reason": "x" }),
            ),
            &payment,
            None,
        ))
        .await;
    assert_eq!(error_code(&no_token), "unauthorized", "{no_token}");
    // Bodies.
    for body in [
        json!({ "amount": "0.00", "reason": "zero" }),
        json!({ "amount": "-1.00", "reason": "negative" }),
        json!({ "amount": "1.5", "reason": "one place" }),
        json!({ "amount": 1.5, "reason": "a float" }),
        json!({ "amount": "1e3", "reason": "exponent" }),
        json!({ "amount": "1.00" }),
        json!({ "amount": "1.00", "reason": "" }),
        json!({ "amount": "1.00", "reason": "   " }),
        json!({ "amount": "1.00", "reason": "bell\u{7}" }),
        json!({ "amount": "1.00", "reason": "x".repeat(201) }),
        json!({ "amount": "1.00", "reason": "who", "user_id": 1 }),
        json!({ "amount": "1.00", "reason": "where", "payment_id": payment }),
    ] {
        let reply = refund(&f, &payment, body.clone()).await;
        assert_eq!(error_code(&reply), "invalid_request", "{body} -> {reply}");
    }
    for path in ["not-a-uuid", "", "'; DROP TABLE refunds; --"] {
        let reply = refund(&f, path, json!({ "reason": "path" })).await;
        assert_eq!(error_code(&reply), "invalid_request", "{path:?} -> {reply}");
    }
    let unknown = refund(
        &f,
        &Uuid::new_v4().to_string(),
        json!({ "reason": "ghost" }),
    )
    .await;
    assert_eq!(error_code(&unknown), "not_found", "{unknown}");
    assert_eq!(books(&f).await, before);
    assert!(processor_refunds(&f, &payment).await.is_empty());

    // A payment still waiting on its card, and one made elsewhere, are not refunded here.
    let bills = bill_ids(&f.demo_utils(1).await["bills"]);
    let pending = pay_with(&f, 1, &bills[..1], None).await;
    let pending_id = pending["data"]["payment_id"].as_str().unwrap();
    let reply = refund(&f, pending_id, json!({ "reason": "early" })).await;
    assert_eq!(error_code(&reply), "conflict", "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("only a settled payment"),
        "{reply}"
    );
    let cash = f
        .ask(
            "payments_external",
            Some(1),
            Some(&operator(&f)),
            json!({ "bills_id": [bills[1]], "method": "cash", "reference": "desk 7",
                    "received_on": chrono::Utc::now().date_naive().to_string() }),
        )
        .await;
    let reply = refund(
        &f,
        cash["data"]["payment_id"].as_str().unwrap(),
        json!({ "reason": "cash back" }),
    )
    .await;
    assert_eq!(error_code(&reply), "conflict", "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the way it came"),
        "{reply}"
    );
}

#[tokio::test]
async fn a_payment_takes_at_most_ten_refunds() {
    let f = card_fixture().await;
    let (payment, _, _) = paid(&f, 1).await;
    for i in 0..10 {
        let reply = refund(
            &f,
            &payment,
            json!({ "amount": "0.01", "reason": format!("cent {i}") }),
        )
        .await;
        assert_eq!(reply["data"]["status"], "succeeded", "{reply}");
    }
    let before = books(&f).await;
    let eleventh = refund(
        &f,
        &payment,
        json!({ "amount": "0.01", "reason": "one more" }),
    )
    .await;
    assert_eq!(error_code(&eleventh), "conflict", "{eleventh}");
    assert!(
        eleventh["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the most one payment takes"),
        "{eleventh}"
    );
    assert_eq!(books(&f).await, before);
    assert_eq!(processor_refunds(&f, &payment).await.len(), 10);
}

#[tokio::test]
async fn two_refunds_that_waited_on_the_payments_lock_still_see_each_other() {
    // Both requests wait on the payment's row while another transaction holds it, then run one
    // after the other: the second must see the first's refund, though its statement began before
    // the first committed.
    let f = card_fixture().await;
    let (payment, total, _) = paid(&f, 2).await;
    let part = (total * Decimal::new(6, 1)).round_dp(2);
    let body = json!({ "amount": format!("{part:.2}"), "reason": "queued" });
    let mut holder = f.db.pool.get().await.unwrap();
    let hold = holder.transaction().await.unwrap();
    hold.execute(
        "SELECT 1 FROM payments WHERE id = $1::text::uuid FOR UPDATE",
        &[&payment],
    )
    .await
    .unwrap();
    let release = async {
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
        hold.rollback().await.unwrap();
    };
    let (a, b, ()) = tokio::join!(
        refund(&f, &payment, body.clone()),
        refund(&f, &payment, body.clone()),
        release
    );
    let ok = [&a, &b].iter().filter(|r| r["status"] == "ok").count();
    assert_eq!(ok, 1, "{a}\n{b}");
    assert_eq!(processor_refunds(&f, &payment).await.len(), 1);
}
