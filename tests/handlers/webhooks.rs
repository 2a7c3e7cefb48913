//! Providers' events: recorded with their changes, delivered to webhook endpoints signed as
//! Standard Webhooks (checked by that specification's own library), at least once and never by
//! two senders at once, never to an internal address; the feed in commit-safe order; the routes'
//! refusals and throttles.

use std::time::Duration;

use qbill_core::events::catalogue;
use qbill_core::events::outbound::Outbound;
use qbill_core::jobs::events as events_job;
use qbill_core::types::Role;
use qbill_tests::receiver::{Mode, Receiver};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{DEMO, Fixture, error_code, northwind, operator, token};

/// A fixture whose webhooks may go to the local receivers (`QBILL_WEBHOOKS_ALLOW_LOCAL`).
async fn fixture() -> Fixture {
    let mut f = Fixture::new().await;
    f.engine.services.outbound = Outbound::new(true);
    f
}

/// A provider route (`provider_id` and, if given, `webhook_id` in the path) as `token`.
pub async fn ask(
    f: &Fixture,
    route: &str,
    token: Option<&str>,
    provider: i64,
    webhook: Option<&str>,
    fields: Value,
) -> Value {
    let mut body = json!({ "queue_name": f.queue.to_string(), "request_id": Uuid::new_v4() });
    body.as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    let mut request = qbill_tests::message(route, None, None, body);
    let attributes = &mut request.attributes;
    attributes.insert(
        qbill_core::envelope::attribute::PROVIDER_ID.into(),
        provider.to_string(),
    );
    if let Some(webhook) = webhook {
        attributes.insert(
            qbill_core::envelope::attribute::WEBHOOK_ID.into(),
            webhook.to_owned(),
        );
    }
    if let Some(token) = token {
        attributes.insert(
            qbill_core::envelope::attribute::AUTHORIZATION.into(),
            format!(
                "{}Bearer {token}",
                qbill_core::envelope::AUTHORIZATION_MARKER
            ),
        );
    }
    f.send(request).await
}

/// Registers `receiver` for Northwind (provider 1), trusting its secret; the endpoint's id.
async fn register(f: &Fixture, receiver: &Receiver, events: &[&str]) -> String {
    let reply = ask(
        f,
        "webhooks",
        Some(&northwind(f)),
        1,
        None,
        json!({ "url": receiver.url, "events": events }),
    )
    .await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let secret = reply["data"]["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"), "{reply}");
    receiver.trust(secret);
    reply["data"]["id"].as_str().unwrap().to_owned()
}

/// Pays the demo's open bills of Northwind on apartment 1; the payment's id and the bills.
async fn pay_northwind(f: &Fixture) -> (String, Vec<i64>) {
    let bills: Vec<i64> = f
        .db
        .pool
        .get()
        .await
        .unwrap()
        .query(
            "SELECT id FROM bills WHERE apartment_id = 1 AND provider_id = 1 AND status IN ('open', 'overdue')
             AND reserved_by IS NULL ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!bills.is_empty(), "the demo set has Northwind bills to pay");
    let paid = f.pay(1, &bills).await;
    assert_eq!(paid["status"], "ok", "{paid}");
    (
        paid["data"]["payment_id"].as_str().unwrap().to_owned(),
        bills,
    )
}

async fn run_job(f: &Fixture) -> events_job::Report {
    events_job::run(&f.engine.services).await.unwrap()
}

/// Makes every waiting delivery due now (as the backoff's time passing would).
async fn due_now(f: &Fixture) {
    f.db.pool
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE webhook_deliveries SET next_attempt_at = now() WHERE status = 'pending'",
            &[],
        )
        .await
        .unwrap();
}

fn of_type<'a>(bodies: &'a [Value], kind: &str) -> Vec<&'a Value> {
    bodies.iter().filter(|b| b["type"] == kind).collect()
}

#[tokio::test]
async fn a_paid_bill_reaches_the_provider_signed_once_each_as_its_schema_says() {
    let f = fixture().await;
    let receiver = Receiver::start().await;
    register(&f, &receiver, &["bill.paid", "payment.succeeded"]).await;
    let (payment, bills) = pay_northwind(&f).await;

    let report = run_job(&f).await;
    assert_eq!(
        report.webhooks.delivered as usize,
        bills.len() + 1,
        "{report:?}"
    );
    let received = receiver.received();
    assert!(received.iter().all(|r| r.verified), "{received:?}");
    let bodies = receiver.accepted();
    let paid = of_type(&bodies, "bill.paid");
    assert_eq!(paid.len(), bills.len(), "{bodies:?}");
    for body in &paid {
        assert_eq!(body["data"]["payment_id"], payment.as_str());
        assert!(bills.contains(&body["data"]["bill_id"].as_i64().unwrap()));
    }
    let succeeded = of_type(&bodies, "payment.succeeded");
    assert_eq!(succeeded.len(), 1, "{bodies:?}");
    assert_eq!(succeeded[0]["data"]["payment_id"], payment.as_str());
    assert_eq!(succeeded[0]["provider_id"], 1);
    assert_eq!(succeeded[0]["version"], 1);
    let ids: Vec<i64> = succeeded[0]["data"]["bills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_i64().unwrap())
        .collect();
    assert_eq!(ids, bills);
    // webhook-id is the event's: one per event, each once.
    let mut seen: Vec<&str> = received.iter().map(|r| r.id.as_str()).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), received.len(), "a delivery arrived twice");
    for r in &received {
        assert_eq!(r.id, format!("evt_{}", r.body["id"]));
        let kind = qbill_core::events::Type::parse(r.body["type"].as_str().unwrap()).unwrap();
        catalogue::check(kind, &r.body["data"]).unwrap();
    }
    // Nothing more to send: a second run delivers nothing again.
    assert_eq!(run_job(&f).await.webhooks.delivered, 0);
    assert_eq!(receiver.received().len(), received.len());
}

#[tokio::test]
async fn a_receiver_that_was_down_gets_each_event_later_once() {
    let f = fixture().await;
    let receiver = Receiver::start().await;
    let endpoint = register(&f, &receiver, &[]).await;
    receiver.set_mode(Mode::Down);
    let (payment, bills) = pay_northwind(&f).await;

    let down = run_job(&f).await;
    assert_eq!(down.webhooks.delivered, 0);
    assert!(down.webhooks.failed as usize > bills.len(), "{down:?}");
    // The attempts are listed with the endpoint's answer.
    let listed = ask(
        &f,
        "webhook_deliveries",
        Some(&northwind(&f)),
        1,
        Some(&endpoint),
        json!({ "status": "pending" }),
    )
    .await;
    assert_eq!(listed["status"], "ok", "{listed}");
    let deliveries = listed["data"]["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len() as u64, down.webhooks.failed);
    for d in deliveries {
        assert_eq!(d["attempts"], 1, "{d}");
        assert_eq!(d["last_attempts"][0]["status_code"], 503, "{d}");
        assert!(d["next_attempt_at"].is_string());
    }
    // Not due yet: a run now sends nothing.
    assert_eq!(run_job(&f).await.webhooks.failed, 0);

    receiver.set_mode(Mode::Up);
    due_now(&f).await;
    let up = run_job(&f).await;
    assert_eq!(up.webhooks.delivered, down.webhooks.failed, "{up:?}");
    let accepted = receiver.accepted();
    let mut ids: Vec<i64> = accepted.iter().map(|b| b["id"].as_i64().unwrap()).collect();
    let count = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), count, "each event accepted once");
    assert_eq!(of_type(&accepted, "payment.succeeded").len(), 1);
    assert_eq!(
        of_type(&accepted, "payment.succeeded")[0]["data"]["payment_id"],
        payment.as_str()
    );
    let delivered = ask(
        &f,
        "webhook_deliveries",
        Some(&northwind(&f)),
        1,
        Some(&endpoint),
        json!({ "status": "delivered" }),
    )
    .await;
    for d in delivered["data"]["deliveries"].as_array().unwrap() {
        assert_eq!(d["attempts"], 2, "{d}");
        assert_eq!(d["last_attempts"][0]["status_code"], 200, "{d}");
        assert_eq!(d["last_attempts"][1]["status_code"], 503, "{d}");
    }
}

#[tokio::test]
async fn two_senders_at_once_never_send_one_delivery_twice() {
    let f = fixture().await;
    let receiver = Receiver::start().await;
    register(&f, &receiver, &[]).await;
    receiver.set_mode(Mode::Slow(Duration::from_millis(200)));
    let (_, bills) = pay_northwind(&f).await;
    let (a, b) = tokio::join!(
        qbill_core::events::deliver::run(&f.engine.services),
        qbill_core::events::deliver::run(&f.engine.services)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let received = receiver.received();
    assert_eq!(
        (a.delivered + b.delivered) as usize,
        received.len(),
        "{a:?} {b:?}"
    );
    assert!(received.len() > bills.len());
    let mut ids: Vec<&str> = received.iter().map(|r| r.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), received.len(), "a delivery was sent twice");
}

#[tokio::test]
async fn internal_addresses_are_refused_at_registration_and_at_delivery() {
    let f = fixture().await;
    let nw = northwind(&f);
    for url in [
        "http://10.0.0.5/hooks",
        "http://169.254.169.254/latest/meta-data/",
        "http://192.168.1.20:8080/in",
        "http://[fd00:ec2::254]/",
        "http://[::ffff:169.254.169.254]/",
        "http://0.0.0.0:9000/",
        "ftp://127.0.0.1/hooks",
        "http://user:secret@127.0.0.1/hooks",
        "not a url",
    ] {
        let reply = ask(&f, "webhooks", Some(&nw), 1, None, json!({ "url": url })).await;
        assert_eq!(error_code(&reply), "invalid_request", "{url}: {reply}");
    }
    // Without the local setting (as on AWS), loopback and http are refused too, also by name.
    let mut strict = Fixture::new().await;
    strict.engine.services.outbound = Outbound::new(false);
    let nw_strict = northwind(&strict);
    for url in [
        "http://127.0.0.1:9000/hooks",
        "https://127.0.0.1/hooks",
        "https://localhost/hooks",
    ] {
        let reply = ask(
            &strict,
            "webhooks",
            Some(&nw_strict),
            1,
            None,
            json!({ "url": url }),
        )
        .await;
        assert_eq!(error_code(&reply), "invalid_request", "{url}: {reply}");
        assert!(
            reply["error"]["message"].as_str().unwrap().contains("url"),
            "{reply}"
        );
    }
    assert_eq!(
        f.db.count("SELECT count(*) FROM webhook_endpoints", &[])
            .await
            + strict
                .db
                .count("SELECT count(*) FROM webhook_endpoints", &[])
                .await,
        0
    );

    // A receiver that redirects to the metadata service: the redirect is not followed.
    let receiver = Receiver::start().await;
    register(&f, &receiver, &["payment.succeeded"]).await;
    receiver.set_mode(Mode::Redirect(
        "http://169.254.169.254/latest/meta-data/".into(),
    ));
    pay_northwind(&f).await;
    let report = run_job(&f).await;
    assert_eq!(report.webhooks.delivered, 0, "{report:?}");
    assert_eq!(report.webhooks.failed, 1, "{report:?}");
    let error: String =
        f.db.pool
            .get()
            .await
            .unwrap()
            .query_one("SELECT error FROM webhook_attempts", &[])
            .await
            .unwrap()
            .get(0);
    assert!(error.contains("refused address"), "{error}");
}

#[tokio::test]
async fn the_feed_pages_in_order_and_never_skips_an_event_that_committed_late() {
    let f = fixture().await;
    let nw = northwind(&f);
    let all = ask(&f, "events", Some(&nw), 1, None, json!({ "limit": 500 })).await;
    assert_eq!(all["status"], "ok", "{all}");
    let seeded = all["data"]["events"].as_array().unwrap().len();
    assert!(seeded > 2, "the demo's bills are events: {all}");
    assert_eq!(all["data"]["has_more"], false);

    // Two at a time, from the start, gives the same events in the same order.
    let mut paged = Vec::new();
    let mut since: Option<i64> = None;
    loop {
        let mut body = json!({ "limit": 2 });
        if let Some(id) = since {
            body["since_id"] = json!(id);
        }
        let page = ask(&f, "events", Some(&nw), 1, None, body).await;
        let events = page["data"]["events"].as_array().unwrap().clone();
        paged.extend(events.iter().map(|e| e["id"].as_i64().unwrap()));
        since = page["data"]["next_since_id"].as_i64();
        if page["data"]["has_more"] == false {
            break;
        }
    }
    let whole: Vec<i64> = all["data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(paged, whole);
    // Every event of the provider is its own, and fits its type's schema.
    for e in all["data"]["events"].as_array().unwrap() {
        assert_eq!(e["provider_id"], 1);
        let kind = qbill_core::events::Type::parse(e["type"].as_str().unwrap()).unwrap();
        catalogue::check(kind, &e["data"]).unwrap_or_else(|err| panic!("{e}: {err}"));
    }

    // A transaction that took its event first and commits last.
    let mut slow = f.db.pool.get().await.unwrap();
    let slow = slow.transaction().await.unwrap();
    slow.execute(
        "INSERT INTO bills (apartment_id, provider_id, utility, period_start, period_end, due_date, amount, currency)
         VALUES (2, 1, 'electricity', '2027-03-01', '2027-03-31', '2027-04-10', 9.00, 'EUR')",
        &[],
    )
    .await
    .unwrap();
    let (_, bills) = pay_northwind(&f).await;
    let last = *paged.last().unwrap();
    let meanwhile = ask(
        &f,
        "events",
        Some(&nw),
        1,
        None,
        json!({ "since_id": last }),
    )
    .await;
    assert_eq!(
        meanwhile["data"]["events"].as_array().unwrap().len(),
        0,
        "nothing after an event of a transaction still open: {meanwhile}"
    );
    assert_eq!(meanwhile["data"]["next_since_id"], last);
    slow.commit().await.unwrap();
    // Another test's transaction still open anywhere on the server holds the feed back a while:
    // the events come once it ends.
    let mut types: Vec<String> = Vec::new();
    for _ in 0..100 {
        let after = ask(
            &f,
            "events",
            Some(&nw),
            1,
            None,
            json!({ "since_id": last }),
        )
        .await;
        types = after["data"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_owned())
            .collect();
        if types.len() > bills.len() + 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        types[0], "bill.created",
        "the first to take its event comes first: {types:?}"
    );
    assert_eq!(
        types.iter().filter(|t| *t == "bill.paid").count(),
        bills.len()
    );
    // Only the types asked for.
    let paid_only = ask(
        &f,
        "events",
        Some(&nw),
        1,
        None,
        json!({ "since_id": last, "types": ["payment.succeeded"] }),
    )
    .await;
    assert_eq!(paid_only["data"]["events"].as_array().unwrap().len(), 1);
    // An unknown or another provider's event is no place to start from.
    let unknown = ask(
        &f,
        "events",
        Some(&nw),
        1,
        None,
        json!({ "since_id": 999_999_999 }),
    )
    .await;
    assert_eq!(error_code(&unknown), "not_found", "{unknown}");
}

#[tokio::test]
async fn a_replay_sends_the_kept_events_again_with_their_ids_and_is_throttled() {
    let f = fixture().await;
    let receiver = Receiver::start().await;
    let endpoint = register(&f, &receiver, &["payment.succeeded"]).await;
    pay_northwind(&f).await;
    run_job(&f).await;
    let first = receiver.accepted();
    assert_eq!(first.len(), 1);
    let since = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let replay = ask(
        &f,
        "webhook_replay",
        Some(&northwind(&f)),
        1,
        Some(&endpoint),
        json!({ "since": since }),
    )
    .await;
    assert_eq!(replay["status"], "ok", "{replay}");
    assert_eq!(replay["data"]["events"], 1, "only the types it wants");
    run_job(&f).await;
    let received = receiver.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].id, received[1].id, "the same webhook-id again");
    assert!(received[1].verified);
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM audit_events WHERE entity = 'webhook' AND action = 'replayed'",
            &[]
        )
        .await,
        1
    );
    // Ten an hour.
    for _ in 1..qbill_core::routes::webhook_replay::MAX_PER_HOUR {
        let again = ask(
            &f,
            "webhook_replay",
            Some(&northwind(&f)),
            1,
            Some(&endpoint),
            json!({ "since": since }),
        )
        .await;
        assert_eq!(again["status"], "ok", "{again}");
    }
    let refused = ask(
        &f,
        "webhook_replay",
        Some(&northwind(&f)),
        1,
        Some(&endpoint),
        json!({ "since": since }),
    )
    .await;
    assert_eq!(error_code(&refused), "conflict", "{refused}");
    let future = ask(
        &f,
        "webhook_replay",
        Some(&northwind(&f)),
        1,
        Some(&endpoint),
        json!({ "since": "2999-01-01T00:00:00Z" }),
    )
    .await;
    assert_eq!(error_code(&future), "invalid_request", "{future}");
}

#[tokio::test]
async fn a_rotated_secret_signs_beside_the_old_one_and_the_secret_is_never_listed() {
    let f = fixture().await;
    let receiver = Receiver::start().await;
    let endpoint = register(&f, &receiver, &["payment.succeeded"]).await;
    let rotated = ask(
        &f,
        "webhook_rotate",
        Some(&northwind(&f)),
        1,
        Some(&endpoint),
        json!({}),
    )
    .await;
    assert_eq!(rotated["status"], "ok", "{rotated}");
    let new_secret = rotated["data"]["secret"].as_str().unwrap().to_owned();
    assert!(rotated["data"]["previous_secret_until"].is_string());
    // The receiver still knows only the old secret: it verifies.
    pay_northwind(&f).await;
    run_job(&f).await;
    let first = receiver.received();
    assert_eq!(first.len(), 1);
    assert!(first[0].verified, "the old secret still signs");
    assert_eq!(first[0].signature.split(' ').count(), 2, "two signatures");
    // With only the new one, too.
    receiver.forget_secrets();
    receiver.trust(&new_secret);
    ask(
        &f,
        "webhook_replay",
        Some(&northwind(&f)),
        1,
        Some(&endpoint),
        json!({ "since": "2000-01-01T00:00:00Z" }),
    )
    .await;
    run_job(&f).await;
    assert!(receiver.received()[1].verified);

    let listed = ask(
        &f,
        "webhooks_list",
        Some(&northwind(&f)),
        1,
        None,
        json!({}),
    )
    .await;
    assert_eq!(listed["status"], "ok", "{listed}");
    assert!(!listed.to_string().contains("whsec_"), "{listed}");
    let shown = ask(
        &f,
        "webhook",
        Some(&northwind(&f)),
        1,
        Some(&endpoint),
        json!({}),
    )
    .await;
    assert!(!shown.to_string().contains("whsec_"), "{shown}");
    // Nor kept in the stored replies.
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM processed_requests WHERE reply::text LIKE '%whsec_%'",
            &[]
        )
        .await,
        0
    );
}

#[tokio::test]
async fn an_endpoint_failing_for_three_days_is_disabled_and_its_provider_told() {
    let f = fixture().await;
    let receiver = Receiver::start().await;
    let endpoint = register(&f, &receiver, &["payment.succeeded"]).await;
    receiver.set_mode(Mode::Down);
    pay_northwind(&f).await;
    run_job(&f).await;
    f.db.pool
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE webhook_deliveries SET created_at = now() - interval '3 days 1 minute', next_attempt_at = now()",
            &[],
        )
        .await
        .unwrap();
    let report = run_job(&f).await;
    assert_eq!(report.webhooks.given_up, 1, "{report:?}");
    assert_eq!(report.webhooks.disabled, 1, "{report:?}");
    let shown = ask(
        &f,
        "webhook",
        Some(&northwind(&f)),
        1,
        Some(&endpoint),
        json!({}),
    )
    .await;
    assert_eq!(shown["data"]["enabled"], false, "{shown}");
    assert!(
        shown["data"]["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("3 days")
    );
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM notifications WHERE event = 'webhook.disabled' AND user_id = 4",
            &[]
        )
        .await,
        1,
        "Northwind's user is told"
    );
    // Disabled: new events wait; enabled again, they go.
    receiver.set_mode(Mode::Up);
    pay_northwind_again(&f).await;
    assert_eq!(run_job(&f).await.webhooks.delivered, 0);
    let enabled = ask(
        &f,
        "webhook",
        Some(&northwind(&f)),
        1,
        Some(&endpoint),
        json!({ "enabled": true }),
    )
    .await;
    assert_eq!(enabled["data"]["enabled"], true, "{enabled}");
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM audit_events WHERE entity = 'webhook' AND action = 'disabled'",
            &[]
        )
        .await,
        1
    );
}

/// Another payment of Northwind's: a late fee of the demo set on apartment 1 made payable.
async fn pay_northwind_again(f: &Fixture) {
    f.db.pool
        .get()
        .await
        .unwrap()
        .execute(
            "INSERT INTO bills (apartment_id, provider_id, utility, period_start, period_end, due_date, amount, currency)
             VALUES (1, 1, 'electricity', '2027-01-01', '2027-01-31', '2027-02-10', 5.00, 'EUR')",
            &[],
        )
        .await
        .unwrap();
    pay_northwind(f).await;
}

#[tokio::test]
async fn only_the_provider_and_operators_reach_its_webhooks_and_events() {
    let f = fixture().await;
    let receiver = Receiver::start().await;
    let endpoint = register(&f, &receiver, &[]).await;
    let household = f.token(DEMO);
    let other = token(&f, (4, "northwind"), Role::Provider, Some(2));
    let routes: [(&str, Option<&str>, Value); 8] = [
        ("webhooks", None, json!({ "url": receiver.url })),
        ("webhooks_list", None, json!({})),
        ("webhook", Some(&endpoint), json!({})),
        ("webhook_delete", Some(&endpoint), json!({})),
        ("webhook_rotate", Some(&endpoint), json!({})),
        ("webhook_deliveries", Some(&endpoint), json!({})),
        (
            "webhook_replay",
            Some(&endpoint),
            json!({ "since": "2026-01-01T00:00:00Z" }),
        ),
        ("events", None, json!({})),
    ];
    for (route, webhook, body) in &routes {
        let by_household = ask(&f, route, Some(&household), 1, *webhook, body.clone()).await;
        assert_eq!(
            error_code(&by_household),
            "forbidden",
            "{route}: {by_household}"
        );
        let by_other = ask(&f, route, Some(&other), 1, *webhook, body.clone()).await;
        assert_eq!(error_code(&by_other), "forbidden", "{route}: {by_other}");
        let without = ask(&f, route, None, 1, *webhook, body.clone()).await;
        assert_eq!(error_code(&without), "unauthorized", "{route}: {without}");
    }
    // Another provider's endpoint is not found under one's own provider id.
    let elsewhere = ask(
        &f,
        "webhook",
        Some(&token(&f, (4, "northwind"), Role::Provider, Some(2))),
        2,
        Some(&endpoint),
        json!({}),
    )
    .await;
    assert_eq!(error_code(&elsewhere), "not_found", "{elsewhere}");
    // An operator may.
    let by_operator = ask(&f, "webhooks_list", Some(&operator(&f)), 1, None, json!({})).await;
    assert_eq!(
        by_operator["data"]["endpoints"].as_array().unwrap().len(),
        1
    );
    // Nothing changed.
    assert_eq!(
        f.db.count("SELECT count(*) FROM webhook_endpoints", &[])
            .await,
        1
    );
}

#[tokio::test]
async fn hostile_bodies_are_refused_and_the_endpoints_are_capped() {
    let f = fixture().await;
    let nw = northwind(&f);
    let receiver = Receiver::start().await;
    for body in [
        json!({ "url": receiver.url, "events": ["bill.exploded"] }),
        json!({ "url": receiver.url, "events": ["bill.paid", "bill.paid"] }),
        json!({ "url": receiver.url, "secret": "whsec_mine" }),
        json!({ "url": receiver.url, "provider_id": 2 }),
        json!({ "url": format!("{}?{}", receiver.url, "a".repeat(2100)) }),
        json!({ "url": 42 }),
        json!({}),
    ] {
        let reply = ask(&f, "webhooks", Some(&nw), 1, None, body.clone()).await;
        assert_eq!(error_code(&reply), "invalid_request", "{body}: {reply}");
    }
    for body in [
        json!({ "limit": 0 }),
        json!({ "limit": 501 }),
        json!({ "since_id": -1 }),
        json!({ "types": ["nope"] }),
        json!({ "provider_id": 2 }),
    ] {
        let reply = ask(&f, "events", Some(&nw), 1, None, body.clone()).await;
        assert_eq!(error_code(&reply), "invalid_request", "{body}: {reply}");
    }
    let bad_path = ask(&f, "webhook", Some(&nw), 1, Some("../../etc"), json!({})).await;
    assert_eq!(error_code(&bad_path), "invalid_request", "{bad_path}");
    assert_eq!(
        f.db.count("SELECT count(*) FROM webhook_endpoints", &[])
            .await,
        0
    );
    // Ten endpoints a provider.
    for _ in 0..qbill_core::events::webhooks::MAX_ENDPOINTS_PER_PROVIDER {
        register(&f, &receiver, &[]).await;
    }
    let eleventh = ask(
        &f,
        "webhooks",
        Some(&nw),
        1,
        None,
        json!({ "url": receiver.url }),
    )
    .await;
    assert_eq!(error_code(&eleventh), "conflict", "{eleventh}");
    // The same request again shows the same endpoint and secret, and makes none.
    let request = Uuid::new_v4();
    let deleted = {
        let listed = ask(&f, "webhooks_list", Some(&nw), 1, None, json!({})).await;
        let first = listed["data"]["endpoints"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let reply = ask(&f, "webhook_delete", Some(&nw), 1, Some(&first), json!({})).await;
        assert_eq!(reply["status"], "ok", "{reply}");
        first
    };
    let mut once = Vec::new();
    for _ in 0..2 {
        let mut body = json!({ "queue_name": f.queue.to_string(), "request_id": request, "url": receiver.url });
        body["events"] = json!([]);
        let mut message = qbill_tests::message("webhooks", None, None, body);
        message.attributes.insert(
            qbill_core::envelope::attribute::PROVIDER_ID.into(),
            "1".into(),
        );
        message.attributes.insert(
            qbill_core::envelope::attribute::AUTHORIZATION.into(),
            format!("{}Bearer {nw}", qbill_core::envelope::AUTHORIZATION_MARKER),
        );
        once.push(f.send(message).await);
    }
    assert_eq!(once[0]["status"], "ok", "{}", once[0]);
    assert_eq!(once[0]["data"], once[1]["data"]);
    assert_ne!(once[0]["data"]["id"], deleted);
    assert_eq!(
        f.db.count("SELECT count(*) FROM webhook_endpoints", &[])
            .await,
        qbill_core::events::webhooks::MAX_ENDPOINTS_PER_PROVIDER
    );
}

#[tokio::test]
async fn events_are_forgotten_after_thirty_days_with_their_deliveries_once_by_two_runs() {
    let f = fixture().await;
    let receiver = Receiver::start().await;
    register(&f, &receiver, &[]).await;
    receiver.set_mode(Mode::Down);
    pay_northwind(&f).await;
    let before = f.db.count("SELECT count(*) FROM events", &[]).await;
    let old =
        f.db.pool
            .get()
            .await
            .unwrap()
            .execute(
                "UPDATE events SET occurred_at = now() - interval '31 days'
             WHERE id IN (SELECT event_id FROM webhook_deliveries)",
                &[],
            )
            .await
            .unwrap();
    assert!(old > 1);
    let (a, b) = tokio::join!(run_job(&f), run_job(&f));
    assert_eq!(a.forgotten + b.forgotten, old, "{a:?} {b:?}");
    assert_eq!(
        f.db.count("SELECT count(*) FROM events", &[]).await,
        before - old as i64
    );
    assert_eq!(
        f.db.count("SELECT count(*) FROM webhook_deliveries", &[])
            .await,
        0,
        "their deliveries went with them"
    );
}
