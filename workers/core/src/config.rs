//! Typed configuration: the settings of `crate::settings` (flags or environment variables, with
//! their defaults), checked at start.
//!
//! `DATABASE_URL` and `REDIS_URL` keep their conventional names; everything else is `QBILL_*`.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};

use crate::settings::{
    self, DatabaseSettings, DocumentsSettings, EngineSettings, EventsSettings, IdentitySettings,
    MailSettings, PaymentsSettings, given,
};

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

/// An optional setting that this configuration needs: its value, or an error naming it.
fn required(value: &Option<String>, name: &str) -> anyhow::Result<String> {
    given(value).with_context(|| format!("{name} must be set"))
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
        Ok(Self::from_settings(&settings::from_env()?))
    }

    pub fn from_settings(s: &EventsSettings) -> Self {
        Self {
            bus: given(&s.event_bus),
            allow_local: s.webhooks_allow_local,
        }
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
        Self::from_settings(&settings::from_env()?)
    }

    pub fn from_settings(s: &PaymentsSettings) -> anyhow::Result<Self> {
        Ok(match s.payments.as_str() {
            "ledger" => Self::Ledger,
            "stripe" => Self::Stripe(StripeConfig {
                api_base: s.stripe_api_base.trim_end_matches('/').to_owned(),
                keys: match given(&s.stripe_secret_arn) {
                    Some(arn) => StripeKeys::Secret { arn },
                    None => StripeKeys::Given {
                        secret_key: required(&s.stripe_secret_key, "QBILL_STRIPE_SECRET_KEY")?
                            .into(),
                        webhook_secrets: [
                            &s.stripe_webhook_secret,
                            &s.stripe_previous_webhook_secret,
                        ]
                        .into_iter()
                        .filter_map(given)
                        .map(SecretString::from)
                        .collect(),
                    },
                },
            }),
            other => bail!("QBILL_PAYMENTS must be stripe or ledger, not {other:?}"),
        })
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
    /// The master user's secret (`QBILL_DATABASE_MASTER_SECRET_ARN`), for migrations and operator
    /// commands.
    pub master_secret_arn: Option<String>,
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
        Self::from_settings(&settings::from_env()?)
    }

    pub fn from_settings(s: &DatabaseSettings) -> anyhow::Result<Self> {
        let password_secret_arn = given(&s.database_password_secret_arn);
        let login = match s.database_auth.as_str() {
            "url" => {
                return Ok(Self::Url {
                    url: required(&s.database_url, "DATABASE_URL")?.into(),
                    owner: given(&s.migration_database_url).map(Into::into),
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
            host: required(&s.database_host, "QBILL_DATABASE_HOST")?,
            port: s.database_port,
            name: s.database_name.clone(),
            user: required(&s.database_user, "QBILL_DATABASE_USER")?,
            ca_bundle: s
                .database_ca_bundle
                .clone()
                .filter(|p| !p.as_os_str().is_empty())
                .context("QBILL_DATABASE_CA_BUNDLE must be set")?,
            login,
            password_secret_arn,
            master_secret_arn: given(&s.database_master_secret_arn),
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
            Self::Rds(rds) => match &rds.master_secret_arn {
                Some(arn) => Ok(Self::Rds(RdsConfig {
                    login: RdsLogin::Secret { arn: arn.clone() },
                    ..rds.clone()
                })),
                None => Ok(self.clone()),
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
        Self::from_settings(&settings::from_env()?)
    }

    pub fn from_settings(s: &IdentitySettings) -> anyhow::Result<Self> {
        let keys = match given(&s.jwt_secret_arn) {
            Some(arn) => JwtKeys::Secret { arn },
            None => {
                let current: SecretString = required(&s.jwt_secret, "QBILL_JWT_SECRET")
                    .context("or QBILL_JWT_SECRET_ARN")?
                    .into();
                check_key(&current).context("QBILL_JWT_SECRET")?;
                let previous = given(&s.jwt_previous_secret).map(SecretString::from);
                if let Some(previous) = &previous {
                    check_key(previous).context("QBILL_JWT_PREVIOUS_SECRET")?;
                }
                JwtKeys::Static { current, previous }
            }
        };
        Ok(Self {
            keys,
            issuer: s.jwt_issuer.clone(),
            audience: s.jwt_audience.clone(),
            ttl: Duration::from_secs(s.token_ttl_seconds),
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
        Self::from_settings(&settings::from_env()?)
    }

    pub fn from_settings(s: &EngineSettings) -> anyhow::Result<Self> {
        let identity = &s.identity;
        let config = Self {
            database: DatabaseConfig::from_settings(&s.database)?,
            database_pool_size: s.database.database_pool_size,
            redis_url: given(&s.cache.redis_url).map(SecretString::from),
            redis_auth_secret_arn: given(&s.cache.redis_auth_secret_arn),
            cache_prefix: s.cache.cache_prefix.clone(),
            cache_ttl: Duration::from_secs(s.cache.cache_ttl_seconds),
            cache_timeout: Duration::from_millis(s.cache.cache_timeout_ms),
            jwt: JwtConfig::from_settings(identity)?,
            password_slots: identity.password_checks,
            mail: MailConfig::from_settings(&s.mail),
            cognito: match identity.identity.as_str() {
                "builtin" => None,
                "cognito" => Some(crate::cognito::CognitoConfig {
                    issuer: required(&identity.cognito_issuer, "QBILL_COGNITO_ISSUER")?,
                    client_id: required(&identity.cognito_client_id, "QBILL_COGNITO_CLIENT_ID")?,
                }),
                other => bail!("QBILL_IDENTITY must be builtin or cognito, not {other:?}"),
            },
            anonymous: AnonymousLimits::from_settings(identity),
            documents: DocumentsConfig::from_settings(&s.documents)?,
            payments: PaymentsConfig::from_settings(&s.payments)?,
            events: EventsConfig::from_settings(&s.events),
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
    pub fn from_settings(s: &IdentitySettings) -> Self {
        Self {
            signups_per_source: s.signups_per_source_per_hour,
            signups: s.signups_per_hour,
            resets_per_source: s.resets_per_source_per_hour,
        }
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
        Ok(Self::from_settings(&settings::from_env()?))
    }

    pub fn from_settings(s: &MailSettings) -> Self {
        Self {
            from: s.mail_from.clone(),
            web_url: s.web_url.clone(),
            region: given(&s.ses_region),
        }
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
        Self::from_settings(&settings::from_env()?)
    }

    pub fn from_settings(s: &DocumentsSettings) -> anyhow::Result<Self> {
        let seconds = |name: &str, value: u64| -> anyhow::Result<Duration> {
            if value == 0 || value > Self::MAX_URL_SECONDS {
                bail!(
                    "{name} must be 1 to {} seconds, not {value}",
                    Self::MAX_URL_SECONDS
                );
            }
            Ok(Duration::from_secs(value))
        };
        Ok(Self {
            bucket: given(&s.documents_bucket),
            url_lifetime: seconds("QBILL_DOCUMENT_URL_SECONDS", s.document_url_seconds)?,
            mail_url_lifetime: seconds(
                "QBILL_MAIL_DOCUMENT_URL_SECONDS",
                s.mail_document_url_seconds,
            )?,
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
