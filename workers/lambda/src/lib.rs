//! # qbill-lambda
//!
//! One package, three functions; `QBILL_FUNCTION` says which one a deployment runs:
//!
//! - **worker** (the default): the event source mapping hands it a batch from the shared request
//!   queue; the batch goes through the same engine as a receive of the worker pool's
//!   (`qbill_sqs::answer_batch`, which settles its payments together), and only the messages
//!   that failed transiently are reported back (`ReportBatchItemFailures`), so the rest of the
//!   batch is deleted and one bad message never holds up the others. Rejected input got its
//!   error reply and counts as done. EventBridge rules invoke it for the jobs:
//!   `{"qbill": "overdue"}` marks overdue bills and charges late fees, `{"qbill": "due-soon"}`
//!   records the due-soon notifications and `{"qbill": "notify"}` sends the outbox's mails;
//!   `{"qbill": "expire-payments"}` and `{"qbill": "reconcile"}` ask the payments processor;
//!   `{"qbill": "settle"}` closes the days that are over into the providers' settlements.
//!   `{"qbill": "events"}` delivers the providers' webhooks and puts events on the bus.
//! - **admin**: run by an operator only, from inside the VPC: `{"qbill": "migrate"}` applies the
//!   migrations and `{"qbill": "create-operator"}` creates the first operator from its generated
//!   secret, both as the database's master user, whose secret only this function can read.
//! - **sweeper**: the reply-queue sweep ([`Sweeper`]).
//!
//! Each asks for what it needs only: the worker never sees the master secret, the admin function
//! nothing but the database.
//!
//! [`logging`]: the logs as the function's logging configuration asks (format and level).

pub mod logging;

use std::time::{Duration, Instant};

use anyhow::Context;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use qbill_core::Engine;
use qbill_core::config::{DatabaseConfig, EngineConfig};
use qbill_core::envelope::InboundMessage;
use qbill_core::store;
use qbill_sqs::{Disposition, ReplyQueues, SqsConfig, answer_batch};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// Keys in Secrets Manager are reloaded this often, so a rotation reaches warm functions.
const KEY_RELOAD: Duration = Duration::from_secs(300);

/// Built once per execution environment and reused by every invocation.
pub struct Worker {
    engine: Engine,
    replies: ReplyQueues,
    keys_loaded: Mutex<Instant>,
    /// The request queue's redrive `maxReceiveCount` (`QBILL_MAX_RECEIVES`), for counting dead
    /// letters.
    max_receives: Option<u32>,
}

impl Worker {
    pub fn new(engine: Engine, replies: ReplyQueues) -> Self {
        Self {
            engine,
            replies,
            keys_loaded: Mutex::new(Instant::now()),
            max_receives: None,
        }
    }

    pub fn with_max_receives(mut self, max_receives: Option<u32>) -> Self {
        self.max_receives = max_receives;
        self
    }

    /// The worker as the function's environment configures it.
    pub async fn from_env() -> anyhow::Result<Self> {
        let config = EngineConfig::from_env()?;
        // Money moves through the processor on AWS: the ledger mode (payments settled without
        // one) is the benchmark's, never a deployment's.
        anyhow::ensure!(
            matches!(
                config.payments,
                qbill_core::config::PaymentsConfig::Stripe(_)
            ),
            "QBILL_PAYMENTS=ledger is refused in the Lambda: payments move through the processor (stripe)"
        );
        let sqs = SqsConfig::from_env()?;
        let engine = Engine::from_config(&config).await?;
        let replies = ReplyQueues::new(qbill_sqs::client().await, &sqs);
        let max_receives = FunctionSettings::from_env()?.max_receives;
        Ok(
            Self::new(engine, replies)
                .with_max_receives((max_receives > 0).then_some(max_receives)),
        )
    }

    /// One invocation: an SQS batch, or an operator's command.
    pub async fn handle(&self, event: Value) -> anyhow::Result<Value> {
        if event.get("Records").is_some() {
            let batch: SqsEvent = serde_json::from_value(event).context("an SQS event")?;
            return Ok(serde_json::to_value(self.batch(batch).await)?);
        }
        match event.get("qbill").and_then(Value::as_str) {
            Some("overdue") => {
                let report = qbill_core::jobs::overdue::run(&self.engine.services.store).await?;
                Ok(serde_json::to_value(report)?)
            }
            Some("due-soon") => {
                let report = qbill_core::jobs::due_soon::run(&self.engine.services.store).await?;
                Ok(serde_json::to_value(report)?)
            }
            Some("notify") => {
                let report = qbill_core::jobs::notify::run(&self.engine.services).await?;
                Ok(serde_json::to_value(report)?)
            }
            Some("expire-payments") => {
                let after = qbill_core::jobs::expire_payments::AFTER;
                let report =
                    qbill_core::jobs::expire_payments::run(&self.engine.services, after).await?;
                Ok(serde_json::to_value(report)?)
            }
            Some("reconcile") => {
                let since = chrono::Utc::now() - qbill_core::jobs::reconcile::WINDOW;
                let report = qbill_core::jobs::reconcile::run(&self.engine.services, since).await?;
                Ok(serde_json::to_value(report)?)
            }
            Some("settle") => {
                let report = qbill_core::jobs::settle::run(&self.engine.services, None).await?;
                Ok(serde_json::to_value(report)?)
            }
            Some("events") => {
                let report = qbill_core::jobs::events::run(&self.engine.services).await?;
                Ok(serde_json::to_value(report)?)
            }
            Some(command @ ("migrate" | "create-operator")) => anyhow::bail!(
                "{command:?} is the admin function's (QBILL_FUNCTION=admin), not the worker's"
            ),
            Some("sweep") => {
                anyhow::bail!(
                    "\"sweep\" is the sweeper function's (QBILL_FUNCTION=sweeper), not the worker's"
                )
            }
            _ => anyhow::bail!(
                "unknown event: the worker takes an SQS batch or {{\"qbill\": \"overdue\" | \"due-soon\" | \"notify\" | \"expire-payments\" | \"reconcile\" | \"settle\" | \"events\"}}"
            ),
        }
    }

    /// Handles the messages of the batch as one batch, as a poller of the pool does (the engine
    /// settles its payments together; the database pool bounds the transactions, the password
    /// slots the checks); returns the ids of those to be delivered again.
    pub async fn batch(&self, event: SqsEvent) -> SqsBatchResponse {
        self.reload_keys_when_due().await;
        let before = self.engine.services.metrics.snapshot();
        let mut response = SqsBatchResponse::default();
        qbill_core::metrics::received(event.records.len());
        let mut receives = Vec::with_capacity(event.records.len());
        let inbound: Vec<InboundMessage> = event
            .records
            .into_iter()
            .map(|record| {
                receives.push(
                    record
                        .attributes
                        .get("ApproximateReceiveCount")
                        .and_then(|count| count.parse().ok()),
                );
                InboundMessage {
                    message_id: record.message_id.unwrap_or_default(),
                    body: record.body.unwrap_or_default(),
                    attributes: record
                        .message_attributes
                        .into_iter()
                        .filter_map(|(name, value)| Some((name, value.string_value?)))
                        .collect(),
                }
            })
            .collect();
        let dispositions = answer_batch(&self.engine, &self.replies, &inbound).await;
        for ((message, receives), disposition) in
            inbound.into_iter().zip(receives).zip(dispositions)
        {
            disposition.record(receives, self.max_receives);
            if disposition == Disposition::Retry {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = message.message_id;
                response.batch_item_failures.push(failure);
            }
        }
        let metrics = self.engine.services.metrics.snapshot();
        if metrics.password_checks > before.password_checks
            || metrics.replies_too_large > before.replies_too_large
        {
            metrics.log("engine metrics");
        }
        response
    }

    async fn reload_keys_when_due(&self) {
        let mut loaded = self.keys_loaded.lock().await;
        if loaded.elapsed() < KEY_RELOAD {
            return;
        }
        match self.engine.services.tokens.reload().await {
            Ok(()) => *loaded = Instant::now(),
            // The keys in hand still work; try again at the next invocation.
            Err(e) => tracing::warn!(error = format!("{e:#}"), "reloading the JWT keys failed"),
        }
    }
}

/// The admin function: migrations and the first operator, as the database's master user.
pub struct Admin {
    database: DatabaseConfig,
}

impl Admin {
    pub fn new(database: DatabaseConfig) -> Self {
        Self { database }
    }

    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self::new(DatabaseConfig::from_env()?))
    }

    /// One invocation: an operator's command.
    pub async fn handle(&self, event: Value) -> anyhow::Result<Value> {
        match event.get("qbill").and_then(Value::as_str) {
            Some("migrate") => {
                let applied = store::migrate_deployment(&self.database).await?;
                tracing::info!(migrations = ?applied, "migrations applied");
                Ok(json!({ "applied": applied }))
            }
            Some("create-operator") => {
                let arn =
                    qbill_core::settings::given(&FunctionSettings::from_env()?.operator_secret_arn)
                        .context("QBILL_OPERATOR_SECRET_ARN is not set")?;
                self.create_operator(&arn).await
            }
            _ => anyhow::bail!(
                "unknown event: the admin function takes {{\"qbill\": \"migrate\" | \"create-operator\"}}"
            ),
        }
    }

    /// Creates the first operator from the secret `arn` (`QBILL_OPERATOR_SECRET_ARN` on AWS;
    /// JSON `{"username", "password"}`, generated by Terraform), unless that user exists.
    pub async fn create_operator(&self, arn: &str) -> anyhow::Result<Value> {
        let secret = qbill_core::managed::secret(arn, None)
            .await?
            .context("the operator secret has no value")?;
        #[derive(serde::Deserialize)]
        struct Operator {
            username: String,
            password: String,
        }
        let operator: Operator = serde_json::from_str(secret.value.expose_secret())
            .context("the operator secret must be JSON {\"username\", \"password\"}")?;
        let pool = store::connect(&self.database.for_migrations()?, 1).await?;
        let created = qbill_core::admin::create_user(
            &pool,
            &operator.username,
            operator.password.into(),
            qbill_core::types::Role::Operator,
            None,
        )
        .await?;
        Ok(json!({ "username": operator.username, "user": created }))
    }
}

/// The sweeper function: the reply-queue sweep, cut into tasks that travel on the sweep queue.
///
/// The schedule's `{"qbill": "sweep"}` puts one task per shard ([`qbill_sqs::sweeper::shards`])
/// on the sweep queue (`QBILL_SWEEP_QUEUE`); the queue drives this function with them, several at
/// once. Each task is swept until it is done or the invocation's time is nearly out; then what is
/// left goes back on the sweep queue as a new task. A task that fails comes back by the queue's
/// redrive and lands in its dead-letter queue after a few tries, which an alarm watches.
pub struct Sweeper {
    client: aws_sdk_sqs::Client,
    stamps: qbill_core::cache::Cache,
    settings: qbill_sqs::sweeper::Settings,
    reply_queue_prefix: String,
    sweep_queue: String,
}

/// What a task on the sweep queue reads: `{"qbill": "sweep-shard", "prefix", "next_token"}`.
#[derive(serde::Serialize, serde::Deserialize)]
struct SweepTask {
    qbill: String,
    #[serde(flatten)]
    task: qbill_sqs::sweeper::Task,
}

/// Time kept back from the invocation's deadline for sending what is left.
const SWEEP_MARGIN: Duration = Duration::from_secs(15);

impl Sweeper {
    pub fn new(
        client: aws_sdk_sqs::Client,
        stamps: qbill_core::cache::Cache,
        config: &SqsConfig,
        sweep_queue: String,
    ) -> Self {
        Self {
            client,
            stamps,
            settings: qbill_sqs::sweeper::Settings::new(Duration::from_secs(
                config.reply_idle_seconds,
            )),
            reply_queue_prefix: config.reply_queue_prefix.clone(),
            sweep_queue,
        }
    }

    pub async fn from_env() -> anyhow::Result<Self> {
        let config = SqsConfig::from_env()?;
        let client = qbill_sqs::client().await;
        let queue = qbill_core::settings::given(&FunctionSettings::from_env()?.sweep_queue)
            .context("QBILL_SWEEP_QUEUE is not set")?;
        let sweep_queue = qbill_sqs::queue_url(&client, &queue).await?;
        let stamps = qbill_core::cache::Cache::from_env().await?;
        Ok(Self::new(client, stamps, &config, sweep_queue))
    }

    /// Pages of ListQueues per task (tests make them small to see a task resumed).
    pub fn with_page_size(mut self, page_size: i32) -> Self {
        self.settings.page_size = page_size;
        self
    }

    /// One invocation: the schedule's start, or a batch of tasks from the sweep queue, to be done
    /// by `deadline`.
    pub async fn handle(&self, event: Value, deadline: Instant) -> anyhow::Result<Value> {
        if event.get("Records").is_some() {
            let batch: SqsEvent = serde_json::from_value(event).context("an SQS event")?;
            return Ok(serde_json::to_value(self.batch(batch, deadline).await)?);
        }
        match event.get("qbill").and_then(Value::as_str) {
            Some("sweep") => {
                let tasks = qbill_sqs::sweeper::shards(&self.reply_queue_prefix);
                let count = tasks.len();
                self.enqueue(tasks).await?;
                tracing::info!(tasks = count, "reply-queue sweep started");
                Ok(json!({ "tasks": count }))
            }
            _ => anyhow::bail!(
                "unknown event: the sweeper takes {{\"qbill\": \"sweep\"}} or a batch of its sweep queue"
            ),
        }
    }

    async fn batch(&self, event: SqsEvent, deadline: Instant) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        let until = deadline.checked_sub(SWEEP_MARGIN).unwrap_or(deadline);
        for record in event.records {
            let message_id = record.message_id.unwrap_or_default();
            let body = record.body.unwrap_or_default();
            let task = match serde_json::from_str::<SweepTask>(&body) {
                Ok(SweepTask { qbill, task }) if qbill == "sweep-shard" => task,
                // Not a task: nothing will ever make it one, so it is not tried again.
                _ => {
                    tracing::error!(messaging.message.id = %message_id, "not a sweep task; dropped");
                    continue;
                }
            };
            let (report, left) = qbill_sqs::sweeper::sweep_task(
                &self.client,
                &self.stamps,
                self.settings,
                task,
                Some(until.into()),
            )
            .await;
            tracing::info!(
                examined = report.examined,
                deleted = report.deleted,
                errors = report.errors,
                finished = left.is_none(),
                "sweep task done"
            );
            if let Some(left) = left
                && let Err(e) = self.enqueue(vec![left]).await
            {
                // The task comes back whole; sweeping its pages again is harmless.
                tracing::warn!(
                    error = format!("{e:#}"),
                    "cannot pass the rest on; the task will be retried"
                );
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = message_id;
                response.batch_item_failures.push(failure);
            }
        }
        response
    }

    /// Puts `tasks` on the sweep queue, ten per call.
    async fn enqueue(&self, tasks: Vec<qbill_sqs::sweeper::Task>) -> anyhow::Result<()> {
        for chunk in tasks.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, task)| {
                    let body = serde_json::to_string(&SweepTask {
                        qbill: "sweep-shard".into(),
                        task: task.clone(),
                    })?;
                    Ok(aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .build()?)
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let sent = self
                .client
                .send_message_batch()
                .queue_url(&self.sweep_queue)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("{}", aws_sdk_sqs::error::DisplayErrorContext(e)))?;
            anyhow::ensure!(
                sent.failed.is_empty(),
                "SQS refused {} sweep task(s)",
                sent.failed.len()
            );
        }
        Ok(())
    }
}

/// The function's own settings, read from its environment as `qbill work` reads its flags and
/// variables (`qbill_core::settings`); the engine's and the queues' are the pool's own structs,
/// read the same way.
#[derive(clap::Args, Debug, Clone)]
pub struct FunctionSettings {
    /// Which function this is.
    #[arg(long, env = "QBILL_FUNCTION", default_value = "worker", value_parser = ["worker", "admin", "sweeper"])]
    pub function: String,
    /// The worker: the request queue's `maxReceiveCount`, so that a retry at that receive is
    /// counted as a dead letter (0: not counted).
    #[arg(long, env = "QBILL_MAX_RECEIVES", default_value_t = 0)]
    pub max_receives: u32,
    /// The admin function: the first operator's secret (JSON `username`, `password`).
    #[arg(long, env = "QBILL_OPERATOR_SECRET_ARN")]
    pub operator_secret_arn: Option<String>,
    /// The sweeper: its own queue, where a sweep too long for one invocation is resumed.
    #[arg(long, env = "QBILL_SWEEP_QUEUE")]
    pub sweep_queue: Option<String>,
    /// The CloudWatch namespace of the embedded metrics.
    #[arg(long, env = "QBILL_METRICS_NAMESPACE", default_value = "qbill")]
    pub metrics_namespace: String,
    /// A tracing filter that wins over AWS_LAMBDA_LOG_LEVEL ([`logging`]).
    #[arg(long, env = "QBILL_LOG")]
    pub log: Option<String>,
}

impl FunctionSettings {
    pub fn from_env() -> anyhow::Result<Self> {
        qbill_core::settings::from_env()
    }
}

/// The function this deployment runs, by `QBILL_FUNCTION`.
pub enum Function {
    Worker(Box<Worker>),
    Admin(Admin),
    Sweeper(Box<Sweeper>),
}

impl Function {
    /// `worker` (the default), `admin` or `sweeper`.
    pub fn name_from_env() -> anyhow::Result<String> {
        Ok(FunctionSettings::from_env()?.function)
    }

    pub async fn from_env() -> anyhow::Result<Self> {
        Ok(match Self::name_from_env()?.as_str() {
            "admin" => Self::Admin(Admin::from_env()?),
            "sweeper" => Self::Sweeper(Box::new(Sweeper::from_env().await?)),
            _ => Self::Worker(Box::new(Worker::from_env().await?)),
        })
    }

    pub async fn handle(&self, event: Value, deadline: Instant) -> anyhow::Result<Value> {
        match self {
            Self::Worker(worker) => worker.handle(event).await,
            Self::Admin(admin) => admin.handle(event).await,
            Self::Sweeper(sweeper) => sweeper.handle(event, deadline).await,
        }
    }
}
