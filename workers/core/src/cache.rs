//! The optional Redis cache of what handlers read.
//!
//! Keys are typed: `{prefix}:v4:utils:{apartment}`, `{prefix}:v4:histories:{apartment}`. An
//! apartment's entries carry the apartment's row version they were read at, which every payment
//! bumps in its own transaction. A reader gets the current version from Postgres (it must check
//! ownership there anyway; the two lookups run at once) and only ever uses an entry of that
//! version, so a stale entry cannot be served, whatever Redis did or missed. A payment deletes the
//! apartment's entries after it commits; if that delete is lost, the old entry is ignored, then
//! replaced, or expires by TTL.
//!
//! Redis is never required: every failure or slow answer is logged and the caller reads Postgres.

use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::types::{ApartmentId, UserId};

/// Bumped when the shape of a cached value changes, so old entries are never misread.
const SCHEMA: &str = "v4";
/// After a failed connection attempt, the next one waits this long; requests meanwhile skip Redis.
const RECONNECT_PAUSE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheKey {
    /// The unpaid bills and totals of an apartment (versioned).
    Utils { apartment: ApartmentId },
    /// The settled bills of an apartment (versioned).
    Histories { apartment: ApartmentId },
    /// The apartments a user owns.
    Apartments { user: UserId },
}

impl CacheKey {
    fn render(&self, prefix: &str) -> String {
        match self {
            Self::Utils { apartment } => format!("{prefix}:{SCHEMA}:utils:{apartment}"),
            Self::Histories { apartment } => format!("{prefix}:{SCHEMA}:histories:{apartment}"),
            Self::Apartments { user } => format!("{prefix}:{SCHEMA}:apartments:{user}"),
        }
    }
}

/// A value with the row version it was read at.
#[derive(Serialize, Deserialize)]
struct Versioned<T> {
    version: i64,
    value: T,
}

/// Redis could not be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Redis is unavailable")]
pub struct Unavailable;

/// `url`, with the auth token of the secret `auth_secret_arn` (ElastiCache's) put in.
pub async fn redis_url(
    url: Option<&SecretString>,
    auth_secret_arn: Option<&str>,
) -> anyhow::Result<Option<SecretString>> {
    Ok(match (url, auth_secret_arn) {
        (Some(url), Some(arn)) => {
            let token = crate::managed::secret(arn, None)
                .await?
                .ok_or_else(|| anyhow::anyhow!("the Redis auth secret has no value"))?;
            Some(crate::managed::redis_url_with_token(url, &token.value)?)
        }
        (url, _) => url.cloned(),
    })
}

pub struct Cache {
    prefix: String,
    ttl: Duration,
    timeout: Duration,
    redis: Option<Redis>,
}

struct Redis {
    client: redis::Client,
    connection: Mutex<Connection>,
}

enum Connection {
    Ready(ConnectionManager),
    Down { retry_at: Instant },
}

impl Cache {
    /// A cache over `url`, or a cache that is always empty when `url` is `None`.
    pub fn new(
        url: Option<&SecretString>,
        prefix: &str,
        ttl: Duration,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let redis = match url {
            Some(url) => Some(Redis {
                client: redis::Client::open(url.expose_secret())?,
                connection: Mutex::new(Connection::Down {
                    retry_at: Instant::now(),
                }),
            }),
            None => None,
        };
        Ok(Self {
            prefix: prefix.to_owned(),
            ttl,
            timeout,
            redis,
        })
    }

    /// The cache as the environment configures it, apart from an engine (the reply-queue
    /// sweeper's): `REDIS_URL`, `QBILL_REDIS_AUTH_SECRET_ARN`, `QBILL_CACHE_PREFIX`,
    /// `QBILL_CACHE_TIMEOUT_MS`.
    pub async fn from_env() -> anyhow::Result<Self> {
        let s: crate::settings::CacheSettings = crate::settings::from_env()?;
        let url = crate::settings::given(&s.redis_url).map(SecretString::from);
        let arn = crate::settings::given(&s.redis_auth_secret_arn);
        let url = redis_url(url.as_ref(), arn.as_deref()).await?;
        Self::new(
            url.as_ref(),
            &s.cache_prefix,
            Duration::ZERO,
            Duration::from_millis(s.cache_timeout_ms),
        )
    }

    /// Whether a Redis is configured at all.
    pub fn enabled(&self) -> bool {
        self.redis.is_some()
    }

    /// Records that the reply queue `name` got a reply now; the record lasts `idle`. A failure is
    /// logged and costs only the record.
    pub async fn stamp_reply_queue(&self, name: &str, idle: Duration) {
        let Some(mut connection) = self.connection().await else {
            return;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let key = self.reply_queue_key(name);
        let _: Option<()> = self
            .bounded(connection.set_ex(key, now, idle.as_secs().max(1)))
            .await;
    }

    /// When the reply queue `name` last got a reply (Unix seconds), if within its record's life;
    /// `Err` when Redis cannot be asked, so nobody can tell.
    pub async fn reply_queue_stamp(&self, name: &str) -> Result<Option<u64>, Unavailable> {
        let mut connection = self.connection().await.ok_or(Unavailable)?;
        let key = self.reply_queue_key(name);
        match tokio::time::timeout(self.timeout, connection.get::<_, Option<u64>>(key)).await {
            Ok(Ok(stamp)) => Ok(stamp),
            _ => Err(Unavailable),
        }
    }

    fn reply_queue_key(&self, name: &str) -> String {
        format!("{}:last-reply:{name}", self.prefix)
    }

    pub fn disabled() -> Self {
        Self {
            prefix: String::new(),
            ttl: Duration::ZERO,
            timeout: Duration::ZERO,
            redis: None,
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, key: CacheKey) -> Option<T> {
        let found = self.read(key).await;
        crate::metrics::cache_read(found.is_some());
        found
    }

    async fn read<T: DeserializeOwned>(&self, key: CacheKey) -> Option<T> {
        let mut connection = self.connection().await?;
        let rendered = key.render(&self.prefix);
        let raw: Option<String> = self.bounded(connection.get(&rendered)).await?;
        match serde_json::from_str(raw.as_deref()?) {
            Ok(value) => Some(value),
            Err(e) => {
                tracing::warn!(cache.key = %rendered, cache.error = %e, "unreadable cache entry ignored");
                None
            }
        }
    }

    /// A versioned entry and the version it was read at; the caller uses it only if that is the
    /// current version.
    pub async fn get_versioned<T: DeserializeOwned>(&self, key: CacheKey) -> Option<(i64, T)> {
        self.get::<Versioned<T>>(key)
            .await
            .map(|entry| (entry.version, entry.value))
    }

    pub async fn put<T: Serialize>(&self, key: CacheKey, value: &T) {
        let Some(mut connection) = self.connection().await else {
            return;
        };
        let Ok(raw) = serde_json::to_string(value) else {
            return;
        };
        let seconds = self.ttl.as_secs().max(1);
        let _: Option<()> = self
            .bounded(connection.set_ex(key.render(&self.prefix), raw, seconds))
            .await;
    }

    /// Stores `value` as read at `version`.
    pub async fn put_versioned<T: Serialize>(&self, key: CacheKey, version: i64, value: &T) {
        self.put(key, &Versioned { version, value }).await;
    }

    pub async fn forget(&self, keys: &[CacheKey]) {
        let Some(mut connection) = self.connection().await else {
            return;
        };
        let rendered: Vec<String> = keys.iter().map(|k| k.render(&self.prefix)).collect();
        let _: Option<()> = self.bounded(connection.del(rendered)).await;
    }

    /// Runs one Redis call within the timeout; a failure is logged and becomes `None`.
    async fn bounded<T>(&self, call: impl Future<Output = redis::RedisResult<T>>) -> Option<T> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(e)) => {
                tracing::warn!(cache.error = %e, "cache call failed; answering from Postgres");
                None
            }
            Err(_) => {
                tracing::warn!(
                    cache.error = "timeout",
                    "cache call timed out; answering from Postgres"
                );
                None
            }
        }
    }

    /// The shared connection, opened on first use and reopened after Redis was unreachable.
    async fn connection(&self) -> Option<ConnectionManager> {
        let redis = self.redis.as_ref()?;
        let mut state = redis.connection.lock().await;
        match &*state {
            Connection::Ready(manager) => return Some(manager.clone()),
            Connection::Down { retry_at } if Instant::now() < *retry_at => return None,
            Connection::Down { .. } => {}
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1);
        let opened = tokio::time::timeout(
            self.timeout * 4,
            ConnectionManager::new_with_config(redis.client.clone(), config),
        )
        .await;
        match opened {
            Ok(Ok(manager)) => {
                *state = Connection::Ready(manager.clone());
                Some(manager)
            }
            failed => {
                let reason = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timeout".to_owned(),
                };
                tracing::warn!(cache.error = %reason, "Redis unreachable; answering from Postgres");
                *state = Connection::Down {
                    retry_at: Instant::now() + RECONNECT_PAUSE,
                };
                None
            }
        }
    }
}
