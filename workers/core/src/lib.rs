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
//!   parsed into the [`call`] (who asked, where the answer goes) and the route's own
//!   [`routes::Request`], of typed values ([`types`]), or rejected.
//! - [`engine`]: runs the request, turns its result (or its [`error`]) into a [`reply::Reply`]
//!   and says what the transport must do with the message.
//! - [`routes`]: one module per operation (its body, parsing, handler and reply data), each
//!   running its work as one Postgres transaction ([`store`]), checking the caller's token
//!   ([`token`]) and role ([`accounts::session`]), and reading through the optional Redis
//!   [`cache`]; they share the [`services`] built once per process. A route imports no other
//!   route: what several share lives below them, in [`common`] (access checks, bill views,
//!   pages), [`idempotency`] (request ids claimed, replies kept for repeats), [`accounts`]
//!   (credentials, signing in, the profile, sessions) and [`activation`] (providers' codes).
//! - [`reply`]: the JSON that goes back on the client's queue.
//!
//! Around them: [`processor`] (card payments through Stripe: the intents, the processor's
//! webhooks, and its word applied to the books), [`events`] (what happened to providers' bills
//! and money, told by signed webhooks, a feed and the event bus), [`jobs`] (the overdue, due-soon and notify jobs, run on a schedule), [`notify`]
//! (the outbox of notifications, written in the transaction of the change that causes them, mailed
//! through SES by [`mail`] and kept as an inbox), [`accounts`] (a household's account on its own: mailed
//! tokens, refresh tokens, ending sessions, the password policy), [`admin`] (creating users outside
//! the request path), [`cognito`] (a Cognito pool's ID tokens, for `QBILL_IDENTITY=cognito`),
//! [`config`] (typed, from the environment), [`format`] (amounts and dates for people, shared by
//! the notifications and the [`documents`]), [`password`] (Argon2 checks, a bounded number at
//! once), [`metrics`] (what an operator sizes workers by), [`managed`] (RDS logins over verified
//! TLS, Secrets Manager, ElastiCache tokens: the AWS deployment only) and [`seed`] (demo and
//! load-test data).

pub mod accounts;
pub mod activation;
pub mod admin;
pub mod cache;
pub mod call;
pub mod cognito;
pub mod common;
pub mod config;
pub mod contract;
pub mod documents;
pub mod engine;
pub mod envelope;
pub mod error;
pub mod events;
pub mod format;
pub mod idempotency;
pub mod jobs;
pub mod mail;
pub mod managed;
pub mod metrics;
pub mod money;
pub mod notify;
pub mod password;
pub mod processor;
pub mod reply;
pub mod routes;
pub mod seed;
pub mod services;
pub mod settings;
pub mod store;
pub mod token;
pub mod types;

pub use engine::{Engine, Outcome, Transient};
