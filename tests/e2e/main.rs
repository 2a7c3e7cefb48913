//! End to end, over HTTP only: client → emulated API Gateway (imported from `gateway-config/`)
//! → the test request queue → a worker pool → Postgres and Redis → the client's reply queue →
//! GET through the gateway.

mod cards;
mod contract;
mod cors;
mod dead_letters;
mod faults;
mod hostile;
mod households;
mod lifecycle;
mod loadtest;
mod logs;
mod metrics;
mod payments_external;
mod pool;
mod refunds;
mod reply_queues;
mod restore;
mod saved_cards;
mod sessions;
mod settlements;
mod sizes;
mod sweeper;
mod walkthrough;

use std::sync::OnceLock;
use std::time::Duration;

use qbill::client::GatewayClient;
use qbill_tests::{Served, serve};
use uuid::Uuid;

pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// One pool for the whole binary, caching in the shared Redis.
pub fn served() -> &'static Served {
    static SERVED: OnceLock<Served> = OnceLock::new();
    SERVED.get_or_init(|| serve(Some(qbill_tests::env("REDIS_URL")), 4))
}

/// A client with a reply queue of its own.
pub fn client() -> GatewayClient {
    GatewayClient::new(&served().gateway, Uuid::new_v4())
}
