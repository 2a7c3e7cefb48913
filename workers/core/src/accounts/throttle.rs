//! The login throttle: whether an attempt may check its password now.
//!
//! Failed logins are counted in three scopes, each with its own limit over a window of
//! [`WINDOW`]; a scope that reaches its limit is locked for [`LOCKOUT`], and attempts in it are
//! refused without their password being checked:
//!
//! | scope | counts the failed logins of | limit |
//! |---|---|---|
//! | pair | one username from one source | [`LIMITS`]`.pair` (5) |
//! | source | one source, whatever the username | [`LIMITS`]`.source` (50) |
//! | username | one username, from anywhere | [`LIMITS`]`.username` (100) |
//!
//! So guessing from one place locks that place out of that account after 5 tries and out of every
//! account after 50, while the owner elsewhere still logs in. The username's scope never locks:
//! guesses spread over many places get 100 checks a window, and past that ceiling the username's
//! attempts are checked one at a time, each only once a delay has passed since the last failure,
//! a second doubling with every failure up to [`SLOWDOWN_MAX`]. So the guessing slows to a
//! crawl, and the count stays while it goes on, but the owner's right password is never refused
//! for good: it waits its turn (`sql/V18__login_slowdown.sql`). A source is what the gateway saw
//! ([`crate::types::Source`]).
//!
//! A check under way holds a lease, and an attempt may start one only while, in every scope,
//! failures plus checks under way stay below the limit. Concurrent wrong guesses therefore cannot
//! get more checks than the limit, and a right password is never refused because other attempts
//! run at the same time: it waits for one of them to end instead (at most [`WAIT_AT_MOST`], after
//! which the message is left for a retry). The counting is `login_reserve` and `login_settle` in
//! `sql/V9__login_throttle.sql`, atomic per key.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::error::{ErrorCode, HandlerError};
use crate::services::Services;
use crate::types::Source;

/// Failed logins in a window that lock a scope.
pub struct Limits {
    pub pair: i32,
    pub source: i32,
    pub username: i32,
}

pub const LIMITS: Limits = Limits {
    pair: 5,
    source: 50,
    username: 100,
};
/// Failures count within this long of the first one.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// How long a scope that reached its limit stays locked (not the username's, which slows down).
pub const LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// Past the username's ceiling, the longest wait between two of its checks.
pub const SLOWDOWN_MAX: Duration = Duration::from_secs(60);
/// A check under way counts for at most this long (a worker that died mid-check frees its lease
/// then). Far longer than a check takes, queueing for a slot included.
const LEASE: Duration = Duration::from_secs(60);
/// How long an attempt waits for checks under way to end before its message is left for a retry.
pub const WAIT_AT_MOST: Duration = Duration::from_secs(10);

const RESERVE: &str = "SELECT verdict, scope, until
                       FROM login_reserve($1, $2, $3, $4, make_interval(secs => $5), make_interval(secs => $6))";
const SETTLE: &str = "SELECT login_settle($1, $2, $3, $4, $5, make_interval(secs => $6),
                                           make_interval(secs => $7), make_interval(secs => $8))";
/// The user's row, as [`super::run`] reads it.
const USER: &str = "SELECT id, password_hash, role, provider_id, apartments_version, session_epoch FROM users WHERE username = $1";

fn limits() -> Vec<i32> {
    // The order login_reserve and login_settle take them in.
    vec![LIMITS.username, LIMITS.source, LIMITS.pair]
}

/// Leave to check one password; give it back with [`settle`].
pub struct Lease {
    id: Uuid,
    username: String,
    source: Source,
}

/// What [`reserve`] found: the user's row (id and hash) if it exists, and the lease.
pub struct Granted {
    pub lease: Lease,
    pub user: Option<tokio_postgres::Row>,
}

/// Waits until the attempt may check its password, and looks the user up meanwhile. Refuses the
/// attempt while a scope is locked.
pub async fn reserve(
    services: &Services,
    username: &str,
    source: &Source,
) -> Result<Granted, HandlerError> {
    let lease = Lease {
        id: Uuid::new_v4(),
        username: username.to_owned(),
        source: source.clone(),
    };
    let (limits, window, lease_seconds) = (limits(), WINDOW.as_secs_f64(), LEASE.as_secs_f64());
    let started = Instant::now();
    let mut pause = Duration::from_millis(5);
    let mut held = false;
    loop {
        let client = crate::store::client(&services.store).await?;
        let (reserve, user) =
            tokio::try_join!(client.prepare_cached(RESERVE), client.prepare_cached(USER))?;
        let source = lease.source.as_str();
        let reserve_params: [&(dyn ToSql + Sync); 6] = [
            &lease.username,
            &source,
            &lease.id,
            &limits,
            &window,
            &lease_seconds,
        ];
        let user_params: [&(dyn ToSql + Sync); 1] = [&lease.username];
        let (verdict, row) = tokio::try_join!(
            client.query_one(&reserve, &reserve_params),
            client.query_opt(&user, &user_params),
        )?;
        drop(client);
        match verdict.get::<_, &str>("verdict") {
            "go" => return Ok(Granted { lease, user: row }),
            "locked" => {
                services.metrics.login_locked();
                let scope: String = verdict.get("scope");
                let until: DateTime<Utc> = verdict.get("until");
                return Err(locked(&scope, until));
            }
            // Past the username's ceiling: wait for the next turn if it comes soon enough,
            // else say when it does (the attempt is not counted).
            "slow" => {
                let until: DateTime<Utc> = verdict.get("until");
                let ahead = (until - Utc::now()).to_std().unwrap_or_default();
                if !held {
                    held = true;
                    services.metrics.login_held();
                }
                if started.elapsed() + ahead > WAIT_AT_MOST {
                    services.metrics.login_locked();
                    return Err(slowed(until));
                }
                tokio::time::sleep(ahead + Duration::from_millis(rand::random_range(0..=50))).await;
            }
            _ => {
                if !held {
                    held = true;
                    services.metrics.login_held();
                }
                if started.elapsed() >= WAIT_AT_MOST {
                    return Err(HandlerError::Transient(anyhow::anyhow!(
                        "password checks of this username stayed at the throttle's limit for {} s",
                        WAIT_AT_MOST.as_secs()
                    )));
                }
                let jitter = rand::random_range(0..=pause.as_millis() as u64 / 2);
                tokio::time::sleep(pause + Duration::from_millis(jitter)).await;
                pause = (pause * 2).min(Duration::from_millis(100));
            }
        }
    }
}

/// Ends the check: a right password clears the pair's count, a wrong one counts in every scope.
pub async fn settle(
    client: &impl GenericClient,
    lease: Lease,
    right: bool,
) -> Result<(), HandlerError> {
    let settle = client.prepare_cached(SETTLE).await?;
    let (limits, window, lockout, slowdown) = (
        limits(),
        WINDOW.as_secs_f64(),
        LOCKOUT.as_secs_f64(),
        SLOWDOWN_MAX.as_secs_f64(),
    );
    let row = client
        .query_one(
            &settle,
            &[
                &lease.username,
                &lease.source.as_str(),
                &lease.id,
                &right,
                &limits,
                &window,
                &lockout,
                &slowdown,
            ],
        )
        .await?;
    for scope in row.get::<_, Vec<String>>(0) {
        // Neither the username nor the source: both are personal data.
        tracing::warn!(
            auth.locked = %scope,
            "a login scope was locked after repeated failed logins"
        );
    }
    Ok(())
}

fn slowed(until: DateTime<Utc>) -> HandlerError {
    let seconds = (until - Utc::now()).num_seconds().max(1);
    HandlerError::rejected(
        ErrorCode::Unauthorized,
        format!(
            "too many failed logins for this username; its next attempt is checked in {seconds} s, try again then"
        ),
    )
}

fn locked(scope: &str, until: DateTime<Utc>) -> HandlerError {
    let whose = match scope {
        "pair" => "for this username from your network address",
        "source" => "from your network address",
        _ => "for this username",
    };
    let minutes = ((until - Utc::now()).num_seconds().max(0) + 59) / 60;
    HandlerError::rejected(
        ErrorCode::Unauthorized,
        format!(
            "too many failed logins {whose}; try again later (in {} min)",
            minutes.max(1)
        ),
    )
}
