//! The reply-queue sweeper deletes what is idle and empty, never a queue in use, and is safe to
//! run from several workers at once.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use qbill_core::types::QueueName;
use qbill_sqs::ReplyQueues;
use qbill_sqs::replies::LAST_REPLY_TAG;
use qbill_sqs::sweeper::sweep;
use qbill_tests::{drain_replies, sqs};
use uuid::Uuid;

#[tokio::test]
async fn only_idle_empty_reply_queues_are_swept_even_by_several_sweepers_at_once() {
    let sqs = sqs().await;
    let prefix = format!(
        "qbill-test-sweep-{}-",
        &Uuid::new_v4().simple().to_string()[..8]
    );
    let replies = ReplyQueues::new(sqs.clone(), &prefix, 3600);
    let queue = || QueueName::parse(&Uuid::new_v4().to_string()).unwrap();
    let (idle, recent, holding) = (queue(), queue(), queue());
    for q in [idle, recent, holding] {
        replies.send(q, "{\"hello\": 1}".into()).await.unwrap();
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
    // The first and the third were last replied to two days ago.
    let two_days_ago = (SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 2 * 86_400)
        .to_string();
    for q in [idle, holding] {
        sqs.tag_queue()
            .queue_url(url(q).await.unwrap())
            .tags(LAST_REPLY_TAG, &two_days_ago)
            .send()
            .await
            .unwrap();
    }

    let day = Duration::from_secs(86_400);
    let (first, second) = tokio::join!(sweep(&sqs, &prefix, day), sweep(&sqs, &prefix, day));
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(first.examined, 3);
    assert!(
        (1..=2).contains(&(first.deleted + second.deleted)),
        "{first:?} {second:?}"
    );

    assert!(url(idle).await.is_err(), "the idle, empty queue is gone");
    assert!(
        url(recent).await.is_ok(),
        "a queue replied to recently stays"
    );
    assert!(
        url(holding).await.is_ok(),
        "a queue holding a reply stays, however old"
    );

    // The client comes back: its next reply recreates the queue.
    replies.send(idle, "{\"again\": 1}".into()).await.unwrap();
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
