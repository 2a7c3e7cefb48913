//! How fast pools of different sizes drain the same backlog of payment requests.
//!
//!     scripts/local-stack up --services-only && eval "$(scripts/local-stack env test)"
//!     cargo bench -p qbill-tests --bench drain -- [messages per run, default 240]
//!
//! Prints one line per worker count; a benchmark, not a test: it asserts only that every request
//! was answered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use qbill_core::seed;
use qbill_core::types::QueueName;
use qbill_sqs::{PoolStats, WorkerPool};
use qbill_tests::{
    TestDb, drain_replies, engine, enqueue_payments, env, private_queue, reply_queue_url, sqs,
    sqs_config,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[tokio::main]
async fn main() {
    let messages: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(240);
    let sqs = sqs().await;
    println!(
        "backlog of {messages} payments per run, SQS at {}",
        env("AWS_ENDPOINT_URL")
    );
    println!("{:>7} {:>9} {:>10}", "workers", "seconds", "msgs/s");
    for workers in [1usize, 2, 4, 8] {
        let db = TestDb::fresh().await;
        let users = seed::users(&db.pool, "bench", messages.div_ceil(12), 3)
            .await
            .unwrap();
        let queue = private_queue(&sqs, 30).await;
        let reply_to = QueueName::parse(&Uuid::new_v4().to_string()).unwrap();
        let replies = reply_queue_url(&sqs, reply_to).await;
        let mut requests = enqueue_payments(&sqs, &queue, &db.pool, &users, reply_to).await;
        requests.truncate(messages as usize);

        let config = sqs_config(&queue);
        let pool = WorkerPool::new(
            Arc::new(engine(&db, Some(&env("REDIS_URL")))),
            sqs.clone(),
            config,
        )
        .await
        .unwrap();
        let stats = pool.stats();
        let stop = CancellationToken::new();
        let started = Instant::now();
        let running = tokio::spawn({
            let (pool, stop) = (pool.clone(), stop.clone());
            async move { pool.run(workers, stop).await }
        });
        let total = users.len() * 12;
        while PoolStats::get(&stats.deleted) < total as u64
            && started.elapsed() < Duration::from_secs(600)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let elapsed = started.elapsed();
        stop.cancel();
        running.await.unwrap();
        let answered = drain_replies(&sqs, &replies, total, Duration::from_secs(60))
            .await
            .len();
        assert_eq!(answered, total, "every request answered");
        println!(
            "{workers:>7} {:>9.2} {:>10.1}",
            elapsed.as_secs_f64(),
            total as f64 / elapsed.as_secs_f64()
        );
        let _ = sqs.delete_queue().queue_url(&queue).send().await;
        let _ = sqs.delete_queue().queue_url(&replies).send().await;
    }
}
