//! The worker pool as an operator runs it: the real `qbill work` binary, stopped with SIGTERM.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use qbill_core::seed;
use qbill_core::types::QueueName;
use qbill_sqs::WorkerPool;
use qbill_tests::{
    count, database_env, db_pool, drain_replies, drain_until_answered, engine_on, enqueue_payments,
    env, private_queue, qbill_binary, reply_queue_url, sqs, sqs_config,
};
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::served;

#[tokio::test]
async fn sigterm_drains_the_pool_and_no_request_is_lost_or_applied_twice() {
    let exit = interrupt_a_busy_worker("-TERM").await;
    assert!(exit.success(), "clean exit after SIGTERM: {exit:?}");
}

#[tokio::test]
async fn a_worker_killed_while_holding_messages_loses_nothing_and_applies_nothing_twice() {
    let exit = interrupt_a_busy_worker("-KILL").await;
    assert!(
        !exit.success(),
        "SIGKILL leaves no chance to drain: {exit:?}"
    );
}

/// Starts the real `qbill work` binary on 120 queued payments, sends it `signal` while it still
/// has work, lets a second pool take over what is left, and checks that every request was
/// answered and paid exactly once. Returns how the first worker ended.
async fn interrupt_a_busy_worker(signal: &str) -> std::process::ExitStatus {
    let sqs = sqs().await;
    let db = db_pool(&served().admin_url);
    let prefix = format!("drain-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let users = seed::users(&db, &prefix, 10, 3).await.unwrap();
    let queue = private_queue(&sqs, 5).await;
    let reply_to = QueueName::parse(&Uuid::new_v4().to_string()).unwrap();
    let replies_url = reply_queue_url(&sqs, reply_to).await;
    let requests = enqueue_payments(&sqs, &queue, &db, &users, reply_to).await;
    assert_eq!(requests.len(), 120);

    let mut worker = tokio::process::Command::new(qbill_binary())
        .args(["work", "--workers", "4"])
        .envs(database_env(&served().db_url, &served().admin_url))
        .env("REDIS_URL", env("REDIS_URL"))
        .env("QBILL_REQUEST_QUEUE", &queue)
        .env("QBILL_REPLY_QUEUE_PREFIX", env("QBILL_REPLY_QUEUE_PREFIX"))
        .env(
            "QBILL_JWT_SECRET",
            qbill_tests::jwt_secret().expose_secret(),
        )
        .env("QBILL_POLL_WAIT_SECONDS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // Let it get going, then ask it to stop while it still has work.
    let paid = |db: deadpool_postgres::Pool, prefix: String| async move {
        count(&db, "SELECT count(*) FROM payments p JOIN users u ON u.id = p.user_id WHERE u.username LIKE $1 || '-%'", &[&prefix]).await
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while paid(db.clone(), prefix.clone()).await < 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker never started paying"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = worker.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(30), worker.wait())
        .await
        .expect("ended within 30 s")
        .unwrap();
    let paid_by_first = paid(db.clone(), prefix.clone()).await;

    // A second pool picks up whatever the first left on the queue.
    let app = qbill_core::store::application_pool(&served().db_url, 16).unwrap();
    let engine = Arc::new(engine_on(&app, None));
    let config = sqs_config(&queue);
    let second = WorkerPool::new(engine, sqs.clone(), config).await.unwrap();
    let stop = CancellationToken::new();
    let running = tokio::spawn({
        let (second, stop) = (second.clone(), stop.clone());
        async move { second.run(2, stop).await }
    });

    // A message handled but not deleted before the interruption comes back and is answered
    // again (with the same receipt): wait for every request, not for a number of replies.
    let replies =
        drain_until_answered(&sqs, &replies_url, requests.len(), Duration::from_secs(90)).await;
    stop.cancel();
    running.await.unwrap();

    let mut by_request: HashMap<String, Vec<&serde_json::Value>> = HashMap::new();
    for reply in &replies {
        by_request
            .entry(reply["request_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(reply);
    }
    for request in &requests {
        let answers = by_request
            .get(&request.to_string())
            .unwrap_or_else(|| panic!("request {request} was never answered"));
        for answer in answers {
            assert_eq!(answer["status"], "ok", "{answer}");
            assert_eq!(
                answer["data"]["payment_id"], answers[0]["data"]["payment_id"],
                "a repeat replays the same receipt"
            );
        }
    }
    let total = paid(db.clone(), prefix.clone()).await;
    let answered_requests = requests
        .iter()
        .filter(|r| by_request.contains_key(&r.to_string()))
        .count();
    println!(
        "reliability: worker {signal}: faults=1 sent={} answered={answered_requests} lost={} paid={total} paid_twice={}",
        requests.len(),
        requests.len() - answered_requests,
        (total - requests.len() as i64).max(0)
    );
    assert_eq!(
        total,
        requests.len() as i64,
        "every request paid exactly once (first pool paid {paid_by_first})"
    );
    assert!(
        paid_by_first < total,
        "the signal came while work was left, so the takeover was really tested"
    );
    status
}

/// A request that once panicked its poller (a Cognito user's row has no password hash, and a
/// login with its name unwrapped it) is answered, and the pool's only poller goes on answering.
#[tokio::test]
async fn a_login_to_a_user_without_a_password_panics_no_poller_and_the_pool_goes_on() {
    use qbill_core::envelope::{SOURCE_IP_MARKER, attribute};
    let sqs = sqs().await;
    let db = qbill_tests::TestDb::fresh().await;
    db.pool
        .get()
        .await
        .unwrap()
        .execute(
            "INSERT INTO users (username, cognito_sub) VALUES ('c-0b5a7c1e', '0b5a7c1e')",
            &[],
        )
        .await
        .unwrap();
    let queue = private_queue(&sqs, 5).await;
    let reply_to = QueueName::parse(&Uuid::new_v4().to_string()).unwrap();
    let replies_url = reply_queue_url(&sqs, reply_to).await;
    let pool = WorkerPool::new(
        Arc::new(qbill_tests::engine(&db, None)),
        sqs.clone(),
        sqs_config(&queue),
    )
    .await
    .unwrap();
    let stop = CancellationToken::new();
    let running = tokio::spawn({
        let (pool, stop) = (pool.clone(), stop.clone());
        async move { pool.run(1, stop).await }
    });
    let login = |username: &str, password: &str| {
        let mut m = qbill_tests::message(
            "auth",
            None,
            None,
            serde_json::json!({
                "queue_name": reply_to.to_string(), "request_id": Uuid::new_v4(),
                "username": username, "password": password,
            }),
        );
        m.attributes.insert(
            attribute::SOURCE_IP.into(),
            format!("{SOURCE_IP_MARKER}198.51.100.60"),
        );
        m
    };
    for m in [
        login("c-0b5a7c1e", "any-password-at-all"),
        login("demo", "demo-password"),
    ] {
        qbill_tests::enqueue(&sqs, &queue, &m).await;
        // One at a time, so that the second is received after the first was handled.
        let got = drain_replies(&sqs, &replies_url, 1, Duration::from_secs(30)).await;
        assert_eq!(got.len(), 1, "answered, so the poller lives");
        let expected = if m.body.contains("c-0b5a7c1e") {
            "unauthorized"
        } else {
            "ok"
        };
        let status = got[0]["error"]["code"].as_str().unwrap_or("ok");
        assert_eq!(status, expected, "{got:?}");
    }
    stop.cancel();
    running.await.unwrap();
}
