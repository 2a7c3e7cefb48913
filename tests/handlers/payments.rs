use std::sync::Arc;

use qbill_core::Outcome;
use qbill_core::envelope::InboundMessage;
use qbill_tests::message;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{DEMO, DEMO2, Fixture, bill_ids, error_code};

#[tokio::test]
async fn paying_bills_settles_them_and_returns_a_receipt() {
    let f = Fixture::new().await;
    let reply = f.pay(1, &[1081, 1092]).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let receipt = &reply["data"];
    assert_eq!(receipt["apartment_id"], 1);
    assert_eq!(receipt["bills_id"], json!([1081, 1092]));
    assert_eq!(receipt["currency"], "EUR");
    let expected: Decimal = {
        let client = f.db.pool.get().await.unwrap();
        client
            .query_one(
                "SELECT sum(amount) FROM bills WHERE id IN (1081, 1092)",
                &[],
            )
            .await
            .unwrap()
            .get(0)
    };
    assert_eq!(
        receipt["total"]
            .as_str()
            .unwrap()
            .parse::<Decimal>()
            .unwrap(),
        expected
    );
    let payment: Uuid = receipt["payment_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM bills WHERE payment_id = $1 AND status = 'paid'",
            &[&payment]
        )
        .await,
        2
    );
    let unpaid = bill_ids(&f.demo_utils(1).await["bills"]);
    assert!(!unpaid.contains(&1081) && !unpaid.contains(&1092));
    assert_eq!(unpaid.len(), 10);
}

#[tokio::test]
async fn paying_the_same_bill_twice_gets_already_paid_and_charges_once() {
    let f = Fixture::new().await;
    assert_eq!(f.pay(1, &[1081]).await["status"], "ok");
    let again = f.pay(1, &[1081]).await;
    assert_eq!(error_code(&again), "already_paid");
    assert_eq!(f.db.count("SELECT count(*) FROM payments WHERE apartment_id = 1 AND paid_at > now() - interval '1 hour'", &[]).await, 1);
}

#[tokio::test]
async fn resending_a_payment_with_the_same_request_id_returns_the_same_receipt_and_charges_once() {
    let f = Fixture::new().await;
    let request = Uuid::new_v4();
    let token = f.token(DEMO);
    let first = f
        .ask_as(
            request,
            "payments",
            Some(1),
            Some(&token),
            json!({ "bills_id": [1081, 1082] }),
        )
        .await;
    let second = f
        .ask_as(
            request,
            "payments",
            Some(1),
            Some(&token),
            json!({ "bills_id": [1082, 1081] }),
        )
        .await;
    assert_eq!(first["status"], "ok", "{first}");
    assert_eq!(first, second, "the same request gets the same reply");
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM payments WHERE request_id = $1",
            &[&request]
        )
        .await,
        1
    );
}

#[tokio::test]
async fn the_same_request_id_for_a_different_payment_is_refused_as_a_conflict() {
    let f = Fixture::new().await;
    let request = Uuid::new_v4();
    let token = f.token(DEMO);
    assert_eq!(
        f.ask_as(
            request,
            "payments",
            Some(1),
            Some(&token),
            json!({ "bills_id": [1081] })
        )
        .await["status"],
        "ok"
    );
    let other = f
        .ask_as(
            request,
            "payments",
            Some(1),
            Some(&token),
            json!({ "bills_id": [1082] }),
        )
        .await;
    assert_eq!(error_code(&other), "conflict");
    assert!(
        bill_ids(&f.demo_utils(1).await["bills"]).contains(&1082),
        "bill 1082 must stay unpaid"
    );
}

#[tokio::test]
async fn one_bad_bill_rejects_the_whole_payment_and_pays_nothing() {
    let f = Fixture::new().await;
    for (bills, code) in [
        (vec![1081, 999_999], "not_found"), // unknown
        (vec![1081, 3081], "not_found"),    // demo2's apartment
        (vec![1081, 2081], "not_found"),    // demo's other apartment
        (vec![1081, 1051], "already_paid"), // settled in the seed
    ] {
        let reply = f.pay(1, &bills).await;
        assert_eq!(error_code(&reply), code, "{bills:?}");
    }
    assert!(
        bill_ids(&f.demo_utils(1).await["bills"]).contains(&1081),
        "bill 1081 must stay unpaid"
    );
    assert_eq!(
        f.db.count("SELECT count(*) FROM processed_requests", &[])
            .await,
        0,
        "rejected requests leave no record"
    );
}

#[tokio::test]
async fn paying_another_users_apartment_is_forbidden_and_pays_nothing() {
    let f = Fixture::new().await;
    let reply = f.pay(3, &[3081]).await;
    assert_eq!(error_code(&reply), "forbidden");
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM bills WHERE id = 3081 AND status = 'open'",
            &[]
        )
        .await,
        1
    );
}

#[tokio::test]
async fn fifty_concurrent_payments_over_ten_bills_pay_each_bill_exactly_once() {
    let f = Arc::new(Fixture::new().await);
    let bills = [1081, 1082, 1083, 1084, 1091, 1092, 1093, 1094, 1101, 1102];
    // Fifty payments of two adjacent bills each over ten bills, all at once.
    let attempts: Vec<_> = (0..50)
        .map(|i| {
            let f = f.clone();
            let pair = [bills[i % bills.len()], bills[(i + 1) % bills.len()]];
            tokio::spawn(async move { f.pay(1, &pair).await })
        })
        .collect();
    let mut ok = 0;
    for attempt in attempts {
        let reply = attempt.await.unwrap();
        match reply["status"].as_str() {
            Some("ok") => ok += 1,
            _ => assert_eq!(error_code(&reply), "already_paid", "{reply}"),
        }
    }
    assert!(ok >= 1);
    let paid = f.db.count("SELECT count(*) FROM bills WHERE apartment_id = 1 AND id = ANY($1) AND status = 'paid'", &[&bills.to_vec()]).await;
    assert_eq!(
        paid,
        2 * ok,
        "every successful payment settled its two bills, and no bill twice"
    );
    println!(
        "reliability: 50 concurrent payments over 10 bills: succeeded={ok} already_paid={} bills_paid={paid} paid_twice=0",
        50 - ok
    );
    let (sum_payments, sum_bills): (Decimal, Decimal) = {
        let client = f.db.pool.get().await.unwrap();
        let row = client
            .query_one(
                "SELECT (SELECT sum(total) FROM payments WHERE apartment_id = 1 AND paid_at > now() - interval '1 hour'),
                        (SELECT sum(b.amount) FROM bills b JOIN payments p ON p.id = b.payment_id
                         WHERE b.apartment_id = 1 AND p.paid_at > now() - interval '1 hour')",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(sum_payments, sum_bills);
}

#[tokio::test]
async fn duplicates_of_one_request_delivered_at_once_make_one_payment() {
    let f = Arc::new(Fixture::new().await);
    let request = Uuid::new_v4();
    let token = f.token(DEMO);
    let copies: Vec<_> = (0..8)
        .map(|_| {
            let (f, token) = (f.clone(), token.clone());
            tokio::spawn(async move {
                f.ask_as(
                    request,
                    "payments",
                    Some(1),
                    Some(&token),
                    json!({ "bills_id": [1101, 1102] }),
                )
                .await
            })
        })
        .collect();
    let mut replies = Vec::new();
    for copy in copies {
        replies.push(copy.await.unwrap());
    }
    assert!(
        replies.iter().all(|r| r == &replies[0]),
        "every copy gets the same receipt: {replies:?}"
    );
    assert_eq!(replies[0]["status"], "ok");
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM payments WHERE request_id = $1",
            &[&request]
        )
        .await,
        1
    );
}

/// entity, entity id, action, actor, old status, new status
type AuditRow = (
    String,
    String,
    String,
    Option<i64>,
    Option<String>,
    Option<String>,
);

#[tokio::test]
async fn every_payment_and_bill_change_is_audited_with_who_and_which_request() {
    let f = Fixture::new().await;
    let request = Uuid::new_v4();
    let reply = f
        .ask_as(
            request,
            "payments",
            Some(1),
            Some(&f.token(DEMO)),
            json!({ "bills_id": [1081, 1082] }),
        )
        .await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let client = f.db.pool.get().await.unwrap();
    let rows = client
        .query(
            "SELECT entity, entity_id, action, actor_user, old_state->>'status', new_state->>'status'
             FROM audit_events WHERE request_id = $1 ORDER BY id",
            &[&request],
        )
        .await
        .unwrap();
    let events: Vec<AuditRow> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect();
    let payment_id = reply["data"]["payment_id"].as_str().unwrap().to_owned();
    assert_eq!(
        events,
        vec![
            (
                "payment".into(),
                payment_id,
                "created".into(),
                Some(DEMO.0),
                None,
                // A payment of the ledger mode is settled when it is written.
                Some("succeeded".into())
            ),
            (
                "bill".into(),
                "1081".into(),
                "status_changed".into(),
                Some(DEMO.0),
                Some("open".into()),
                Some("paid".into())
            ),
            (
                "bill".into(),
                "1082".into(),
                "status_changed".into(),
                Some(DEMO.0),
                Some("open".into()),
                Some("paid".into())
            ),
        ]
    );
    // A rejected payment leaves no trace but its absence.
    let again = f.pay(1, &[1081]).await;
    assert_eq!(error_code(&again), "already_paid");
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM audit_events WHERE entity = 'payment'",
            &[]
        )
        .await,
        1 + 9,
        "the seed's 9 payments and this one"
    );
    // Nobody edits history, not even the owner, without dropping the guard first.
    let error = client
        .execute("DELETE FROM audit_events", &[])
        .await
        .expect_err("append-only");
    assert!(
        error.to_string().contains("append-only") || format!("{error:?}").contains("append-only"),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_bill_of_an_account_no_household_linked_cannot_be_paid_from_any_apartment() {
    let f = Fixture::new().await;
    // 9001 is the demo's overdue bill of Northwind's unlinked account: it has no apartment.
    let reply = f.pay(1, &[9001]).await;
    assert_eq!(error_code(&reply), "not_found", "{reply}");
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM bills WHERE id = 9001 AND status = 'overdue'",
            &[]
        )
        .await,
        1
    );
}

/// A payment as the gateway would enqueue it, for a batch.
fn payment(
    f: &Fixture,
    request: Uuid,
    user: (i64, &str),
    apartment: i64,
    bills: &[i64],
) -> InboundMessage {
    let body = json!({
        "queue_name": f.queue.to_string(),
        "request_id": request,
        "bills_id": bills,
    });
    message("payments", Some(apartment), Some(&f.token(user)), body)
}

/// Hands the messages to the engine as one receive; returns the replies, in order.
async fn batch(f: &Fixture, messages: &[InboundMessage]) -> Vec<Value> {
    f.engine
        .handle_batch(messages)
        .await
        .into_iter()
        .map(|outcome| match outcome.expect("no transient failure") {
            Outcome::Reply { reply, .. } => serde_json::to_value(&reply).unwrap(),
            Outcome::Drop => panic!("a message was dropped"),
        })
        .collect()
}

#[tokio::test]
async fn a_batch_gives_every_payment_its_own_outcome_as_if_each_had_run_alone() {
    let f = Fixture::new().await;
    // Before the batch: one payment made, to be repeated, misused and overlapped.
    let earlier = Uuid::new_v4();
    let first = f
        .ask_as(
            earlier,
            "payments",
            Some(1),
            Some(&f.token(DEMO)),
            json!({ "bills_id": [1081] }),
        )
        .await;
    assert_eq!(first["status"], "ok", "{first}");
    let duplicated = Uuid::new_v4();
    let refused = Uuid::new_v4();
    let ids: Vec<Uuid> = (0..10).map(|_| Uuid::new_v4()).collect();
    let messages = vec![
        // 0: a payment of its own.
        payment(&f, ids[0], DEMO, 1, &[1082, 1083]),
        // 1: a bill paid before the batch.
        payment(&f, refused, DEMO, 1, &[1084, 1081]),
        // 2: the earlier request again: its receipt, replayed.
        payment(&f, earlier, DEMO, 1, &[1081]),
        // 3: the earlier request id for another payment.
        payment(&f, earlier, DEMO, 1, &[1091]),
        // 4: another household's apartment.
        payment(&f, ids[4], DEMO, 3, &[3101]),
        // 5: another household, its own apartment.
        payment(&f, ids[5], DEMO2, 3, &[3101]),
        // 6: a bill that payment 0 of this batch pays.
        payment(&f, ids[6], DEMO, 1, &[1083, 1092]),
        // 7, 8: one request delivered twice in the same receive.
        payment(&f, duplicated, DEMO, 1, &[1093]),
        payment(&f, duplicated, DEMO, 1, &[1093]),
        // 9: a bill that does not exist.
        payment(&f, ids[9], DEMO, 1, &[999_999]),
    ];
    let replies = batch(&f, &messages).await;
    assert_eq!(replies.len(), messages.len());
    assert_eq!(replies[0]["status"], "ok", "{}", replies[0]);
    assert_eq!(replies[0]["data"]["bills_id"], json!([1082, 1083]));
    assert_eq!(error_code(&replies[1]), "already_paid", "{}", replies[1]);
    assert!(
        replies[1]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1081"),
        "{}",
        replies[1]
    );
    assert_eq!(
        replies[2]["data"], first["data"],
        "the replay is the first receipt"
    );
    assert_eq!(error_code(&replies[3]), "conflict", "{}", replies[3]);
    assert_eq!(error_code(&replies[4]), "forbidden", "{}", replies[4]);
    assert_eq!(replies[5]["status"], "ok", "{}", replies[5]);
    assert_eq!(replies[5]["data"]["apartment_id"], 3);
    assert_eq!(error_code(&replies[6]), "already_paid", "{}", replies[6]);
    assert!(
        replies[6]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1083"),
        "{}",
        replies[6]
    );
    assert_eq!(replies[7]["status"], "ok", "{}", replies[7]);
    assert_eq!(replies[8], replies[7], "the repeat gets the same receipt");
    assert_eq!(error_code(&replies[9]), "not_found", "{}", replies[9]);
    for (i, reply) in replies.iter().enumerate() {
        if i != 2 && i != 3 {
            assert_eq!(
                reply["request_id"],
                json!(messages_request(&messages[i])),
                "{reply}"
            );
        }
    }

    // What the batch wrote: three payments, each bill once, and only the refused requests'
    // claims let go.
    let made =
        f.db.count(
            "SELECT count(*) FROM payments WHERE request_id = ANY($1)",
            &[&vec![
                ids[0], ids[5], duplicated, refused, ids[4], ids[6], ids[9],
            ]],
        )
        .await;
    assert_eq!(made, 3, "payments 0, 5 and 7");
    let paid =
        f.db.count(
            "SELECT count(*) FROM bills WHERE id = ANY($1) AND status = 'paid'",
            &[&vec![1082i64, 1083, 1084, 1091, 1092, 1093, 3101]],
        )
        .await;
    assert_eq!(
        paid, 4,
        "1082, 1083, 1093 and 3101; 1084, 1091 and 1092 stay open"
    );
    let kept =
        f.db.count(
            "SELECT count(*) FROM processed_requests WHERE request_id = ANY($1)",
            &[&vec![refused, ids[4], ids[6], ids[9]]],
        )
        .await;
    assert_eq!(kept, 0, "a refused request leaves no claim");
    // So a refused request id runs afresh once what stood in its way is gone.
    let again = f
        .ask_as(
            ids[6],
            "payments",
            Some(1),
            Some(&f.token(DEMO)),
            json!({ "bills_id": [1092] }),
        )
        .await;
    assert_eq!(again["status"], "ok", "{again}");

    // Each payment of the batch is audited with its own payer and request.
    for (request, payer) in [(ids[0], DEMO.0), (ids[5], DEMO2.0), (duplicated, DEMO.0)] {
        let client = f.db.pool.get().await.unwrap();
        let actors: Vec<(String, Option<i64>)> = client
            .query(
                "SELECT entity, actor_user FROM audit_events WHERE request_id = $1 ORDER BY id",
                &[&request],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        assert!(actors.len() >= 2, "a payment and its bills: {actors:?}");
        assert_eq!(actors[0].0, "payment");
        assert!(
            actors.iter().all(|(_, actor)| *actor == Some(payer)),
            "{actors:?}"
        );
    }
}

fn messages_request(message: &InboundMessage) -> String {
    serde_json::from_str::<Value>(&message.body).unwrap()["request_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn batches_naming_the_same_bills_in_opposite_orders_never_deadlock() {
    let f = Arc::new(Fixture::new().await);
    let bills = [
        1082i64, 1083, 1084, 1091, 1092, 1093, 1094, 1101, 1102, 1103,
    ];
    // Twenty batches at once, each of five payments over the same bills, half of them listing
    // the bills (and the payments) in the opposite order.
    let runs: Vec<_> = (0..20)
        .map(|n| {
            let f = f.clone();
            tokio::spawn(async move {
                let mut messages: Vec<InboundMessage> = (0..5)
                    .map(|i| {
                        let mut pair = vec![bills[(n + 2 * i) % 10], bills[(n + 2 * i + 1) % 10]];
                        if n % 2 == 1 {
                            pair.reverse();
                        }
                        payment(&f, Uuid::new_v4(), DEMO, 1, &pair)
                    })
                    .collect();
                if n % 2 == 1 {
                    messages.reverse();
                }
                batch(&f, &messages).await
            })
        })
        .collect();
    let mut ok = 0;
    for run in runs {
        for reply in run.await.unwrap() {
            match reply["status"].as_str() {
                Some("ok") => ok += 1,
                _ => assert_eq!(error_code(&reply), "already_paid", "{reply}"),
            }
        }
    }
    let paid =
        f.db.count(
            "SELECT count(*) FROM bills WHERE id = ANY($1) AND status = 'paid'",
            &[&bills.to_vec()],
        )
        .await;
    assert_eq!(
        paid,
        2 * ok,
        "each successful payment settled its two bills, no bill twice"
    );
    assert_eq!(paid, 10, "every bill was paid by someone");
}

#[tokio::test]
async fn a_session_ended_since_its_token_was_issued_is_refused_by_reads_and_batches_alike() {
    let f = Fixture::new().await;
    let token = f.token(DEMO);
    // The reads check the epoch in their access query, and a batch in its first round trip.
    let before = f.ask("utils", Some(1), Some(&token), json!({})).await;
    assert_eq!(before["status"], "ok", "{before}");
    f.db.pool
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE users SET session_epoch = session_epoch + 1 WHERE id = $1",
            &[&DEMO.0],
        )
        .await
        .unwrap();
    for (route, apartment) in [("utils", 1), ("histories", 1), ("utils", 999)] {
        let reply = f.ask(route, Some(apartment), Some(&token), json!({})).await;
        assert_eq!(
            error_code(&reply),
            "unauthorized",
            "{route} {apartment}: {reply}"
        );
        assert!(
            reply["error"]["message"]
                .as_str()
                .unwrap()
                .contains("session has ended"),
            "{reply}"
        );
    }
    let mut read_bill = message(
        "bill",
        Some(1),
        Some(&token),
        json!({ "queue_name": f.queue.to_string(), "request_id": Uuid::new_v4() }),
    );
    read_bill.attributes.insert(
        qbill_core::envelope::attribute::BILL_ID.into(),
        "1082".into(),
    );
    let bill = f.send(read_bill).await;
    assert_eq!(error_code(&bill), "unauthorized", "{bill}");
    let replies = batch(
        &f,
        &[
            payment(&f, Uuid::new_v4(), DEMO, 1, &[1082]),
            payment(&f, Uuid::new_v4(), DEMO2, 3, &[3101]),
        ],
    )
    .await;
    assert_eq!(error_code(&replies[0]), "unauthorized", "{}", replies[0]);
    assert_eq!(
        replies[1]["status"], "ok",
        "another caller's session is not ended: {}",
        replies[1]
    );
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM bills WHERE id = 1082 AND status = 'paid'",
            &[]
        )
        .await,
        0
    );
}

#[tokio::test]
async fn a_reply_in_a_batch_goes_out_when_it_is_ready_not_when_the_whole_batch_is() {
    let f = Fixture::new().await;
    // A login (a password check of tens of milliseconds, more in a debug build) and a read of
    // debts, in one receive: the read is handed on first, without waiting for the login.
    let messages = [
        f.login_message("198.51.100.7", "demo", "demo-password"),
        message(
            "utils",
            Some(1),
            Some(&f.token(DEMO)),
            json!({ "queue_name": f.queue.to_string(), "request_id": Uuid::new_v4() }),
        ),
    ];
    let order = std::sync::Mutex::new(Vec::new());
    let outcomes = f
        .engine
        .handle_batch_with(&messages, |i, outcome| {
            order.lock().unwrap().push(i);
            std::future::ready(outcome.expect("no transient failure"))
        })
        .await;
    assert_eq!(
        *order.lock().unwrap(),
        vec![1, 0],
        "the read first, then the login"
    );
    let kinds: Vec<String> = outcomes
        .iter()
        .map(|o| match o {
            Outcome::Reply { reply, .. } => reply.kind.to_string(),
            Outcome::Drop => "dropped".into(),
        })
        .collect();
    assert_eq!(kinds, ["auth", "utils"], "outcomes in the messages' order");
}
