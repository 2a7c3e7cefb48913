//! Replies that always fit, through the gateway: a household with thousands of bills reads them
//! page by page, a reply SQS refuses is answered with an error once instead of looping, and a
//! request SQS refuses is not reported as accepted.

use std::collections::HashSet;
use std::time::Duration;

use qbill::client::GatewayClient;
use qbill_core::reply::MAX_REPLY_BYTES;
use qbill_core::types::QueueName;
use qbill_tests::{bill_ids, count, db_pool, env, sqs};
use uuid::Uuid;

use crate::{REPLY_TIMEOUT, client, served};

#[tokio::test]
async fn a_household_with_6000_open_bills_reads_and_pays_them_page_by_page_through_the_gateway() {
    let db = db_pool(&served().admin_url);
    let prefix = format!("big-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let household = qbill_core::seed::users(&db, &prefix, 1, 1500)
        .await
        .unwrap()
        .remove(0);
    let apartment = household.apartment_id;
    let mut c = client();
    let login = c
        .auth(
            &household.username,
            &format!("{prefix}-password"),
            REPLY_TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(login["status"], "ok", "{login}");

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let reply = c
            .utils_page(apartment, cursor.as_deref(), Uuid::new_v4(), REPLY_TIMEOUT)
            .await
            .unwrap();
        assert_eq!(reply["status"], "ok", "{reply}");
        assert!(reply.to_string().len() <= MAX_REPLY_BYTES);
        assert_eq!(reply["data"]["bills_count"], 6000);
        seen.extend(bill_ids(&reply["data"]["bills"]));
        pages += 1;
        cursor = reply["data"]["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    assert!(pages >= 12, "{pages} pages");
    assert_eq!(seen.len(), 6000);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 6000);

    // Paying a page's worth, a hundred bills at a time, leaves the rest to read.
    for chunk in seen[..500].chunks(100) {
        let receipt = c
            .pay(
                apartment,
                chunk,
                Some(qbill_tests::test_card().await),
                Uuid::new_v4(),
                REPLY_TIMEOUT,
            )
            .await
            .unwrap();
        assert_eq!(receipt["status"], "ok", "{receipt}");
    }
    let after = c
        .utils(apartment, Uuid::new_v4(), REPLY_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(after["data"]["bills_count"], 5500);
    assert_eq!(bill_ids(&after["data"]["bills"])[0], seen[500]);
    let mut settled = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let history = c
            .histories_page(
                apartment,
                None,
                cursor.as_deref(),
                Uuid::new_v4(),
                REPLY_TIMEOUT,
            )
            .await
            .unwrap();
        settled.extend(bill_ids(&history["data"]["settled"]));
        cursor = history["data"]["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(
        settled.iter().collect::<HashSet<_>>(),
        seen[..500].iter().collect::<HashSet<_>>()
    );
    println!(
        "reliability: 6000 open bills through the gateway: pages={pages} read={} paid=500",
        seen.len()
    );
}

#[tokio::test]
async fn a_reply_sqs_refuses_is_answered_once_with_an_error_instead_of_looping() {
    let c = client();
    let queue = QueueName::parse(&c.queue().to_string()).unwrap();
    // The client's reply queue exists already and takes only small messages (1 KiB, the least
    // SQS allows): a login's reply fits, the debts of an apartment do not.
    let sqs = sqs().await;
    sqs.create_queue()
        .queue_name(queue.sqs_name(&env("QBILL_REPLY_QUEUE_PREFIX")))
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::MaximumMessageSize,
            "1024",
        )
        .send()
        .await
        .unwrap();
    let mut c = c;
    let login = c
        .auth("demo", "demo-password", REPLY_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(login["status"], "ok", "{login}");
    let reply = c.utils(1, Uuid::new_v4(), REPLY_TIMEOUT).await.unwrap();
    assert_eq!(reply["status"], "error", "{reply}");
    assert_eq!(reply["kind"], "utils");
    assert_eq!(reply["error"]["code"], "internal");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("could not be sent"),
        "{reply}"
    );
    // The request was done with: past the test queue's visibility timeout, no retry answers again.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let later = c.poll("/replies", 1).await.unwrap();
    assert!(later.is_empty(), "the request was tried again: {later:?}");
}

#[tokio::test]
async fn a_request_too_large_for_the_queue_is_refused_not_reported_as_accepted() {
    let c = client();
    // Valid JSON, a valid body once parsed, but over SQS's message limit: padded with spaces.
    let body = format!(
        "{{\"queue_name\": \"{}\", \"request_id\": \"{}\",{} \"username\": \"demo\", \"password\": \"x\"}}",
        c.queue(),
        Uuid::new_v4(),
        " ".repeat(1_100_000)
    );
    let answer = c.post_raw("/auth", body).await.unwrap();
    assert_eq!(answer.status, 502, "{:?}", answer.body);
    // Nothing reached a worker: no reply ever arrives on the queue.
    assert!(c.poll("/replies", 3).await.unwrap().is_empty());
}

#[tokio::test]
async fn forty_devices_of_one_household_log_in_at_the_same_moment() {
    let logins: Vec<_> = (0..40)
        .map(|_| {
            tokio::spawn(async move {
                let mut device = client();
                device
                    .auth("demo2", "demo2-password", Duration::from_secs(90))
                    .await
                    .unwrap()
            })
        })
        .collect();
    for login in logins {
        let reply = login.await.unwrap();
        assert_eq!(reply["status"], "ok", "{reply}");
    }
}

#[tokio::test]
async fn a_failed_login_through_the_gateway_counts_against_the_callers_address() {
    let username = format!("ghost-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let mut c: GatewayClient = client();
    let reply = c.auth(&username, "wrong", REPLY_TIMEOUT).await.unwrap();
    assert_eq!(reply["error"]["code"], "unauthorized");
    let db = db_pool(&served().admin_url);
    // LocalStack's gateway gives every caller 127.0.0.1; AWS gives the caller's address.
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM login_throttle WHERE scope = 'pair' AND key = $1 || ' 127.0.0.1'",
            &[&username]
        )
        .await,
        1
    );
}
