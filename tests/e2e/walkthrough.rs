use qbill_tests::{bill_ids, count, db_pool};
use serde_json::json;
use uuid::Uuid;

use crate::{REPLY_TIMEOUT, client, served};

/// The acceptance walkthrough of the README, through the gateway URL only.
#[tokio::test]
async fn the_demo_walkthrough_works_through_the_gateway() {
    let mut demo = client();
    let login = demo
        .auth("demo", "demo-password", REPLY_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(login["status"], "ok", "{login}");
    assert_eq!(login["data"]["apartments"].as_array().unwrap().len(), 2);

    // Debts of both apartments.
    let mut debts = Vec::new();
    for apartment in [1, 2] {
        let reply = demo
            .utils(apartment, Uuid::new_v4(), REPLY_TIMEOUT)
            .await
            .unwrap();
        assert_eq!(reply["status"], "ok", "{reply}");
        assert_eq!(reply["kind"], "utils");
        debts.push(bill_ids(&reply["data"]["bills"]));
    }
    assert_eq!(debts[0].len(), 12);
    assert_eq!(debts[1].len(), 12);

    // Pay two bills of apartment 1.
    let (first, second) = (debts[0][0], debts[0][1]);
    let payment = Uuid::new_v4();
    let card = qbill_tests::test_card().await;
    let receipt = demo
        .pay(
            1,
            &[first, second],
            Some(card.clone()),
            payment,
            REPLY_TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(receipt["status"], "ok", "{receipt}");
    assert_eq!(receipt["data"]["status"], "succeeded", "{receipt}");
    assert_eq!(receipt["data"]["bills_id"], json!([first, second]));
    assert!(receipt["data"]["total"].is_string());

    // Gone from the debts, present in the history.
    let after = demo.utils(1, Uuid::new_v4(), REPLY_TIMEOUT).await.unwrap();
    let unpaid = bill_ids(&after["data"]["bills"]);
    assert!(
        !unpaid.contains(&first) && !unpaid.contains(&second),
        "{unpaid:?}"
    );
    assert_eq!(unpaid.len(), 10);
    let history = demo
        .histories(1, None, Uuid::new_v4(), REPLY_TIMEOUT)
        .await
        .unwrap();
    let settled = bill_ids(&history["data"]["settled"]);
    assert!(
        settled.contains(&first) && settled.contains(&second),
        "{settled:?}"
    );

    // Paying one of them again.
    let again = demo
        .pay(1, &[first], None, Uuid::new_v4(), REPLY_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(again["error"]["code"], "already_paid", "{again}");

    // The same payment request again: the same receipt, one charge.
    let resent = demo
        .pay(1, &[first, second], Some(card), payment, REPLY_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(resent, receipt);
    let db = db_pool(&served().admin_url);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM payments WHERE request_id = $1",
            &[&payment]
        )
        .await,
        1
    );

    // demo2's apartment with demo's token.
    let foreign = demo.utils(3, Uuid::new_v4(), REPLY_TIMEOUT).await.unwrap();
    assert_eq!(foreign["error"]["code"], "forbidden", "{foreign}");

    // A forged token.
    let token = demo.token().unwrap().to_owned();
    let (head, rest) = token.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let claims = "eyJzdWIiOiIyIiwibmFtZSI6ImRlbW8yIiwiaXNzIjoicWJpbGwiLCJhdWQiOiJxYmlsbC1hcGkiLCJleHAiOjQxMDI0NDQ4MDB9";
    demo.set_token(Some(format!("{head}.{claims}.{signature}")));
    let forged = demo.utils(3, Uuid::new_v4(), REPLY_TIMEOUT).await.unwrap();
    assert_eq!(forged["error"]["code"], "unauthorized", "{forged}");
}

#[tokio::test]
async fn demo2_sees_only_its_own_apartment() {
    let mut demo2 = client();
    let login = demo2
        .auth("demo2", "demo2-password", REPLY_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        login["data"]["apartments"],
        json!([{ "id": 3, "address": "45 Birch Road, Flat 2" }])
    );
    let own = demo2.utils(3, Uuid::new_v4(), REPLY_TIMEOUT).await.unwrap();
    assert_eq!(own["status"], "ok");
    let other = demo2.utils(1, Uuid::new_v4(), REPLY_TIMEOUT).await.unwrap();
    assert_eq!(other["error"]["code"], "forbidden");
}
