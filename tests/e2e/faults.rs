//! Dependencies fail and come back: SQS unreachable, Postgres cut mid-work, Redis stopped. The
//! workers back off instead of spinning, do not crash, resume by themselves, and every request is
//! answered once its dependency is back, paid exactly once.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use qbill_core::types::QueueName;
use qbill_sqs::{PoolStats, WorkerPool};
use qbill_tests::{
    Outage, PrivateRedis, TestDb, count, drain_until_answered, engine_on, enqueue_payments,
    private_queue, reply_queue_url, sqs, sqs_config,
};
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[tokio::test]
async fn workers_ride_out_sqs_postgres_and_redis_outages_and_lose_nothing() {
    let direct = sqs().await;
    let db = TestDb::fresh().await;
    let users = qbill_core::seed::users(&db.pool, "faults", 4, 3)
        .await
        .unwrap();
    let queue = private_queue(&direct, 2).await;
    let reply_to = QueueName::parse(&Uuid::new_v4().to_string()).unwrap();
    let replies = reply_queue_url(&direct, reply_to).await;

    // The pool reaches SQS and Postgres through proxies the test can cut, and has a Redis of its own.
    let sqs_link = Outage::proxy("127.0.0.1:4566").await;
    let pg_link = Outage::proxy("127.0.0.1:5432").await;
    let mut redis = PrivateRedis::start().await;
    let proxied_db = db
        .url
        .expose_secret()
        .replace("127.0.0.1:5432", &pg_link.addr.to_string());
    assert_ne!(
        proxied_db,
        db.url.expose_secret(),
        "the database URL goes through the proxy"
    );
    let proxied_store = qbill_core::store::application_pool(&proxied_db.into(), 4).unwrap();
    let worker_engine = engine_on(&proxied_store, Some(&redis.url()));
    let sdk = qbill_core::managed::sdk().await;
    let proxied_sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(sdk)
            .endpoint_url(format!("http://{}", sqs_link.addr))
            // The SDK's own retries would hide whether the pool backs off: this test sees only the pool's.
            .retry_config(aws_sdk_sqs::config::retry::RetryConfig::disabled())
            .build(),
    );
    let pool = WorkerPool::new(Arc::new(worker_engine), proxied_sqs, sqs_config(&queue))
        .await
        .unwrap();
    let stats = pool.stats();
    let paid = || {
        count(
            &db.pool,
            "SELECT count(*) FROM payments p JOIN users u ON u.id = p.user_id WHERE u.username LIKE 'faults-%'",
            &[],
        )
    };

    // 1. SQS is unreachable when the workers start and requests arrive.
    sqs_link.cut();
    let stop = CancellationToken::new();
    let running = tokio::spawn({
        let (pool, stop) = (pool.clone(), stop.clone());
        async move { pool.run(2, stop).await }
    });
    let (first, second) = users.split_at(2);
    let mut requests = enqueue_payments(&direct, &queue, &db.pool, first, reply_to).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let errors = PoolStats::get(&stats.receive_errors);
    assert!(
        errors >= 2,
        "the workers kept trying ({errors} failed receives)"
    );
    assert!(
        errors <= 40,
        "the workers backed off instead of spinning ({errors} failed receives in 4 s)"
    );
    assert_eq!(paid().await, 0);
    assert!(!running.is_finished(), "the pool did not crash");
    sqs_link.restore();

    // 2. Postgres goes away while the backlog is being worked off, and more requests arrive.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while paid().await < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the workers never resumed after SQS came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pg_link.cut();
    requests.extend(enqueue_payments(&direct, &queue, &db.pool, second, reply_to).await);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let retried = PoolStats::get(&stats.retried);
    assert!(
        retried > 0,
        "with Postgres gone, messages were left for a retry"
    );
    assert!(!running.is_finished(), "the pool did not crash");
    pg_link.restore();

    // 3. Redis stops for good.
    redis.stop();

    // Every request is answered, and paid exactly once.
    let answered =
        drain_until_answered(&direct, &replies, requests.len(), Duration::from_secs(120)).await;
    let distinct = |replies: &Vec<serde_json::Value>| {
        replies
            .iter()
            .filter_map(|r| r["request_id"].as_str().map(str::to_owned))
            .collect::<HashSet<_>>()
    };
    stop.cancel();
    running.await.unwrap();
    let wanted: HashSet<String> = requests.iter().map(Uuid::to_string).collect();
    assert_eq!(distinct(&answered), wanted, "every request was answered");
    for reply in &answered {
        assert_eq!(reply["status"], "ok", "{reply}");
    }
    let total = paid().await;
    let answered_count = distinct(&answered).intersection(&wanted).count();
    println!(
        "reliability: outages (SQS, Postgres, Redis): faults=3 sent={} answered={answered_count} lost={} paid={total} paid_twice={} failed_receives={}",
        requests.len(),
        requests.len() - answered_count,
        (total - requests.len() as i64).max(0),
        PoolStats::get(&stats.receive_errors)
    );
    assert_eq!(total, requests.len() as i64, "each paid exactly once");
    assert!(stats.received.load(Ordering::Relaxed) >= requests.len() as u64);
}

#[tokio::test]
async fn a_pool_started_while_sqs_is_unreachable_comes_up_once_it_answers() {
    let db = TestDb::fresh().await;
    let url = private_queue(&sqs().await, 5).await;
    // By name: a URL needs no asking.
    let queue = url.rsplit('/').next().unwrap().to_owned();
    let link = Outage::proxy("127.0.0.1:4566").await;
    let sdk = qbill_core::managed::sdk().await;
    let proxied = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(sdk)
            .endpoint_url(format!("http://{}", link.addr))
            .retry_config(aws_sdk_sqs::config::retry::RetryConfig::disabled())
            .build(),
    );
    let engine = Arc::new(engine_on(&db.app_pool, None));
    link.cut();
    let starting = tokio::spawn({
        let (engine, proxied, queue) = (engine.clone(), proxied.clone(), queue.clone());
        async move { WorkerPool::new(engine, proxied, sqs_config(&queue)).await }
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !starting.is_finished(),
        "the pool waits for SQS instead of giving up"
    );
    link.restore();
    let started = tokio::time::timeout(Duration::from_secs(30), starting)
        .await
        .expect("the pool came up once SQS answered")
        .unwrap();
    assert!(started.is_ok(), "{:?}", started.err());

    // A queue that does not exist is a mistake to report at once, not an outage to wait out.
    let asked = std::time::Instant::now();
    let missing = WorkerPool::new(engine, proxied, sqs_config("qbill-no-such-queue")).await;
    assert!(missing.is_err());
    assert!(asked.elapsed() < Duration::from_secs(5));
}
