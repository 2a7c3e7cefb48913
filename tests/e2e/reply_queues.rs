//! Who may have a reply queue made: a request with a valid token for it, or one whose route
//! vouched for it (a secret proved, or a per-source throttle counted it). Every other reply goes
//! only to a queue that exists, and the gateway refuses a token route's request without its
//! Authorization header, and a poll of a queue name that is not a lower-case UUID, outright.

use std::time::Duration;

use qbill_core::envelope::{InboundMessage, SOURCE_IP_MARKER, attribute};
use qbill_core::token::{Holder, Tokens};
use qbill_core::types::{QueueName, UserId};
use qbill_sqs::{Disposition, ReplyQueues, answer_batch};
use qbill_tests::{
    TestDb, drain_replies, engine, env, message, reply_queue_url, sqs, sqs_config, token_for,
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::served;

fn fresh() -> QueueName {
    QueueName::parse(&Uuid::new_v4().to_string()).unwrap()
}

fn body(queue: QueueName, fields: Value) -> Value {
    let mut body = json!({ "queue_name": queue.to_string(), "request_id": Uuid::new_v4() });
    body.as_object_mut()
        .unwrap()
        .extend(fields.as_object().cloned().unwrap_or_default());
    body
}

/// An anonymous route's message, from `address`.
fn anonymous(route: &str, queue: QueueName, fields: Value, address: &str) -> InboundMessage {
    let mut m = message(route, None, None, body(queue, fields));
    m.attributes.insert(
        attribute::SOURCE_IP.into(),
        format!("{SOURCE_IP_MARKER}{address}"),
    );
    m
}

async fn exists(sqs: &aws_sdk_sqs::Client, queue: QueueName) -> bool {
    sqs.get_queue_url()
        .queue_name(queue.sqs_name(&env("QBILL_REPLY_QUEUE_PREFIX")))
        .send()
        .await
        .is_ok()
}

#[tokio::test]
async fn a_request_that_proves_nothing_never_creates_a_reply_queue() {
    let db = TestDb::fresh().await;
    let engine = engine(&db, None);
    let sqs = sqs().await;
    let replies = ReplyQueues::new(sqs.clone(), &sqs_config("unused"));

    let forged = Tokens::new(
        qbill_core::config::JwtConfig::new("another-signing-key-of-at-least-32-bytes".into())
            .unwrap(),
    )
    .issue(&Holder::household(UserId(1), "demo"), fresh())
    .unwrap()
    .0;
    let (elsewhere, own) = (fresh(), fresh());
    let refused: Vec<(&str, QueueName, InboundMessage)> = {
        let (q1, q2, q3, q4, q5, q6, q7, q8) = (
            fresh(),
            fresh(),
            fresh(),
            fresh(),
            fresh(),
            fresh(),
            fresh(),
            fresh(),
        );
        vec![
            (
                "garbage token",
                q1,
                message("utils", Some(1), Some("not-a-token"), body(q1, json!({}))),
            ),
            (
                "no token",
                q2,
                message("me", Some(1), None, body(q2, json!({}))),
            ),
            (
                "a token signed with another key",
                q3,
                message("utils", Some(1), Some(&forged), body(q3, json!({}))),
            ),
            (
                "a valid token of another queue",
                q4,
                message(
                    "utils",
                    Some(1),
                    Some(&token_for(1, "demo", elsewhere)),
                    body(q4, json!({})),
                ),
            ),
            (
                "an unknown verification token",
                q5,
                anonymous(
                    "verify_email",
                    q5,
                    json!({ "token": "no-such-token" }),
                    "198.51.100.40",
                ),
            ),
            (
                "an unknown refresh token",
                q6,
                anonymous(
                    "refresh",
                    q6,
                    json!({ "refresh_token": "no-such-token" }),
                    "198.51.100.40",
                ),
            ),
            (
                "an unknown logout token",
                q7,
                anonymous(
                    "logout",
                    q7,
                    json!({ "refresh_token": "no-such-token" }),
                    "198.51.100.40",
                ),
            ),
            (
                "an unknown route",
                q8,
                anonymous("no_such_route", q8, json!({}), "198.51.100.40"),
            ),
        ]
    };
    let inbound: Vec<InboundMessage> = refused.iter().map(|(_, _, m)| m.clone()).collect();
    let dispositions = answer_batch(&engine, &replies, &inbound).await;
    for ((what, queue, _), disposition) in refused.iter().zip(&dispositions) {
        assert!(
            matches!(disposition, Disposition::Dropped),
            "{what}: {disposition:?}"
        );
        assert!(
            !exists(&sqs, *queue).await,
            "{what}: its reply created the queue"
        );
    }
    assert!(
        !exists(&sqs, elsewhere).await,
        "nothing went to the queue the token was issued for either"
    );
    assert_eq!(
        engine.services.metrics.snapshot().replies_without_queue,
        refused.len() as u64
    );

    // The same refusal on a queue that exists is answered there.
    let url = reply_queue_url(&sqs, own).await;
    let dispositions = answer_batch(
        &engine,
        &replies,
        &[message(
            "utils",
            Some(1),
            Some("not-a-token"),
            body(own, json!({})),
        )],
    )
    .await;
    assert!(matches!(dispositions[0], Disposition::Replied));
    let got = drain_replies(&sqs, &url, 1, Duration::from_secs(10)).await;
    assert_eq!(got[0]["error"]["code"], "unauthorized", "{got:?}");
}

#[tokio::test]
async fn a_valid_token_a_counted_login_and_a_proved_secret_have_their_queue_made() {
    let db = TestDb::fresh().await;
    let engine = engine(&db, None);
    let sqs = sqs().await;
    let replies = ReplyQueues::new(sqs.clone(), &sqs_config("unused"));
    let (q1, q2, q3) = (fresh(), fresh(), fresh());
    let inbound = vec![
        // A valid token, refused the apartment: answered, on a queue made for it.
        message(
            "utils",
            Some(3),
            Some(&token_for(1, "demo", q1)),
            body(q1, json!({})),
        ),
        // A wrong password: counted by the login throttle, answered.
        anonymous(
            "auth",
            q2,
            json!({ "username": "demo", "password": "wrong-password" }),
            "198.51.100.41",
        ),
        // A right one.
        anonymous(
            "auth",
            q3,
            json!({ "username": "demo", "password": "demo-password" }),
            "198.51.100.41",
        ),
    ];
    let dispositions = answer_batch(&engine, &replies, &inbound).await;
    let mut got = Vec::new();
    for (queue, disposition) in [q1, q2, q3].into_iter().zip(&dispositions) {
        assert!(
            matches!(disposition, Disposition::Replied),
            "{disposition:?}"
        );
        let url = reply_queue_url(&sqs, queue).await;
        got.push(drain_replies(&sqs, &url, 1, Duration::from_secs(10)).await[0].clone());
    }
    let codes: Vec<&str> = got
        .iter()
        .map(|r| r["error"]["code"].as_str().unwrap_or("ok"))
        .collect();
    assert_eq!(codes, ["forbidden", "unauthorized", "ok"], "{got:?}");

    // A refresh token proves the session: its reply makes the new queue.
    let q4 = fresh();
    let refresh = got[2]["data"]["refresh_token"].as_str().unwrap();
    let dispositions = answer_batch(
        &engine,
        &replies,
        &[anonymous(
            "refresh",
            q4,
            json!({ "refresh_token": refresh }),
            "198.51.100.41",
        )],
    )
    .await;
    assert!(matches!(dispositions[0], Disposition::Replied));
    let url = reply_queue_url(&sqs, q4).await;
    let refreshed = drain_replies(&sqs, &url, 1, Duration::from_secs(10)).await;
    assert_eq!(refreshed[0]["status"], "ok", "{refreshed:?}");
}

/// The gateway's own refusals: nothing is enqueued, so no worker ever sees the request.
#[tokio::test]
async fn the_gateway_refuses_a_token_route_without_its_header_and_a_queue_name_that_is_no_uuid() {
    let http = reqwest::Client::builder()
        .http1_title_case_headers()
        .build()
        .unwrap();
    let gateway = served().gateway.trim_end_matches('/').to_owned();
    let queue = fresh();
    for path in [
        "/apartments/1/utils",
        "/apartments/1/payments",
        "/me",
        "/me/password",
        "/providers/1/bills",
        "/users",
    ] {
        let response = http
            .post(format!("{gateway}{path}"))
            .json(&body(queue, json!({})))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_eq!(status, 400, "POST {path} without Authorization: {text}");
        assert!(text.contains("Authorization"), "POST {path}: {text}");
    }
    // Routes without a token still take requests without the header.
    let accepted = http
        .post(format!("{gateway}/auth/password-reset"))
        .json(&body(queue, json!({ "email": "nobody@example.com" })))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status().as_u16(), 202);

    let named = |name: &str| format!("{gateway}/replies/{name}?wait=0");
    for name in [
        queue.to_string().to_uppercase(),
        "..%2Fqbill-test-requests".to_owned(),
        format!("{}0", queue),
        "not-a-uuid".to_owned(),
    ] {
        let response = http.get(named(&name)).send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_eq!(status, 400, "GET /replies/{name}: {text}");
        assert!(text.contains("lower-case UUID"), "{text}");
    }
    let ok = http.get(named(&fresh().to_string())).send().await.unwrap();
    assert_eq!(ok.status().as_u16(), 200, "a lower-case UUID is polled");
}
