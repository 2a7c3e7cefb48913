use qbill_core::Outcome;
use qbill_core::envelope::InboundMessage;
use qbill_tests::message;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{DEMO, Fixture, error_code};

#[tokio::test]
async fn malformed_requests_get_invalid_request_and_change_nothing() {
    let f = Fixture::new().await;
    let token = f.token(DEMO);
    let q = f.queue.to_string();
    let id = Uuid::new_v4().to_string();
    let cases: Vec<(&str, Option<&str>, Value)> = vec![
        (
            "payments",
            Some("1"),
            json!({ "queue_name": q, "request_id": id, "bills_id": [] }),
        ),
        (
            "payments",
            Some("1"),
            json!({ "queue_name": q, "request_id": id, "bills_id": [-5] }),
        ),
        (
            "payments",
            Some("1"),
            json!({ "queue_name": q, "request_id": id, "bills_id": [1081, 1081] }),
        ),
        (
            "payments",
            Some("1"),
            json!({ "queue_name": q, "request_id": id, "bills_id": ["1081"] }),
        ),
        (
            "payments",
            Some("1"),
            json!({ "queue_name": q, "request_id": id, "bills_id": [1081.5] }),
        ),
        (
            "payments",
            Some("1"),
            json!({ "queue_name": q, "request_id": id, "bills_id": (1..=101).collect::<Vec<_>>() }),
        ),
        (
            "payments",
            Some("1"),
            json!({ "queue_name": q, "request_id": id }),
        ),
        (
            "payments",
            Some("1"),
            json!({ "queue_name": q, "request_id": id, "bills_id": [1081], "amount": "1.00" }),
        ),
        (
            "payments",
            Some("abc"),
            json!({ "queue_name": q, "request_id": id, "bills_id": [1081] }),
        ),
        (
            "payments",
            Some("0"),
            json!({ "queue_name": q, "request_id": id, "bills_id": [1081] }),
        ),
        (
            "payments",
            Some("1; DROP TABLE bills"),
            json!({ "queue_name": q, "request_id": id, "bills_id": [1081] }),
        ),
        (
            "payments",
            Some("1"),
            json!({ "queue_name": q, "request_id": "not-a-uuid", "bills_id": [1081] }),
        ),
        (
            "payments",
            Some("1"),
            json!({ "queue_name": q, "bills_id": [1081] }),
        ),
        (
            "utils",
            Some("1"),
            json!({ "queue_name": q, "request_id": id, "extra": true }),
        ),
        (
            "histories",
            Some("1"),
            json!({ "queue_name": q, "request_id": id, "date_down": "yesterday", "date_up": "2026-01-01" }),
        ),
        (
            "auth",
            None,
            json!({ "queue_name": q, "request_id": id, "username": "demo" }),
        ),
        (
            "auth",
            None,
            json!({ "queue_name": q, "request_id": id, "username": "", "password": "x" }),
        ),
        (
            "auth",
            None,
            json!({ "queue_name": q, "request_id": id, "username": "demo", "password": "x".repeat(2000) }),
        ),
        (
            "refunds",
            Some("1"),
            json!({ "queue_name": q, "request_id": id }),
        ),
    ];
    for (route, apartment, body) in cases {
        let mut inbound = message(route, None, Some(&token), body.clone());
        if let Some(apartment) = apartment {
            inbound
                .attributes
                .insert("apartment_id".into(), apartment.into());
            inbound
                .attributes
                .insert("authorization".into(), format!("header:Bearer {token}"));
        }
        let reply = f.send(inbound).await;
        assert_eq!(
            error_code(&reply),
            "invalid_request",
            "{route} {apartment:?} {body}"
        );
        assert!(!reply["error"]["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM payments WHERE paid_at > now() - interval '1 day'",
            &[]
        )
        .await,
        0
    );
    assert_eq!(
        f.db.count("SELECT count(*) FROM processed_requests", &[])
            .await,
        0
    );
}

#[tokio::test]
async fn a_message_without_a_readable_reply_queue_is_dropped_not_retried() {
    let f = Fixture::new().await;
    let bodies = [
        "not json".to_owned(),
        "[1, 2]".to_owned(),
        json!({ "request_id": Uuid::new_v4() }).to_string(),
        json!({ "queue_name": "qbill-requests", "request_id": Uuid::new_v4() }).to_string(),
        json!({ "queue_name": 42 }).to_string(),
        format!(
            "{{\"queue_name\": \"{}\", \"pad\": \"{}\"}}",
            Uuid::new_v4(),
            "x".repeat(300_000)
        ),
    ];
    for body in bodies {
        let inbound = InboundMessage {
            message_id: "m".into(),
            body: body.clone(),
            attributes: [("route".into(), "utils".into())].into(),
        };
        let outcome = f.engine.handle(&inbound).await.expect("not transient");
        assert!(
            matches!(outcome, Outcome::Drop),
            "{outcome:?} for {:.60}",
            body
        );
    }
}
