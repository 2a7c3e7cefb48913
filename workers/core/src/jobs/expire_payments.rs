//! The expiry job: card payments still waiting on the processor after [`AFTER`] are asked about.
//! One whose money was captured is settled (its webhook was lost); one still waiting on the
//! household (a card never entered, a bank's check never passed) has its intent cancelled and its
//! bills released; one the processor is still at work on (`processing`) is left for the next run.
//! A payment whose intent was never created (the worker died between its commit and the
//! processor's answer) is cancelled: nothing was charged.
//!
//! Safe twice at once: each payment's change is applied under its row lock, once
//! ([`crate::processor::book`]), and cancelling an intent twice answers the same.

use serde::Serialize;
use uuid::Uuid;

use crate::processor::book::{self, Via};
use crate::processor::stripe::{Error, IntentStatus};
use crate::services::Services;

/// How long a payment may wait for its card before it is expired.
pub const AFTER: chrono::Duration = chrono::Duration::minutes(30);
/// Payments looked at per batch (a run goes on until none is left).
pub const BATCH: i64 = 500;

/// What one run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Payments older than the limit and still waiting.
    pub examined: u64,
    /// Settled: the processor had the money (a webhook was lost).
    pub settled: u64,
    /// Cancelled, their bills released.
    pub expired: u64,
    /// Left for the next run (the processor still at work, or out of reach).
    pub left: u64,
}

/// Runs the job once over the payments that waited longer than `after`.
pub async fn run(services: &Services, after: chrono::Duration) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let Some(processor) = &services.processor else {
        tracing::info!(
            job = "expire-payments",
            "no processor: nothing waits on one"
        );
        return Ok(report);
    };
    // Batch after batch, in the order they were made, until none is left that waited too long
    // (a batch's payments that stay, still at work at the processor, are passed by the next).
    let mut from = (chrono::DateTime::<chrono::Utc>::UNIX_EPOCH, Uuid::nil());
    loop {
        let client = crate::store::client(&services.store).await?;
        let waiting: Vec<(Uuid, Option<String>, chrono::DateTime<chrono::Utc>)> = client
            .query(
                "SELECT id, intent_id, created_at FROM payments
                 WHERE status IN ('pending', 'requires_action', 'processing')
                   AND created_at < clock_timestamp() - make_interval(secs => $1)
                   AND (created_at, id) > ($3, $4)
                 ORDER BY created_at, id LIMIT $2",
                &[&(after.num_seconds() as f64), &BATCH, &from.0, &from.1],
            )
            .await?
            .iter()
            .map(|r| (r.get("id"), r.get("intent_id"), r.get("created_at")))
            .collect();
        drop(client);
        let Some(last) = waiting.last() else { break };
        from = (last.2, last.0);
        let full = waiting.len() as i64 == BATCH;
        expire(services, processor, waiting, &mut report).await?;
        if !full {
            break;
        }
    }
    tracing::info!(
        job = "expire-payments",
        examined = report.examined,
        settled = report.settled,
        expired = report.expired,
        left = report.left,
        "expiry job done"
    );
    Ok(report)
}

/// One batch of [`run`].
async fn expire(
    services: &Services,
    processor: &crate::processor::Processor,
    waiting: Vec<(Uuid, Option<String>, chrono::DateTime<chrono::Utc>)>,
    report: &mut Report,
) -> anyhow::Result<()> {
    for (payment, intent, _) in waiting {
        report.examined += 1;
        let Some(intent) = intent else {
            if book::cancel(services, payment, Via::Expiry).await?.1 {
                report.expired += 1;
            }
            continue;
        };
        let found = match processor.stripe.retrieve_intent(&intent).await {
            Ok(found) => found,
            Err(Error::Unavailable(e)) => {
                tracing::warn!(job = "expire-payments", %payment, error = %e, "processor out of reach; left for the next run");
                report.left += 1;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let found = match found.status {
            IntentStatus::Succeeded | IntentStatus::Canceled | IntentStatus::Processing => found,
            _ => match processor.stripe.cancel_intent(&intent).await {
                Ok(cancelled) => cancelled,
                Err(Error::Unavailable(e)) => {
                    tracing::warn!(job = "expire-payments", %payment, error = %e, "processor out of reach; left for the next run");
                    report.left += 1;
                    continue;
                }
                Err(e) => return Err(e.into()),
            },
        };
        let (after, changed) = book::applied(services, payment, &found, Via::Expiry, false).await?;
        // Counted by the run that changed it (another may have, at the same moment).
        match after.status.as_str() {
            _ if !changed && after.is_final() => {}
            "succeeded" => report.settled += 1,
            "canceled" | "failed" => report.expired += 1,
            _ => report.left += 1,
        }
    }
    Ok(())
}
