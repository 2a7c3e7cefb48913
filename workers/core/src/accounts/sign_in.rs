//! Signing in: the reply of a login or a refresh (a token bound to the request's reply queue,
//! the refresh token and the user's apartments), shared by the `auth` and `refresh` routes and
//! shown again by `me`.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::cache::CacheKey;
use crate::common::page_len;
use crate::error::HandlerError;
use crate::services::Services;
use crate::token::Holder;
use crate::types::{ApartmentId, ProviderId, Role, UserId};

#[derive(Debug, Serialize, JsonSchema)]
pub struct AuthData {
    pub token: String,
    pub token_type: &'static str,
    pub expires_at: DateTime<Utc>,
    /// Trades for a new pair at `/auth/refresh`, once.
    pub refresh_token: String,
    pub refresh_expires_at: DateTime<Utc>,
    pub user: User,
    /// By id; as many as one page carries (see [`crate::common::page_len`]).
    pub apartments: Vec<Apartment>,
    /// The user owns more apartments than one page carries (500, fewer with long addresses).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub more_apartments: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub role: Role,
    pub provider_id: Option<ProviderId>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Apartment {
    pub id: ApartmentId,
    pub address: String,
}

/// The reply of a login or a refresh: a new access token for `holder` bound to the request's
/// reply queue, the refresh token, and the user's apartments.
pub async fn signed_in(
    services: &Services,
    call: &crate::call::Call,
    holder: &Holder,
    apartments_version: i64,
    refresh: crate::accounts::Refresh,
) -> Result<AuthData, HandlerError> {
    let user = holder.user_id;
    let (apartments, more_apartments) = apartments_page(services, user, apartments_version).await?;
    let (token, expires_at) = services
        .tokens
        .issue(holder, call.reply_to)
        .map_err(HandlerError::Internal)?;
    Ok(AuthData {
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

/// Whom the token is for, and the version of the user's apartment list, from the user's row
/// (its `id`, `role`, `provider_id`, `apartments_version` and `session_epoch`, by name).
pub fn row_holder(
    row: &tokio_postgres::Row,
    username: &str,
) -> Result<(Holder, i64), HandlerError> {
    let role = Role::parse(row.get("role")).map_err(HandlerError::internal)?;
    Ok((
        Holder {
            user_id: UserId(row.get("id")),
            username: username.to_owned(),
            role,
            provider: row.get::<_, Option<i64>>("provider_id").map(ProviderId),
            epoch: row.get("session_epoch"),
        },
        row.get("apartments_version"),
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
            id: ApartmentId(r.get("id")),
            address: r.get("address"),
        })
        .collect();
    services
        .cache
        .put_versioned(key, version, &apartments)
        .await;
    Ok(apartments)
}
