//! A household's phone through the gateway: it gives its number, the code arrives by SMS
//! (LocalStack's SNS), it verifies it, turns texts on for reminders, and the bill reminder arrives
//! by SMS; the gateway refuses a malformed code or number before any worker sees it.

use qbill_tests::{db_pool, fresh_phone, texted_code, texts_to};
use serde_json::json;
use uuid::Uuid;

use crate::lifecycle::error;
use crate::{REPLY_TIMEOUT, served};

#[tokio::test]
async fn a_household_verifies_its_phone_and_gets_its_bill_reminder_by_sms() {
    let (mut home, me) = crate::household("texts", 1).await;
    let phone = fresh_phone();
    let mut ask = async |path: &str, body: serde_json::Value| {
        home.request(path, Uuid::new_v4(), body, REPLY_TIMEOUT)
            .await
            .unwrap()
    };
    let asked = ask("/me/profile", json!({ "phone": phone })).await;
    assert_eq!(
        asked["data"]["user"]["phone_pending"],
        phone.as_str(),
        "{asked}"
    );
    let code = texted_code(&phone).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let refused = ask("/me/phone/verify", json!({ "code": wrong })).await;
    assert_eq!(error(&refused), "invalid_request", "{refused}");
    let verified = ask("/me/phone/verify", json!({ "code": code })).await;
    assert_eq!(
        verified["data"]["user"]["phone"],
        phone.as_str(),
        "{verified}"
    );
    let on = ask(
        "/me/profile",
        json!({ "notification_preferences": { "bill.due_soon": { "sms": true } } }),
    )
    .await;
    assert_eq!(
        on["data"]["notification_preferences"]["bill.due_soon"]["sms"], true,
        "{on}"
    );

    // One of its bills falls due in two days; the jobs run as the pool's timers would.
    let bill: i64 = db_pool(&served().admin_url)
        .get()
        .await
        .unwrap()
        .query_one(
            "UPDATE bills SET due_date = (now() AT TIME ZONE 'UTC')::date + 2
             WHERE id = (SELECT id FROM bills WHERE apartment_id = $1 AND status = 'open' ORDER BY id LIMIT 1)
             RETURNING id",
            &[&me.apartment_id],
        )
        .await
        .unwrap()
        .get(0);
    let services = {
        let store = qbill_core::store::application_pool(&served().db_url, 2).unwrap();
        qbill_tests::engine_on(&store, None).services
    };
    qbill_core::jobs::due_soon::run(&services.store)
        .await
        .unwrap();
    qbill_core::jobs::notify::run(&services).await.unwrap();
    let texts = texts_to(&phone).await;
    assert_eq!(texts.len(), 2, "the code, then the reminder: {texts:?}");
    assert!(
        texts[1].starts_with("qbill: Your ") && texts[1].contains(" is due "),
        "bill {bill}: {texts:?}"
    );
    // And the reminder is in the inbox as ever.
    let inbox = ask("/me/notifications", json!({})).await;
    assert!(
        inbox.to_string().contains(&format!("\"bill_id\":{bill}")),
        "{inbox}"
    );

    // Malformed codes and numbers stop at the gateway.
    for (path, body) in [
        ("/me/phone/verify", json!({ "code": "12ab56" })),
        (
            "/me/phone/verify",
            json!({ "code": "123456", "phone": phone }),
        ),
        (
            "/me/profile",
            json!({ "phone": "+44 7700 900 123 456 789 000 111" }),
        ),
    ] {
        let accepted = home.post(path, Uuid::new_v4(), body.clone()).await.unwrap();
        assert_eq!(accepted.status, 400, "{path} {body}: {}", accepted.body);
    }
    let anonymous = qbill::client::GatewayClient::new(&served().gateway, Uuid::new_v4());
    let accepted = anonymous
        .post(
            "/me/phone/verify",
            Uuid::new_v4(),
            json!({ "code": "123456" }),
        )
        .await
        .unwrap();
    assert_eq!(accepted.status, 400, "no token: {}", accepted.body);
}
