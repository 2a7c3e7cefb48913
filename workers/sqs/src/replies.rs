//! Reply queues: one per client, named `{prefix}{queue_name}`, created the first time a reply is
//! due and remembered by URL.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::QueueAttributeName;
use qbill_core::types::QueueName;

/// Remembered queue URLs before the memory is cleared; clients come and go.
const REMEMBERED: usize = 100_000;

pub struct ReplyQueues {
    client: Client,
    prefix: String,
    retention_seconds: u32,
    urls: Mutex<HashMap<QueueName, String>>,
}

impl ReplyQueues {
    pub fn new(client: Client, prefix: &str, retention_seconds: u32) -> Self {
        Self {
            client,
            prefix: prefix.to_owned(),
            retention_seconds,
            urls: Mutex::default(),
        }
    }

    /// Sends `body` to the client's queue, creating the queue if it is missing.
    pub async fn send(&self, queue: QueueName, body: String) -> anyhow::Result<()> {
        let url = match self.remembered(queue) {
            Some(url) => url,
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
                self.urls.lock().expect("reply queue map").remove(&queue);
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

    fn remembered(&self, queue: QueueName) -> Option<String> {
        self.urls
            .lock()
            .expect("reply queue map")
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
            .tags("qbill:role", "reply")
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
        let mut urls = self.urls.lock().expect("reply queue map");
        if urls.len() >= REMEMBERED {
            urls.clear();
        }
        urls.insert(queue, url.clone());
        Ok(url)
    }
}
