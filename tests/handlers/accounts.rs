//! The anonymous account routes' refusals that need their own limits or their own clock: the
//! signup and reset throttles, mailed tokens that expired or were used, an address of another
//! account.

use qbill_core::config::AnonymousLimits;
use qbill_tests::{count, link_token, wait_for_mails};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::Fixture;

const PASSWORD: &str = "Tidal-Lantern-Oboe-58";

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &Uuid::new_v4().simple().to_string()[..10])
}

/// An anonymous request from `address`, as the gateway enqueues it.
async fn from(f: &Fixture, address: &str, route: &str, fields: Value) -> Value {
    f.send(f.addressed(route, None, fields, address)).await
}

fn signup() -> Value {
    let name = unique("u");
    json!({ "username": name, "email": format!("{name}@example.com"), "password": PASSWORD })
}

#[tokio::test]
async fn signups_and_reset_requests_are_throttled_per_source_and_signups_in_all() {
    let mut f = Fixture::new().await;
    f.engine.services.anonymous = AnonymousLimits {
        signups_per_source: 2,
        signups: 3,
        resets_per_source: 1,
    };
    for _ in 0..2 {
        let ok = from(&f, "198.51.100.7", "signup", signup()).await;
        assert_eq!(ok["status"], "ok", "{ok}");
    }
    let third = from(&f, "198.51.100.7", "signup", signup()).await;
    assert_eq!(third["error"]["code"], "forbidden", "per source: {third}");
    let elsewhere = from(&f, "203.0.113.9", "signup", signup()).await;
    assert_eq!(elsewhere["status"], "ok", "another source: {elsewhere}");
    let fourth = from(&f, "192.0.2.1", "signup", signup()).await;
    assert_eq!(fourth["error"]["code"], "forbidden", "in all: {fourth}");
    let users =
        f.db.count(
            "SELECT count(*) FROM users WHERE email LIKE '%@example.com'",
            &[],
        )
        .await;
    assert_eq!(users, 3, "refused signups created nobody");

    let reset = json!({ "email": "nobody@example.com" });
    let first = from(&f, "198.51.100.7", "password_reset", reset.clone()).await;
    assert_eq!(first["status"], "ok", "{first}");
    let second = from(&f, "198.51.100.7", "password_reset", reset).await;
    assert_eq!(second["error"]["code"], "forbidden", "{second}");
}

#[tokio::test]
async fn a_mailed_token_works_once_and_not_after_it_expired() {
    let f = Fixture::new().await;
    let name = unique("v");
    let email = format!("{name}@example.com");
    let fields = json!({ "username": name, "email": email, "password": PASSWORD });
    let signed = from(&f, "198.51.100.8", "signup", fields).await;
    assert_eq!(signed["status"], "ok", "{signed}");
    let token = link_token(&wait_for_mails(&email, 1).await[0]);

    // Expired: refused, the address stays unverified.
    f.db.pool
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE email_tokens SET expires_at = now() - interval '1 second'",
            &[],
        )
        .await
        .unwrap();
    let late = from(
        &f,
        "198.51.100.8",
        "verify_email",
        json!({ "token": token }),
    )
    .await;
    assert_eq!(late["error"]["code"], "invalid_request", "{late}");
    let verified = "SELECT count(*) FROM users WHERE email = $1 AND email_verified";
    assert_eq!(count(&f.db.pool, verified, &[&email]).await, 0);

    // In time: verified once; the same token again (another request) is refused.
    f.db.pool
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE email_tokens SET expires_at = now() + interval '1 hour'",
            &[],
        )
        .await
        .unwrap();
    let ok = from(
        &f,
        "198.51.100.8",
        "verify_email",
        json!({ "token": token }),
    )
    .await;
    assert_eq!(ok["data"]["email_verified"], true, "{ok}");
    assert_eq!(count(&f.db.pool, verified, &[&email]).await, 1);
    let again = from(
        &f,
        "198.51.100.8",
        "verify_email",
        json!({ "token": token }),
    )
    .await;
    assert_eq!(
        again["error"]["code"], "invalid_request",
        "single use: {again}"
    );
}
