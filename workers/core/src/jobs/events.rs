//! The events job: delivers the webhooks that are due ([`crate::events::deliver`]), puts the
//! new events on the bus ([`crate::events::bus`]), and forgets events older than
//! [`crate::events::KEPT_DAYS`] with their deliveries. Each part is safe with two runs at once
//! (leases and `SKIP LOCKED`), and a run that fails part-way leaves the rest to the next.

use serde::Serialize;

use crate::events::{KEPT_DAYS, bus, deliver};
use crate::services::Services;

/// Events deleted by one statement at most, so a long backlog never holds locks for long.
const FORGET_BATCH: i64 = 5_000;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Report {
    pub webhooks: deliver::Report,
    pub bus: bus::Report,
    /// Events forgotten after their 30 days.
    pub forgotten: u64,
}

pub async fn run(services: &Services) -> anyhow::Result<Report> {
    let webhooks = deliver::run(services).await?;
    // A bus that cannot be reached must not stop the webhooks: it waits for the next run.
    let bus = match bus::run(services).await {
        Ok(report) => report,
        Err(e) => {
            tracing::warn!(job = "events", error = %format!("{e:#}"), "events not put on the bus; the next run goes on");
            bus::Report::default()
        }
    };
    let forgotten = forget(services).await?;
    let report = Report {
        webhooks,
        bus,
        forgotten,
    };
    tracing::info!(
        job = "events",
        delivered = webhooks.delivered,
        failed = webhooks.failed,
        given_up = webhooks.given_up,
        disabled = webhooks.disabled,
        bus = report.bus.put,
        forgotten,
        "events job done"
    );
    Ok(report)
}

/// Deletes events past their days, a batch a transaction. One run forgets at a time (an advisory
/// lock; a second finds it taken and leaves the work to the first): the application may delete
/// events but not lock them for update, and two deleters of one batch would only wait on each
/// other.
async fn forget(services: &Services) -> anyhow::Result<u64> {
    let mut client = crate::store::client(&services.store).await?;
    let mut total = 0;
    loop {
        let tx = client.transaction().await?;
        let mine: bool = tx
            .query_one(
                "SELECT pg_try_advisory_xact_lock(hashtext('qbill.events.forget'))",
                &[],
            )
            .await?
            .get(0);
        if !mine {
            return Ok(total);
        }
        let deleted = tx
            .execute(
                "DELETE FROM events WHERE id IN (
                     SELECT id FROM events WHERE occurred_at < now() - make_interval(days => $1)
                     ORDER BY id LIMIT $2)",
                &[&KEPT_DAYS, &FORGET_BATCH],
            )
            .await?;
        tx.commit().await?;
        total += deleted;
        if deleted < FORGET_BATCH as u64 {
            return Ok(total);
        }
    }
}
