//! # qbill (operator binary)
//!
//! `qbill work` runs the worker pool, `qbill migrate` and `qbill seed` prepare the database, and
//! `qbill client` talks to the gateway the way any client does. The [`client`] module is also the
//! HTTP client the end-to-end tests and the load tester use.

pub mod client;
pub mod config;
pub mod contract;
pub mod exit;
pub mod password;
pub mod status;
