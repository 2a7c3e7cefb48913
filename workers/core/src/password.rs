//! Argon2id password hashes in PHC form, with OWASP's parameters (19 MiB, two passes, one lane:
//! the `argon2` crate's defaults).
//!
//! Checking a password is deliberately slow and takes 19 MiB for its duration. [`Passwords`] runs
//! at most a fixed number of checks at once (by default one per core), each in a buffer of its
//! own that is kept for the next check: a storm of logins queues for a slot instead of growing
//! the blocking pool and the heap, so a worker's memory stays at slots x 19 MiB whatever comes
//! in. The time a check waits for its slot is counted in the [`Metrics`].

use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::PasswordHasher;
use argon2::password_hash::phc::{Output, PasswordHash};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use crate::metrics::Metrics;

/// Hashes a new password with a fresh salt and the recommended Argon2id parameters.
pub fn hash(password: &str) -> anyhow::Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
}

/// A hash of nothing anybody knows, verified against when the user does not exist, so that an
/// unknown user and a wrong password take the same time.
static DECOY: LazyLock<String> =
    LazyLock::new(|| hash("qbill decoy password").expect("hashing the decoy"));

/// The memory of one check at the recommended parameters, in 1 KiB blocks.
const RECOMMENDED_BLOCKS: usize = Params::DEFAULT_M_COST as usize;

/// How long a check may queue for a slot before it gives up (its message is retried): well within
/// the login throttle's lease, so that a lease never lapses while its check still waits.
pub const QUEUE_AT_MOST: Duration = Duration::from_secs(30);

/// Why a password could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Every slot stayed busy for [`QUEUE_AT_MOST`]: worth trying again later.
    #[error("no password slot came free within {} s", QUEUE_AT_MOST.as_secs())]
    Busy,
    #[error("the password check failed")]
    Failed(#[source] anyhow::Error),
}

/// Password checks, at most `slots` at once, each reusing the memory of an earlier one.
pub struct Passwords {
    slots: Arc<Semaphore>,
    /// One buffer per slot, allocated on first use: a worker that never checks a password never
    /// holds the memory.
    buffers: Arc<Mutex<Vec<Vec<Block>>>>,
    metrics: Arc<Metrics>,
}

impl Passwords {
    pub fn new(slots: usize, metrics: Arc<Metrics>) -> Self {
        let slots = slots.max(1);
        Self {
            slots: Arc::new(Semaphore::new(slots)),
            buffers: Arc::new(Mutex::new(Vec::with_capacity(slots))),
            metrics,
        }
    }

    /// One slot per core this process may use.
    pub fn default_slots() -> usize {
        std::thread::available_parallelism().map_or(1, usize::from)
    }

    /// Hashes a new password (for a user being created) once a slot is free, so that creating
    /// users counts against the same bound on memory as checking passwords.
    pub async fn hash(&self, password: SecretString) -> Result<String, CheckError> {
        let slot = tokio::time::timeout(QUEUE_AT_MOST, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| CheckError::Busy)?
            .map_err(|e| CheckError::Failed(anyhow::anyhow!("password slots closed: {e}")))?;
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            hash(password.expose_secret())
        })
        .await
        .map_err(|e| CheckError::Failed(anyhow::anyhow!("password hash task failed: {e}")))?
        .map_err(CheckError::Failed)
    }

    /// Checks `password` against `stored` (against the decoy when there is no user), once a slot
    /// is free. `false` for a wrong password or an unreadable hash; an error if no slot came free
    /// within [`QUEUE_AT_MOST`].
    pub async fn verify(
        &self,
        password: SecretString,
        stored: Option<String>,
    ) -> Result<bool, CheckError> {
        let asked = Instant::now();
        let slot = match self.slots.clone().try_acquire_owned() {
            Ok(slot) => {
                self.metrics.password_check_started(None);
                slot
            }
            Err(_) => {
                let slot = tokio::time::timeout(QUEUE_AT_MOST, self.slots.clone().acquire_owned())
                    .await
                    .map_err(|_| CheckError::Busy)?
                    .map_err(|e| {
                        CheckError::Failed(anyhow::anyhow!("password slots closed: {e}"))
                    })?;
                self.metrics.password_check_started(Some(asked.elapsed()));
                slot
            }
        };
        let buffers = self.buffers.clone();
        // The slot and the buffer go with the computation: if this future is dropped, the check
        // still holds both until it ends, and gives the buffer back before the slot.
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let mut buffer = buffers
                .lock()
                .expect("password buffers")
                .pop()
                .unwrap_or_default();
            let known = stored.is_some();
            let stored = stored.unwrap_or_else(|| DECOY.clone());
            let matches = verify_in(password.expose_secret().as_bytes(), &stored, &mut buffer);
            buffers.lock().expect("password buffers").push(buffer);
            known && matches
        })
        .await
        .map_err(|e| CheckError::Failed(anyhow::anyhow!("password check task failed: {e}")))
    }
}

/// Checks `password` against the PHC string `stored`, computing in `memory` (grown if the hash
/// asks for more than it holds). What `PasswordVerifier::verify_password` does, but without a
/// fresh 19 MiB allocation per call.
fn verify_in(password: &[u8], stored: &str, memory: &mut Vec<Block>) -> bool {
    let checked = (|| {
        let parsed = PasswordHash::new(stored).ok()?;
        let algorithm = Algorithm::try_from(parsed.algorithm.as_str()).ok()?;
        let version = match parsed.version {
            Some(v) => Version::try_from(v).ok()?,
            None => Version::default(),
        };
        let params = Params::try_from(&parsed).ok()?;
        let salt = parsed.salt?;
        let expected = parsed.hash?;
        let blocks = params.block_count();
        if memory.len() < blocks {
            memory.resize(blocks.max(RECOMMENDED_BLOCKS), Block::default());
        }
        let mut out = vec![0u8; expected.len()];
        Argon2::new(algorithm, version, params)
            .hash_password_into_with_memory(password, &salt, &mut out, &mut memory[..])
            .ok()?;
        // Output's equality is constant-time.
        Some(Output::new(&out).ok()? == expected)
    })();
    checked.unwrap_or_else(|| {
        tracing::error!("a stored password hash is not a valid Argon2 PHC string");
        false
    })
}

#[cfg(test)]
mod tests {
    use argon2::PasswordVerifier;

    use super::*;

    #[test]
    fn a_reused_buffer_gives_the_same_answers_as_the_library() {
        let stored = hash("right horse battery").unwrap();
        let parsed = PasswordHash::new(&stored).unwrap();
        let mut memory = Vec::new();
        for (guess, right) in [
            ("right horse battery", true),
            ("wrong horse battery", false),
            ("right horse battery", true),
            ("", false),
        ] {
            assert_eq!(verify_in(guess.as_bytes(), &stored, &mut memory), right);
            assert_eq!(
                Argon2::default()
                    .verify_password(guess.as_bytes(), &parsed)
                    .is_ok(),
                right
            );
        }
        assert_eq!(memory.len(), RECOMMENDED_BLOCKS);
    }

    #[test]
    fn hashes_of_other_parameters_are_checked_too() {
        let params = Params::new(8 * 1024, 1, 1, None).unwrap();
        let small = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"tiny")
            .unwrap()
            .to_string();
        let mut memory = Vec::new();
        assert!(verify_in(b"tiny", &small, &mut memory));
        assert!(!verify_in(b"tinY", &small, &mut memory));
        assert!(!verify_in(b"tiny", "$argon2id$garbage", &mut memory));
    }

    #[tokio::test]
    async fn checks_beyond_the_slots_wait_and_the_wait_is_counted() {
        let metrics = Arc::new(Metrics::default());
        let passwords = Arc::new(Passwords::new(1, metrics.clone()));
        let stored = hash("pw").unwrap();
        let checks: Vec<_> = (0..4)
            .map(|_| {
                let (passwords, stored) = (passwords.clone(), stored.clone());
                tokio::spawn(async move { passwords.verify("pw".into(), Some(stored)).await })
            })
            .collect();
        for check in checks {
            assert!(check.await.unwrap().unwrap());
        }
        let seen = metrics.snapshot();
        assert_eq!(seen.password_checks, 4);
        assert!(seen.password_checks_waited >= 1, "{seen:?}");
        assert!(seen.password_wait_max_ms > 0.0, "{seen:?}");
        assert_eq!(
            passwords.buffers.lock().unwrap().len(),
            1,
            "one buffer per slot"
        );
    }
}
