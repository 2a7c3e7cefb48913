//! Sending one mail through Amazon SES (the v1 API, which LocalStack's free edition emulates): the
//! process's AWS configuration, so `AWS_ENDPOINT_URL` points it at LocalStack locally.

use aws_sdk_ses::types::{Body, Content, Destination, Message};
use tokio::sync::OnceCell;

pub use crate::config::MailConfig;

/// Sends mail; the SES client is built on first use.
pub struct Mailer {
    pub config: MailConfig,
    client: OnceCell<aws_sdk_ses::Client>,
}

impl Mailer {
    pub fn new(config: MailConfig) -> Self {
        Self {
            config,
            client: OnceCell::new(),
        }
    }

    async fn client(&self) -> &aws_sdk_ses::Client {
        self.client
            .get_or_init(|| async {
                let sdk = crate::managed::sdk().await;
                let mut builder = aws_sdk_ses::config::Builder::from(sdk);
                if let Some(region) = &self.config.region {
                    builder = builder.region(aws_sdk_ses::config::Region::new(region.clone()));
                }
                aws_sdk_ses::Client::from_conf(builder.build())
            })
            .await
    }

    /// Sends a mail of `subject`, a plain-text and an HTML body to `to`; returns SES's message id.
    pub async fn send(
        &self,
        to: &str,
        subject: &str,
        text: &str,
        html: &str,
    ) -> anyhow::Result<String> {
        let content = |text: &str| {
            Content::builder()
                .data(text)
                .charset("UTF-8")
                .build()
                .expect("data is set")
        };
        let sent = self
            .client()
            .await
            .send_email()
            .source(&self.config.from)
            .destination(Destination::builder().to_addresses(to).build())
            .message(
                Message::builder()
                    .subject(content(subject))
                    .body(
                        Body::builder()
                            .text(content(text))
                            .html(content(html))
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}", aws_sdk_ses::error::DisplayErrorContext(e)))?;
        Ok(sent.message_id)
    }
}
