use chrono::{Days, Utc};
use serde_json::json;

use crate::{DEMO, Fixture, bill_ids, error_code};

#[tokio::test]
async fn history_without_a_window_returns_every_settled_bill() {
    let f = Fixture::new().await;
    let reply = f
        .ask("histories", Some(1), Some(&f.token(DEMO)), json!({}))
        .await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let data = &reply["data"];
    // May, June and July of the seed, four utilities each.
    assert_eq!(data["settled"].as_array().unwrap().len(), 12);
    for s in data["settled"].as_array().unwrap() {
        assert!(
            s["paid_at"].is_string() && s["payment_id"].is_string() && s["amount"].is_string(),
            "{s}"
        );
    }
    assert_eq!(data["date_down"], "2026-06-19", "the first seeded payment");
    let yesterday = (Utc::now() - chrono::Duration::minutes(10))
        .date_naive()
        .checked_sub_days(Days::new(1))
        .unwrap();
    assert_eq!(data["date_up"], yesterday.to_string());
}

#[tokio::test]
async fn history_with_a_window_returns_only_what_the_client_lacks() {
    let f = Fixture::new().await;
    // The client holds June 19 to July 31: it lacks the payment of August 19 (July's bills).
    let reply = f
        .ask(
            "histories",
            Some(1),
            Some(&f.token(DEMO)),
            json!({ "date_down": "2026-06-19", "date_up": "2026-07-31" }),
        )
        .await;
    let data = &reply["data"];
    let ids = bill_ids(&data["settled"]);
    assert_eq!(ids, vec![1071, 1072, 1073, 1074], "{reply}");
    assert_eq!(data["date_down"], "2026-06-19");
}

#[tokio::test]
async fn a_paid_bill_moves_from_utils_to_the_history() {
    let f = Fixture::new().await;
    let token = f.token(DEMO);
    let yesterday = (Utc::now() - chrono::Duration::minutes(10))
        .date_naive()
        .checked_sub_days(Days::new(1))
        .unwrap()
        .to_string();
    let before = f.ask("histories", Some(1), Some(&token), json!({})).await;
    assert_eq!(f.pay(1, &[1083]).await["status"], "ok");
    assert!(!bill_ids(&f.demo_utils(1).await["bills"]).contains(&1083));
    // Holding everything up to yesterday, the client still gets today's payment.
    let delta = f
        .ask(
            "histories",
            Some(1),
            Some(&token),
            json!({ "date_down": before["data"]["date_down"], "date_up": yesterday }),
        )
        .await;
    assert_eq!(bill_ids(&delta["data"]["settled"]), vec![1083], "{delta}");
}

#[tokio::test]
async fn a_window_that_ends_before_it_starts_is_invalid() {
    let f = Fixture::new().await;
    let reply = f
        .ask(
            "histories",
            Some(1),
            Some(&f.token(DEMO)),
            json!({ "date_down": "2026-08-01", "date_up": "2026-07-01" }),
        )
        .await;
    assert_eq!(error_code(&reply), "invalid_request");
    let half = f
        .ask(
            "histories",
            Some(1),
            Some(&f.token(DEMO)),
            json!({ "date_down": "2026-08-01" }),
        )
        .await;
    assert_eq!(error_code(&half), "invalid_request");
    let bad = f
        .ask(
            "histories",
            Some(1),
            Some(&f.token(DEMO)),
            json!({ "date_down": "2026-02-30", "date_up": "2026-03-01" }),
        )
        .await;
    assert_eq!(error_code(&bad), "invalid_request");
}
