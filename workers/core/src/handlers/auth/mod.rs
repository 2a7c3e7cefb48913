//! `auth`: checks a username and password and issues a token bound to the client's reply queue,
//! with the apartments the user owns. Attempts go through the [`throttle`] first.

pub mod throttle;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::{HandlerError, HandlerResult, to_data};
use crate::cache::CacheKey;
use crate::engine::Engine;
use crate::envelope::Envelope;
use crate::password;
use crate::reply::ErrorCode;
use crate::types::{ApartmentId, UserId};

#[derive(Debug, Serialize)]
pub struct AuthData {
    pub token: String,
    pub token_type: &'static str,
    pub expires_at: DateTime<Utc>,
    pub user: User,
    /// By id; as many as one page carries (see [`super::page_len`]).
    pub apartments: Vec<Apartment>,
    /// The user owns more apartments than one page carries (500, fewer with long addresses).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub more_apartments: bool,
}

#[derive(Debug, Serialize)]
pub struct User {
    pub id: UserId,
    pub username: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Apartment {
    pub id: ApartmentId,
    pub address: String,
}

pub async fn run(
    engine: &Engine,
    envelope: &Envelope,
    username: &str,
    password: &SecretString,
) -> HandlerResult {
    // Leave to check the password (or a refusal while a throttle limit holds), and the user's row.
    let throttle::Granted { lease, user } =
        throttle::reserve(engine, username, &envelope.source).await?;
    let (user, hash) = match user {
        Some(row) => (Some(UserId(row.get(0))), Some(row.get::<_, String>(1))),
        None => (None, None),
    };
    // No connection is held during the deliberately slow check.
    let verified = engine
        .passwords
        .verify(password.clone(), hash)
        .await
        .map_err(|e| match e {
            password::CheckError::Busy => HandlerError::Transient(e.into()),
            password::CheckError::Failed(e) => HandlerError::Internal(e),
        })?;
    let user = user.filter(|_| verified);
    throttle::settle(&engine.store.get().await?, lease, user.is_some()).await?;
    let Some(user) = user else {
        return Err(HandlerError::rejected(
            ErrorCode::Unauthorized,
            "invalid username or password",
        ));
    };

    let mut apartments = apartments(engine, user).await?;
    let fitting = super::page_len(&apartments);
    let more_apartments = fitting < apartments.len();
    apartments.truncate(fitting);
    let (token, expires_at) = engine
        .tokens
        .issue(user, username, envelope.reply_to)
        .map_err(HandlerError::Internal)?;
    to_data(&AuthData {
        token,
        token_type: "Bearer",
        expires_at,
        user: User {
            id: user,
            username: username.to_owned(),
        },
        apartments,
        more_apartments,
    })
}

async fn apartments(engine: &Engine, user: UserId) -> Result<Vec<Apartment>, HandlerError> {
    let key = CacheKey::Apartments { user };
    if let Some(cached) = engine.cache.get(key).await {
        return Ok(cached);
    }
    let client = engine.store.get().await?;
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
    engine.cache.put(key, &apartments).await;
    Ok(apartments)
}
