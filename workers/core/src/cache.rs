//! The optional Redis cache of what handlers read.
//!
//! Keys are typed and versioned: `{prefix}:v1:utils:{apartment}:{version}`, where `version` is the
//! apartment's row version that every payment bumps in its own transaction. A reader looks up the
//! version in Postgres (it must check ownership there anyway) and only ever reads entries of the
//! current version, so a stale entry cannot be served, whatever Redis did or missed. Entries of old
//! versions are deleted after a payment commits and expire by TTL if that delete is lost.
//!
//! Redis is never required: every failure or slow answer is logged and the caller reads Postgres.

use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;

use crate::types::{ApartmentId, UserId};

/// Bumped when the shape of a cached value changes, so old entries are never misread.
const SCHEMA: &str = "v1";
/// After a failed connection attempt, the next one waits this long; requests meanwhile skip Redis.
const RECONNECT_PAUSE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheKey {
    /// The unpaid bills and totals of an apartment at a version.
    Utils {
        apartment: ApartmentId,
        version: i64,
    },
    /// The settled bills of an apartment at a version.
    Histories {
        apartment: ApartmentId,
        version: i64,
    },
    /// The apartments a user owns.
    Apartments { user: UserId },
}

impl CacheKey {
    fn render(&self, prefix: &str) -> String {
        match self {
            Self::Utils { apartment, version } => {
                format!("{prefix}:{SCHEMA}:utils:{apartment}:{version}")
            }
            Self::Histories { apartment, version } => {
                format!("{prefix}:{SCHEMA}:histories:{apartment}:{version}")
            }
            Self::Apartments { user } => format!("{prefix}:{SCHEMA}:apartments:{user}"),
        }
    }
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

    pub fn disabled() -> Self {
        Self {
            prefix: String::new(),
            ttl: Duration::ZERO,
            timeout: Duration::ZERO,
            redis: None,
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, key: CacheKey) -> Option<T> {
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
