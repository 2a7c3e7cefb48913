//! PostgreSQL: the pool every handler shares, the migrations, and which errors are worth a retry.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use secrecy::{ExposeSecret, SecretString};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

mod embedded {
    refinery::embed_migrations!("../../sql");
}

/// Builds the pool. No connection is opened until a handler asks for one.
pub fn pool(database_url: &SecretString, size: usize) -> anyhow::Result<Pool> {
    let config: tokio_postgres::Config = database_url.expose_secret().parse()?;
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(std::time::Duration::from_secs(10)))
        .create_timeout(Some(std::time::Duration::from_secs(5)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()?)
}

/// Applies the numbered migrations of `sql/` that the database has not seen yet.
/// Returns the names of those applied now.
pub async fn migrate(database_url: &SecretString) -> anyhow::Result<Vec<String>> {
    let (mut client, connection) =
        tokio_postgres::connect(database_url.expose_secret(), NoTls).await?;
    let connection = tokio::spawn(connection);
    // Two workers starting together must not both apply the same migration.
    client
        .execute("SELECT pg_advisory_lock(7251390)", &[])
        .await?;
    let report = embedded::migrations::runner().run_async(&mut client).await;
    client
        .execute("SELECT pg_advisory_unlock(7251390)", &[])
        .await?;
    drop(client);
    let _ = connection.await;
    Ok(report?
        .applied_migrations()
        .iter()
        .map(|m| m.to_string())
        .collect())
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
