//! Saved cards against the local processor: a household saves a card (a SetupIntent confirmed as
//! Stripe.js confirms it), lists it, pays with it off-session in one request, and forgets it; a
//! card whose bank asks makes the payment wait on the household; another household can neither
//! pay with it, finish its setup nor delete it; deleting the account makes the processor forget
//! the customer and its cards.

use qbill_core::envelope::{AUTHORIZATION_MARKER, attribute};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::card_payments::{card_fixture, pay_with, processor};
use crate::{DEMO, DEMO2, Fixture, bill_ids, error_code};

/// Asks `route` as `user` (a household), with `path` as the saved card of the path if given.
async fn me(
    f: &Fixture,
    user: (i64, &str),
    route: &str,
    path: Option<&str>,
    fields: Value,
) -> Value {
    let mut body = json!({ "queue_name": f.queue.to_string(), "request_id": Uuid::new_v4() });
    body.as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    let mut request = qbill_tests::message(route, None, None, body);
    request.attributes.insert(
        attribute::AUTHORIZATION.into(),
        format!("{AUTHORIZATION_MARKER}Bearer {}", f.token(user)),
    );
    if let Some(path) = path {
        request
            .attributes
            .insert(attribute::PAYMENT_METHOD_ID.into(), path.to_owned());
    }
    f.send(request).await
}

/// A card typed into Stripe.js: a PaymentMethod of this number.
async fn typed(number: &str) -> String {
    processor(
        reqwest::Method::POST,
        "/v1/payment_methods",
        &[
            ("type", "card"),
            ("card[number]", number),
            ("card[exp_month]", "12"),
            ("card[exp_year]", "2034"),
            ("card[cvc]", "123"),
        ],
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Saves a good card for `user` the way the web app does; the saved card's id.
async fn save(f: &Fixture, user: (i64, &str), number: &str) -> String {
    let started = me(f, user, "me_payment_methods", None, json!({})).await;
    assert_eq!(started["status"], "ok", "{started}");
    let setup = started["data"]["setup_intent_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        started["data"]["client_secret"]
            .as_str()
            .unwrap()
            .starts_with(&setup)
    );
    let method = typed(number).await;
    processor(
        reqwest::Method::POST,
        &format!("/v1/setup_intents/{setup}/confirm"),
        &[("payment_method", method.as_str())],
    )
    .await;
    let finished = me(
        f,
        user,
        "me_payment_methods",
        None,
        json!({ "setup_intent_id": setup }),
    )
    .await;
    assert_eq!(finished["status"], "ok", "{finished}");
    assert_eq!(
        finished["data"]["saved"]["payment_method_id"],
        json!(method)
    );
    method
}

async fn customer_of(f: &Fixture, user: i64) -> Option<String> {
    f.db.pool
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT stripe_customer_id FROM users WHERE id = $1",
            &[&user],
        )
        .await
        .unwrap()
        .get(0)
}

/// Whether the processor no longer knows the customer.
async fn gone_at_processor(customer: &str) -> bool {
    let read = reqwest::Client::new()
        .get(format!(
            "{}/v1/customers/{customer}",
            qbill_tests::env("QBILL_STRIPE_API_BASE")
        ))
        .basic_auth(qbill_tests::env("QBILL_STRIPE_SECRET_KEY"), Some(""))
        .send()
        .await
        .unwrap();
    read.status().as_u16() == 404
}

#[tokio::test]
async fn a_household_saves_a_card_pays_with_it_in_one_tap_and_forgets_it() {
    let f = card_fixture().await;
    let none = me(&f, DEMO, "me_payment_methods_list", None, json!({})).await;
    assert_eq!(none["data"]["cards"], json!([]), "{none}");
    let card = save(&f, DEMO, "4242424242424242").await;
    let customer = customer_of(&f, 1)
        .await
        .expect("a customer, made on first need");
    // Saving a second card keeps the one customer.
    save(&f, DEMO, "5555555555554444").await;
    assert_eq!(customer_of(&f, 1).await.as_deref(), Some(customer.as_str()));
    let listed = me(&f, DEMO, "me_payment_methods_list", None, json!({})).await;
    let cards = listed["data"]["cards"].as_array().unwrap();
    assert_eq!(cards.len(), 2, "{listed}");
    assert!(
        cards
            .iter()
            .any(|c| c["last4"] == "4242" && c["exp_year"] == 2034),
        "{listed}"
    );

    // One tap: the saved card pays at once, off-session, on the household's customer.
    let bills = bill_ids(&f.demo_utils(1).await["bills"]);
    let paid = pay_with(&f, 1, &bills[..1], Some(&card)).await;
    assert_eq!(paid["data"]["status"], "succeeded", "{paid}");
    let intent: String =
        f.db.pool
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
    let charged = processor(
        reqwest::Method::GET,
        &format!("/v1/payment_intents/{intent}"),
        &[],
    )
    .await;
    assert_eq!(charged["customer"], json!(customer), "{charged}");
    assert_eq!(charged["payment_method"], json!(card), "{charged}");

    // Forgotten: gone from the list, and not forgotten twice.
    let deleted = me(&f, DEMO, "me_payment_method_delete", Some(&card), json!({})).await;
    assert_eq!(deleted["status"], "ok", "{deleted}");
    assert_eq!(
        deleted["data"]["cards"].as_array().unwrap().len(),
        1,
        "{deleted}"
    );
    let again = me(&f, DEMO, "me_payment_method_delete", Some(&card), json!({})).await;
    assert_eq!(error_code(&again), "not_found", "{again}");
    let detached = processor(
        reqwest::Method::GET,
        &format!("/v1/payment_methods/{card}"),
        &[],
    )
    .await;
    assert_eq!(detached["customer"], Value::Null, "{detached}");
}

#[tokio::test]
async fn a_saved_card_whose_bank_asks_makes_the_payment_wait_on_the_household() {
    let f = card_fixture().await;
    save(&f, DEMO, "4242424242424242").await;
    let customer = customer_of(&f, 1).await.unwrap();
    // A 3-D Secure card saved on the customer.
    let asks = typed("4000002500003155").await;
    processor(
        reqwest::Method::POST,
        &format!("/v1/payment_methods/{asks}/attach"),
        &[("customer", customer.as_str())],
    )
    .await;
    let bills = bill_ids(&f.demo_utils(1).await["bills"]);
    let reply = pay_with(&f, 1, &bills[..1], Some(&asks)).await;
    assert_eq!(reply["data"]["status"], "requires_action", "{reply}");
    assert!(reply["data"]["client_secret"].is_string(), "{reply}");
}

#[tokio::test]
async fn another_household_can_neither_pay_with_finish_nor_delete_someone_elses_card() {
    let f = card_fixture().await;
    let card = save(&f, DEMO, "4242424242424242").await;
    // demo2 pays one of its bills with demo's saved card: refused, nothing charged.
    let open_of_demo2 = async || -> Vec<i64> {
        f.db.pool
            .get()
            .await
            .unwrap()
            .query(
                "SELECT id FROM bills WHERE apartment_id = 3 AND status IN ('open', 'overdue') ORDER BY id",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    let bills = open_of_demo2().await;
    let body = json!({ "bills_id": [bills[0]], "payment_method": card });
    let reply = f
        .ask("payments", Some(3), Some(&f.token(DEMO2)), body)
        .await;
    assert_eq!(reply["data"]["status"], "failed", "{reply}");
    assert_eq!(
        reply["data"]["failure_code"], "payment_method_not_yours",
        "{reply}"
    );
    assert_eq!(open_of_demo2().await, bills, "the bill is still open");
    // demo's setup, finished by demo2: not found; demo's card deleted by demo2: not found.
    let started = me(&f, DEMO, "me_payment_methods", None, json!({})).await;
    let setup = started["data"]["setup_intent_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let theirs = me(
        &f,
        DEMO2,
        "me_payment_methods",
        None,
        json!({ "setup_intent_id": setup }),
    )
    .await;
    assert_eq!(error_code(&theirs), "not_found", "{theirs}");
    let deleted = me(
        &f,
        DEMO2,
        "me_payment_method_delete",
        Some(&card),
        json!({}),
    )
    .await;
    assert_eq!(error_code(&deleted), "not_found", "{deleted}");
    let listed = me(&f, DEMO, "me_payment_methods_list", None, json!({})).await;
    assert_eq!(
        listed["data"]["cards"].as_array().unwrap().len(),
        1,
        "{listed}"
    );
    // An unconfirmed setup is not saved.
    let early = me(
        &f,
        DEMO,
        "me_payment_methods",
        None,
        json!({ "setup_intent_id": setup }),
    )
    .await;
    assert_eq!(error_code(&early), "conflict", "{early}");
    // Hostile ids and bodies.
    for body in [
        json!({ "setup_intent_id": "pi_123" }),
        json!({ "setup_intent_id": "seti_" }),
        json!({ "setup_intent_id": "seti_a b" }),
        json!({ "card_number": "4242424242424242" }),
    ] {
        let reply = me(&f, DEMO, "me_payment_methods", None, body.clone()).await;
        assert_eq!(error_code(&reply), "invalid_request", "{body} -> {reply}");
    }
    // Only households keep cards.
    let operator = crate::operator(&f);
    let mut request = qbill_tests::message(
        "me_payment_methods_list",
        None,
        None,
        json!({ "queue_name": f.queue.to_string(), "request_id": Uuid::new_v4() }),
    );
    request.attributes.insert(
        attribute::AUTHORIZATION.into(),
        format!("{AUTHORIZATION_MARKER}Bearer {operator}"),
    );
    let reply = f.send(request).await;
    assert_eq!(error_code(&reply), "forbidden", "{reply}");
    for path in ["card_123", "pm_", "pm_../../x", ""] {
        let reply = me(&f, DEMO, "me_payment_method_delete", Some(path), json!({})).await;
        assert_eq!(error_code(&reply), "invalid_request", "{path:?} -> {reply}");
    }
}

#[tokio::test]
async fn deleting_the_account_makes_the_processor_forget_its_customer_and_cards() {
    let f = card_fixture().await;
    let card = save(&f, DEMO, "4242424242424242").await;
    let customer = customer_of(&f, 1).await.unwrap();
    let request = f.addressed(
        "me_delete",
        Some(&f.token(DEMO)),
        json!({ "password": "demo-password" }),
        "198.51.100.61",
    );
    let deleted = f.send(request).await;
    assert_eq!(deleted["data"]["deleted"], true, "{deleted}");
    assert_eq!(
        customer_of(&f, 1).await,
        None,
        "the id goes once the processor forgot it"
    );
    let method = processor(
        reqwest::Method::GET,
        &format!("/v1/payment_methods/{card}"),
        &[],
    )
    .await;
    assert_eq!(method["customer"], Value::Null, "{method}");
    assert!(
        gone_at_processor(&customer).await,
        "the processor forgot {customer}"
    );
}

#[tokio::test]
async fn the_reconcile_job_forgets_a_deleted_accounts_customer_the_deletion_left() {
    let f = card_fixture().await;
    save(&f, DEMO, "4242424242424242").await;
    let customer = customer_of(&f, 1).await.unwrap();
    // As if the deletion's own call to the processor had failed.
    f.db.pool
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE users SET username = NULL, password_hash = NULL, email = NULL, email_verified = false,
                    display_name = NULL, deleted_at = now() WHERE id = 1",
            &[],
        )
        .await
        .unwrap();
    let report = qbill_core::jobs::reconcile::run(&f.engine.services, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(report.customers_forgotten, 1, "{report:?}");
    assert_eq!(customer_of(&f, 1).await, None);
    assert!(
        gone_at_processor(&customer).await,
        "the processor forgot {customer}"
    );
}
