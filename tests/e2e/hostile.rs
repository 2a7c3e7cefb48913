//! A catalogue of hostile and malformed requests, through the gateway: each gets the right answer
//! (a 400 from the gateway's schema validation, or the right error reply from a worker) and
//! changes no row.

use qbill::client::GatewayClient;
use qbill_tests::{count, db_pool, token_for};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{REPLY_TIMEOUT, served};

/// What a case must get.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Refused by the gateway's request validation; nothing enqueued.
    Gateway400,
    /// Answered by a worker with this error code.
    Reply(&'static str),
}
use Expect::{Gateway400, Reply};

#[tokio::test]
async fn forty_odd_hostile_requests_each_get_the_right_error_and_change_nothing() {
    let db = db_pool(&served().admin_url);
    let prefix = format!("hostile-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let me = qbill_core::seed::users(&db, &prefix, 1, 3)
        .await
        .unwrap()
        .remove(0);
    let apartment = me.apartment_id;
    let mut client = GatewayClient::new(&served().gateway, Uuid::new_v4());
    let queue = client.queue();
    let token = token_for(
        me.user_id,
        &me.username,
        qbill_core::types::QueueName::parse(&queue.to_string()).unwrap(),
    );
    client.set_token(Some(token.clone()));
    // A session's queue exists (its login's reply made it): the refusals of requests that prove
    // nothing are answered there, never on a queue of their own making.
    qbill_tests::reply_queue_url(
        &qbill_tests::sqs().await,
        qbill_core::types::QueueName::parse(&queue.to_string()).unwrap(),
    )
    .await;
    let my_bill: i64 = db
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT min(id) FROM bills WHERE apartment_id = $1",
            &[&apartment],
        )
        .await
        .unwrap()
        .get(0);
    let before = state(&db, me.user_id, apartment).await;

    let id = || Uuid::new_v4().to_string();
    let q = queue.to_string();
    let pay = format!("/apartments/{apartment}/payments");
    let utils = format!("/apartments/{apartment}/utils");
    let histories = format!("/apartments/{apartment}/histories");
    let body = |fields: Value| {
        let mut b = json!({ "queue_name": q, "request_id": id() });
        b.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        b.to_string()
    };
    let long = "x".repeat(70_000);
    let cases: Vec<(&str, String, String, Expect)> = vec![
        // Broken or wrongly shaped bodies.
        (
            "broken JSON",
            "/auth".into(),
            r#"{"queue_name": "#.into(),
            Gateway400,
        ),
        ("a JSON array", "/auth".into(), "[]".into(), Gateway400),
        // The link that puts an old address back: its token bounded by the schema, and one that
        // was never mailed refused.
        (
            "an undo link without a token",
            "/auth/email-undo".into(),
            body(json!({ "token": "" })),
            Gateway400,
        ),
        (
            "an undo link with an over-long token",
            "/auth/email-undo".into(),
            body(json!({ "token": "t".repeat(201) })),
            Gateway400,
        ),
        (
            "an undo link never mailed",
            "/auth/email-undo".into(),
            body(json!({ "token": "not-a-mailed-token" })),
            Reply("invalid_request"),
        ),
        (
            "a new address without the current password",
            "/me/profile".into(),
            body(json!({ "email": "someone@example.org" })),
            Gateway400,
        ),
        (
            "a JSON string",
            "/auth".into(),
            "\"hello\"".into(),
            Gateway400,
        ),
        ("an empty body", utils.clone(), String::new(), Gateway400),
        (
            "no queue_name",
            utils.clone(),
            json!({ "request_id": id() }).to_string(),
            Gateway400,
        ),
        (
            "no request_id",
            utils.clone(),
            json!({ "queue_name": q }).to_string(),
            Gateway400,
        ),
        (
            "queue_name not a UUID",
            utils.clone(),
            json!({ "queue_name": "abc", "request_id": id() }).to_string(),
            Gateway400,
        ),
        (
            "queue_name of the request queue",
            utils.clone(),
            json!({ "queue_name": "qbill-requests", "request_id": id() }).to_string(),
            Gateway400,
        ),
        (
            "an upper-case queue_name",
            utils.clone(),
            json!({ "queue_name": q.to_uppercase(), "request_id": id() }).to_string(),
            Gateway400,
        ),
        (
            "queue_name with a path",
            utils.clone(),
            json!({ "queue_name": "../qbill-requests", "request_id": id() }).to_string(),
            Gateway400,
        ),
        (
            "request_id a number",
            utils.clone(),
            json!({ "queue_name": q, "request_id": 42 }).to_string(),
            Gateway400,
        ),
        (
            "an unexpected field",
            utils.clone(),
            body(json!({ "admin": true })),
            Gateway400,
        ),
        (
            "login without a password",
            "/auth".into(),
            body(json!({ "username": "demo" })),
            Gateway400,
        ),
        (
            "a password that is a number",
            "/auth".into(),
            body(json!({ "username": "demo", "password": 1234 })),
            Gateway400,
        ),
        (
            "a huge username",
            "/auth".into(),
            body(json!({ "username": long, "password": "p" })),
            Gateway400,
        ),
        (
            "a huge password",
            "/auth".into(),
            body(json!({ "username": "demo", "password": "p".repeat(5000) })),
            Gateway400,
        ),
        ("no bills_id", pay.clone(), body(json!({})), Gateway400),
        (
            "an empty bills_id",
            pay.clone(),
            body(json!({ "bills_id": [] })),
            Gateway400,
        ),
        (
            "a bill listed twice",
            pay.clone(),
            body(json!({ "bills_id": [my_bill, my_bill] })),
            Gateway400,
        ),
        (
            "bill ids as strings",
            pay.clone(),
            body(json!({ "bills_id": [my_bill.to_string()] })),
            Gateway400,
        ),
        (
            "a negative bill id",
            pay.clone(),
            body(json!({ "bills_id": [-1] })),
            Gateway400,
        ),
        (
            "bill id zero",
            pay.clone(),
            body(json!({ "bills_id": [0] })),
            Gateway400,
        ),
        (
            "a fractional bill id",
            pay.clone(),
            body(json!({ "bills_id": [1.5] })),
            Gateway400,
        ),
        (
            "bills_id not a list",
            pay.clone(),
            body(json!({ "bills_id": my_bill })),
            Gateway400,
        ),
        (
            "a hundred and one bills",
            pay.clone(),
            body(json!({ "bills_id": (1..=101).collect::<Vec<_>>() })),
            Gateway400,
        ),
        // The API takes no amounts: a client cannot choose what it pays.
        (
            "a negative amount",
            pay.clone(),
            body(json!({ "bills_id": [my_bill], "amount": "-5.00" })),
            Gateway400,
        ),
        (
            "a zero amount",
            pay.clone(),
            body(json!({ "bills_id": [my_bill], "amount": "0.00" })),
            Gateway400,
        ),
        (
            "a fractional-cent amount",
            pay.clone(),
            body(json!({ "bills_id": [my_bill], "amount": "0.001" })),
            Gateway400,
        ),
        (
            "an enormous amount",
            pay.clone(),
            body(json!({ "bills_id": [my_bill], "amount": "1e309" })),
            Gateway400,
        ),
        (
            "a date that is a word",
            histories.clone(),
            body(json!({ "date_down": "yesterday", "date_up": "2026-01-01" })),
            Gateway400,
        ),
        (
            "a date with slashes",
            histories.clone(),
            body(json!({ "date_down": "2026/01/01", "date_up": "2026-01-02" })),
            Gateway400,
        ),
        // Past the schema, refused by a worker.
        (
            "a bill id beyond 64 bits",
            pay.clone(),
            format!(
                r#"{{"queue_name": "{q}", "request_id": "{}", "bills_id": [99999999999999999999]}}"#,
                id()
            ),
            Reply("invalid_request"),
        ),
        (
            "an unknown bill",
            pay.clone(),
            body(json!({ "bills_id": [9_223_372_036_854_775_807i64] })),
            Reply("not_found"),
        ),
        (
            "someone else's bill",
            pay.clone(),
            body(json!({ "bills_id": [3081] })),
            Reply("not_found"),
        ),
        (
            "a settled bill of someone else",
            pay.clone(),
            body(json!({ "bills_id": [1051] })),
            Reply("not_found"),
        ),
        (
            "another user's apartment",
            "/apartments/3/payments".into(),
            body(json!({ "bills_id": [3081] })),
            Reply("forbidden"),
        ),
        (
            "an unknown apartment",
            "/apartments/999999999/utils".into(),
            body(json!({})),
            Reply("not_found"),
        ),
        (
            "an apartment id that is a word",
            "/apartments/abc/utils".into(),
            body(json!({})),
            Reply("invalid_request"),
        ),
        (
            "a negative apartment id",
            "/apartments/-1/utils".into(),
            body(json!({})),
            Reply("invalid_request"),
        ),
        (
            "apartment zero",
            "/apartments/0/utils".into(),
            body(json!({})),
            Reply("invalid_request"),
        ),
        (
            "SQL in the apartment id",
            "/apartments/1%20OR%201=1/utils".into(),
            body(json!({})),
            Reply("invalid_request"),
        ),
        (
            "SQL in the username",
            "/auth".into(),
            body(json!({ "username": "demo' OR '1'='1", "password": "x' OR '1'='1" })),
            Reply("unauthorized"),
        ),
        (
            "control characters in the username",
            "/auth".into(),
            body(json!({ "username": "de\u{0}mo\u{7}", "password": "\u{1b}[2J" })),
            Reply("invalid_request"),
        ),
        (
            "an impossible date",
            histories.clone(),
            body(json!({ "date_down": "2026-02-30", "date_up": "2026-03-01" })),
            Reply("invalid_request"),
        ),
        (
            "a window upside down",
            histories.clone(),
            body(json!({ "date_down": "2026-08-01", "date_up": "2026-07-01" })),
            Reply("invalid_request"),
        ),
        (
            "half a window",
            histories.clone(),
            body(json!({ "date_down": "2026-08-01" })),
            Reply("invalid_request"),
        ),
    ];
    assert!(cases.len() >= 40, "the catalogue has {} cases", cases.len());

    let mut failures = Vec::new();
    for (what, path, raw, expect) in &cases {
        let request_id = serde_json::from_str::<Value>(raw)
            .ok()
            .and_then(|v| v["request_id"].as_str().map(str::to_owned));
        let accepted = client.post_raw(path, raw.clone()).await.unwrap();
        let got = match (accepted.status, &request_id) {
            (400, _) => Gateway400,
            (202, Some(request_id)) => {
                let reply = client
                    .wait_for("/replies", request_id.parse().unwrap(), REPLY_TIMEOUT)
                    .await
                    .unwrap();
                match reply["error"]["code"].as_str() {
                    Some("invalid_request") => Reply("invalid_request"),
                    Some("unauthorized") => Reply("unauthorized"),
                    Some("forbidden") => Reply("forbidden"),
                    Some("not_found") => Reply("not_found"),
                    Some("already_paid") => Reply("already_paid"),
                    _ => {
                        failures.push(format!("{what}: unexpected reply {reply}"));
                        continue;
                    }
                }
            }
            (status, _) => {
                failures.push(format!(
                    "{what}: the gateway answered {status} {:?}",
                    accepted.body
                ));
                continue;
            }
        };
        if got != *expect {
            failures.push(format!("{what}: expected {expect:?}, got {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases went wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(
        state(&db, me.user_id, apartment).await,
        before,
        "no row changed"
    );
    // And the demo user's bills that the cases aimed at are untouched.
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM bills WHERE id = 3081 AND status = 'open'",
            &[]
        )
        .await,
        1
    );
}

/// Everything a request could have changed for this user and apartment. (Failed logins are
/// counted, by design, for throttling; they are not part of it.)
async fn state(db: &deadpool_postgres::Pool, user: i64, apartment: i64) -> [i64; 4] {
    [
        count(
            db,
            "SELECT count(*) FROM payments WHERE user_id = $1",
            &[&user],
        )
        .await,
        count(
            db,
            "SELECT count(*) FROM bills WHERE apartment_id = $1 AND status = 'paid'",
            &[&apartment],
        )
        .await,
        count(
            db,
            "SELECT count(*) FROM processed_requests WHERE user_id = $1",
            &[&user],
        )
        .await,
        count(
            db,
            "SELECT count(*) FROM audit_events WHERE actor_user = $1",
            &[&user],
        )
        .await,
    ]
}
