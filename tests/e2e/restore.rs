//! A database dropped and created again (as `scripts/local-stack` does, and as a restore from a
//! snapshot or a point-in-time backup does) under a running Redis and a running pool: nothing
//! cached before is served afterwards, though the new rows have the old ids.

use std::sync::Arc;
use std::time::Duration;

use qbill_core::envelope::{SOURCE_IP_MARKER, attribute};
use qbill_core::types::QueueName;
use qbill_sqs::WorkerPool;
use qbill_tests::{
    TEST_DATABASE_PREFIX, TestDb, drain_replies, engine, env, private_queue, reply_queue_url, sqs,
    sqs_config, token_for,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[tokio::test]
async fn a_database_made_again_under_a_running_cache_and_pool_is_never_served_from_before() {
    let sqs = sqs().await;
    let name = format!("{TEST_DATABASE_PREFIX}{}", Uuid::new_v4().simple());
    let db = TestDb::create(&name).await;
    let queue = private_queue(&sqs, 5).await;
    let reply_to = QueueName::parse(&Uuid::new_v4().to_string()).unwrap();
    let replies = reply_queue_url(&sqs, reply_to).await;
    let pool = WorkerPool::new(
        Arc::new(engine(&db, Some(&env("REDIS_URL")))),
        sqs.clone(),
        sqs_config(&queue),
    )
    .await
    .unwrap();
    let stop = CancellationToken::new();
    let running = tokio::spawn({
        let (pool, stop) = (pool.clone(), stop.clone());
        async move { pool.run(2, stop).await }
    });

    let ask = |route: &'static str, apartment: Option<i64>, fields: Value| {
        let (sqs, queue, replies) = (sqs.clone(), queue.clone(), replies.clone());
        async move {
            let mut body =
                json!({ "queue_name": reply_to.to_string(), "request_id": Uuid::new_v4() });
            body.as_object_mut()
                .unwrap()
                .extend(fields.as_object().cloned().unwrap_or_default());
            let token = token_for(1, "demo", reply_to);
            let mut m = qbill_tests::message(route, apartment, Some(&token), body);
            m.attributes.insert(
                attribute::SOURCE_IP.into(),
                format!("{SOURCE_IP_MARKER}198.51.100.70"),
            );
            qbill_tests::enqueue(&sqs, &queue, &m).await;
            let got = drain_replies(&sqs, &replies, 1, Duration::from_secs(30)).await;
            assert_eq!(got.len(), 1, "{route} answered");
            got[0].clone()
        }
    };
    let apartments = |reply: &Value| -> Vec<i64> {
        reply["data"]["apartments"]
            .as_array()
            .unwrap_or_else(|| panic!("{reply}"))
            .iter()
            .map(|a| a["id"].as_i64().unwrap())
            .collect()
    };
    let amount_of = |reply: &Value, bill: i64| -> String {
        reply["data"]["bills"]
            .as_array()
            .unwrap_or_else(|| panic!("{reply}"))
            .iter()
            .find(|b| b["bill_id"] == bill)
            .map(|b| b["amount"].as_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let login = json!({ "username": "demo", "password": "demo-password" });

    // Read, and so cached: demo's apartments, and apartment 1's open bills.
    let before = ask("auth", None, login.clone()).await;
    assert_eq!(apartments(&before), [1, 2]);
    let bills_before = ask("utils", Some(1), json!({})).await;
    let amount = amount_of(&bills_before, 1091);
    assert!(!amount.is_empty(), "{bills_before}");

    // The database made again with the same ids, but other content, while Redis and the pool run.
    drop(db);
    let owner = env("QBILL_MIGRATION_DATABASE_URL");
    let server = owner.rsplit_once('/').unwrap().0;
    let (admin, connection) =
        tokio_postgres::connect(&format!("{server}/postgres"), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(connection);
    admin
        .execute(&format!("DROP DATABASE {name} WITH (FORCE)"), &[])
        .await
        .unwrap();
    let again = TestDb::create(&name).await;
    let client = again.pool.get().await.unwrap();
    client
        .execute(
            "DELETE FROM apartment_owners WHERE user_id = 1 AND apartment_id = 2",
            &[],
        )
        .await
        .unwrap();
    client
        .execute("UPDATE bills SET amount = 99.99 WHERE id = 1091", &[])
        .await
        .unwrap();

    // Nothing from before is served: the apartments and the bills are the new database's.
    let after = ask("auth", None, login).await;
    assert_eq!(apartments(&after), [1], "{after}");
    let bills_after = ask("utils", Some(1), json!({})).await;
    assert_eq!(amount_of(&bills_after, 1091), "99.99", "{bills_after}");

    stop.cancel();
    running.await.unwrap();
}
