//! The reply-queue sweeper: deletes the reply queues nobody uses any more.
//!
//! A reply queue is in use while it holds any message (visible, in flight or delayed: a reply
//! that was read stays in flight until it expires) or while its last-reply stamp in Redis is
//! younger than the idle time (a queue never stamped counts from its creation). Only queues that
//! are neither are deleted. If Redis is configured but cannot be asked, nothing is deleted. Each
//! queue is checked just before it is deleted, deleting is idempotent, and a reply due to a swept
//! queue recreates it, so several sweeps may run at once.
//!
//! The work is cut into [`Task`]s: the queues under one name prefix, from one `ListQueues` page
//! on. A sweep starts with one task per first hex digit of the client's UUID ([`shards`]), runs
//! them together, checks the queues of a page together, and stops at a deadline with the tasks
//! left, which the next run takes up: however many queues there are, every one is reached.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::QueueAttributeName;
use futures::{StreamExt, stream};
use qbill_core::cache::Cache;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Queues checked at once within a task.
pub const QUEUES_AT_ONCE: usize = 16;
/// Tasks run at once by [`sweep`].
pub const TASKS_AT_ONCE: usize = 4;

/// The queues under `prefix`, from the `ListQueues` page `next_token` on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub prefix: String,
    pub next_token: Option<String>,
}

/// One task per first hex digit of the client UUID that names each reply queue.
pub fn shards(reply_prefix: &str) -> Vec<Task> {
    "0123456789abcdef"
        .chars()
        .map(|digit| Task {
            prefix: format!("{reply_prefix}{digit}"),
            next_token: None,
        })
        .collect()
}

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// A queue empty and without a reply for this long is deleted.
    pub idle: Duration,
    /// Queues per `ListQueues` page, 1 to 1000.
    pub page_size: i32,
}

impl Settings {
    pub fn new(idle: Duration) -> Self {
        Self {
            idle,
            page_size: 1000,
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub examined: u64,
    pub deleted: u64,
    /// Queues that could not be checked or deleted, and pages that could not be listed.
    pub errors: u64,
}

impl std::ops::AddAssign for SweepReport {
    fn add_assign(&mut self, other: Self) {
        self.examined += other.examined;
        self.deleted += other.deleted;
        self.errors += other.errors;
    }
}

/// Runs `tasks`, [`TASKS_AT_ONCE`] at a time, until they are done or `deadline` passes; returns
/// what was done and the tasks left (empty when the sweep is complete).
pub async fn sweep(
    client: &Client,
    stamps: &Cache,
    settings: Settings,
    tasks: Vec<Task>,
    deadline: Option<Instant>,
) -> (SweepReport, Vec<Task>) {
    let mut report = SweepReport::default();
    let mut left = Vec::new();
    let mut runs = stream::iter(tasks)
        .map(|task| sweep_task(client, stamps, settings, task, deadline))
        .buffer_unordered(TASKS_AT_ONCE);
    while let Some((done, rest)) = runs.next().await {
        report += done;
        left.extend(rest);
    }
    (report, left)
}

/// Sweeps the pages of `task` until it is done (`None` left) or `deadline` passes (the task from
/// the next page on is left); one page at least. A page that cannot be listed is left to be tried again.
pub async fn sweep_task(
    client: &Client,
    stamps: &Cache,
    settings: Settings,
    mut task: Task,
    deadline: Option<Instant>,
) -> (SweepReport, Option<Task>) {
    let mut report = SweepReport::default();
    let mut first = true;
    loop {
        // At least one page a run, so that a task always gets on.
        if !first && deadline.is_some_and(|d| Instant::now() >= d) {
            return (report, Some(task));
        }
        first = false;
        let page = client
            .list_queues()
            .queue_name_prefix(&task.prefix)
            .max_results(settings.page_size)
            .set_next_token(task.next_token.clone())
            .send()
            .await;
        let page = match page {
            Ok(page) => page,
            Err(e) => {
                report.errors += 1;
                qbill_core::metrics::sweep_failed();
                tracing::warn!(prefix = %task.prefix, error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "cannot list reply queues; the task is left for the next sweep");
                return (report, Some(task));
            }
        };
        let urls = page.queue_urls.unwrap_or_default();
        let mut checks = stream::iter(urls)
            .map(|url| sweep_queue(client, stamps, settings.idle, url))
            .buffer_unordered(QUEUES_AT_ONCE);
        let mut done = SweepReport::default();
        while let Some(one) = checks.next().await {
            done += one;
        }
        qbill_core::metrics::swept(done.examined, done.deleted);
        report += done;
        tracing::info!(
            prefix = %task.prefix,
            examined = report.examined,
            deleted = report.deleted,
            more = page.next_token.is_some(),
            "reply queues swept: a page"
        );
        match page.next_token {
            Some(next) => task.next_token = Some(next),
            None => return (report, None),
        }
    }
}

/// Checks one queue and deletes it if it is idle.
async fn sweep_queue(client: &Client, stamps: &Cache, idle: Duration, url: String) -> SweepReport {
    let mut report = SweepReport {
        examined: 1,
        ..SweepReport::default()
    };
    match idle_queue(client, stamps, &url, idle).await {
        Ok(true) => match client.delete_queue().queue_url(&url).send().await {
            Ok(_) => {
                report.deleted = 1;
                tracing::info!(queue = %url, "idle reply queue deleted");
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_queue_does_not_exist()) => {}
            Err(e) => {
                report.errors = 1;
                qbill_core::metrics::sweep_failed();
                tracing::warn!(queue = %url, error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "cannot delete");
            }
        },
        Ok(false) => {}
        // Gone meanwhile (another sweeper), or unreadable: leave it.
        Err(e) => {
            report.errors = 1;
            qbill_core::metrics::sweep_failed();
            tracing::debug!(queue = %url, error = format!("{e:#}"), "not swept");
        }
    }
    report
}

/// Empty, and last replied to (or created) longer than `idle` ago.
async fn idle_queue(
    client: &Client,
    stamps: &Cache,
    url: &str,
    idle: Duration,
) -> anyhow::Result<bool> {
    let attributes = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .attribute_names(QueueAttributeName::CreatedTimestamp)
        .send()
        .await?
        .attributes
        .unwrap_or_default();
    let number =
        |name: &QueueAttributeName| attributes.get(name).and_then(|v| v.parse::<u64>().ok());
    let holds_messages = [
        QueueAttributeName::ApproximateNumberOfMessages,
        QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        QueueAttributeName::ApproximateNumberOfMessagesDelayed,
    ]
    .iter()
    .any(|name| number(name) != Some(0));
    if holds_messages {
        return Ok(false);
    }
    let created = number(&QueueAttributeName::CreatedTimestamp);
    let stamped = if stamps.enabled() {
        let name = url.rsplit('/').next().unwrap_or(url);
        stamps.reply_queue_stamp(name).await?
    } else {
        None
    };
    let last_used = stamped.max(created);
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    Ok(last_used.is_some_and(|used| now.saturating_sub(used) >= idle.as_secs()))
}
