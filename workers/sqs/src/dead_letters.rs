//! The dead-letter queue, for operators: what landed there, and sending it back.
//!
//! A message that failed transiently on every one of the redrive policy's receives is moved there
//! by SQS. Listing shows what each one was (route, request id, apartment, receives), never its
//! body: an auth request carries a password. Redriving sends each message, body and attributes
//! unchanged, back to the request queue and then deletes it from the dead-letter queue; a repeat
//! is harmless, since requests are idempotent.

use std::collections::HashSet;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use qbill_core::envelope::attribute;
use serde::Serialize;

/// What an operator sees of a dead letter.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub message_id: String,
    pub route: Option<String>,
    pub request_id: Option<String>,
    pub apartment_id: Option<String>,
    pub receive_count: Option<u32>,
    pub body_bytes: usize,
}

impl DeadLetter {
    fn from_message(message: &Message) -> Self {
        let attribute = |name: &str| {
            message
                .message_attributes
                .as_ref()?
                .get(name)?
                .string_value
                .clone()
        };
        let body = message.body.as_deref().unwrap_or_default();
        let request_id = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("request_id")?.as_str().map(str::to_owned));
        Self {
            message_id: message.message_id.clone().unwrap_or_default(),
            route: attribute(attribute::ROUTE),
            request_id,
            apartment_id: attribute(attribute::APARTMENT_ID),
            receive_count: message
                .attributes
                .as_ref()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|c| c.parse().ok()),
            body_bytes: body.len(),
        }
    }
}

/// Why a queue's URL could not be had.
#[derive(Debug, thiserror::Error)]
pub enum QueueUrlError {
    /// A mistake to report, not an outage to wait out.
    #[error("the queue {0:?} does not exist")]
    Missing(String),
    #[error("SQS could not be asked for the queue {queue:?}: {reason}")]
    Unanswered { queue: String, reason: String },
}

/// The URL of a queue given by name or URL.
pub async fn queue_url(client: &Client, queue: &str) -> Result<String, QueueUrlError> {
    if queue.starts_with("http://") || queue.starts_with("https://") {
        return Ok(queue.to_owned());
    }
    let unanswered = |reason: String| QueueUrlError::Unanswered {
        queue: queue.to_owned(),
        reason,
    };
    let out = client
        .get_queue_url()
        .queue_name(queue)
        .send()
        .await
        .map_err(|e| match e.as_service_error() {
            Some(s) if s.is_queue_does_not_exist() => QueueUrlError::Missing(queue.to_owned()),
            _ => unanswered(aws_sdk_sqs::error::DisplayErrorContext(&e).to_string()),
        })?;
    out.queue_url
        .ok_or_else(|| unanswered("SQS returned no URL".to_owned()))
}

/// Up to `max` dead letters, without taking them off the queue.
pub async fn list(
    client: &Client,
    dead_letter_queue: &str,
    max: usize,
) -> anyhow::Result<Vec<DeadLetter>> {
    let mut seen = HashSet::new();
    let mut letters = Vec::new();
    // Receives with no invisibility see a sample each time; a few empty rounds end the listing.
    let mut empty_rounds = 0;
    while letters.len() < max && empty_rounds < 3 {
        let out = client
            .receive_message()
            .queue_url(dead_letter_queue)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .wait_time_seconds(1)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await?;
        let mut new = 0;
        for message in out.messages.unwrap_or_default() {
            let letter = DeadLetter::from_message(&message);
            if seen.insert(letter.message_id.clone()) && letters.len() < max {
                letters.push(letter);
                new += 1;
            }
        }
        empty_rounds = if new == 0 { empty_rounds + 1 } else { 0 };
    }
    Ok(letters)
}

/// Moves every dead letter back to `target`. Returns how many were moved.
pub async fn redrive(
    client: &Client,
    dead_letter_queue: &str,
    target: &str,
) -> anyhow::Result<usize> {
    let mut moved = 0;
    loop {
        let out = client
            .receive_message()
            .queue_url(dead_letter_queue)
            .max_number_of_messages(10)
            .visibility_timeout(60)
            .wait_time_seconds(1)
            .message_attribute_names("All")
            .send()
            .await?;
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            return Ok(moved);
        }
        for message in messages {
            // Sent first, deleted after: a failure in between leaves a copy, never a loss.
            client
                .send_message()
                .queue_url(target)
                .set_message_body(message.body.clone())
                .set_message_attributes(message.message_attributes.clone())
                .send()
                .await?;
            if let Some(receipt) = message.receipt_handle() {
                client
                    .delete_message()
                    .queue_url(dead_letter_queue)
                    .receipt_handle(receipt)
                    .send()
                    .await?;
            }
            moved += 1;
        }
    }
}
