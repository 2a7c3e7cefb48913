//! # qbill-sqs
//!
//! The SQS side of a worker: where messages come from and where replies go.
//!
//! # Layout
//! - [`config`]: queue names, poll settings, from the environment.
//! - [`pool`]: N pollers long-polling the shared request queue in batches, handing each message to
//!   the engine, sending its reply, deleting what is done; one shutdown signal drains them all.
//! - [`replies`]: the clients' reply queues, created on demand under the shared prefix and
//!   remembered.
//! - [`sweeper`]: deletes reply queues that are empty and idle; the pool runs it now and then.
//! - [`dead_letters`]: for operators, what landed in the dead-letter queue, and sending it back.

pub mod config;
pub mod dead_letters;
pub mod pool;
pub mod replies;
pub mod sweeper;

pub use config::{SqsConfig, SqsSettings};
pub use dead_letters::queue_url;
pub use pool::{Disposition, PoolStats, WorkerPool, answer_batch, delete_batch, receive};
pub use replies::{ReplyQueues, SendError};

/// The SQS client for this process, configured the standard AWS way (`AWS_REGION`,
/// `AWS_ENDPOINT_URL` for an emulator, credentials from the environment or the role).
pub async fn client() -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(qbill_core::managed::sdk().await)
}
