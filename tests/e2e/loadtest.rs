//! The load-test harness itself, run as operators run it: the real `qbill-loadtest` binary in its
//! direct-SQS mode against a worker pool of its own (a private queue and database, so its load
//! never mixes with the other tests'), then its report and books check read back.

use std::sync::Arc;

use qbill_sqs::WorkerPool;
use qbill_tests::database_env;
use qbill_tests::{TestDb, engine, env, private_queue, sqs, sqs_config, workspace_binary};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread")]
async fn the_harness_measures_every_operation_and_its_receipts_balance_the_books() {
    let sqs = sqs().await;
    let db = TestDb::fresh().await;
    let queue = private_queue(&sqs, 30).await;
    let pool = WorkerPool::new(
        Arc::new(engine(&db, Some(&env("REDIS_URL")))),
        sqs.clone(),
        sqs_config(&queue),
    )
    .await
    .expect("a pool");
    let stop = CancellationToken::new();
    let running = tokio::spawn({
        let (pool, stop) = (pool.clone(), stop.clone());
        async move { pool.run(2, stop).await }
    });

    let out = std::env::temp_dir().join(format!("qbill-loadtest-{}", Uuid::new_v4().simple()));
    let run = tokio::process::Command::new(workspace_binary("qbill-loadtest"))
        .args([
            "run",
            "--sqs",
            "--clients",
            "3",
            "--rate",
            "12",
            "--ramp-up",
            "1",
            "--warmup",
            "1",
            "--duration",
            "4",
            "--poll-wait",
            "1",
            "--timeout",
            "20",
            "--out",
        ])
        .arg(&out)
        .env("QBILL_REQUEST_QUEUE", &queue)
        .envs(database_env(&db.url, &db.admin_url))
        .output()
        .await
        .expect("the harness runs");
    stop.cancel();
    running.await.expect("the pool drains");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "the harness failed: {stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );

    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("report.json")).expect("report.json"),
    )
    .expect("JSON");
    let total = &report["figures"]["total"];
    assert_eq!(total["timeouts"], 0, "{stdout}");
    assert_eq!(total["errors"], serde_json::json!({}), "{stdout}");
    assert!(total["ok"].as_u64().unwrap() >= 30, "{stdout}");
    for op in ["auth", "utils", "histories", "payments"] {
        let figures = &report["figures"]["ops"][op];
        assert!(
            figures["ok"].as_u64().unwrap_or(0) > 0,
            "no {op} measured: {stdout}"
        );
        assert!(figures["p50_ms"].as_f64().unwrap() > 0.0);
        assert!(figures["p50_ms"].as_f64() <= figures["max_ms"].as_f64());
    }

    // Every receipt the harness holds is one payment in the books, and it paid nothing else.
    let books = &report["books"];
    let receipts = books["receipts"].as_i64().unwrap();
    assert!(receipts > 0);
    assert_eq!(books["found_once"].as_i64().unwrap(), receipts);
    assert_eq!(books["paid_without_receipt"], 0);
    let paid = db
        .count(
            "SELECT count(*) FROM payments p JOIN users u ON u.id = p.user_id WHERE u.username LIKE 'lt-%'",
            &[],
        )
        .await;
    assert_eq!(paid, receipts);

    let html = std::fs::read_to_string(out.join("report.html")).expect("report.html");
    assert_eq!(html.matches("<svg").count(), 3, "three plots in the report");
    for plot in [
        "latency-over-time.svg",
        "latency-distribution.svg",
        "throughput.svg",
    ] {
        assert!(out.join(plot).exists(), "{plot}");
    }
    let _ = std::fs::remove_dir_all(&out);
    let _ = sqs.delete_queue().queue_url(&queue).send().await;
}
