use qbill_tests::{PrivateRedis, engine};
use serde_json::json;

use crate::{DEMO, Fixture, bill_ids};

#[tokio::test]
async fn reads_are_served_from_the_cache_until_a_payment_makes_them_stale() {
    let f = Fixture::new().await;
    let warm = f.demo_utils(1).await;
    // Change the database behind the cache's back: a cached read does not see it...
    {
        let client = f.db.pool.get().await.unwrap();
        client
            .execute("UPDATE bills SET amount = amount + 1 WHERE id = 1084", &[])
            .await
            .unwrap();
    }
    assert_eq!(
        f.demo_utils(1).await,
        warm,
        "the second read came from the cache"
    );
    // ...but a payment bumps the apartment's version, and the next read is fresh.
    assert_eq!(f.pay(1, &[1081]).await["status"], "ok");
    let fresh = f.demo_utils(1).await;
    assert!(!bill_ids(&fresh["bills"]).contains(&1081));
    assert_ne!(
        fresh["totals"]["by_utility"]["heating"],
        warm["totals"]["by_utility"]["heating"]
    );
}

#[tokio::test]
async fn every_route_answers_from_postgres_when_redis_is_unreachable() {
    let mut f = Fixture::new().await;
    f.engine = engine(&f.db, Some("redis://127.0.0.1:1"));
    let login = f
        .ask(
            "auth",
            None,
            None,
            json!({ "username": "demo", "password": "demo-password" }),
        )
        .await;
    assert_eq!(login["status"], "ok", "{login}");
    assert_eq!(bill_ids(&f.demo_utils(1).await["bills"]).len(), 12);
    assert_eq!(f.pay(1, &[1081]).await["status"], "ok");
    assert!(!bill_ids(&f.demo_utils(1).await["bills"]).contains(&1081));
    let history = f
        .ask("histories", Some(1), Some(&f.token(DEMO)), json!({}))
        .await;
    assert!(bill_ids(&history["data"]["settled"]).contains(&1081));
}

#[tokio::test]
async fn a_payment_whose_invalidation_never_reached_redis_is_still_never_hidden() {
    let mut f = Fixture::new().await;
    let warm = f.demo_utils(1).await;
    assert!(bill_ids(&warm["bills"]).contains(&1081));
    // Another worker, cut off from Redis, takes the payment: its delete of the cached entry is
    // lost for good, and the entry stays in Redis.
    let live = std::mem::replace(&mut f.engine, engine(&f.db, Some("redis://127.0.0.1:1")));
    assert_eq!(f.pay(1, &[1081]).await["status"], "ok");
    f.engine = live;
    let after = f.demo_utils(1).await;
    assert!(
        !bill_ids(&after["bills"]).contains(&1081),
        "a stale cache entry was served: {after}"
    );
}

#[tokio::test]
async fn every_route_answers_while_redis_hangs() {
    let redis = PrivateRedis::start().await;
    let mut f = Fixture::new().await;
    f.engine = engine(&f.db, Some(&redis.url()));
    assert!(bill_ids(&f.demo_utils(1).await["bills"]).contains(&1081));

    // Redis stops answering but keeps its connections open: every call must time out, not hang.
    redis.signal("-STOP");
    let login = f
        .ask(
            "auth",
            None,
            None,
            json!({ "username": "demo", "password": "demo-password" }),
        )
        .await;
    assert_eq!(login["status"], "ok");
    assert_eq!(f.pay(1, &[1081]).await["status"], "ok");
    assert!(!bill_ids(&f.demo_utils(1).await["bills"]).contains(&1081));
    let history = f
        .ask("histories", Some(1), Some(&f.token(DEMO)), json!({}))
        .await;
    assert!(bill_ids(&history["data"]["settled"]).contains(&1081));

    redis.signal("-CONT");
    assert!(!bill_ids(&f.demo_utils(1).await["bills"]).contains(&1081));
}
