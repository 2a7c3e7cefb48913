//! What an operator scales workers by, recorded once, here, through the `metrics` facade: the
//! process installs the exporter (Prometheus text from `qbill work --metrics-addr`, CloudWatch
//! embedded metric format on Lambda); with none installed, recording costs next to nothing.
//!
//! The names, with their labels:
//! - `qbill_replies_total{kind,outcome}`: replies sent, outcome `ok` or `error`;
//! - `qbill_messages_total{disposition}`: messages done with, `replied`, `dropped` or `retry`;
//! - `qbill_dead_letters_total`: messages left for a retry at their last allowed receive, which
//!   SQS moves to the dead-letter queue;
//! - `qbill_handler_seconds{kind}`: from the message in hand to its reply ready;
//! - `qbill_transaction_seconds`: how long a request holds its database connection;
//! - `qbill_db_pool_wait_seconds`: how long it waited for one;
//! - `qbill_receive_batch_size`: messages per receive (the pool's) or per invocation (Lambda's);
//! - `qbill_cache_total{result}`: cache reads, `hit` or `miss`;
//! - `qbill_oldest_received_age_seconds`: how long the oldest message of the last receive had
//!   waited (the pool's; SQS's own figure is a CloudWatch metric only);
//! - `qbill_sweep_queues_total{action}`, `qbill_sweep_errors_total`: the reply-queue sweep;
//! - `qbill_payments_total{status,via}`: card payments' changes of status, and who said so
//!   (`confirm`, `webhook`, `expiry`, `reconcile`), and payments made elsewhere as recorded
//!   (`external`);
//! - `qbill_payment_discrepancies_total{kind}`: what the processor said that the books could not
//!   take (alarmed on AWS);
//! - `qbill_webhooks_total{outcome}`: the processor's webhooks, `applied`, `repeat`, `ignored`,
//!   `forged` or `stale`;
//! - `qbill_webhook_deliveries_total{outcome}`: webhook attempts to providers' endpoints,
//!   `delivered`, `failed` (tried again) or `given_up` (alarmed on AWS);
//! - `qbill_bus_events_total`: events put on the event bus;
//! - the password slots and the login throttle's counters of [`Metrics`].
//!
//! [`Metrics`] also keeps those last counters as cheap atomics, read as a [`Snapshot`]: the worker
//! pool logs one now and then and when it drains, the Lambda after each batch that checked a
//! password.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use serde::Serialize;

pub const REPLIES: &str = "qbill_replies_total";
pub const MESSAGES: &str = "qbill_messages_total";
pub const DEAD_LETTERS: &str = "qbill_dead_letters_total";
pub const HANDLER_SECONDS: &str = "qbill_handler_seconds";
pub const TRANSACTION_SECONDS: &str = "qbill_transaction_seconds";
pub const DB_POOL_WAIT_SECONDS: &str = "qbill_db_pool_wait_seconds";
pub const RECEIVE_BATCH_SIZE: &str = "qbill_receive_batch_size";
pub const CACHE: &str = "qbill_cache_total";
pub const OLDEST_RECEIVED_AGE_SECONDS: &str = "qbill_oldest_received_age_seconds";
pub const SWEEP_QUEUES: &str = "qbill_sweep_queues_total";
pub const SWEEP_ERRORS: &str = "qbill_sweep_errors_total";
pub const PAYMENTS: &str = "qbill_payments_total";
pub const REFUNDS: &str = "qbill_refunds_total";
pub const PAYMENT_DISCREPANCIES: &str = "qbill_payment_discrepancies_total";
pub const WEBHOOKS: &str = "qbill_webhooks_total";
pub const WEBHOOK_DELIVERIES: &str = "qbill_webhook_deliveries_total";
pub const BUS_EVENTS: &str = "qbill_bus_events_total";
const PASSWORD_CHECKS: &str = "qbill_password_checks_total";
const PASSWORD_WAIT_SECONDS: &str = "qbill_password_wait_seconds";
const LOGINS_HELD: &str = "qbill_logins_held_total";
const LOGINS_LOCKED: &str = "qbill_logins_locked_total";
const REPLIES_TOO_LARGE: &str = "qbill_replies_too_large_total";
const REPLIES_WITHOUT_QUEUE: &str = "qbill_replies_without_queue_total";

/// Gives every metric its unit and help text; an exporter calls it once it is installed.
pub fn describe() {
    describe_counter!(
        PAYMENTS,
        Unit::Count,
        "Card payments' changes of status, by status and by who said so"
    );
    describe_counter!(
        REFUNDS,
        Unit::Count,
        "Refunds' changes of status, by status and by who said so"
    );
    describe_counter!(
        WEBHOOK_DELIVERIES,
        Unit::Count,
        "Webhook attempts to providers' endpoints, by outcome"
    );
    describe_counter!(BUS_EVENTS, Unit::Count, "Events put on the event bus");
    describe_counter!(
        PAYMENT_DISCREPANCIES,
        Unit::Count,
        "What the payments processor said that the books could not take, by kind"
    );
    describe_counter!(
        WEBHOOKS,
        Unit::Count,
        "The payments processor's webhooks, by outcome"
    );
    describe_counter!(
        REPLIES,
        Unit::Count,
        "Replies sent, by kind and outcome (ok, error)"
    );
    describe_counter!(
        MESSAGES,
        Unit::Count,
        "Request messages done with, by disposition (replied, dropped, retry)"
    );
    describe_counter!(
        DEAD_LETTERS,
        Unit::Count,
        "Messages left for a retry at their last allowed receive: SQS dead-letters them"
    );
    describe_histogram!(
        HANDLER_SECONDS,
        Unit::Seconds,
        "From a message in hand to its reply ready, by kind"
    );
    describe_histogram!(
        TRANSACTION_SECONDS,
        Unit::Seconds,
        "How long a request holds its database connection"
    );
    describe_histogram!(
        DB_POOL_WAIT_SECONDS,
        Unit::Seconds,
        "How long a request waited for a database connection"
    );
    describe_histogram!(
        RECEIVE_BATCH_SIZE,
        Unit::Count,
        "Messages per receive (pool) or per invocation (Lambda)"
    );
    describe_counter!(CACHE, Unit::Count, "Cache reads, by result (hit, miss)");
    describe_gauge!(
        OLDEST_RECEIVED_AGE_SECONDS,
        Unit::Seconds,
        "How long the oldest message of the last receive had waited on the request queue"
    );
    describe_counter!(
        SWEEP_QUEUES,
        Unit::Count,
        "Reply queues the sweep examined and deleted"
    );
    describe_counter!(
        SWEEP_ERRORS,
        Unit::Count,
        "Reply queues or pages the sweep could not read"
    );
    describe_counter!(PASSWORD_CHECKS, Unit::Count, "Passwords checked (Argon2)");
    describe_histogram!(
        PASSWORD_WAIT_SECONDS,
        Unit::Seconds,
        "Time password checks queued for a slot"
    );
    describe_counter!(
        LOGINS_HELD,
        Unit::Count,
        "Logins that waited for checks under way that could reach a throttle limit"
    );
    describe_counter!(
        LOGINS_LOCKED,
        Unit::Count,
        "Logins refused unchecked by the throttle"
    );
    describe_counter!(
        REPLIES_TOO_LARGE,
        Unit::Count,
        "Replies too large to send, replaced by an error reply"
    );
    describe_counter!(
        REPLIES_WITHOUT_QUEUE,
        Unit::Count,
        "Replies not sent: no reply queue, and the request could not have one made"
    );
}

/// A reply is ready: its kind, whether it is an error, and how long the engine took.
/// A card payment changed status, as `via` said.
pub fn payment_status(status: &str, via: &'static str) {
    counter!(PAYMENTS, "status" => status.to_owned(), "via" => via).increment(1);
}

/// A refund's change of status, and who said so.
pub fn refund_status(status: &str, via: &'static str) {
    counter!(REFUNDS, "status" => status.to_owned(), "via" => via).increment(1);
}

/// The processor said something the books could not take.
pub fn payment_discrepancy(kind: &'static str) {
    counter!(PAYMENT_DISCREPANCIES, "kind" => kind).increment(1);
}

/// A webhook attempt to a provider's endpoint: `delivered`, `failed` (tried again later) or
/// `given_up`.
pub fn webhook_delivery(outcome: &'static str) {
    counter!(WEBHOOK_DELIVERIES, "outcome" => outcome).increment(1);
}

/// Events put on the event bus.
pub fn bus_events(count: u64) {
    counter!(BUS_EVENTS).increment(count);
}

/// A webhook of the processor, and what came of it.
pub fn webhook(outcome: &'static str) {
    counter!(WEBHOOKS, "outcome" => outcome).increment(1);
}

pub fn replied(kind: &'static str, ok: bool, took: Duration) {
    let outcome = if ok { "ok" } else { "error" };
    counter!(REPLIES, "kind" => kind, "outcome" => outcome).increment(1);
    histogram!(HANDLER_SECONDS, "kind" => kind).record(took);
}

/// What became of a request message: `replied`, `dropped` or `retry`.
pub fn message_done(disposition: &'static str) {
    counter!(MESSAGES, "disposition" => disposition).increment(1);
}

pub fn dead_lettered() {
    counter!(DEAD_LETTERS).increment(1);
}

pub fn received(messages: usize) {
    histogram!(RECEIVE_BATCH_SIZE).record(messages as f64);
}

/// The oldest message of a receive had waited `age` since it was sent.
pub fn oldest_received(age: Duration) {
    gauge!(OLDEST_RECEIVED_AGE_SECONDS).set(age.as_secs_f64());
}

pub fn cache_read(hit: bool) {
    counter!(CACHE, "result" => if hit { "hit" } else { "miss" }).increment(1);
}

pub fn pool_waited(waited: Duration) {
    histogram!(DB_POOL_WAIT_SECONDS).record(waited);
}

pub fn connection_held(held: Duration) {
    histogram!(TRANSACTION_SECONDS).record(held);
}

pub fn swept(examined: u64, deleted: u64) {
    counter!(SWEEP_QUEUES, "action" => "examined").increment(examined);
    counter!(SWEEP_QUEUES, "action" => "deleted").increment(deleted);
}

pub fn sweep_failed() {
    counter!(SWEEP_ERRORS).increment(1);
}

#[derive(Debug, Default)]
pub struct Metrics {
    password_checks: AtomicU64,
    password_checks_waited: AtomicU64,
    password_wait_micros: AtomicU64,
    password_wait_max_micros: AtomicU64,
    logins_held: AtomicU64,
    logins_locked: AtomicU64,
    replies_too_large: AtomicU64,
    replies_without_queue: AtomicU64,
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
    /// Replies to a queue that did not exist, from requests that could not have one made.
    pub replies_without_queue: u64,
}

impl Metrics {
    /// A password check got its slot, at once (`None`) or after queueing for `waited`.
    pub fn password_check_started(&self, waited: Option<Duration>) {
        self.password_checks.fetch_add(1, Relaxed);
        counter!(PASSWORD_CHECKS).increment(1);
        histogram!(PASSWORD_WAIT_SECONDS).record(waited.unwrap_or_default());
        if let Some(waited) = waited {
            let micros = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
            self.password_checks_waited.fetch_add(1, Relaxed);
            self.password_wait_micros.fetch_add(micros, Relaxed);
            self.password_wait_max_micros.fetch_max(micros, Relaxed);
        }
    }

    pub fn login_held(&self) {
        self.logins_held.fetch_add(1, Relaxed);
        counter!(LOGINS_HELD).increment(1);
    }

    pub fn login_locked(&self) {
        self.logins_locked.fetch_add(1, Relaxed);
        counter!(LOGINS_LOCKED).increment(1);
    }

    pub fn reply_too_large(&self) {
        self.replies_too_large.fetch_add(1, Relaxed);
        counter!(REPLIES_TOO_LARGE).increment(1);
    }

    pub fn reply_without_queue(&self) {
        self.replies_without_queue.fetch_add(1, Relaxed);
        counter!(REPLIES_WITHOUT_QUEUE).increment(1);
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
            replies_without_queue: self.replies_without_queue.load(Relaxed),
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
            metrics.replies_without_queue = self.replies_without_queue,
            "{message}"
        );
    }
}
