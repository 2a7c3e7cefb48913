//! CORS: a web app served from another origin calls the gateway with `fetch`. The browser sends
//! a preflight before each POST (JSON with a bearer token is not a "simple" request) and reads an
//! answer only when it allows the app's origin, which is `QBILL_WEB_URL` (the test profile's web
//! origin, as `scripts/local-stack env test` prints it). LocalStack adds no CORS headers of its
//! own here: every header checked comes from gateway-config/openapi.yaml.

use std::time::{Duration, Instant};

use reqwest::{Method, Response};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{REPLY_TIMEOUT, served};

/// The origin the gateway allows, required: a default would test nothing the setup configured.
fn web_origin() -> String {
    std::env::var("QBILL_WEB_URL").unwrap_or_else(|_| {
        panic!(
            "QBILL_WEB_URL is not set: it is the web app's origin, the one the test profile's \
             gateway allows (eval \"$(scripts/local-stack env test)\" sets it)"
        )
    })
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(40))
        .http1_title_case_headers()
        .build()
        .expect("an HTTP client")
}

fn url(path: &str) -> String {
    format!("{}{path}", served().gateway.trim_end_matches('/'))
}

fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().expect("an ASCII header").to_owned())
}

/// The answer allows the web app's origin, and only it.
fn assert_allows_origin(response: &Response, what: &str) {
    let origin = web_origin();
    let allowed = header(response, "access-control-allow-origin");
    assert_ne!(allowed.as_deref(), Some("*"), "{what}: any origin allowed");
    assert_eq!(
        allowed.as_deref(),
        Some(origin.as_str()),
        "{what}: Access-Control-Allow-Origin (status {}, headers {:?})",
        response.status(),
        response.headers()
    );
}

/// A comma-separated header as a lower-case list.
fn list(response: &Response, name: &str) -> Vec<String> {
    header(response, name)
        .unwrap_or_default()
        .split(',')
        .map(|item| item.trim().to_ascii_lowercase())
        .filter(|item| !item.is_empty())
        .collect()
}

/// What a browser sends before `method` on `path` from the web app with fetch.
async fn preflight(path: &str, method: &str) -> Response {
    http()
        .request(Method::OPTIONS, url(path))
        .header("origin", web_origin())
        .header("access-control-request-method", method)
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("OPTIONS {path}: {e}"))
}

async fn post(path: &str, body: String) -> Response {
    http()
        .post(url(path))
        .header("origin", web_origin())
        .header("content-type", "application/json")
        .bearer_auth("not-a-token")
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

async fn poll(queue: Uuid, wait: u64) -> Response {
    http()
        .get(url(&format!("/replies/{queue}?wait={wait}")))
        .header("origin", web_origin())
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET /replies/{queue}: {e}"))
}

#[tokio::test]
async fn a_preflight_allows_the_web_origin_its_methods_and_headers() {
    let replies = format!("/replies/{}", Uuid::new_v4());
    for (path, method) in [
        ("/apartments/1/payments", "post"),
        (replies.as_str(), "get"),
    ] {
        let answer = preflight(path, &method.to_ascii_uppercase()).await;
        assert_eq!(answer.status(), 200, "OPTIONS {path}");
        assert_allows_origin(&answer, &format!("OPTIONS {path}"));
        let headers = list(&answer, "access-control-allow-headers");
        for wanted in ["authorization", "content-type"] {
            assert!(
                headers.iter().any(|h| h == wanted),
                "OPTIONS {path}: Access-Control-Allow-Headers {headers:?} lacks {wanted}"
            );
        }
        let methods = list(&answer, "access-control-allow-methods");
        assert!(
            methods.iter().any(|m| m == method),
            "OPTIONS {path}: Access-Control-Allow-Methods {methods:?} lacks {method}"
        );
        assert!(
            header(&answer, "access-control-max-age").is_some(),
            "OPTIONS {path}: no Access-Control-Max-Age"
        );
    }
}

#[tokio::test]
async fn a_post_and_the_polls_for_its_reply_allow_the_web_origin() {
    let queue = Uuid::new_v4();
    // The queue exists (as a session's does): a request without a valid token is answered only
    // on a queue that exists.
    qbill_tests::reply_queue_url(
        &qbill_tests::sqs().await,
        qbill_core::types::QueueName::parse(&queue.to_string()).unwrap(),
    )
    .await;
    let body = json!({ "queue_name": queue, "request_id": Uuid::new_v4(), "bills_id": [1] });
    let accepted = post("/apartments/1/payments", body.to_string()).await;
    assert_eq!(accepted.status(), 202);
    assert_allows_origin(&accepted, "POST's 202");

    // The worker refuses the token on the reply queue; every poll until then allows the origin
    // too.
    let started = Instant::now();
    loop {
        let answer = poll(queue, 2).await;
        assert_eq!(answer.status(), 200);
        assert_allows_origin(&answer, "GET poll's 200");
        let replies: Value = answer.json().await.expect("JSON");
        if let Some(reply) = replies["replies"].as_array().and_then(|r| r.first()) {
            assert_eq!(reply["kind"], "payments", "{reply}");
            break;
        }
        assert!(
            started.elapsed() < REPLY_TIMEOUT,
            "no reply within {REPLY_TIMEOUT:?}"
        );
    }
}

#[tokio::test]
async fn polling_a_queue_that_does_not_exist_allows_the_web_origin() {
    let answer = poll(Uuid::new_v4(), 0).await;
    assert_eq!(answer.status(), 200);
    assert_allows_origin(&answer, "GET poll of a missing queue");
    let replies: Value = answer.json().await.expect("JSON");
    assert_eq!(replies, json!({ "replies": [] }));
}

#[tokio::test]
async fn an_invalid_body_is_refused_with_400() {
    let answer = post("/apartments/1/payments", "not json".to_owned()).await;
    assert_eq!(answer.status(), 400);
    // Not asserted here: the 400's Access-Control-Allow-Origin. On AWS it comes from the
    // DEFAULT_4XX gateway response (scripts/check-gateway.py checks the definition), but
    // LocalStack 2026.3.0 neither imports x-amazon-apigateway-gateway-responses nor applies a
    // gateway response's headers or templates when it answers an error (even one set with
    // PutGatewayResponse), so its 400 carries no CORS header at all.
    assert!(
        header(&answer, "access-control-allow-origin").is_none_or(|origin| origin != "*"),
        "an invalid body's 400 allows any origin"
    );
    let body: Value = answer.json().await.expect("JSON");
    assert_eq!(body["message"], "Invalid request body", "{body}");
}
