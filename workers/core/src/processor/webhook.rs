//! `POST /webhooks/stripe`: the processor's events, through the same gateway and queue as every
//! request, without a token and without a reply (the gateway answers the processor `200` once
//! the event is enqueued). The gateway passes the raw body as the message's body and the
//! `Stripe-Signature` header as an attribute; the body is verified as it came, byte for byte,
//! before it is read.
//!
//! Each event is applied once (its id is claimed in the transaction that applies it; the
//! `payment_intent.succeeded` events of one receive are settled together, by [`super::settle`],
//! every other alone, by [`super::book::apply_event`]): `payment_intent.succeeded` settles the payment, `payment_intent.payment_failed`
//! and `payment_intent.canceled` release its bills, `payment_intent.processing` and
//! `payment_intent.requires_action` are recorded. Events arrive twice, late and out of order; the
//! books only move forward, so none is applied twice and a late failure never undoes a success.
//! A forged or stale signature changes nothing and is logged and counted; so is an event for no
//! payment of ours. A database that fails leaves the message for a retry.

use futures::FutureExt;
use serde::Deserialize;
use tracing::Instrument;

use super::book::{self, Applied, Via};
use super::refund;
use super::settle;
use super::signature;
use super::stripe::Intent;
use super::stripe::Refund;
use crate::envelope::InboundMessage;
use crate::error::HandlerError;
use crate::services::Services;

/// The `route` attribute the gateway gives the processor's webhooks.
pub const ROUTE: &str = "stripe_webhook";
/// The attribute holding the `Stripe-Signature` header (prefixed with [`SIGNATURE_MARKER`], so
/// that it is never empty).
pub const SIGNATURE: &str = "stripe_signature";
pub const SIGNATURE_MARKER: &str = "header:";

/// The event types that move a refund: the refund itself is the event's object, or (for
/// `charge.refunded`) the charge, whose intent's refunds are then read from the processor.
pub const REFUND_EVENTS: [&str; 4] = [
    "refund.created",
    "refund.updated",
    "refund.failed",
    "charge.refunded",
];

/// The event types that move a payment.
pub const EVENTS: [&str; 5] = [
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "payment_intent.processing",
    "payment_intent.requires_action",
];

#[derive(Debug, Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: EventData,
}

#[derive(Debug, Deserialize)]
struct EventData {
    object: serde_json::Value,
}

/// What came of a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    Applied,
    /// Its event was applied before.
    Repeat,
    /// Not an event that moves a payment of ours.
    Ignored,
    /// The signature did not verify; nothing was read.
    Refused,
}

/// Whether `message` is a webhook of the processor rather than a request.
pub fn is_webhook(message: &InboundMessage) -> bool {
    message
        .attributes
        .get(crate::envelope::attribute::ROUTE)
        .map(String::as_str)
        == Some(ROUTE)
}

/// Verifies and applies the webhooks of one receive, each in its span: the
/// `payment_intent.succeeded` ones together ([`super::settle`]), every other alone, all at once.
/// An outcome each, in their order; `Err` only for a transient failure.
pub async fn handle_batch(
    services: &Services,
    messages: &[(&InboundMessage, &tracing::Span)],
) -> Vec<Result<Handled, HandlerError>> {
    let mut results: Vec<Option<Result<Handled, HandlerError>>> =
        (0..messages.len()).map(|_| None).collect();
    let mut alone = Vec::new();
    let mut together = Vec::new();
    for (i, (message, span)) in messages.iter().enumerate() {
        match span.in_scope(|| read(services, message)) {
            Read::Done(handled) => results[i] = Some(Ok(handled)),
            Read::Event(processor, event) => match succeeded(&event) {
                Some((intent, payment)) => together.push((i, event, intent, payment)),
                None => alone.push((i, processor, event)),
            },
        }
    }
    let alone = alone.into_iter().map(|(i, processor, event)| {
        apply(services, processor, event)
            .instrument(messages[i].1.clone())
            .map(move |handled| (i, handled))
    });
    let together = async {
        let batch: Vec<settle::Succeeded<'_>> = together
            .iter()
            .map(|(_, event, intent, payment)| settle::Succeeded {
                event: &event.id,
                kind: &event.kind,
                payment: *payment,
                intent,
            })
            .collect();
        let applied = match batch.len() {
            0 => Vec::new(),
            _ => match settle::together(services, &batch).await {
                Ok(applied) => applied.into_iter().map(Ok).collect(),
                Err(HandlerError::Transient(e)) => {
                    let reason = format!("{e:#}");
                    (0..batch.len())
                        .map(|_| Err(HandlerError::Transient(anyhow::anyhow!("{reason}"))))
                        .collect()
                }
                Err(e) => {
                    // A bug, or a row the books refuse: each alone, so that only the guilty one
                    // fails.
                    tracing::warn!(
                        error = format!("{e:#}"),
                        webhooks = batch.len(),
                        "a batch of webhooks failed; each runs alone"
                    );
                    let each = batch.iter().zip(&together).map(|(s, (i, ..))| {
                        book::apply_event(
                            services,
                            s.payment,
                            s.intent,
                            Via::Webhook,
                            false,
                            Some((s.event, s.kind)),
                        )
                        .instrument(messages[*i].1.clone())
                    });
                    futures::future::join_all(each).await
                }
            },
        };
        together
            .iter()
            .zip(applied)
            .map(|((i, event, _, payment), applied)| {
                let handled = messages[*i]
                    .1
                    .in_scope(|| applied.map(|a| concluded(event, *payment, a)));
                (*i, handled)
            })
            .collect::<Vec<_>>()
    };
    let (alone, together) = futures::join!(futures::future::join_all(alone), together);
    for (i, handled) in alone.into_iter().chain(together) {
        results[i] = Some(handled);
    }
    results
        .into_iter()
        .map(|r| r.expect("every webhook has an outcome"))
        .collect()
}

/// A webhook once verified and read.
enum Read<'a> {
    /// Nothing more to do: refused, unreadable, or no processor here.
    Done(Handled),
    /// A signed event, to apply.
    Event(&'a super::Processor, Event),
}

/// Verifies `message`'s signature and reads its event; logs and counts what goes no further.
fn read<'a>(services: &'a Services, message: &InboundMessage) -> Read<'a> {
    let Some(processor) = &services.processor else {
        tracing::warn!("a processor webhook came to a worker without a processor; dropped");
        crate::metrics::webhook("ignored");
        return Read::Done(Handled::Ignored);
    };
    let header = message
        .attributes
        .get(SIGNATURE)
        .map(|h| h.strip_prefix(SIGNATURE_MARKER).unwrap_or(h))
        .unwrap_or("");
    let now = chrono::Utc::now().timestamp();
    if let Err(refused) = signature::verify(header, &message.body, processor.webhook_secrets(), now)
    {
        let outcome = match refused {
            signature::Refused::Stale => "stale",
            _ => "forged",
        };
        crate::metrics::webhook(outcome);
        tracing::warn!(webhook.refused = %refused, "a processor webhook was refused; nothing changed");
        return Read::Done(Handled::Refused);
    }
    match serde_json::from_str(&message.body) {
        Ok(event) => Read::Event(processor, event),
        Err(e) => {
            crate::metrics::webhook("ignored");
            tracing::warn!(error = %e, "a signed processor webhook we cannot read; dropped");
            Read::Done(Handled::Ignored)
        }
    }
}

/// For an event settled with the receive's others ([`settle::together`]): a
/// `payment_intent.succeeded` whose intent did succeed and names its payment; its intent and that
/// payment. Every other event is applied alone.
fn succeeded(event: &Event) -> Option<(Intent, uuid::Uuid)> {
    if event.kind != "payment_intent.succeeded" {
        return None;
    }
    let intent = Intent::deserialize(&event.data.object).ok()?;
    let payment = intent.payment_id()?;
    matches!(intent.status, super::stripe::IntentStatus::Succeeded).then_some((intent, payment))
}

/// Applies one verified event on its own.
async fn apply(
    services: &Services,
    processor: &super::Processor,
    event: Event,
) -> Result<Handled, HandlerError> {
    if REFUND_EVENTS.contains(&event.kind.as_str()) {
        let handled = refund_event(services, processor, &event).await?;
        crate::metrics::webhook(match handled {
            Handled::Applied => "applied",
            Handled::Repeat => "repeat",
            _ => "ignored",
        });
        return Ok(handled);
    }
    if !EVENTS.contains(&event.kind.as_str()) {
        crate::metrics::webhook("ignored");
        tracing::info!(event = %event.id, event.kind = %event.kind, "processor event not for payments");
        return Ok(Handled::Ignored);
    }
    let intent = match Intent::deserialize(&event.data.object) {
        Ok(intent) => intent,
        Err(e) => {
            crate::metrics::webhook("ignored");
            tracing::warn!(event = %event.id, error = %e, "a payment event without a readable intent");
            return Ok(Handled::Ignored);
        }
    };
    let payment = match intent.payment_id() {
        Some(id) => Some(id),
        None => by_intent(services, &intent.id).await?,
    };
    let Some(payment) = payment else {
        crate::metrics::webhook("ignored");
        tracing::warn!(event = %event.id, intent = %intent.id, "a payment event for no payment of ours");
        return Ok(Handled::Ignored);
    };
    let applied = book::apply_event(
        services,
        payment,
        &intent,
        Via::Webhook,
        false,
        Some((&event.id, &event.kind)),
    )
    .await?;
    Ok(concluded(&event, payment, applied))
}

/// What came of an event the books were asked to apply, logged and counted.
fn concluded(event: &Event, payment: uuid::Uuid, applied: Applied) -> Handled {
    let handled = match applied {
        Applied::Now(payment) => {
            tracing::info!(event = %event.id, event.kind = %event.kind, payment = %payment.id, status = %payment.status, "processor event applied");
            Handled::Applied
        }
        Applied::Before => {
            tracing::info!(event = %event.id, "processor event applied before; nothing done");
            Handled::Repeat
        }
        Applied::NoPayment => {
            tracing::warn!(event = %event.id, %payment, "a payment event naming a payment we do not have");
            Handled::Ignored
        }
    };
    crate::metrics::webhook(match handled {
        Handled::Applied => "applied",
        Handled::Repeat => "repeat",
        _ => "ignored",
    });
    handled
}

/// A refund's event: the refunds it names (the event's refund, or the charge's intent's refunds)
/// applied, the event claimed with the first of ours.
async fn refund_event(
    services: &Services,
    processor: &super::Processor,
    event: &Event,
) -> Result<Handled, HandlerError> {
    let refunds: Vec<Refund> = if event.kind == "charge.refunded" {
        #[derive(Deserialize)]
        struct Charge {
            payment_intent: Option<String>,
        }
        let intent = serde_json::from_value::<Charge>(event.data.object.clone())
            .ok()
            .and_then(|c| c.payment_intent);
        let Some(intent) = intent else {
            tracing::warn!(event = %event.id, "a refunded charge without its intent");
            return Ok(Handled::Ignored);
        };
        match processor.stripe.intent_refunds(&intent).await {
            Ok(refunds) => refunds,
            Err(super::stripe::Error::Unavailable(e)) => return Err(HandlerError::Transient(e)),
            Err(e) => return Err(HandlerError::internal(e)),
        }
    } else {
        match serde_json::from_value(event.data.object.clone()) {
            Ok(refund) => vec![refund],
            Err(e) => {
                tracing::warn!(event = %event.id, error = %e, "a refund event without a readable refund");
                return Ok(Handled::Ignored);
            }
        }
    };
    let mut handled = Handled::Ignored;
    for answer in &refunds {
        let Some(id) = answer.refund_id() else {
            continue;
        };
        // The event is claimed once, with the first refund of ours it names.
        let claim =
            (handled == Handled::Ignored).then_some((event.id.as_str(), event.kind.as_str()));
        match refund::apply(services, id, answer, Via::Webhook, claim).await? {
            refund::Applied::Now(refund) => {
                tracing::info!(event = %event.id, event.kind = %event.kind, refund = %refund.id, status = %refund.status, "processor refund event applied");
                handled = Handled::Applied;
            }
            refund::Applied::Before => {
                tracing::info!(event = %event.id, "processor event applied before; nothing done");
                return Ok(Handled::Repeat);
            }
            refund::Applied::Missing => {}
        }
    }
    if handled == Handled::Ignored {
        tracing::warn!(event = %event.id, event.kind = %event.kind, "a refund event for no refund of ours");
    }
    Ok(handled)
}

async fn by_intent(services: &Services, intent: &str) -> Result<Option<uuid::Uuid>, HandlerError> {
    let client = crate::store::client(&services.store).await?;
    Ok(client
        .query_opt("SELECT id FROM payments WHERE intent_id = $1", &[&intent])
        .await?
        .map(|r| r.get(0)))
}
