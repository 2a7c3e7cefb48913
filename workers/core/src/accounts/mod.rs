//! A household's account on its own: the tokens mailed to it (to verify an address, to reset the
//! password), its refresh tokens, ending its sessions, and the password [`policy`]. The routes
//! (`signup`, `verify_email`, `password_reset*`, `refresh`, `logout`, `me*`) are built from these.
//!
//! Secrets are never stored: a mailed token and a rotated refresh token are derived from the
//! signing key ([`crate::token::Tokens::derive`]) and only their SHA-256 is kept.

pub mod credentials;
pub mod policy;
pub mod profile;
pub mod session;
pub mod sign_in;
pub mod throttle;

use chrono::{DateTime, Duration, Utc};
use deadpool_postgres::GenericClient;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::HandlerError;
use crate::token::Tokens;
use crate::types::UserId;

/// The start of the usernames of a Cognito pool's users (`c-<sub>`), which no one else may take.
pub const COGNITO_PREFIX: &str = "c-";

/// A mailed token is good for this long.
pub const EMAIL_TOKEN_TTL: Duration = Duration::hours(24);
/// The link that puts an old address back after a change is good for this long.
pub const EMAIL_UNDO_TTL: Duration = Duration::days(7);
/// A refresh token is good for this long after it is issued (each use issues a new one).
pub const REFRESH_TTL: Duration = Duration::days(30);

/// Counts one `action` of `source` (an address, or `user:<id>` for what is counted per user) in
/// `tx`, or refuses it when a limit of the last hour is reached (`global` limits every source
/// together). Attempts are serialised per action, so concurrent ones cannot slip past a limit;
/// rows older than an hour go.
pub async fn throttle(
    tx: &impl GenericClient,
    action: &str,
    source: &str,
    per_source: i64,
    global: Option<i64>,
) -> Result<(), HandlerError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(7251400, hashtext($1))",
        &[&action],
    )
    .await?;
    tx.execute(
        "DELETE FROM anonymous_attempts WHERE action = $1 AND at < now() - interval '1 hour'",
        &[&action],
    )
    .await?;
    let row = tx
        .query_one(
            "SELECT count(*) FILTER (WHERE source = $2) AS mine, count(*) AS all_sources
             FROM anonymous_attempts WHERE action = $1",
            &[&action, &source],
        )
        .await?;
    let (mine, all): (i64, i64) = (row.get("mine"), row.get("all_sources"));
    if mine >= per_source || global.is_some_and(|g| all >= g) {
        return Err(HandlerError::rejected(
            crate::error::ErrorCode::Forbidden,
            "too many requests of this kind from your address or in all; try again in an hour",
        ));
    }
    tx.execute(
        "INSERT INTO anonymous_attempts (action, source) VALUES ($1, $2)",
        &[&action, &source],
    )
    .await?;
    Ok(())
}

/// What a mailed token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    VerifyEmail,
    PasswordReset,
    /// Puts back the verified address a change replaced (mailed to that address).
    EmailUndo,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::PasswordReset => "password_reset",
            Self::EmailUndo => "email_undo",
        }
    }

    /// How long a link for this purpose is good.
    pub fn ttl(self) -> Duration {
        match self {
            Self::EmailUndo => EMAIL_UNDO_TTL,
            Self::VerifyEmail | Self::PasswordReset => EMAIL_TOKEN_TTL,
        }
    }
}

pub fn sha256(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Creates a mailed token for `user` and `email` in `tx`; returns the nonce the mail carries.
pub async fn create_email_token(
    tx: &impl GenericClient,
    tokens: &Tokens,
    user: UserId,
    purpose: Purpose,
    email: &str,
) -> Result<String, HandlerError> {
    let nonce = Uuid::new_v4().simple().to_string();
    let hash = sha256(&tokens.email_token(&nonce));
    tx.execute(
        "INSERT INTO email_tokens (hash, user_id, purpose, email, expires_at) VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))",
        &[
            &hash,
            &user.0,
            &purpose.as_str(),
            &email,
            &(purpose.ttl().num_seconds() as f64),
        ],
    )
    .await?;
    Ok(nonce)
}

/// A mailed token's row, as it stands.
pub struct EmailToken {
    pub hash: Vec<u8>,
    pub user: UserId,
    pub email: String,
    /// Unused and unexpired.
    pub usable: bool,
}

/// Looks a mailed token up, whatever its state.
pub async fn find_email_token(
    client: &impl GenericClient,
    token: &str,
    purpose: Purpose,
) -> Result<Option<EmailToken>, HandlerError> {
    let hash = sha256(token);
    let row = client
        .query_opt(
            "SELECT user_id, email, used_at IS NULL AND expires_at > now() AS usable FROM email_tokens
             WHERE hash = $1 AND purpose = $2",
            &[&hash, &purpose.as_str()],
        )
        .await?;
    Ok(row.map(|r| EmailToken {
        hash,
        user: UserId(r.get("user_id")),
        email: r.get("email"),
        usable: r.get("usable"),
    }))
}

/// Uses a mailed token up: true if it was still usable (then no one can use it again).
pub async fn use_email_token(tx: &impl GenericClient, hash: &[u8]) -> Result<bool, HandlerError> {
    Ok(tx
        .execute(
            "UPDATE email_tokens SET used_at = now() WHERE hash = $1 AND used_at IS NULL AND expires_at > now()",
            &[&hash],
        )
        .await?
        == 1)
}

/// Ends every unused verification and reset link of `user`: after a password change or reset or
/// an address change, a link mailed before must not work (one mailed to an old address least of
/// all). The links that put an old address back are kept: they are the owner's way back from a
/// change someone else made.
pub async fn end_links(tx: &impl GenericClient, user: UserId) -> Result<(), HandlerError> {
    tx.execute(
        "UPDATE email_tokens SET expires_at = now()
         WHERE user_id = $1 AND used_at IS NULL AND expires_at > now()
           AND purpose IN ('verify_email', 'password_reset')",
        &[&user.0],
    )
    .await?;
    Ok(())
}

/// A refresh token as handed to the client.
pub struct Refresh {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

/// Issues a refresh token for `user` in session `epoch`: a new family, or the next token of
/// `family`. `value` is the token itself (random for a new family; derived for a rotation, so
/// that the same request delivered twice gets the same token).
pub async fn issue_refresh(
    tx: &impl GenericClient,
    user: UserId,
    epoch: i32,
    family: Option<Uuid>,
    value: String,
) -> Result<Refresh, HandlerError> {
    let row = tx
        .query_one(
            "INSERT INTO refresh_tokens (hash, user_id, family, epoch, expires_at)
             VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))
             ON CONFLICT (hash) DO UPDATE SET rotated_at = refresh_tokens.rotated_at
             RETURNING expires_at",
            &[
                &sha256(&value),
                &user.0,
                &family.unwrap_or_else(Uuid::new_v4),
                &epoch,
                &(REFRESH_TTL.num_seconds() as f64),
            ],
        )
        .await?;
    Ok(Refresh {
        token: value,
        expires_at: row.get(0),
    })
}

/// A new, random refresh token value.
pub fn random_token() -> String {
    use base64::Engine as _;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Ends every session of `user`: access tokens of earlier epochs are refused from now on, and
/// every refresh token is revoked. Returns the new epoch.
pub async fn end_sessions(tx: &impl GenericClient, user: UserId) -> Result<i32, HandlerError> {
    tx.execute(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
        &[&user.0],
    )
    .await?;
    let row = tx
        .query_one(
            "UPDATE users SET session_epoch = session_epoch + 1 WHERE id = $1 RETURNING session_epoch",
            &[&user.0],
        )
        .await?;
    Ok(row.get(0))
}

/// Sets `user`'s password hash, ends every session, and records the security notification of
/// `change` (`password_reset` or `password_changed`) under the request `request`; returns the
/// mail to send after the commit.
pub async fn set_password(
    tx: &impl GenericClient,
    user: UserId,
    hash: &str,
    change: &str,
    request: crate::types::RequestId,
) -> Result<Option<i64>, HandlerError> {
    tx.execute(
        "UPDATE users SET password_hash = $2 WHERE id = $1",
        &[&user.0, &hash],
    )
    .await?;
    end_sessions(tx, user).await?;
    end_links(tx, user).await?;
    crate::notify::record(
        tx,
        user,
        crate::notify::Event::AccountSecurity,
        &format!("security:{request}"),
        &crate::notify::security(change),
        None,
    )
    .await
}

/// Checks the caller's current password (to change it, the address, or to delete the account),
/// through the login throttle of the user's name and the caller's address: a wrong one counts as
/// a failed login there, and a locked scope refuses without checking, so a stolen token cannot be
/// used to guess the password. The check runs in a bounded password slot, holding no connection.
/// Returns the user's username and email. A user without a password here (a Cognito pool's)
/// passes: the token is the proof.
pub async fn check_current_password(
    services: &crate::services::Services,
    user: UserId,
    source: &crate::types::Source,
    password: &secrecy::SecretString,
) -> Result<(Option<String>, Option<String>), HandlerError> {
    let row = crate::store::client(&services.store)
        .await?
        .query_one(
            "SELECT username, email, password_hash FROM users WHERE id = $1",
            &[&user.0],
        )
        .await?;
    let (username, email, hash): (Option<String>, Option<String>, Option<String>) = (
        row.get("username"),
        row.get("email"),
        row.get("password_hash"),
    );
    let (Some(name), Some(hash)) = (username.as_deref(), hash) else {
        return Ok((username, email));
    };
    let granted = throttle::reserve(services, name, source).await?;
    let right = services
        .passwords
        .verify(password.clone(), Some(hash))
        .await?;
    throttle::settle(
        &*crate::store::client(&services.store).await?,
        granted.lease,
        right,
    )
    .await?;
    if !right {
        return Err(HandlerError::rejected(
            crate::error::ErrorCode::Unauthorized,
            "the current password is wrong",
        ));
    }
    Ok((username, email))
}

/// An email address as it is stored: trimmed, in lower case, with one `@` between a local part and
/// a domain, at most 254 bytes.
pub fn parse_email(raw: &str) -> Result<String, crate::types::ParseError> {
    let email = raw.trim().to_lowercase();
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(email)
    } else {
        Err(crate::types::ParseError::new(
            "`email` must be an email address such as name@example.com",
        ))
    }
}

/// The session of a Cognito ID token (identity is a Cognito user pool): the pool's token checked
/// ([`crate::cognito`]), its `sub` mapped to a qbill user, created as a household on first sight
/// (with the pool's address when it is verified and no one here has it). An ID token names no
/// reply queue: the session's queue is the one the request names.
pub async fn cognito_session(
    services: &crate::services::Services,
    cognito: &crate::cognito::Cognito,
    call: &crate::call::Call,
    token: Option<&str>,
) -> Result<crate::token::Session, HandlerError> {
    use crate::cognito::CognitoError;
    let token = token.ok_or_else(HandlerError::unauthorized)?;
    let claims = match cognito.verify(token, call.requested_at).await {
        Ok(claims) => claims,
        Err(CognitoError::Jwks(e)) => return Err(HandlerError::Transient(e)),
        Err(e) => {
            tracing::info!(auth.refused = %e, "Cognito token refused");
            return Err(HandlerError::unauthorized());
        }
    };
    let email = claims
        .email
        .as_deref()
        .filter(|_| claims.email_verified == Some(true))
        .and_then(|e| parse_email(e).ok());
    let client = crate::store::client(&services.store).await?;
    const USER: &str =
        "SELECT id, username, role, provider_id, session_epoch FROM users WHERE cognito_sub = $1";
    let row = match client.query_opt(USER, &[&claims.sub]).await? {
        Some(row) => row,
        None => {
            // First sight: a household of its own (two requests at once create one; two new
            // users with one address at once: the one that lost the address is tried again).
            client
                .execute(
                    "INSERT INTO users (username, cognito_sub, email, email_verified)
                     SELECT $1, $2, e.email, e.email IS NOT NULL
                     FROM (SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM users WHERE email = $3 AND email_verified)
                                       THEN $3 END AS email) e
                     ON CONFLICT (cognito_sub) DO NOTHING",
                    &[
                        &format!(
                            "{}{}",
                            COGNITO_PREFIX,
                            claims.sub.to_lowercase()
                        ),
                        &claims.sub,
                        &email,
                    ],
                )
                .await
                .map_err(|e| {
                    if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
                        HandlerError::Transient(e.into())
                    } else {
                        e.into()
                    }
                })?;
            client.query_one(USER, &[&claims.sub]).await?
        }
    };
    Ok(crate::token::Session {
        user_id: UserId(row.get("id")),
        username: row.get("username"),
        queue_hash: crate::token::queue_hash(call.reply_to),
        role: crate::types::Role::parse(row.get("role")).map_err(HandlerError::internal)?,
        provider: row
            .get::<_, Option<i64>>("provider_id")
            .map(crate::types::ProviderId),
        epoch: row.get("session_epoch"),
    })
}
