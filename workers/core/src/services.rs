//! What every route works with, built once per process: the Postgres pool, the optional Redis
//! cache, the token keys, the bounded password checks and the metrics.

use std::sync::Arc;

use deadpool_postgres::Pool;

use crate::cache::Cache;
use crate::cognito::Cognito;
use crate::config::{
    AnonymousLimits, DocumentsConfig, EngineConfig, EventsConfig, MailConfig, PaymentsConfig,
};
use crate::documents::Files;
use crate::events::bus::Bus;
use crate::events::outbound::Outbound;
use crate::mail::Mailer;
use crate::metrics::Metrics;
use crate::password::Passwords;
use crate::processor::Processor;
use crate::store;
use crate::token::Tokens;

pub struct Services {
    pub store: Pool,
    pub cache: Cache,
    pub tokens: Tokens,
    /// Password checks, a bounded number at once.
    pub passwords: Passwords,
    pub metrics: Arc<Metrics>,
    /// Sends the outbox's mails.
    pub mail: Mailer,
    /// Sends text messages (SNS).
    pub sms: crate::notify::sms::Texter,
    /// With a Cognito user pool as identity: its ID tokens are accepted instead of the engine's.
    pub cognito: Option<Cognito>,
    pub anonymous: AnonymousLimits,
    /// Where documents are kept.
    pub files: Files,
    /// The payments processor; `None` in the ledger mode, where a payment settles when written.
    pub processor: Option<Arc<Processor>>,
    /// The client webhooks go out with, and where it may go.
    pub outbound: Outbound,
    /// The deployment's event bus, if it has one.
    pub bus: Option<Bus>,
}

impl Services {
    /// Builds the services once per process: the pool, the cache and the token keys, fetching
    /// whatever secrets the configuration names.
    pub async fn from_config(config: &EngineConfig) -> anyhow::Result<Self> {
        let redis_url = crate::cache::redis_url(
            config.redis_url.as_ref(),
            config.redis_auth_secret_arn.as_deref(),
        )
        .await?;
        let mut services = Self::new(
            store::connect_application(&config.database, config.database_pool_size).await?,
            Cache::new(
                redis_url.as_ref(),
                &config.cache_prefix,
                config.cache_ttl,
                config.cache_timeout,
            )?,
            Tokens::from_config(config.jwt.clone()).await?,
            config.password_slots,
        )
        .with_mail(config.mail.clone())
        .with_documents(config.documents.clone())
        .with_events(&config.events)
        .await;
        services.anonymous = config.anonymous;
        if let PaymentsConfig::Stripe(stripe) = &config.payments {
            services = services.with_processor(Processor::from_config(stripe).await?);
        }
        if let Some(cognito) = &config.cognito {
            services = services.with_cognito(Cognito::new(cognito.clone(), reqwest::Client::new()));
        }
        Ok(services)
    }

    /// Services over these parts, checking at most `password_slots` passwords at once.
    pub fn new(store: Pool, cache: Cache, tokens: Tokens, password_slots: usize) -> Self {
        let metrics = Arc::new(Metrics::default());
        Self {
            store,
            cache,
            tokens,
            passwords: Passwords::new(password_slots, metrics.clone()),
            metrics,
            mail: Mailer::new(MailConfig::default()),
            sms: Default::default(),
            cognito: None,
            anonymous: AnonymousLimits::default(),
            files: Files::new(DocumentsConfig::default()),
            processor: None,
            outbound: Outbound::new(false),
            bus: None,
        }
    }

    /// Webhooks allowed to loopback `http` (the local stack), and the bus.
    pub async fn with_events(mut self, config: &EventsConfig) -> Self {
        self.outbound = Outbound::new(config.allow_local);
        self.bus = match &config.bus {
            Some(name) => Some(Bus::new(name.clone()).await),
            None => None,
        };
        self
    }

    /// The same services, moving money through `processor`.
    pub fn with_processor(mut self, processor: Processor) -> Self {
        self.processor = Some(Arc::new(processor));
        self
    }

    /// The same services, keeping documents as `config` says.
    pub fn with_documents(mut self, config: DocumentsConfig) -> Self {
        self.files = Files::new(config);
        self
    }

    /// The same services, mailing as `config` says.
    pub fn with_mail(mut self, config: MailConfig) -> Self {
        self.mail = Mailer::new(config);
        self
    }

    /// The same services, taking a Cognito pool's ID tokens instead of the engine's own.
    pub fn with_cognito(mut self, cognito: Cognito) -> Self {
        self.cognito = Some(cognito);
        self
    }
}
