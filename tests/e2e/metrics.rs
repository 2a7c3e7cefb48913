//! What the operator sees: the real `qbill work` binary serves its metrics as Prometheus text
//! (`--metrics-addr`), scraped while it works through a load and after; `qbill status` reads the
//! same endpoint and the queues.

use std::process::Stdio;
use std::time::Duration;

use qbill_core::seed;
use qbill_core::types::QueueName;
use qbill_tests::database_env;
use qbill_tests::{
    db_pool, drain_until_answered, enqueue_payments, env, message, private_queue, qbill_binary,
    reply_queue_url, sqs,
};
use secrecy::ExposeSecret;
use uuid::Uuid;

use crate::served;

/// A port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn scrape(url: &str) -> Option<qbill::status::Scrape> {
    let text = reqwest::get(url).await.ok()?.text().await.ok()?;
    let mut scrape = qbill::status::Scrape::default();
    scrape.add(&text);
    Some(scrape)
}

#[tokio::test]
async fn the_metrics_endpoint_counts_what_a_load_run_sent_while_it_runs_and_after() {
    let sqs = sqs().await;
    let db = db_pool(&served().admin_url);
    let prefix = format!("metrics-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let users = seed::users(&db, &prefix, 10, 3).await.unwrap();
    let queue = private_queue(&sqs, 5).await;
    let dead = private_queue(&sqs, 5).await;
    let reply_to = QueueName::parse(&Uuid::new_v4().to_string()).unwrap();
    let replies_url = reply_queue_url(&sqs, reply_to).await;
    // 120 payments, and 7 requests without a token: each gets an error reply.
    let payments = enqueue_payments(&sqs, &queue, &db, &users, reply_to).await;
    assert_eq!(payments.len(), 120);
    const REFUSED: usize = 7;
    for _ in 0..REFUSED {
        let body =
            serde_json::json!({ "queue_name": reply_to.to_string(), "request_id": Uuid::new_v4() });
        let inbound = message("utils", Some(users[0].apartment_id), None, body);
        let mut send = sqs
            .send_message()
            .queue_url(&queue)
            .message_body(inbound.body);
        for (name, value) in inbound.attributes {
            send = send.message_attributes(
                name,
                aws_sdk_sqs::types::MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(value)
                    .build()
                    .unwrap(),
            );
        }
        send.send().await.unwrap();
    }

    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}/metrics");
    let mut worker = tokio::process::Command::new(qbill_binary())
        .args(["work", "--workers", "2", "--metrics-addr"])
        .arg(format!("127.0.0.1:{port}"))
        .envs(database_env(&served().db_url, &served().admin_url))
        .env("REDIS_URL", env("REDIS_URL"))
        .env("QBILL_REQUEST_QUEUE", &queue)
        .env("QBILL_REPLY_QUEUE_PREFIX", env("QBILL_REPLY_QUEUE_PREFIX"))
        .env(
            "QBILL_JWT_SECRET",
            qbill_tests::jwt_secret().expose_secret(),
        )
        .env("QBILL_POLL_WAIT_SECONDS", "1")
        .env("QBILL_SWEEP_INTERVAL_SECONDS", "0")
        .env("QBILL_NOTIFY_INTERVAL_SECONDS", "0")
        .env("QBILL_OVERDUE_INTERVAL_SECONDS", "0")
        .env("QBILL_DUE_SOON_INTERVAL_SECONDS", "0")
        .kill_on_drop(true)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // Scraped while the worker is busy: some replies counted, not yet all.
    let replies = |s: &qbill::status::Scrape| s.sum("qbill_replies_total", &[]);
    let total = (payments.len() + REFUSED) as f64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let during = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the endpoint never showed the work under way"
        );
        if let Some(scrape) = scrape(&endpoint).await
            && replies(&scrape) > 0.0
        {
            break scrape;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        replies(&during) < total,
        "scraped during the run: {during:?}"
    );

    let answered = drain_until_answered(
        &sqs,
        &replies_url,
        payments.len() + REFUSED,
        Duration::from_secs(90),
    )
    .await;
    assert!(answered.len() >= payments.len() + REFUSED);
    let after = scrape(&endpoint).await.expect("the endpoint answers");
    let paid = ["kind=\"payments\"", "outcome=\"ok\""];
    let refused = ["kind=\"utils\"", "outcome=\"error\""];
    assert_eq!(after.sum("qbill_replies_total", &paid), 120.0, "{after:?}");
    assert_eq!(after.sum("qbill_replies_total", &refused), REFUSED as f64);
    assert_eq!(
        after.sum("qbill_messages_total", &["disposition=\"replied\""]),
        total
    );
    assert_eq!(
        after.sum("qbill_handler_seconds_count", &["kind=\"payments\""]),
        120.0
    );
    // Every payment was settled on a connection asked of the pool and held for its transaction;
    // the payments of one receive (at most ten) share theirs.
    assert!(after.sum("qbill_transaction_seconds_count", &[]) >= 120.0 / 10.0);
    assert!(after.sum("qbill_db_pool_wait_seconds_count", &[]) >= 120.0 / 10.0);
    assert_eq!(after.sum("qbill_receive_batch_size_sum", &[]), total);
    assert!(after.max("qbill_oldest_received_age_seconds").is_some());

    // `qbill status` on the same queue and endpoint: the queue drained, the replies counted.
    let status = tokio::process::Command::new(qbill_binary())
        .args([
            "status",
            "--interval",
            "1",
            "--request-queue",
            &queue,
            "--dead-letter-queue",
            &dead,
            "--metrics",
            &endpoint,
        ])
        .output()
        .await
        .unwrap();
    let screen = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "{screen}\n{}",
        String::from_utf8_lossy(&status.stderr)
    );
    for line in [
        "waiting",
        "in flight",
        "oldest age",
        "dead-letter queue",
        "reply queues alive",
        "replies/s",
    ] {
        assert!(screen.contains(line), "{line:?} in\n{screen}");
    }
    let waiting: u64 = screen
        .lines()
        .find(|l| l.trim_start().starts_with("waiting"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .expect("a count of waiting messages");
    assert_eq!(waiting, 0, "{screen}");
    worker.kill().await.unwrap();
}
