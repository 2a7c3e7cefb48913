//! What a worker's memory does under a login storm, the benchmark behind `scripts/bench memory`:
//! a `qbill work` process is sent N logins at once, and, given its binary, the Lambda `bootstrap`
//! is handed the same logins in batches of ten through a stand-in of the Lambda Runtime API. Each
//! process's resident memory is read when fresh and at its peak (VmHWM).

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use futures::future::join_all;
use qbill_core::envelope::attribute;
use qbill_core::types::QueueName;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::chaos::processes::{self, qbill_work};
use crate::load::User;
use crate::transport::{Outgoing, Transport};

/// Resident memory of one process, in MiB.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    pub fresh_mib: f64,
    pub peak_mib: f64,
}

/// `VmRSS` or `VmHWM` of a process, in KiB.
fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    processes::status_kib(pid, field).with_context(|| format!("no {field} for process {pid}"))
}

/// A login per user, all sent at once on SQS; waits for every reply.
async fn log_in_at_once(transport: &Transport, users: &[User]) -> anyhow::Result<()> {
    let queue = QueueName::parse(&Uuid::new_v4().to_string())?;
    transport.prepare(queue).await?;
    let sends = users.iter().map(|user| {
        let body = json!({
            "queue_name": queue, "request_id": Uuid::new_v4(),
            "username": user.username, "password": user.password,
        });
        transport.send(Outgoing {
            route: "auth",
            payment: None,
            apartment: None,
            token: None,
            body: body.to_string(),
        })
    });
    for sent in join_all(sends).await {
        if let Err(refused) = sent {
            bail!("a login could not be sent: {}", refused.0);
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    let mut answered = 0;
    while answered < users.len() {
        if tokio::time::Instant::now() > deadline {
            bail!("{answered} of {} logins answered in 3 minutes", users.len());
        }
        for reply in transport.poll(queue, 2).await? {
            if reply.status != "ok" {
                bail!("a login failed: {:?}", reply.error.map(|e| e.code));
            }
            answered += 1;
        }
    }
    Ok(())
}

/// A `qbill work` process of `pollers` on `queue`, sent a login per user at once.
pub async fn pool(
    qbill: &Path,
    pollers: usize,
    queue: &str,
    users: &[User],
    log: &Path,
) -> anyhow::Result<Memory> {
    let env = vec![
        ("QBILL_REQUEST_QUEUE".to_owned(), queue.to_owned()),
        ("QBILL_POLL_WAIT_SECONDS".to_owned(), "1".to_owned()),
        ("QBILL_SWEEP_INTERVAL_SECONDS".to_owned(), "0".to_owned()),
        ("QBILL_LOG".to_owned(), "warn".to_owned()),
    ];
    let worker = qbill_work(qbill, pollers, env, log).await?;
    let fresh = status_kib(worker.pid(), "VmRSS")?;
    let transport = Transport::sqs(queue, "qbill-reply-").await?;
    let stormed = log_in_at_once(&transport, users).await;
    let peak = worker.peak_rss_kib();
    worker.terminate().await?;
    transport.cleanup().await;
    stormed?;
    Ok(Memory {
        fresh_mib: fresh as f64 / 1024.0,
        peak_mib: peak as f64 / 1024.0,
    })
}

#[derive(Clone)]
struct RuntimeApi {
    events: Arc<Mutex<VecDeque<(String, Value)>>>,
    results: mpsc::UnboundedSender<Value>,
}

async fn next(State(api): State<RuntimeApi>) -> impl IntoResponse {
    loop {
        let event = api.events.lock().expect("events").pop_front();
        if let Some((id, event)) = event {
            let mut headers = HeaderMap::new();
            let deadline = chrono::Utc::now().timestamp_millis() + 60_000;
            for (name, value) in [
                ("lambda-runtime-aws-request-id", id),
                ("lambda-runtime-deadline-ms", deadline.to_string()),
                (
                    "lambda-runtime-invoked-function-arn",
                    "arn:aws:lambda:us-east-1:000000000000:function:qbill-worker".to_owned(),
                ),
            ] {
                if let Ok(value) = value.parse() {
                    headers.insert(name, value);
                }
            }
            return (headers, axum::Json(event));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn result(
    State(api): State<RuntimeApi>,
    UrlPath((_id, kind)): UrlPath<(String, String)>,
    body: String,
) -> &'static str {
    let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    let _ = api.results.send(json!({ "kind": kind, "body": value }));
    "ok"
}

/// An SQS event of logins, as the event source mapping hands it to the function.
fn batch(users: &[User], queue: QueueName) -> Value {
    let records: Vec<Value> = users
        .iter()
        .map(|user| {
            let body = json!({
                "queue_name": queue, "request_id": Uuid::new_v4(),
                "username": user.username, "password": user.password,
            });
            let text = |v: &str| json!({ "stringValue": v, "dataType": "String" });
            json!({
                "messageId": Uuid::new_v4(),
                "receiptHandle": "memory-benchmark",
                "body": body.to_string(),
                "attributes": { "ApproximateReceiveCount": "1" },
                "messageAttributes": {
                    attribute::ROUTE: text("auth"),
                    attribute::REQUEST_TIME: text(&chrono::Utc::now().timestamp_millis().to_string()),
                },
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:qbill-requests",
                "awsRegion": "us-east-1",
            })
        })
        .collect();
    json!({ "Records": records })
}

/// The Lambda `bootstrap`, handed a login per user in batches of ten (the event source mapping's
/// batch size), one invocation after another as one execution environment takes them.
pub async fn lambda(bootstrap: &Path, users: &[User]) -> anyhow::Result<Memory> {
    let queue = QueueName::parse(&Uuid::new_v4().to_string())?;
    let events: VecDeque<(String, Value)> = users
        .chunks(10)
        .enumerate()
        .map(|(i, chunk)| (format!("invocation-{i}"), batch(chunk, queue)))
        .collect();
    let invocations = events.len();
    let (results, mut received) = mpsc::unbounded_channel();
    let api = RuntimeApi {
        events: Arc::new(Mutex::new(VecDeque::new())),
        results,
    };
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/{kind}", post(result))
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    // The rest of its environment (database, JWT key, SQS endpoint) is inherited.
    let mut function = tokio::process::Command::new(bootstrap)
        .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "qbill-worker")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("QBILL_LOG", "warn")
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", bootstrap.display()))?;
    let pid = function.id().context("the bootstrap exited at once")?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fresh = status_kib(pid, "VmRSS")?;
    api.events.lock().expect("events").extend(events);
    for _ in 0..invocations {
        let answer = tokio::time::timeout(Duration::from_secs(120), received.recv())
            .await
            .context("the function did not answer an invocation")?
            .context("the runtime stand-in stopped")?;
        if answer["kind"] != "response" || answer["body"]["batchItemFailures"] != json!([]) {
            bail!("an invocation failed: {answer}");
        }
    }
    let peak = status_kib(pid, "VmHWM")?;
    function.kill().await?;
    Ok(Memory {
        fresh_mib: fresh as f64 / 1024.0,
        peak_mib: peak as f64 / 1024.0,
    })
}
