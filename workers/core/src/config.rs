//! Typed configuration: defaults in code, overridden by environment variables, checked at start.
//!
//! `DATABASE_URL` and `REDIS_URL` keep their conventional names; everything else is `QBILL_*`.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};

/// Crates whose debug logs carry request contents (statement parameters, message bodies): they are
/// held at `info` whatever `QBILL_LOG` asks, so amounts, passwords and tokens never reach a log.
pub const CRATES_HELD_AT_INFO: [&str; 8] = [
    "tokio_postgres",
    "postgres_protocol",
    "aws_smithy_runtime",
    "aws_smithy_http_client",
    "aws_sdk_sqs",
    "aws_sdk_secretsmanager",
    "hyper",
    "h2",
];

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
    pub database: DatabaseConfig,
    /// Connections in the Postgres pool; size it to the number of concurrent workers.
    pub database_pool_size: usize,
    /// `None` runs without a cache.
    pub redis_url: Option<SecretString>,
    /// A Secrets Manager secret holding the Redis auth token (ElastiCache), put into the URL.
    pub redis_auth_secret_arn: Option<String>,
    /// Prefix of every cache key, so deployments and tests can share one Redis.
    pub cache_prefix: String,
    pub cache_ttl: Duration,
    /// How long Redis may take before a cache call is given up and Postgres answers alone.
    pub cache_timeout: Duration,
    pub jwt: JwtConfig,
    /// Passwords checked at once; each check holds 19 MiB and a core while it runs.
    pub password_slots: usize,
    /// Who sends the mail and where its links point.
    pub mail: MailConfig,
    /// `Some` when identity is a Cognito user pool (`QBILL_IDENTITY=cognito`): the worker then
    /// accepts the pool's ID tokens instead of its own.
    pub cognito: Option<crate::cognito::CognitoConfig>,
    /// How many signups and reset requests anyone may make.
    pub anonymous: AnonymousLimits,
    /// Where documents are kept.
    pub documents: DocumentsConfig,
    /// How payments move money.
    pub payments: PaymentsConfig,
    /// Where events go besides the feed.
    pub events: EventsConfig,
}

/// Where events go: providers' webhooks (always) and the deployment's EventBridge bus.
#[derive(Debug, Clone, Default)]
pub struct EventsConfig {
    /// The bus every event is put on (`QBILL_EVENT_BUS`); none: no bus.
    pub bus: Option<String>,
    /// Whether webhooks may go to `http://` and loopback addresses (`QBILL_WEBHOOKS_ALLOW_LOCAL`):
    /// the local stack's receivers, never on AWS.
    pub allow_local: bool,
}

impl EventsConfig {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            bus: std::env::var("QBILL_EVENT_BUS")
                .ok()
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty()),
            allow_local: env_or("QBILL_WEBHOOKS_ALLOW_LOCAL", false)?,
        })
    }
}

/// How payments move money (`QBILL_PAYMENTS`).
#[derive(Debug, Clone, Default)]
pub enum PaymentsConfig {
    /// No processor: a payment settles its bills when it is written. Only when asked for
    /// (`QBILL_PAYMENTS=ledger`), for the benchmark and the load harnesses; the AWS stack sets
    /// `stripe` and the Lambda refuses anything else. (The default of the struct, for engines
    /// built in code; from the environment, the default is `stripe`.)
    #[default]
    Ledger,
    /// Cards through Stripe (or a server that speaks its API, such as localstripe).
    Stripe(StripeConfig),
}

/// Where Stripe's API is and the secrets the worker holds for it.
#[derive(Debug, Clone)]
pub struct StripeConfig {
    /// `https://api.stripe.com` on AWS; the fake's URL locally (`QBILL_STRIPE_API_BASE`).
    pub api_base: String,
    pub keys: StripeKeys,
}

/// The secret key and the webhook signing secrets: from the environment, or from a Secrets
/// Manager secret read at start (`QBILL_STRIPE_SECRET_ARN`, a JSON object with `secret_key`,
/// `webhook_secret` and, while one is being rotated in, `previous_webhook_secret`).
#[derive(Debug, Clone)]
pub enum StripeKeys {
    Given {
        secret_key: SecretString,
        /// Every secret a webhook may be signed with: the current one, then the one being
        /// rotated out.
        webhook_secrets: Vec<SecretString>,
    },
    Secret {
        arn: String,
    },
}

impl PaymentsConfig {
    pub fn from_env() -> anyhow::Result<Self> {
        let optional = |name: &str| {
            std::env::var(name)
                .ok()
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        Ok(
            match env_or("QBILL_PAYMENTS", "stripe".to_owned())?.as_str() {
                "ledger" => Self::Ledger,
                "stripe" => Self::Stripe(StripeConfig {
                    api_base: env_or("QBILL_STRIPE_API_BASE", "https://api.stripe.com".to_owned())?
                        .trim_end_matches('/')
                        .to_owned(),
                    keys: match optional("QBILL_STRIPE_SECRET_ARN") {
                        Some(arn) => StripeKeys::Secret { arn },
                        None => StripeKeys::Given {
                            secret_key: env_required("QBILL_STRIPE_SECRET_KEY")?.into(),
                            webhook_secrets: [
                                "QBILL_STRIPE_WEBHOOK_SECRET",
                                "QBILL_STRIPE_PREVIOUS_WEBHOOK_SECRET",
                            ]
                            .iter()
                            .filter_map(|name| optional(name))
                            .map(SecretString::from)
                            .collect(),
                        },
                    },
                }),
                other => bail!("QBILL_PAYMENTS must be stripe or ledger, not {other:?}"),
            },
        )
    }
}

/// Where Postgres is and how to log in to it.
#[derive(Debug, Clone)]
pub enum DatabaseConfig {
    /// A plain connection URL: local runs and tests (`QBILL_DATABASE_AUTH=url`, the default);
    /// `url` (`DATABASE_URL`) is the engine's login, `owner` (`QBILL_MIGRATION_DATABASE_URL`, when
    /// set) the one migrations, seeds and operator commands run with.
    Url {
        url: SecretString,
        owner: Option<SecretString>,
    },
    /// Amazon RDS over TLS verified against a CA bundle (`iam` or `secret`).
    Rds(RdsConfig),
}

#[derive(Debug, Clone)]
pub struct RdsConfig {
    pub host: String,
    pub port: u16,
    pub name: String,
    pub user: String,
    /// PEM bundle of the CA certificates the server's certificate must chain to.
    pub ca_bundle: PathBuf,
    pub login: RdsLogin,
    /// The application role's password secret, when the database checks a password rather than
    /// an IAM token (the `secret` mode, or RDS Proxy, which logs in to the database for us).
    pub password_secret_arn: Option<String>,
}

#[derive(Debug, Clone)]
pub enum RdsLogin {
    /// IAM database authentication: a fresh token for every new connection.
    IamToken,
    /// A password from Secrets Manager: a bare string, or JSON with `password` (and `username`,
    /// which then replaces the configured user, as in RDS-managed master secrets).
    Secret { arn: String },
    /// A password given directly.
    Password(SecretString),
}

impl DatabaseConfig {
    pub fn from_env() -> anyhow::Result<Self> {
        let mode = env_or("QBILL_DATABASE_AUTH", "url".to_owned())?;
        let password_secret_arn = std::env::var("QBILL_DATABASE_PASSWORD_SECRET_ARN")
            .ok()
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty());
        let login = match mode.as_str() {
            "url" => {
                return Ok(Self::Url {
                    url: env_required("DATABASE_URL")?.into(),
                    owner: std::env::var("QBILL_MIGRATION_DATABASE_URL")
                        .ok()
                        .map(|u| u.trim().to_owned())
                        .filter(|u| !u.is_empty())
                        .map(Into::into),
                });
            }
            "iam" => RdsLogin::IamToken,
            "secret" => RdsLogin::Secret {
                arn: password_secret_arn
                    .clone()
                    .context("QBILL_DATABASE_PASSWORD_SECRET_ARN must be set")?,
            },
            other => bail!("QBILL_DATABASE_AUTH must be url, iam or secret, not {other:?}"),
        };
        Ok(Self::Rds(RdsConfig {
            host: env_required("QBILL_DATABASE_HOST")?,
            port: env_or("QBILL_DATABASE_PORT", 5432)?,
            name: env_or("QBILL_DATABASE_NAME", "qbill".to_owned())?,
            user: env_required("QBILL_DATABASE_USER")?,
            ca_bundle: env_required("QBILL_DATABASE_CA_BUNDLE")?.into(),
            login,
            password_secret_arn,
        }))
    }

    /// A URL that is both the engine's login and the owner's (tests, tools).
    pub fn url(url: SecretString) -> Self {
        Self::Url { url, owner: None }
    }

    /// The login migrations, seeds and operator commands run with, which owns the schema: on RDS
    /// the master user's secret when `QBILL_DATABASE_MASTER_SECRET_ARN` names one; with URLs, the
    /// owner's (`scripts/local-stack env` sets both). Otherwise the same login as the engine.
    pub fn for_migrations(&self) -> anyhow::Result<Self> {
        match self {
            Self::Rds(rds) => match std::env::var("QBILL_DATABASE_MASTER_SECRET_ARN") {
                Ok(arn) if !arn.trim().is_empty() => Ok(Self::Rds(RdsConfig {
                    login: RdsLogin::Secret {
                        arn: arn.trim().to_owned(),
                    },
                    ..rds.clone()
                })),
                _ => Ok(self.clone()),
            },
            Self::Url { url, owner } => Ok(Self::url(owner.clone().unwrap_or_else(|| url.clone()))),
        }
    }
}

#[derive(Debug, Clone)]
pub struct JwtConfig {
    pub keys: JwtKeys,
    pub issuer: String,
    pub audience: String,
    pub ttl: Duration,
}

/// Where the signing keys come from.
#[derive(Debug, Clone)]
pub enum JwtKeys {
    /// `QBILL_JWT_SECRET`, and during a rotation `QBILL_JWT_PREVIOUS_SECRET`, still accepted.
    Static {
        current: SecretString,
        previous: Option<SecretString>,
    },
    /// A Secrets Manager secret: `AWSCURRENT` signs, `AWSPREVIOUS` is accepted for one token
    /// lifetime after the rotation.
    Secret { arn: String },
}

impl JwtConfig {
    pub const MIN_SECRET_BYTES: usize = 32;

    /// One static key.
    pub fn new(secret: SecretString) -> anyhow::Result<Self> {
        check_key(&secret)?;
        Ok(Self {
            keys: JwtKeys::Static {
                current: secret,
                previous: None,
            },
            issuer: "qbill".into(),
            audience: "qbill-api".into(),
            ttl: Duration::from_secs(3600),
        })
    }

    pub fn from_env() -> anyhow::Result<Self> {
        let keys = match std::env::var("QBILL_JWT_SECRET_ARN")
            .ok()
            .filter(|a| !a.trim().is_empty())
        {
            Some(arn) => JwtKeys::Secret {
                arn: arn.trim().to_owned(),
            },
            None => {
                let current: SecretString = env_required("QBILL_JWT_SECRET")
                    .context("or QBILL_JWT_SECRET_ARN")?
                    .into();
                check_key(&current).context("QBILL_JWT_SECRET")?;
                let previous = std::env::var("QBILL_JWT_PREVIOUS_SECRET")
                    .ok()
                    .filter(|p| !p.trim().is_empty())
                    .map(SecretString::from);
                if let Some(previous) = &previous {
                    check_key(previous).context("QBILL_JWT_PREVIOUS_SECRET")?;
                }
                JwtKeys::Static { current, previous }
            }
        };
        Ok(Self {
            keys,
            issuer: env_or("QBILL_JWT_ISSUER", "qbill".to_owned())?,
            audience: env_or("QBILL_JWT_AUDIENCE", "qbill-api".to_owned())?,
            ttl: Duration::from_secs(env_or("QBILL_TOKEN_TTL_SECONDS", 3600)?),
        })
    }
}

pub fn check_key(secret: &SecretString) -> anyhow::Result<()> {
    if secret.expose_secret().len() < JwtConfig::MIN_SECRET_BYTES {
        bail!(
            "a JWT signing key must be at least {} bytes",
            JwtConfig::MIN_SECRET_BYTES
        );
    }
    Ok(())
}

impl EngineConfig {
    pub fn from_env() -> anyhow::Result<Self> {
        let optional = |name: &str| {
            std::env::var(name)
                .ok()
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let config = Self {
            database: DatabaseConfig::from_env()?,
            database_pool_size: env_or("QBILL_DATABASE_POOL_SIZE", 8)?,
            redis_url: optional("REDIS_URL").map(SecretString::from),
            redis_auth_secret_arn: optional("QBILL_REDIS_AUTH_SECRET_ARN"),
            cache_prefix: env_or("QBILL_CACHE_PREFIX", "qbill".to_owned())?,
            cache_ttl: Duration::from_secs(env_or("QBILL_CACHE_TTL_SECONDS", 300)?),
            cache_timeout: Duration::from_millis(env_or("QBILL_CACHE_TIMEOUT_MS", 250)?),
            jwt: JwtConfig::from_env()?,
            password_slots: env_or(
                "QBILL_PASSWORD_CHECKS",
                crate::password::Passwords::default_slots(),
            )?,
            mail: MailConfig::from_env()?,
            cognito: match env_or("QBILL_IDENTITY", "builtin".to_owned())?.as_str() {
                "builtin" => None,
                "cognito" => Some(crate::cognito::CognitoConfig {
                    issuer: env_required("QBILL_COGNITO_ISSUER")?,
                    client_id: env_required("QBILL_COGNITO_CLIENT_ID")?,
                }),
                other => bail!("QBILL_IDENTITY must be builtin or cognito, not {other:?}"),
            },
            anonymous: AnonymousLimits::from_env()?,
            documents: DocumentsConfig::from_env()?,
            payments: PaymentsConfig::from_env()?,
            events: EventsConfig::from_env()?,
        };
        if config.password_slots == 0 {
            bail!("QBILL_PASSWORD_CHECKS must be at least 1");
        }
        if config.database_pool_size == 0 {
            bail!("QBILL_DATABASE_POOL_SIZE must be at least 1");
        }
        if config.redis_auth_secret_arn.is_some() && config.redis_url.is_none() {
            bail!("QBILL_REDIS_AUTH_SECRET_ARN is set but REDIS_URL is not");
        }
        Ok(config)
    }
}

/// How many requests anyone may make without an account, per hour: signups and password reset
/// requests from one source address, and signups from everywhere together.
#[derive(Debug, Clone, Copy)]
pub struct AnonymousLimits {
    pub signups_per_source: i64,
    pub signups: i64,
    pub resets_per_source: i64,
}

impl Default for AnonymousLimits {
    fn default() -> Self {
        Self {
            signups_per_source: 10,
            signups: 1000,
            resets_per_source: 10,
        }
    }
}

impl AnonymousLimits {
    pub fn from_env() -> anyhow::Result<Self> {
        let default = Self::default();
        Ok(Self {
            signups_per_source: env_or(
                "QBILL_SIGNUPS_PER_SOURCE_PER_HOUR",
                default.signups_per_source,
            )?,
            signups: env_or("QBILL_SIGNUPS_PER_HOUR", default.signups)?,
            resets_per_source: env_or(
                "QBILL_RESETS_PER_SOURCE_PER_HOUR",
                default.resets_per_source,
            )?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct MailConfig {
    /// The sender, an identity verified in SES: `qbill <billing@example.com>`.
    pub from: String,
    /// The web client's base URL; links in mails point under it.
    pub web_url: String,
    /// SES's region when it is not the process's own.
    pub region: Option<String>,
}

impl MailConfig {
    /// The sender `scripts/local-stack` verifies in the local SES.
    pub const LOCAL_FROM: &str = "qbill <billing@qbill.local>";

    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            from: env_or("QBILL_MAIL_FROM", Self::LOCAL_FROM.to_owned())?,
            web_url: env_or("QBILL_WEB_URL", "http://localhost:8080".to_owned())?,
            region: std::env::var("QBILL_SES_REGION")
                .ok()
                .filter(|r| !r.is_empty()),
        })
    }
}

impl Default for MailConfig {
    fn default() -> Self {
        Self {
            from: Self::LOCAL_FROM.to_owned(),
            web_url: "http://localhost:8080".to_owned(),
            region: None,
        }
    }
}

/// Where documents are kept and how long a link to one lives.
#[derive(Debug, Clone)]
pub struct DocumentsConfig {
    /// The S3 bucket (`QBILL_DOCUMENTS_BUCKET`); without one, asking for a document is answered
    /// `unavailable` and receipt mails carry no link.
    pub bucket: Option<String>,
    /// How long a presigned link works (`QBILL_DOCUMENT_URL_SECONDS`, 900 by default).
    pub url_lifetime: Duration,
    /// How long the link in a receipt mail works (`QBILL_MAIL_DOCUMENT_URL_SECONDS`, 7 days by
    /// default, S3's longest): at most as long as the credentials that sign it.
    pub mail_url_lifetime: Duration,
}

impl DocumentsConfig {
    /// S3's longest presigned link: seven days.
    pub const MAX_URL_SECONDS: u64 = 7 * 24 * 3600;

    pub fn from_env() -> anyhow::Result<Self> {
        let seconds = |name: &str, default: u64| -> anyhow::Result<Duration> {
            let value = env_or(name, default)?;
            if value == 0 || value > Self::MAX_URL_SECONDS {
                bail!(
                    "{name} must be 1 to {} seconds, not {value}",
                    Self::MAX_URL_SECONDS
                );
            }
            Ok(Duration::from_secs(value))
        };
        Ok(Self {
            bucket: std::env::var("QBILL_DOCUMENTS_BUCKET")
                .ok()
                .filter(|b| !b.is_empty()),
            url_lifetime: seconds("QBILL_DOCUMENT_URL_SECONDS", 900)?,
            mail_url_lifetime: seconds("QBILL_MAIL_DOCUMENT_URL_SECONDS", Self::MAX_URL_SECONDS)?,
        })
    }
}

impl Default for DocumentsConfig {
    fn default() -> Self {
        Self {
            bucket: None,
            url_lifetime: Duration::from_secs(900),
            mail_url_lifetime: Duration::from_secs(Self::MAX_URL_SECONDS),
        }
    }
}
