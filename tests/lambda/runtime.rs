//! The real `bootstrap` binary against the stand-in of the Lambda Runtime API (the load tester's
//! `runtime_api`): it initialises once, takes invocations from `/runtime/invocation/next` and
//! posts each result back, exactly as in a Lambda execution environment.

use std::time::Duration;

use qbill_loadtest::runtime_api::Function;
use qbill_tests::database_env;
use qbill_tests::{TestDb, workspace_binary};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::Batch;

#[tokio::test]
async fn the_bootstrap_binary_serves_invocations_from_the_runtime_api() {
    let db = TestDb::fresh().await;
    let batch = Batch::new();
    // The rest of the environment (Redis, SQS endpoint, reply prefix, JWT key) is the test
    // profile's, inherited.
    let mut bootstrap = tokio::process::Command::new(workspace_binary("bootstrap"));
    bootstrap
        .envs(database_env(&db.url, &db.admin_url))
        .env(
            "QBILL_JWT_SECRET",
            qbill_tests::jwt_secret().expose_secret(),
        )
        .env("QBILL_METRICS_NAMESPACE", "qbill-test")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut function = Function::start(bootstrap, 512).await.unwrap();

    let patience = Duration::from_secs(60);
    let healthy = function
        .invoke(batch.event.clone(), patience)
        .await
        .expect("the function answers");
    assert_eq!(healthy.result, Ok(json!({ "batchItemFailures": [] })));
    let migrate = function
        .invoke(json!({ "qbill": "migrate" }), patience)
        .await
        .expect("the function answers");
    assert!(
        migrate.result.is_err(),
        "the worker leaves migrations to the admin function: {migrate:?}"
    );
    assert!(
        function.process().try_wait().unwrap().is_none(),
        "one process served both invocations and waits for more"
    );
    function.process().kill().await.unwrap();
    // After each invocation the engine's metrics went out on standard output as CloudWatch
    // embedded metric format: the batch's five replies among them.
    let mut stdout = String::new();
    tokio::io::AsyncReadExt::read_to_string(
        &mut function.process().stdout.take().unwrap(),
        &mut stdout,
    )
    .await
    .unwrap();
    let documents: Vec<Value> = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|doc| doc.get("_aws").is_some())
        .collect();
    let replies: u64 = documents
        .iter()
        .filter(|doc| {
            doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "qbill-test"
                && doc["function"] == "worker"
        })
        .filter_map(|doc| doc["qbill_replies_total"].as_u64())
        .sum();
    assert_eq!(replies, 5, "five answerable messages: {documents:#?}");
    let paid = qbill_tests::count(
        &db.pool,
        "SELECT count(*) FROM payments WHERE request_id = $1",
        &[&batch.request_ids[&3]],
    )
    .await;
    assert_eq!(paid, 1, "the batch's payment was made");
}
