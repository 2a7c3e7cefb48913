//! # qbill-lambda
//!
//! The Lambda worker: the event source mapping hands it a batch from the shared request queue;
//! each message goes through the same engine as the worker pool's (`qbill_sqs::answer`), and
//! only the messages that failed transiently are reported back (`ReportBatchItemFailures`), so
//! the rest of the batch is deleted and one bad message never holds up the others. Rejected input
//! got its error reply and counts as done.
//!
//! The same function runs the migrations from inside the VPC when invoked with
//! `{"qbill": "migrate"}`, creates the first operator from its generated secret with
//! `{"qbill": "create-operator"}`, and runs the scheduled jobs: `{"qbill": "sweep"}` sweeps idle
//! reply queues, `{"qbill": "overdue"}` marks overdue bills and charges late fees,
//! `{"qbill": "due-soon"}` records the due-soon notifications and `{"qbill": "notify"}` sends the
//! outbox's mails (EventBridge rules send them all; the last every minute).

use std::time::{Duration, Instant};

use anyhow::Context;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use qbill_core::config::{DatabaseConfig, EngineConfig};
use qbill_core::envelope::InboundMessage;
use qbill_core::{Engine, store};
use qbill_sqs::{Disposition, ReplyQueues, SqsConfig, answer};
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
}

impl Worker {
    pub fn new(engine: Engine, replies: ReplyQueues) -> Self {
        Self {
            engine,
            replies,
            keys_loaded: Mutex::new(Instant::now()),
        }
    }

    /// The worker as the function's environment configures it.
    pub async fn from_env() -> anyhow::Result<Self> {
        let config = EngineConfig::from_env()?;
        let sqs = SqsConfig::from_env()?;
        let engine = Engine::from_config(&config).await?;
        let replies = ReplyQueues::new(
            qbill_sqs::client().await,
            &sqs.reply_queue_prefix,
            sqs.reply_retention_seconds,
        );
        Ok(Self::new(engine, replies))
    }

    /// One invocation: an SQS batch, or an operator's command.
    pub async fn handle(&self, event: Value) -> anyhow::Result<Value> {
        if event.get("Records").is_some() {
            let batch: SqsEvent = serde_json::from_value(event).context("an SQS event")?;
            return Ok(serde_json::to_value(self.batch(batch).await)?);
        }
        match event.get("qbill").and_then(Value::as_str) {
            Some("migrate") => {
                let applied = store::migrate_deployment(&DatabaseConfig::from_env()?).await?;
                tracing::info!(migrations = ?applied, "migrations applied");
                Ok(json!({ "applied": applied }))
            }
            Some("sweep") => {
                let config = SqsConfig::from_env()?;
                let idle = std::time::Duration::from_secs(config.reply_idle_seconds);
                let report = qbill_sqs::sweeper::sweep(
                    &qbill_sqs::client().await,
                    &config.reply_queue_prefix,
                    idle,
                )
                .await?;
                Ok(json!({ "examined": report.examined, "deleted": report.deleted }))
            }
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
            Some("create-operator") => {
                let arn = std::env::var("QBILL_OPERATOR_SECRET_ARN")
                    .context("QBILL_OPERATOR_SECRET_ARN is not set")?;
                self.create_operator(&arn).await
            }
            _ => anyhow::bail!(
                "unknown event: expected an SQS batch or {{\"qbill\": \"migrate\" | \"create-operator\" | \"sweep\" | \"overdue\" | \"due-soon\" | \"notify\"}}"
            ),
        }
    }

    /// Handles every message of the batch, together (as a poller of the pool does: the database
    /// pool bounds the transactions, the password slots the checks); returns the ids of those to
    /// be delivered again.
    pub async fn batch(&self, event: SqsEvent) -> SqsBatchResponse {
        self.reload_keys_when_due().await;
        let before = self.engine.services.metrics.snapshot();
        let mut response = SqsBatchResponse::default();
        let handled = event.records.into_iter().map(|record| async move {
            let message_id = record.message_id.unwrap_or_default();
            let inbound = InboundMessage {
                message_id: message_id.clone(),
                body: record.body.unwrap_or_default(),
                attributes: record
                    .message_attributes
                    .into_iter()
                    .filter_map(|(name, value)| Some((name, value.string_value?)))
                    .collect(),
            };
            let disposition = answer(&self.engine, &self.replies, &inbound).await;
            (message_id, disposition)
        });
        for (message_id, disposition) in futures::future::join_all(handled).await {
            if disposition == Disposition::Retry {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = message_id;
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
        let created = qbill_core::admin::create_user(
            &self.engine.services.store,
            &operator.username,
            operator.password.into(),
            qbill_core::types::Role::Operator,
            None,
        )
        .await?;
        Ok(json!({ "username": operator.username, "user": created }))
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
