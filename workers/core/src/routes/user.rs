//! `user`: an operator adds a user of any role (`POST /users`). A provider's user names the
//! provider it acts for; a taken username is `conflict`.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio_postgres::error::SqlState;

use super::common::to_data;
use super::idempotency;
use super::{Callers, Context, ErrorCode, HandlerError, HandlerResult, Kind, Route, body};
use crate::call::Path;
use crate::types::{ParseError, ProviderId, Role, UserId};

/// A new user's password: at least this many characters.
pub const MIN_PASSWORD_CHARS: usize = 10;

#[derive(Debug, Serialize)]
pub struct Request {
    pub username: String,
    #[serde(skip)]
    pub password: SecretString,
    pub role: Role,
    pub provider_id: Option<ProviderId>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    username: String,
    password: String,
    role: String,
    #[serde(default)]
    provider_id: Option<i64>,
}

/// The reply's data, kind `user`.
#[derive(Debug, Serialize)]
pub struct UserData {
    pub id: UserId,
    pub username: String,
    pub role: Role,
    pub provider_id: Option<ProviderId>,
}

impl Route for Request {
    const CALLERS: Callers = Callers::Roles(&[Role::Operator]);

    fn parse(_: &Path, raw: Map<String, Value>) -> Result<Self, ParseError> {
        let b: Body = body(raw)?;
        let role = Role::parse(&b.role)?;
        let provider_id = b
            .provider_id
            .map(|id| ProviderId::from_body("provider_id", id))
            .transpose()?;
        if (role == Role::Provider) != provider_id.is_some() {
            return Err(ParseError::new(
                "`provider_id` is required for the provider role, and only for it",
            ));
        }
        Ok(Self {
            username: parse_new_username(&b.username)?,
            password: parse_new_password(b.password)?,
            role,
            provider_id,
        })
    }

    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        // The slow hash first, holding no connection.
        let hash = hash(cx, &self.password).await?;
        idempotency::once(cx, Kind::User, self, async |tx| {
            if let Some(provider) = self.provider_id {
                let exists = tx
                    .query_opt("SELECT 1 FROM providers WHERE id = $1", &[&provider.0])
                    .await?;
                if exists.is_none() {
                    return Err(HandlerError::rejected(
                        ErrorCode::NotFound,
                        format!("provider {provider} does not exist"),
                    ));
                }
            }
            let id = insert(tx, &self.username, &hash, self.role, self.provider_id).await?;
            let data = to_data(&UserData {
                id,
                username: self.username.clone(),
                role: self.role,
                provider_id: self.provider_id,
            })?;
            Ok(data)
        })
        .await
    }
}

/// A username a new user may take: 2 to 63 characters of `a-z`, `0-9`, `.`, `_` and `-`,
/// starting with a letter or digit (what the database accepts), in lower case.
pub fn parse_new_username(raw: &str) -> Result<String, ParseError> {
    let username = raw.trim().to_ascii_lowercase();
    let bytes = username.as_bytes();
    let valid = (2..=63).contains(&bytes.len())
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(b));
    if !valid {
        return Err(ParseError::new(
            "`username` must be 2 to 63 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit",
        ));
    }
    if username.starts_with(crate::accounts::COGNITO_PREFIX) {
        return Err(ParseError::new(format!(
            "usernames starting with `{}` are kept for the users of a Cognito pool",
            crate::accounts::COGNITO_PREFIX
        )));
    }
    Ok(username)
}

/// A new password: [`MIN_PASSWORD_CHARS`] characters to the most a login takes.
pub fn parse_new_password(raw: String) -> Result<SecretString, ParseError> {
    if raw.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ParseError::new(format!(
            "`password` must be at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    super::auth::parse_password(raw)
}

/// The Argon2 hash of a new password, computed in one of the bounded password slots.
pub async fn hash(cx: &Context<'_>, password: &SecretString) -> Result<String, HandlerError> {
    cx.services
        .passwords
        .hash(password.expose_secret().to_owned().into())
        .await
        .map_err(HandlerError::from)
}

/// Inserts a user; a taken username is `conflict`.
pub async fn insert(
    client: &impl deadpool_postgres::GenericClient,
    username: &str,
    hash: &str,
    role: Role,
    provider: Option<ProviderId>,
) -> Result<UserId, HandlerError> {
    let inserted = client
        .query_one(
            "INSERT INTO users (username, password_hash, role, provider_id) VALUES ($1, $2, $3, $4) RETURNING id",
            &[&username, &hash, &role.as_str(), &provider.map(|p| p.0)],
        )
        .await;
    match inserted {
        Ok(row) => Ok(UserId(row.get(0))),
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => Err(HandlerError::rejected(
            ErrorCode::Conflict,
            format!("the username {username} is taken"),
        )),
        Err(e) => Err(e.into()),
    }
}
