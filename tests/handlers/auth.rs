use serde_json::json;

use crate::{DEMO, Fixture, error_code};

#[tokio::test]
async fn logging_in_returns_a_token_for_this_queue_and_the_users_apartments() {
    let f = Fixture::new().await;
    let reply = f
        .ask(
            "auth",
            None,
            None,
            json!({ "username": "demo", "password": "demo-password" }),
        )
        .await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(reply["kind"], "auth");
    let data = &reply["data"];
    assert_eq!(data["user"], json!({ "id": 1, "username": "demo" }));
    assert_eq!(
        data["apartments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2]
    );
    assert!(data["expires_at"].as_str().unwrap().ends_with('Z'));
    let session = f
        .engine
        .tokens
        .verify(data["token"].as_str())
        .expect("the token verifies");
    assert_eq!(session.user_id.0, DEMO.0);
    assert_eq!(session.queue, f.queue);
}

#[tokio::test]
async fn usernames_are_matched_without_regard_to_case_or_spaces() {
    let f = Fixture::new().await;
    let reply = f
        .ask(
            "auth",
            None,
            None,
            json!({ "username": " Demo ", "password": "demo-password" }),
        )
        .await;
    assert_eq!(reply["status"], "ok", "{reply}");
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_user_get_the_same_unauthorized_reply() {
    let f = Fixture::new().await;
    let wrong = f
        .ask(
            "auth",
            None,
            None,
            json!({ "username": "demo", "password": "not-it" }),
        )
        .await;
    let unknown = f
        .ask(
            "auth",
            None,
            None,
            json!({ "username": "nobody", "password": "demo-password" }),
        )
        .await;
    assert_eq!(error_code(&wrong), "unauthorized");
    assert_eq!(error_code(&unknown), "unauthorized");
    assert_eq!(
        wrong["error"], unknown["error"],
        "the replies must not tell which one was wrong"
    );
    assert!(wrong.get("data").is_none());
}

#[tokio::test]
async fn repeated_failed_logins_lock_a_username_for_a_while_known_or_not() {
    let f = Fixture::new().await;
    for username in ["demo", "nobody-at-all"] {
        for _ in 0..qbill_core::handlers::auth::MAX_FAILURES {
            let wrong = f
                .ask(
                    "auth",
                    None,
                    None,
                    json!({ "username": username, "password": "guess" }),
                )
                .await;
            assert_eq!(error_code(&wrong), "unauthorized");
        }
        let locked = f
            .ask(
                "auth",
                None,
                None,
                json!({ "username": username, "password": "demo-password" }),
            )
            .await;
        assert_eq!(error_code(&locked), "unauthorized");
        assert!(
            locked["error"]["message"]
                .as_str()
                .unwrap()
                .contains("try again later"),
            "{locked}"
        );
    }
    // demo2 is not affected.
    let other = f
        .ask(
            "auth",
            None,
            None,
            json!({ "username": "demo2", "password": "demo2-password" }),
        )
        .await;
    assert_eq!(other["status"], "ok");
    // When the lock has run out, the right password works and the count starts over.
    let client = f.db.pool.get().await.unwrap();
    client
        .execute(
            "UPDATE login_failures SET locked_until = now() - interval '1 second'",
            &[],
        )
        .await
        .unwrap();
    let back = f
        .ask(
            "auth",
            None,
            None,
            json!({ "username": "demo", "password": "demo-password" }),
        )
        .await;
    assert_eq!(back["status"], "ok", "{back}");
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM login_failures WHERE username = 'demo'",
            &[]
        )
        .await,
        0
    );
}

#[tokio::test]
async fn concurrent_guesses_cannot_slip_past_the_login_limit() {
    let f = std::sync::Arc::new(Fixture::new().await);
    let guesses: Vec<_> = (0..12)
        .map(|i| {
            let f = f.clone();
            tokio::spawn(async move {
                f.ask(
                    "auth",
                    None,
                    None,
                    json!({ "username": "demo2", "password": format!("guess-{i}") }),
                )
                .await
            })
        })
        .collect();
    let mut refused_unchecked = 0;
    for guess in guesses {
        let reply = guess.await.unwrap();
        assert_eq!(error_code(&reply), "unauthorized");
        if reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("try again later")
        {
            refused_unchecked += 1;
        }
    }
    let limit = qbill_core::handlers::auth::MAX_FAILURES as usize;
    assert!(
        refused_unchecked >= 12 - limit,
        "at most {limit} guesses were checked; {refused_unchecked} of 12 were refused unchecked"
    );
    let right = f
        .ask(
            "auth",
            None,
            None,
            json!({ "username": "demo2", "password": "demo2-password" }),
        )
        .await;
    assert!(
        right["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("try again later"),
        "{right}"
    );
}
