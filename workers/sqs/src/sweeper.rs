//! The reply-queue sweeper: deletes the reply queues nobody uses any more.
//!
//! A reply queue is in use while it holds any message (visible, in flight or delayed: a reply
//! that was read stays in flight until it expires) or while its `qbill:last-reply` stamp is
//! younger than the idle time. Only queues that are neither are deleted. Each queue is checked
//! just before it is deleted, deleting is idempotent, and a reply due to a swept queue recreates
//! it, so several workers may sweep at once.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::QueueAttributeName;

use crate::replies::LAST_REPLY_TAG;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    pub examined: usize,
    pub deleted: usize,
}

/// One sweep over the reply queues under `prefix`.
pub async fn sweep(client: &Client, prefix: &str, idle: Duration) -> anyhow::Result<SweepReport> {
    let mut report = SweepReport::default();
    let mut next = None;
    loop {
        let page = client
            .list_queues()
            .queue_name_prefix(prefix)
            .max_results(1000)
            .set_next_token(next)
            .send()
            .await?;
        for url in page.queue_urls.unwrap_or_default() {
            report.examined += 1;
            match idle_queue(client, &url, idle).await {
                Ok(true) => match client.delete_queue().queue_url(&url).send().await {
                    Ok(_) => {
                        report.deleted += 1;
                        tracing::info!(queue = %url, "idle reply queue deleted");
                    }
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|s| s.is_queue_does_not_exist()) => {}
                    Err(e) => {
                        tracing::warn!(queue = %url, error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "cannot delete")
                    }
                },
                Ok(false) => {}
                // Gone meanwhile (another sweeper), or unreadable: leave it.
                Err(e) => tracing::debug!(queue = %url, error = format!("{e:#}"), "not swept"),
            }
        }
        next = page.next_token;
        if next.is_none() {
            return Ok(report);
        }
    }
}

/// Empty, and last replied to (or created) longer than `idle` ago.
async fn idle_queue(client: &Client, url: &str, idle: Duration) -> anyhow::Result<bool> {
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
    let tags = client
        .list_queue_tags()
        .queue_url(url)
        .send()
        .await?
        .tags
        .unwrap_or_default();
    let last_used = tags
        .get(LAST_REPLY_TAG)
        .and_then(|t| t.parse::<u64>().ok())
        .or_else(|| number(&QueueAttributeName::CreatedTimestamp));
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    Ok(last_used.is_some_and(|used| now.saturating_sub(used) >= idle.as_secs()))
}
