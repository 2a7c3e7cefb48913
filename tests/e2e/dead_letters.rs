//! A message that keeps failing lands in the dead-letter queue after the configured receives; the
//! operator's `qbill dlq list` shows it and `qbill dlq redrive` sends it back to be answered, by
//! the queue's own message move task.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::MessageAttributeValue;
use qbill_core::envelope::attribute;
use qbill_core::types::QueueName;
use qbill_sqs::WorkerPool;
use qbill_sqs::dead_letters::{self, Status, Way};
use qbill_tests::{
    db_pool, drain_replies, engine_on, enqueue_payments, env, qbill_binary,
    queue_with_dead_letters, reply_queue_url, sqs, sqs_config,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::served;

async fn qbill_dlq(args: &[&str]) -> String {
    let out = tokio::process::Command::new(qbill_binary())
        .arg("dlq")
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "qbill dlq {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn a_dead_letter_is_redriven_by_the_queues_own_move_task_and_arrives_unchanged() {
    let sqs = sqs().await;
    let (queue, dlq) = queue_with_dead_letters(&sqs, "redrive").await;
    let request_id = Uuid::new_v4();
    let body = serde_json::json!({ "request_id": request_id, "reply_to": "nobody" }).to_string();
    sqs.send_message()
        .queue_url(&dlq)
        .message_body(&body)
        .message_attributes(
            attribute::ROUTE,
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value("utils")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    let mut reported = Vec::new();
    let redriven = dead_letters::redrive(&sqs, &dlq, &queue, |progress| {
        reported.push(progress.clone())
    })
    .await
    .unwrap();

    // Run against another emulator, this says which way it went.
    assert_eq!(
        redriven.way,
        Way::MoveTask { joined: false },
        "LocalStack, like SQS, runs move tasks"
    );
    assert_eq!(redriven.end.moved, 1, "{redriven:?}");
    assert_eq!(redriven.end.status, Status::Completed, "{redriven:?}");
    assert_eq!(reported.last(), Some(&redriven.end), "the end was reported");
    let arrived = sqs
        .receive_message()
        .queue_url(&queue)
        .wait_time_seconds(5)
        .message_attribute_names("All")
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert_eq!(arrived.len(), 1, "{arrived:?}");
    assert_eq!(arrived[0].body(), Some(body.as_str()), "the body unchanged");
    assert_eq!(
        arrived[0]
            .message_attributes()
            .and_then(|a| a.get(attribute::ROUTE))
            .and_then(|v| v.string_value()),
        Some("utils"),
        "its attributes unchanged"
    );
    assert!(
        dead_letters::list(&sqs, &dlq, 10).await.unwrap().is_empty(),
        "nothing is left in the dead-letter queue"
    );
}

#[tokio::test]
async fn a_message_that_keeps_failing_is_dead_lettered_then_redriven_and_answered() {
    let sqs = sqs().await;
    let (queue, dlq) = queue_with_dead_letters(&sqs, "poison").await;

    // One payment request, handled by a pool whose database is unreachable: it fails every time.
    let db = db_pool(&served().admin_url);
    let users = qbill_core::seed::users(
        &db,
        &format!("poison-{}", &Uuid::new_v4().simple().to_string()[..8]),
        1,
        1,
    )
    .await
    .unwrap();
    let reply_to = QueueName::parse(&Uuid::new_v4().to_string()).unwrap();
    let replies = reply_queue_url(&sqs, reply_to).await;
    // One user with four bills: four payment requests.
    let requests = enqueue_payments(&sqs, &queue, &db, &users, reply_to).await;
    assert_eq!(requests.len(), 4);
    let unreachable =
        qbill_core::store::pool(&"postgres://postgres@127.0.0.1:1/none".to_owned().into(), 1)
            .unwrap();
    let broken = engine_on(&unreachable, None);
    let stop = CancellationToken::new();
    let failing = WorkerPool::new(Arc::new(broken), sqs.clone(), sqs_config(&queue))
        .await
        .unwrap();
    let running = tokio::spawn({
        let stop = stop.clone();
        async move { failing.run(1, stop).await }
    });

    // After two receives SQS moves it to the dead-letter queue.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let listed = loop {
        let listed = qbill_dlq(&[
            "list",
            "--request-queue",
            &queue,
            "--dead-letter-queue",
            &dlq,
        ])
        .await;
        if listed.lines().count() == requests.len() {
            break listed;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the message never reached the dead-letter queue"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    stop.cancel();
    running.await.unwrap();
    let mut listed_ids: Vec<String> = listed
        .lines()
        .map(|line| {
            let letter: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(letter["route"], "payments");
            assert!(letter["receive_count"].as_u64().unwrap() >= 2, "{letter}");
            letter["request_id"].as_str().unwrap().to_owned()
        })
        .collect();
    let mut expected: Vec<String> = requests.iter().map(Uuid::to_string).collect();
    listed_ids.sort();
    expected.sort();
    assert_eq!(listed_ids, expected);
    assert!(
        !listed.contains("bills_id") && !listed.contains("Bearer"),
        "bodies and tokens are never shown: {listed}"
    );
    assert!(
        drain_replies(&sqs, &replies, 1, Duration::from_secs(1))
            .await
            .is_empty(),
        "no reply for a failed message"
    );

    // The operator redrives it; a healthy pool answers it.
    let moved = qbill_dlq(&[
        "redrive",
        "--request-queue",
        &queue,
        "--dead-letter-queue",
        &dlq,
    ])
    .await;
    assert!(moved.starts_with("moved 4 message"), "{moved}");
    assert!(
        moved.contains("by SQS's message move task"),
        "LocalStack, like SQS, runs move tasks: {moved}"
    );
    let stop = CancellationToken::new();
    let healthy = WorkerPool::new(
        Arc::new(engine_on(
            &qbill_core::store::application_pool(&served().db_url, 8).unwrap(),
            Some(&env("REDIS_URL")),
        )),
        sqs.clone(),
        sqs_config(&queue),
    )
    .await
    .unwrap();
    let running = tokio::spawn({
        let stop = stop.clone();
        async move { healthy.run(1, stop).await }
    });
    let answered = drain_replies(&sqs, &replies, requests.len(), Duration::from_secs(30)).await;
    stop.cancel();
    running.await.unwrap();
    let mut answered_ids: Vec<String> = answered
        .iter()
        .map(|reply| {
            assert_eq!(reply["status"], "ok", "{reply}");
            reply["request_id"].as_str().unwrap().to_owned()
        })
        .collect();
    answered_ids.sort();
    assert_eq!(
        answered_ids, expected,
        "every dead letter was answered once redriven"
    );
    assert!(
        qbill_dlq(&[
            "list",
            "--request-queue",
            &queue,
            "--dead-letter-queue",
            &dlq
        ])
        .await
        .trim()
        .is_empty()
    );
}
