//! The dead-letter queue, for operators: what landed there, and sending it back.
//!
//! A message that failed transiently on every one of the redrive policy's receives is moved there
//! by SQS. Listing shows what each one was (route, request id, apartment, receives), never its
//! body: an auth request carries a password. Redriving hands the dead-letter queue to SQS's own
//! message move task (`StartMessageMoveTask`, then `ListMessageMoveTasks` until it is over), which
//! moves every message, body and attributes unchanged, back to the request queue. Where SQS will
//! not run one (an emulator without the action, such as fauxqs 2.4), each message is received,
//! sent back and then deleted here instead. A repeat is harmless either way, since requests are
//! idempotent.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use anyhow::Context;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    ListMessageMoveTasksResultEntry, Message, MessageSystemAttributeName, QueueAttributeName,
};
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
            _ => unanswered(DisplayErrorContext(&e).to_string()),
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

/// How often a move task's progress is asked for.
const TASK_POLL: Duration = Duration::from_secs(1);

/// Which way the dead letters went back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Way {
    /// SQS's own message move task: SQS moves them at its pace, whether or not anyone watches.
    /// `joined`: one was already under way to the same queue, and it was followed instead.
    MoveTask { joined: bool },
    /// Received, sent and deleted here, one batch at a time, because SQS would not run a move
    /// task (why: the error it answered).
    Loop { because: String },
}

impl fmt::Display for Way {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MoveTask { joined: false } => write!(f, "by SQS's message move task"),
            Self::MoveTask { joined: true } => {
                write!(f, "by the message move task that was already under way")
            }
            Self::Loop { because } => write!(
                f,
                "by receive, send and delete (no message move task here: {because})"
            ),
        }
    }
}

/// Where a redrive stands: a move task's status as `ListMessageMoveTasks` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Running,
    Cancelling,
    Completed,
    Cancelled,
    Failed { reason: String },
}

impl Status {
    fn of_task(task: &ListMessageMoveTasksResultEntry) -> Self {
        match task.status() {
            Some("COMPLETED") => Self::Completed,
            Some("CANCELLING") => Self::Cancelling,
            Some("CANCELLED") => Self::Cancelled,
            Some("FAILED") => Self::Failed {
                reason: task.failure_reason().unwrap_or("none given").to_owned(),
            },
            // RUNNING, or a status newer than this code: keep watching.
            _ => Self::Running,
        }
    }

    /// Completed, cancelled or failed: nothing more will move.
    pub fn is_over(&self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Cancelled | Self::Failed { .. }
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Running => write!(f, "running"),
            Self::Cancelling => write!(f, "cancelling"),
            Self::Completed => write!(f, "completed"),
            Self::Cancelled => write!(f, "cancelled"),
            Self::Failed { reason } => write!(f, "failed: {reason}"),
        }
    }
}

/// How far a redrive has got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub moved: u64,
    /// About how many the dead-letter queue held when the redrive started, when SQS says.
    pub to_move: Option<u64>,
    pub status: Status,
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_move {
            Some(to_move) => write!(f, "moved {} of ~{to_move} ({})", self.moved, self.status),
            None => write!(f, "moved {} ({})", self.moved, self.status),
        }
    }
}

/// How a redrive ended, and which way it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redriven {
    pub way: Way,
    pub end: Progress,
}

/// Why a move task could not be used.
enum MoveTaskError {
    /// SQS (or the emulator standing in for it) does not run move tasks here: the loop will.
    Unsupported(String),
    /// Anything else, to report rather than work around.
    Refused(anyhow::Error),
}

/// Moves every dead letter back to `target`, reporting its progress as it goes: by SQS's own
/// message move task where the queue supports one, else by receiving, sending and deleting here.
/// A move task that fails or is cancelled is not an error here: `end.status` says so.
pub async fn redrive(
    client: &Client,
    dead_letter_queue: &str,
    target: &str,
    mut report: impl FnMut(&Progress),
) -> anyhow::Result<Redriven> {
    let source = queue_arn(client, dead_letter_queue).await?;
    let destination = queue_arn(client, target).await?;
    match start_or_join(client, &source, &destination).await {
        Ok(joined) => {
            let end = follow_task(client, &source, &mut report).await?;
            Ok(Redriven {
                way: Way::MoveTask { joined },
                end,
            })
        }
        Err(MoveTaskError::Unsupported(because)) => {
            let end = receive_send_delete(client, dead_letter_queue, target, &mut report).await?;
            Ok(Redriven {
                way: Way::Loop { because },
                end,
            })
        }
        Err(MoveTaskError::Refused(e)) => Err(e),
    }
}

/// The queue's ARN, which move tasks name queues by.
async fn queue_arn(client: &Client, queue_url: &str) -> anyhow::Result<String> {
    client
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}", DisplayErrorContext(&e)))
        .with_context(|| format!("SQS could not be asked for the ARN of {queue_url}"))?
        .attributes
        .and_then(|mut attributes| attributes.remove(&QueueAttributeName::QueueArn))
        .with_context(|| format!("SQS gave no ARN for {queue_url}"))
}

/// Starts a move task from `source` to `destination`, or finds one already moving the same
/// way (a redrive interrupted earlier: SQS runs one task per queue). Whether it joined one.
async fn start_or_join(
    client: &Client,
    source: &str,
    destination: &str,
) -> Result<bool, MoveTaskError> {
    let tasks = client
        .list_message_move_tasks()
        .source_arn(source)
        .max_results(1)
        .send()
        .await
        .map_err(|e| refusal(e, "list the move tasks"))?;
    if let Some(task) = tasks.results().first()
        && !Status::of_task(task).is_over()
    {
        return if task.destination_arn() == Some(destination) {
            Ok(true)
        } else {
            Err(MoveTaskError::Refused(anyhow::anyhow!(
                "a move task from {source} to {} is under way; wait for it or cancel it",
                task.destination_arn()
                    .unwrap_or("the messages' original queues")
            )))
        };
    }
    client
        .start_message_move_task()
        .source_arn(source)
        .destination_arn(destination)
        .send()
        .await
        .map_err(|e| refusal(e, "start a move task"))?;
    Ok(false)
}

/// Sorts an error of a move-task call into "use the loop" and "report it".
fn refusal<E>(e: SdkError<E, HttpResponse>, doing: &str) -> MoveTaskError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = e.as_service_error().and_then(|s| s.code());
    let status = e.raw_response().map(|r| r.status().as_u16());
    if unsupported(code, status) {
        MoveTaskError::Unsupported(format!(
            "{} answered to {doing}",
            code.map_or_else(
                || format!("HTTP {}", status.unwrap_or_default()),
                str::to_owned
            )
        ))
    } else {
        MoveTaskError::Refused(
            anyhow::anyhow!("{}", DisplayErrorContext(&e))
                .context(format!("SQS would not {doing}")),
        )
    }
}

/// Whether an error says that move tasks are not run here: an emulator without the action
/// (fauxqs 2.4 answers `InvalidAction`, LocalStack before 3.0 `InternalFailure` with HTTP 501),
/// or a queue SQS cannot run one on (`UnsupportedOperation`).
fn unsupported(code: Option<&str>, status: Option<u16>) -> bool {
    let code = code.map(|c| c.trim_start_matches("AWS.SimpleQueueService."));
    matches!(
        code,
        Some(
            "InvalidAction"
                | "UnknownOperation"
                | "UnknownOperationException"
                | "UnsupportedOperation"
                | "NotImplemented"
        )
    ) || status == Some(501)
}

/// Watches the latest move task of `source` (ours: SQS runs one at a time per queue) until it
/// is over.
async fn follow_task(
    client: &Client,
    source: &str,
    report: &mut impl FnMut(&Progress),
) -> anyhow::Result<Progress> {
    let mut unlisted = 0;
    loop {
        let tasks = client
            .list_message_move_tasks()
            .source_arn(source)
            .max_results(1)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}", DisplayErrorContext(&e)))
            .context("SQS could not be asked how the move task is going")?;
        match tasks.results().first() {
            Some(task) => {
                let progress = Progress {
                    moved: u64::try_from(task.approximate_number_of_messages_moved())
                        .unwrap_or_default(),
                    to_move: task
                        .approximate_number_of_messages_to_move()
                        .and_then(|n| u64::try_from(n).ok()),
                    status: Status::of_task(task),
                };
                report(&progress);
                if progress.status.is_over() {
                    return Ok(progress);
                }
            }
            // Listed a moment after it starts; never listed means something else is wrong.
            None if unlisted < 10 => unlisted += 1,
            None => anyhow::bail!("SQS lists no move task from {source} after starting one"),
        }
        tokio::time::sleep(TASK_POLL).await;
    }
}

/// The loop for queues without move tasks: receive a batch, send each back, delete it.
async fn receive_send_delete(
    client: &Client,
    dead_letter_queue: &str,
    target: &str,
    report: &mut impl FnMut(&Progress),
) -> anyhow::Result<Progress> {
    let mut progress = Progress {
        moved: 0,
        to_move: waiting(client, dead_letter_queue).await,
        status: Status::Running,
    };
    report(&progress);
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
            progress.status = Status::Completed;
            report(&progress);
            return Ok(progress);
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
            progress.moved += 1;
        }
        report(&progress);
    }
}

/// About how many messages wait in the queue, if SQS says.
async fn waiting(client: &Client, queue_url: &str) -> Option<u64> {
    client
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .ok()?
        .attributes?
        .get(&QueueAttributeName::ApproximateNumberOfMessages)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emulator_without_the_action_or_a_queue_without_move_tasks_falls_back_to_the_loop() {
        // fauxqs 2.4: `{"__type": "com.amazonaws.sqs#InvalidAction"}`, HTTP 400.
        assert!(unsupported(Some("InvalidAction"), Some(400)));
        // AWS, query-compatible code from the x-amzn-query-error header.
        assert!(unsupported(
            Some("AWS.SimpleQueueService.UnsupportedOperation"),
            Some(400)
        ));
        assert!(unsupported(Some("UnsupportedOperation"), Some(400)));
        // Older LocalStack: not yet implemented.
        assert!(unsupported(Some("InternalFailure"), Some(501)));
        assert!(unsupported(None, Some(501)));
    }

    #[test]
    fn other_refusals_are_reported_not_worked_around() {
        assert!(!unsupported(Some("AccessDenied"), Some(403)));
        assert!(!unsupported(Some("ResourceNotFoundException"), Some(404)));
        assert!(!unsupported(Some("InvalidParameterValue"), Some(400)));
        assert!(!unsupported(Some("RequestThrottled"), Some(400)));
        assert!(!unsupported(None, None));
    }

    #[test]
    fn progress_reads_as_moved_of_about_how_many() {
        let running = Progress {
            moved: 3,
            to_move: Some(10),
            status: Status::Running,
        };
        assert_eq!(running.to_string(), "moved 3 of ~10 (running)");
        let failed = Progress {
            moved: 0,
            to_move: None,
            status: Status::Failed {
                reason: "AWS.SimpleQueueService.NonExistentQueue".into(),
            },
        };
        assert_eq!(
            failed.to_string(),
            "moved 0 (failed: AWS.SimpleQueueService.NonExistentQueue)"
        );
    }
}
