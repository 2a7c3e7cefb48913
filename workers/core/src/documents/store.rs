//! Where document files live: an S3 bucket (LocalStack's locally), written once per document and
//! read only through presigned links.

use std::time::{Duration, SystemTime};

use anyhow::Context;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use base64::Engine;
use chrono::{DateTime, Utc};
use tokio::sync::OnceCell;

pub use crate::config::DocumentsConfig;

/// The bucket, with an S3 client built on first use.
pub struct Files {
    pub config: DocumentsConfig,
    client: OnceCell<aws_sdk_s3::Client>,
}

/// A link to a file and when it stops working.
#[derive(Debug, Clone)]
pub struct Link {
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

impl Files {
    pub fn new(config: DocumentsConfig) -> Self {
        Self {
            config,
            client: OnceCell::new(),
        }
    }

    /// The bucket, or `None` when none is configured.
    pub fn bucket(&self) -> Option<&str> {
        self.config.bucket.as_deref()
    }

    async fn client(&self) -> &aws_sdk_s3::Client {
        self.client
            .get_or_init(|| async {
                let sdk = crate::managed::sdk().await;
                // An emulator at a plain address (LocalStack) has no bucket host names.
                let builder = aws_sdk_s3::config::Builder::from(sdk)
                    .force_path_style(sdk.endpoint_url().is_some());
                aws_sdk_s3::Client::from_conf(builder.build())
            })
            .await
    }

    fn configured_bucket(&self) -> anyhow::Result<&str> {
        self.bucket()
            .context("no documents bucket is configured (QBILL_DOCUMENTS_BUCKET)")
    }

    /// Writes a file; S3 checks it against its SHA-256 on the way in. A browser that opens the
    /// link saves it as `filename`.
    pub async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        sha256: &[u8; 32],
        content_type: &str,
        filename: &str,
    ) -> anyhow::Result<()> {
        let bucket = self.configured_bucket()?;
        self.client()
            .await
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .content_disposition(format!("attachment; filename=\"{filename}\""))
            .checksum_sha256(base64::engine::general_purpose::STANDARD.encode(sha256))
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("S3 PutObject {key}: {}", DisplayErrorContext(e)))?;
        Ok(())
    }

    /// A presigned GET of `key` working for `lifetime`, or less if the credentials that sign it
    /// expire sooner (a Lambda function's do): the link says when it really stops.
    pub async fn link(&self, key: &str, lifetime: Duration) -> anyhow::Result<Link> {
        let bucket = self.configured_bucket()?;
        let now = SystemTime::now();
        let mut until = now + lifetime;
        if let Some(provider) = crate::managed::sdk().await.credentials_provider() {
            use aws_sdk_s3::config::ProvideCredentials;
            let credentials = provider
                .provide_credentials()
                .await
                .context("AWS credentials to sign a document link")?;
            if let Some(expiry) = credentials.expiry() {
                until = until.min(expiry);
            }
        }
        let lifetime = until
            .duration_since(now)
            .ok()
            .filter(|d| !d.is_zero())
            .context("the AWS credentials have expired")?;
        let presigning = PresigningConfig::builder()
            .start_time(now)
            .expires_in(lifetime)
            .build()?;
        let request = self
            .client()
            .await
            .get_object()
            .bucket(bucket)
            .key(key)
            .presigned(presigning)
            .await
            .map_err(|e| anyhow::anyhow!("presigning {key}: {}", DisplayErrorContext(e)))?;
        Ok(Link {
            url: request.uri().to_owned(),
            expires_at: DateTime::<Utc>::from(until),
        })
    }
}
