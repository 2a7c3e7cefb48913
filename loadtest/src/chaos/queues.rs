//! The run's queues on the SQS emulator: the request queue and its dead-letter queue, made for
//! the run; waiting until the backlog has drained; reading what is left on a client's reply
//! queue and in the dead-letter queue.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::Context;
use aws_sdk_sqs::types::QueueAttributeName;
use qbill_core::types::QueueName;

use super::ChaosArgs;
use super::verdict::DeadLetters;
use crate::journal::{Journal, Read};
use crate::transport::Transport;

/// The run's request queue and its dead-letter queue.
pub struct RunQueues {
    /// The request queue's name: the workers reach SQS through a proxy, whose URLs differ.
    pub name: String,
    pub url: String,
    pub dead_letter_url: String,
}

pub async fn create(
    sqs: &aws_sdk_sqs::Client,
    run_id: &str,
    args: &ChaosArgs,
) -> anyhow::Result<RunQueues> {
    let name = format!("qbill-chaos-{run_id}");
    let dead = sqs
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await
        .context("creating the dead-letter queue")?
        .queue_url
        .context("a queue without a URL")?;
    let dead_arn = sqs
        .get_queue_attributes()
        .queue_url(&dead)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .context("the dead-letter queue's ARN")?;
    let redrive = serde_json::json!({
        "deadLetterTargetArn": dead_arn,
        "maxReceiveCount": args.max_receives.to_string(),
    });
    let url = sqs
        .create_queue()
        .queue_name(&name)
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            args.visibility.to_string(),
        )
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        .send()
        .await
        .context("creating the request queue")?
        .queue_url
        .context("a queue without a URL")?;
    Ok(RunQueues {
        name,
        url,
        dead_letter_url: dead,
    })
}

/// Waits until the request queue holds nothing, visible or in flight; `false` if it never does.
pub async fn drain(sqs: &aws_sdk_sqs::Client, url: &str, within: Duration) -> anyhow::Result<bool> {
    let deadline = Instant::now() + within;
    loop {
        if held(sqs, url).await? == 0 {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Reads a client's reply queue until it holds nothing, visible or not (a repeat answered late).
pub async fn read_to_the_end(
    sqs: &aws_sdk_sqs::Client,
    transport: &Transport,
    queue: QueueName,
    prefix: &str,
    journal: &Journal,
) -> anyhow::Result<()> {
    let url = qbill_sqs::queue_url(sqs, &queue.sqs_name(prefix)).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let replies = transport.poll(queue, 0).await?;
        for reply in &replies {
            journal.read(Read::of(queue, reply));
        }
        if !replies.is_empty() {
            continue;
        }
        if held(sqs, &url).await? == 0 || Instant::now() >= deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Messages in a queue, visible, in flight or delayed.
pub async fn held(sqs: &aws_sdk_sqs::Client, url: &str) -> anyhow::Result<u64> {
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await?
        .attributes
        .unwrap_or_default();
    Ok(attributes
        .values()
        .filter_map(|v| v.parse::<u64>().ok())
        .sum())
}

/// The request ids of everything in the dead-letter queue (read, not deleted).
pub async fn dead_letters(sqs: &aws_sdk_sqs::Client, url: &str) -> anyhow::Result<DeadLetters> {
    let mut dead = DeadLetters {
        requests: HashSet::new(),
        unreadable: 0,
    };
    loop {
        let messages = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(600)
            .send()
            .await?
            .messages
            .unwrap_or_default();
        if messages.is_empty() {
            return Ok(dead);
        }
        for message in messages {
            let id = message
                .body
                .as_deref()
                .and_then(|b| serde_json::from_str::<serde_json::Value>(b).ok())
                .and_then(|b| b["request_id"].as_str().and_then(|s| s.parse().ok()));
            match id {
                Some(id) => {
                    dead.requests.insert(id);
                }
                None => dead.unreadable += 1,
            }
        }
    }
}
