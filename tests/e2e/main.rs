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
mod loadtest_thresholds;
mod logs;
mod metrics;
mod operator_cli;
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
mod texts;
mod walkthrough;
mod webhooks;

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

/// A household of its own from the seed generator (`periods` months of open bills), on a gateway
/// client of its own that holds its token, its reply queue made: (client, the household).
pub async fn household(
    prefix: &str,
    periods: u32,
) -> (GatewayClient, qbill_core::seed::GeneratedUser) {
    let db = qbill_tests::db_pool(&served().admin_url);
    let prefix = format!("{prefix}-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let me = qbill_core::seed::users(&db, &prefix, 1, periods)
        .await
        .unwrap()
        .remove(0);
    let mut client = GatewayClient::new(&served().gateway, Uuid::new_v4());
    let queue = qbill_core::types::QueueName::parse(&client.queue().to_string()).unwrap();
    client.set_token(Some(qbill_tests::token_for(
        me.user_id,
        &me.username,
        queue,
    )));
    qbill_tests::reply_queue_url(&qbill_tests::sqs().await, queue).await;
    (client, me)
}
