//! The session checks every route with callers goes through: the token's signature, expiry and
//! reply queue, the session's epoch (a password change or reset, a deletion ends it), and the
//! caller's role. [`crate::routes`] runs them before a route; a batch of payments runs the same
//! ones for its requests together.

use secrecy::ExposeSecret;

use crate::call::Call;
use crate::error::{ErrorCode, HandlerError};
use crate::services::Services;
use crate::token::Session;
use crate::types::Role;

/// Whether the caller's role may call a route open to `roles`.
pub fn admit(roles: &[Role], session: &Session) -> Result<(), HandlerError> {
    if roles.contains(&session.role) {
        return Ok(());
    }
    Err(HandlerError::rejected(
        ErrorCode::Forbidden,
        format!(
            "this route is not open to the {} role; it takes {}",
            session.role,
            roles
                .iter()
                .map(Role::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ))
}

/// Checks the token: its signature and expiry, that it was issued for this reply queue, and that
/// its session was not ended since (a password reset or change, a deletion) and the user still
/// exists. With a Cognito pool as identity, checks the pool's ID token instead.
pub async fn check(services: &Services, call: &Call) -> Result<Session, HandlerError> {
    let token = call.token.as_ref().map(|t| t.expose_secret());
    if let Some(cognito) = &services.cognito {
        return crate::accounts::cognito_session(services, cognito, call, token).await;
    }
    let session = verify(services, call)?;
    let client = crate::store::client(&services.store).await?;
    let statement = client.prepare_cached(SESSION_EPOCH).await?;
    let epoch: Option<i32> = client
        .query_opt(&statement, &[&session.user_id.0])
        .await?
        .map(|r| r.get(0));
    still_open(&session, epoch)?;
    Ok(session)
}

/// The user's current session epoch (no row: the user was deleted), which a token's must match.
pub const SESSION_EPOCH: &str =
    "SELECT session_epoch FROM users WHERE id = $1 AND deleted_at IS NULL";

/// The part of [`check`] that needs no database: the token's signature and expiry, and that
/// it was issued for this reply queue. The caller still checks the epoch ([`still_open`]).
pub fn verify(services: &Services, call: &Call) -> Result<Session, HandlerError> {
    let token = call.token.as_ref().map(|t| t.expose_secret());
    let session = services
        .tokens
        .verify_at(token, call.requested_at)
        .map_err(|e| {
            tracing::info!(auth.refused = %e, "token refused");
            HandlerError::unauthorized()
        })?;
    if !session.bound_to(call.reply_to) {
        return Err(HandlerError::WrongQueue);
    }
    Ok(session)
}

/// Whether the session is still the user's: `epoch` is the user's current session epoch (none
/// when the user was deleted).
pub fn still_open(session: &Session, epoch: Option<i32>) -> Result<(), HandlerError> {
    if epoch == Some(session.epoch) {
        return Ok(());
    }
    tracing::info!(auth.refused = "session ended", "token refused");
    Err(HandlerError::rejected(
        ErrorCode::Unauthorized,
        "this session has ended (the password was changed or reset, or the account deleted); log in again at /auth",
    ))
}
