//! What a person types to get in, read before anything runs: usernames and passwords (a login's,
//! and a new account's stricter ones), the tokens mailed or issued to them; and a new password's
//! hash and a new user's row. The routes that log in, sign up, reset, change or add (`auth`,
//! `signup`, `user`, `provider`, `me_password`, `password_reset_confirm`, ...) share them.

use secrecy::{ExposeSecret, SecretString};
use tokio_postgres::error::SqlState;

use crate::error::{ErrorCode, HandlerError};
use crate::services::Services;
use crate::types::{ParseError, ProviderId, Role, UserId};

/// Bounds the Argon2 work an attacker can ask for with one login.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// A username as it is stored: trimmed, in lower case, 1 to 63 characters without control
/// characters (Postgres refuses NUL in text).
pub fn parse_username(raw: &str) -> Result<String, ParseError> {
    let username = raw.trim().to_ascii_lowercase();
    if username.is_empty() || username.len() > 63 {
        return Err(ParseError::new("`username` must be 1 to 63 characters"));
    }
    if username.chars().any(char::is_control) {
        return Err(ParseError::new(
            "`username` must not contain control characters",
        ));
    }
    Ok(username)
}

/// A password of 1 to [`MAX_PASSWORD_BYTES`] bytes.
pub fn parse_password(raw: String) -> Result<SecretString, ParseError> {
    if raw.is_empty() || raw.len() > MAX_PASSWORD_BYTES {
        return Err(ParseError::new(format!(
            "`password` must be 1 to {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(raw.into())
}

/// A new user's password: at least this many characters.
pub const MIN_PASSWORD_CHARS: usize = 10;

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
    if username.starts_with(super::COGNITO_PREFIX) {
        return Err(ParseError::new(format!(
            "usernames starting with `{}` are kept for the users of a Cognito pool",
            super::COGNITO_PREFIX
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
    parse_password(raw)
}

/// The Argon2 hash of a new password, computed in one of the bounded password slots.
pub async fn hash(services: &Services, password: &SecretString) -> Result<String, HandlerError> {
    services
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

/// A mailed token as it arrives: 1 to 200 characters.
pub fn parse_token(raw: String) -> Result<SecretString, ParseError> {
    if raw.is_empty() || raw.len() > 200 {
        return Err(ParseError::new("`token` must be 1 to 200 characters"));
    }
    Ok(raw.into())
}

/// The reply to a token that is unknown, used or expired.
pub fn bad_token(what: &str) -> HandlerError {
    HandlerError::rejected(
        ErrorCode::InvalidRequest,
        format!("this {what} link is invalid, was used already or has expired; ask for a new one"),
    )
}

/// A refresh token as it arrives: 1 to 200 characters.
pub fn parse_refresh_token(raw: String) -> Result<SecretString, ParseError> {
    if raw.is_empty() || raw.len() > 200 {
        return Err(ParseError::new(
            "`refresh_token` must be 1 to 200 characters",
        ));
    }
    Ok(raw.into())
}
