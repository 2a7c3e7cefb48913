//! The chaos bank run: load through the SQS emulator against two real `qbill work` processes
//! while faults, drawn from a printed seed, break what they depend on.
//!
//! - [`schedule`]: which fault when, for how long, from the seed.
//! - [`proxy`]: the TCP proxy in front of Postgres and SQS that cuts and delays connections.
//! - [`processes`]: the worker processes and the Redis server that are killed, paused, restarted.

// Until the run that uses these is written; remove it then, so that what stays unused shows.
#![allow(dead_code)]

pub mod processes;
pub mod proxy;
pub mod schedule;
