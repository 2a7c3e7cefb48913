//! The worker pool: N pollers over the shared request queue, sharing one engine.
//!
//! Each poller long-polls a batch, hands its messages to the engine together, sends each reply,
//! and deletes in one call the messages that are done. A message whose handling failed
//! transiently, or whose reply could not be sent, is not deleted: it becomes visible again after
//! the queue's visibility timeout and, after the redrive policy's receives, goes to the
//! dead-letter queue. At most pollers x batch size messages are in hand at once; the database
//! pool bounds how many of them are in a transaction.
//!
//! On shutdown no poller starts another receive; a receive under way is allowed to return (at
//! most the poll wait) and its messages are handled, replied and deleted before the poller exits.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::operation::delete_message_batch::builders::DeleteMessageBatchFluentBuilder;
use aws_sdk_sqs::operation::receive_message::builders::ReceiveMessageFluentBuilder;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName, QueueAttributeName,
};
use futures::FutureExt;
use qbill_core::envelope::InboundMessage;
use qbill_core::reply::{ErrorCode, Reply};
use qbill_core::{Engine, Outcome};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::SqsConfig;
use crate::dead_letters::QueueUrlError;
use crate::replies::{ReplyQueues, SendError, Sent};

/// The shortest time a pool's sweep runs before it stops with tasks left.
const SWEEP_AT_LEAST: Duration = Duration::from_secs(30);

/// How often a pool logs the engine's metrics (when they changed).
const METRICS_EVERY: Duration = Duration::from_secs(60);

/// Counters since the pool started, for logs and tests.
#[derive(Debug, Default)]
pub struct PoolStats {
    pub received: AtomicU64,
    pub replied: AtomicU64,
    pub dropped: AtomicU64,
    /// Left on the queue to be tried again.
    pub retried: AtomicU64,
    pub deleted: AtomicU64,
    /// Receives that failed (SQS unreachable or erroring); each is followed by a backoff pause.
    pub receive_errors: AtomicU64,
}

impl PoolStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
pub struct WorkerPool {
    shared: Arc<Shared>,
}

struct Shared {
    engine: Arc<Engine>,
    client: Client,
    queue_url: String,
    /// The request queue's redrive `maxReceiveCount`, when it has one.
    max_receives: Option<u32>,
    replies: ReplyQueues,
    config: SqsConfig,
    stats: Arc<PoolStats>,
    /// The sweep's tasks left by its last run, taken up by the next.
    sweep_left: tokio::sync::Mutex<Vec<crate::sweeper::Task>>,
}

impl WorkerPool {
    /// Resolves the request queue: fails at once if it does not exist, and waits, up to
    /// [`STARTUP_PATIENCE`], for an SQS that does not answer (a pool restarted during a network
    /// blip should come up, not exit).
    pub async fn new(
        engine: Arc<Engine>,
        client: Client,
        config: SqsConfig,
    ) -> anyhow::Result<Self> {
        let queue_url = request_queue_url(&client, &config.request_queue).await?;
        let max_receives = max_receives(&client, &queue_url).await;
        let replies = ReplyQueues::new(client.clone(), &config);
        let stats = Arc::default();
        Ok(Self {
            shared: Arc::new(Shared {
                engine,
                client,
                queue_url,
                max_receives,
                replies,
                config,
                stats,
                sweep_left: Default::default(),
            }),
        })
    }

    pub fn stats(&self) -> Arc<PoolStats> {
        self.shared.stats.clone()
    }

    /// Runs `workers` pollers until `shutdown` fires and every one of them has drained.
    pub async fn run(&self, workers: usize, shutdown: CancellationToken) {
        let mut pollers = JoinSet::new();
        for id in 0..workers {
            let shared = self.shared.clone();
            let shutdown = shutdown.clone();
            pollers.spawn(async move {
                // A poller that panics (a bug outside any one request, which the engine catches)
                // starts again: its messages come back after the visibility timeout, and the pool
                // keeps its size.
                while !shutdown.is_cancelled() {
                    let polled = AssertUnwindSafe(shared.poll(shutdown.clone()))
                        .catch_unwind()
                        .instrument(tracing::info_span!("poller", worker.id = id))
                        .await;
                    if polled.is_ok() {
                        break;
                    }
                    tracing::error!(worker.id = id, "a poller panicked; it starts again");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            });
        }
        {
            let shared = self.shared.clone();
            let shutdown = shutdown.clone();
            pollers.spawn(async move { shared.report_now_and_then(shutdown).await });
        }
        // Background jobs, each every interval with jitter (0 turns one off).
        let config = &self.shared.config;
        if config.sweep_interval_seconds > 0 {
            let shared = self.shared.clone();
            pollers.spawn(now_and_then(
                config.sweep_interval_seconds,
                shutdown.clone(),
                async move || shared.sweep().await,
            ));
        }
        if config.overdue_interval_seconds > 0 {
            let shared = self.shared.clone();
            pollers.spawn(now_and_then(
                config.overdue_interval_seconds,
                shutdown.clone(),
                async move || shared.overdue().await,
            ));
        }
        if config.due_soon_interval_seconds > 0 {
            let shared = self.shared.clone();
            pollers.spawn(now_and_then(
                config.due_soon_interval_seconds,
                shutdown.clone(),
                async move || shared.due_soon().await,
            ));
        }
        if config.notify_interval_seconds > 0 {
            let shared = self.shared.clone();
            pollers.spawn(now_and_then(
                config.notify_interval_seconds,
                shutdown.clone(),
                async move || shared.notify().await,
            ));
        }
        if config.expire_payments_interval_seconds > 0 {
            let shared = self.shared.clone();
            pollers.spawn(now_and_then(
                config.expire_payments_interval_seconds,
                shutdown.clone(),
                async move || shared.expire_payments().await,
            ));
        }
        if config.reconcile_interval_seconds > 0 {
            let shared = self.shared.clone();
            pollers.spawn(now_and_then(
                config.reconcile_interval_seconds,
                shutdown.clone(),
                async move || shared.reconcile().await,
            ));
        }
        if config.settle_interval_seconds > 0 {
            let shared = self.shared.clone();
            pollers.spawn(now_and_then(
                config.settle_interval_seconds,
                shutdown.clone(),
                async move || shared.settle().await,
            ));
        }
        if config.events_interval_seconds > 0 {
            let shared = self.shared.clone();
            pollers.spawn(now_and_then(
                config.events_interval_seconds,
                shutdown.clone(),
                async move || shared.events().await,
            ));
        }
        tracing::info!(workers, queue = %self.shared.queue_url, "worker pool started");
        while let Some(joined) = pollers.join_next().await {
            if let Err(e) = joined {
                tracing::error!(error = %e, "a poller panicked");
            }
        }
        let stats = &self.shared.stats;
        tracing::info!(
            received = PoolStats::get(&stats.received),
            replied = PoolStats::get(&stats.replied),
            retried = PoolStats::get(&stats.retried),
            "worker pool drained"
        );
        self.shared
            .engine
            .services
            .metrics
            .snapshot()
            .log("engine metrics");
    }
}

impl Shared {
    async fn poll(&self, shutdown: CancellationToken) {
        let mut failures = 0u32;
        while !shutdown.is_cancelled() {
            let received = receive(&self.client, &self.queue_url, &self.config)
                .send()
                .await;
            let messages = match received {
                Ok(out) => {
                    failures = 0;
                    out.messages.unwrap_or_default()
                }
                Err(e) => {
                    failures += 1;
                    self.stats.receive_errors.fetch_add(1, Ordering::Relaxed);
                    let pause = backoff(failures);
                    tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), retry_in_ms = pause.as_millis() as u64, "receive failed");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = shutdown.cancelled() => {}
                    }
                    continue;
                }
            };
            self.stats
                .received
                .fetch_add(messages.len() as u64, Ordering::Relaxed);
            if !messages.is_empty() {
                qbill_core::metrics::received(messages.len());
                if let Some(age) = oldest_age(&messages) {
                    qbill_core::metrics::oldest_received(age);
                }
            }
            // The messages of a receive are handled as one batch (the engine settles its payments
            // together) and deleted together.
            let done = self.process(messages).await;
            self.delete(done).await;
        }
    }

    /// Logs the engine's metrics every [`METRICS_EVERY`] when they changed.
    async fn report_now_and_then(&self, shutdown: CancellationToken) {
        let mut last = self.engine.services.metrics.snapshot();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(METRICS_EVERY) => {}
                _ = shutdown.cancelled() => return,
            }
            let now = self.engine.services.metrics.snapshot();
            if now != last {
                now.log("engine metrics");
                last = now;
            }
        }
    }

    /// Sweeps idle reply queues for at most half the sweep interval, taking up where the last run
    /// stopped.
    async fn sweep(&self) {
        let settings =
            crate::sweeper::Settings::new(Duration::from_secs(self.config.reply_idle_seconds));
        let mut left = self.sweep_left.lock().await;
        let tasks = match std::mem::take(&mut *left) {
            tasks if tasks.is_empty() => crate::sweeper::shards(&self.config.reply_queue_prefix),
            tasks => tasks,
        };
        let deadline = tokio::time::Instant::now()
            + Duration::from_secs(self.config.sweep_interval_seconds / 2).max(SWEEP_AT_LEAST);
        let (report, rest) = crate::sweeper::sweep(
            &self.client,
            &self.engine.services.cache,
            settings,
            tasks,
            Some(deadline),
        )
        .await;
        tracing::info!(
            examined = report.examined,
            deleted = report.deleted,
            errors = report.errors,
            tasks_left = rest.len(),
            "reply queues swept"
        );
        *left = rest;
    }

    /// Runs the overdue job once (two pools at once are safe, only wasteful).
    async fn overdue(&self) {
        if let Err(e) = qbill_core::jobs::overdue::run(&self.engine.services.store).await {
            tracing::warn!(
                error = format!("{e:#}"),
                "the overdue job failed; it runs again at the next interval"
            );
        }
    }

    /// Runs the due-soon job once (two pools at once record nothing twice).
    async fn due_soon(&self) {
        if let Err(e) = qbill_core::jobs::due_soon::run(&self.engine.services.store).await {
            tracing::warn!(
                error = format!("{e:#}"),
                "the due-soon job failed; it runs again at the next interval"
            );
        }
    }

    /// Drains the notification outbox once (two pools at once never send a mail twice).
    async fn notify(&self) {
        if let Err(e) = qbill_core::jobs::notify::run(&self.engine.services).await {
            tracing::warn!(
                error = format!("{e:#}"),
                "the notify job failed; it runs again at the next interval"
            );
        }
    }

    /// Expires the card payments that waited too long (two pools at once change each payment
    /// once).
    async fn expire_payments(&self) {
        let after = qbill_core::jobs::expire_payments::AFTER;
        if let Err(e) = qbill_core::jobs::expire_payments::run(&self.engine.services, after).await {
            tracing::warn!(
                error = format!("{e:#}"),
                "the payments' expiry job failed; it runs again at the next interval"
            );
        }
    }

    /// Reconciles the processor's intents of the window with the books (two pools at once
    /// settle each payment once).
    async fn reconcile(&self) {
        let since = chrono::Utc::now() - qbill_core::jobs::reconcile::WINDOW;
        if let Err(e) = qbill_core::jobs::reconcile::run(&self.engine.services, since).await {
            tracing::warn!(
                error = format!("{e:#}"),
                "the reconciliation failed; it runs again at the next interval"
            );
        }
    }

    /// Closes the days that are over into the providers' settlements (two pools at once close
    /// each day once).
    async fn settle(&self) {
        if let Err(e) = qbill_core::jobs::settle::run(&self.engine.services, None).await {
            tracing::warn!(
                error = format!("{e:#}"),
                "closing the settlements failed; it runs again at the next interval"
            );
        }
    }

    /// Delivers the providers' webhooks and puts events on the bus (two pools at once send each
    /// delivery once at a time, and move the bus's cursor one at a time).
    async fn events(&self) {
        if let Err(e) = qbill_core::jobs::events::run(&self.engine.services).await {
            tracing::warn!(
                error = format!("{e:#}"),
                "the events job failed; it runs again at the next interval"
            );
        }
    }

    /// Handles the messages of one receive; returns the receipt handles of those done, which may
    /// be deleted.
    async fn process(&self, messages: Vec<Message>) -> Vec<String> {
        let mut receipts = Vec::with_capacity(messages.len());
        let mut inbound = Vec::with_capacity(messages.len());
        for message in messages {
            let Some(receipt) = message.receipt_handle else {
                continue;
            };
            let receives = message
                .attributes
                .as_ref()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|count| count.parse().ok());
            receipts.push((receipt, receives));
            inbound.push(InboundMessage {
                message_id: message.message_id.unwrap_or_default(),
                body: message.body.unwrap_or_default(),
                attributes: message
                    .message_attributes
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|(name, value)| Some((name, value.string_value?)))
                    .collect(),
            });
        }
        let dispositions = answer_batch(&self.engine, &self.replies, &inbound).await;
        receipts
            .into_iter()
            .zip(dispositions)
            .filter_map(|((receipt, receives), disposition)| {
                disposition.record(receives, self.max_receives);
                match disposition {
                    Disposition::Replied => self.stats.replied.fetch_add(1, Ordering::Relaxed),
                    Disposition::Dropped => self.stats.dropped.fetch_add(1, Ordering::Relaxed),
                    Disposition::Retry => {
                        self.stats.retried.fetch_add(1, Ordering::Relaxed);
                        return None;
                    }
                };
                Some(receipt)
            })
            .collect()
    }

    async fn delete(&self, receipts: Vec<String>) {
        if receipts.is_empty() {
            return;
        }
        let count = receipts.len() as u64;
        // A message that is not deleted comes back and is answered again from the idempotency
        // record: a failed delete costs a repeat, never a lost or doubled payment.
        match delete_batch(&self.client, &self.queue_url, receipts)
            .send()
            .await
        {
            Ok(out) => {
                let failed = out.failed.len() as u64;
                self.stats
                    .deleted
                    .fetch_add(count - failed, Ordering::Relaxed);
                for f in out.failed {
                    tracing::warn!(code = %f.code, message = ?f.message, "delete failed; the message will come back");
                }
            }
            Err(e) => {
                tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "delete failed; the messages will come back")
            }
        }
    }
}

/// The receive every poller makes: a long poll for a batch, with the message attributes and the
/// receive count.
pub fn receive(
    client: &Client,
    queue_url: &str,
    config: &SqsConfig,
) -> ReceiveMessageFluentBuilder {
    client
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(config.batch_size)
        .wait_time_seconds(config.poll_wait_seconds)
        .message_attribute_names("All")
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
}

/// How long the oldest of `messages` has waited since it was sent.
fn oldest_age(messages: &[Message]) -> Option<Duration> {
    let sent = messages
        .iter()
        .filter_map(|m| {
            m.attributes
                .as_ref()?
                .get(&MessageSystemAttributeName::SentTimestamp)?
                .parse::<u64>()
                .ok()
        })
        .min()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_millis() as u64;
    Some(Duration::from_millis(now.saturating_sub(sent)))
}

/// One call deleting the messages of `receipts` (at most a batch of them).
pub fn delete_batch(
    client: &Client,
    queue_url: &str,
    receipts: impl IntoIterator<Item = String>,
) -> DeleteMessageBatchFluentBuilder {
    let entries = receipts
        .into_iter()
        .enumerate()
        .filter_map(|(i, receipt)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(receipt)
                .build()
                .ok()
        })
        .collect();
    client
        .delete_message_batch()
        .queue_url(queue_url)
        .set_entries(Some(entries))
}

/// How long a starting pool keeps asking an SQS that does not answer for its request queue.
pub const STARTUP_PATIENCE: Duration = Duration::from_secs(60);

/// The request queue's URL, asked again with backoff while SQS does not answer.
async fn request_queue_url(client: &Client, queue: &str) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + STARTUP_PATIENCE;
    let mut failures = 0;
    loop {
        match crate::queue_url(client, queue).await {
            Err(e @ QueueUrlError::Unanswered { .. }) if tokio::time::Instant::now() < deadline => {
                failures += 1;
                let pause = backoff(failures);
                tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "asking again for the request queue");
                tokio::time::sleep(pause).await;
            }
            Err(e @ QueueUrlError::Unanswered { .. }) => anyhow::bail!(
                "{e} (for {} s, as the pool started)",
                STARTUP_PATIENCE.as_secs()
            ),
            answer => return Ok(answer?),
        }
    }
}

/// Runs `job` every `interval` seconds until `shutdown`, each wait drawn from half to one and a
/// half of it, so that pools started together do not run their jobs in step.
async fn now_and_then(interval: u64, shutdown: CancellationToken, mut job: impl AsyncFnMut()) {
    loop {
        let pause = Duration::from_secs(rand::random_range(interval / 2..=interval + interval / 2));
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.cancelled() => return,
        }
        job().await;
    }
}

/// Exponential backoff with full jitter: up to 200 ms, 400 ms, ... capped at 10 s.
fn backoff(failures: u32) -> Duration {
    let ceiling = 200u64.saturating_mul(1 << failures.min(6)).min(10_000);
    Duration::from_millis(rand::random_range(ceiling / 4..=ceiling))
}

/// What became of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Answered on the client's queue: done, delete it.
    Replied,
    /// Nobody to answer: done, delete it.
    Dropped,
    /// Failed transiently, or the reply could not be sent: leave it to come back.
    Retry,
}

impl Disposition {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Replied => "replied",
            Self::Dropped => "dropped",
            Self::Retry => "retry",
        }
    }

    /// Counts the message as done with; a retry at its `receives`-th receive, when the queue
    /// dead-letters after `max_receives`, also as a dead letter.
    pub fn record(self, receives: Option<u32>, max_receives: Option<u32>) {
        qbill_core::metrics::message_done(self.as_str());
        if self == Self::Retry
            && let (Some(receives), Some(max)) = (receives, max_receives)
            && receives >= max
        {
            qbill_core::metrics::dead_lettered();
        }
    }
}

/// The queue's redrive `maxReceiveCount`, if it has a redrive policy that can be read.
async fn max_receives(client: &Client, queue_url: &str) -> Option<u32> {
    let attributes = client
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::RedrivePolicy)
        .send()
        .await
        .ok()?
        .attributes?;
    let policy: serde_json::Value =
        serde_json::from_str(attributes.get(&QueueAttributeName::RedrivePolicy)?).ok()?;
    // SQS gives the count as a number or as a string, depending on how the policy was set.
    match &policy["maxReceiveCount"] {
        serde_json::Value::Number(n) => n.as_u64()?.try_into().ok(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Hands the messages of one receive to the engine, as a batch, and sends each reply as soon as it
/// is known: the whole life of a message between receiving and deleting, shared by the worker pool
/// and the Lambda handler. One disposition per message, in their order.
pub async fn answer_batch(
    engine: &Engine,
    replies: &ReplyQueues,
    inbound: &[InboundMessage],
) -> Vec<Disposition> {
    // Each reply goes out as soon as its message is handled, not when the whole batch is.
    engine
        .handle_batch_with(inbound, |i, outcome| {
            deliver(engine, replies, &inbound[i].message_id, outcome)
        })
        .await
}

/// Sends a message's reply, if it has one.
async fn deliver(
    engine: &Engine,
    replies: &ReplyQueues,
    id: &str,
    outcome: Result<Outcome, qbill_core::Transient>,
) -> Disposition {
    match outcome {
        Ok(Outcome::Reply {
            to,
            reply,
            body,
            create_queue,
        }) => {
            match replies
                .send(&engine.services.cache, to, body, create_queue)
                .await
            {
                Ok(Sent::Delivered) => Disposition::Replied,
                Ok(Sent::NoQueue) => {
                    engine.services.metrics.reply_without_queue();
                    tracing::info!(messaging.message.id = %id, "no reply queue, and the request may not create one: not answered");
                    Disposition::Dropped
                }
                Err(SendError::Failed(e)) => {
                    tracing::warn!(messaging.message.id = %id, error = format!("{e:#}"), "reply not sent; the message will be retried");
                    Disposition::Retry
                }
                // Sending it again would be refused again, until the request was dead-lettered and
                // its client never heard back: it hears that its answer could not be sent instead.
                Err(SendError::Refused(e)) => {
                    tracing::error!(messaging.message.id = %id, error = format!("{e:#}"), "SQS refused a reply; answering with an error instead");
                    let refusal = Reply::error(
                        reply.request_id,
                        reply.kind,
                        ErrorCode::Internal,
                        "the answer could not be sent on your reply queue; this is a bug, please report it",
                    );
                    match replies
                        .send(&engine.services.cache, to, refusal.to_json(), create_queue)
                        .await
                    {
                        Ok(Sent::Delivered) => Disposition::Replied,
                        Ok(Sent::NoQueue) => Disposition::Dropped,
                        Err(SendError::Failed(_)) => Disposition::Retry,
                        Err(SendError::Refused(e)) => {
                            tracing::error!(messaging.message.id = %id, error = format!("{e:#}"), "SQS refused the error reply too; the message is dropped");
                            Disposition::Dropped
                        }
                    }
                }
            }
        }
        Ok(Outcome::Drop) => Disposition::Dropped,
        // Logged by the engine.
        Err(_transient) => Disposition::Retry,
    }
}

#[cfg(test)]
mod tests {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::Disposition;

    #[test]
    fn a_retry_at_the_last_allowed_receive_counts_as_a_dead_letter() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            Disposition::Retry.record(Some(4), Some(5));
            Disposition::Retry.record(Some(5), Some(5));
            Disposition::Retry.record(None, Some(5));
            Disposition::Retry.record(Some(7), None);
            Disposition::Replied.record(Some(9), Some(5));
        });
        let counters: Vec<(String, Vec<String>, u64)> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter_map(|(key, _, _, value)| match value {
                DebugValue::Counter(n) => Some((
                    key.key().name().to_owned(),
                    key.key()
                        .labels()
                        .map(|l| format!("{}={}", l.key(), l.value()))
                        .collect(),
                    n,
                )),
                _ => None,
            })
            .collect();
        let count = |name: &str, label: Option<&str>| {
            counters
                .iter()
                .filter(|(n, labels, _)| {
                    n == name && label.is_none_or(|l| labels.iter().any(|x| x == l))
                })
                .map(|(_, _, v)| v)
                .sum::<u64>()
        };
        assert_eq!(
            count(qbill_core::metrics::DEAD_LETTERS, None),
            1,
            "{counters:?}"
        );
        assert_eq!(
            count(qbill_core::metrics::MESSAGES, Some("disposition=retry")),
            4
        );
        assert_eq!(
            count(qbill_core::metrics::MESSAGES, Some("disposition=replied")),
            1
        );
    }
}
