//! Reply queues: one per client, named `{prefix}{queue_name}`, created the first time a reply to
//! a request that may have one made is due (it carried a valid token for that queue, proved a
//! secret or was counted by its route's throttle: [`qbill_core::routes::Ran::vouched`]), and
//! remembered by URL. Any other reply goes only to a queue that exists. When a queue last got a reply is stamped in Redis
//! (`{cache prefix}:last-reply:{queue}`, lasting the idle time), at most every [`STAMP_EVERY`] per
//! queue and process, which tells the sweeper it is in use. Not in a queue tag: SQS allows few
//! tagging calls per second per account, and thousands of clients would exceed them.
//!
//! A queue is created untagged (tagging at creation needs the same rate-limited right; the
//! prefix is what marks a reply queue) and, where the deployment names its ARN
//! (`QBILL_REPLY_QUEUE_ARN_PREFIX`), with a policy that refuses every call not made over TLS.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::operation::send_message::SendMessageError;
use aws_sdk_sqs::types::QueueAttributeName;
use qbill_core::cache::Cache;
use qbill_core::types::QueueName;

use crate::config::SqsConfig;

/// Remembered queues before the memory is cleared; clients come and go.
const REMEMBERED: usize = 100_000;
/// How often one process refreshes a queue's last-reply stamp.
pub const STAMP_EVERY: Duration = Duration::from_secs(60);

/// What became of a reply that could be handed to SQS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// On the client's queue.
    Delivered,
    /// The queue does not exist and the request may not create it: nobody to tell.
    NoQueue,
}

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
    /// How long a stamp lasts: the sweeper's idle time.
    idle: Duration,
    /// `arn:…:sqs:region:account:` plus the prefix, for the TLS-only policy.
    arn_prefix: Option<String>,
    /// Queue URL and when this process last stamped it.
    known: Mutex<HashMap<QueueName, (String, Instant)>>,
}

impl ReplyQueues {
    pub fn new(client: Client, config: &SqsConfig) -> Self {
        Self {
            client,
            prefix: config.reply_queue_prefix.clone(),
            retention_seconds: config.reply_retention_seconds,
            idle: Duration::from_secs(config.reply_idle_seconds),
            arn_prefix: config.reply_queue_arn_prefix.clone(),
            known: Mutex::default(),
        }
    }

    /// Sends `body` to the client's queue; if the queue is missing, creates it when `create`,
    /// else sends nothing ([`Sent::NoQueue`]).
    pub async fn send(
        &self,
        stamps: &Cache,
        queue: QueueName,
        body: String,
        create: bool,
    ) -> Result<Sent, SendError> {
        if !create && self.remembered(queue).is_none() && !self.look_up(queue).await? {
            return Ok(Sent::NoQueue);
        }
        let url = match self.remembered(queue) {
            Some((url, stamped)) if stamped.elapsed() < STAMP_EVERY => url,
            remembered => {
                // Stamped before the reply goes in, so a sweep never sees a fresh reply in a
                // queue that still looks idle; if the queue is gone, the send below recreates it.
                stamps
                    .stamp_reply_queue(&queue.sqs_name(&self.prefix), self.idle)
                    .await;
                match remembered {
                    Some((url, _)) => {
                        if let Some(entry) =
                            self.known.lock().expect("reply queues").get_mut(&queue)
                        {
                            entry.1 = Instant::now();
                        }
                        url
                    }
                    None => self.create(queue).await?,
                }
            }
        };
        match self
            .client
            .send_message()
            .queue_url(&url)
            .message_body(&body)
            .send()
            .await
        {
            Ok(_) => Ok(Sent::Delivered),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_queue_does_not_exist()) =>
            {
                // Deleted since we remembered it (the sweeper, an operator): make it again, if
                // this reply may.
                self.known.lock().expect("reply queues").remove(&queue);
                if !create {
                    return Ok(Sent::NoQueue);
                }
                let url = self.create(queue).await?;
                self.client
                    .send_message()
                    .queue_url(&url)
                    .message_body(body)
                    .send()
                    .await?;
                Ok(Sent::Delivered)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the client's queue exists; remembers it if it does.
    async fn look_up(&self, queue: QueueName) -> Result<bool, SendError> {
        let name = queue.sqs_name(&self.prefix);
        match self.client.get_queue_url().queue_name(&name).send().await {
            Ok(out) => {
                let url = out
                    .queue_url
                    .ok_or_else(|| anyhow::anyhow!("SQS returned no URL for {name}"))?;
                self.remember(queue, url);
                Ok(true)
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_queue_does_not_exist()) =>
            {
                Ok(false)
            }
            Err(e) => Err(SendError::Failed(anyhow::anyhow!(
                "{}",
                aws_sdk_sqs::error::DisplayErrorContext(e)
            ))),
        }
    }

    fn remember(&self, queue: QueueName, url: String) {
        let mut known = self.known.lock().expect("reply queues");
        if known.len() >= REMEMBERED {
            known.clear();
        }
        // Not stamped yet: the first send stamps it.
        let stale = Instant::now()
            .checked_sub(STAMP_EVERY)
            .unwrap_or_else(Instant::now);
        known.insert(queue, (url, stale));
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
        let mut create = self.client.create_queue().queue_name(&name).attributes(
            QueueAttributeName::MessageRetentionPeriod,
            self.retention_seconds.to_string(),
        );
        if let Some(arn_prefix) = &self.arn_prefix {
            let arn = format!("{arn_prefix}{queue}");
            create = create.attributes(QueueAttributeName::Policy, tls_only_policy(&arn));
        }
        let created = create.send().await;
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
        let mut known = self.known.lock().expect("reply queues");
        if known.len() >= REMEMBERED {
            known.clear();
        }
        known.insert(queue, (url.clone(), Instant::now()));
        Ok(url)
    }
}

/// A queue policy that denies every call to the queue `arn` not made over TLS.
pub fn tls_only_policy(arn: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "DenyWithoutTls",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "sqs:*",
            "Resource": arn,
            "Condition": { "Bool": { "aws:SecureTransport": "false" } }
        }]
    })
    .to_string()
}
