//! Texts for households: a number is verified with the code texted to it (through LocalStack's
//! SNS), throttled per user and per number, five wrong codes end a code; a bill reminder goes by
//! SMS to a verified number when its channel is on, and never otherwise; removing the number
//! stops what was not sent.

use qbill_core::jobs::{due_soon, notify as sender};
use qbill_tests::{fresh_phone, texted_code, texts_to};
use serde_json::{Value, json};

use crate::{DEMO, DEMO2, Fixture, error_code};

async fn me(f: &Fixture, route: &str, token: &str, fields: Value) -> Value {
    f.send(f.addressed(route, Some(token), fields, "198.51.100.40"))
        .await
}

/// Verifies `phone` for the demo household; its `me` reply.
async fn verify(f: &Fixture, token: &str, phone: &str) -> Value {
    let asked = me(f, "me_profile", token, json!({ "phone": phone })).await;
    assert_eq!(asked["status"], "ok", "{asked}");
    assert_eq!(asked["data"]["user"]["phone_pending"], phone, "{asked}");
    assert_eq!(
        asked["data"]["user"]["phone"],
        Value::Null,
        "not before its code"
    );
    let code = texted_code(phone).await;
    let verified = me(f, "me_phone_verify", token, json!({ "code": code })).await;
    assert_eq!(verified["kind"], "me", "{verified}");
    verified
}

/// Makes bill 1101 of apartment 1 the only one due within the due-soon window.
async fn one_bill_due_soon(f: &Fixture) {
    let client = f.db.pool.get().await.unwrap();
    client
        .batch_execute(
            "UPDATE bills SET due_date = (now() AT TIME ZONE 'UTC')::date + 30 WHERE status = 'open';
             UPDATE bills SET due_date = (now() AT TIME ZONE 'UTC')::date + 2 WHERE id = 1101 AND status = 'open';",
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_phone_is_verified_with_its_texted_code_and_a_bill_reminder_arrives_by_sms() {
    let f = Fixture::new().await;
    let token = f.token(DEMO);
    let phone = fresh_phone();
    // Written as people write it, kept as E.164.
    let spaced = format!("{} {} {}", &phone[..3], &phone[3..7], &phone[7..]);
    let asked = me(&f, "me_profile", &token, json!({ "phone": spaced })).await;
    assert_eq!(
        asked["data"]["user"]["phone_pending"],
        phone.as_str(),
        "{asked}"
    );
    let texts = texts_to(&phone).await;
    assert_eq!(texts.len(), 1, "the code went at once: {texts:?}");
    assert!(texts[0].starts_with("qbill: your code is "), "{texts:?}");
    let code = texted_code(&phone).await;
    // The code is nowhere in the database.
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM (SELECT t::text AS row FROM sms_outbox t UNION ALL SELECT t::text FROM phone_verifications t) r WHERE strpos(r.row, $1) > 0",
            &[&code]
        )
        .await,
        0
    );
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let refused = me(&f, "me_phone_verify", &token, json!({ "code": wrong })).await;
    assert_eq!(error_code(&refused), "invalid_request", "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("4 tries left")
    );
    let verified = me(&f, "me_phone_verify", &token, json!({ "code": code })).await;
    assert_eq!(
        verified["data"]["user"]["phone"],
        phone.as_str(),
        "{verified}"
    );
    assert!(verified["data"]["user"].get("phone_pending").is_none());
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM audit_events WHERE entity = 'user' AND entity_id = '1'
             AND (new_state ->> 'phone_changed')::boolean AND NOT strpos(new_state::text, $1) > 0",
            &[&phone]
        )
        .await,
        1,
        "audited, without the number"
    );

    // Off by default: a reminder goes by mail and inbox only.
    assert_eq!(
        verified["data"]["notification_preferences"]["bill.due_soon"]["sms"],
        false
    );
    one_bill_due_soon(&f).await;
    due_soon::run(&f.db.pool).await.unwrap();
    let sent = sender::run(&f.engine.services).await.unwrap();
    assert_eq!(sent.sms.sent, 0, "{sent:?}");
    assert_eq!(texts_to(&phone).await.len(), 1);

    // On: the next reminder is texted, its mail's subject.
    let on = me(
        &f,
        "me_profile",
        &token,
        json!({ "notification_preferences": { "bill.due_soon": { "sms": true } } }),
    )
    .await;
    assert_eq!(
        on["data"]["notification_preferences"]["bill.due_soon"],
        json!({ "email": true, "inbox": true, "sms": true })
    );
    f.db.pool
        .get()
        .await
        .unwrap()
        .batch_execute("DELETE FROM notifications WHERE event = 'bill.due_soon'")
        .await
        .unwrap();
    due_soon::run(&f.db.pool).await.unwrap();
    let sent = sender::run(&f.engine.services).await.unwrap();
    assert_eq!(sent.sms.sent, 1, "{sent:?}");
    let texts = texts_to(&phone).await;
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(
        texts[1].starts_with("qbill: Your ") && texts[1].contains(" is due "),
        "{texts:?}"
    );
    assert!(texts[1].len() <= 160, "one SMS: {:?}", texts[1]);
    // Sent: the outbox forgets the number.
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM sms_outbox WHERE phone IS NOT NULL",
            &[]
        )
        .await,
        0
    );
    // Nothing twice.
    assert_eq!(sender::run(&f.engine.services).await.unwrap().sms.sent, 0);
}

#[tokio::test]
async fn codes_are_throttled_per_user_and_per_number_and_five_wrong_ones_end_a_code() {
    let f = Fixture::new().await;
    let token = f.token(DEMO);
    let phone = fresh_phone();
    me(&f, "me_profile", &token, json!({ "phone": phone })).await;
    let code = texted_code(&phone).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for left in (0..5).rev() {
        let refused = me(&f, "me_phone_verify", &token, json!({ "code": wrong })).await;
        assert_eq!(error_code(&refused), "invalid_request", "{refused}");
        if left > 0 {
            assert!(
                refused["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("{left} tries left")),
                "{refused}"
            );
        }
    }
    // The right code no longer works: the code is gone.
    let late = me(&f, "me_phone_verify", &token, json!({ "code": code })).await;
    assert_eq!(error_code(&late), "not_found", "{late}");

    // Per number: 3 codes an hour, whoever asks (the demo asked once; demo2 twice more).
    let other = f.token(DEMO2);
    for _ in 0..2 {
        let asked = me(&f, "me_profile", &other, json!({ "phone": phone })).await;
        assert_eq!(asked["status"], "ok", "{asked}");
    }
    let flood = me(&f, "me_profile", &other, json!({ "phone": phone })).await;
    assert_eq!(error_code(&flood), "forbidden", "{flood}");
    assert_eq!(texts_to(&phone).await.len(), 3);
    // Per user: 5 an hour (the demo asked once; four more numbers, then no more).
    for _ in 0..4 {
        let asked = me(&f, "me_profile", &token, json!({ "phone": fresh_phone() })).await;
        assert_eq!(asked["status"], "ok", "{asked}");
    }
    let sixth = fresh_phone();
    let refused = me(&f, "me_profile", &token, json!({ "phone": sixth })).await;
    assert_eq!(error_code(&refused), "forbidden", "{refused}");
    assert!(texts_to(&sixth).await.is_empty());
    // The throttle never keeps a number.
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM anonymous_attempts WHERE strpos(source, $1) > 0",
            &[&phone.trim_start_matches('+')]
        )
        .await,
        0
    );
}

#[tokio::test]
async fn removing_the_number_stops_its_texts_and_hostile_inputs_change_nothing() {
    let f = Fixture::new().await;
    let token = f.token(DEMO);
    let phone = fresh_phone();
    verify(&f, &token, &phone).await;
    me(
        &f,
        "me_profile",
        &token,
        json!({ "notification_preferences": { "bill.due_soon": { "sms": true } } }),
    )
    .await;
    one_bill_due_soon(&f).await;
    due_soon::run(&f.db.pool).await.unwrap();
    // Removed before the sender ran: the text waiting goes nowhere.
    let removed = me(&f, "me_profile", &token, json!({ "phone": null })).await;
    assert_eq!(removed["data"]["user"]["phone"], Value::Null, "{removed}");
    assert_eq!(sender::run(&f.engine.services).await.unwrap().sms.sent, 0);
    assert_eq!(texts_to(&phone).await.len(), 1, "the code only");

    for phone in [
        json!("12345"),
        json!("+0123456789"),
        json!("+44 7700 9001 2345 6789"),
        json!("+44abc900123"),
        json!(447700900123u64),
        json!(["+447700900123"]),
    ] {
        let reply = me(&f, "me_profile", &token, json!({ "phone": phone })).await;
        assert_eq!(error_code(&reply), "invalid_request", "{phone}: {reply}");
    }
    for code in [
        json!("12345"),
        json!("abcdef"),
        json!(123456),
        json!("1234567"),
    ] {
        let reply = me(&f, "me_phone_verify", &token, json!({ "code": code })).await;
        assert_eq!(error_code(&reply), "invalid_request", "{code}: {reply}");
    }
    let none_waiting = me(&f, "me_phone_verify", &token, json!({ "code": "123456" })).await;
    assert_eq!(error_code(&none_waiting), "not_found", "{none_waiting}");
    for preferences in [
        json!({ "bill.due_soon": { "sms": "yes" } }),
        json!({ "bill.due_soon": { "pager": true } }),
    ] {
        let reply = me(
            &f,
            "me_profile",
            &token,
            json!({ "notification_preferences": preferences }),
        )
        .await;
        assert_eq!(error_code(&reply), "invalid_request", "{reply}");
    }
    let without = f
        .send(f.addressed(
            "me_phone_verify",
            None,
            json!({ "code": "123456" }),
            "198.51.100.40",
        ))
        .await;
    assert_eq!(error_code(&without), "unauthorized", "{without}");
    assert_eq!(
        f.db.count("SELECT count(*) FROM phone_verifications", &[])
            .await,
        0
    );
    assert_eq!(
        f.db.count("SELECT count(*) FROM users WHERE phone IS NOT NULL", &[])
            .await,
        0
    );
}
