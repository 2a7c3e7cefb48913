//! The bare echo: the queue benchmark's reference. Pollers that receive from the request queue as
//! the worker pool does, send each message a reply through the same reply-queue code, and delete
//! the batch: everything a worker does except the work.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_sqs::types::Message;
use futures::future::join_all;
use qbill_core::types::QueueName;
use qbill_sqs::{ReplyQueues, SqsConfig};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

#[derive(Deserialize)]
struct Addressed {
    queue_name: String,
    request_id: serde_json::Value,
}

struct Echo {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    replies: ReplyQueues,
    stamps: qbill_core::cache::Cache,
    config: SqsConfig,
    echoed: AtomicU64,
}

/// Runs `workers` echo pollers on the configured request queue until `stop` fires.
pub async fn serve(
    config: SqsConfig,
    workers: usize,
    stop: CancellationToken,
) -> anyhow::Result<u64> {
    let client = qbill_sqs::client().await;
    let queue_url = qbill_sqs::queue_url(&client, &config.request_queue).await?;
    let echo = Arc::new(Echo {
        replies: ReplyQueues::new(client.clone(), &config),
        // The reply path's Redis stamp, as the worker's.
        stamps: qbill_core::cache::Cache::from_env().await?,
        client,
        queue_url,
        config,
        echoed: AtomicU64::new(0),
    });
    let mut pollers = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (echo, stop) = (echo.clone(), stop.clone());
        pollers.spawn(async move { echo.poll(stop).await });
    }
    while pollers.join_next().await.is_some() {}
    Ok(echo.echoed.load(Ordering::Relaxed))
}

impl Echo {
    async fn poll(&self, stop: CancellationToken) {
        while !stop.is_cancelled() {
            // A receive under way is let finish, as the pool does: dropped, its messages would
            // stay invisible until the visibility timeout.
            let received = qbill_sqs::receive(&self.client, &self.queue_url, &self.config)
                .send()
                .await;
            let Ok(out) = received else {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            };
            let messages = out.messages.unwrap_or_default();
            let done: Vec<String> = join_all(messages.iter().map(|m| self.echo(m)))
                .await
                .into_iter()
                .flatten()
                .collect();
            if done.is_empty() {
                continue;
            }
            let _ = qbill_sqs::delete_batch(&self.client, &self.queue_url, done)
                .send()
                .await;
        }
    }

    async fn echo(&self, message: &Message) -> Option<String> {
        let body = message.body.as_deref()?;
        let addressed: Addressed = serde_json::from_str(body).ok()?;
        let queue = QueueName::parse(&addressed.queue_name).ok()?;
        let reply = serde_json::json!({
            "request_id": addressed.request_id, "kind": "echo", "status": "ok", "data": {}
        })
        .to_string();
        // The bare echo answers everyone, as the engine answers a valid token.
        self.replies
            .send(&self.stamps, queue, reply, true)
            .await
            .ok()?;
        self.echoed.fetch_add(1, Ordering::Relaxed);
        message.receipt_handle.clone()
    }
}
