//! Households on their own, through the gateway: sign up, verify the address from the mail that
//! LocalStack's SES sent, link an account, hear of a new bill, pay and get the receipt, reset the
//! password (every earlier session ends), change the profile, refresh and log out, and delete the
//! account with the books still balanced; each refusal changing nothing.

use qbill::client::GatewayClient;
use qbill_tests::{count, db_pool, link_token, mails_to, wait_for_mails};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::lifecycle::{Session, bill, error, new_provider, unique};
use crate::{REPLY_TIMEOUT, served};

const PASSWORD: &str = "Tidal-Lantern-Oboe-58";
const NEW_PASSWORD: &str = "Quiet-Harbour-Violet-91";

fn anonymous() -> GatewayClient {
    GatewayClient::new(&served().gateway, Uuid::new_v4())
}

async fn ask(client: &mut GatewayClient, path: &str, body: Value) -> Value {
    client
        .request(path, Uuid::new_v4(), body, REPLY_TIMEOUT)
        .await
        .unwrap()
}

/// Signs up `username` with `email`, and verifies the address with the mailed link.
async fn signed_up(username: &str, email: &str) -> i64 {
    let mut client = anonymous();
    let reply = ask(
        &mut client,
        "/auth/signup",
        json!({ "username": username, "email": email, "password": PASSWORD }),
    )
    .await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(reply["kind"], "signup");
    assert_eq!(reply["data"]["email_verification"], "sent");
    let mails = wait_for_mails(email, 1).await;
    assert_eq!(mails.len(), 1, "one verification mail: {mails:?}");
    assert_eq!(mails[0]["Subject"], "Verify your email address for qbill");
    let verified = ask(
        &mut client,
        "/auth/verify-email",
        json!({ "token": link_token(&mails[0]) }),
    )
    .await;
    assert_eq!(verified["kind"], "verify_email", "{verified}");
    assert_eq!(verified["data"]["email_verified"], true);
    reply["data"]["user"]["id"].as_i64().unwrap()
}

#[tokio::test]
async fn a_household_signs_up_links_pays_resets_and_deletes_its_account() {
    let username = unique("jane");
    let email = format!("{username}@example.com");
    let user = signed_up(&username, &email).await;

    let mut home = Session::login(&username, PASSWORD).await;
    let me = home.ask("/me", json!({})).await;
    assert_eq!(me["kind"], "me", "{me}");
    assert_eq!(me["data"]["user"]["id"], user);
    assert_eq!(me["data"]["user"]["email"], email.as_str());
    assert_eq!(me["data"]["user"]["email_verified"], true);
    assert_eq!(
        me["data"]["notification_preferences"]["payment.succeeded"],
        json!({ "email": true, "inbox": true, "sms": false })
    );

    // A provider's bill for a new account; the household links it with the activation code.
    let mut ops = Session::login("ops", "ops-password").await;
    let (provider, mut provider_user) = new_provider(&mut ops).await;
    let account = unique("ACC");
    let first = provider_user
        .ask(
            &format!("/providers/{provider}/bills"),
            json!({ "bills": [bill(&unique("B"), &account, "41.20", "2030-01-15")] }),
        )
        .await;
    let code = first["data"]["new_accounts"][0]["activation_code"]
        .as_str()
        .unwrap()
        .to_owned();
    let link = home
        .ask(
            "/apartments/link",
            json!({ "provider_id": provider, "account_number": account, "activation_code": code }),
        )
        .await;
    assert_eq!(link["status"], "ok", "{link}");
    let apartment = link["data"]["apartment"]["id"].as_i64().unwrap();

    // The next bill of the linked account reaches the household: mail and inbox.
    let second = provider_user
        .ask(
            &format!("/providers/{provider}/bills"),
            json!({ "bills": [bill(&unique("B"), &account, "1234.50", "2030-02-15")] }),
        )
        .await;
    let bill_id = second["data"]["bills"][0]["bill_id"].as_i64().unwrap();
    // The link spent the code: the provider's next reply carries the account's new one.
    assert_eq!(
        second["data"]["rotated_codes"][0]["account_number"],
        account.as_str(),
        "{second}"
    );
    assert_ne!(
        second["data"]["rotated_codes"][0]["activation_code"],
        code.as_str()
    );
    let mails = wait_for_mails(&email, 2).await;
    assert_eq!(mails.len(), 2, "{mails:?}");
    let created = &mails[1];
    assert!(
        created["Subject"].as_str().unwrap().contains("€1,234.50"),
        "the amount, for people: {created}"
    );
    assert!(
        created["Body"]["html_part"]
            .as_str()
            .unwrap()
            .contains(&bill_id.to_string())
    );
    let inbox = home.ask("/me/notifications", json!({})).await;
    assert_eq!(inbox["kind"], "notifications", "{inbox}");
    let events: Vec<&str> = inbox["data"]["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["bill.created"], "{inbox}");
    assert_eq!(
        inbox["data"]["notifications"][0]["data"]["bill_id"],
        bill_id
    );
    let since = inbox["data"]["next_since_id"].clone();
    let nothing_new = home
        .ask("/me/notifications", json!({ "since_id": since }))
        .await;
    assert_eq!(nothing_new["data"]["notifications"], json!([]));
    assert_eq!(nothing_new["data"]["next_since_id"], since);

    // Paying sends the receipt, once even when the request is sent twice.
    let request_id = Uuid::new_v4();
    let pay_body =
        json!({ "bills_id": [bill_id], "payment_method": qbill_tests::test_card().await });
    let path = format!("/apartments/{apartment}/payments");
    let paid = home.ask_as(&path, request_id, pay_body.clone()).await;
    assert_eq!(paid["status"], "ok", "{paid}");
    let again = home.ask_as(&path, request_id, pay_body).await;
    assert_eq!(again["data"], paid["data"]);
    let mails = wait_for_mails(&email, 3).await;
    let receipt = &mails[2];
    assert_eq!(receipt["Subject"], "Receipt: you paid €1,234.50");
    let text = receipt["Body"]["text_part"].as_str().unwrap();
    assert!(
        text.contains(paid["data"]["payment_id"].as_str().unwrap()),
        "{text}"
    );
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(mails_to(&email).await.len(), 3, "no second receipt");

    // A refresh token from the login; a password reset ends it and the access token.
    let mut device = anonymous();
    let login = ask(
        &mut device,
        "/auth",
        json!({ "username": username, "password": PASSWORD }),
    )
    .await;
    let refresh_token = login["data"]["refresh_token"].as_str().unwrap().to_owned();
    let reset = ask(
        &mut device,
        "/auth/password-reset",
        json!({ "email": email }),
    )
    .await;
    assert_eq!(reset["kind"], "password_reset", "{reset}");
    let mails = wait_for_mails(&email, 4).await;
    assert_eq!(mails[3]["Subject"], "Reset your qbill password");
    let confirm = ask(
        &mut device,
        "/auth/password-reset/confirm",
        json!({ "token": link_token(&mails[3]), "new_password": NEW_PASSWORD }),
    )
    .await;
    assert_eq!(confirm["kind"], "password_reset_confirm", "{confirm}");
    let mails = wait_for_mails(&email, 5).await;
    assert_eq!(mails[4]["Subject"], "Your qbill password was reset");
    let revoked = home.ask("/me", json!({})).await;
    assert_eq!(error(&revoked), "unauthorized", "{revoked}");
    let refreshed = ask(
        &mut device,
        "/auth/refresh",
        json!({ "refresh_token": refresh_token }),
    )
    .await;
    assert_eq!(error(&refreshed), "unauthorized", "{refreshed}");
    let reused = ask(
        &mut device,
        "/auth/password-reset/confirm",
        json!({ "token": link_token(&mails[3]), "new_password": "Another-Harbour-Violet-7" }),
    )
    .await;
    assert_eq!(error(&reused), "invalid_request", "single use: {reused}");

    // The new password works; deleting needs it, and erases the person, not the books.
    let mut home = Session::login(&username, NEW_PASSWORD).await;
    let wrong = home
        .ask("/me/delete", json!({ "password": PASSWORD }))
        .await;
    assert_eq!(error(&wrong), "unauthorized", "{wrong}");
    let deleted = home
        .ask("/me/delete", json!({ "password": NEW_PASSWORD }))
        .await;
    assert_eq!(deleted["kind"], "me_delete", "{deleted}");
    assert_eq!(deleted["data"]["user_id"], user);
    let mails = wait_for_mails(&email, 6).await;
    assert_eq!(mails[5]["Subject"], "Your qbill account was deleted");
    let twice = home
        .ask("/me/delete", json!({ "password": NEW_PASSWORD }))
        .await;
    assert_eq!(error(&twice), "unauthorized", "{twice}");
    let gone = anonymous()
        .auth(&username, NEW_PASSWORD, REPLY_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(error(&gone), "unauthorized", "{gone}");

    let db = db_pool(&served().admin_url);
    let personal = count(
        &db,
        "SELECT count(*) FROM users WHERE id = $1 AND username IS NULL AND email IS NULL
           AND password_hash IS NULL AND deleted_at IS NOT NULL",
        &[&user],
    )
    .await;
    assert_eq!(personal, 1, "the row stays, erased");
    for (what, sql) in [
        (
            "sessions",
            "SELECT count(*) FROM refresh_tokens WHERE user_id = $1",
        ),
        (
            "mailed tokens",
            "SELECT count(*) FROM email_tokens WHERE user_id = $1",
        ),
        (
            "apartments",
            "SELECT count(*) FROM apartment_owners WHERE user_id = $1",
        ),
        (
            "the inbox",
            "SELECT count(*) FROM notifications WHERE user_id = $1 AND in_inbox AND event <> 'account.security'",
        ),
        (
            "the username in the audit trail",
            "SELECT count(*) FROM audit_events WHERE entity = 'user' AND entity_id = $1::bigint::text AND new_state ? 'username'",
        ),
    ] {
        assert_eq!(count(&db, sql, &[&user]).await, 0, "{what} erased");
    }
    // The books: the payment stays under the pseudonymous id, and equals the bills it paid.
    let balanced = count(
        &db,
        "SELECT count(*) FROM payments p WHERE p.user_id = $1
           AND p.total = (SELECT sum(amount) FROM bills b WHERE b.payment_id = p.id)",
        &[&user],
    )
    .await;
    assert_eq!(balanced, 1, "the payment is kept and balances");
}

#[tokio::test]
async fn signup_refuses_weak_passwords_and_taken_usernames_and_reveals_no_email() {
    let username = unique("sam");
    let email = format!("{username}@example.com");
    signed_up(&username, &email).await;
    let mut client = anonymous();
    let weak_name = unique("weak");
    for (password, why) in [
        ("short-pass", "at least 12"),
        ("password123456", "too common"),
        (&*format!("{weak_name}-secret"), "username"),
    ] {
        let weak = ask(
            &mut client,
            "/auth/signup",
            json!({ "username": weak_name, "email": format!("{}@example.com", unique("w")), "password": password }),
        )
        .await;
        assert_eq!(error(&weak), "invalid_request", "{weak}");
        assert!(
            weak["error"]["message"].as_str().unwrap().contains(why),
            "{weak}"
        );
    }
    let kept = ask(
        &mut client,
        "/auth/signup",
        json!({ "username": format!("c-{}", Uuid::new_v4()), "email": format!("{}@example.com", unique("c")), "password": PASSWORD }),
    )
    .await;
    assert_eq!(
        error(&kept),
        "invalid_request",
        "kept for Cognito users: {kept}"
    );
    let taken = ask(
        &mut client,
        "/auth/signup",
        json!({ "username": username, "email": format!("{}@example.com", unique("t")), "password": PASSWORD }),
    )
    .await;
    assert_eq!(error(&taken), "conflict", "{taken}");

    // The same address again: the same reply as a fresh one, and its owner is told.
    let other = unique("other");
    let again = ask(
        &mut client,
        "/auth/signup",
        json!({ "username": other, "email": email, "password": PASSWORD }),
    )
    .await;
    assert_eq!(again["status"], "ok", "{again}");
    assert_eq!(again["data"]["email_verification"], "sent");
    let mails = wait_for_mails(&email, 2).await;
    assert_eq!(
        mails[1]["Subject"],
        "Someone tried to sign up with your email address"
    );
    let db = db_pool(&served().admin_url);
    let without = count(
        &db,
        "SELECT count(*) FROM users WHERE username = $1 AND email IS NULL",
        &[&other],
    )
    .await;
    assert_eq!(without, 1, "the new account has no address");

    // Resetting an address no one has gets the same reply, and no mail.
    let nobody = format!("{}@example.com", unique("nobody"));
    let reset = ask(
        &mut client,
        "/auth/password-reset",
        json!({ "email": nobody }),
    )
    .await;
    assert_eq!(reset["status"], "ok", "{reset}");
    let bad = ask(
        &mut client,
        "/auth/verify-email",
        json!({ "token": "not-a-token-anyone-was-given" }),
    )
    .await;
    assert_eq!(error(&bad), "invalid_request", "{bad}");
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert!(mails_to(&nobody).await.is_empty());
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_ends_its_family() {
    let username = unique("rita");
    signed_up(&username, &format!("{username}@example.com")).await;
    let mut device = anonymous();
    let login = ask(
        &mut device,
        "/auth",
        json!({ "username": username, "password": PASSWORD }),
    )
    .await;
    let first = login["data"]["refresh_token"].as_str().unwrap().to_owned();

    let refreshed = ask(
        &mut device,
        "/auth/refresh",
        json!({ "refresh_token": first }),
    )
    .await;
    assert_eq!(refreshed["kind"], "auth", "{refreshed}");
    let second = refreshed["data"]["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(first, second);
    device.set_token(Some(
        refreshed["data"]["token"].as_str().unwrap().to_owned(),
    ));
    let me = ask(&mut device, "/me", json!({})).await;
    assert_eq!(me["status"], "ok", "the new access token works: {me}");

    // The first token again: a stolen copy. The whole family ends, the second token with it.
    let reused = ask(
        &mut device,
        "/auth/refresh",
        json!({ "refresh_token": first }),
    )
    .await;
    assert_eq!(error(&reused), "unauthorized", "{reused}");
    let after = ask(
        &mut device,
        "/auth/refresh",
        json!({ "refresh_token": second }),
    )
    .await;
    assert_eq!(error(&after), "unauthorized", "{after}");

    // Logging out ends a session; an unknown token gets the same reply.
    let login = ask(
        &mut device,
        "/auth",
        json!({ "username": username, "password": PASSWORD }),
    )
    .await;
    let token = login["data"]["refresh_token"].as_str().unwrap().to_owned();
    let out = ask(
        &mut device,
        "/auth/logout",
        json!({ "refresh_token": token }),
    )
    .await;
    assert_eq!(out["data"]["logged_out"], true, "{out}");
    let unknown = ask(
        &mut device,
        "/auth/logout",
        json!({ "refresh_token": "nothing" }),
    )
    .await;
    assert_eq!(unknown["data"], out["data"]);
    let ended = ask(
        &mut device,
        "/auth/refresh",
        json!({ "refresh_token": token }),
    )
    .await;
    assert_eq!(error(&ended), "unauthorized", "{ended}");
}

#[tokio::test]
async fn the_profile_changes_address_name_and_preferences_and_the_password_changes() {
    let username = unique("omar");
    let email = format!("{username}@example.com");
    signed_up(&username, &email).await;
    let mut home = Session::login(&username, PASSWORD).await;

    let refused = [
        json!({ "notification_preferences": { "account.security": { "email": false } } }),
        json!({ "notification_preferences": { "bill.paid": { "email": false } } }),
        json!({ "display_name": 42 }),
        json!({ "email": "not-an-address@", "password": PASSWORD }),
        // A new address takes the current password.
        json!({ "email": format!("{}@example.org", unique("bare")) }),
    ];
    for body in refused {
        // By the gateway's schema (400, nothing queued) or by the worker (an error reply).
        let request_id = Uuid::new_v4();
        let accepted = home
            .client
            .post("/me/profile", request_id, body.clone())
            .await
            .unwrap();
        if accepted.status == 202 {
            let reply = home
                .client
                .wait_for("/replies", request_id, REPLY_TIMEOUT)
                .await
                .unwrap();
            assert_eq!(error(&reply), "invalid_request", "{body}: {reply}");
        } else {
            assert_eq!(accepted.status, 400, "{body}: {}", accepted.body);
        }
    }
    let new_email = format!("{}@example.org", unique("omar"));
    let changed = home
        .ask(
            "/me/profile",
            json!({ "email": new_email, "password": PASSWORD, "display_name": "Omar K.",
                    "notification_preferences": { "bill.created": { "email": false } } }),
        )
        .await;
    assert_eq!(changed["kind"], "me", "{changed}");
    assert_eq!(changed["data"]["user"]["email"], new_email.as_str());
    assert_eq!(changed["data"]["user"]["email_verified"], false);
    assert_eq!(changed["data"]["user"]["display_name"], "Omar K.");
    assert_eq!(
        changed["data"]["notification_preferences"]["bill.created"],
        json!({ "email": false, "inbox": true, "sms": false })
    );
    // The new address gets its verification, the old one hears of the change.
    let to_new = wait_for_mails(&new_email, 1).await;
    assert_eq!(to_new[0]["Subject"], "Verify your email address for qbill");
    assert!(
        to_new[0]["Body"]["text_part"]
            .as_str()
            .unwrap()
            .contains("Omar K.")
    );
    let to_old = wait_for_mails(&email, 2).await;
    assert_eq!(
        to_old[1]["Subject"],
        "The email address of your qbill account was changed"
    );

    let wrong = home
        .ask(
            "/me/password",
            json!({ "password": "not-the-password", "new_password": NEW_PASSWORD }),
        )
        .await;
    assert_eq!(error(&wrong), "unauthorized", "{wrong}");
    let weak = home
        .ask(
            "/me/password",
            json!({ "password": PASSWORD, "new_password": "qwertyuiop12" }),
        )
        .await;
    assert_eq!(error(&weak), "invalid_request", "{weak}");
    let changed = home
        .ask(
            "/me/password",
            json!({ "password": PASSWORD, "new_password": NEW_PASSWORD }),
        )
        .await;
    assert_eq!(changed["data"]["password_changed"], true, "{changed}");
    let ended = home.ask("/me", json!({})).await;
    assert_eq!(
        error(&ended),
        "unauthorized",
        "this session ended too: {ended}"
    );
    Session::login(&username, NEW_PASSWORD).await;
}

/// `qbill client`, the real binary: signup (the password on standard input), verify from the
/// mail, log in, read the account, change the password (two lines of standard input).
#[tokio::test]
async fn the_cli_client_signs_up_verifies_and_changes_the_password() {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let run = |args: &[&str], stdin: &str, session: Option<(&str, &str)>| {
        let mut command = Command::new(qbill_tests::qbill_binary());
        command
            .arg("client")
            .args(args)
            .env("QBILL_GATEWAY_URL", &served().gateway)
            .env_remove("QBILL_QUEUE")
            .env_remove("QBILL_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some((queue, token)) = session {
            command.env("QBILL_QUEUE", queue).env("QBILL_TOKEN", token);
        }
        let mut child = command.spawn().expect("qbill runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8(output.stdout).unwrap();
        assert!(
            output.status.success(),
            "qbill client {args:?}: {stdout} {}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    };
    let username = unique("cli");
    let email = format!("{username}@example.com");
    let signed = run(
        &["signup", "--username", &username, "--email", &email],
        &format!("{PASSWORD}\n"),
        None,
    );
    assert!(signed.contains("\"kind\": \"signup\""), "{signed}");
    let token = link_token(&wait_for_mails(&email, 1).await[0]);
    let verified = run(&["verify-email", &token], "", None);
    assert!(verified.contains("\"email_verified\": true"), "{verified}");

    let exports = run(
        &["auth", "--username", &username, "--exports"],
        &format!("{PASSWORD}\n"),
        None,
    );
    let value = |name: &str| {
        exports
            .lines()
            .find_map(|l| l.strip_prefix(&format!("export {name}=")))
            .unwrap()
            .to_owned()
    };
    let (queue, token) = (value("QBILL_QUEUE"), value("QBILL_TOKEN"));
    let me = run(&["me"], "", Some((&queue, &token)));
    assert!(me.contains(&format!("\"email\": \"{email}\"")), "{me}");
    let changed = run(
        &["me-password"],
        &format!("{PASSWORD}\n{NEW_PASSWORD}\n"),
        Some((&queue, &token)),
    );
    assert!(changed.contains("\"password_changed\": true"), "{changed}");
    Session::login(&username, NEW_PASSWORD).await;
}
