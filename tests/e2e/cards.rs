//! Card payments through the gateway with the local processor (localstripe): its webhooks come
//! back through the same gateway and queue, signed, to the pool; a forged one, or the same one
//! twice, changes nothing more.

use std::time::Duration;

use qbill::client::GatewayClient;
use qbill_core::processor::signature;
use qbill_tests::{card, count, db_pool, env, test_card, token_for};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{REPLY_TIMEOUT, served};

/// The reconciliation settles whatever intent of the window succeeded without its webhook having
/// come yet, whichever test's payment it is: a test that waits for a webhook to settle its
/// payment holds this for reading, the test that runs the reconciliation for writing.
static WEBHOOKS_AWAITED: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// The jobs an operator runs, over the pool's database and the local processor.
fn operator() -> qbill_core::services::Services {
    let store = qbill_core::store::application_pool(&served().db_url, 2).unwrap();
    let engine = qbill_tests::engine_on(&store, None);
    engine.services.with_processor(qbill_tests::processor())
}

/// Makes the processor lose every webhook of `payment`'s intents on the way (the local
/// processor's launcher, scripts/lib/run-localstripe.py, has this one fault).
async fn lose_webhooks_of(payment: &str) {
    let lost = reqwest::Client::new()
        .post(format!(
            "{}/_config/lost_webhooks",
            env("QBILL_STRIPE_API_BASE")
        ))
        .form(&[("payment_id", payment)])
        .send()
        .await
        .unwrap();
    assert!(lost.status().is_success(), "{}", lost.status());
}

/// The household passes its bank's check (localstripe's stand-in of the page Stripe.js shows).
async fn authenticate(client_secret: &str) {
    let intent = client_secret.split("_secret_").next().unwrap();
    let authenticated = reqwest::Client::new()
        .post(format!(
            "{}/v1/payment_intents/{intent}/_authenticate",
            env("QBILL_STRIPE_API_BASE")
        ))
        .form(&[
            ("key", env("QBILL_STRIPE_PUBLISHABLE_KEY")),
            ("client_secret", client_secret.to_owned()),
            ("success", "true".into()),
        ])
        .send()
        .await
        .unwrap();
    assert!(authenticated.status().is_success());
}

/// How many times the audit trail saw payment `id` become `succeeded`.
async fn times_settled(id: &str) -> i64 {
    count(
        &db_pool(&served().admin_url),
        "SELECT count(*) FROM audit_events WHERE entity = 'payment' AND entity_id = $1
         AND new_state->>'status' = 'succeeded'",
        &[&id],
    )
    .await
}

/// The `via` of each step of a payment's history, as the household reads it.
fn vias(read: &Value) -> Vec<String> {
    read["data"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["via"].as_str().unwrap().to_owned())
        .collect()
}

/// A household of its own, logged in on a client of its own: (client, apartment, its bills).
async fn household(prefix: &str) -> (GatewayClient, i64, Vec<i64>) {
    let db = db_pool(&served().admin_url);
    let prefix = format!("{prefix}-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let me = qbill_core::seed::users(&db, &prefix, 1, 2)
        .await
        .unwrap()
        .remove(0);
    let mut client = GatewayClient::new(&served().gateway, Uuid::new_v4());
    let queue = qbill_core::types::QueueName::parse(&client.queue().to_string()).unwrap();
    client.set_token(Some(token_for(me.user_id, &me.username, queue)));
    qbill_tests::reply_queue_url(&qbill_tests::sqs().await, queue).await;
    let bills: Vec<i64> = db
        .get()
        .await
        .unwrap()
        .query(
            "SELECT id FROM bills WHERE apartment_id = $1 ORDER BY id",
            &[&me.apartment_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    (client, me.apartment_id, bills)
}

async fn pay(
    client: &mut GatewayClient,
    apartment: i64,
    bills: &[i64],
    method: Option<String>,
) -> Value {
    let mut body = json!({ "bills_id": bills });
    if let Some(method) = method {
        body["payment_method"] = json!(method);
    }
    client
        .request(
            &format!("/apartments/{apartment}/payments"),
            Uuid::new_v4(),
            body,
            REPLY_TIMEOUT,
        )
        .await
        .unwrap()
}

/// The payment as the household reads it back (kind `payment`).
async fn payment(client: &mut GatewayClient, apartment: i64, id: &str) -> Value {
    client
        .request(
            &format!("/apartments/{apartment}/payments/{id}"),
            Uuid::new_v4(),
            json!({}),
            REPLY_TIMEOUT,
        )
        .await
        .unwrap()
}

/// Waits until the payment's status is `wanted` (a webhook settles it a moment later).
async fn until_status(client: &mut GatewayClient, apartment: i64, id: &str, wanted: &str) -> Value {
    for _ in 0..40 {
        let read = payment(client, apartment, id).await;
        if read["data"]["status"] == wanted {
            return read;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("payment {id} never became {wanted}");
}

/// Posts a webhook to the gateway as the processor would, with `header` as its signature.
async fn post_webhook(body: &str, header: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{}/webhooks/stripe", served().gateway))
        .header("content-type", "application/json; charset=utf-8")
        .header("Stripe-Signature", header)
        .body(body.to_owned())
        .send()
        .await
        .expect("the gateway answers")
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_card_whose_bank_asks_is_settled_by_the_webhook_through_the_gateway() {
    let _awaiting = WEBHOOKS_AWAITED.read().await;
    let (mut client, apartment, bills) = household("card-3ds").await;
    let reply = pay(
        &mut client,
        apartment,
        &bills[..2],
        Some(card("4000002500003155").await),
    )
    .await;
    assert_eq!(reply["data"]["status"], "requires_action", "{reply}");
    let secret = reply["data"]["client_secret"].as_str().unwrap().to_owned();
    let id = reply["data"]["payment_id"].as_str().unwrap().to_owned();
    authenticate(&secret).await;
    let settled = until_status(&mut client, apartment, &id, "succeeded").await;
    assert_eq!(
        vias(&settled).last().map(String::as_str),
        Some("webhook"),
        "{settled}"
    );
    let utils = client
        .utils(apartment, Uuid::new_v4(), REPLY_TIMEOUT)
        .await
        .unwrap();
    let open = qbill_tests::bill_ids(&utils["data"]["bills"]);
    assert!(
        !open.contains(&bills[0]) && !open.contains(&bills[1]),
        "{open:?}"
    );
}

#[tokio::test]
async fn a_webhook_lost_on_the_way_is_healed_by_reconcile() {
    let _reconciling = WEBHOOKS_AWAITED.write().await;
    let since = chrono::Utc::now() - chrono::Duration::minutes(1);
    let (mut client, apartment, bills) = household("card-lost").await;
    let reply = pay(
        &mut client,
        apartment,
        &bills[..1],
        Some(card("4000002500003155").await),
    )
    .await;
    assert_eq!(reply["data"]["status"], "requires_action", "{reply}");
    let id = reply["data"]["payment_id"].as_str().unwrap().to_owned();
    lose_webhooks_of(&id).await;
    authenticate(reply["data"]["client_secret"].as_str().unwrap()).await;
    // The money was captured, but nothing told the books: localstripe sends a webhook a second
    // after the event, and this one never comes.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let waiting = payment(&mut client, apartment, &id).await;
    assert_eq!(waiting["data"]["status"], "requires_action", "{waiting}");

    let report = qbill_core::jobs::reconcile::run(&operator(), since)
        .await
        .unwrap();
    assert!(report.healed >= 1, "{report:?}");
    let healed = payment(&mut client, apartment, &id).await;
    assert_eq!(healed["data"]["status"], "succeeded", "{healed}");
    assert_eq!(
        vias(&healed).last().map(String::as_str),
        Some("reconcile"),
        "{healed}"
    );
    let utils = client
        .utils(apartment, Uuid::new_v4(), REPLY_TIMEOUT)
        .await
        .unwrap();
    assert!(!qbill_tests::bill_ids(&utils["data"]["bills"]).contains(&bills[0]));
    // Run again, nothing more happens to it.
    qbill_core::jobs::reconcile::run(&operator(), since)
        .await
        .unwrap();
    assert_eq!(times_settled(&id).await, 1, "settled once");
}

#[tokio::test]
async fn an_abandoned_payment_is_expired_and_its_bills_released_through_the_gateway() {
    let (mut client, apartment, bills) = household("card-abandoned").await;
    let reply = pay(&mut client, apartment, &bills[..1], None).await;
    assert_eq!(reply["data"]["status"], "pending", "{reply}");
    assert!(reply["data"]["client_secret"].is_string(), "{reply}");
    let id = reply["data"]["payment_id"].as_str().unwrap().to_owned();
    // The household never confirms. The expiry job leaves a payment younger than its limit alone.
    let services = operator();
    let expire =
        || qbill_core::jobs::expire_payments::run(&services, chrono::Duration::minutes(30));
    expire().await.unwrap();
    assert_eq!(
        payment(&mut client, apartment, &id).await["data"]["status"],
        "pending"
    );
    // Half an hour later (this payment's clock only: the pool's other payments are left young).
    let db = db_pool(&served().admin_url);
    db.get()
        .await
        .unwrap()
        .execute(
            "UPDATE payments SET created_at = created_at - interval '31 minutes'
             WHERE id = $1::text::uuid",
            &[&id],
        )
        .await
        .unwrap();
    let report = expire().await.unwrap();
    assert!(report.expired >= 1, "{report:?}");
    let expired = payment(&mut client, apartment, &id).await;
    assert_eq!(expired["data"]["status"], "canceled", "{expired}");
    assert_eq!(
        vias(&expired).last().map(String::as_str),
        Some("expiry"),
        "{expired}"
    );
    // Its bill is payable again, and is paid.
    let utils = client
        .utils(apartment, Uuid::new_v4(), REPLY_TIMEOUT)
        .await
        .unwrap();
    assert!(qbill_tests::bill_ids(&utils["data"]["bills"]).contains(&bills[0]));
    let again = pay(&mut client, apartment, &bills[..1], Some(test_card().await)).await;
    assert_eq!(again["data"]["status"], "succeeded", "{again}");
}

#[tokio::test]
async fn a_declined_card_releases_its_bills_through_the_gateway() {
    let (mut client, apartment, bills) = household("card-declined").await;
    let reply = pay(
        &mut client,
        apartment,
        &bills[..1],
        Some(card("4000000000000341").await),
    )
    .await;
    assert_eq!(reply["data"]["status"], "failed", "{reply}");
    assert_eq!(reply["data"]["failure_code"], "card_declined", "{reply}");
    let again = pay(&mut client, apartment, &bills[..1], Some(test_card().await)).await;
    assert_eq!(
        again["data"]["status"], "succeeded",
        "the bill was payable again: {again}"
    );
}

#[tokio::test]
async fn two_payments_racing_for_one_bill_one_reserves_it_the_other_is_refused() {
    let (client, apartment, bills) = household("card-race").await;
    let bill = bills[0];
    let path = format!("/apartments/{apartment}/payments");
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let mut first = client;
    first
        .post(&path, a, json!({ "bills_id": [bill] }))
        .await
        .unwrap();
    first
        .post(&path, b, json!({ "bills_id": [bill] }))
        .await
        .unwrap();
    let ra = first.wait_for("/replies", a, REPLY_TIMEOUT).await.unwrap();
    let rb = first.wait_for("/replies", b, REPLY_TIMEOUT).await.unwrap();
    let outcomes = [
        ra["status"].as_str().unwrap(),
        rb["status"].as_str().unwrap(),
    ];
    assert!(
        outcomes.contains(&"ok") && outcomes.contains(&"error"),
        "{ra} {rb}"
    );
    let refused = if ra["status"] == "error" { &ra } else { &rb };
    assert_eq!(refused["error"]["code"], "conflict", "{refused}");
    let db = db_pool(&served().admin_url);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM payments WHERE $1 = ANY(bills)",
            &[&bill]
        )
        .await,
        1
    );
}

#[tokio::test]
async fn the_same_request_twice_is_one_intent_and_a_forged_or_repeated_webhook_changes_nothing_more()
 {
    let (mut client, apartment, bills) = household("card-twice").await;
    let path = format!("/apartments/{apartment}/payments");
    let request = Uuid::new_v4();
    let first = client
        .request(
            &path,
            request,
            json!({ "bills_id": [bills[0]] }),
            REPLY_TIMEOUT,
        )
        .await
        .unwrap();
    let second = client
        .request(
            &path,
            request,
            json!({ "bills_id": [bills[0]] }),
            REPLY_TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(first["data"]["status"], "pending", "{first}");
    assert_eq!(
        first["data"]["client_secret"],
        second["data"]["client_secret"]
    );
    let id = first["data"]["payment_id"].as_str().unwrap().to_owned();
    let db = db_pool(&served().admin_url);
    let intent: String = db
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT intent_id FROM payments WHERE id = $1::text::uuid",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    // The processor holds one intent for the payment: every page of its intents read (the
    // processor is the machine's, with every earlier run's intents too).
    let mut mine = 0;
    let mut after: Option<String> = None;
    loop {
        let mut query = vec![("limit", "100".to_owned())];
        query.extend(after.clone().map(|a| ("starting_after", a)));
        let page: Value = reqwest::Client::new()
            .get(format!(
                "{}/v1/payment_intents",
                env("QBILL_STRIPE_API_BASE")
            ))
            .query(&query)
            .basic_auth(env("QBILL_STRIPE_SECRET_KEY"), Some(""))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let intents = page["data"].as_array().unwrap();
        mine += intents
            .iter()
            .filter(|i| i["metadata"]["payment_id"] == id.as_str())
            .count();
        after = intents.last().map(|i| i["id"].as_str().unwrap().to_owned());
        if page["has_more"] != true || after.is_none() {
            break;
        }
    }
    assert_eq!(mine, 1, "one intent for the payment");

    // What the processor charges for it, in cents.
    let amount: i64 = first["data"]["total"]
        .as_str()
        .unwrap()
        .replace('.', "")
        .parse()
        .unwrap();
    // A forged success, right in every field but its signature, through the gateway: accepted by
    // the gateway (it cannot tell), refused by the worker.
    let claimed = json!({ "id": format!("evt_forged_{}", Uuid::new_v4().simple()), "type": "payment_intent.succeeded",
        "data": { "object": { "id": intent, "status": "succeeded", "amount": amount, "currency": "eur",
                              "metadata": { "payment_id": id } } } })
    .to_string();
    let now = chrono::Utc::now().timestamp();
    assert_eq!(
        post_webhook(&claimed, &signature::sign(&claimed, "whsec_forged", now)).await,
        200
    );
    assert_eq!(post_webhook(&claimed, "t=1,v1=00").await, 200);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        payment(&mut client, apartment, &id).await["data"]["status"],
        "pending"
    );

    // The genuine success, signed with the test profile's secret, delivered twice: settled once.
    let confirmed = json!({ "id": format!("evt_twice_{}", Uuid::new_v4().simple()), "type": "payment_intent.succeeded",
        "data": { "object": { "id": intent, "status": "succeeded", "amount": amount,
                              "currency": "eur", "metadata": { "payment_id": id } } } })
    .to_string();
    let header = signature::sign(&confirmed, &env("QBILL_STRIPE_WEBHOOK_SECRET"), now);
    assert_eq!(post_webhook(&confirmed, &header).await, 200);
    assert_eq!(post_webhook(&confirmed, &header).await, 200);
    until_status(&mut client, apartment, &id, "succeeded").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(times_settled(&id).await, 1, "settled once");
}

#[tokio::test]
async fn hostile_bodies_of_the_card_routes_are_refused_by_the_gateway() {
    let (client, apartment, bills) = household("card-hostile").await;
    let q = client.queue().to_string();
    let cases = [
        (
            format!("/apartments/{apartment}/payments"),
            json!({ "queue_name": q, "request_id": Uuid::new_v4(), "bills_id": [bills[0]], "payment_method": "tok_visa" }),
        ),
        (
            format!("/apartments/{apartment}/payments"),
            json!({ "queue_name": q, "request_id": Uuid::new_v4(), "bills_id": [bills[0]], "payment_method": 4242 }),
        ),
        (
            format!("/apartments/{apartment}/payments"),
            json!({ "queue_name": q, "request_id": Uuid::new_v4(), "bills_id": [bills[0]], "payment_method": format!("pm_{}", "a".repeat(300)) }),
        ),
        (
            format!("/apartments/{apartment}/payments/{}", Uuid::new_v4()),
            json!({ "queue_name": q, "request_id": Uuid::new_v4(), "status": "succeeded" }),
        ),
    ];
    for (path, body) in cases {
        let accepted = client.post_raw(&path, body.to_string()).await.unwrap();
        assert_eq!(accepted.status, 400, "{path} {body}: {}", accepted.body);
    }
    let db = db_pool(&served().admin_url);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM payments WHERE apartment_id = $1",
            &[&apartment]
        )
        .await,
        0
    );
}
