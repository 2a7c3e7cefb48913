//! `auth`: checks a username and password and issues a token bound to the client's reply queue,
//! with the apartments the user owns, and a refresh token that starts a new session (see the
//! `refresh` route). Attempts go through the login [`throttle`] first.

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::common::{page_len, to_data};
use super::{Callers, Context, ErrorCode, HandlerError, HandlerResult, Route, body};
use crate::accounts::throttle;
use crate::cache::CacheKey;
use crate::call::Path;
use crate::services::Services;
use crate::token::Holder;
use crate::types::{ApartmentId, ParseError, ProviderId, Role, UserId};

/// Bounds the Argon2 work an attacker can ask for with one login.
pub const MAX_PASSWORD_BYTES: usize = 1024;

#[derive(Debug)]
pub struct Request {
    /// Trimmed and in lower case.
    pub username: String,
    pub password: SecretString,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    username: String,
    password: String,
}

impl Route for Request {
    const CALLERS: Callers = Callers::Anyone;

    fn parse(
        _: &Path,
        raw: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self, ParseError> {
        let b: Body = body(raw)?;
        Ok(Self {
            username: parse_username(&b.username)?,
            password: parse_password(b.password)?,
        })
    }

    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        run(cx, &self.username, &self.password).await
    }
}

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

#[derive(Debug, Serialize)]
pub struct AuthData {
    pub token: String,
    pub token_type: &'static str,
    pub expires_at: DateTime<Utc>,
    /// Trades for a new pair at `/auth/refresh`, once.
    pub refresh_token: String,
    pub refresh_expires_at: DateTime<Utc>,
    pub user: User,
    /// By id; as many as one page carries (see [`super::common::page_len`]).
    pub apartments: Vec<Apartment>,
    /// The user owns more apartments than one page carries (500, fewer with long addresses).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub more_apartments: bool,
}

#[derive(Debug, Serialize)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub role: Role,
    pub provider_id: Option<ProviderId>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Apartment {
    pub id: ApartmentId,
    pub address: String,
}

async fn run(cx: &Context<'_>, username: &str, password: &SecretString) -> HandlerResult {
    let (services, call) = (cx.services, cx.call);
    // Leave to check the password (or a refusal while a throttle limit holds), and the user's row.
    let throttle::Granted { lease, user } =
        throttle::reserve(services, username, &call.source).await?;
    // This attempt now counts in the throttle's limits, which bound the queues it can make.
    cx.vouch();
    // A user without a password here (a Cognito pool's, `c-…`) cannot log in with one: its hash
    // is absent, and the check below runs against a dummy hash like an unknown user's.
    let (user, hash) = match user {
        Some(row) => match row.get::<_, Option<String>>(1) {
            Some(hash) => (Some(row_holder(&row, username)?), Some(hash)),
            None => (None, None),
        },
        None => (None, None),
    };
    // No connection is held during the deliberately slow check.
    let verified = services.passwords.verify(password.clone(), hash).await?;
    let user = user.filter(|_| verified);
    throttle::settle(
        &*crate::store::client(&services.store).await?,
        lease,
        user.is_some(),
    )
    .await?;
    let Some((holder, apartments_version)) = user else {
        return Err(HandlerError::rejected(
            ErrorCode::Unauthorized,
            "invalid username or password",
        ));
    };
    let refresh = crate::accounts::issue_refresh(
        &*crate::store::client(&services.store).await?,
        holder.user_id,
        holder.epoch,
        None,
        crate::accounts::random_token(),
    )
    .await?;
    signed_in(services, call, &holder, apartments_version, refresh).await
}

/// The reply of a login or a refresh: a new access token for `holder` bound to the request's
/// reply queue, the refresh token, and the user's apartments.
pub async fn signed_in(
    services: &Services,
    call: &crate::call::Call,
    holder: &Holder,
    apartments_version: i64,
    refresh: crate::accounts::Refresh,
) -> HandlerResult {
    let user = holder.user_id;
    let (apartments, more_apartments) = apartments_page(services, user, apartments_version).await?;
    let (token, expires_at) = services
        .tokens
        .issue(holder, call.reply_to)
        .map_err(HandlerError::Internal)?;
    to_data(&AuthData {
        token,
        token_type: "Bearer",
        expires_at,
        refresh_token: refresh.token,
        refresh_expires_at: refresh.expires_at,
        user: User {
            id: user,
            username: holder.username.clone(),
            role: holder.role,
            provider_id: holder.provider,
        },
        apartments,
        more_apartments,
    })
}

/// Whom the token is for, and the version of the user's apartment list, from the user's row.
pub fn row_holder(
    row: &tokio_postgres::Row,
    username: &str,
) -> Result<(Holder, i64), HandlerError> {
    let role = Role::parse(row.get(2)).map_err(HandlerError::internal)?;
    Ok((
        Holder {
            user_id: UserId(row.get(0)),
            username: username.to_owned(),
            role,
            provider: row.get::<_, Option<i64>>(3).map(ProviderId),
            epoch: row.get(5),
        },
        row.get(4),
    ))
}

/// The first page of the user's apartments (as many as one reply carries), and whether there are
/// more.
pub async fn apartments_page(
    services: &Services,
    user: UserId,
    version: i64,
) -> Result<(Vec<Apartment>, bool), HandlerError> {
    let mut apartments = apartments(services, user, version).await?;
    let fitting = page_len(&apartments);
    let more = fitting < apartments.len();
    apartments.truncate(fitting);
    Ok((apartments, more))
}

/// The user's apartments: the cached list if it was read at the user's current `version` (a
/// link bumps it in its own transaction), else read afresh.
async fn apartments(
    services: &Services,
    user: UserId,
    version: i64,
) -> Result<Vec<Apartment>, HandlerError> {
    let key = CacheKey::Apartments { user };
    if let Some((cached_at, cached)) = services.cache.get_versioned(key).await
        && cached_at == version
    {
        return Ok(cached);
    }
    let client = crate::store::client(&services.store).await?;
    let statement = client
        .prepare_cached(
            "SELECT a.id, a.address FROM apartments a JOIN apartment_owners o ON o.apartment_id = a.id
             WHERE o.user_id = $1 ORDER BY a.id",
        )
        .await?;
    let rows = client.query(&statement, &[&user.0]).await?;
    let apartments: Vec<Apartment> = rows
        .iter()
        .map(|r| Apartment {
            id: ApartmentId(r.get(0)),
            address: r.get(1),
        })
        .collect();
    services
        .cache
        .put_versioned(key, version, &apartments)
        .await;
    Ok(apartments)
}
