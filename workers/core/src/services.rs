//! What every route works with, built once per process: the Postgres pool, the optional Redis
//! cache, the token keys, the bounded password checks and the metrics.

use std::sync::Arc;

use anyhow::Context;
use deadpool_postgres::Pool;

use crate::cache::Cache;
use crate::config::EngineConfig;
use crate::metrics::Metrics;
use crate::password::Passwords;
use crate::token::Tokens;
use crate::{managed, store};

pub struct Services {
    pub store: Pool,
    pub cache: Cache,
    pub tokens: Tokens,
    /// Password checks, a bounded number at once.
    pub passwords: Passwords,
    pub metrics: Arc<Metrics>,
}

impl Services {
    /// Builds the services once per process: the pool, the cache and the token keys, fetching
    /// whatever secrets the configuration names.
    pub async fn from_config(config: &EngineConfig) -> anyhow::Result<Self> {
        let redis_url = match (&config.redis_url, &config.redis_auth_secret_arn) {
            (Some(url), Some(arn)) => {
                let token = managed::secret(arn, None)
                    .await?
                    .context("the Redis auth secret has no value")?;
                Some(managed::redis_url_with_token(url, &token.value)?)
            }
            (url, _) => url.clone(),
        };
        Ok(Self::new(
            store::connect(&config.database, config.database_pool_size).await?,
            Cache::new(
                redis_url.as_ref(),
                &config.cache_prefix,
                config.cache_ttl,
                config.cache_timeout,
            )?,
            Tokens::from_config(config.jwt.clone()).await?,
            config.password_slots,
        ))
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
        }
    }
}
