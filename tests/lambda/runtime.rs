//! The real `bootstrap` binary against a stand-in for the Lambda Runtime API: it initialises
//! once, takes invocations from `/runtime/invocation/next` and posts each result back, exactly as
//! in a Lambda execution environment.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use qbill_tests::database_env;
use qbill_tests::{TestDb, workspace_binary};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::Batch;

#[derive(Clone)]
struct RuntimeApi {
    events: Arc<Mutex<VecDeque<(String, Value)>>>,
    results: mpsc::UnboundedSender<(String, String, Value)>,
}

async fn next(State(api): State<RuntimeApi>) -> impl IntoResponse {
    loop {
        if let Some((id, event)) = api.events.lock().unwrap().pop_front() {
            let mut headers = HeaderMap::new();
            headers.insert("lambda-runtime-aws-request-id", id.parse().unwrap());
            let deadline = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
                + 30_000;
            headers.insert(
                "lambda-runtime-deadline-ms",
                deadline.to_string().parse().unwrap(),
            );
            headers.insert(
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:eu-west-1:123456789012:function:qbill-worker"
                    .parse()
                    .unwrap(),
            );
            return (headers, axum::Json(event));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn result(
    State(api): State<RuntimeApi>,
    Path((id, kind)): Path<(String, String)>,
    body: String,
) -> &'static str {
    let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    let _ = api.results.send((id, kind, value));
    "ok"
}

async fn init_error(State(api): State<RuntimeApi>, body: String) -> &'static str {
    let _ = api
        .results
        .send(("init".into(), "error".into(), Value::String(body)));
    "ok"
}

#[tokio::test]
async fn the_bootstrap_binary_serves_invocations_from_the_runtime_api() {
    let db = TestDb::fresh().await;
    let batch = Batch::new();
    let (results, mut received) = mpsc::unbounded_channel();
    let api = RuntimeApi {
        events: Arc::new(Mutex::new(VecDeque::from([
            ("invocation-1".to_owned(), batch.event.clone()),
            ("invocation-2".to_owned(), json!({ "qbill": "migrate" })),
        ]))),
        results,
    };
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/{kind}", post(result))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    // The rest of the environment (Redis, SQS endpoint, reply prefix, JWT key) is the test
    // profile's, inherited.
    let mut function = tokio::process::Command::new(workspace_binary("bootstrap"))
        .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "qbill-worker")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .envs(database_env(&db.url, &db.admin_url))
        .env(
            "QBILL_JWT_SECRET",
            qbill_tests::jwt_secret().expose_secret(),
        )
        .env("QBILL_METRICS_NAMESPACE", "qbill-test")
        .kill_on_drop(true)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();

    let mut answers = Vec::new();
    while answers.len() < 2 {
        let answer = tokio::time::timeout(Duration::from_secs(60), received.recv())
            .await
            .expect("the function answers")
            .unwrap();
        answers.push(answer);
    }
    assert_eq!(
        answers[0],
        (
            "invocation-1".into(),
            "response".into(),
            json!({ "batchItemFailures": [] })
        )
    );
    assert_eq!(answers[1].0, "invocation-2");
    assert_eq!(
        answers[1].1, "error",
        "the worker leaves migrations to the admin function: {answers:?}"
    );
    assert!(
        function.try_wait().unwrap().is_none(),
        "one process served both invocations and waits for more"
    );
    function.kill().await.unwrap();
    // After each invocation the engine's metrics went out on standard output as CloudWatch
    // embedded metric format: the batch's five replies among them.
    let mut stdout = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut function.stdout.take().unwrap(), &mut stdout)
        .await
        .unwrap();
    let documents: Vec<Value> = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|doc| doc.get("_aws").is_some())
        .collect();
    let replies: u64 = documents
        .iter()
        .filter(|doc| {
            doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "qbill-test"
                && doc["function"] == "worker"
        })
        .filter_map(|doc| doc["qbill_replies_total"].as_u64())
        .sum();
    assert_eq!(replies, 5, "five answerable messages: {documents:#?}");
    let paid = qbill_tests::count(
        &db.pool,
        "SELECT count(*) FROM payments WHERE request_id = $1",
        &[&batch.request_ids[&3]],
    )
    .await;
    assert_eq!(paid, 1, "the batch's payment was made");
}
