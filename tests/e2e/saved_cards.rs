//! A saved card through the gateway with the local processor: a household saves a card (the
//! SetupIntent confirmed as Stripe.js confirms it), lists it, pays with it off-session in one
//! request, and forgets it.

use qbill_tests::{db_pool, env};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{REPLY_TIMEOUT, served};

async fn processor(path: &str, form: &[(&str, &str)]) -> Value {
    reqwest::Client::new()
        .post(format!("{}{path}", env("QBILL_STRIPE_API_BASE")))
        .basic_auth(env("QBILL_STRIPE_SECRET_KEY"), Some(""))
        .form(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_household_saves_a_card_and_pays_with_it_off_session_through_the_gateway() {
    let db = db_pool(&served().admin_url);
    let (mut home, me) = crate::household("saved", 1).await;
    let mut ask = async |path: &str, body: Value| {
        home.request(path, Uuid::new_v4(), body, REPLY_TIMEOUT)
            .await
            .unwrap()
    };

    let started = ask("/me/payment-methods", json!({})).await;
    assert_eq!(started["kind"], "me_payment_methods", "{started}");
    let setup = started["data"]["setup_intent_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // What Stripe.js does with the card the household types.
    let method = processor(
        "/v1/payment_methods",
        &[
            ("type", "card"),
            ("card[number]", "4242424242424242"),
            ("card[exp_month]", "12"),
            ("card[exp_year]", "2034"),
            ("card[cvc]", "123"),
        ],
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    processor(
        &format!("/v1/setup_intents/{setup}/confirm"),
        &[("payment_method", &method)],
    )
    .await;
    let saved = ask("/me/payment-methods", json!({ "setup_intent_id": setup })).await;
    assert_eq!(
        saved["data"]["saved"]["payment_method_id"],
        json!(method),
        "{saved}"
    );
    let listed = ask("/me/payment-methods/list", json!({})).await;
    assert_eq!(listed["data"]["cards"][0]["last4"], "4242", "{listed}");

    let bill: i64 = db
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT id FROM bills WHERE apartment_id = $1 AND status = 'open' ORDER BY id LIMIT 1",
            &[&me.apartment_id],
        )
        .await
        .unwrap()
        .get(0);
    let paid = ask(
        &format!("/apartments/{}/payments", me.apartment_id),
        json!({ "bills_id": [bill], "payment_method": method }),
    )
    .await;
    assert_eq!(paid["data"]["status"], "succeeded", "{paid}");
    let customer: String = db
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT stripe_customer_id FROM users WHERE id = $1",
            &[&me.user_id],
        )
        .await
        .unwrap()
        .get(0);
    let intent: String = db
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT intent_id FROM payments WHERE id = $1::text::uuid",
            &[&paid["data"]["payment_id"].as_str().unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    let charged: Value = reqwest::Client::new()
        .get(format!(
            "{}/v1/payment_intents/{intent}",
            env("QBILL_STRIPE_API_BASE")
        ))
        .basic_auth(env("QBILL_STRIPE_SECRET_KEY"), Some(""))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        charged["customer"],
        json!(customer),
        "off-session, on the household's customer"
    );

    // Another household can neither delete nor pay with it, through the gateway either.
    let (mut other, other_me) = crate::household("saved-other", 1).await;
    let theirs = other
        .request(
            &format!("/me/payment-methods/{method}/delete"),
            Uuid::new_v4(),
            json!({}),
            REPLY_TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(crate::lifecycle::error(&theirs), "not_found", "{theirs}");
    let their_bill: i64 = db
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT id FROM bills WHERE apartment_id = $1 AND status = 'open' ORDER BY id LIMIT 1",
            &[&other_me.apartment_id],
        )
        .await
        .unwrap()
        .get(0);
    let stolen = other
        .request(
            &format!("/apartments/{}/payments", other_me.apartment_id),
            Uuid::new_v4(),
            json!({ "bills_id": [their_bill], "payment_method": method }),
            REPLY_TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(
        stolen["data"]["failure_code"], "payment_method_not_yours",
        "{stolen}"
    );
    // No token: refused by the gateway.
    let anonymous = qbill::client::GatewayClient::new(&served().gateway, Uuid::new_v4());
    let accepted = anonymous
        .post_raw(
            "/me/payment-methods/list",
            json!({ "queue_name": anonymous.queue().to_string(), "request_id": Uuid::new_v4() })
                .to_string(),
        )
        .await
        .unwrap();
    assert_eq!(accepted.status, 400, "{}", accepted.body);
    let deleted = ask(&format!("/me/payment-methods/{method}/delete"), json!({})).await;
    assert_eq!(deleted["data"]["cards"], json!([]), "{deleted}");
    // A body the gateway's schema refuses: a card number never goes through it.
    let refused = home
        .post_raw(
            "/me/payment-methods",
            json!({ "queue_name": home.queue().to_string(), "request_id": Uuid::new_v4(),
                    "card_number": "4242424242424242" })
            .to_string(),
        )
        .await
        .unwrap();
    assert_eq!(refused.status, 400, "{}", refused.body);
}
