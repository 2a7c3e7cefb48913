use std::collections::BTreeMap;

use qbill_core::config::JwtConfig;
use qbill_core::token::Tokens;
use qbill_core::types::{QueueName, UserId};
use rust_decimal::Decimal;
use serde_json::json;
use uuid::Uuid;

use crate::{DEMO, DEMO2, Fixture, bill_ids, error_code};

#[tokio::test]
async fn utils_lists_the_unpaid_bills_with_totals_that_add_up() {
    let f = Fixture::new().await;
    let data = f.demo_utils(1).await;
    assert_eq!(data["apartment_id"], 1);
    let bills = data["bills"].as_array().unwrap();
    // Three unpaid periods of four utilities from two providers.
    assert_eq!(bills.len(), 12);
    let utilities: std::collections::BTreeSet<_> = bills
        .iter()
        .map(|b| b["utility"].as_str().unwrap())
        .collect();
    assert_eq!(utilities.len(), 4);
    let amount = |v: &serde_json::Value| {
        v.as_str()
            .expect("amounts are strings")
            .parse::<Decimal>()
            .unwrap()
    };
    let mut by_utility: BTreeMap<&str, Decimal> = BTreeMap::new();
    let mut by_provider: BTreeMap<&str, Decimal> = BTreeMap::new();
    for b in bills {
        assert_eq!(b["currency"], "EUR");
        assert_eq!(
            b["amount"]
                .as_str()
                .unwrap()
                .split('.')
                .nth(1)
                .map(str::len),
            Some(2),
            "two decimals: {b}"
        );
        *by_utility
            .entry(b["utility"].as_str().unwrap())
            .or_default() += amount(&b["amount"]);
        *by_provider
            .entry(b["provider"].as_str().unwrap())
            .or_default() += amount(&b["amount"]);
    }
    let totals = &data["totals"];
    for (utility, sum) in &by_utility {
        assert_eq!(amount(&totals["by_utility"][utility]), *sum);
    }
    for (provider, sum) in &by_provider {
        assert_eq!(amount(&totals["by_provider"][provider]), *sum);
    }
    assert_eq!(
        amount(&totals["total"]),
        by_utility.values().copied().sum::<Decimal>()
    );
    // Compared with the database itself, not only with the reply.
    let db_total: Decimal = {
        let client = f.db.pool.get().await.unwrap();
        client
            .query_one(
                "SELECT sum(amount) FROM bills WHERE apartment_id = 1 AND status = 'open'",
                &[],
            )
            .await
            .unwrap()
            .get(0)
    };
    assert_eq!(amount(&totals["total"]), db_total);
}

#[tokio::test]
async fn another_users_apartment_is_forbidden() {
    let f = Fixture::new().await;
    let reply = f
        .ask("utils", Some(3), Some(&f.token(DEMO)), json!({}))
        .await;
    assert_eq!(error_code(&reply), "forbidden");
    let own = f
        .ask("utils", Some(3), Some(&f.token(DEMO2)), json!({}))
        .await;
    assert_eq!(own["status"], "ok");
    assert_eq!(bill_ids(&own["data"]["bills"]).len(), 12);
}

#[tokio::test]
async fn an_unknown_apartment_is_not_found() {
    let f = Fixture::new().await;
    let reply = f
        .ask("utils", Some(999_999), Some(&f.token(DEMO)), json!({}))
        .await;
    assert_eq!(error_code(&reply), "not_found");
}

#[tokio::test]
async fn missing_forged_and_expired_tokens_are_unauthorized() {
    let f = Fixture::new().await;
    let forger = Tokens::new(
        JwtConfig::new(
            "another-key-that-is-at-least-32-bytes-long"
                .to_owned()
                .into(),
        )
        .unwrap(),
    );
    let forged = forger
        .issue(
            &qbill_core::token::Holder::household(UserId(1), "demo"),
            f.queue,
        )
        .unwrap()
        .0;
    let mut short = JwtConfig::new(qbill_tests::jwt_secret()).unwrap();
    short.ttl = std::time::Duration::ZERO;
    let issued_at = chrono::Utc::now().timestamp_millis();
    let expired = {
        let token = Tokens::new(short)
            .issue(
                &qbill_core::token::Holder::household(UserId(1), "demo"),
                f.queue,
            )
            .unwrap()
            .0;
        // Past the five-second leeway.
        tokio::time::sleep(std::time::Duration::from_secs(7)).await;
        token
    };
    for (what, token) in [
        ("missing", None),
        ("forged", Some(forged.as_str())),
        ("garbage", Some("a.b.c")),
        ("expired", Some(expired.as_str())),
    ] {
        let reply = f.ask("utils", Some(1), token, json!({})).await;
        assert_eq!(error_code(&reply), "unauthorized", "{what} token");
    }
    // The same token on a request the gateway accepted while it was valid (a redelivery, or a
    // redrive from the dead-letter queue): served.
    let body = json!({ "queue_name": f.queue.to_string(), "request_id": Uuid::new_v4() });
    let mut late = qbill_tests::message("utils", Some(1), Some(&expired), body);
    late.attributes
        .insert("request_time".into(), issued_at.to_string());
    let reply = f.send(late).await;
    assert_eq!(
        reply["status"], "ok",
        "a request made while its token was valid is served later: {reply}"
    );
}

#[tokio::test]
async fn another_users_token_from_another_queue_is_refused_on_the_requests_queue_only_if_it_exists()
{
    let f = Fixture::new().await;
    // demo2's token, issued to demo2's client (`owner`), used from demo's client (`f.queue`).
    let owner = QueueName::parse(&Uuid::new_v4().to_string()).unwrap();
    let token = qbill_tests::token_for(DEMO2.0, DEMO2.1, owner);
    let body = json!({ "queue_name": f.queue.to_string(), "request_id": Uuid::new_v4() });
    let outcome = f
        .engine
        .handle(&qbill_tests::message("utils", Some(1), Some(&token), body))
        .await
        .unwrap();
    let qbill_core::Outcome::Reply {
        to,
        reply,
        create_queue,
        ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    // The token names its queue by a hash only: the refusal can go to the request's queue, and
    // only if that exists (a request without a valid token for it never makes one).
    assert_eq!(to, f.queue);
    assert!(!create_queue, "a wrong token's reply makes no queue");
    let reply = serde_json::to_value(&reply).unwrap();
    assert_eq!(error_code(&reply), "unauthorized");
    assert!(reply.get("data").is_none(), "no data leaves with a refusal");
}
