//! # qbill-core
//!
//! The billing engine with no transport: what happens between a message arriving on the shared
//! request queue and its reply leaving for the client's queue. The SQS worker pool (`qbill-sqs`)
//! and the Lambda handler feed it the same [`envelope::InboundMessage`]s.
//!
//! # Layout
//! A request travels through these modules in this order:
//!
//! - [`envelope`]: the raw message (body and attributes, as `gateway-config/` wrote them) is
//!   parsed into typed values ([`types`]) and a [`envelope::Command`], or rejected.
//! - [`engine`]: routes the command, turns the handler's result into a [`reply::Reply`] and says
//!   what the transport must do with the message.
//! - [`handlers`]: one file per route (`auth`, `utils`, `histories`, `payments`), each running
//!   its work as one Postgres transaction ([`store`]), checking [`token`]s and [`password`]s,
//!   and reading through the optional Redis [`cache`].
//! - [`reply`]: the JSON that goes back on the client's queue.
//!
//! Around them: [`config`] (typed, from the environment), [`password`] (Argon2 checks, a bounded
//! number at once), [`metrics`] (what an operator sizes workers by), [`managed`] (RDS logins over
//! verified TLS, Secrets Manager, ElastiCache tokens: the AWS deployment only) and [`seed`] (demo
//! and load-test data).

pub mod cache;
pub mod config;
pub mod engine;
pub mod envelope;
pub mod handlers;
pub mod managed;
pub mod metrics;
pub mod password;
pub mod reply;
pub mod seed;
pub mod store;
pub mod token;
pub mod types;

pub use engine::{Engine, Outcome, Transient};
