//! The load test's verdict, as a tester's pipeline reads it: the real `qbill-loadtest run` with
//! `--threshold` and `--max-timeout-rate` against a worker pool of its own on a private queue,
//! and its exit status (0 within every threshold, 99 past one, 98 when nothing answers) with the
//! ✓ and ✗ lines it prints.

use std::process::Output;
use std::sync::Arc;

use qbill_sqs::WorkerPool;
use qbill_tests::database_env;
use qbill_tests::{TestDb, engine, env, private_queue, sqs, sqs_config, workspace_binary};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// `qbill-loadtest run --sqs` on `queue` for a few seconds, with `extra` options; its output and
/// its report.json (if it wrote one).
async fn load(db: &TestDb, queue: &str, extra: &[&str]) -> (Output, Option<Value>) {
    let out = std::env::temp_dir().join(format!("qbill-loadtest-{}", Uuid::new_v4().simple()));
    let run = tokio::process::Command::new(workspace_binary("qbill-loadtest"))
        .args([
            "run",
            "--sqs",
            "--clients",
            "2",
            "--rate",
            "8",
            "--ramp-up",
            "1",
            "--warmup",
            "1",
            "--duration",
            "3",
            "--poll-wait",
            "1",
            "--mix",
            "utils=2,payments=1",
        ])
        .args(extra)
        .arg("--out")
        .arg(&out)
        .env("QBILL_REQUEST_QUEUE", queue)
        .envs(database_env(&db.url, &db.admin_url))
        .output()
        .await
        .expect("the harness runs");
    let report = std::fs::read_to_string(out.join("report.json"))
        .ok()
        .map(|text| serde_json::from_str(&text).expect("JSON"));
    let _ = std::fs::remove_dir_all(&out);
    (run, report)
}

/// A pool of two workers on a private queue, for as long as `body` runs.
async fn with_pool<T>(db: &TestDb, body: impl AsyncFnOnce(&str) -> T) -> T {
    let sqs = sqs().await;
    let queue = private_queue(&sqs, 30).await;
    let pool = WorkerPool::new(
        Arc::new(engine(db, Some(&env("REDIS_URL")))),
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
    let result = body(&queue).await;
    stop.cancel();
    running.await.expect("the pool drains");
    let _ = sqs.delete_queue().queue_url(&queue).send().await;
    result
}

fn shown(run: &Output) -> String {
    format!(
        "status {:?}\n{}\n{}",
        run.status.code(),
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_within_its_thresholds_prints_a_tick_for_each_and_exits_0() {
    let db = TestDb::fresh().await;
    let (run, report) = with_pool(&db, async |queue| {
        load(
            &db,
            queue,
            &[
                "--timeout",
                "20",
                "--threshold",
                "payments.p99<20s",
                "--threshold",
                "errors<5%",
                "--max-timeout-rate",
                "1",
            ],
        )
        .await
    })
    .await;
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(run.status.code(), Some(0), "{}", shown(&run));
    for threshold in ["payments.p99<20000ms", "errors<5%", "timeouts<=1%"] {
        assert!(
            stdout.contains(&format!("✓ {threshold}: ")),
            "no tick for {threshold}: {}",
            shown(&run)
        );
    }
    assert!(!stdout.contains('✗'), "{}", shown(&run));
    let verdicts = &report.expect("report.json")["thresholds"];
    assert_eq!(verdicts.as_array().map(Vec::len), Some(3), "{verdicts}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_breached_threshold_prints_a_cross_with_the_figure_and_exits_99() {
    let db = TestDb::fresh().await;
    // No reply comes back through SQS within a microsecond.
    let (run, report) = with_pool(&db, async |queue| {
        load(
            &db,
            queue,
            &[
                "--timeout",
                "20",
                "--threshold",
                "max<0.001ms",
                "--threshold",
                "timeouts<50%",
            ],
        )
        .await
    })
    .await;
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(run.status.code(), Some(99), "{}", shown(&run));
    let cross = stdout
        .lines()
        .find(|line| line.starts_with("✗ max<0.001ms: "))
        .unwrap_or_else(|| panic!("no cross for max: {}", shown(&run)));
    assert!(cross.ends_with(" ms"), "the measured figure: {cross}");
    assert!(
        stdout.contains("✓ timeouts<50%: 0.00 %"),
        "the threshold that held is shown too: {}",
        shown(&run)
    );
    let verdicts = &report.expect("report.json")["thresholds"];
    assert_eq!(verdicts[0]["passed"], false, "{verdicts}");
    assert_eq!(verdicts[1]["passed"], true, "{verdicts}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_nobody_answers_exits_98_without_any_threshold() {
    let db = TestDb::fresh().await;
    let sqs = sqs().await;
    // A request queue no worker polls.
    let queue = private_queue(&sqs, 30).await;

    // Straight to the requests (the echo target needs no logins): every one times out.
    let (run, _) = load(&db, &queue, &["--echo", "--timeout", "1"]).await;
    assert_eq!(run.status.code(), Some(98), "{}", shown(&run));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("requests was answered within 1.0 s"),
        "{}",
        shown(&run)
    );

    // Households log in first: their logins go unanswered, and the run says so the same way.
    let (run, _) = load(&db, &queue, &["--timeout", "1"]).await;
    assert_eq!(run.status.code(), Some(98), "{}", shown(&run));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("logins was answered within 1.0 s"),
        "{}",
        shown(&run)
    );
    let _ = sqs.delete_queue().queue_url(&queue).send().await;
}
