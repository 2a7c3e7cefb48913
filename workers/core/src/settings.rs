//! Every setting of the engine as given: a command-line flag or its environment variable, with
//! its default. `qbill work --help` lists them, `qbill config` prints the effective values, and the
//! Lambda reads the same structs from its environment. `crate::config` checks them and turns
//! them into the typed configuration the engine runs with.
//!
//! A setting whose value must never be printed is marked `hide_env_values`: help shows no value
//! for it and `qbill config` shows only whether it is set.

use clap::{Args, CommandFactory, FromArgMatches, Parser};

/// Parses `T` from the environment alone (no command line): the defaults, overridden by each
/// variable that is set and not blank.
pub fn from_env<T: Args>() -> anyhow::Result<T> {
    #[derive(Parser)]
    #[command(name = "qbill", no_binary_name = true)]
    struct Environment<T: Args> {
        #[command(flatten)]
        settings: T,
    }
    let parsed = Environment::<T>::command()
        .mut_args(blank_is_unset)
        .try_get_matches_from(std::iter::empty::<String>())
        .and_then(|matches| Environment::<T>::from_arg_matches(&matches));
    parsed
        .map(|e| e.settings)
        .map_err(|e| anyhow::anyhow!("{}", e.render().to_string().trim_end()))
}

/// A variable exported empty (or blank) counts as unset, as it always has: the setting keeps its
/// default instead of failing to parse "".
fn blank_is_unset(arg: clap::Arg) -> clap::Arg {
    let blank = arg
        .get_env()
        .and_then(std::env::var_os)
        .is_some_and(|value| value.to_string_lossy().trim().is_empty());
    if blank { arg.env(None) } else { arg }
}

/// The names of the variables a process reads its settings from (`QBILL_*`, `DATABASE_URL`,
/// `REDIS_URL`) that are set but blank: a binary removes them before it parses its command line,
/// so that they count as unset there too.
pub fn blank_variables() -> Vec<std::ffi::OsString> {
    std::env::vars_os()
        .filter(|(name, value)| {
            let name = name.to_string_lossy();
            (name.starts_with("QBILL_") || name == "DATABASE_URL" || name == "REDIS_URL")
                && value.to_string_lossy().trim().is_empty()
        })
        .map(|(name, _)| name)
        .collect()
}

/// The value of an optional setting, `None` when unset or blank (a variable exported empty means
/// unset, as it always has).
pub fn given(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// What the engine needs, whatever transport feeds it.
#[derive(Args, Debug, Clone)]
pub struct EngineSettings {
    #[command(flatten)]
    pub database: DatabaseSettings,
    #[command(flatten)]
    pub cache: CacheSettings,
    #[command(flatten)]
    pub identity: IdentitySettings,
    #[command(flatten)]
    pub mail: MailSettings,
    #[command(flatten)]
    pub documents: DocumentsSettings,
    #[command(flatten)]
    pub payments: PaymentsSettings,
    #[command(flatten)]
    pub events: EventsSettings,
}

/// Where Postgres is and how to log in to it.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Database")]
pub struct DatabaseSettings {
    /// How the engine logs in: `url` (DATABASE_URL), `iam` (RDS IAM tokens) or `secret` (a
    /// password in Secrets Manager).
    #[arg(long, env = "QBILL_DATABASE_AUTH", default_value = "url", value_parser = ["url", "iam", "secret"])]
    pub database_auth: String,
    /// The engine's login with `url` auth: a member of qbill_application.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// The schema owner's URL that migrations, seeds and operator commands use (`url` auth);
    /// without it, DATABASE_URL.
    #[arg(long, env = "QBILL_MIGRATION_DATABASE_URL", hide_env_values = true)]
    pub migration_database_url: Option<String>,
    /// The RDS endpoint (`iam` and `secret` auth).
    #[arg(long, env = "QBILL_DATABASE_HOST")]
    pub database_host: Option<String>,
    /// The RDS endpoint's port.
    #[arg(long, env = "QBILL_DATABASE_PORT", default_value_t = 5432)]
    pub database_port: u16,
    /// The database on the RDS endpoint.
    #[arg(long, env = "QBILL_DATABASE_NAME", default_value = "qbill")]
    pub database_name: String,
    /// The engine's database user (`iam` and `secret` auth).
    #[arg(long, env = "QBILL_DATABASE_USER")]
    pub database_user: Option<String>,
    /// PEM bundle of the CA certificates the RDS server's certificate must chain to.
    #[arg(long, env = "QBILL_DATABASE_CA_BUNDLE")]
    pub database_ca_bundle: Option<std::path::PathBuf>,
    /// The engine user's password secret (`secret` auth, or RDS Proxy).
    #[arg(long, env = "QBILL_DATABASE_PASSWORD_SECRET_ARN")]
    pub database_password_secret_arn: Option<String>,
    /// The master user's secret that migrations and operator commands log in with on RDS.
    #[arg(long, env = "QBILL_DATABASE_MASTER_SECRET_ARN")]
    pub database_master_secret_arn: Option<String>,
    /// Connections in the Postgres pool; `qbill work` raises it to at least workers + 1.
    #[arg(long, env = "QBILL_DATABASE_POOL_SIZE", default_value_t = 8)]
    pub database_pool_size: usize,
}

/// The Redis cache of read replies.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Cache")]
pub struct CacheSettings {
    /// Redis (`redis://` or `rediss://`); without it the engine runs without a cache.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// A Secrets Manager secret holding the Redis auth token (ElastiCache), put into the URL.
    #[arg(long, env = "QBILL_REDIS_AUTH_SECRET_ARN")]
    pub redis_auth_secret_arn: Option<String>,
    /// Prefix of every cache key, so deployments and tests can share one Redis.
    #[arg(long, env = "QBILL_CACHE_PREFIX", default_value = "qbill")]
    pub cache_prefix: String,
    /// How long a cached read reply lives.
    #[arg(long, env = "QBILL_CACHE_TTL_SECONDS", default_value_t = 300)]
    pub cache_ttl_seconds: u64,
    /// How long Redis may take before a cache call is given up and Postgres answers alone.
    #[arg(long, env = "QBILL_CACHE_TIMEOUT_MS", default_value_t = 250)]
    pub cache_timeout_ms: u64,
}

/// Who is who: tokens, passwords, and the limits on what anyone without an account may do.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Identity")]
pub struct IdentitySettings {
    /// `builtin` (the engine's own accounts and tokens) or `cognito` (a user pool's ID tokens).
    #[arg(long, env = "QBILL_IDENTITY", default_value = "builtin", value_parser = ["builtin", "cognito"])]
    pub identity: String,
    /// The token signing key, at least 32 bytes (or QBILL_JWT_SECRET_ARN).
    #[arg(long, env = "QBILL_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// The key being rotated out, still accepted.
    #[arg(long, env = "QBILL_JWT_PREVIOUS_SECRET", hide_env_values = true)]
    pub jwt_previous_secret: Option<String>,
    /// A Secrets Manager secret whose AWSCURRENT signs and AWSPREVIOUS is still accepted.
    #[arg(long, env = "QBILL_JWT_SECRET_ARN")]
    pub jwt_secret_arn: Option<String>,
    /// The `iss` of the tokens the engine signs and accepts.
    #[arg(long, env = "QBILL_JWT_ISSUER", default_value = "qbill")]
    pub jwt_issuer: String,
    /// The `aud` of the tokens the engine signs and accepts.
    #[arg(long, env = "QBILL_JWT_AUDIENCE", default_value = "qbill-api")]
    pub jwt_audience: String,
    /// How long an access token lives.
    #[arg(long, env = "QBILL_TOKEN_TTL_SECONDS", default_value_t = 3600)]
    pub token_ttl_seconds: u64,
    /// The user pool's issuer URL (`cognito` identity).
    #[arg(long, env = "QBILL_COGNITO_ISSUER")]
    pub cognito_issuer: Option<String>,
    /// The user pool app client's id (`cognito` identity).
    #[arg(long, env = "QBILL_COGNITO_CLIENT_ID")]
    pub cognito_client_id: Option<String>,
    /// Passwords checked at once; each check holds 19 MiB and a core while it runs.
    #[arg(long, env = "QBILL_PASSWORD_CHECKS", default_value_t = crate::password::Passwords::default_slots())]
    pub password_checks: usize,
    /// Signups one source address may make per hour.
    #[arg(long, env = "QBILL_SIGNUPS_PER_SOURCE_PER_HOUR", default_value_t = 10)]
    pub signups_per_source_per_hour: i64,
    /// Signups from everywhere together per hour.
    #[arg(long, env = "QBILL_SIGNUPS_PER_HOUR", default_value_t = 1000)]
    pub signups_per_hour: i64,
    /// Password reset requests one source address may make per hour.
    #[arg(long, env = "QBILL_RESETS_PER_SOURCE_PER_HOUR", default_value_t = 10)]
    pub resets_per_source_per_hour: i64,
}

/// Who sends the mail and where its links point.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Mail")]
pub struct MailSettings {
    /// The sender, an identity verified in SES.
    #[arg(long, env = "QBILL_MAIL_FROM", default_value = crate::config::MailConfig::LOCAL_FROM)]
    pub mail_from: String,
    /// The web client's base URL; links in mails point under it.
    #[arg(long, env = "QBILL_WEB_URL", default_value = "http://localhost:8080")]
    pub web_url: String,
    /// SES's region when it is not the process's own.
    #[arg(long, env = "QBILL_SES_REGION")]
    pub ses_region: Option<String>,
}

/// Where documents are kept and how long a link to one lives.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Documents")]
pub struct DocumentsSettings {
    /// The S3 bucket; without one, documents are answered `unavailable`.
    #[arg(long, env = "QBILL_DOCUMENTS_BUCKET")]
    pub documents_bucket: Option<String>,
    /// How long a presigned link works (1 to 604800).
    #[arg(long, env = "QBILL_DOCUMENT_URL_SECONDS", default_value_t = 900)]
    pub document_url_seconds: u64,
    /// How long the link in a receipt mail works (1 to 604800).
    #[arg(long, env = "QBILL_MAIL_DOCUMENT_URL_SECONDS", default_value_t = crate::config::DocumentsConfig::MAX_URL_SECONDS)]
    pub mail_document_url_seconds: u64,
}

/// How payments move money.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Payments")]
pub struct PaymentsSettings {
    /// `stripe` (cards through Stripe's API) or `ledger` (a payment settles when written: the
    /// benchmark and load harnesses only).
    #[arg(long, env = "QBILL_PAYMENTS", default_value = "stripe", value_parser = ["stripe", "ledger"])]
    pub payments: String,
    /// Stripe's API, or a server that speaks it (localstripe).
    #[arg(
        long,
        env = "QBILL_STRIPE_API_BASE",
        default_value = "https://api.stripe.com"
    )]
    pub stripe_api_base: String,
    /// A Secrets Manager secret with `secret_key`, `webhook_secret` and, during a rotation,
    /// `previous_webhook_secret`; instead of the three below.
    #[arg(long, env = "QBILL_STRIPE_SECRET_ARN")]
    pub stripe_secret_arn: Option<String>,
    /// Stripe's secret API key.
    #[arg(long, env = "QBILL_STRIPE_SECRET_KEY", hide_env_values = true)]
    pub stripe_secret_key: Option<String>,
    /// The secret Stripe signs its webhooks with.
    #[arg(long, env = "QBILL_STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    pub stripe_webhook_secret: Option<String>,
    /// The webhook secret being rotated out, still accepted.
    #[arg(
        long,
        env = "QBILL_STRIPE_PREVIOUS_WEBHOOK_SECRET",
        hide_env_values = true
    )]
    pub stripe_previous_webhook_secret: Option<String>,
}

/// Where events go besides the feed.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Events")]
pub struct EventsSettings {
    /// The EventBridge bus every event is put on; none: no bus.
    #[arg(long, env = "QBILL_EVENT_BUS")]
    pub event_bus: Option<String>,
    /// Whether webhooks may go to `http://` and loopback addresses: the local stack's
    /// receivers, never on AWS.
    #[arg(long, env = "QBILL_WEBHOOKS_ALLOW_LOCAL", default_value_t = false, action = clap::ArgAction::Set)]
    pub webhooks_allow_local: bool,
}
