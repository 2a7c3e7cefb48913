//! Counters of what the engine did that an operator sizes workers by: password checks and how
//! long they queued for a slot, logins held back or refused by the throttle, replies too large to
//! send. Cheap atomics, read as a [`Snapshot`]; the worker pool logs one now and then and when it
//! drains, the Lambda after each batch that checked a password.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::Serialize;

#[derive(Debug, Default)]
pub struct Metrics {
    password_checks: AtomicU64,
    password_checks_waited: AtomicU64,
    password_wait_micros: AtomicU64,
    password_wait_max_micros: AtomicU64,
    logins_held: AtomicU64,
    logins_locked: AtomicU64,
    replies_too_large: AtomicU64,
}

/// The counters at one moment, since the process started.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Snapshot {
    /// Passwords checked (each an Argon2 computation).
    pub password_checks: u64,
    /// Checks that found every slot busy and queued for one.
    pub password_checks_waited: u64,
    /// Time checks spent queued for a slot, in all and at most.
    pub password_wait_total_ms: f64,
    pub password_wait_max_ms: f64,
    /// Times a login waited because checks under way could reach a throttle limit.
    pub logins_held: u64,
    /// Logins refused unchecked because a throttle limit was reached.
    pub logins_locked: u64,
    /// Replies over the size a message may have, replaced by an error reply.
    pub replies_too_large: u64,
}

impl Metrics {
    /// A password check got its slot, at once (`None`) or after queueing for `waited`.
    pub fn password_check_started(&self, waited: Option<Duration>) {
        self.password_checks.fetch_add(1, Relaxed);
        if let Some(waited) = waited {
            let micros = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
            self.password_checks_waited.fetch_add(1, Relaxed);
            self.password_wait_micros.fetch_add(micros, Relaxed);
            self.password_wait_max_micros.fetch_max(micros, Relaxed);
        }
    }

    pub fn login_held(&self) {
        self.logins_held.fetch_add(1, Relaxed);
    }

    pub fn login_locked(&self) {
        self.logins_locked.fetch_add(1, Relaxed);
    }

    pub fn reply_too_large(&self) {
        self.replies_too_large.fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        let ms = |micros: &AtomicU64| micros.load(Relaxed) as f64 / 1000.0;
        Snapshot {
            password_checks: self.password_checks.load(Relaxed),
            password_checks_waited: self.password_checks_waited.load(Relaxed),
            password_wait_total_ms: ms(&self.password_wait_micros),
            password_wait_max_ms: ms(&self.password_wait_max_micros),
            logins_held: self.logins_held.load(Relaxed),
            logins_locked: self.logins_locked.load(Relaxed),
            replies_too_large: self.replies_too_large.load(Relaxed),
        }
    }
}

impl Snapshot {
    /// Logs the counters as one line of fields.
    pub fn log(&self, message: &'static str) {
        tracing::info!(
            metrics.password_checks = self.password_checks,
            metrics.password_checks_waited = self.password_checks_waited,
            metrics.password_wait_total_ms = self.password_wait_total_ms,
            metrics.password_wait_max_ms = self.password_wait_max_ms,
            metrics.logins_held = self.logins_held,
            metrics.logins_locked = self.logins_locked,
            metrics.replies_too_large = self.replies_too_large,
            "{message}"
        );
    }
}
