//! `me_sessions`: the caller's live sessions, newest first: each login that can still be
//! refreshed, and only the caller's; a refresh keeps its session, a logout or a password change
//! ends it; hostile bodies and refused tokens change and show nothing.

use qbill_tests::token_for;
use serde_json::{Value, json};

use crate::{DEMO, DEMO2, Fixture, error_code};

/// A request of a `/me…` route as the gateway enqueues it.
async fn ask_me(f: &Fixture, route: &str, token: Option<&str>, fields: Value) -> Value {
    f.send(f.addressed(route, token, fields, "198.51.100.40"))
        .await
}

async fn log_in(f: &Fixture, username: &str, password: &str) -> Value {
    let reply = f.log_in_from("198.51.100.40", username, password).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    reply["data"].clone()
}

async fn sessions(f: &Fixture, token: &str) -> Vec<Value> {
    let reply = ask_me(f, "me_sessions", Some(token), json!({})).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(reply["kind"], "me_sessions", "{reply}");
    reply["data"]["sessions"].as_array().unwrap().clone()
}

#[tokio::test]
async fn each_login_is_a_session_until_it_is_logged_out() {
    let f = Fixture::new().await;
    let token = f.token(DEMO);
    let before = sessions(&f, &token).await.len();

    let first = log_in(&f, "demo", "demo-password").await;
    let second = log_in(&f, "demo", "demo-password").await;
    let listed = sessions(&f, &token).await;
    assert_eq!(listed.len(), before + 2, "{listed:?}");
    // Newest first, each with its times in order.
    for session in &listed {
        assert!(session["started_at"].as_str() <= session["refreshed_at"].as_str());
        assert!(session["refreshed_at"].as_str() < session["expires_at"].as_str());
    }

    // A refresh rotates the token, not the session.
    let refreshed = f
        .ask(
            "refresh",
            None,
            None,
            json!({ "refresh_token": first["refresh_token"] }),
        )
        .await;
    assert_eq!(refreshed["status"], "ok", "{refreshed}");
    let listed = sessions(&f, &token).await;
    assert_eq!(
        listed.len(),
        before + 2,
        "a refresh keeps its session: {listed:?}"
    );

    // A logout ends it.
    let out = f
        .ask(
            "logout",
            None,
            None,
            json!({ "refresh_token": second["refresh_token"] }),
        )
        .await;
    assert_eq!(out["status"], "ok", "{out}");
    assert_eq!(sessions(&f, &token).await.len(), before + 1);

    // demo2's sessions are demo2's only.
    let theirs = sessions(&f, &f.token(DEMO2)).await.len();
    log_in(&f, "demo2", "demo2-password").await;
    assert_eq!(sessions(&f, &f.token(DEMO2)).await.len(), theirs + 1);
    assert_eq!(sessions(&f, &token).await.len(), before + 1);
}

#[tokio::test]
async fn a_password_change_ends_every_session_and_its_token() {
    let f = Fixture::new().await;
    let data = log_in(&f, "demo", "demo-password").await;
    let token = data["token"].as_str().unwrap().to_owned();
    log_in(&f, "demo", "demo-password").await;
    assert!(sessions(&f, &token).await.len() >= 2);

    let changed = ask_me(
        &f,
        "me_password",
        Some(&token),
        json!({ "password": "demo-password", "new_password": "Copper-Meadow-Lantern-47" }),
    )
    .await;
    assert_eq!(changed["status"], "ok", "{changed}");
    // The old token is refused, and shows nothing.
    let refused = ask_me(&f, "me_sessions", Some(&token), json!({})).await;
    assert_eq!(error_code(&refused), "unauthorized", "{refused}");
    assert!(refused.get("data").is_none(), "{refused}");
    // The one session after the change is the new login's.
    let fresh = log_in(&f, "demo", "Copper-Meadow-Lantern-47").await;
    let listed = sessions(&f, fresh["token"].as_str().unwrap()).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
}

#[tokio::test]
async fn hostile_bodies_and_refused_tokens_are_answered_and_show_nothing() {
    let f = Fixture::new().await;
    let token = f.token(DEMO);
    for (fields, why) in [
        (json!({ "user_id": 2 }), "another user's id"),
        (json!({ "limit": 100000 }), "a page size"),
        (
            json!({ "since": "'; DROP TABLE refresh_tokens; --" }),
            "an injection",
        ),
    ] {
        let reply = ask_me(&f, "me_sessions", Some(&token), fields).await;
        assert_eq!(error_code(&reply), "invalid_request", "{why}: {reply}");
        assert!(reply.get("data").is_none(), "{why}: {reply}");
    }
    // Without a token, with a forged one, and with a token for another reply queue.
    let none = ask_me(&f, "me_sessions", None, json!({})).await;
    assert_eq!(error_code(&none), "unauthorized", "{none}");
    let forged = ask_me(
        &f,
        "me_sessions",
        Some("eyJhbGciOiJub25lIn0.e30."),
        json!({}),
    )
    .await;
    assert_eq!(error_code(&forged), "unauthorized", "{forged}");
    let elsewhere = token_for(
        DEMO.0,
        DEMO.1,
        qbill_core::types::QueueName::parse(&uuid::Uuid::new_v4().to_string()).unwrap(),
    );
    let wrong_queue = ask_me(&f, "me_sessions", Some(&elsewhere), json!({})).await;
    assert_eq!(error_code(&wrong_queue), "unauthorized", "{wrong_queue}");
    // Still listed fine with the right token.
    sessions(&f, &token).await;
}
