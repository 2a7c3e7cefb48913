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
    build(manager(database).await?, size, false)
}

/// The engine's pool for `database`: [`connect`], where every new connection is first checked to
/// be an application login ([`check_application_login`]); one that is not is closed and its
/// request fails, so a worker run as an owner or superuser cannot hide a missing grant.
pub async fn connect_application(database: &DatabaseConfig, size: usize) -> anyhow::Result<Pool> {
    build(manager(database).await?, size, true)
}

async fn manager(database: &DatabaseConfig) -> anyhow::Result<Manager> {
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    Ok(match database {
        DatabaseConfig::Url { url, .. } => {
            Manager::from_config(url.expose_secret().parse()?, NoTls, manager_config)
        }
        DatabaseConfig::Rds(rds) => {
            let (config, connect) = managed::rds_connect(rds).await?;
            Manager::from_connect(config, connect, manager_config)
        }
    })
}

fn build(manager: Manager, size: usize, application: bool) -> anyhow::Result<Pool> {
    let mut builder = Pool::builder(manager)
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
        }));
    if application {
        builder = builder.post_create(application_login());
    }
    Ok(builder.build()?)
}

/// The hook that refuses a new connection whose login is not an application login.
fn application_login() -> Hook {
    Hook::async_fn(|client, _| {
        Box::pin(async move {
            check_application_login(client).await.map_err(|e| {
                tracing::error!(error = format!("{e:#}"), "database login refused");
                HookError::Message(format!("{e:#}").into())
            })
        })
    })
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

/// [`pool`] for an engine: every new connection is checked to be an application login, as
/// [`connect_application`]'s are (the tests' engines run on these).
pub fn application_pool(database_url: &SecretString, size: usize) -> anyhow::Result<Pool> {
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
        .post_create(application_login())
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

/// A migration of `sql/` and, when the database has it, when it was applied.
#[derive(Debug, Clone)]
pub struct MigrationState {
    pub version: i32,
    pub name: String,
    /// As the migrations table records it; `None`: pending.
    pub applied_on: Option<String>,
}

impl MigrationState {
    /// `V24__events`, as the file is named.
    pub fn label(&self) -> String {
        format!("V{}__{}", self.version, self.name)
    }
}

/// Every migration this build carries, in order, with whether the database has it (it changes
/// nothing: `qbill migrate info` and `--dry-run`).
pub async fn migrations(pool: &Pool) -> anyhow::Result<Vec<MigrationState>> {
    let client = pool.get().await?;
    let exists: Option<String> = client
        .query_one("SELECT to_regclass('refinery_schema_history')::text", &[])
        .await?
        .get(0);
    let mut applied = std::collections::HashMap::new();
    if exists.is_some() {
        for row in client
            .query(
                "SELECT version, applied_on FROM refinery_schema_history",
                &[],
            )
            .await?
        {
            applied.insert(row.get::<_, i32>(0), row.get::<_, Option<String>>(1));
        }
    }
    let mut migrations: Vec<_> = embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| MigrationState {
            version: m.version(),
            name: m.name().to_owned(),
            applied_on: applied
                .get(&m.version())
                .map(|on| on.clone().unwrap_or_default()),
        })
        .collect();
    migrations.sort_by_key(|m| m.version);
    Ok(migrations)
}

/// Migrates the database a deployment runs on, with the migration login, and then prepares the
/// application's login role: on RDS for the way it logs in; with URLs, the engine's URL's user
/// becomes a login member of `qbill_application` with the URL's password (when the migration
/// login is another one, `QBILL_MIGRATION_DATABASE_URL`). Used by `qbill migrate` and by the
/// Lambda's migrate event.
pub async fn migrate_deployment(app: &DatabaseConfig) -> anyhow::Result<Vec<String>> {
    let migrations = app.for_migrations()?;
    let pool = connect(&migrations, 1).await?;
    let applied = migrate(&pool).await?;
    match (app, &migrations) {
        (DatabaseConfig::Rds(rds), _) => managed::prepare_login(&pool, rds).await?,
        (DatabaseConfig::Url { url, .. }, DatabaseConfig::Url { url: owner, .. }) => {
            let login: tokio_postgres::Config = url.expose_secret().parse()?;
            let owner: tokio_postgres::Config = owner.expose_secret().parse()?;
            if let Some(user) = login.get_user().filter(|u| Some(*u) != owner.get_user()) {
                let password = login
                    .get_password()
                    .map(|p| SecretString::from(String::from_utf8_lossy(p).into_owned()));
                let client = pool.get().await?;
                managed::ensure_login(&client, user, password.as_ref()).await?;
            }
        }
        (DatabaseConfig::Url { .. }, DatabaseConfig::Rds(_)) => {}
    }
    Ok(applied)
}

/// Whether the login of `client` is one the engine may run as: a member of `qbill_application`
/// that is neither a superuser nor the owner of the schema's tables. A worker connected as an
/// owner would pass where the application role is refused (a missing grant), so it must fail
/// here, locally and in tests, before it fails on AWS.
pub async fn check_application_login(client: &tokio_postgres::Client) -> anyhow::Result<()> {
    let row = client
        .query_one(
            "SELECT current_user::text AS login, r.rolsuper AS superuser,
                    pg_has_role(current_user, 'qbill_application', 'MEMBER') AS member,
                    EXISTS (SELECT 1 FROM pg_class c
                            WHERE c.relowner = r.oid AND c.relkind = 'r'
                              AND c.relnamespace = 'public'::regnamespace) AS owner
             FROM pg_roles r WHERE r.rolname = current_user",
            &[],
        )
        .await?;
    let (user, superuser, member, owner): (String, bool, bool, bool) = (
        row.get("login"),
        row.get("superuser"),
        row.get("member"),
        row.get("owner"),
    );
    anyhow::ensure!(
        !superuser && !owner && member,
        "the engine must connect as a login that is a member of qbill_application and neither a \
         superuser nor the owner of the tables; {user} is {}. Point DATABASE_URL at the \
         application's login (`scripts/local-stack env` does) and QBILL_MIGRATION_DATABASE_URL at \
         the owner",
        if superuser {
            "a superuser"
        } else if owner {
            "the owner of the tables"
        } else {
            "not a member of qbill_application"
        }
    );
    Ok(())
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
