use std::time::{Duration, Instant};

use serde_json::json;
use uuid::Uuid;

use crate::{REPLY_TIMEOUT, client};

#[tokio::test]
async fn a_post_is_accepted_with_202_and_a_small_json_body() {
    let c = client();
    let accepted = c
        .post(
            "/auth",
            Uuid::new_v4(),
            json!({ "username": "demo", "password": "x" }),
        )
        .await
        .unwrap();
    assert_eq!(accepted.status, 202);
    assert_eq!(accepted.body["accepted"], true);
}

#[tokio::test]
async fn the_gateway_refuses_malformed_bodies_with_400() {
    let c = client();
    let q = c.queue();
    let id = Uuid::new_v4();
    let cases = [
        ("/auth", "not json".to_owned()),
        ("/auth", json!({ "queue_name": q, "request_id": id, "username": "demo" }).to_string()),
        ("/auth", json!({ "queue_name": "not-a-uuid", "request_id": id, "username": "demo", "password": "p" }).to_string()),
        ("/apartments/1/utils", json!({ "queue_name": q }).to_string()),
        ("/apartments/1/utils", json!({ "queue_name": q, "request_id": id, "sneaky": 1 }).to_string()),
        ("/apartments/1/histories", json!({ "queue_name": q, "request_id": id, "date_down": "June" }).to_string()),
        ("/apartments/1/payments", json!({ "queue_name": q, "request_id": id, "bills_id": [] }).to_string()),
        ("/apartments/1/payments", json!({ "queue_name": q, "request_id": id, "bills_id": [1, 1] }).to_string()),
        ("/apartments/1/payments", json!({ "queue_name": q, "request_id": id, "bills_id": [-1] }).to_string()),
        ("/apartments/1/payments", json!({ "queue_name": q, "request_id": id, "bills_id": "1081" }).to_string()),
    ];
    for (path, body) in cases {
        let answer = c.post_raw(path, body.clone()).await.unwrap();
        assert_eq!(answer.status, 400, "{path} {body}: {:?}", answer.body);
    }
    // Nothing of that reached a worker: no reply ever arrives on the queue.
    assert!(c.poll("/replies", 3).await.unwrap().is_empty());
}

#[tokio::test]
async fn what_passes_the_gateway_but_is_still_wrong_gets_an_invalid_request_reply() {
    let mut c = client();
    c.auth("demo2", "demo2-password", REPLY_TIMEOUT)
        .await
        .unwrap();
    let reply = c
        .request(
            "/apartments/not-a-number/utils",
            Uuid::new_v4(),
            json!({}),
            REPLY_TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(reply["error"]["code"], "invalid_request", "{reply}");
    assert_eq!(reply["kind"], "utils");
}

#[tokio::test]
async fn polling_a_queue_that_does_not_exist_yet_returns_an_empty_list_at_once() {
    let c = client();
    let started = Instant::now();
    assert!(c.poll("/replies", 20).await.unwrap().is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "it should not wait on a missing queue"
    );
}

#[tokio::test]
async fn a_reply_is_handed_out_once_and_every_poll_path_reads_the_same_queue() {
    let mut c = client();
    let login = c
        .auth("demo2", "demo2-password", REPLY_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(login["status"], "ok");
    for path in ["/apartments/3/utils", "/apartments/3/histories"] {
        let id = Uuid::new_v4();
        assert_eq!(c.post(path, id, json!({})).await.unwrap().status, 202);
        // Read through the generic path this time.
        let reply = c.wait_for("/replies", id, REPLY_TIMEOUT).await.unwrap();
        assert_eq!(reply["status"], "ok", "{reply}");
    }
    // Everything was consumed: later polls on every path come back empty.
    for path in ["/replies", "/auth", "/apartments/3/utils"] {
        assert!(c.poll(path, 1).await.unwrap().is_empty(), "{path}");
    }
}
