//! Sending one mail through Amazon SES (the v1 API, which LocalStack's free edition emulates): the
//! process's AWS configuration, so `AWS_ENDPOINT_URL` points it at LocalStack locally.

use aws_sdk_ses::types::{Body, Content, Destination, Message};
use tokio::sync::OnceCell;

use super::templates::Rendered;

#[derive(Debug, Clone)]
pub struct MailConfig {
    /// The sender, an identity verified in SES: `qbill <billing@example.com>`.
    pub from: String,
    /// The web client's base URL; links in mails point under it.
    pub web_url: String,
    /// SES's region when it is not the process's own.
    pub region: Option<String>,
}

impl MailConfig {
    /// The sender `scripts/local-stack` verifies in the local SES.
    pub const LOCAL_FROM: &str = "qbill <billing@qbill.local>";

    pub fn from_env() -> anyhow::Result<Self> {
        use crate::config::env_or;
        Ok(Self {
            from: env_or("QBILL_MAIL_FROM", Self::LOCAL_FROM.to_owned())?,
            web_url: env_or("QBILL_WEB_URL", "http://localhost:8080".to_owned())?,
            region: std::env::var("QBILL_SES_REGION")
                .ok()
                .filter(|r| !r.is_empty()),
        })
    }
}

impl Default for MailConfig {
    fn default() -> Self {
        Self {
            from: Self::LOCAL_FROM.to_owned(),
            web_url: "http://localhost:8080".to_owned(),
            region: None,
        }
    }
}

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

    /// Sends `mail` to `to`; returns SES's message id.
    pub async fn send(&self, to: &str, mail: &Rendered) -> anyhow::Result<String> {
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
                    .subject(content(&mail.subject))
                    .body(
                        Body::builder()
                            .text(content(&mail.text))
                            .html(content(&mail.html))
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
