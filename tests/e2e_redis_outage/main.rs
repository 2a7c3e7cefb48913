//! With Redis stopped, every route still answers correctly, end to end over HTTP.
//! Its own binary: it runs a pool whose Redis it kills, apart from the other end-to-end tests.

use std::time::Duration;

use qbill::client::GatewayClient;
use qbill_tests::{PrivateRedis, bill_ids, serve};
use uuid::Uuid;

const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn with_redis_stopped_every_route_still_answers_correctly() {
    let mut redis = PrivateRedis::start().await;
    let served = serve(Some(redis.url()), 2);

    let mut demo = GatewayClient::new(&served.gateway, Uuid::new_v4());
    assert_eq!(
        demo.auth("demo", "demo-password", REPLY_TIMEOUT)
            .await
            .unwrap()["status"],
        "ok"
    );
    // Warm the cache while Redis is up.
    let warm = demo.utils(2, Uuid::new_v4(), REPLY_TIMEOUT).await.unwrap();
    assert_eq!(bill_ids(&warm["data"]["bills"]).len(), 12);

    redis.stop();

    let login = demo
        .auth("demo", "demo-password", REPLY_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(login["status"], "ok", "{login}");
    let utils = demo.utils(2, Uuid::new_v4(), REPLY_TIMEOUT).await.unwrap();
    assert_eq!(bill_ids(&utils["data"]["bills"]).len(), 12, "{utils}");
    let paid = demo
        .pay(
            2,
            &[2081, 2082],
            Some(qbill_tests::test_card().await),
            Uuid::new_v4(),
            REPLY_TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(paid["status"], "ok", "{paid}");
    let after = demo.utils(2, Uuid::new_v4(), REPLY_TIMEOUT).await.unwrap();
    assert_eq!(bill_ids(&after["data"]["bills"]).len(), 10);
    let history = demo
        .histories(2, None, Uuid::new_v4(), REPLY_TIMEOUT)
        .await
        .unwrap();
    let settled = bill_ids(&history["data"]["settled"]);
    assert!(
        settled.contains(&2081) && settled.contains(&2082),
        "{history}"
    );
    let forbidden = demo.utils(3, Uuid::new_v4(), REPLY_TIMEOUT).await.unwrap();
    assert_eq!(forbidden["error"]["code"], "forbidden");
    let again = demo
        .pay(2, &[2081], None, Uuid::new_v4(), REPLY_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(again["error"]["code"], "already_paid");
}
