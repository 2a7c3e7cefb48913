//! Card payments against the local processor (localstripe, started by `scripts/local-stack`):
//! the payment reserves its bills, the processor's answer (the confirm's, a webhook's, the jobs')
//! settles or releases them, once and only forward. Webhooks are made here as the processor makes
//! them (its intent, signed), so that they can be forged, repeated and reordered.

use qbill_core::Engine;
use qbill_core::envelope::{InboundMessage, attribute};
use qbill_core::processor::webhook::{ROUTE, SIGNATURE, SIGNATURE_MARKER};
use qbill_core::processor::{Processor, signature, stripe::Stripe};
use qbill_tests::{env, message};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{DEMO, DEMO2, Fixture, bill_ids, error_code};

pub(crate) const WEBHOOK_SECRET: &str = "whsec_handler_tests_of_card_payments";
pub(crate) const GOOD_CARD: &str = "4242424242424242";
/// Declined by localstripe when charged (card_declined).
const DECLINED_CARD: &str = "4000000000000341";

/// A fixture whose engine moves money through the local processor.
pub(crate) async fn card_fixture() -> Fixture {
    let mut f = Fixture::new().await;
    let stripe = Stripe::new(
        &env("QBILL_STRIPE_API_BASE"),
        env("QBILL_STRIPE_SECRET_KEY").into(),
    )
    .unwrap();
    let services = std::mem::replace(
        &mut f.engine,
        Engine::new(
            f.db.app_pool.clone(),
            qbill_core::cache::Cache::disabled(),
            qbill_tests::tokens(),
            1,
        ),
    )
    .services;
    f.engine = Engine {
        services: services.with_processor(Processor::new(stripe, vec![WEBHOOK_SECRET.into()])),
    };
    f
}

/// A card made the way the CLI makes one (a token's card, with the publishable key).
pub(crate) async fn card(number: &str) -> String {
    Stripe::card(
        &env("QBILL_STRIPE_API_BASE"),
        &env("QBILL_STRIPE_PUBLISHABLE_KEY"),
        number,
        12,
        2034,
        "123",
    )
    .await
    .expect("localstripe makes a card")
}

/// Calls the processor's API as the household's browser would, with the secret key.
pub(crate) async fn processor(method: reqwest::Method, path: &str, form: &[(&str, &str)]) -> Value {
    let response = reqwest::Client::new()
        .request(method, format!("{}{path}", env("QBILL_STRIPE_API_BASE")))
        .basic_auth(env("QBILL_STRIPE_SECRET_KEY"), Some(""))
        .form(form)
        .send()
        .await
        .expect("localstripe answers");
    let status = response.status();
    let body: Value = response.json().await.expect("JSON");
    assert!(status.is_success(), "{path}: {status} {body}");
    body
}

async fn intent(id: &str) -> Value {
    processor(
        reqwest::Method::GET,
        &format!("/v1/payment_intents/{id}"),
        &[],
    )
    .await
}

/// Confirms a pending payment's intent at the processor with a good card, as Stripe.js does in
/// the browser; the books hear of it only from a webhook or the jobs.
async fn confirm_at_processor(intent_id: &str) -> Value {
    let method = processor(
        reqwest::Method::POST,
        "/v1/payment_methods",
        &[
            ("type", "card"),
            ("card[number]", GOOD_CARD),
            ("card[exp_month]", "12"),
            ("card[exp_year]", "2034"),
            ("card[cvc]", "123"),
        ],
    )
    .await;
    let path = format!("/v1/payment_intents/{intent_id}");
    processor(
        reqwest::Method::POST,
        &path,
        &[("payment_method", method["id"].as_str().unwrap())],
    )
    .await;
    processor(reqwest::Method::POST, &format!("{path}/confirm"), &[]).await
}

/// The webhook the processor sends for `intent` as event `event`, signed with `secret` at `time`.
pub(crate) fn webhook(
    event: &str,
    kind: &str,
    intent: &Value,
    secret: &str,
    time: i64,
) -> InboundMessage {
    let body = serde_json::to_string_pretty(&json!({
        "id": event,
        "object": "event",
        "type": kind,
        "created": time,
        "data": { "object": intent },
    }))
    .unwrap();
    InboundMessage {
        message_id: Uuid::new_v4().to_string(),
        attributes: [
            (attribute::ROUTE.to_owned(), ROUTE.to_owned()),
            (
                SIGNATURE.to_owned(),
                format!("{SIGNATURE_MARKER}{}", signature::sign(&body, secret, time)),
            ),
        ]
        .into(),
        body,
    }
}

pub(crate) fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

pub(crate) async fn deliver(f: &Fixture, webhook: &InboundMessage) {
    let outcome = f
        .engine
        .handle(webhook)
        .await
        .expect("no transient failure");
    assert!(
        matches!(outcome, qbill_core::Outcome::Drop),
        "a webhook is never answered on a queue: {outcome:?}"
    );
}

pub(crate) async fn pay_with(
    f: &Fixture,
    apartment: i64,
    bills: &[i64],
    method: Option<&str>,
) -> Value {
    let mut fields = json!({ "bills_id": bills });
    if let Some(method) = method {
        fields["payment_method"] = json!(method);
    }
    f.ask("payments", Some(apartment), Some(&f.token(DEMO)), fields)
        .await
}

/// `user` reads payment `id` of apartment 1 (the `payment` route).
pub(crate) async fn read_payment(f: &Fixture, user: (i64, &str), id: &str) -> Value {
    let mut read = message(
        "payment",
        Some(1),
        Some(&f.token(user)),
        json!({ "queue_name": f.queue.to_string(), "request_id": Uuid::new_v4() }),
    );
    read.attributes
        .insert(attribute::PAYMENT_ID.into(), id.to_owned());
    f.send(read).await
}

async fn payment_row(f: &Fixture, id: &str) -> tokio_postgres::Row {
    f.db.pool
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT status, intent_id, total::text AS total, currency,
                    (SELECT count(*) FROM bills WHERE payment_id = p.id) AS paid,
                    (SELECT count(*) FROM bills WHERE reserved_by = p.id) AS reserved
             FROM payments p WHERE id = $1",
            &[&Uuid::parse_str(id).unwrap()],
        )
        .await
        .unwrap()
}

async fn open_bills(f: &Fixture, apartment: i64) -> Vec<Value> {
    f.demo_utils(apartment).await["bills"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn a_good_card_settles_at_once_and_the_processor_charged_the_ledgers_amount() {
    let f = card_fixture().await;
    let bills = bill_ids(&f.demo_utils(1).await["bills"]);
    let chosen = &bills[..2];
    let reply = pay_with(&f, 1, chosen, Some(&card(GOOD_CARD).await)).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let data = &reply["data"];
    assert_eq!(data["status"], "succeeded", "{reply}");
    assert!(data["paid_at"].is_string(), "{reply}");
    assert!(data.get("client_secret").is_none(), "{reply}");
    let row = payment_row(&f, data["payment_id"].as_str().unwrap()).await;
    assert_eq!(row.get::<_, String>("status"), "succeeded");
    assert_eq!(row.get::<_, i64>("paid"), 2);
    assert_eq!(row.get::<_, i64>("reserved"), 0);
    // What the processor charged is the ledger's total in minor units, in its currency, for
    // this payment.
    let charged = intent(row.get::<_, Option<&str>>("intent_id").unwrap()).await;
    let total: rust_decimal::Decimal = row.get::<_, String>("total").parse().unwrap();
    assert_eq!(
        charged["amount"].as_i64().unwrap(),
        i64::try_from(total * rust_decimal::Decimal::from(100)).unwrap(),
        "{charged}"
    );
    assert_eq!(charged["currency"], "eur");
    assert_eq!(charged["metadata"]["payment_id"], data["payment_id"]);
    assert_eq!(charged["status"], "succeeded");
    let open: Vec<i64> = bill_ids(&json!(open_bills(&f, 1).await));
    assert!(
        chosen.iter().all(|b| !open.contains(b)),
        "paid bills left the open list"
    );
}

#[tokio::test]
async fn a_declined_card_fails_in_words_and_releases_its_bills() {
    let f = card_fixture().await;
    let bills = bill_ids(&f.demo_utils(1).await["bills"]);
    let reply = pay_with(&f, 1, &bills[..1], Some(&card(DECLINED_CARD).await)).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let data = &reply["data"];
    assert_eq!(data["status"], "failed", "{reply}");
    assert_eq!(data["failure_code"], "card_declined", "{reply}");
    assert!(
        data["failure_message"]
            .as_str()
            .unwrap()
            .contains("declined"),
        "{reply}"
    );
    assert!(data["paid_at"].is_null());
    let row = payment_row(&f, data["payment_id"].as_str().unwrap()).await;
    assert_eq!(row.get::<_, String>("status"), "failed");
    assert_eq!(row.get::<_, i64>("reserved"), 0, "its bills were released");
    // The bill is payable again, and a good card pays it.
    let again = pay_with(&f, 1, &bills[..1], Some(&card(GOOD_CARD).await)).await;
    assert_eq!(again["data"]["status"], "succeeded", "{again}");
}

#[tokio::test]
async fn without_a_card_the_bills_are_reserved_until_the_webhook_settles_them() {
    let f = card_fixture().await;
    let bills = bill_ids(&f.demo_utils(1).await["bills"]);
    let reply = pay_with(&f, 1, &bills[..2], None).await;
    let data = &reply["data"];
    assert_eq!(data["status"], "pending", "{reply}");
    let secret = data["client_secret"].as_str().expect("a client secret");
    assert!(secret.starts_with("pi_"), "{secret}");
    // `utils` shows the reserved bills as processing, and a second payment cannot take them.
    let shown = open_bills(&f, 1).await;
    for bill in &bills[..2] {
        let b = shown.iter().find(|b| b["bill_id"] == json!(bill)).unwrap();
        assert_eq!(b["status"], "processing", "{b}");
    }
    let second = pay_with(&f, 1, &bills[1..3], Some(&card(GOOD_CARD).await)).await;
    assert_eq!(error_code(&second), "conflict", "{second}");
    assert!(
        second["error"]["message"]
            .as_str()
            .unwrap()
            .contains("is being paid"),
        "{second}"
    );
    // The browser confirms at the processor; the webhook settles.
    let payment_id = data["payment_id"].as_str().unwrap();
    let intent_id = payment_row(&f, payment_id)
        .await
        .get::<_, Option<String>>("intent_id")
        .unwrap();
    let confirmed = confirm_at_processor(&intent_id).await;
    assert_eq!(confirmed["status"], "succeeded");
    deliver(
        &f,
        &webhook(
            "evt_ok_1",
            "payment_intent.succeeded",
            &confirmed,
            WEBHOOK_SECRET,
            now(),
        ),
    )
    .await;
    let row = payment_row(&f, payment_id).await;
    assert_eq!(row.get::<_, String>("status"), "succeeded");
    assert_eq!(row.get::<_, i64>("paid"), 2);
    // The household reads it back, with its history.
    let shown = read_payment(&f, DEMO, payment_id).await;
    assert_eq!(shown["kind"], "payment", "{shown}");
    assert_eq!(shown["data"]["status"], "succeeded", "{shown}");
    let steps: Vec<(&str, &str)> = shown["data"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["status"].as_str().unwrap(), s["via"].as_str().unwrap()))
        .collect();
    assert_eq!(steps, [("pending", "request"), ("succeeded", "webhook")]);
    // The receipt is in the household's inbox, once.
    let receipts = f
        .db
        .count(
            "SELECT count(*) FROM notifications WHERE key = 'payment.succeeded:' || $1 AND in_inbox",
            &[&payment_id],
        )
        .await;
    assert_eq!(receipts, 1);
}

#[tokio::test]
async fn the_same_request_twice_is_one_payment_and_one_intent() {
    let f = card_fixture().await;
    let bills = bill_ids(&f.demo_utils(1).await["bills"]);
    let request_id = Uuid::new_v4();
    let fields = json!({ "bills_id": &bills[..1] });
    let first = f
        .ask_as(
            request_id,
            "payments",
            Some(1),
            Some(&f.token(DEMO)),
            fields.clone(),
        )
        .await;
    let second = f
        .ask_as(
            request_id,
            "payments",
            Some(1),
            Some(&f.token(DEMO)),
            fields,
        )
        .await;
    assert_eq!(first["data"]["payment_id"], second["data"]["payment_id"]);
    assert_eq!(
        first["data"]["client_secret"],
        second["data"]["client_secret"]
    );
    let count =
        f.db.count(
            "SELECT count(*) FROM payments WHERE request_id = $1",
            &[&request_id],
        )
        .await;
    assert_eq!(count, 1);
}

#[tokio::test]
async fn a_forged_or_stale_webhook_changes_nothing() {
    let f = card_fixture().await;
    let bills = bill_ids(&f.demo_utils(1).await["bills"]);
    let data = pay_with(&f, 1, &bills[..1], None).await["data"].clone();
    let payment_id = data["payment_id"].as_str().unwrap().to_owned();
    let intent_id = payment_row(&f, &payment_id)
        .await
        .get::<_, Option<String>>("intent_id")
        .unwrap();
    // What a forger would claim: the intent succeeded.
    let mut claimed = intent(&intent_id).await;
    claimed["status"] = json!("succeeded");
    for forged in [
        webhook(
            "evt_forged",
            "payment_intent.succeeded",
            &claimed,
            "whsec_not_ours",
            now(),
        ),
        webhook(
            "evt_stale",
            "payment_intent.succeeded",
            &claimed,
            WEBHOOK_SECRET,
            now() - 600,
        ),
    ] {
        deliver(&f, &forged).await;
    }
    // A genuine webhook's body altered after it was signed.
    let mut altered = webhook(
        "evt_altered",
        "payment_intent.succeeded",
        &intent(&intent_id).await,
        WEBHOOK_SECRET,
        now(),
    );
    altered.body = altered.body.replace("requires_payment_method", "succeeded");
    deliver(&f, &altered).await;
    let row = payment_row(&f, &payment_id).await;
    assert_eq!(row.get::<_, String>("status"), "pending");
    assert_eq!(row.get::<_, i64>("paid"), 0);
    assert_eq!(
        f.db.count("SELECT count(*) FROM processor_events", &[])
            .await,
        0,
        "no refused event was recorded as applied"
    );
}

#[tokio::test]
async fn an_event_twice_and_a_late_failure_settle_once_and_never_undo_it() {
    let f = card_fixture().await;
    let bills = bill_ids(&f.demo_utils(1).await["bills"]);
    let data = pay_with(&f, 1, &bills[..2], None).await["data"].clone();
    let payment_id = data["payment_id"].as_str().unwrap().to_owned();
    let intent_id = payment_row(&f, &payment_id)
        .await
        .get::<_, Option<String>>("intent_id")
        .unwrap();
    let confirmed = confirm_at_processor(&intent_id).await;
    let succeeded = webhook(
        "evt_twice",
        "payment_intent.succeeded",
        &confirmed,
        WEBHOOK_SECRET,
        now(),
    );
    deliver(&f, &succeeded).await;
    deliver(&f, &succeeded).await;
    // A failure that happened before, delivered after.
    let mut failed_intent = confirmed.clone();
    failed_intent["status"] = json!("requires_payment_method");
    failed_intent["last_payment_error"] =
        json!({ "code": "card_declined", "message": "Your card was declined." });
    deliver(
        &f,
        &webhook(
            "evt_late_failure",
            "payment_intent.payment_failed",
            &failed_intent,
            WEBHOOK_SECRET,
            now(),
        ),
    )
    .await;
    let row = payment_row(&f, &payment_id).await;
    assert_eq!(row.get::<_, String>("status"), "succeeded");
    assert_eq!(row.get::<_, i64>("paid"), 2);
    let settled_changes =
        f.db.count(
            "SELECT count(*) FROM audit_events WHERE entity = 'payment' AND entity_id = $1
             AND action = 'status_changed' AND new_state->>'status' = 'succeeded'",
            &[&payment_id],
        )
        .await;
    assert_eq!(settled_changes, 1, "settled once");
    let receipts =
        f.db.count(
            "SELECT count(*) FROM notifications WHERE key = 'payment.succeeded:' || $1",
            &[&payment_id],
        )
        .await;
    assert_eq!(receipts, 1, "one receipt");
}

#[tokio::test]
async fn a_signed_event_for_no_payment_of_ours_is_dropped_and_not_retried() {
    let f = card_fixture().await;
    let event = format!("evt_for_nobody_{}", Uuid::new_v4().simple());
    // Signed with our secret (another deployment on the same account, say), naming a payment
    // these books never had, then an intent without one.
    for metadata in [
        json!({ "payment_id": Uuid::new_v4().to_string() }),
        json!({}),
    ] {
        let intent = json!({ "id": format!("pi_nobody_{}", Uuid::new_v4().simple()), "object": "payment_intent",
            "status": "succeeded", "amount": 1000, "currency": "eur", "metadata": metadata });
        deliver(
            &f,
            &webhook(
                &event,
                "payment_intent.succeeded",
                &intent,
                WEBHOOK_SECRET,
                now(),
            ),
        )
        .await;
    }
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM processor_events WHERE id = $1",
            &[&event]
        )
        .await,
        0
    );
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM payments WHERE intent_id LIKE 'pi_nobody_%'",
            &[]
        )
        .await,
        0
    );
}

#[tokio::test]
async fn reconcile_settles_what_a_lost_webhook_left_pending() {
    let f = card_fixture().await;
    let bills = bill_ids(&f.demo_utils(1).await["bills"]);
    let started = chrono::Utc::now() - chrono::Duration::minutes(1);
    let data = pay_with(&f, 1, &bills[..1], None).await["data"].clone();
    let payment_id = data["payment_id"].as_str().unwrap().to_owned();
    let intent_id = payment_row(&f, &payment_id)
        .await
        .get::<_, Option<String>>("intent_id")
        .unwrap();
    confirm_at_processor(&intent_id).await;
    // Its webhook never came to this engine.
    assert_eq!(
        payment_row(&f, &payment_id)
            .await
            .get::<_, String>("status"),
        "pending"
    );
    let report = qbill_core::jobs::reconcile::run(&f.engine.services, started)
        .await
        .unwrap();
    assert_eq!(report.healed, 1, "{report:?}");
    assert!(report.discrepancies.is_empty(), "{report:?}");
    assert_eq!(
        payment_row(&f, &payment_id)
            .await
            .get::<_, String>("status"),
        "succeeded"
    );
    // Twice is the same.
    let again = qbill_core::jobs::reconcile::run(&f.engine.services, started)
        .await
        .unwrap();
    assert_eq!(again.healed, 0, "{again:?}");
}

#[tokio::test]
async fn an_abandoned_payment_is_expired_and_its_bills_released() {
    let f = card_fixture().await;
    let bills = bill_ids(&f.demo_utils(1).await["bills"]);
    let data = pay_with(&f, 1, &bills[..1], None).await["data"].clone();
    let payment_id = data["payment_id"].as_str().unwrap().to_owned();
    // Not old enough yet: left alone.
    let early =
        qbill_core::jobs::expire_payments::run(&f.engine.services, chrono::Duration::minutes(30))
            .await
            .unwrap();
    assert_eq!(early.expired, 0);
    let report =
        qbill_core::jobs::expire_payments::run(&f.engine.services, chrono::Duration::zero())
            .await
            .unwrap();
    assert!(report.expired >= 1, "{report:?}");
    let row = payment_row(&f, &payment_id).await;
    assert_eq!(row.get::<_, String>("status"), "canceled");
    assert_eq!(row.get::<_, i64>("reserved"), 0);
    assert_eq!(
        intent(row.get::<_, Option<&str>>("intent_id").unwrap()).await["status"],
        "canceled"
    );
    let again = pay_with(&f, 1, &bills[..1], Some(&card(GOOD_CARD).await)).await;
    assert_eq!(again["data"]["status"], "succeeded", "{again}");
}

#[tokio::test]
async fn hostile_payment_methods_and_other_households_are_refused() {
    let f = card_fixture().await;
    let bills = bill_ids(&f.demo_utils(1).await["bills"]);
    for hostile in [
        json!(""),
        json!("pm_"),
        json!("tok_visa"),
        json!("pm_abc'; DROP TABLE payments; --"),
        json!(format!("pm_{}", "a".repeat(300))),
        json!(42),
        json!(["pm_a"]),
    ] {
        let reply = f
            .ask(
                "payments",
                Some(1),
                Some(&f.token(DEMO)),
                json!({ "bills_id": &bills[..1], "payment_method": hostile }),
            )
            .await;
        assert_eq!(error_code(&reply), "invalid_request", "{hostile}: {reply}");
    }
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM payments WHERE processor = 'stripe'",
            &[]
        )
        .await,
        0,
        "no card payment was recorded"
    );
    // Another household may neither pay for the apartment nor read its payments.
    let data = pay_with(&f, 1, &bills[..1], None).await["data"].clone();
    let read = read_payment(&f, DEMO2, data["payment_id"].as_str().unwrap()).await;
    assert_eq!(error_code(&read), "forbidden");
    // A payment id that is not a UUID, or one of no payment of the apartment.
    for id in ["not-a-uuid".to_owned(), Uuid::new_v4().to_string()] {
        let code = error_code(&read_payment(&f, DEMO, &id).await).to_owned();
        assert!(
            ["invalid_request", "not_found"].contains(&code.as_str()),
            "{id}: {code}"
        );
    }
}

#[tokio::test]
async fn a_payment_refused_for_a_reserved_bill_is_refused_again_when_delivered_again() {
    let f = card_fixture().await;
    let bills = bill_ids(&f.demo_utils(1).await["bills"]);
    let first = pay_with(&f, 1, &bills[..1], None).await;
    assert_eq!(first["data"]["status"], "pending", "{first}");
    let request = Uuid::new_v4();
    let fields = json!({ "bills_id": &bills[..1] });
    let refused = f
        .ask_as(
            request,
            "payments",
            Some(1),
            Some(&f.token(DEMO)),
            fields.clone(),
        )
        .await;
    assert_eq!(error_code(&refused), "conflict", "{refused}");
    // The first payment is abandoned and its bill released...
    qbill_core::jobs::expire_payments::run(&f.engine.services, chrono::Duration::zero())
        .await
        .unwrap();
    assert_eq!(open_bills(&f, 1).await[0]["status"], "open");
    // ...but the refused request, delivered again, is the same request: refused the same way,
    // and nothing is paid for it.
    let again = f
        .ask_as(request, "payments", Some(1), Some(&f.token(DEMO)), fields)
        .await;
    assert_eq!(again["error"], refused["error"], "{again}");
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM payments WHERE request_id = $1",
            &[&request]
        )
        .await,
        0
    );
}

#[tokio::test]
async fn two_expiry_jobs_and_two_reconciliations_at_once_change_each_payment_once() {
    let f = card_fixture().await;
    let bills = bill_ids(&f.demo_utils(1).await["bills"]);
    let started = chrono::Utc::now() - chrono::Duration::minutes(1);
    // One payment the processor captured without a webhook, one abandoned.
    let captured = pay_with(&f, 1, &bills[..1], None).await["data"]["payment_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let abandoned = pay_with(&f, 1, &bills[1..2], None).await["data"]["payment_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let intent_id = payment_row(&f, &captured)
        .await
        .get::<_, Option<String>>("intent_id")
        .unwrap();
    confirm_at_processor(&intent_id).await;
    let services = &f.engine.services;
    let (a, b) = tokio::join!(
        qbill_core::jobs::reconcile::run(services, started),
        qbill_core::jobs::reconcile::run(services, started)
    );
    assert_eq!(a.unwrap().healed + b.unwrap().healed, 1, "healed once");
    let after = chrono::Duration::zero();
    let (a, b) = tokio::join!(
        qbill_core::jobs::expire_payments::run(services, after),
        qbill_core::jobs::expire_payments::run(services, after)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.expired + b.expired, 1, "expired once: {a:?} {b:?}");
    for (payment, status) in [(&captured, "succeeded"), (&abandoned, "canceled")] {
        assert_eq!(
            payment_row(&f, payment).await.get::<_, String>("status"),
            status
        );
        let changes =
            f.db.count(
                "SELECT count(*) FROM audit_events WHERE entity = 'payment' AND entity_id = $1
                 AND new_state->>'status' = $2",
                &[payment, &status],
            )
            .await;
        assert_eq!(changes, 1, "{payment} became {status} once");
    }
}

/// An apartment of demo's in `currency` with one open bill of `amount`; returns (apartment, bill).
async fn apartment_in(f: &Fixture, currency: &str, amount: &str) -> (i64, i64) {
    let client = f.db.pool.get().await.unwrap();
    let apartment: i64 = client
        .query_one(
            "INSERT INTO apartments (address, currency) VALUES ('1 Exponent Lane', $1) RETURNING id",
            &[&currency],
        )
        .await
        .unwrap()
        .get(0);
    client
        .execute(
            "INSERT INTO apartment_owners (apartment_id, user_id) VALUES ($1, $2)",
            &[&apartment, &DEMO.0],
        )
        .await
        .unwrap();
    let bill: i64 = client
        .query_one(
            "INSERT INTO bills (apartment_id, provider_id, utility, period_start, period_end, due_date, amount, currency)
             VALUES ($1, 1, 'electricity', '2026-11-01', '2026-11-30', '2026-12-20', $2::text::numeric, $3)
             RETURNING id",
            &[&apartment, &amount, &currency],
        )
        .await
        .unwrap()
        .get(0);
    (apartment, bill)
}

#[tokio::test]
async fn the_processor_is_charged_in_each_currencys_minor_units() {
    let f = card_fixture().await;
    // ISO 4217 exponents 0 (yen), 2 (euro) and 3 (dinar).
    for (currency, amount, minor) in [
        ("JPY", "1234", 1234),
        ("EUR", "12.34", 1234),
        ("KWD", "12.34", 12340),
    ] {
        let (apartment, bill) = apartment_in(&f, currency, amount).await;
        let reply = pay_with(&f, apartment, &[bill], Some(&card(GOOD_CARD).await)).await;
        assert_eq!(reply["data"]["status"], "succeeded", "{currency}: {reply}");
        assert_eq!(reply["data"]["currency"], currency);
        let row = payment_row(&f, reply["data"]["payment_id"].as_str().unwrap()).await;
        let charged = intent(row.get::<_, Option<&str>>("intent_id").unwrap()).await;
        assert_eq!(charged["amount"], minor, "{currency}: {charged}");
        assert_eq!(
            charged["currency"],
            currency.to_ascii_lowercase(),
            "{currency}"
        );
    }
}

/// Pending card payments of apartment 1, a bill each, confirmed at the processor: each one's id
/// and its intent as the processor now holds it (succeeded).
async fn confirmed_payments(f: &Fixture, n: usize) -> Vec<(String, Value)> {
    let bills = bill_ids(&f.demo_utils(1).await["bills"]);
    assert!(bills.len() >= n, "apartment 1 has {} bills", bills.len());
    let mut made = Vec::new();
    for bill in &bills[..n] {
        let data = pay_with(f, 1, &[*bill], None).await["data"].clone();
        let id = data["payment_id"].as_str().expect("a payment").to_owned();
        let intent_id: String = payment_row(f, &id).await.get("intent_id");
        made.push((id, confirm_at_processor(&intent_id).await));
    }
    made
}

async fn apartment_version(f: &Fixture) -> i64 {
    f.db.pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT version FROM apartments WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0)
}

async fn deliver_together(f: &Fixture, webhooks: &[InboundMessage]) {
    for outcome in f.engine.handle_batch(webhooks).await {
        assert!(
            matches!(outcome, Ok(qbill_core::Outcome::Drop)),
            "a webhook is applied and never answered: {outcome:?}"
        );
    }
}

async fn succeeded_changes(f: &Fixture, payment: &str) -> i64 {
    f.db.count(
        "SELECT count(*) FROM audit_events WHERE entity = 'payment' AND entity_id = $1
         AND action = 'status_changed' AND new_state->>'status' = 'succeeded'",
        &[&payment],
    )
    .await
}

async fn receipts_of(f: &Fixture, payment: &str) -> i64 {
    f.db.count(
        "SELECT count(*) FROM notifications WHERE key = 'payment.succeeded:' || $1",
        &[&payment],
    )
    .await
}

#[tokio::test]
async fn the_webhooks_of_one_receive_settle_together_each_with_its_own_outcome() {
    let f = card_fixture().await;
    let made = confirmed_payments(&f, 3).await;
    let before = apartment_version(&f).await;
    let event = |i: usize| format!("evt_batch_{i}_{}", Uuid::new_v4().simple());
    let (first, second) = (event(0), event(1));
    let succeeded = |id: &str, intent: &Value| {
        webhook(
            id,
            "payment_intent.succeeded",
            intent,
            WEBHOOK_SECRET,
            now(),
        )
    };
    // The third's intent says the processor captured another amount than the ledger's.
    let mut other_amount = made[2].1.clone();
    other_amount["amount"] = json!(other_amount["amount"].as_i64().unwrap() + 1);
    let nobody = json!({ "id": format!("pi_nobody_{}", Uuid::new_v4().simple()), "object": "payment_intent",
        "status": "succeeded", "amount": 1000, "currency": "eur",
        "metadata": { "payment_id": Uuid::new_v4().to_string() } });
    let batch = [
        succeeded(&first, &made[0].1),
        succeeded(&second, &made[1].1),
        // The first event delivered twice in the same receive.
        succeeded(&first, &made[0].1),
        succeeded(&event(2), &other_amount),
        // Forged: signed with another secret.
        webhook(
            &event(3),
            "payment_intent.succeeded",
            &made[2].1,
            "whsec_forged",
            now(),
        ),
        succeeded(&event(4), &nobody),
    ];
    deliver_together(&f, &batch).await;

    for (id, _) in &made[..2] {
        let row = payment_row(&f, id).await;
        assert_eq!(row.get::<_, String>("status"), "succeeded", "{id}");
        assert_eq!(row.get::<_, i64>("paid"), 1, "{id}");
        assert_eq!(row.get::<_, i64>("reserved"), 0, "{id}");
        assert_eq!(succeeded_changes(&f, id).await, 1, "{id} settled once");
        assert_eq!(receipts_of(&f, id).await, 1, "{id} has one receipt");
    }
    // The other amount and the forgery changed nothing: the third still waits, its bill held.
    let third = payment_row(&f, &made[2].0).await;
    assert_eq!(third.get::<_, String>("status"), "pending");
    assert_eq!(third.get::<_, i64>("reserved"), 1);
    assert_eq!(receipts_of(&f, &made[2].0).await, 0);
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM processor_events WHERE id = ANY($1)",
            &[&vec![first.clone(), second.clone(), event(4)]]
        )
        .await,
        2,
        "the two events of our payments claimed once each, none for nobody's"
    );
    // Versions are random (`cache_version()`): a bump is a different one.
    assert_ne!(
        apartment_version(&f).await,
        before,
        "the apartment's version moved"
    );

    // Delivered again, alone, later: nothing more happens; the third's right event settles it.
    deliver_together(&f, &batch[..2]).await;
    deliver(&f, &succeeded(&event(5), &made[2].1)).await;
    for (id, _) in &made {
        assert_eq!(
            payment_row(&f, id).await.get::<_, String>("status"),
            "succeeded"
        );
        assert_eq!(succeeded_changes(&f, id).await, 1, "{id} settled once");
        assert_eq!(receipts_of(&f, id).await, 1, "{id} has one receipt");
    }
}

#[tokio::test]
async fn two_receives_of_the_same_webhooks_in_opposite_orders_settle_each_payment_once() {
    let f = card_fixture().await;
    let made = confirmed_payments(&f, 4).await;
    let forward: Vec<InboundMessage> = made
        .iter()
        .enumerate()
        .map(|(i, (_, intent))| {
            webhook(
                &format!("evt_both_{i}_{}", Uuid::new_v4().simple()),
                "payment_intent.succeeded",
                intent,
                WEBHOOK_SECRET,
                now(),
            )
        })
        .collect();
    let mut backward = forward.clone();
    backward.reverse();
    // Two workers took the same events (a redelivery): their batches lock in one order.
    tokio::join!(
        deliver_together(&f, &forward),
        deliver_together(&f, &backward)
    );
    for (id, _) in &made {
        let row = payment_row(&f, id).await;
        assert_eq!(row.get::<_, String>("status"), "succeeded", "{id}");
        assert_eq!(row.get::<_, i64>("paid"), 1, "{id}");
        assert_eq!(succeeded_changes(&f, id).await, 1, "{id} settled once");
        assert_eq!(receipts_of(&f, id).await, 1, "{id} has one receipt");
    }
}
