//! The engine: one inbound message in, one outcome out. Transports (the worker pool, the Lambda
//! handler) own receiving, replying and deleting; the engine owns everything in between.

use tracing::{Instrument, field::Empty};

use crate::cache::Cache;
use crate::config::EngineConfig;
use crate::envelope::{Envelope, InboundMessage};
use crate::error::HandlerError;
use crate::reply::{ErrorCode, Reply, Status};
use crate::services::Services;
use crate::token::Tokens;
use crate::types::QueueName;

/// Built once per process and shared by every worker.
pub struct Engine {
    pub services: Services,
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
        Ok(Self {
            services: Services::from_config(config).await?,
        })
    }

    /// An engine over these parts, checking at most `password_slots` passwords at once.
    pub fn new(
        store: deadpool_postgres::Pool,
        cache: Cache,
        tokens: Tokens,
        password_slots: usize,
    ) -> Self {
        Self {
            services: Services::new(store, cache, tokens, password_slots),
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
        let started = std::time::Instant::now();
        let answered = self
            .handle_in_span(message)
            .instrument(span.clone())
            .await?;
        let Some((to, reply)) = answered else {
            return Ok(Outcome::Drop);
        };
        let sealed = reply.seal();
        if let Some(bytes) = sealed.oversized {
            self.services.metrics.reply_too_large();
            span.in_scope(|| {
                tracing::error!(
                    reply.bytes = bytes,
                    "a reply too large to send was replaced by an internal error"
                );
            });
        }
        crate::metrics::replied(
            sealed.reply.kind.as_str(),
            sealed.reply.status == Status::Ok,
            started.elapsed(),
        );
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
                    rejection.kind.reply_kind(),
                    ErrorCode::InvalidRequest,
                    rejection.reason.0,
                );
                return Ok(Some((to, reply)));
            }
        };
        let Envelope { call, request } = envelope;
        let kind = request.kind();
        span.record("billing.kind", kind.as_str());
        let kind = kind.reply_kind();
        span.record(
            "billing.request_id",
            tracing::field::display(call.request_id),
        );
        if let Some(apartment) = request.apartment() {
            span.record("billing.apartment_id", apartment.0);
        }
        let reply = match request.run(&self.services, &call).await {
            Ok(data) => {
                span.record("billing.outcome", "ok");
                tracing::info!("handled");
                Reply::ok(call.request_id, kind, data)
            }
            Err(HandlerError::WrongQueue { token_queue }) => {
                span.record("billing.outcome", "rejected");
                tracing::warn!(
                    auth.refused = "token used from another reply queue",
                    "rejected"
                );
                let reply = Reply::error(
                    Some(call.request_id),
                    kind,
                    ErrorCode::Unauthorized,
                    "your token was presented from another reply queue; the request was refused",
                );
                return Ok(Some((token_queue, reply)));
            }
            Err(HandlerError::Rejected { code, message }) => {
                span.record("billing.outcome", "rejected");
                tracing::info!(error.code = ?code, error.message = %message, "rejected");
                Reply::error(Some(call.request_id), kind, code, message)
            }
            Err(HandlerError::Internal(e)) => {
                span.record("billing.outcome", "internal");
                tracing::error!(error = format!("{e:#}"), "internal error");
                Reply::error(
                    Some(call.request_id),
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
        Ok(Some((call.reply_to, reply)))
    }
}
