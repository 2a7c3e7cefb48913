//! PostgreSQL: the pool every handler shares, the migrations, and which errors are worth a retry.

use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use deadpool_postgres::{
    Hook, HookError, Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod,
};
use secrecy::{ExposeSecret, SecretString};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use crate::config::DatabaseConfig;
use crate::managed;

mod embedded {
    refinery::embed_migrations!("../../sql");
}

/// Connections older than this are closed when they come back to the pool: RDS IAM tokens only
/// matter when a connection opens, but credentials rotate and failovers move the endpoint.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(10 * 60);

/// A connection from the pool, for one request or job. How long it waited for the connection and
/// how long it holds it are measured (`qbill_db_pool_wait_seconds`, `qbill_transaction_seconds`).
pub async fn client(pool: &Pool) -> Result<Held, PoolError> {
    let asked = Instant::now();
    let object = pool.get().await?;
    crate::metrics::pool_waited(asked.elapsed());
    Ok(Held {
        object: Some(object),
        since: Instant::now(),
        in_transaction: false,
    })
}

/// A pooled connection that reports how long it was held when it goes back.
pub struct Held {
    /// Always there until dropped.
    object: Option<Object>,
    since: Instant,
    in_transaction: bool,
}

impl Held {
    /// Says whether a transaction the holder began by hand (a `BEGIN` sent with its first
    /// statements, to save a round trip) is open. Dropped while one is (a panic, a cancelled
    /// request), the connection is closed instead of going back to the pool, and the server rolls
    /// the transaction back: the next holder never finds itself inside it.
    pub fn set_in_transaction(&mut self, open: bool) {
        self.in_transaction = open;
    }
}

impl Deref for Held {
    type Target = deadpool_postgres::Client;

    fn deref(&self) -> &deadpool_postgres::Client {
        self.object.as_ref().expect("held until dropped")
    }
}

impl DerefMut for Held {
    fn deref_mut(&mut self) -> &mut deadpool_postgres::Client {
        self.object.as_mut().expect("held until dropped")
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        crate::metrics::connection_held(self.since.elapsed());
        if self.in_transaction
            && let Some(object) = self.object.take()
        {
            tracing::warn!("a connection left inside a transaction is closed, not reused");
            drop(Object::take(object));
        }
    }
}

/// Builds the pool for `database`. No connection is opened until a handler asks for one.
pub async fn connect(database: &DatabaseConfig, size: usize) -> anyhow::Result<Pool> {
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match database {
        DatabaseConfig::Url(url) => {
            Manager::from_config(url.expose_secret().parse()?, NoTls, manager_config)
        }
        DatabaseConfig::Rds(rds) => {
            let (config, connect) = managed::rds_connect(rds).await?;
            Manager::from_connect(config, connect, manager_config)
        }
    };
    Ok(Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(Duration::from_secs(10)))
        .create_timeout(Some(Duration::from_secs(5)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .post_recycle(Hook::sync_fn(|_, metrics| {
            if metrics.age() > MAX_CONNECTION_AGE {
                Err(HookError::Message(
                    "connection reached its maximum age".into(),
                ))
            } else {
                Ok(())
            }
        }))
        .build()?)
}

/// A pool over a plain URL (tests, tools).
pub fn pool(database_url: &SecretString, size: usize) -> anyhow::Result<Pool> {
    let manager = Manager::from_config(
        database_url.expose_secret().parse()?,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(manager)
        .max_size(size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()?)
}

/// Applies the numbered migrations of `sql/` that the database has not seen yet, on a connection
/// of `pool`. Returns the names of those applied now.
pub async fn migrate(pool: &Pool) -> anyhow::Result<Vec<String>> {
    let mut connection = pool.get().await?;
    let client: &mut tokio_postgres::Client = &mut connection;
    // Two workers starting together must not both apply the same migration.
    client
        .execute("SELECT pg_advisory_lock(7251390)", &[])
        .await?;
    let report = embedded::migrations::runner().run_async(client).await;
    client
        .execute("SELECT pg_advisory_unlock(7251390)", &[])
        .await?;
    Ok(report?
        .applied_migrations()
        .iter()
        .map(|m| m.to_string())
        .collect())
}

/// Migrates the database a deployment runs on, with the migration login, and then prepares the
/// application's login role for the way it logs in (on RDS). Used by `qbill migrate` and by the
/// Lambda's migrate event.
pub async fn migrate_deployment(app: &DatabaseConfig) -> anyhow::Result<Vec<String>> {
    let pool = connect(&app.for_migrations()?, 1).await?;
    let applied = migrate(&pool).await?;
    if let DatabaseConfig::Rds(rds) = app {
        managed::prepare_login(&pool, rds).await?;
    }
    Ok(applied)
}

/// Whether a failed statement may succeed if the message is tried again later: the connection
/// broke, the server is going away, or Postgres chose this transaction as a victim.
pub fn is_transient(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    let Some(code) = error.code() else {
        // No SQLSTATE: an I/O or protocol failure on the way to the server.
        return true;
    };
    let class = &code.code()[..2];
    matches!(class, "08" | "40" | "53" | "57" | "58")
        || *code == SqlState::LOCK_NOT_AVAILABLE
        || *code == SqlState::QUERY_CANCELED
}
