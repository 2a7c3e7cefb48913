//! The ways a stolen access token became a permanent takeover, closed: changing the address takes
//! the current password, a reset goes to a verified address only, the old address can put itself
//! back, links end with what they were for, the current password cannot be guessed with a token,
//! the profile route reveals no address, and a deletion leaves no stored reply with the person in
//! it.

use qbill_core::envelope::InboundMessage;
use qbill_tests::{count, link_token, mails_to, token_for, wait_for_mails};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::Fixture;

const PASSWORD: &str = "Tidal-Lantern-Oboe-58";
const NEW_PASSWORD: &str = "Quiet-Harbour-Violet-91";

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &Uuid::new_v4().simple().to_string()[..10])
}

fn addressed(f: &Fixture, route: &str, fields: Value, address: &str) -> InboundMessage {
    f.addressed(route, None, fields, address)
}

/// A request of a route without a token, from `address`.
async fn anonymous(f: &Fixture, route: &str, fields: Value, address: &str) -> Value {
    f.send(addressed(f, route, fields, address)).await
}

/// A request of a `/me…` route with `token`, from `address`.
async fn me(f: &Fixture, route: &str, token: &str, fields: Value, address: &str) -> Value {
    f.send(f.addressed(route, Some(token), fields, address))
        .await
}

/// A household that signed up and verified its address: (id, username, email, token).
async fn household(f: &Fixture) -> (i64, String, String, String) {
    let name = unique("h");
    let email = format!("{name}@example.com");
    let signed = anonymous(
        f,
        "signup",
        json!({ "username": name, "email": email, "password": PASSWORD }),
        "198.51.100.20",
    )
    .await;
    assert_eq!(signed["status"], "ok", "{signed}");
    let id = signed["data"]["user"]["id"].as_i64().unwrap();
    let mail = wait_for_mails(&email, 1).await;
    let verified = anonymous(
        f,
        "verify_email",
        json!({ "token": link_token(&mail[0]) }),
        "198.51.100.20",
    )
    .await;
    assert_eq!(verified["data"]["email_verified"], true, "{verified}");
    let token = token_for(id, &name, f.queue);
    (id, name, email, token)
}

/// The newest mail to `address` whose subject has `words`.
async fn newest(address: &str, words: &str, at_least: usize) -> Value {
    let mails = wait_for_mails(address, at_least).await;
    mails
        .iter()
        .rev()
        .find(|m| m["Subject"].as_str().unwrap_or_default().contains(words))
        .unwrap_or_else(|| panic!("no mail {words:?} to {address}: {mails:?}"))
        .clone()
}

#[tokio::test]
async fn changing_the_address_takes_the_current_password_and_a_wrong_one_counts_as_a_failed_login()
{
    let f = Fixture::new().await;
    let (id, name, old, token) = household(&f).await;
    let new = format!("{}@example.com", unique("thief"));

    // A stolen access token alone cannot move the account to another mailbox.
    let bare = me(
        &f,
        "me_profile",
        &token,
        json!({ "email": new }),
        "203.0.113.50",
    )
    .await;
    assert_eq!(bare["error"]["code"], "invalid_request", "{bare}");
    let wrong = me(
        &f,
        "me_profile",
        &token,
        json!({ "email": new, "password": "a-guess-at-it" }),
        "203.0.113.50",
    )
    .await;
    assert_eq!(wrong["error"]["code"], "unauthorized", "{wrong}");
    let counted = count(
        &f.db.pool,
        "SELECT count(*) FROM login_throttle WHERE scope = 'pair' AND key = $1 AND failures = 1",
        &[&format!("{name} 203.0.113.50")],
    )
    .await;
    assert_eq!(counted, 1, "counted like a failed login");
    let unchanged = count(
        &f.db.pool,
        "SELECT count(*) FROM users WHERE id = $1 AND email = $2 AND email_verified",
        &[&id, &old],
    )
    .await;
    assert_eq!(unchanged, 1);

    // With it, the address changes, unverified; the old one is told, with a way back.
    let changed = me(
        &f,
        "me_profile",
        &token,
        json!({ "email": new, "password": PASSWORD }),
        "198.51.100.20",
    )
    .await;
    assert_eq!(changed["data"]["user"]["email"], new.as_str(), "{changed}");
    assert_eq!(changed["data"]["user"]["email_verified"], false);
    let told = newest(&old, "changed", 2).await;
    let text = told["Body"]["text_part"].as_str().unwrap();
    assert!(text.contains("/undo-email?token="), "{text}");
    assert!(
        !text.contains(&new),
        "the old address is not told the new one"
    );
    newest(&new, "Verify", 1).await;
}

#[tokio::test]
async fn the_old_address_puts_itself_back_and_signs_out_whoever_changed_it() {
    let f = Fixture::new().await;
    let (id, _, old, token) = household(&f).await;
    let new = format!("{}@example.com", unique("thief"));
    let changed = me(
        &f,
        "me_profile",
        &token,
        json!({ "email": new, "password": PASSWORD }),
        "198.51.100.21",
    )
    .await;
    assert_eq!(changed["status"], "ok", "{changed}");
    let undo = link_token(&newest(&old, "changed", 2).await);
    let verify_new = link_token(&newest(&new, "Verify", 1).await);

    let undone = anonymous(&f, "email_undo", json!({ "token": undo }), "192.0.2.30").await;
    assert_eq!(undone["data"]["email"], old.as_str(), "{undone}");
    assert_eq!(
        count(
            &f.db.pool,
            "SELECT count(*) FROM users WHERE id = $1 AND email = $2 AND email_verified",
            &[&id, &old],
        )
        .await,
        1,
        "the old address is the account's again, verified"
    );
    // Whoever changed it is signed out, and the new address's link is dead.
    let after = me(&f, "me", &token, json!({}), "198.51.100.21").await;
    assert_eq!(after["error"]["code"], "unauthorized", "{after}");
    let late = anonymous(
        &f,
        "verify_email",
        json!({ "token": verify_new }),
        "192.0.2.30",
    )
    .await;
    assert_eq!(late["error"]["code"], "invalid_request", "{late}");
    // Once only.
    let again = anonymous(&f, "email_undo", json!({ "token": undo }), "192.0.2.30").await;
    assert_eq!(again["error"]["code"], "invalid_request", "{again}");
    newest(&old, "put back", 3).await;
}

#[tokio::test]
async fn a_reset_goes_only_to_a_verified_address() {
    let f = Fixture::new().await;
    let name = unique("u");
    let email = format!("{name}@example.com");
    let signed = anonymous(
        &f,
        "signup",
        json!({ "username": name, "email": email, "password": PASSWORD }),
        "198.51.100.22",
    )
    .await;
    let id = signed["data"]["user"]["id"].as_i64().unwrap();
    // Never verified: whoever set it may not own it.
    let reset = anonymous(
        &f,
        "password_reset",
        json!({ "email": email }),
        "198.51.100.22",
    )
    .await;
    assert_eq!(reset["status"], "ok", "the same reply: {reset}");
    assert_eq!(
        count(
            &f.db.pool,
            "SELECT count(*) FROM email_tokens WHERE user_id = $1 AND purpose = 'password_reset'",
            &[&id],
        )
        .await,
        0,
        "no reset link for an unverified address"
    );
    assert!(
        mails_to(&email)
            .await
            .iter()
            .all(|m| !m["Subject"].as_str().unwrap_or_default().contains("Reset")),
        "no reset mail"
    );
}

#[tokio::test]
async fn a_password_change_or_an_address_change_ends_every_unused_link() {
    let f = Fixture::new().await;
    let (_, _, email, token) = household(&f).await;
    let ask_reset = || async {
        let reply = anonymous(
            &f,
            "password_reset",
            json!({ "email": email }),
            "198.51.100.23",
        )
        .await;
        assert_eq!(reply["status"], "ok", "{reply}");
    };
    let f = &f;
    let confirm = |link: String| async move {
        anonymous(
            f,
            "password_reset_confirm",
            json!({ "token": link, "new_password": "Amber-Kettle-Sparrow-73" }),
            "198.51.100.23",
        )
        .await
    };

    // A reset link asked for before a password change is dead after it.
    ask_reset().await;
    let before_change = link_token(&newest(&email, "Reset", 2).await);
    let changed = me(
        f,
        "me_password",
        &token,
        json!({ "password": PASSWORD, "new_password": NEW_PASSWORD }),
        "198.51.100.23",
    )
    .await;
    assert_eq!(changed["data"]["password_changed"], true, "{changed}");
    let used = confirm(before_change).await;
    assert_eq!(used["error"]["code"], "invalid_request", "{used}");

    // A reset link mailed to an address the account no longer has is dead.
    ask_reset().await;
    let to_old_address = link_token(&newest(&email, "Reset", 4).await);
    // The password change ended the session: a new one.
    let id = count(
        &f.db.pool,
        "SELECT id FROM users WHERE email = $1",
        &[&email],
    )
    .await;
    let name: String =
        f.db.pool
            .get()
            .await
            .unwrap()
            .query_one("SELECT username FROM users WHERE id = $1", &[&id])
            .await
            .unwrap()
            .get(0);
    f.db.pool
        .get()
        .await
        .unwrap()
        .execute("UPDATE users SET session_epoch = 0 WHERE id = $1", &[&id])
        .await
        .unwrap();
    let token = token_for(id, &name, f.queue);
    let moved = me(
        f,
        "me_profile",
        &token,
        json!({ "email": format!("{}@example.com", unique("moved")), "password": NEW_PASSWORD }),
        "198.51.100.23",
    )
    .await;
    assert_eq!(moved["status"], "ok", "{moved}");
    let stale = confirm(to_old_address).await;
    assert_eq!(stale["error"]["code"], "invalid_request", "{stale}");
}

#[tokio::test]
async fn the_current_password_cannot_be_guessed_with_a_stolen_token() {
    use qbill_core::accounts::throttle::LIMITS;
    let f = Fixture::new().await;
    let (id, _, _, token) = household(&f).await;
    for (route, fields) in [
        (
            "me_password",
            json!({ "password": "not-the-password", "new_password": NEW_PASSWORD }),
        ),
        ("me_delete", json!({ "password": "not-the-password" })),
    ] {
        let guess = me(&f, route, &token, fields, "203.0.113.60").await;
        assert_eq!(guess["error"]["code"], "unauthorized", "{route}: {guess}");
    }
    for _ in 2..LIMITS.pair {
        me(
            &f,
            "me_password",
            &token,
            json!({ "password": "not-the-password", "new_password": NEW_PASSWORD }),
            "203.0.113.60",
        )
        .await;
    }
    // The guesser's address is locked out of the account, the right password refused unchecked.
    let right = me(
        &f,
        "me_password",
        &token,
        json!({ "password": PASSWORD, "new_password": NEW_PASSWORD }),
        "203.0.113.60",
    )
    .await;
    let message = right["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("too many failed logins"), "{right}");
    // The owner elsewhere is not.
    let owner = me(
        &f,
        "me_password",
        &token,
        json!({ "password": PASSWORD, "new_password": NEW_PASSWORD }),
        "198.51.100.24",
    )
    .await;
    assert_eq!(owner["data"]["password_changed"], true, "{owner}");
    assert_eq!(
        count(
            &f.db.pool,
            "SELECT count(*) FROM users WHERE id = $1 AND deleted_at IS NULL",
            &[&id],
        )
        .await,
        1
    );
}

#[tokio::test]
async fn the_profile_route_reveals_no_address_and_counts_an_address_taken_only_once_verified() {
    let f = Fixture::new().await;
    let (owner, _, taken, _) = household(&f).await;
    let (_, _, _, token) = household(&f).await;
    let free = format!("{}@example.com", unique("free"));

    let reply = |email: String| {
        let token = token.clone();
        let f = &f;
        async move {
            me(
                f,
                "me_profile",
                &token,
                json!({ "email": email, "password": PASSWORD }),
                "198.51.100.25",
            )
            .await
        }
    };
    let on_taken = reply(taken.clone()).await;
    let on_free = reply(free.clone()).await;
    let shape = |r: &Value| {
        (
            r["status"].clone(),
            r["data"]["user"]["email_verified"].clone(),
        )
    };
    assert_eq!(shape(&on_taken), shape(&on_free), "{on_taken} / {on_free}");
    assert_eq!(on_taken["data"]["user"]["email"], taken.as_str());
    // The owner keeps it, and hears someone tried; no link went to it.
    assert_eq!(
        count(
            &f.db.pool,
            "SELECT count(*) FROM users WHERE id = $1 AND email = $2 AND email_verified",
            &[&owner, &taken],
        )
        .await,
        1
    );
    let told = newest(&taken, "tried to use", 2).await;
    assert!(told["Subject"].as_str().unwrap().contains("email address"));
    assert!(
        mails_to(&taken)
            .await
            .iter()
            .filter(|m| m["Subject"].as_str().unwrap_or_default().contains("Verify"))
            .count()
            == 1,
        "only the owner's own verification mail"
    );
    newest(&free, "Verify", 1).await;

    // Address changes are counted per user: five an hour.
    for n in 2..5 {
        let ok = reply(format!("{}-{n}@example.com", unique("again"))).await;
        assert_eq!(ok["status"], "ok", "{ok}");
    }
    let sixth = reply(format!("{}@example.com", unique("sixth"))).await;
    assert_eq!(sixth["error"]["code"], "forbidden", "{sixth}");
}

#[tokio::test]
async fn a_reset_is_answered_before_its_mail_goes_out() {
    let f = Fixture::new().await;
    let email = format!("{}@example.com", unique("timing"));
    f.db.pool
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE users SET email = $1, email_verified = true WHERE id = 1",
            &[&email],
        )
        .await
        .unwrap();
    let db = f.db.pool.clone();
    let statuses = f
        .engine
        .handle_batch_with(
            &[addressed(
                &f,
                "password_reset",
                json!({ "email": email }),
                "198.51.100.26",
            )],
            |_, outcome| {
                let db = db.clone();
                async move {
                    assert!(outcome.is_ok());
                    // When the reply is ready to go, the mail has not been tried yet: the answer
                    // takes as long whether or not an account has the address.
                    db.get()
                        .await
                        .unwrap()
                        .query_one(
                            "SELECT mail_status FROM notifications
                             WHERE user_id = 1 AND event = 'account.password_reset'",
                            &[],
                        )
                        .await
                        .unwrap()
                        .get::<_, String>(0)
                }
            },
        )
        .await;
    assert_eq!(statuses, ["pending"]);
    newest(&email, "Reset", 1).await;
}

#[tokio::test]
async fn a_deleted_account_leaves_its_name_address_display_name_and_phone_nowhere() {
    let f = Fixture::new().await;
    let (id, name, email, token) = household(&f).await;
    let display = unique("Display Name");
    let profile = me(
        &f,
        "me_profile",
        &token,
        json!({ "display_name": display }),
        "198.51.100.27",
    )
    .await;
    assert_eq!(profile["status"], "ok", "{profile}");
    let read = me(&f, "me", &token, json!({}), "198.51.100.27").await;
    assert_eq!(read["data"]["user"]["display_name"], display.as_str());
    // A verified number, texted for security events too.
    let phone = qbill_tests::fresh_phone();
    me(
        &f,
        "me_profile",
        &token,
        json!({ "phone": phone }),
        "198.51.100.27",
    )
    .await;
    let code = qbill_tests::texted_code(&phone).await;
    let verified = me(
        &f,
        "me_phone_verify",
        &token,
        json!({ "code": code }),
        "198.51.100.27",
    )
    .await;
    assert_eq!(
        verified["data"]["user"]["phone"],
        phone.as_str(),
        "{verified}"
    );
    me(
        &f,
        "me_profile",
        &token,
        json!({ "notification_preferences": { "account.security": { "sms": true } } }),
        "198.51.100.27",
    )
    .await;
    let login = anonymous(
        &f,
        "auth",
        json!({ "username": name, "password": PASSWORD }),
        "198.51.100.27",
    )
    .await;
    assert_eq!(login["status"], "ok", "{login}");
    let deleted = me(
        &f,
        "me_delete",
        &token,
        json!({ "password": PASSWORD }),
        "198.51.100.27",
    )
    .await;
    assert_eq!(deleted["data"]["deleted"], true, "{deleted}");
    // The confirmation mail goes, and then the outbox forgets its address.
    newest(&email, "deleted", 2).await;

    let client = f.db.pool.get().await.unwrap();
    // The outbox clears the deletion mail's address once it is sent; wait for that first.
    for _ in 0..50 {
        let left = client
            .query_one(
                "SELECT count(*) FROM notifications WHERE user_id = $1 AND mail_to IS NOT NULL",
                &[&id],
            )
            .await
            .unwrap()
            .get::<_, i64>(0);
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // Every row of every table, read as text, stored replies and inboxes included.
    let tables: Vec<String> = client
        .query(
            "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public'
             AND tablename <> 'refinery_schema_history'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(tables.len() > 10, "{tables:?}");
    let mut found = Vec::new();
    for table in &tables {
        for needle in [&name, &email, &display, &phone] {
            let n: i64 = client
                .query_one(
                    &format!(
                        "SELECT count(*) FROM {table} t WHERE strpos(lower(t::text), lower($1)) > 0"
                    ),
                    &[needle],
                )
                .await
                .unwrap()
                .get(0);
            if n > 0 {
                found.push(format!("{table}: {n} row(s) with {needle:?}"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "personal data left behind:\n{}",
        found.join("\n")
    );
}

#[tokio::test]
async fn a_refresh_is_answered_again_only_while_what_it_minted_is_unused_and_briefly() {
    let f = Fixture::new().await;
    let (_, name, _, _) = household(&f).await;
    let login = || async {
        let reply = anonymous(
            &f,
            "auth",
            json!({ "username": name, "password": PASSWORD }),
            "198.51.100.28",
        )
        .await;
        reply["data"]["refresh_token"].as_str().unwrap().to_owned()
    };
    let refresh = |request_id: Uuid, token: String| {
        let f = &f;
        async move {
            let mut inbound = addressed(
                f,
                "refresh",
                json!({ "refresh_token": token }),
                "198.51.100.28",
            );
            let mut body: Value = serde_json::from_str(&inbound.body).unwrap();
            body["request_id"] = json!(request_id);
            inbound.body = body.to_string();
            f.send(inbound).await
        }
    };

    let first = login().await;
    let rotation = Uuid::new_v4();
    let second = refresh(rotation, first.clone()).await;
    let minted = second["data"]["refresh_token"].as_str().unwrap().to_owned();
    // Delivered again at once, before its new token was used: the same answer.
    let again = refresh(rotation, first.clone()).await;
    assert_eq!(again["data"]["refresh_token"], minted.as_str(), "{again}");
    // Its new token used, the old token and request id together are a replay: the family ends.
    let third = refresh(Uuid::new_v4(), minted.clone()).await;
    let newest = third["data"]["refresh_token"].as_str().unwrap().to_owned();
    let replayed = refresh(rotation, first).await;
    assert_eq!(replayed["error"]["code"], "unauthorized", "{replayed}");
    let family = refresh(Uuid::new_v4(), newest).await;
    assert_eq!(family["error"]["code"], "unauthorized", "{family}");

    // Later than a few minutes after the rotation, even an unused one is not answered again.
    let first = login().await;
    let rotation = Uuid::new_v4();
    let ok = refresh(rotation, first.clone()).await;
    assert_eq!(ok["status"], "ok", "{ok}");
    f.db.pool
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE refresh_tokens SET rotated_at = now() - interval '10 minutes' WHERE rotated_by = $1",
            &[&rotation],
        )
        .await
        .unwrap();
    let late = refresh(rotation, first).await;
    assert_eq!(late["error"]["code"], "unauthorized", "{late}");
}
