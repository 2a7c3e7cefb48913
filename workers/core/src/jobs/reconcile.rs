//! The reconciliation: the processor's PaymentIntents of a window, side by side with the books.
//! An intent that succeeded for a payment the books still hold pending is settled (its webhook
//! was lost); any other difference is reported and changes nothing: money captured for a payment
//! the books released or never had, an amount other than the ledger's, a payment the books call
//! settled whose intent did not succeed. The processor's refunds of the window are compared the
//! same way: a refund the books hold pending is settled, any other difference reported. And the
//! customers of deleted accounts that the processor still keeps are deleted there. Each difference is logged, counted
//! (`qbill_payment_discrepancies_total`, alarmed on AWS) and listed in the report
//! (`qbill jobs reconcile`, `qbill payments discrepancies`).
//!
//! Safe twice at once: settling goes through [`crate::processor::book`], once per payment.

use std::collections::HashMap;

use serde::Serialize;
use uuid::Uuid;

use crate::processor::book::{self, Via};
use crate::processor::refund;
use crate::processor::stripe::{IntentStatus, RefundStatus};
use crate::services::Services;

/// The window a scheduled run looks at.
pub const WINDOW: chrono::Duration = chrono::Duration::days(3);

/// One difference between the processor and the books.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Discrepancy {
    pub intent: String,
    pub payment: Option<Uuid>,
    /// `captured_after_release`, `captured_unknown`, `captured_twice`, `amount_differs`,
    /// `settled_without_capture`; for refunds `refund_unknown` (made outside qbill),
    /// `refund_differs`, `refund_without_processor`.
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
    /// The processor's refunds of the window.
    pub refunds: u64,
    /// Refunds settled from the processor's word (their webhook lost, or never sent).
    pub refunds_healed: u64,
    /// The processor's refunded total in the window, in minor units by currency.
    pub refunded: HashMap<String, i64>,
    /// The books' succeeded refunds of those, in minor units by currency.
    pub refunded_in_books: HashMap<String, i64>,
    /// Deleted accounts whose customer (and saved cards) the processor was made to forget.
    pub customers_forgotten: u64,
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
    refunds(services, processor, since, &mut report).await?;
    report.customers_forgotten =
        crate::processor::saved::forget_deleted(services, processor).await?;
    tracing::info!(
        job = "reconcile",
        intents = report.intents,
        refunds = report.refunds,
        healed = report.healed,
        discrepancies = report.discrepancies.len(),
        "reconciliation done"
    );
    Ok(report)
}

/// The processor's refunds created since `since`, side by side with the books': a refund the
/// books hold pending is settled from the processor's word; one the books do not know (made in
/// the processor's dashboard), or whose outcome differs, is a discrepancy. So is a refund the
/// books say succeeded that the processor does not list.
async fn refunds(
    services: &Services,
    processor: &crate::processor::Processor,
    since: chrono::DateTime<chrono::Utc>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let mut listed = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = processor
            .stripe
            .list_refunds(since.timestamp(), after.as_deref())
            .await?;
        listed.extend(page.data);
        if !page.has_more || page.last.is_none() {
            break;
        }
        after = page.last;
    }
    let mut seen = Vec::new();
    for answer in listed {
        report.refunds += 1;
        let succeeded = answer.status == RefundStatus::Succeeded;
        if succeeded {
            *report
                .refunded
                .entry(answer.currency.to_ascii_uppercase())
                .or_default() += answer.amount;
        }
        let client = crate::store::client(&services.store).await?;
        let ours = match answer.refund_id() {
            Some(id) => refund::load(&*client, id).await?,
            None => None,
        };
        let intent_is_ours = match &answer.payment_intent {
            Some(intent) => client
                .query_opt("SELECT 1 FROM payments WHERE intent_id = $1", &[intent])
                .await?
                .is_some(),
            None => false,
        };
        drop(client);
        let Some(mut ours) = ours else {
            if intent_is_ours && succeeded {
                report.push(
                    answer.payment_intent.clone().unwrap_or_default(),
                    None,
                    "refund_unknown",
                    format!(
                        "refund {} of {} {} was made outside qbill",
                        answer.id, answer.amount, answer.currency
                    ),
                );
            } else {
                report.foreign += 1;
            }
            continue;
        };
        seen.push(ours.id);
        if !ours.is_final()
            && answer.status != RefundStatus::Pending
            && let refund::Applied::Now(after) =
                refund::apply(services, ours.id, &answer, Via::Reconcile, None).await?
        {
            if after.status != ours.status && after.status == "succeeded" {
                report.refunds_healed += 1;
            }
            ours = *after;
        }
        let intent = ours.intent_id.clone().unwrap_or_default();
        match (succeeded, ours.status.as_str()) {
            (true, "succeeded") => {
                *report
                    .refunded_in_books
                    .entry(ours.amount.currency().as_str().to_owned())
                    .or_default() += ours.amount.minor_units().unwrap_or_default();
            }
            (true, status) => report.push(
                intent,
                Some(ours.payment_id),
                "refund_differs",
                format!(
                    "refund {} went back at the processor, the books say {status}",
                    ours.id
                ),
            ),
            (false, "succeeded") => report.push(
                intent,
                Some(ours.payment_id),
                "refund_differs",
                format!(
                    "refund {} succeeded in the books, the processor says {:?}",
                    ours.id, answer.status
                ),
            ),
            _ => {}
        }
    }
    // Succeeded in the books, unknown to the processor.
    let client = crate::store::client(&services.store).await?;
    let missing = client
        .query(
            "SELECT r.id, r.payment_id, p.intent_id FROM refunds r JOIN payments p ON p.id = r.payment_id
             WHERE r.status = 'succeeded' AND r.created_at >= $1 AND NOT r.id = ANY($2)",
            &[&since, &seen],
        )
        .await?;
    for row in missing {
        let id: Uuid = row.get("id");
        report.push(
            row.get::<_, Option<String>>("intent_id")
                .unwrap_or_default(),
            Some(row.get("payment_id")),
            "refund_without_processor",
            format!("refund {id} succeeded in the books, the processor does not list it"),
        );
    }
    Ok(())
}

impl Report {
    fn push(&mut self, intent: String, payment: Option<Uuid>, kind: &'static str, detail: String) {
        crate::metrics::payment_discrepancy(kind);
        tracing::error!(job = "reconcile", %intent, ?payment, discrepancy = kind, "{detail}");
        self.discrepancies.push(Discrepancy {
            intent,
            payment,
            kind,
            detail,
        });
    }
}
