//! `apartments_link` on the demo set: Northwind's account NW-20417, code NWND-DEMO-2026.

use serde_json::json;

use crate::{DEMO, Fixture, error_code};

#[tokio::test]
async fn failures_older_than_the_window_neither_count_nor_stay() {
    let f = Fixture::new().await;
    f.db.pool
        .get()
        .await
        .unwrap()
        .execute(
            "INSERT INTO link_failures (user_id, failed_at)
             SELECT 1, now() - interval '16 minutes' FROM generate_series(1, 5)",
            &[],
        )
        .await
        .unwrap();
    let attempt = |code: &'static str| json!({ "provider_id": 1, "account_number": "NW-20417", "activation_code": code });
    // Apartment attributes are ignored by this route; the helper sends the token with one.
    let wrong = f
        .ask(
            "apartments_link",
            Some(1),
            Some(&f.token(DEMO)),
            attempt("AAAA-BBBB-CCCC"),
        )
        .await;
    assert_eq!(error_code(&wrong), "not_found", "{wrong}");
    assert_eq!(
        f.db.count("SELECT count(*) FROM link_failures WHERE user_id = 1", &[])
            .await,
        1,
        "the five old failures are gone, the new one counts"
    );
    let linked = f
        .ask(
            "apartments_link",
            Some(1),
            Some(&f.token(DEMO)),
            attempt("nwnd demo 2026"),
        )
        .await;
    assert_eq!(linked["status"], "ok", "{linked}");
    assert_eq!(
        linked["data"]["apartment"]["address"],
        "3 Quay Lane, Flat 5"
    );
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM bills WHERE id IN (9001, 9002) AND apartment_id = $1",
            &[&linked["data"]["apartment"]["id"].as_i64().unwrap()]
        )
        .await,
        2,
        "the account's bills came with it"
    );
}
