//! The event bus: every event also goes to the deployment's EventBridge bus (`<name>-events`),
//! so AWS-native consumers subscribe with rules (source `qbill`, `detail-type` the event's type,
//! `detail` the event as a webhook carries it).
//!
//! The sender follows the [`feed`](super::feed) over every provider, from a cursor kept in the
//! database (`event_bus_cursor`): it takes the cursor with a lease, so two senders never put the
//! same events at once, puts the next events in entries of at most [`ENTRIES`] (no transaction
//! open), and moves the cursor past those the bus took. An entry the bus refused stops the run
//! there, and the next run puts it again: at least once, in order; consumers deduplicate on the
//! event's id.

use std::time::Duration;

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use serde::Serialize;

use super::feed::{self, Position};
use crate::services::Services;

/// Entries in one `PutEvents` (its limit).
pub const ENTRIES: usize = 10;
/// Events put in one run at most; the next run goes on.
const PER_RUN: i64 = 5_000;
const LEASE: Duration = Duration::from_secs(120);
/// The `source` of every entry.
pub const SOURCE: &str = "qbill";

/// The deployment's bus.
#[derive(Clone)]
pub struct Bus {
    pub client: aws_sdk_eventbridge::Client,
    pub name: String,
}

impl Bus {
    pub async fn new(name: String) -> Self {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Self {
            client: aws_sdk_eventbridge::Client::new(&config),
            name,
        }
    }
}

/// What one run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Report {
    pub put: u64,
    /// Whether another sender held the cursor (this run did nothing).
    pub busy: bool,
}

const TAKE_CURSOR: &str =
    "UPDATE event_bus_cursor SET leased_until = clock_timestamp() + make_interval(secs => $1)
    WHERE leased_until < clock_timestamp() RETURNING tx::text, event_id";
const MOVE_CURSOR: &str = "UPDATE event_bus_cursor SET tx = $1::text::xid8, event_id = $2";
const RELEASE: &str = "UPDATE event_bus_cursor SET leased_until = '-infinity'";

/// Puts the events after the cursor on the bus; nothing without a bus.
pub async fn run(services: &Services) -> anyhow::Result<Report> {
    let Some(bus) = &services.bus else {
        return Ok(Report::default());
    };
    let client = crate::store::client(&services.store).await?;
    let Some(row) = client
        .query_opt(TAKE_CURSOR, &[&LEASE.as_secs_f64()])
        .await?
    else {
        return Ok(Report { put: 0, busy: true });
    };
    let tx: &str = row.get(0);
    let mut at = Position {
        tx: tx.parse()?,
        id: row.get(1),
    };
    let mut report = Report::default();
    let outcome: anyhow::Result<()> = async {
        while (report.put as i64) < PER_RUN {
            let page = feed::page(&*client, None, at, &[], ENTRIES as i64).await?;
            if page.is_empty() {
                break;
            }
            let entries = page
                .iter()
                .map(|(_, event)| {
                    PutEventsRequestEntry::builder()
                        .event_bus_name(&bus.name)
                        .source(SOURCE)
                        .detail_type(event.kind.as_str())
                        .detail(serde_json::to_string(event).expect("an event serialises"))
                        .time(aws_sdk_eventbridge::primitives::DateTime::from_millis(
                            event.timestamp.timestamp_millis(),
                        ))
                        .build()
                })
                .collect::<Vec<_>>();
            let answer = bus
                .client
                .put_events()
                .set_entries(Some(entries))
                .send()
                .await?;
            // Entries are answered in order; the cursor moves past the first run of accepted ones.
            let accepted = answer
                .entries()
                .iter()
                .take_while(|e| e.error_code().is_none())
                .count()
                .min(page.len());
            if accepted > 0 {
                at = page[accepted - 1].0;
                client
                    .execute(MOVE_CURSOR, &[&at.tx.to_string(), &at.id])
                    .await?;
                report.put += accepted as u64;
                crate::metrics::bus_events(accepted as u64);
            }
            if accepted < page.len() {
                let refused = &answer.entries()[accepted];
                anyhow::bail!(
                    "the bus refused event {}: {} {}",
                    page[accepted].1.id,
                    refused.error_code().unwrap_or("?"),
                    refused.error_message().unwrap_or("")
                );
            }
        }
        Ok(())
    }
    .await;
    client.execute(RELEASE, &[]).await?;
    outcome.map(|()| report)
}
