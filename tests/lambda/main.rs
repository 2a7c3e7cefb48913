//! The Lambda handler driven with SQS event fixtures (`fixtures/`, shaped like the events Lambda
//! delivers) against the real Postgres, Redis and emulated SQS. The placeholders `{{NAME}}` in a
//! fixture are filled in per test.

mod runtime;

use std::collections::HashMap;
use std::time::Duration;

use qbill_core::types::QueueName;
use qbill_lambda::{Admin, Sweeper, Worker};
use qbill_sqs::ReplyQueues;
use qbill_tests::{TestDb, count, drain_replies, engine_on, env, reply_queue_url, sqs, token_for};
use serde_json::{Value, json};
use uuid::Uuid;

/// The mixed batch: 1 auth, 2 utils (of apartment 2: the messages of a batch run together, and 3
/// pays bills of apartment 1), 3 payments, 4 payments with no bills (invalid), 5 not JSON
/// (nobody to answer), 6 histories.
struct Batch {
    queue: QueueName,
    message_ids: HashMap<u32, String>,
    request_ids: HashMap<u32, Uuid>,
    event: Value,
}

impl Batch {
    fn new() -> Self {
        let queue = QueueName::parse(&Uuid::new_v4().to_string()).unwrap();
        let message_ids: HashMap<u32, String> =
            (1..=6).map(|i| (i, Uuid::new_v4().to_string())).collect();
        let request_ids: HashMap<u32, Uuid> = (1..=6).map(|i| (i, Uuid::new_v4())).collect();
        let mut text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/lambda/fixtures/mixed_batch.json"
        ))
        .unwrap();
        text = text
            .replace("{{QUEUE_NAME}}", &queue.to_string())
            .replace("{{TOKEN}}", &token_for(1, "demo", queue));
        for i in 1..=6 {
            text = text
                .replace(&format!("{{{{MESSAGE_ID_{i}}}}}"), &message_ids[&i])
                .replace(
                    &format!("{{{{REQUEST_ID_{i}}}}}"),
                    &request_ids[&i].to_string(),
                );
        }
        assert!(!text.contains("{{"), "every placeholder is filled");
        Self {
            queue,
            message_ids,
            request_ids,
            event: serde_json::from_str(&text).unwrap(),
        }
    }

    fn failed_ids(response: &Value) -> Vec<String> {
        let mut ids: Vec<String> = response["batchItemFailures"]
            .as_array()
            .expect("a batchItemFailures list")
            .iter()
            .map(|f| f["itemIdentifier"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    }
}

async fn worker(store: &deadpool_postgres::Pool) -> Worker {
    Worker::new(
        engine_on(store, Some(&env("REDIS_URL"))),
        ReplyQueues::new(sqs().await, &qbill_tests::sqs_config("unused")),
    )
}

#[tokio::test]
async fn a_healthy_batch_reports_no_failure_and_every_answerable_message_is_answered() {
    let db = TestDb::fresh().await;
    let worker = worker(&db.app_pool).await;
    let batch = Batch::new();
    let replies_url = reply_queue_url(&sqs().await, batch.queue).await;

    let response = worker.handle(batch.event.clone()).await.unwrap();
    assert_eq!(response, json!({ "batchItemFailures": [] }));

    let replies = drain_replies(&sqs().await, &replies_url, 5, Duration::from_secs(30)).await;
    let by_request: HashMap<String, &Value> = replies
        .iter()
        .map(|r| (r["request_id"].as_str().unwrap_or("null").to_owned(), r))
        .collect();
    let reply = |i: u32| {
        by_request
            .get(&batch.request_ids[&i].to_string())
            .copied()
            .unwrap_or_else(|| panic!("no reply to message {i}: {replies:?}"))
    };
    assert_eq!(reply(1)["kind"], "auth");
    assert_eq!(reply(1)["status"], "ok");
    assert_eq!(reply(2)["data"]["bills"].as_array().unwrap().len(), 12);
    assert_eq!(reply(3)["data"]["bills_id"], json!([1081, 1082]));
    assert_eq!(reply(4)["error"]["code"], "invalid_request");
    assert_eq!(reply(6)["status"], "ok");
    assert_eq!(
        replies.len(),
        5,
        "the message that is not JSON has nobody to answer"
    );

    // The event source mapping may deliver the same batch again: nothing is charged twice.
    let again = worker.handle(batch.event.clone()).await.unwrap();
    assert_eq!(again, json!({ "batchItemFailures": [] }));
    let repeated = drain_replies(&sqs().await, &replies_url, 5, Duration::from_secs(30)).await;
    let receipt = repeated
        .iter()
        .find(|r| r["request_id"] == batch.request_ids[&3].to_string())
        .expect("the payment is answered again");
    assert_eq!(
        receipt["data"]["payment_id"],
        reply(3)["data"]["payment_id"]
    );
    assert_eq!(
        count(
            &db.pool,
            "SELECT count(*) FROM payments WHERE request_id = $1",
            &[&batch.request_ids[&3]]
        )
        .await,
        1
    );
}

#[tokio::test]
async fn the_payments_of_one_invocation_are_settled_together_each_with_its_own_outcome() {
    let db = TestDb::fresh().await;
    let worker = worker(&db.app_pool).await;
    let batch = Batch::new();
    let replies_url = reply_queue_url(&sqs().await, batch.queue).await;
    // The fixture's payment, four times: two bills paid, one of them named again by a third
    // payment, and the second delivered twice in the same invocation.
    let template = batch.event["Records"][2].clone();
    let (first, second, third) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let record = |request: Uuid, bills: &str| {
        let mut record = template.clone();
        record["messageId"] = json!(Uuid::new_v4().to_string());
        record["body"] = json!(format!(
            r#"{{"queue_name": "{}", "request_id": "{request}", "bills_id": {bills}}}"#,
            batch.queue
        ));
        record
    };
    let event = json!({ "Records": [
        record(first, "[1081]"),
        record(second, "[1082]"),
        record(third, "[1081]"),
        record(second, "[1082]"),
    ] });

    let response = worker.handle(event).await.unwrap();
    assert_eq!(response, json!({ "batchItemFailures": [] }));
    let replies = drain_replies(&sqs().await, &replies_url, 4, Duration::from_secs(30)).await;
    assert_eq!(replies.len(), 4, "{replies:?}");
    let of = |request: Uuid| -> Vec<&Value> {
        replies
            .iter()
            .filter(|r| r["request_id"] == request.to_string())
            .collect()
    };
    assert_eq!(of(first)[0]["status"], "ok", "{replies:?}");
    assert_eq!(of(third)[0]["error"]["code"], "already_paid", "{replies:?}");
    let seconds = of(second);
    assert_eq!(seconds.len(), 2, "{replies:?}");
    assert_eq!(seconds[0]["status"], "ok");
    assert_eq!(seconds[0], seconds[1], "the repeat gets the same receipt");
    assert_eq!(
        count(
            &db.pool,
            "SELECT count(*) FROM payments WHERE request_id = ANY($1)",
            &[&vec![first, second, third]]
        )
        .await,
        2
    );
}

#[tokio::test]
async fn with_postgres_down_exactly_the_messages_that_need_it_are_reported_failed() {
    let unreachable = qbill_core::store::pool(
        &"postgres://postgres@127.0.0.1:1/qbill".to_owned().into(),
        2,
    )
    .unwrap();
    let worker = worker(&unreachable).await;
    let batch = Batch::new();
    let replies_url = reply_queue_url(&sqs().await, batch.queue).await;

    let response = worker.handle(batch.event.clone()).await.unwrap();
    let mut expected: Vec<String> = [1, 2, 3, 6]
        .iter()
        .map(|i| batch.message_ids[i].clone())
        .collect();
    expected.sort();
    assert_eq!(
        Batch::failed_ids(&response),
        expected,
        "auth, utils, payments and histories need Postgres"
    );

    // The invalid one was still answered, and counts as done.
    let replies = drain_replies(&sqs().await, &replies_url, 1, Duration::from_secs(20)).await;
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0]["request_id"], batch.request_ids[&4].to_string());
    assert_eq!(replies[0]["error"]["code"], "invalid_request");
}

#[tokio::test]
async fn the_migrate_event_applies_the_migrations() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/lambda/fixtures/migrate.json"
    ))
    .unwrap();
    // The admin function migrates the database of its environment: here the test profile's.
    let base = qbill_tests::db_pool(&env("QBILL_MIGRATION_DATABASE_URL").into());
    let response = Admin::from_env()
        .unwrap()
        .handle(serde_json::from_str(&text).unwrap())
        .await
        .unwrap();
    assert!(response["applied"].is_array(), "{response}");
    let migrated = count(&base, "SELECT count(*) FROM refinery_schema_history", &[]).await;
    let shipped = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../sql"))
        .unwrap()
        .count() as i64;
    assert_eq!(migrated, shipped, "every migration of sql/ is recorded");
}

#[tokio::test]
async fn an_unknown_event_is_an_error_not_a_silent_success() {
    // The event is refused before anything touches the database.
    let store = qbill_core::store::application_pool(&env("DATABASE_URL").into(), 2).unwrap();
    let error = worker(&store)
        .await
        .handle(json!({ "hello": "world" }))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("unknown event"), "{error}");
}

#[tokio::test]
async fn the_worker_refuses_the_admin_and_sweeper_commands_naming_the_function_that_runs_them() {
    let store = qbill_core::store::application_pool(&env("DATABASE_URL").into(), 2).unwrap();
    let worker = worker(&store).await;
    for (command, function) in [
        ("migrate", "QBILL_FUNCTION=admin"),
        ("create-operator", "QBILL_FUNCTION=admin"),
        ("sweep", "QBILL_FUNCTION=sweeper"),
    ] {
        let error = worker
            .handle(json!({ "qbill": command }))
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains(function), "{command}: {error}");
    }
    let error = Admin::from_env()
        .unwrap()
        .handle(json!({ "qbill": "overdue" }))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("unknown event"), "{error}");
}

#[tokio::test]
async fn the_overdue_event_runs_the_job_once_and_a_second_changes_nothing() {
    let db = TestDb::fresh().await;
    let worker = worker(&db.app_pool).await;
    let first = worker.handle(json!({ "qbill": "overdue" })).await.unwrap();
    assert!(first["marked"].as_u64().unwrap() > 0, "{first}");
    assert!(first["fees"].as_u64().unwrap() > 0, "{first}");
    let second = worker.handle(json!({ "qbill": "overdue" })).await.unwrap();
    assert_eq!(
        (second["marked"].as_u64(), second["fees"].as_u64()),
        (Some(0), Some(0))
    );
}

#[tokio::test]
async fn the_due_soon_and_notify_events_record_the_notifications_and_mail_them_once() {
    let db = TestDb::fresh().await;
    let worker = worker(&db.app_pool).await;
    let email = format!("lambda-{}@example.com", Uuid::new_v4().simple());
    let client = db.pool.get().await.unwrap();
    client
        .execute(
            "UPDATE users SET email = $1, email_verified = true WHERE id = 1",
            &[&email],
        )
        .await
        .unwrap();
    // One of demo's open bills falls due tomorrow.
    client
        .execute(
            "UPDATE bills SET due_date = current_date + 1 WHERE id = (
                 SELECT b.id FROM bills b JOIN apartment_owners o ON o.apartment_id = b.apartment_id
                 WHERE o.user_id = 1 AND b.status = 'open' ORDER BY b.id LIMIT 1)",
            &[],
        )
        .await
        .unwrap();
    let due = worker.handle(json!({ "qbill": "due-soon" })).await.unwrap();
    assert!(due["mails"].as_u64().unwrap() >= 1, "{due}");
    let sent = worker.handle(json!({ "qbill": "notify" })).await.unwrap();
    assert_eq!(sent["sent"], due["mails"], "{sent}");
    let again = worker.handle(json!({ "qbill": "due-soon" })).await.unwrap();
    assert_eq!(again["mails"], 0, "{again}");
    let idle = worker.handle(json!({ "qbill": "notify" })).await.unwrap();
    assert_eq!(idle["sent"], 0, "{idle}");
    let mails = qbill_tests::wait_for_mails(&email, 1).await;
    assert_eq!(mails.len() as u64, due["mails"].as_u64().unwrap());
    assert!(
        mails[0]["Subject"].as_str().unwrap().contains("is due"),
        "{mails:?}"
    );
}

#[tokio::test]
async fn the_create_operator_event_creates_the_operator_from_its_secret_once() {
    let db = TestDb::fresh().await;
    // As the master user: here the test database's own login.
    let admin = Admin::new(qbill_core::config::DatabaseConfig::url(
        db.admin_url.clone(),
    ));
    let secrets = aws_sdk_secretsmanager::Client::new(qbill_core::managed::sdk().await);
    let username = format!("first-ops-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let arn = secrets
        .create_secret()
        .name(format!("qbill-test-{}", Uuid::new_v4().simple()))
        .secret_string(
            json!({ "username": username, "password": "a-generated-password" }).to_string(),
        )
        .send()
        .await
        .expect("Secrets Manager is emulated by the local stack")
        .arn
        .unwrap();
    let created = admin.create_operator(&arn).await.unwrap();
    assert_eq!(created["user"]["outcome"], "created", "{created}");
    let again = admin.create_operator(&arn).await.unwrap();
    assert_eq!(again["user"]["outcome"], "existed", "{again}");
    assert_eq!(
        count(
            &db.pool,
            "SELECT count(*) FROM users WHERE username = $1 AND role = 'operator'",
            &[&username]
        )
        .await,
        1
    );
}

#[tokio::test]
async fn the_sweeper_splits_the_sweep_into_tasks_on_its_queue_and_passes_on_what_is_left() {
    let sqs = sqs().await;
    let prefix = format!(
        "qbill-test-lsweep-{}-",
        &Uuid::new_v4().simple().to_string()[..8]
    );
    let sweep_queue = sqs
        .create_queue()
        .queue_name(format!("{}sweep", prefix.trim_end_matches('-')))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    qbill_tests::create_reply_queues(&sqs, &prefix, 40).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let mut config = qbill_tests::sqs_config("unused");
    config.reply_queue_prefix = prefix.clone();
    config.reply_retention_seconds = 60;
    config.reply_idle_seconds = 1;
    let stamps = qbill_tests::reply_stamps(&prefix);
    // One queue per page, and every invocation out of time: each task sweeps one page and
    // passes the rest on.
    let sweeper = Sweeper::new(sqs.clone(), stamps, &config, sweep_queue.clone()).with_page_size(1);
    let started = sweeper
        .handle(json!({ "qbill": "sweep" }), std::time::Instant::now())
        .await
        .unwrap();
    assert_eq!(started["tasks"], 16);

    let mut handled = 0;
    loop {
        let received = sqs
            .receive_message()
            .queue_url(&sweep_queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        let records: Vec<Value> = messages
            .iter()
            .map(|m| json!({ "messageId": m.message_id(), "body": m.body(), "eventSource": "aws:sqs" }))
            .collect();
        handled += records.len();
        assert!(handled < 500, "the sweep keeps getting on");
        let response = sweeper
            .handle(json!({ "Records": records }), std::time::Instant::now())
            .await
            .unwrap();
        assert_eq!(response["batchItemFailures"], json!([]), "{response}");
        for m in &messages {
            sqs.delete_message()
                .queue_url(&sweep_queue)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    assert!(
        handled > 16,
        "tasks passed their rest on: {handled} handled"
    );
    let left = sqs
        .list_queues()
        .queue_name_prefix(&prefix)
        .send()
        .await
        .unwrap();
    assert!(left.queue_urls().is_empty(), "{left:?}");
    let _ = sqs.delete_queue().queue_url(sweep_queue).send().await;
}
