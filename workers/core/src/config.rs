//! Typed configuration: defaults in code, overridden by environment variables, checked at start.
//!
//! `DATABASE_URL` and `REDIS_URL` keep their conventional names; everything else is `QBILL_*`.

use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};

/// Reads `name`, falling back to `default` when unset or empty.
pub fn env_or<T: FromStr>(name: &str, default: T) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(raw) if !raw.trim().is_empty() => raw
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("{name}={raw:?} is not valid: {e}")),
        _ => Ok(default),
    }
}

/// Reads `name`, which must be set.
pub fn env_required(name: &str) -> anyhow::Result<String> {
    match std::env::var(name) {
        Ok(raw) if !raw.trim().is_empty() => Ok(raw.trim().to_owned()),
        _ => bail!("{name} must be set"),
    }
}

/// What the engine needs, whatever transport feeds it.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub database_url: SecretString,
    /// Connections in the Postgres pool; size it to the number of concurrent workers.
    pub database_pool_size: usize,
    /// `None` runs without a cache.
    pub redis_url: Option<SecretString>,
    /// Prefix of every cache key, so deployments and tests can share one Redis.
    pub cache_prefix: String,
    pub cache_ttl: Duration,
    /// How long Redis may take before a cache call is given up and Postgres answers alone.
    pub cache_timeout: Duration,
    pub jwt: JwtConfig,
}

#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// HMAC-SHA256 key, at least 32 bytes.
    pub secret: SecretString,
    pub issuer: String,
    pub audience: String,
    pub ttl: Duration,
}

impl JwtConfig {
    pub const MIN_SECRET_BYTES: usize = 32;

    pub fn new(secret: SecretString) -> anyhow::Result<Self> {
        if secret.expose_secret().len() < Self::MIN_SECRET_BYTES {
            bail!(
                "the JWT secret must be at least {} bytes",
                Self::MIN_SECRET_BYTES
            );
        }
        Ok(Self {
            secret,
            issuer: "qbill".into(),
            audience: "qbill-api".into(),
            ttl: Duration::from_secs(3600),
        })
    }
}

impl EngineConfig {
    pub fn from_env() -> anyhow::Result<Self> {
        let redis_url = std::env::var("REDIS_URL")
            .ok()
            .filter(|u| !u.trim().is_empty())
            .map(SecretString::from);
        let mut jwt =
            JwtConfig::new(env_required("QBILL_JWT_SECRET")?.into()).context("QBILL_JWT_SECRET")?;
        jwt.issuer = env_or("QBILL_JWT_ISSUER", jwt.issuer)?;
        jwt.audience = env_or("QBILL_JWT_AUDIENCE", jwt.audience)?;
        jwt.ttl = Duration::from_secs(env_or("QBILL_TOKEN_TTL_SECONDS", 3600)?);
        let config = Self {
            database_url: env_required("DATABASE_URL")?.into(),
            database_pool_size: env_or("QBILL_DATABASE_POOL_SIZE", 8)?,
            redis_url,
            cache_prefix: env_or("QBILL_CACHE_PREFIX", "qbill".to_owned())?,
            cache_ttl: Duration::from_secs(env_or("QBILL_CACHE_TTL_SECONDS", 300)?),
            cache_timeout: Duration::from_millis(env_or("QBILL_CACHE_TIMEOUT_MS", 250)?),
            jwt,
        };
        if config.database_pool_size == 0 {
            bail!("QBILL_DATABASE_POOL_SIZE must be at least 1");
        }
        Ok(config)
    }
}
