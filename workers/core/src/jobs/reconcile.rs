//! The reconciliation: the processor's PaymentIntents of a window, side by side with the books.
//! An intent that succeeded for a payment the books still hold pending is settled (its webhook
//! was lost); any other difference is reported and changes nothing: money captured for a payment
//! the books released or never had, an amount other than the ledger's, a payment the books call
//! settled whose intent did not succeed. Each difference is logged, counted
//! (`qbill_payment_discrepancies_total`, alarmed on AWS) and listed in the report
//! (`qbill jobs reconcile`, `qbill payments discrepancies`).
//!
//! Safe twice at once: settling goes through [`crate::processor::book`], once per payment.

use std::collections::HashMap;

use serde::Serialize;
use uuid::Uuid;

use crate::processor::book::{self, Via};
use crate::processor::stripe::IntentStatus;
use crate::services::Services;

/// The window a scheduled run looks at.
pub const WINDOW: chrono::Duration = chrono::Duration::days(3);

/// One difference between the processor and the books.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Discrepancy {
    pub intent: String,
    pub payment: Option<Uuid>,
    /// `captured_after_release`, `captured_unknown`, `captured_twice`, `amount_differs`,
    /// `settled_without_capture`.
    pub kind: &'static str,
    pub detail: String,
}

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The processor's intents of the window.
    pub intents: u64,
    /// Intents of other books (another deployment sharing the processor's account).
    pub foreign: u64,
    /// Payments settled from the processor's word: lost webhooks, healed.
    pub healed: u64,
    /// The processor's captured total in the window, in minor units by currency.
    pub captured: HashMap<String, i64>,
    /// The books' settled card payments of those intents, in minor units by currency.
    pub settled: HashMap<String, i64>,
    pub discrepancies: Vec<Discrepancy>,
}

/// Compares the processor's intents created since `since` with the books.
pub async fn run(
    services: &Services,
    since: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let Some(processor) = &services.processor else {
        tracing::info!(job = "reconcile", "no processor: nothing to reconcile");
        return Ok(report);
    };
    let mut intents = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = processor
            .stripe
            .list_intents(since.timestamp(), after.as_deref())
            .await?;
        intents.extend(page.data);
        if !page.has_more || page.last.is_none() {
            break;
        }
        after = page.last;
    }
    for intent in intents {
        report.intents += 1;
        let payment = match intent.payment_id() {
            Some(id) => book::load(&*crate::store::client(&services.store).await?, id).await?,
            None => None,
        };
        let succeeded = intent.status == IntentStatus::Succeeded;
        if succeeded {
            *report
                .captured
                .entry(intent.currency.to_ascii_uppercase())
                .or_default() += intent.amount;
        }
        let Some(mut payment) = payment else {
            // Named by another deployment's books (or by none, and not captured): not ours.
            if !succeeded || intent.payment_id().is_some() {
                report.foreign += 1;
            } else {
                crate::metrics::payment_discrepancy("captured_unknown");
                report.discrepancies.push(Discrepancy {
                    intent: intent.id.clone(),
                    payment: None,
                    kind: "captured_unknown",
                    detail: format!(
                        "{} {} captured for no payment",
                        intent.amount, intent.currency
                    ),
                });
            }
            continue;
        };
        // An intent of this payment that the books do not know as its own (one made twice, when
        // a worker died between creating it and recording it).
        let ours = payment
            .intent_id
            .as_deref()
            .is_none_or(|id| id == intent.id);
        if succeeded && ours && !payment.is_final() {
            let changed;
            (payment, changed) =
                book::applied(services, payment.id, &intent, Via::Reconcile, false).await?;
            // Counted by the run that settled it (another may have, at the same moment).
            if changed && payment.status == "succeeded" {
                report.healed += 1;
            }
        }
        let amount_matches = payment.total.minor_units().ok() == Some(intent.amount)
            && intent
                .currency
                .eq_ignore_ascii_case(payment.total.currency().as_str());
        let difference = match (succeeded, payment.status.as_str()) {
            (true, "succeeded") if !ours => Some((
                "captured_twice",
                format!("a second intent of payment {} was captured", payment.id),
            )),
            (true, "succeeded") if !amount_matches => Some((
                "amount_differs",
                format!(
                    "{} {} captured for a payment of {}",
                    intent.amount, intent.currency, payment.total
                ),
            )),
            (true, "succeeded") => {
                *report
                    .settled
                    .entry(payment.total.currency().as_str().to_owned())
                    .or_default() += intent.amount;
                None
            }
            (true, status) => Some((
                "captured_after_release",
                format!("captured, but the books say {status}"),
            )),
            (false, "succeeded") if ours => Some((
                "settled_without_capture",
                format!(
                    "the books settled it, the processor says {:?}",
                    intent.status
                ),
            )),
            _ => None,
        };
        if let Some((kind, detail)) = difference {
            crate::metrics::payment_discrepancy(kind);
            tracing::error!(job = "reconcile", intent = %intent.id, payment = %payment.id, discrepancy = kind, "{detail}");
            report.discrepancies.push(Discrepancy {
                intent: intent.id.clone(),
                payment: Some(payment.id),
                kind,
                detail,
            });
        }
    }
    tracing::info!(
        job = "reconcile",
        intents = report.intents,
        healed = report.healed,
        discrepancies = report.discrepancies.len(),
        "reconciliation done"
    );
    Ok(report)
}
