//! How a simulated client reaches the engine: through the gateway's HTTP contract, or straight on
//! SQS with the messages shaped as the gateway shapes them (to measure the workers alone).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use aws_sdk_sqs::types::MessageAttributeValue;
use qbill_core::envelope::{AUTHORIZATION_MARKER, attribute};
use qbill_core::types::QueueName;
use serde::Deserialize;
use tokio::sync::RwLock;
use uuid::Uuid;

/// One request as a client sends it.
pub struct Outgoing<'a> {
    /// `auth`, `utils`, `histories` or `payments` (and the chaos operator's `refund` and
    /// `payments_external`).
    pub route: &'static str,
    pub apartment: Option<i64>,
    /// The payment of the path (a refund's).
    pub payment: Option<Uuid>,
    pub token: Option<&'a str>,
    /// The JSON body, `queue_name` and `request_id` included.
    pub body: String,
}

impl Outgoing<'_> {
    /// The message attributes the gateway's integration sets, by name.
    pub fn attributes(&self) -> Vec<(&'static str, String)> {
        let mut attributes = vec![
            (attribute::ROUTE, self.route.to_owned()),
            (attribute::GATEWAY_REQUEST_ID, Uuid::new_v4().to_string()),
            (
                attribute::REQUEST_TIME,
                chrono::Utc::now().timestamp_millis().to_string(),
            ),
        ];
        if let Some(apartment) = self.apartment {
            attributes.push((attribute::APARTMENT_ID, apartment.to_string()));
        }
        if let Some(payment) = self.payment {
            attributes.push((attribute::PAYMENT_ID, payment.to_string()));
        }
        // Every route but a login takes the token's header (sent empty without one).
        if self.apartment.is_some() || self.token.is_some() {
            let header = self
                .token
                .map(|t| format!("Bearer {t}"))
                .unwrap_or_default();
            attributes.push((
                attribute::AUTHORIZATION,
                format!("{AUTHORIZATION_MARKER}{header}"),
            ));
        }
        attributes
    }
}

/// The parts of a reply the harness reads; the rest (bills, histories) is skipped unread.
#[derive(Debug, Deserialize)]
pub struct ReplyHead {
    pub request_id: Option<Uuid>,
    pub status: String,
    pub error: Option<ErrorHead>,
    pub data: Option<DataHead>,
}

#[derive(Debug, Deserialize)]
pub struct ErrorHead {
    pub code: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct DataHead {
    pub token: Option<String>,
    /// A login's: when its token stops working.
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    pub payment_id: Option<Uuid>,
    pub total: Option<rust_decimal::Decimal>,
    pub refund_id: Option<Uuid>,
}

#[derive(Deserialize)]
struct Replies {
    replies: Vec<ReplyHead>,
}

/// A request the transport could not hand over; recorded under this code.
#[derive(Debug)]
pub struct Refused(pub String);

pub enum Transport {
    Gateway {
        http: reqwest::Client,
        base: String,
    },
    Sqs {
        client: aws_sdk_sqs::Client,
        request_queue_url: String,
        reply_prefix: String,
        /// Reply queue URLs by queue name, created before the run.
        replies: RwLock<HashMap<QueueName, String>>,
    },
}

impl Transport {
    pub fn gateway(base: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1024)
            // LocalStack's gateway checks the required `Authorization` header's name
            // case-sensitively (AWS does not).
            .http1_title_case_headers()
            .build()?;
        Ok(Self::Gateway {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    pub async fn sqs(request_queue: &str, reply_prefix: &str) -> anyhow::Result<Self> {
        let client = qbill_sqs::client().await;
        let request_queue_url = qbill_sqs::queue_url(&client, request_queue).await?;
        Ok(Self::Sqs {
            client,
            request_queue_url,
            reply_prefix: reply_prefix.to_owned(),
            replies: RwLock::default(),
        })
    }

    pub fn describe(&self) -> String {
        match self {
            Transport::Gateway { base, .. } => format!("gateway {base}"),
            Transport::Sqs {
                request_queue_url, ..
            } => format!("SQS {request_queue_url}"),
        }
    }

    /// Gets a client's reply queue ready. Through the gateway there is nothing to do: the worker
    /// creates it with the first reply. On SQS the harness creates it, as it reads it directly.
    pub async fn prepare(&self, queue: QueueName) -> anyhow::Result<()> {
        let Transport::Sqs {
            client,
            reply_prefix,
            replies,
            ..
        } = self
        else {
            return Ok(());
        };
        let url = client
            .create_queue()
            .queue_name(queue.sqs_name(reply_prefix))
            .send()
            .await
            .context("creating a reply queue")?
            .queue_url
            .context("a created queue without a URL")?;
        replies.write().await.insert(queue, url);
        Ok(())
    }

    /// Hands a request over: the gateway must answer 202, SQS must accept the message.
    pub async fn send(&self, request: Outgoing<'_>) -> Result<(), Refused> {
        match self {
            Transport::Gateway { http, base } => {
                let path = match (request.route, request.apartment, request.payment) {
                    ("refund", _, Some(payment)) => format!("{base}/payments/{payment}/refund"),
                    ("payments_external", Some(apartment), _) => {
                        format!("{base}/apartments/{apartment}/payments/external")
                    }
                    (route, Some(apartment), _) => format!("{base}/apartments/{apartment}/{route}"),
                    (route, None, _) => format!("{base}/{route}"),
                };
                let mut post = http
                    .post(path)
                    .header("content-type", "application/json")
                    .body(request.body);
                if let Some(token) = request.token {
                    post = post.bearer_auth(token);
                }
                let response = post.send().await.map_err(|e| {
                    Refused(
                        if e.is_timeout() {
                            "http_timeout"
                        } else {
                            "http_failed"
                        }
                        .into(),
                    )
                })?;
                match response.status().as_u16() {
                    202 => Ok(()),
                    status => Err(Refused(format!("http_{status}"))),
                }
            }
            Transport::Sqs {
                client,
                request_queue_url,
                ..
            } => {
                let mut send = client.send_message().queue_url(request_queue_url);
                for (name, value) in request.attributes() {
                    // The gateway sends the request time as a number, everything else as text.
                    let kind = if name == attribute::REQUEST_TIME {
                        "Number"
                    } else {
                        "String"
                    };
                    let value = MessageAttributeValue::builder()
                        .data_type(kind)
                        .string_value(value)
                        .build()
                        .expect("an attribute with a type and a value");
                    send = send.message_attributes(name, value);
                }
                send = send.message_body(request.body);
                send.send()
                    .await
                    .map(|_| ())
                    .map_err(|_| Refused("sqs_send_failed".into()))
            }
        }
    }

    /// One long poll of a client's reply queue; returns the replies read (and, on SQS, deleted).
    /// An empty answer may come at once (through the gateway, before the queue exists).
    pub async fn poll(&self, queue: QueueName, wait_seconds: u8) -> anyhow::Result<Vec<ReplyHead>> {
        match self {
            Transport::Gateway { http, base } => {
                let response = http
                    .get(format!("{base}/replies/{queue}?wait={wait_seconds}"))
                    .send()
                    .await?;
                let status = response.status();
                let body = response.bytes().await?;
                anyhow::ensure!(
                    status.is_success(),
                    "GET /replies answered {status}: {}",
                    String::from_utf8_lossy(&body)
                );
                let replies: Replies = serde_json::from_slice(&body)
                    .context("GET /replies answered without a replies list")?;
                Ok(replies.replies)
            }
            Transport::Sqs {
                client, replies, ..
            } => {
                let url = replies
                    .read()
                    .await
                    .get(&queue)
                    .cloned()
                    .context("a reply queue that was not prepared")?;
                let out = client
                    .receive_message()
                    .queue_url(&url)
                    .max_number_of_messages(10)
                    .wait_time_seconds(i32::from(wait_seconds))
                    .send()
                    .await?;
                let messages = out.messages.unwrap_or_default();
                if messages.is_empty() {
                    return Ok(Vec::new());
                }
                // Deleting is tidiness, not correctness: a reply read twice is matched once.
                let receipts = messages.iter().filter_map(|m| m.receipt_handle.clone());
                let _ = qbill_sqs::delete_batch(client, &url, receipts).send().await;
                Ok(messages
                    .into_iter()
                    .filter_map(|m| serde_json::from_str(m.body.as_deref()?).ok())
                    .collect())
            }
        }
    }

    /// Deletes the reply queues the harness created (SQS mode only).
    pub async fn cleanup(&self) {
        if let Transport::Sqs {
            client, replies, ..
        } = self
        {
            for url in replies.write().await.drain().map(|(_, url)| url) {
                let _ = client.delete_queue().queue_url(url).send().await;
            }
        }
    }
}
