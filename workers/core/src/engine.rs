//! The engine: the messages of one receive in, an outcome per message out. Transports (the worker
//! pool, the Lambda handler) own receiving, replying and deleting; the engine owns everything in
//! between.

use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use tracing::{Instrument, field::Empty};

use crate::cache::Cache;
use crate::call::Call;
use crate::config::EngineConfig;
use crate::envelope::{Envelope, InboundMessage};
use crate::error::{HandlerError, HandlerResult};
use crate::reply::{ErrorCode, Reply, Status};
use crate::routes::{Admission, Batched, Kind, Ran, Request, admit_to_batch};
use crate::services::Services;
use crate::token::{Session, Tokens};
use crate::types::QueueName;

/// Built once per process and shared by every worker.
pub struct Engine {
    pub services: Services,
}

/// What the transport does with the message once the engine is done with it.
#[derive(Debug)]
pub enum Outcome {
    /// Send `body` (the JSON of `reply`, small enough for a message) to the client's queue, then
    /// delete the message. Only with `create_queue` may the send create the queue if it does not
    /// exist; otherwise a missing queue means nobody to answer, and the message is done.
    Reply {
        to: QueueName,
        reply: Reply,
        body: String,
        create_queue: bool,
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

    /// Handles one message: a batch of one.
    pub async fn handle(&self, message: &InboundMessage) -> Result<Outcome, Transient> {
        self.handle_batch(std::slice::from_ref(message))
            .await
            .pop()
            .expect("one outcome per message")
    }

    /// Handles the messages of one receive together: one outcome each, in their order. Logs once
    /// per message, in its own span, with its outcome.
    ///
    /// The requests of a route that batches ([`crate::routes::Route::BATCHES`], the payments),
    /// with the engine's own tokens, are settled together, in one transaction per route with an
    /// outcome each ([`crate::routes::Route::run_batch`]); every other request runs on its own,
    /// all at once, each on its own connection from the pool (whose size bounds how many run at
    /// once).
    pub async fn handle_batch(
        &self,
        messages: &[InboundMessage],
    ) -> Vec<Result<Outcome, Transient>> {
        self.handle_batch_with(messages, |_, outcome| std::future::ready(outcome))
            .await
    }

    /// [`Engine::handle_batch`], handing each message's outcome to `deliver` (with the message's
    /// index) as soon as it is known: a read's reply does not wait for the batch's payments to
    /// commit, nor for a login's password check. Returns what `deliver` gave, in the messages'
    /// order.
    pub async fn handle_batch_with<D, Delivered>(
        &self,
        messages: &[InboundMessage],
        deliver: impl Fn(usize, Result<Outcome, Transient>) -> Delivered,
    ) -> Vec<D>
    where
        Delivered: Future<Output = D>,
    {
        let started = std::time::Instant::now();
        let spans: Vec<tracing::Span> = messages.iter().map(span).collect();
        let mut answered_already = Vec::new();
        let mut pending = Vec::new();
        for (i, (message, span)) in messages.iter().zip(&spans).enumerate() {
            match span.in_scope(|| self.read(message)) {
                Step::Done(answered) => answered_already.push((i, answered)),
                step => pending.push((i, step)),
            }
        }
        let (spans, deliver) = (&spans, &deliver);
        let finish = |i: usize, answered: Result<Option<Answer>, Transient>| async move {
            let outcome = answered.map(|answered| self.seal(&spans[i], started, answered));
            (i, deliver(i, outcome).await)
        };

        let now = answered_already
            .into_iter()
            .map(|(i, answered)| finish(i, Ok(answered)));
        // The batches, one per route, together; each request answered once its batch committed.
        let mut routes: Vec<Kind> = pending
            .iter()
            .filter_map(|(_, step)| match step {
                Step::Batch { request, .. } => Some(request.kind()),
                _ => None,
            })
            .collect();
        routes.sort_unstable();
        routes.dedup();
        let groups: Vec<(Kind, Vec<usize>, Vec<Batched<'_, Request>>)> = routes
            .into_iter()
            .map(|route| {
                let (members, batch) = pending
                    .iter()
                    .filter_map(|(i, step)| match step {
                        Step::Batch {
                            call,
                            request,
                            session,
                        } if request.kind() == route => Some((
                            *i,
                            Batched {
                                call,
                                request,
                                session: session.clone(),
                                epoch_checked: false,
                            },
                        )),
                        _ => None,
                    })
                    .unzip();
                (route, members, batch)
            })
            .collect();
        let settled =
            async {
                let runs = groups.iter().map(|(route, _, batch)| {
                    let span = tracing::info_span!(
                        "batch",
                        billing.kind = route.as_str(),
                        billing.batch = batch.len()
                    );
                    caught(Request::run_batch(&self.services, batch)).instrument(span)
                });
                let results = futures::future::join_all(runs).await;
                let answers =
                    groups
                        .iter()
                        .zip(results)
                        .flat_map(|((route, members, batch), results)| {
                            let results = results.unwrap_or_else(|e| {
                                batch
                                    .iter()
                                    .map(|_| Err(HandlerError::internal(anyhow::anyhow!("{e:#}"))))
                                    .collect()
                            });
                            members.iter().zip(batch).zip(results).map(
                                move |((&i, member), result)| {
                                    // Each one's token was checked for its queue before the batch.
                                    let answered = spans[i].in_scope(|| {
                                        conclude(member.call, route.reply_kind(), result, true)
                                    });
                                    finish(i, answered)
                                },
                            )
                        });
                futures::future::join_all(answers).await
            };
        // Everything else, at once, each answered as soon as it is done.
        let alone = pending.iter().filter_map(|(i, step)| match step {
            Step::Run {
                call,
                kind,
                request,
            } => Some(async move {
                let ran = caught(request.run(&self.services, call))
                    .instrument(spans[*i].clone())
                    .await
                    .unwrap_or_else(|e| Ran {
                        result: Err(HandlerError::Internal(e)),
                        vouched: false,
                        mails: Vec::new(),
                    });
                let answered =
                    spans[*i].in_scope(|| conclude(call, *kind, ran.result, ran.vouched));
                let delivered = finish(*i, answered).await;
                // The mails after the reply: it never waits for them.
                crate::notify::outbox::send_now(&self.services, &ran.mails)
                    .instrument(spans[*i].clone())
                    .await;
                delivered
            }),
            _ => None,
        });
        // The processor's webhooks: applied together where they can be, never answered.
        let webhooks = async {
            let members: Vec<usize> = pending
                .iter()
                .filter_map(|(i, step)| matches!(step, Step::Webhook).then_some(*i))
                .collect();
            if members.is_empty() {
                return Vec::new();
            }
            let batch: Vec<(&InboundMessage, &tracing::Span)> =
                members.iter().map(|&i| (&messages[i], &spans[i])).collect();
            let handled = caught(crate::processor::webhook::handle_batch(
                &self.services,
                &batch,
            ))
            .await
            .unwrap_or_else(|e| {
                let reason = format!("{e:#}");
                members
                    .iter()
                    .map(|_| Err(HandlerError::internal(anyhow::anyhow!("{reason}"))))
                    .collect()
            });
            let delivered = members.iter().zip(handled).map(|(&i, handled)| {
                let outcome = match handled {
                    Ok(_) => Ok(Outcome::Drop),
                    Err(HandlerError::Transient(e)) => Err(Transient(e)),
                    // A bug, or a database that refused: a retry may do better, and the
                    // dead-letter queue keeps it if not.
                    Err(e) => {
                        spans[i].in_scope(|| {
                            tracing::error!(error = format!("{e:#}"), "a processor webhook failed");
                        });
                        Err(Transient(anyhow::anyhow!("{e:#}")))
                    }
                };
                async move { (i, deliver(i, outcome).await) }
            });
            futures::future::join_all(delivered).await
        };
        let (now, settled, alone, webhooks) = futures::join!(
            futures::future::join_all(now),
            settled,
            futures::future::join_all(alone),
            webhooks
        );

        let mut delivered: Vec<Option<D>> = (0..messages.len()).map(|_| None).collect();
        for (i, d) in now.into_iter().chain(settled).chain(alone).chain(webhooks) {
            delivered[i] = Some(d);
        }
        delivered
            .into_iter()
            .map(|d| d.expect("every message is delivered once"))
            .collect()
    }

    /// Reads a message: answered already if it does not parse (or, for a route that batches,
    /// its token or role is refused), else what is left to do.
    fn read(&self, message: &InboundMessage) -> Step {
        let span = tracing::Span::current();
        if crate::processor::webhook::is_webhook(message) {
            span.record("billing.kind", crate::processor::webhook::ROUTE);
            return Step::Webhook;
        }
        let envelope = match Envelope::parse(message) {
            Ok(envelope) => envelope,
            Err(rejection) => {
                span.record("billing.kind", rejection.kind.as_str());
                span.record("billing.outcome", "invalid");
                let Some(to) = rejection.reply_to else {
                    tracing::warn!(reason = %rejection.reason, "unanswerable message dropped");
                    return Step::Done(None);
                };
                tracing::info!(reason = %rejection.reason, "invalid request");
                let reply = Reply::error(
                    rejection.request_id,
                    rejection.kind.reply_kind(),
                    ErrorCode::InvalidRequest,
                    rejection.reason.0,
                );
                // A request that did not even parse proves nothing: it gets its queue only if
                // the queue exists.
                return Step::Done(Some(Answer {
                    to,
                    reply,
                    create_queue: false,
                }));
            }
        };
        let Envelope { call, request } = envelope;
        let kind = request.kind();
        span.record("billing.kind", kind.as_str());
        span.record(
            "billing.request_id",
            tracing::field::display(call.request_id),
        );
        if let Some(apartment) = request.apartment() {
            span.record("billing.apartment_id", apartment.0);
        }
        match admit_to_batch(&self.services, &call, &request) {
            Admission::Alone => Step::Run {
                call,
                kind: kind.reply_kind(),
                request,
            },
            Admission::Batch(session) => Step::Batch {
                call,
                request,
                session,
            },
            Admission::Refused { error, vouched } => {
                match conclude(&call, kind.reply_kind(), Err(error), vouched) {
                    Ok(answered) => Step::Done(answered),
                    Err(_) => unreachable!("checking a token is never transient"),
                }
            }
        }
    }

    /// The outcome of a message answered with `answered` (nothing: dropped), measured and
    /// sealed to the size a message may have.
    fn seal(
        &self,
        span: &tracing::Span,
        started: std::time::Instant,
        answered: Option<Answer>,
    ) -> Outcome {
        let Some(Answer {
            to,
            reply,
            create_queue,
        }) = answered
        else {
            return Outcome::Drop;
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
        Outcome::Reply {
            to,
            reply: sealed.reply,
            body: sealed.body,
            create_queue,
        }
    }
}

/// A reply and where it goes: the request's queue, created for it only if `create_queue`.
struct Answer {
    to: QueueName,
    reply: Reply,
    create_queue: bool,
}

/// Runs a request (or a batch), turning a panic into an error: a panic is a bug in
/// what ran, which is answered `internal` (on a queue that exists), and the worker goes on.
async fn caught<T>(run: impl Future<Output = T>) -> Result<T, anyhow::Error> {
    AssertUnwindSafe(run).catch_unwind().await.map_err(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned());
        anyhow::anyhow!("the request panicked: {what}")
    })
}

/// Where a message of a batch stands.
enum Step {
    /// Answered already (nothing: dropped): it did not parse, or its token or role was refused
    /// before a batch.
    Done(Option<Answer>),
    /// A request of a route that batches, its token and role admitted, to settle with the
    /// others of its route.
    Batch {
        call: Call,
        request: Request,
        session: Session,
    },
    /// Any other request, to run on its own; `kind` is its reply's.
    Run {
        call: Call,
        kind: Kind,
        request: Request,
    },
    /// A webhook of the payments processor: verified and applied, with no reply.
    Webhook,
}

/// The span a message is handled in; its fields are filled as they become known.
fn span(message: &InboundMessage) -> tracing::Span {
    tracing::info_span!(
        "handle",
        messaging.message.id = %message.message_id,
        billing.kind = Empty,
        billing.request_id = Empty,
        billing.apartment_id = Empty,
        billing.outcome = Empty,
    )
}

/// The reply to a request that ran and where it goes (logged, in the request's span), or a
/// transient failure that leaves the message for a retry. `vouched`: the reply may create the
/// queue ([`crate::routes::Ran::vouched`]).
fn conclude(
    call: &Call,
    kind: Kind,
    result: HandlerResult,
    vouched: bool,
) -> Result<Option<Answer>, Transient> {
    let span = tracing::Span::current();
    let reply = match result {
        Ok(data) => {
            span.record("billing.outcome", "ok");
            tracing::info!("handled");
            Reply::ok(call.request_id, kind, data)
        }
        Err(HandlerError::WrongQueue) => {
            span.record("billing.outcome", "rejected");
            tracing::warn!(
                auth.refused = "token used from another reply queue",
                "rejected"
            );
            let reply = Reply::error(
                Some(call.request_id),
                kind,
                ErrorCode::Unauthorized,
                "this token was issued for another reply queue; use the queue you logged in with",
            );
            return Ok(Some(Answer {
                to: call.reply_to,
                reply,
                create_queue: false,
            }));
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
    Ok(Some(Answer {
        to: call.reply_to,
        reply,
        create_queue: vouched,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_that_panics_is_an_internal_error_not_a_dead_worker() {
        let failed = caught(async {
            if true {
                panic!("a bug in one route");
            }
            0
        })
        .await;
        let e = failed.expect_err("a panic is an error");
        assert!(e.to_string().contains("a bug in one route"), "{e}");
        assert_eq!(caught(async { 7 }).await.unwrap(), 7);
    }
}
