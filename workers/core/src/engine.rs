//! The engine: one inbound message in, one outcome out. Transports (the worker pool, the Lambda
//! handler) own receiving, replying and deleting; the engine owns everything in between.

use std::sync::Arc;

use anyhow::Context;
use deadpool_postgres::Pool;
use tracing::{Instrument, field::Empty};

use crate::cache::Cache;
use crate::config::EngineConfig;
use crate::envelope::{Envelope, InboundMessage};
use crate::handlers::{self, HandlerError};
use crate::metrics::Metrics;
use crate::password::Passwords;
use crate::reply::{ErrorCode, Reply};
use crate::token::Tokens;
use crate::types::QueueName;
use crate::{managed, store};

/// Built once per process and shared by every worker.
pub struct Engine {
    pub store: Pool,
    pub cache: Cache,
    pub tokens: Tokens,
    /// Password checks, a bounded number at once.
    pub passwords: Passwords,
    pub metrics: Arc<Metrics>,
}

/// What the transport does with the message once the engine is done with it.
#[derive(Debug)]
pub enum Outcome {
    /// Send `body` (the JSON of `reply`, small enough for a message) to the client's queue, then
    /// delete the message.
    Reply {
        to: QueueName,
        reply: Reply,
        body: String,
    },
    /// Nobody can be answered (no readable reply queue): delete the message; it was logged.
    Drop,
}

/// A passing failure: leave the message on the queue to be received again (and, after enough
/// receives, to land in the dead-letter queue).
#[derive(Debug, thiserror::Error)]
#[error("transient failure, the message will be retried")]
pub struct Transient(#[source] pub anyhow::Error);

impl Engine {
    /// Builds the engine once per process: the pool, the cache and the token keys, fetching
    /// whatever secrets the configuration names.
    pub async fn from_config(config: &EngineConfig) -> anyhow::Result<Self> {
        let redis_url = match (&config.redis_url, &config.redis_auth_secret_arn) {
            (Some(url), Some(arn)) => {
                let token = managed::secret(arn, None)
                    .await?
                    .context("the Redis auth secret has no value")?;
                Some(managed::redis_url_with_token(url, &token.value)?)
            }
            (url, _) => url.clone(),
        };
        Ok(Self::new(
            store::connect(&config.database, config.database_pool_size).await?,
            Cache::new(
                redis_url.as_ref(),
                &config.cache_prefix,
                config.cache_ttl,
                config.cache_timeout,
            )?,
            Tokens::from_config(config.jwt.clone()).await?,
            config.password_slots,
        ))
    }

    /// An engine over these services, checking at most `password_slots` passwords at once.
    pub fn new(store: Pool, cache: Cache, tokens: Tokens, password_slots: usize) -> Self {
        let metrics = Arc::new(Metrics::default());
        Self {
            store,
            cache,
            tokens,
            passwords: Passwords::new(password_slots, metrics.clone()),
            metrics,
        }
    }

    /// Handles one message. Logs once, here, with the outcome.
    pub async fn handle(&self, message: &InboundMessage) -> Result<Outcome, Transient> {
        let span = tracing::info_span!(
            "handle",
            messaging.message.id = %message.message_id,
            billing.kind = Empty,
            billing.request_id = Empty,
            billing.apartment_id = Empty,
            billing.outcome = Empty,
        );
        let answered = self
            .handle_in_span(message)
            .instrument(span.clone())
            .await?;
        let Some((to, reply)) = answered else {
            return Ok(Outcome::Drop);
        };
        let sealed = reply.seal();
        if let Some(bytes) = sealed.oversized {
            self.metrics.reply_too_large();
            span.in_scope(|| {
                tracing::error!(
                    reply.bytes = bytes,
                    "a reply too large to send was replaced by an internal error"
                );
            });
        }
        Ok(Outcome::Reply {
            to,
            reply: sealed.reply,
            body: sealed.body,
        })
    }

    /// The reply and where it goes, or nothing when nobody can be answered.
    async fn handle_in_span(
        &self,
        message: &InboundMessage,
    ) -> Result<Option<(QueueName, Reply)>, Transient> {
        let span = tracing::Span::current();
        let envelope = match Envelope::parse(message) {
            Ok(envelope) => envelope,
            Err(rejection) => {
                span.record("billing.kind", rejection.kind.as_str());
                span.record("billing.outcome", "invalid");
                let Some(to) = rejection.reply_to else {
                    tracing::warn!(reason = %rejection.reason, "unanswerable message dropped");
                    return Ok(None);
                };
                tracing::info!(reason = %rejection.reason, "invalid request");
                let reply = Reply::error(
                    rejection.request_id,
                    rejection.kind,
                    ErrorCode::InvalidRequest,
                    rejection.reason.0,
                );
                return Ok(Some((to, reply)));
            }
        };
        let kind = envelope.command.kind();
        span.record("billing.kind", kind.as_str());
        span.record(
            "billing.request_id",
            tracing::field::display(envelope.request_id),
        );
        if let Some(apartment) = envelope.command.apartment() {
            span.record("billing.apartment_id", apartment.0);
        }
        let reply = match handlers::dispatch(self, &envelope).await {
            Ok(data) => {
                span.record("billing.outcome", "ok");
                tracing::info!("handled");
                Reply::ok(envelope.request_id, kind, data)
            }
            Err(HandlerError::WrongQueue { token_queue }) => {
                span.record("billing.outcome", "rejected");
                tracing::warn!(
                    auth.refused = "token used from another reply queue",
                    "rejected"
                );
                let reply = Reply::error(
                    Some(envelope.request_id),
                    kind,
                    ErrorCode::Unauthorized,
                    "your token was presented from another reply queue; the request was refused",
                );
                return Ok(Some((token_queue, reply)));
            }
            Err(HandlerError::Rejected { code, message }) => {
                span.record("billing.outcome", "rejected");
                tracing::info!(error.code = ?code, error.message = %message, "rejected");
                Reply::error(Some(envelope.request_id), kind, code, message)
            }
            Err(HandlerError::Internal(e)) => {
                span.record("billing.outcome", "internal");
                tracing::error!(error = format!("{e:#}"), "internal error");
                Reply::error(
                    Some(envelope.request_id),
                    kind,
                    ErrorCode::Internal,
                    "internal error; the request changed nothing",
                )
            }
            Err(HandlerError::Transient(e)) => {
                span.record("billing.outcome", "transient");
                tracing::warn!(
                    error = format!("{e:#}"),
                    "transient failure; leaving the message for a retry"
                );
                return Err(Transient(e));
            }
        };
        Ok(Some((envelope.reply_to, reply)))
    }
}
