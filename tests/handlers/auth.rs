use std::sync::Arc;

use qbill_core::Outcome;
use qbill_core::accounts::throttle::LIMITS;
use serde_json::{Value, json};

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
    assert_eq!(
        data["user"],
        json!({ "id": 1, "username": "demo", "role": "household", "provider_id": null })
    );
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
        .services
        .tokens
        .verify(data["token"].as_str())
        .expect("the token verifies");
    assert_eq!(session.user_id.0, DEMO.0);
    assert!(
        session.bound_to(f.queue),
        "the token is bound to the queue it logged in with"
    );
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
async fn repeated_failed_logins_lock_a_username_from_that_address_known_or_not() {
    let f = Fixture::new().await;
    for username in ["demo", "nobody-at-all"] {
        for _ in 0..LIMITS.pair {
            let wrong = f.log_in_from(HOME, username, "guess").await;
            assert_eq!(error_code(&wrong), "unauthorized");
            assert!(message(&wrong).contains("invalid username or password"));
        }
        let locked = f.log_in_from(HOME, username, "demo-password").await;
        assert_eq!(error_code(&locked), "unauthorized");
        assert!(message(&locked).contains("try again later"), "{locked}");
        assert!(
            message(&locked).contains("from your network address"),
            "{locked}"
        );
    }
    // demo2 is not affected.
    let other = f.log_in_from(HOME, "demo2", "demo2-password").await;
    assert_eq!(other["status"], "ok");
    // When the lock has run out, the right password works and the pair's count starts over.
    let client = f.db.pool.get().await.unwrap();
    client
        .execute(
            "UPDATE login_throttle SET locked_until = now() - interval '1 second'",
            &[],
        )
        .await
        .unwrap();
    let back = f.log_in_from(HOME, "demo", "demo-password").await;
    assert_eq!(back["status"], "ok", "{back}");
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM login_throttle WHERE scope = 'pair' AND key = 'demo ' || $1",
            &[&HOME]
        )
        .await,
        0
    );
}

#[tokio::test]
async fn fifty_concurrent_guesses_get_no_more_password_checks_than_the_limit() {
    let f = Arc::new(Fixture::new().await);
    let replies = at_once(&f, 50, |i| (HOME.to_owned(), "demo2", format!("guess-{i}"))).await;
    let mut refused_unchecked = 0;
    for reply in &replies {
        assert_eq!(error_code(reply), "unauthorized");
        if message(reply).contains("try again later") {
            refused_unchecked += 1;
        }
    }
    let checks = f.engine.services.metrics.snapshot().password_checks;
    let limit = LIMITS.pair as u64;
    println!(
        "reliability: 50 concurrent wrong logins from one address: password_checks={checks} refused_unchecked={refused_unchecked}"
    );
    assert!(
        (1..=limit).contains(&checks),
        "{checks} of 50 guesses reached a password check; the limit is {limit}"
    );
    assert_eq!(refused_unchecked, 50 - checks);
    let right = f.log_in_from(HOME, "demo2", "demo2-password").await;
    assert!(message(&right).contains("try again later"), "{right}");
}

#[tokio::test]
async fn fifty_concurrent_logins_with_the_right_password_all_succeed() {
    let f = Arc::new(Fixture::new().await);
    let replies = at_once(&f, 50, |_| {
        (HOME.to_owned(), "demo", "demo-password".into())
    })
    .await;
    for reply in &replies {
        assert_eq!(reply["status"], "ok", "{reply}");
    }
    let metrics = f.engine.services.metrics.snapshot();
    println!(
        "reliability: 50 concurrent right logins from one address: ok={} password_checks={} held_back={} queued_for_a_slot={}",
        replies.len(),
        metrics.password_checks,
        metrics.logins_held,
        metrics.password_checks_waited
    );
    // One each, or more if a login waited so long (10 s) that its message was tried again.
    assert!(metrics.password_checks >= 50, "{metrics:?}");
    assert!(
        metrics.logins_held > 0,
        "more logins than the limit were under way at once, so some waited their turn"
    );
}

#[tokio::test]
async fn guessing_from_one_address_does_not_lock_the_owner_out_elsewhere() {
    let f = Fixture::new().await;
    for _ in 0..LIMITS.pair * 2 {
        let wrong = f.log_in_from(AWAY, "demo", "guess").await;
        assert_eq!(error_code(&wrong), "unauthorized");
    }
    assert!(
        message(&f.log_in_from(AWAY, "demo", "demo-password").await).contains("try again later")
    );
    let owner = f.log_in_from(HOME, "demo", "demo-password").await;
    assert_eq!(owner["status"], "ok", "{owner}");
}

#[tokio::test]
async fn an_address_guessing_at_many_usernames_is_locked_out_of_all_of_them() {
    let f = Fixture::new().await;
    for i in 0..LIMITS.source {
        let wrong = f
            .log_in_from(AWAY, &format!("user-{}", i % 40), "guess")
            .await;
        assert_eq!(error_code(&wrong), "unauthorized");
    }
    let locked = f.log_in_from(AWAY, "demo2", "demo2-password").await;
    assert!(
        message(&locked).contains("from your network address"),
        "{locked}"
    );
    assert!(!message(&locked).contains("username"), "{locked}");
    assert_eq!(
        f.log_in_from(HOME, "demo2", "demo2-password").await["status"],
        "ok"
    );
}

#[tokio::test]
async fn guesses_spread_over_many_addresses_are_bounded_per_username() {
    let f = Arc::new(Fixture::new().await);
    let guesses = LIMITS.username as usize + 20;
    let replies = at_once(&f, guesses, |i| {
        (
            format!("198.51.{}.{}", i / 250, i % 250 + 1),
            "demo",
            "guess".into(),
        )
    })
    .await;
    assert!(replies.iter().all(|r| error_code(r) == "unauthorized"));
    let checks = f.engine.services.metrics.snapshot().password_checks;
    println!(
        "reliability: {guesses} concurrent wrong logins from {guesses} addresses: password_checks={checks}"
    );
    // The ceiling at full pace, then one at a time after 1, 2, 4, 8 s…: within an attempt's
    // wait of 10 s, no more than a few.
    assert!(
        checks >= LIMITS.username as u64 && checks <= LIMITS.username as u64 + 4,
        "{checks} guesses were checked; the per-username ceiling is {}",
        LIMITS.username
    );
    // The owner is slowed down too, never locked out: its right password waits its turn.
    let owner = owner_logs_in(&f).await;
    assert_eq!(owner["status"], "ok", "{owner}");
}

/// The owner logs in from home, waiting as long as a slowed username's refusal says.
async fn owner_logs_in(f: &Fixture) -> Value {
    for _ in 0..4 {
        let reply = f.log_in_from(HOME, "demo", "demo-password").await;
        let Some(seconds) = message(&reply)
            .split("checked in ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
        else {
            return reply;
        };
        tokio::time::sleep(std::time::Duration::from_secs(seconds)).await;
    }
    panic!("the owner never got a turn");
}

#[tokio::test]
async fn past_the_username_ceiling_guessing_slows_down_and_the_owner_still_logs_in() {
    let f = Fixture::new().await;
    // Guessers spread over many addresses have reached the username's ceiling (and would renew a
    // lock for as long as they kept going).
    f.db.pool
        .get()
        .await
        .unwrap()
        .execute(
            "INSERT INTO login_throttle (scope, key, failures, window_start, expires_at)
             VALUES ('username', 'demo', $1, now(), now() + interval '15 minutes')",
            &[&LIMITS.username],
        )
        .await
        .unwrap();
    let owner = f.log_in_from(HOME, "demo", "demo-password").await;
    assert_eq!(owner["status"], "ok", "the right password gets in: {owner}");

    // Each guess past the ceiling waits longer for its check: 2 s, then 4 s.
    for (i, address) in ["203.0.113.81", "203.0.113.82"].iter().enumerate() {
        let guess = f.log_in_from(address, "demo", "a-guess").await;
        assert_eq!(error_code(&guess), "unauthorized", "{guess}");
        let ahead: f64 =
            f.db.pool
                .get()
                .await
                .unwrap()
                .query_one(
                    "SELECT extract(epoch FROM slow_until - now())::float8 FROM login_throttle
                 WHERE scope = 'username' AND key = 'demo'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
        let want = f64::from(2u32 << i);
        assert!(
            ahead > want - 1.0 && ahead <= want,
            "the next check of the username waits {ahead} s, not about {want} s"
        );
    }
    assert_eq!(f.engine.services.metrics.snapshot().password_checks, 3);
    // The owner still gets in, waiting its turn.
    let again = owner_logs_in(&f).await;
    assert_eq!(again["status"], "ok", "{again}");
}

#[tokio::test]
async fn a_count_at_its_limit_without_a_lock_refuses_at_once() {
    // As after the limits were lowered: no check under way would end a wait, so none is made
    // (a wait would come back as a transient failure, which `log_in_from` does not accept).
    let f = Fixture::new().await;
    let client = f.db.pool.get().await.unwrap();
    client
        .execute(
            "INSERT INTO login_throttle (scope, key, failures, window_start, expires_at)
             VALUES ('pair', 'demo ' || $1, $2, now(), now() + interval '15 minutes')",
            &[&HOME, &LIMITS.pair],
        )
        .await
        .unwrap();
    let refused = f.log_in_from(HOME, "demo", "demo-password").await;
    assert!(message(&refused).contains("try again later"), "{refused}");
    assert_eq!(f.engine.services.metrics.snapshot().password_checks, 0);
}

#[tokio::test]
async fn counters_that_ran_out_are_cleared_by_later_failures() {
    let f = Fixture::new().await;
    let client = f.db.pool.get().await.unwrap();
    client
        .execute(
            "INSERT INTO login_throttle (scope, key, failures, window_start, locked_until, expires_at)
             SELECT 'source', '10.0.0.' || i, 3, now() - interval '2 hours', NULL, now() - interval '1 hour'
             FROM generate_series(1, 25) i",
            &[],
        )
        .await
        .unwrap();
    for _ in 0..3 {
        f.log_in_from(AWAY, "nobody", "guess").await;
    }
    let left =
        f.db.count(
            "SELECT count(*) FROM login_throttle WHERE key LIKE '10.0.0.%'",
            &[],
        )
        .await;
    assert!(left <= 25 - 3 * 5, "{left} of 25 ran-out counters are left");
}

/// Two addresses, as the gateway gives them.
const HOME: &str = "203.0.113.10";
const AWAY: &str = "192.0.2.66";

fn message(reply: &Value) -> &str {
    reply["error"]["message"].as_str().unwrap_or_default()
}

/// Runs `count` logins at once, login `i` being `(address, username, password)` from `login(i)`.
/// A login left for a retry (its message would go back to the queue) is sent again, as SQS would.
async fn at_once(
    f: &Arc<Fixture>,
    count: usize,
    login: impl Fn(usize) -> (String, &'static str, String),
) -> Vec<Value> {
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let f = f.clone();
            let (address, username, password) = login(i);
            tokio::spawn(async move {
                let message = f.login_message(&address, username, &password);
                loop {
                    match f.engine.handle(&message).await {
                        Ok(Outcome::Reply { reply, .. }) => {
                            return serde_json::to_value(&reply).unwrap();
                        }
                        Ok(Outcome::Drop) => panic!("a login was dropped"),
                        Err(_transient) => continue,
                    }
                }
            })
        })
        .collect();
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await.unwrap());
    }
    replies
}
