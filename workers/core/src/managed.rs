//! AWS managed services: logins to RDS (IAM tokens or Secrets Manager passwords) over TLS
//! verified against a CA bundle, the ElastiCache auth token, and the JWT keys in Secrets Manager.
//! Local runs use none of it: `DATABASE_URL`, `REDIS_URL` and `QBILL_JWT_SECRET` suffice.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, bail};
use aws_config::SdkConfig;
use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings};
use aws_smithy_runtime_api::client::identity::Identity;
use chrono::{DateTime, Utc};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{RdsConfig, RdsLogin};

/// IAM auth tokens generated since the process started (each new RDS connection takes one).
pub static IAM_TOKENS_ISSUED: AtomicU64 = AtomicU64::new(0);

/// The AWS configuration of this process (region, credentials, endpoints), loaded once.
pub async fn sdk() -> &'static SdkConfig {
    static SDK: OnceCell<SdkConfig> = OnceCell::const_new();
    SDK.get_or_init(|| aws_config::defaults(aws_config::BehaviorVersion::latest()).load())
        .await
}

/// A version of a secret.
pub struct SecretVersion {
    pub value: SecretString,
    pub created: Option<DateTime<Utc>>,
}

/// Reads a secret at a staging label (`AWSCURRENT` when `None`); `None` when that label does not
/// exist (a secret that was never rotated has no `AWSPREVIOUS`).
pub async fn secret(arn: &str, stage: Option<&str>) -> anyhow::Result<Option<SecretVersion>> {
    let client = aws_sdk_secretsmanager::Client::new(sdk().await);
    let out = client
        .get_secret_value()
        .secret_id(arn)
        .set_version_stage(stage.map(str::to_owned))
        .send()
        .await;
    let out = match out {
        Ok(out) => out,
        Err(e)
            if stage.is_some()
                && e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            return Ok(None);
        }
        Err(e) => {
            return Err(
                anyhow::Error::new(e.into_service_error()).context(format!("reading secret {arn}"))
            );
        }
    };
    let value = out
        .secret_string
        .with_context(|| format!("secret {arn} has no string value"))?;
    let created = out
        .created_date
        .and_then(|d| DateTime::from_timestamp(d.secs(), d.subsec_nanos()));
    Ok(Some(SecretVersion {
        value: value.into(),
        created,
    }))
}

/// A database password secret: a bare string, or RDS's JSON with `password` and `username`.
pub fn parse_login(raw: &SecretString) -> (Option<String>, SecretString) {
    match serde_json::from_str::<serde_json::Value>(raw.expose_secret()) {
        Ok(serde_json::Value::Object(map)) => (
            map.get("username")
                .and_then(|u| u.as_str())
                .map(str::to_owned),
            map.get("password")
                .and_then(|p| p.as_str())
                .unwrap_or_default()
                .to_owned()
                .into(),
        ),
        _ => (None, raw.clone()),
    }
}

/// Puts the ElastiCache auth token into a `rediss://host:port` URL.
pub fn redis_url_with_token(
    url: &SecretString,
    token: &SecretString,
) -> anyhow::Result<SecretString> {
    let url = url.expose_secret();
    let Some((scheme, rest)) = url.split_once("://") else {
        bail!("REDIS_URL is not a URL")
    };
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let encoded: String = token
        .expose_secret()
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    Ok(format!("{scheme}://:{encoded}@{rest}").into())
}

/// A TLS connector that trusts exactly the certificates of `ca_bundle` and checks the host name.
pub fn tls(ca_bundle: &Path) -> anyhow::Result<MakeRustlsConnect> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_bundle)
        .with_context(|| format!("reading CA bundle {}", ca_bundle.display()))?
    {
        roots.add(cert.with_context(|| format!("a certificate in {}", ca_bundle.display()))?)?;
    }
    if roots.is_empty() {
        bail!("CA bundle {} holds no certificate", ca_bundle.display());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// How long an RDS IAM auth token is good for: RDS accepts at most 15 minutes, and the token is
/// needed only to open the connection.
const RDS_TOKEN_LIFETIME: std::time::Duration = std::time::Duration::from_secs(900);

/// Where an IAM auth token lets one user in.
struct RdsTarget {
    host: String,
    port: u16,
    user: String,
}

/// An RDS IAM auth token for `target`, signed with this process's AWS credentials and region.
async fn rds_auth_token(sdk: &SdkConfig, target: &RdsTarget) -> anyhow::Result<String> {
    let credentials = sdk
        .credentials_provider()
        .context("no AWS credentials to sign an RDS auth token with")?
        .provide_credentials()
        .await?;
    let region = sdk.region().map_or("us-east-1", |r| r.as_ref());
    sign_rds_token(
        &credentials.into(),
        region,
        std::time::SystemTime::now(),
        target,
    )
}

/// The token is a SigV4 presigned `GET https://host:port/?Action=connect&DBUser=user` for the
/// `rds-db` service, the signature in the query, without its scheme. The whole RDS SDK would do the
/// same; signing here keeps that large crate out of the build.
fn sign_rds_token(
    identity: &Identity,
    region: &str,
    now: std::time::SystemTime,
    target: &RdsTarget,
) -> anyhow::Result<String> {
    let mut url = url::Url::parse(&format!("https://{}:{}/", target.host, target.port))
        .with_context(|| format!("{}:{} is not a host and port", target.host, target.port))?;
    url.query_pairs_mut()
        .append_pair("Action", "connect")
        .append_pair("DBUser", &target.user);
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(RDS_TOKEN_LIFETIME);
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(identity)
        .region(region)
        .name("rds-db")
        .time(now)
        .settings(settings)
        .build()?;
    let request = SignableRequest::new(
        "GET",
        url.as_str(),
        std::iter::empty(),
        SignableBody::empty(),
    )?;
    let (instructions, _) = aws_sigv4::http_request::sign(request, &params.into())?.into_parts();
    for (name, value) in instructions.params() {
        url.query_pairs_mut().append_pair(name, value);
    }
    Ok(url.as_str().trim_start_matches("https://").to_owned())
}

/// How each new RDS connection logs in.
enum Login {
    Iam(RdsTarget),
    Password(SecretString),
}

/// Opens RDS connections for the pool: TLS required and verified, a fresh IAM token (valid for 15
/// minutes, needed only to open the connection) or the password for each.
pub struct RdsConnect {
    tls: MakeRustlsConnect,
    login: Login,
}

type Connected = Result<(tokio_postgres::Client, JoinHandle<()>), tokio_postgres::Error>;

impl deadpool_postgres::Connect for RdsConnect {
    fn connect(
        &self,
        pg_config: &tokio_postgres::Config,
    ) -> Pin<Box<dyn Future<Output = Connected> + Send + '_>> {
        let mut config = pg_config.clone();
        Box::pin(async move {
            match &self.login {
                Login::Iam(target) => match rds_auth_token(sdk().await, target).await {
                    Ok(token) => {
                        IAM_TOKENS_ISSUED.fetch_add(1, Ordering::Relaxed);
                        config.password(token);
                    }
                    // The server will refuse the login and the pool reports that error.
                    Err(e) => tracing::error!(error = %e, "cannot generate an RDS IAM auth token"),
                },
                Login::Password(password) => {
                    config.password(password.expose_secret());
                }
            }
            let (client, connection) = config.connect(self.tls.clone()).await?;
            let task = tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "database connection ended");
                }
            });
            Ok((client, task))
        })
    }
}

/// The `tokio_postgres` configuration and connector for an RDS login.
pub async fn rds_connect(rds: &RdsConfig) -> anyhow::Result<(tokio_postgres::Config, RdsConnect)> {
    let mut user = rds.user.clone();
    let login = match &rds.login {
        RdsLogin::IamToken => Login::Iam(RdsTarget {
            host: rds.host.clone(),
            port: rds.port,
            user: rds.user.clone(),
        }),
        RdsLogin::Password(password) => Login::Password(password.clone()),
        RdsLogin::Secret { arn } => {
            let raw = secret(arn, None)
                .await?
                .with_context(|| format!("secret {arn} has no current value"))?;
            let (secret_user, password) = parse_login(&raw.value);
            if let Some(secret_user) = secret_user {
                user = secret_user;
            }
            Login::Password(password)
        }
    };
    let mut config = tokio_postgres::Config::new();
    config
        .host(&rds.host)
        .port(rds.port)
        .dbname(&rds.name)
        .user(&user)
        .ssl_mode(SslMode::Require);
    config.connect_timeout(std::time::Duration::from_secs(5));
    Ok((
        config,
        RdsConnect {
            tls: tls(&rds.ca_bundle)?,
            login,
        },
    ))
}

/// Makes the application's login role (`rds.user`) a member of `qbill_application` and lets it
/// log in the way the deployment does: with IAM tokens (membership of `rds_iam`) when the workers
/// connect to the database directly, or with the password of its secret when they go through the
/// `secret` mode or RDS Proxy (RDS refuses passwords for members of `rds_iam`, so that membership
/// is revoked). Runs with the migration login; idempotent.
pub async fn prepare_login(pool: &deadpool_postgres::Pool, rds: &RdsConfig) -> anyhow::Result<()> {
    let through_proxy = rds.host.contains(".proxy-");
    let password = match &rds.login {
        RdsLogin::IamToken if !through_proxy => None,
        RdsLogin::Password(password) => Some(password.clone()),
        RdsLogin::Secret { arn } => Some(password_in(arn).await?),
        RdsLogin::IamToken => {
            let arn = rds.password_secret_arn.as_deref().context(
                "RDS Proxy logs in with a password: set QBILL_DATABASE_PASSWORD_SECRET_ARN",
            )?;
            Some(password_in(arn).await?)
        }
    };
    let client = pool.get().await?;
    ensure_login(&client, &rds.user, None).await?;
    if let Some(password) = &password {
        set_password(&client, &rds.user, password).await?;
    }
    let rds_iam = client
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = 'rds_iam'", &[])
        .await?
        .is_some();
    match password {
        None if rds_iam => ddl(&client, "GRANT rds_iam TO %I", &[&rds.user]).await?,
        None => {}
        Some(_) if rds_iam => ddl(&client, "REVOKE rds_iam FROM %I", &[&rds.user]).await?,
        Some(_) => {}
    }
    Ok(())
}

/// Makes `user` a login role and a member of `qbill_application`, creating it (with `password`,
/// if given) when missing; an existing role keeps its password (see [`set_password`]). Runs with
/// the migration login; idempotent, and does nothing to a role that is already right, so that
/// many databases of one server migrating at once (roles are cluster-wide) do not collide.
pub async fn ensure_login(
    client: &tokio_postgres::Client,
    user: &str,
    password: Option<&SecretString>,
) -> anyhow::Result<()> {
    let state = client
        .query_opt(
            "SELECT rolcanlogin, pg_has_role(oid, 'qbill_application', 'MEMBER') AS member FROM pg_roles
             WHERE rolname = $1",
            &[&user],
        )
        .await?
        .map(|r| (r.get::<_, bool>("rolcanlogin"), r.get::<_, bool>("member")));
    let (login, member) = match state {
        Some(state) => state,
        None => {
            let created = match password {
                Some(p) => {
                    ddl(
                        client,
                        "CREATE ROLE %I LOGIN PASSWORD %L",
                        &[user, p.expose_secret()],
                    )
                    .await
                }
                None => ddl(client, "CREATE ROLE %I LOGIN", &[user]).await,
            };
            match created {
                Ok(()) => {}
                // Created by a migration running at the same moment.
                Err(e) if is_concurrent_role_change(&e) => {}
                Err(e) => return Err(e.into()),
            }
            (true, false)
        }
    };
    let settle = |result: Result<(), tokio_postgres::Error>| match result {
        Err(e) if !is_concurrent_role_change(&e) => Err(e),
        _ => Ok(()),
    };
    if !member {
        settle(ddl(client, "GRANT qbill_application TO %I", &[user]).await)?;
    }
    if !login {
        settle(ddl(client, "ALTER ROLE %I LOGIN", &[user]).await)?;
    }
    Ok(())
}

/// Sets the password `user` logs in with (RDS's `secret` mode and RDS Proxy, whose secret may
/// have been rotated since the role was made).
pub async fn set_password(
    client: &tokio_postgres::Client,
    user: &str,
    password: &SecretString,
) -> anyhow::Result<()> {
    ddl(
        client,
        "ALTER ROLE %I LOGIN PASSWORD %L",
        &[user, password.expose_secret()],
    )
    .await?;
    Ok(())
}

/// Another session changed the same role at the same moment: what it did is what was wanted.
fn is_concurrent_role_change(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    let code = e.code();
    code == Some(&SqlState::DUPLICATE_OBJECT)
        || code == Some(&SqlState::UNIQUE_VIOLATION)
        || (code == Some(&SqlState::INTERNAL_ERROR)
            && e.as_db_error()
                .is_some_and(|d| d.message().contains("concurrently updated")))
}

/// Runs a DDL statement made by `format(template, args…)`: role names and passwords cannot be
/// bound parameters of DDL, so Postgres quotes them itself (`%I`, `%L`).
async fn ddl(
    client: &tokio_postgres::Client,
    template: &str,
    args: &[&str],
) -> Result<(), tokio_postgres::Error> {
    let placeholders: Vec<String> = (1..=args.len()).map(|i| format!("${i}::text")).collect();
    let query = format!(
        "SELECT format({}, {})",
        quote_literal(template),
        placeholders.join(", ")
    );
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = args
        .iter()
        .map(|a| a as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    let sql: String = client.query_one(&query, &params).await?.get(0);
    client.batch_execute(&sql).await
}

/// A string as an SQL literal (the templates are this file's own constants).
fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The password of a database login secret.
async fn password_in(arn: &str) -> anyhow::Result<SecretString> {
    let raw = secret(arn, None)
        .await?
        .with_context(|| format!("secret {arn} has no current value"))?;
    Ok(parse_login(&raw.value).1)
}

/// The signing keys held in a Secrets Manager secret: the current one, and the previous one with
/// the moment it stops being accepted (one token lifetime after the current one was created).
pub async fn jwt_keys(
    arn: &str,
    ttl: std::time::Duration,
) -> anyhow::Result<(SecretString, Option<(SecretString, Option<DateTime<Utc>>)>)> {
    let current = secret(arn, None)
        .await?
        .with_context(|| format!("secret {arn} has no current value"))?;
    crate::config::check_key(&current.value).context("the current JWT key")?;
    let previous = secret(arn, Some("AWSPREVIOUS")).await?.map(|p| {
        let until = current.created.map(|c| c + ttl);
        (p.value, until)
    });
    Ok((current.value, previous))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The token botocore's `generate_db_auth_token` gives for the same credentials, region, time
    /// and target (botocore 1.43, its clock held at 2026-12-07T12:00:00Z).
    #[test]
    fn an_rds_token_is_the_one_the_aws_sdk_signs() {
        let credentials = aws_credential_types::Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "test",
        );
        let noon = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_644_800);
        let target = RdsTarget {
            host: "qbill.cluster-abc.eu-central-1.rds.amazonaws.com".into(),
            port: 5432,
            user: "qbill_worker".into(),
        };
        let token = sign_rds_token(&credentials.into(), "eu-central-1", noon, &target).unwrap();
        assert_eq!(
            token,
            "qbill.cluster-abc.eu-central-1.rds.amazonaws.com:5432/?Action=connect&DBUser=qbill_worker\
             &X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIDEXAMPLE%2F20261207%2Feu-central-1%2Frds-db%2Faws4_request\
             &X-Amz-Date=20261207T120000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=0598d002c30c9ddcab4933d32e0d15c9b6db79770720d4ee972b4de846b3ef54"
        );
    }

    #[test]
    fn the_redis_auth_token_goes_into_the_url_encoded() {
        let url = redis_url_with_token(
            &"rediss://cache.example:6379".to_owned().into(),
            &"a/b+c".to_owned().into(),
        )
        .unwrap();
        assert_eq!(
            url.expose_secret(),
            "rediss://:a%2Fb%2Bc@cache.example:6379"
        );
        let replaced = redis_url_with_token(
            &"rediss://:old@cache.example:6379/0".to_owned().into(),
            &"new".to_owned().into(),
        )
        .unwrap();
        assert_eq!(
            replaced.expose_secret(),
            "rediss://:new@cache.example:6379/0"
        );
    }

    #[test]
    fn database_secrets_are_read_as_json_or_as_a_bare_password() {
        let (user, password) =
            parse_login(&r#"{"username":"master","password":"p@ss"}"#.to_owned().into());
        assert_eq!(user.as_deref(), Some("master"));
        assert_eq!(password.expose_secret(), "p@ss");
        let (user, password) = parse_login(&"plain-password".to_owned().into());
        assert_eq!(user, None);
        assert_eq!(password.expose_secret(), "plain-password");
    }
}
