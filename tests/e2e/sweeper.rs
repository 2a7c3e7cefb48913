//! The reply-queue sweeper deletes what is idle and empty, never a queue in use, is safe to run
//! from several workers at once, takes up where a run stopped, and how many queues a sweep gets
//! through a minute against the local SQS.

use std::time::{Duration, Instant};

use qbill_core::cache::Cache;
use qbill_core::types::QueueName;
use qbill_sqs::ReplyQueues;
use qbill_sqs::sweeper::{Settings, shards, sweep};
use qbill_tests::{create_reply_queues, drain_replies, reply_stamps, sqs, sqs_config};
use uuid::Uuid;

fn prefix() -> String {
    format!(
        "qbill-test-sweep-{}-",
        &Uuid::new_v4().simple().to_string()[..8]
    )
}

#[tokio::test]
async fn only_idle_empty_reply_queues_are_swept_even_by_several_sweepers_at_once() {
    let sqs = sqs().await;
    let prefix = prefix();
    let mut config = sqs_config("unused");
    config.reply_queue_prefix = prefix.clone();
    let replies = ReplyQueues::new(sqs.clone(), &config);
    let stamps = reply_stamps(&prefix);
    let queue = || QueueName::parse(&Uuid::new_v4().to_string()).unwrap();
    let (idle, recent, holding) = (queue(), queue(), queue());
    for q in [idle, recent, holding] {
        replies
            .send(&stamps, q, "{\"hello\": 1}".into(), true)
            .await
            .unwrap();
    }
    let url = |q: QueueName| {
        let sqs = sqs.clone();
        let name = q.sqs_name(&prefix);
        async move {
            sqs.get_queue_url()
                .queue_name(name)
                .send()
                .await
                .map(|o| o.queue_url.unwrap())
        }
    };
    // Two clients read (and so emptied) their queues; the third still has its reply waiting.
    for q in [idle, recent] {
        assert_eq!(
            drain_replies(&sqs, &url(q).await.unwrap(), 1, Duration::from_secs(10))
                .await
                .len(),
            1
        );
    }
    // The idle time (2 s) passes; then `recent` gets a reply's stamp again.
    let idle_time = Duration::from_secs(2);
    tokio::time::sleep(idle_time + Duration::from_millis(1100)).await;
    stamps
        .stamp_reply_queue(&recent.sqs_name(&prefix), idle_time)
        .await;

    let settings = Settings::new(idle_time);
    let (first, second) = tokio::join!(
        sweep(&sqs, &stamps, settings, shards(&prefix), None),
        sweep(&sqs, &stamps, settings, shards(&prefix), None)
    );
    assert!(first.1.is_empty() && second.1.is_empty(), "both finished");
    let (first, second) = (first.0, second.0);
    assert_eq!(first.examined, 3);
    assert!(
        (1..=2).contains(&(first.deleted + second.deleted)),
        "{first:?} {second:?}"
    );

    assert!(url(idle).await.is_err(), "the idle, empty queue is gone");
    assert!(url(recent).await.is_ok(), "a queue stamped recently stays");
    assert!(
        url(holding).await.is_ok(),
        "a queue holding a reply stays, however old"
    );

    // The client comes back: its next reply recreates the queue (this process remembered the
    // old URL; the send finds it gone).
    replies
        .send(&stamps, idle, "{\"again\": 1}".into(), true)
        .await
        .unwrap();
    assert_eq!(
        drain_replies(&sqs, &url(idle).await.unwrap(), 1, Duration::from_secs(10))
            .await
            .len(),
        1
    );
    for q in [idle, recent, holding] {
        let _ = sqs
            .delete_queue()
            .queue_url(url(q).await.unwrap())
            .send()
            .await;
    }
}

#[tokio::test]
async fn a_reply_queue_refuses_calls_without_tls_where_the_deployment_names_its_arn() {
    let sqs = sqs().await;
    let prefix = prefix();
    let mut config = sqs_config("unused");
    config.reply_queue_prefix = prefix.clone();
    config.reply_queue_arn_prefix = Some(format!("arn:aws:sqs:us-east-1:000000000000:{prefix}"));
    let replies = ReplyQueues::new(sqs.clone(), &config);
    let queue = QueueName::parse(&Uuid::new_v4().to_string()).unwrap();
    replies
        .send(&Cache::disabled(), queue, "{}".into(), true)
        .await
        .unwrap();
    let url = sqs
        .get_queue_url()
        .queue_name(queue.sqs_name(&prefix))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::Policy)
        .send()
        .await
        .unwrap();
    let policy: serde_json::Value = serde_json::from_str(
        attributes
            .attributes()
            .unwrap()
            .get(&aws_sdk_sqs::types::QueueAttributeName::Policy)
            .expect("the queue has a policy"),
    )
    .unwrap();
    let statement = &policy["Statement"][0];
    assert_eq!(statement["Effect"], "Deny");
    assert_eq!(
        statement["Condition"]["Bool"]["aws:SecureTransport"],
        "false"
    );
    assert_eq!(
        statement["Resource"],
        format!(
            "arn:aws:sqs:us-east-1:000000000000:{}",
            queue.sqs_name(&prefix)
        )
    );
    let _ = sqs.delete_queue().queue_url(url).send().await;
}

#[tokio::test]
async fn a_sweep_stopped_at_its_deadline_is_taken_up_where_it_stopped_and_reaches_every_queue() {
    let sqs = sqs().await;
    let prefix = prefix();
    let stamps = reply_stamps(&prefix);
    create_reply_queues(&sqs, &prefix, 120).await;
    let idle = Duration::from_secs(1);
    tokio::time::sleep(Duration::from_millis(2100)).await;

    // Pages of 2, and a deadline that has passed: each run does one page per task, then stops
    // with the tasks left, which the next run takes up. (With pages of 10 the 120 queues, spread
    // over 16 shards by their random names, all fitted in one page per shard about one run in
    // ten, and the test failed without anything being wrong; pages of 2 leave a shard for a
    // second run unless each of the 16 holds at most 2 of the 120.)
    let mut settings = Settings::new(idle);
    settings.page_size = 2;
    let mut tasks = shards(&prefix);
    let (mut runs, mut deleted, mut examined) = (0, 0, 0);
    while !tasks.is_empty() {
        runs += 1;
        assert!(runs < 100, "the sweep keeps getting on");
        let (report, left) = sweep(
            &sqs,
            &stamps,
            settings,
            tasks,
            Some(tokio::time::Instant::now()),
        )
        .await;
        assert_eq!(report.errors, 0);
        deleted += report.deleted;
        examined += report.examined;
        tasks = left;
    }
    assert!(
        runs > 1,
        "the deadline stopped the first run: {runs} run(s)"
    );
    assert_eq!((examined, deleted), (120, 120));
    let left = sqs
        .list_queues()
        .queue_name_prefix(&prefix)
        .send()
        .await
        .unwrap();
    assert!(left.queue_urls().is_empty(), "{left:?}");
}

/// The sweep's rate against the local SQS (LocalStack does about 250 calls a second here, and a
/// deleted queue costs two: its attributes and the delete; the stamp is a Redis read). Printed,
/// not asserted: it is the emulator's speed more than the sweeper's.
#[tokio::test]
async fn the_sweep_rate_against_the_local_sqs() {
    const QUEUES: usize = 400;
    let sqs = sqs().await;
    let prefix = prefix();
    let stamps = reply_stamps(&prefix);
    create_reply_queues(&sqs, &prefix, QUEUES).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;

    let started = Instant::now();
    let (report, left) = sweep(
        &sqs,
        &stamps,
        Settings::new(Duration::from_secs(1)),
        shards(&prefix),
        None,
    )
    .await;
    let took = started.elapsed();
    assert!(left.is_empty());
    assert_eq!(report.deleted as usize, QUEUES, "{report:?}");
    let per_minute = QUEUES as f64 / took.as_secs_f64() * 60.0;
    println!(
        "sweep_rate: {QUEUES} idle reply queues examined and deleted in {:.2} s = {per_minute:.0} queues/minute",
        took.as_secs_f64()
    );
}
