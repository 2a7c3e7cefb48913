//! `auth`: checks a username and password and issues a token bound to the client's reply queue,
//! with the apartments the user owns.

use std::time::Duration;

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
    pub apartments: Vec<Apartment>,
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

/// Failed logins of one username within [`FAILURE_WINDOW`] that lock it.
pub const MAX_FAILURES: i32 = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// How long a locked username stays locked.
pub const LOCKOUT: Duration = Duration::from_secs(15 * 60);

pub async fn run(
    engine: &Engine,
    envelope: &Envelope,
    username: &str,
    password: &SecretString,
) -> HandlerResult {
    let stored = {
        let client = engine.store.get().await?;
        // Every attempt is counted before the password is checked, atomically, so concurrent
        // guesses cannot all slip past the limit; a success clears the count.
        let count = client
            .prepare_cached(
                "INSERT INTO login_failures AS f (username, failures, first_failed) VALUES ($1, 1, now())
                 ON CONFLICT (username) DO UPDATE SET
                     failures = CASE WHEN f.locked_until <= now()
                                       OR (f.locked_until IS NULL AND f.first_failed < now() - make_interval(secs => $2))
                                     THEN 1 ELSE f.failures + 1 END,
                     first_failed = CASE WHEN f.locked_until <= now()
                                           OR (f.locked_until IS NULL AND f.first_failed < now() - make_interval(secs => $2))
                                         THEN now() ELSE f.first_failed END,
                     locked_until = CASE WHEN f.locked_until <= now() THEN NULL ELSE f.locked_until END
                 RETURNING failures, locked_until IS NOT NULL",
            )
            .await?;
        let row = client
            .query_one(&count, &[&username, &FAILURE_WINDOW.as_secs_f64()])
            .await?;
        let (attempts, locked): (i32, bool) = (row.get(0), row.get(1));
        if locked || attempts > MAX_FAILURES {
            if !locked {
                let lock = client
                    .prepare_cached("UPDATE login_failures SET locked_until = now() + make_interval(secs => $2) WHERE username = $1")
                    .await?;
                client
                    .execute(&lock, &[&username, &LOCKOUT.as_secs_f64()])
                    .await?;
                tracing::warn!(
                    auth.locked = true,
                    "a username was locked after repeated failed logins"
                );
            }
            return Err(HandlerError::rejected(
                ErrorCode::Unauthorized,
                "too many failed logins for this username; try again later",
            ));
        }
        let statement = client
            .prepare_cached("SELECT id, password_hash FROM users WHERE username = $1")
            .await?;
        client.query_opt(&statement, &[&username]).await?
    };
    let (user, hash) = match stored {
        Some(row) => (Some(UserId(row.get(0))), Some(row.get::<_, String>(1))),
        None => (None, None),
    };
    // The connection is back in the pool before the deliberately slow hash check.
    let verified = password::verify(password.clone(), hash)
        .await
        .map_err(HandlerError::Internal)?;
    let (Some(user), true) = (user, verified) else {
        return Err(HandlerError::rejected(
            ErrorCode::Unauthorized,
            "invalid username or password",
        ));
    };
    {
        let client = engine.store.get().await?;
        let clear = client
            .prepare_cached("DELETE FROM login_failures WHERE username = $1")
            .await?;
        client.execute(&clear, &[&username]).await?;
    }

    let apartments = apartments(engine, user).await?;
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
