//! Reply queues: one per client, named `{prefix}{queue_name}`, created the first time a reply is
//! due and remembered by URL. Each carries a `qbill:last-reply` tag (Unix seconds), refreshed at
//! most every [`STAMP_EVERY`] per queue and process, which tells the sweeper it is in use.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::operation::send_message::SendMessageError;
use aws_sdk_sqs::types::QueueAttributeName;
use qbill_core::types::QueueName;

/// Remembered queues before the memory is cleared; clients come and go.
const REMEMBERED: usize = 100_000;
/// How often one process refreshes a queue's last-reply stamp.
pub const STAMP_EVERY: Duration = Duration::from_secs(300);
/// The tags every reply queue carries.
pub const ROLE_TAG: &str = "qbill:role";
pub const LAST_REPLY_TAG: &str = "qbill:last-reply";

/// Why a reply was not sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// SQS will never take this message (too large, characters it does not allow): sending it
    /// again cannot help.
    #[error("SQS refused the reply")]
    Refused(#[source] anyhow::Error),
    /// SQS or the way to it failed; a later try may succeed.
    #[error("the reply could not be sent")]
    Failed(#[source] anyhow::Error),
}

impl From<SdkError<SendMessageError>> for SendError {
    fn from(e: SdkError<SendMessageError>) -> Self {
        let refused = e.as_service_error().is_some_and(|s| {
            s.is_invalid_message_contents()
                || s.code()
                    .is_some_and(|code| code.contains("InvalidParameterValue"))
        });
        let e = anyhow::anyhow!("{}", aws_sdk_sqs::error::DisplayErrorContext(e));
        if refused {
            Self::Refused(e)
        } else {
            Self::Failed(e)
        }
    }
}

impl From<anyhow::Error> for SendError {
    fn from(e: anyhow::Error) -> Self {
        Self::Failed(e)
    }
}

pub struct ReplyQueues {
    client: Client,
    prefix: String,
    retention_seconds: u32,
    /// Queue URL and when this process last stamped it.
    known: Mutex<HashMap<QueueName, (String, Instant)>>,
}

fn now_seconds() -> String {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
        .to_string()
}

impl ReplyQueues {
    pub fn new(client: Client, prefix: &str, retention_seconds: u32) -> Self {
        Self {
            client,
            prefix: prefix.to_owned(),
            retention_seconds,
            known: Mutex::default(),
        }
    }

    /// Sends `body` to the client's queue, creating the queue if it is missing.
    pub async fn send(&self, queue: QueueName, body: String) -> Result<(), SendError> {
        let url = match self.remembered(queue) {
            // Stamped before the reply goes in, so a sweep never sees a fresh reply in a queue
            // that still looks idle; if the queue is gone, the send below recreates it.
            Some((url, stamped)) if stamped.elapsed() >= STAMP_EVERY => {
                if self
                    .client
                    .tag_queue()
                    .queue_url(&url)
                    .tags(LAST_REPLY_TAG, now_seconds())
                    .send()
                    .await
                    .is_ok()
                    && let Some(entry) = self.known.lock().expect("reply queues").get_mut(&queue)
                {
                    entry.1 = Instant::now();
                }
                url
            }
            Some((url, _)) => url,
            None => self.create(queue).await?,
        };
        match self
            .client
            .send_message()
            .queue_url(&url)
            .message_body(&body)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_queue_does_not_exist()) =>
            {
                // Deleted since we remembered it (the sweeper, an operator): make it again.
                self.known.lock().expect("reply queues").remove(&queue);
                let url = self.create(queue).await?;
                self.client
                    .send_message()
                    .queue_url(&url)
                    .message_body(body)
                    .send()
                    .await?;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn remembered(&self, queue: QueueName) -> Option<(String, Instant)> {
        self.known
            .lock()
            .expect("reply queues")
            .get(&queue)
            .cloned()
    }

    /// CreateQueue is idempotent for the same attributes, so racing workers agree on one queue.
    async fn create(&self, queue: QueueName) -> anyhow::Result<String> {
        let name = queue.sqs_name(&self.prefix);
        let created = self
            .client
            .create_queue()
            .queue_name(&name)
            .attributes(
                QueueAttributeName::MessageRetentionPeriod,
                self.retention_seconds.to_string(),
            )
            .tags(ROLE_TAG, "reply")
            .tags(LAST_REPLY_TAG, now_seconds())
            .send()
            .await;
        let url = match created {
            Ok(out) => out.queue_url,
            // Exists with other attributes (an older configuration): use it as it is.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_queue_name_exists()) =>
            {
                self.client
                    .get_queue_url()
                    .queue_name(&name)
                    .send()
                    .await?
                    .queue_url
            }
            Err(e) => return Err(e.into()),
        };
        let url = url.ok_or_else(|| anyhow::anyhow!("SQS returned no URL for {name}"))?;
        // An existing queue keeps its old tags: stamp it now.
        self.client
            .tag_queue()
            .queue_url(&url)
            .tags(LAST_REPLY_TAG, now_seconds())
            .send()
            .await?;
        let mut known = self.known.lock().expect("reply queues");
        if known.len() >= REMEMBERED {
            known.clear();
        }
        known.insert(queue, (url.clone(), Instant::now()));
        Ok(url)
    }
}
