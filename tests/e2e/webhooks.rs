//! A provider hears of its money through the gateway: Northwind registers a webhook on a local
//! receiver, a household pays one of its bills by card, and the receiver gets `bill.paid` and
//! `payment.succeeded`, verified by the Standard Webhooks library and by the few lines of Python
//! docs/events.md gives; down for a while, it gets them later, once each, from two senders at
//! once; the feed pages and a replay sends again; the event reaches a queue through an
//! EventBridge rule; an endpoint on an internal address is refused.

use std::time::Duration;

use aws_sdk_eventbridge::types::Target;
use qbill_tests::receiver::{Mode, Received, Receiver};
use qbill_tests::{db_pool, test_card};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::lifecycle::{Session, error};
use crate::{REPLY_TIMEOUT, served};

/// The services the events job runs with, as the local profile configures them: webhooks may go
/// to 127.0.0.1, events go on the test profile's bus.
async fn services() -> qbill_core::services::Services {
    let store = qbill_core::store::application_pool(&served().db_url, 4).unwrap();
    qbill_tests::engine_on(&store, None)
        .services
        .with_events(&qbill_core::config::EventsConfig {
            bus: Some(qbill_tests::env("QBILL_EVENT_BUS")),
            allow_local: true,
        })
        .await
}

/// The household pays one open Northwind bill of its apartment by card; (payment, bill).
async fn pay_a_northwind_bill(
    home: &mut qbill::client::GatewayClient,
    apartment: i64,
) -> (String, i64) {
    let db = db_pool(&served().admin_url);
    let bill: i64 = db
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT id FROM bills WHERE apartment_id = $1 AND provider_id = 1 AND status = 'open'
             AND reserved_by IS NULL ORDER BY id LIMIT 1",
            &[&apartment],
        )
        .await
        .unwrap()
        .get(0);
    let paid = home
        .request(
            &format!("/apartments/{apartment}/payments"),
            Uuid::new_v4(),
            json!({ "bills_id": [bill], "payment_method": test_card().await }),
            REPLY_TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(paid["data"]["status"], "succeeded", "{paid}");
    (
        paid["data"]["payment_id"].as_str().unwrap().to_owned(),
        bill,
    )
}

/// The deliveries `receiver` accepted about `payment`.
fn about(receiver: &Receiver, payment: &str) -> Vec<Received> {
    receiver
        .received()
        .into_iter()
        .filter(|r| r.accepted && r.body["data"]["payment_id"] == payment)
        .collect()
}

/// Runs the events job until `done` holds (the test database's other events go too).
async fn run_until(services: &qbill_core::services::Services, done: impl Fn() -> bool) {
    for _ in 0..30 {
        qbill_core::jobs::events::run(services).await.unwrap();
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the events job never got there");
}

/// The code of docs/events.md's `<!-- verify:{name} -->` block, a `{language}` one.
fn docs_block(name: &str, language: &str) -> String {
    let docs = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/events.md"),
    )
    .unwrap();
    docs.split(&format!("<!-- verify:{name} -->\n```{language}\n"))
        .nth(1)
        .and_then(|rest| rest.split("```\n<!-- verify:end -->").next())
        .unwrap_or_else(|| panic!("docs/events.md has the verify:{name} block"))
        .to_owned()
}

/// docs/events.md's Python verifier, run on a delivery as it arrived: whether it says valid.
fn python_verifies(delivery: &Received, secret: &str) -> bool {
    let block = docs_block("python", "python");
    let script = format!(
        "{block}\nimport json, sys\nprint(verify(json.loads(sys.argv[1]), sys.stdin.buffer.read()))\n"
    );
    let headers = json!({
        "webhook-id": delivery.id,
        "webhook-timestamp": delivery.timestamp,
        "webhook-signature": delivery.signature,
    });
    let mut child = std::process::Command::new("python3")
        .args(["-c", &script, &headers.to_string()])
        .env("WEBHOOK_SECRET", secret)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&delivery.raw)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim() == "True"
}

#[tokio::test]
async fn a_provider_gets_its_paid_bill_signed_through_the_gateway_and_on_the_bus() {
    let services = services().await;
    let mut northwind = Session::login("northwind", "northwind-password").await;

    // An endpoint on an internal address is refused, and so is one on the metadata service.
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/hooks",
    ] {
        let refused = northwind
            .ask("/providers/1/webhooks", json!({ "url": url }))
            .await;
        assert_eq!(error(&refused), "invalid_request", "{url}: {refused}");
    }

    let receiver = Receiver::start().await;
    let registered = northwind
        .ask(
            "/providers/1/webhooks",
            json!({ "url": receiver.url, "events": ["bill.paid", "payment.succeeded"] }),
        )
        .await;
    assert_eq!(registered["kind"], "webhooks", "{registered}");
    let secret = registered["data"]["secret"].as_str().unwrap().to_owned();
    let endpoint = registered["data"]["id"].as_str().unwrap().to_owned();
    receiver.trust(&secret);

    // An EventBridge rule of this test's own, for this household's payments, into a queue.
    let sqs = qbill_tests::sqs().await;
    let tap = sqs
        .create_queue()
        .queue_name(format!("qbill-test-tap-{}", Uuid::new_v4().simple()))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let tap_arn = sqs
        .get_queue_attributes()
        .queue_url(&tap)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();

    // The bus goes on from here: the other tests' events before this one are not its business
    // (put on the bus they would take LocalStack minutes).
    db_pool(&served().admin_url)
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE event_bus_cursor c SET tx = e.tx, event_id = e.id
             FROM (SELECT tx, id FROM events ORDER BY tx DESC, id DESC LIMIT 1) e",
            &[],
        )
        .await
        .unwrap();
    let (mut home, me) = crate::household("hooks", 2).await;
    let (payment, bill) = pay_a_northwind_bill(&mut home, me.apartment_id).await;

    let bus = services.bus.as_ref().expect("the test profile has a bus");
    let rule = format!("tap-{}", &Uuid::new_v4().simple().to_string()[..12]);
    bus.client
        .put_rule()
        .name(&rule)
        .event_bus_name(&bus.name)
        .event_pattern(
            json!({
                "source": ["qbill"],
                "detail-type": ["payment.succeeded"],
                "detail": { "data": { "payment_id": [payment] } }
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    bus.client
        .put_targets()
        .rule(&rule)
        .event_bus_name(&bus.name)
        .targets(Target::builder().id("tap").arn(&tap_arn).build().unwrap())
        .send()
        .await
        .unwrap();

    run_until(&services, || about(&receiver, &payment).len() >= 2).await;
    let got = about(&receiver, &payment);
    let types: Vec<&str> = got
        .iter()
        .map(|r| r.body["type"].as_str().unwrap())
        .collect();
    assert_eq!(types.len(), 2, "{types:?}");
    assert!(types.contains(&"bill.paid") && types.contains(&"payment.succeeded"));
    for r in &got {
        assert!(
            r.verified,
            "the Standard Webhooks library verifies it: {r:?}"
        );
        assert!(
            python_verifies(r, &secret),
            "docs/events.md's Python verifies it"
        );
        assert_eq!(r.body["provider_id"], 1);
    }
    // docs/events.md's curl delivery, under the endpoint's secret, verifies as qbill's do.
    let script = docs_block("curl", "sh");
    // (Not blocking this runtime's one thread: the receiver answers on it.)
    let sent = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .env("WEBHOOK_SECRET", &secret)
        .env("WEBHOOK_URL", &receiver.url)
        .output()
        .await
        .unwrap();
    assert!(sent.status.success(), "{sent:?}");
    assert_eq!(String::from_utf8_lossy(&sent.stdout).trim(), "200");
    let tried = receiver.received().pop().unwrap();
    assert!(
        tried.id.starts_with("evt_test_") && tried.verified,
        "{tried:?}"
    );
    assert!(python_verifies(&tried, &secret));
    let paid = got.iter().find(|r| r.body["type"] == "bill.paid").unwrap();
    assert_eq!(paid.body["data"]["bill_id"], bill);
    // A signature under another secret is not one.
    assert!(!python_verifies(
        paid,
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    ));

    // The event reached the queue through the rule. (The feed the bus follows waits for every
    // transaction open on the server when the event was made, other tests' among them.)
    let mut on_bus = None;
    let mut put = 0;
    for _ in 0..150 {
        let messages = sqs
            .receive_message()
            .queue_url(&tap)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
        if let Some(m) = messages.first() {
            on_bus = Some(serde_json::from_str::<Value>(m.body().unwrap()).unwrap());
            break;
        }
        put += qbill_core::jobs::events::run(&services)
            .await
            .unwrap()
            .bus
            .put;
    }
    if on_bus.is_none() {
        // What held the feed back: transactions open on the server, and where the bus stands.
        let held: Vec<String> = db_pool(&served().admin_url)
            .get()
            .await
            .unwrap()
            .query(
                "SELECT datname || ' ' || coalesce(state, '') || ' xid ' || backend_xid::text || ' for '
                        || (now() - xact_start)::text || ': ' || left(query, 80)
                 FROM pg_stat_activity WHERE backend_xid IS NOT NULL OR backend_xmin IS NOT NULL",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<_, Option<String>>(0).unwrap_or_default())
            .collect();
        panic!(
            "the payment's event never reached the rule's queue; {put} events put on the bus meanwhile; open on the server: {held:#?}"
        );
    }
    let on_bus = on_bus.expect("the payment's event reached the rule's queue");
    assert_eq!(on_bus["source"], "qbill", "{on_bus}");
    assert_eq!(on_bus["detail-type"], "payment.succeeded", "{on_bus}");
    assert_eq!(on_bus["detail"]["data"]["payment_id"], payment.as_str());
    assert_eq!(
        on_bus["detail"]["id"],
        got.iter()
            .find(|r| r.body["type"] == "payment.succeeded")
            .unwrap()
            .body["id"]
    );

    // Down for a while: the next payment's events wait, then arrive once each, from two senders
    // at once.
    receiver.set_mode(Mode::Down);
    let (second, _) = pay_a_northwind_bill(&mut home, me.apartment_id).await;
    let first_try = qbill_core::jobs::events::run(&services).await.unwrap();
    assert!(first_try.webhooks.failed >= 2, "{first_try:?}");
    assert!(about(&receiver, &second).is_empty());
    receiver.set_mode(Mode::Up);
    db_pool(&served().admin_url)
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE webhook_deliveries SET next_attempt_at = now() WHERE endpoint_id = $1 AND status = 'pending'",
            &[&Uuid::parse_str(&endpoint).unwrap()],
        )
        .await
        .unwrap();
    let (a, b) = tokio::join!(
        qbill_core::events::deliver::run(&services),
        qbill_core::events::deliver::run(&services)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a.delivered + b.delivered >= 2, "{a:?} {b:?}");
    let later = about(&receiver, &second);
    assert_eq!(later.len(), 2, "each once: {later:?}");
    assert_ne!(later[0].id, later[1].id);
    let deliveries = northwind
        .ask(
            &format!("/providers/1/webhooks/{endpoint}/deliveries"),
            json!({ "status": "delivered" }),
        )
        .await;
    assert_eq!(deliveries["kind"], "webhook_deliveries", "{deliveries}");
    let retried = deliveries["data"]["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["attempts"] == 2)
        .count();
    assert!(retried >= 2, "{deliveries}");

    // The feed pages through the payments' events; a replay sends them again with their ids.
    let first_page = northwind
        .ask(
            "/providers/1/events",
            json!({ "types": ["payment.succeeded"], "limit": 1 }),
        )
        .await;
    assert_eq!(first_page["kind"], "events", "{first_page}");
    let mut seen = Vec::new();
    let mut page = first_page;
    loop {
        for e in page["data"]["events"].as_array().unwrap() {
            seen.push(e["data"]["payment_id"].as_str().unwrap().to_owned());
        }
        if page["data"]["has_more"] == false {
            break;
        }
        page = northwind
            .ask(
                "/providers/1/events",
                json!({ "types": ["payment.succeeded"], "limit": 1,
                        "since_id": page["data"]["next_since_id"] }),
            )
            .await;
    }
    let ours: Vec<&String> = seen
        .iter()
        .filter(|p| **p == payment || **p == second)
        .collect();
    assert_eq!(ours, [&payment, &second], "in order, once each");

    let before = receiver.received().len();
    let since = (chrono::Utc::now() - chrono::Duration::minutes(30)).to_rfc3339();
    let replay = northwind
        .ask(
            &format!("/providers/1/webhooks/{endpoint}/replay"),
            json!({ "since": since }),
        )
        .await;
    assert_eq!(replay["kind"], "webhook_replay", "{replay}");
    assert!(replay["data"]["events"].as_i64().unwrap() >= 4, "{replay}");
    run_until(&services, || about(&receiver, &second).len() >= 4).await;
    let again = about(&receiver, &payment);
    assert_eq!(again.len(), 4, "the first payment's two events, twice");
    assert!(receiver.received().len() > before);
    let mut ids: Vec<&str> = again.iter().map(|r| r.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 2, "a replay carries the events' own webhook-ids");

    // Gone when deleted: its deliveries with it.
    let deleted = northwind
        .ask(
            &format!("/providers/1/webhooks/{endpoint}/delete"),
            json!({}),
        )
        .await;
    assert_eq!(deleted["kind"], "webhook_delete", "{deleted}");
    bus.client
        .remove_targets()
        .rule(&rule)
        .event_bus_name(&bus.name)
        .ids("tap")
        .send()
        .await
        .unwrap();
    bus.client
        .delete_rule()
        .name(&rule)
        .event_bus_name(&bus.name)
        .send()
        .await
        .unwrap();
    sqs.delete_queue().queue_url(&tap).send().await.unwrap();
}

#[tokio::test]
async fn the_webhook_routes_refuse_households_other_providers_and_hostile_bodies_at_the_gateway() {
    let mut northwind = Session::login("northwind", "northwind-password").await;
    let (mut home, _) = crate::household("hooks-refused", 1).await;
    let endpoint = Uuid::new_v4();
    for (path, body) in [
        (
            "/providers/1/webhooks".to_owned(),
            json!({ "url": "https://example.com/hooks" }),
        ),
        ("/providers/1/webhooks/list".to_owned(), json!({})),
        (
            format!("/providers/1/webhooks/{endpoint}/deliveries"),
            json!({}),
        ),
        (
            format!("/providers/1/webhooks/{endpoint}/replay"),
            json!({ "since": "2026-12-01T00:00:00Z" }),
        ),
        ("/providers/1/events".to_owned(), json!({})),
    ] {
        let by_household = home
            .request(&path, Uuid::new_v4(), body.clone(), REPLY_TIMEOUT)
            .await
            .unwrap();
        assert_eq!(error(&by_household), "forbidden", "{path}: {by_household}");
    }
    // The gateway's schema refuses what the model does not allow, before any worker sees it;
    // and a request without a token.
    for body in [
        json!({ "url": 42 }),
        json!({ "url": "https://example.com/hooks", "secret": "whsec_mine" }),
        json!({ "url": "https://example.com/hooks", "events": ["bill.exploded"] }),
    ] {
        let accepted = northwind
            .client
            .post("/providers/1/webhooks", Uuid::new_v4(), body.clone())
            .await
            .unwrap();
        assert_eq!(accepted.status, 400, "{body}: {}", accepted.body);
    }
    let anonymous = qbill::client::GatewayClient::new(&served().gateway, Uuid::new_v4());
    for path in ["/providers/1/webhooks/list", "/providers/1/events"] {
        let accepted = anonymous
            .post(path, Uuid::new_v4(), json!({}))
            .await
            .unwrap();
        assert_eq!(accepted.status, 400, "{path}: {}", accepted.body);
    }
    let other = northwind
        .ask(&format!("/providers/2/webhooks/{endpoint}"), json!({}))
        .await;
    assert_eq!(error(&other), "forbidden", "{other}");
    let unknown = northwind
        .ask(&format!("/providers/1/webhooks/{endpoint}"), json!({}))
        .await;
    assert_eq!(error(&unknown), "not_found", "{unknown}");
}
