//! Replies that always fit in a message: long lists come in pages with a cursor, and the largest
//! reply each route can produce stays under the limit.

use std::collections::HashSet;

use qbill_core::common::PAGE_ITEMS;
use qbill_core::reply::MAX_REPLY_BYTES;
use qbill_core::seed;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::{Fixture, bill_ids, error_code};

/// A household of the fixture's database with `bills` unpaid bills, and a token for it.
async fn household(f: &Fixture, prefix: &str, bills: u32) -> (i64, String) {
    let users = seed::users(&f.db.pool, prefix, 1, bills / 4).await.unwrap();
    let user = &users[0];
    (user.apartment_id, f.token((user.user_id, &user.username)))
}

/// The ids of the apartment's bills (`unpaid` only, or all), by due date and id.
async fn bills_of(f: &Fixture, apartment: i64, unpaid: bool) -> Vec<i64> {
    let client = f.db.pool.get().await.unwrap();
    client
        .query(
            "SELECT id FROM bills WHERE apartment_id = $1 AND (status = 'open' OR NOT $2)
             ORDER BY due_date, id",
            &[&apartment, &unpaid],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Pays `bills` a hundred at a time (as many as one payment may settle).
async fn pay_all(f: &Fixture, apartment: i64, token: &str, bills: &[i64]) {
    for chunk in bills.chunks(qbill_core::routes::payments::MAX_BILLS_PER_PAYMENT) {
        let paid = f
            .ask(
                "payments",
                Some(apartment),
                Some(token),
                json!({ "bills_id": chunk }),
            )
            .await;
        assert_eq!(paid["status"], "ok", "{paid}");
    }
}

/// Asks `route` for every page; returns the replies' data, checking each reply's size.
async fn every_page(
    f: &Fixture,
    route: &str,
    apartment: i64,
    token: &str,
    fields: Value,
) -> Vec<Value> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut body = fields.clone();
        if let Some(cursor) = &cursor {
            body["cursor"] = json!(cursor);
        }
        let reply = f.ask(route, Some(apartment), Some(token), body).await;
        assert_eq!(reply["status"], "ok", "{reply}");
        let bytes = reply.to_string().len();
        assert!(bytes <= MAX_REPLY_BYTES, "a {route} page of {bytes} bytes");
        cursor = reply["data"]["next_cursor"].as_str().map(str::to_owned);
        pages.push(reply["data"].clone());
        assert!(pages.len() < 100, "the cursor does not move on");
        if cursor.is_none() {
            return pages;
        }
    }
}

#[tokio::test]
async fn six_thousand_open_bills_come_in_pages_that_each_fit_and_add_up_to_all() {
    let f = Fixture::new().await;
    let (apartment, token) = household(&f, "many-bills", 6000).await;
    let pages = every_page(&f, "utils", apartment, &token, json!({})).await;
    assert_eq!(pages.len(), 6000usize.div_ceil(PAGE_ITEMS));
    let mut seen = Vec::new();
    let mut sum = Decimal::ZERO;
    for page in &pages {
        assert_eq!(page["bills_count"], 6000);
        assert_eq!(
            page["totals"], pages[0]["totals"],
            "every page carries the totals of all"
        );
        for bill in page["bills"].as_array().unwrap() {
            seen.push(bill["bill_id"].as_i64().unwrap());
            sum += bill["amount"].as_str().unwrap().parse::<Decimal>().unwrap();
        }
    }
    assert_eq!(seen.len(), 6000);
    assert_eq!(
        seen.iter().collect::<HashSet<_>>().len(),
        6000,
        "each bill once"
    );
    let total: Decimal = pages[0]["totals"]["total"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(total, sum);
    // By due date, oldest first, as the cursor counts.
    let due: Vec<&str> = pages
        .iter()
        .flat_map(|p| p["bills"].as_array().unwrap())
        .map(|b| b["due_date"].as_str().unwrap())
        .collect();
    assert!(due.windows(2).all(|w| w[0] <= w[1]));
}

#[tokio::test]
async fn bills_paid_between_pages_drop_out_without_skipping_others() {
    let f = Fixture::new().await;
    let (apartment, token) = household(&f, "paging-payer", 1200).await;
    let first = f
        .ask("utils", Some(apartment), Some(&token), json!({}))
        .await;
    let first_page = bill_ids(&first["data"]["bills"]);
    let cursor = first["data"]["next_cursor"].as_str().unwrap().to_owned();
    // Pay the first bill of the second page and one of the first.
    let all = bills_of(&f, apartment, false).await;
    let next = all[first_page.len()];
    let paid = f
        .ask(
            "payments",
            Some(apartment),
            Some(&token),
            json!({ "bills_id": [first_page[0], next] }),
        )
        .await;
    assert_eq!(paid["status"], "ok", "{paid}");
    let second = f
        .ask(
            "utils",
            Some(apartment),
            Some(&token),
            json!({ "cursor": cursor }),
        )
        .await;
    let second_page = bill_ids(&second["data"]["bills"]);
    assert!(!second_page.contains(&next));
    assert_eq!(second_page[0], all[first_page.len() + 1], "nothing skipped");
    assert_eq!(second["data"]["bills_count"], 1198);
}

#[tokio::test]
async fn six_thousand_settled_bills_come_in_pages_under_one_window() {
    let f = Fixture::new().await;
    let (apartment, token) = household(&f, "long-history", 6000).await;
    let unpaid = bills_of(&f, apartment, true).await;
    pay_all(&f, apartment, &token, &unpaid).await;
    let pages = every_page(&f, "histories", apartment, &token, json!({})).await;
    assert!(pages.len() >= 6000 / PAGE_ITEMS, "{} pages", pages.len());
    let settled: Vec<i64> = pages.iter().flat_map(|p| bill_ids(&p["settled"])).collect();
    assert_eq!(settled.len(), 6000);
    assert_eq!(settled.iter().collect::<HashSet<_>>().len(), 6000);
    for page in &pages {
        assert_eq!(
            (&page["date_down"], &page["date_up"]),
            (&pages[0]["date_down"], &pages[0]["date_up"]),
            "one window for all the pages"
        );
    }
}

#[tokio::test]
async fn a_cursor_that_no_page_gave_is_an_invalid_request() {
    let f = Fixture::new().await;
    let token = f.token(crate::DEMO);
    for (route, cursor) in [
        ("utils", "yesterday"),
        ("utils", "2026-13-01.1081"),
        ("utils", "2026-08-20.-4"),
        ("histories", "2026-08-20.1081"),
        ("histories", "1790000000000000.1081.2026-02-30"),
    ] {
        let reply = f
            .ask(route, Some(1), Some(&token), json!({ "cursor": cursor }))
            .await;
        assert_eq!(error_code(&reply), "invalid_request", "{cursor}: {reply}");
    }
}

#[tokio::test]
async fn the_largest_reply_of_every_route_fits_in_a_message() {
    let f = Fixture::new().await;
    let client = f.db.pool.get().await.unwrap();
    // Worst cases the schema allows: long provider names and addresses, many apartments, a
    // payment of as many bills as one may settle.
    let (apartment, token) = household(&f, "worst-case", 2000).await;
    client
        .batch_execute(&format!(
            "UPDATE providers SET name = name || ' {long}';
             INSERT INTO apartments (id, address) SELECT 500000 + i, '{address}' || i FROM generate_series(1, 3000) i;
             INSERT INTO apartment_owners (apartment_id, user_id) SELECT 500000 + i, 1 FROM generate_series(1, 3000) i;",
            long = "Ltd".repeat(60),
            address = "\"Quoted\" Street, Flat ".repeat(12),
        ))
        .await
        .unwrap();
    let mut largest = Vec::new();
    let utils = f
        .ask("utils", Some(apartment), Some(&token), json!({}))
        .await;
    largest.push(("utils", utils.to_string().len()));
    let bills: Vec<i64> = bill_ids(&utils["data"]["bills"])
        .into_iter()
        .take(qbill_core::routes::payments::MAX_BILLS_PER_PAYMENT)
        .collect();
    let receipt = f
        .ask(
            "payments",
            Some(apartment),
            Some(&token),
            json!({ "bills_id": bills }),
        )
        .await;
    assert_eq!(receipt["status"], "ok", "{receipt}");
    largest.push(("payments", receipt.to_string().len()));
    let again = f
        .ask(
            "payments",
            Some(apartment),
            Some(&token),
            json!({ "bills_id": bills }),
        )
        .await;
    assert_eq!(error_code(&again), "already_paid");
    largest.push(("payments (already_paid)", again.to_string().len()));
    pay_all(&f, apartment, &token, &bills_of(&f, apartment, true).await).await;
    let histories = f
        .ask("histories", Some(apartment), Some(&token), json!({}))
        .await;
    assert!(
        histories["data"]["next_cursor"].is_string(),
        "a full page of 2000 settled bills"
    );
    largest.push(("histories", histories.to_string().len()));
    let auth = f
        .ask(
            "auth",
            None,
            None,
            json!({ "username": "demo", "password": "demo-password" }),
        )
        .await;
    assert_eq!(auth["status"], "ok", "{auth}");
    assert_eq!(
        auth["data"]["more_apartments"], true,
        "3002 apartments do not fit"
    );
    largest.push(("auth", auth.to_string().len()));
    // A parse error quoting a body of control characters, as long as a body may be.
    let quoted = "\u{1}".repeat(qbill_core::envelope::MAX_BODY_BYTES / 6 - 100);
    let invalid = f
        .ask(
            "payments",
            Some(1),
            Some(&token),
            json!({ "bills_id": quoted }),
        )
        .await;
    assert_eq!(error_code(&invalid), "invalid_request");
    largest.push(("invalid_request", invalid.to_string().len()));
    for (route, bytes) in &largest {
        println!("reliability: largest reply {route}: {bytes} bytes (limit {MAX_REPLY_BYTES})");
        assert!(*bytes <= MAX_REPLY_BYTES, "{route}: {bytes} bytes");
    }
}
