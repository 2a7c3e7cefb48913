//! Argon2id password hashes in PHC form. Hashing is CPU-bound, so it runs off the async threads.

use std::sync::LazyLock;

use argon2::Argon2;
use argon2::password_hash::{
    PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng,
};
use secrecy::{ExposeSecret, SecretString};

/// Hashes a new password with a fresh salt and the library's recommended Argon2id parameters.
pub fn hash(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
}

/// A hash of nothing anybody knows, verified against when the user does not exist, so that an
/// unknown user and a wrong password take the same time.
static DECOY: LazyLock<String> =
    LazyLock::new(|| hash("qbill decoy password").expect("hashing the decoy"));

/// Checks `password` against `stored` (or against the decoy when there is no user) on the
/// blocking pool. `false` for a wrong password or an unreadable hash.
pub async fn verify(password: SecretString, stored: Option<String>) -> anyhow::Result<bool> {
    tokio::task::spawn_blocking(move || {
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| DECOY.clone());
        let Ok(parsed) = PasswordHash::new(&stored) else {
            tracing::error!("a stored password hash is not a valid PHC string");
            return false;
        };
        let matches = Argon2::default()
            .verify_password(password.expose_secret().as_bytes(), &parsed)
            .is_ok();
        known && matches
    })
    .await
    .map_err(|e| anyhow::anyhow!("password check task failed: {e}"))
}
