//! What a worker's memory does under a login storm, the benchmark behind `scripts/bench memory`:
//! a `qbill work` process is sent N logins at once, and, given its binary, the Lambda `bootstrap`
//! is handed the same logins in batches of ten through the stand-in of the Lambda Runtime API
//! ([`qbill_loadtest::runtime_api`]). Each process's resident memory is read when fresh and at its
//! peak (VmHWM).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::future::join_all;
use qbill_core::envelope::attribute;
use qbill_core::types::QueueName;
use qbill_loadtest::runtime_api::Function;
use serde_json::{Value, json};
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
    // The rest of its environment (database, JWT key, SQS endpoint) is inherited.
    let mut command = tokio::process::Command::new(bootstrap);
    command
        .env("QBILL_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut function = Function::start(command, 256).await?;
    let pid = function.pid().context("the bootstrap exited at once")?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fresh = status_kib(pid, "VmRSS")?;
    for chunk in users.chunks(10) {
        let answer = function
            .invoke(batch(chunk, queue), Duration::from_secs(120))
            .await?;
        if answer.result.as_ref().ok().map(|r| &r["batchItemFailures"]) != Some(&json!([])) {
            bail!("an invocation failed: {:?}", answer.result);
        }
    }
    let peak = status_kib(pid, "VmHWM")?;
    function.kill().await?;
    Ok(Memory {
        fresh_mib: fresh as f64 / 1024.0,
        peak_mib: peak as f64 / 1024.0,
    })
}
