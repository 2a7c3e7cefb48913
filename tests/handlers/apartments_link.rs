//! `apartments_link` on the demo set: Northwind's account NW-20417, code NWND-DEMO-2026; and the
//! codes `bills_ingest` gives out: once each, never stored.

use std::collections::HashMap;

use qbill_core::envelope::{AUTHORIZATION_MARKER, InboundMessage, attribute};
use qbill_core::token::Holder;
use qbill_core::types::{ProviderId, Role, UserId};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{DEMO, DEMO2, Fixture, error_code};

fn attempt(code: &str) -> Value {
    json!({ "provider_id": 1, "account_number": "NW-20417", "activation_code": code })
}

impl Fixture {
    /// Links as `user` (a household of the demo set) under `request_id`.
    async fn link_as(&self, request_id: Uuid, user: (i64, &str), fields: Value) -> Value {
        // Apartment attributes are ignored by this route; the helper sends the token with one.
        self.ask_as(
            request_id,
            "apartments_link",
            Some(1),
            Some(&self.token(user)),
            fields,
        )
        .await
    }

    async fn link(&self, user: (i64, &str), fields: Value) -> Value {
        self.link_as(Uuid::new_v4(), user, fields).await
    }

    /// Northwind's user (4) sends `bills` under `request_id`.
    async fn ingest_as(&self, request_id: Uuid, bills: Value) -> Value {
        let holder = Holder {
            user_id: UserId(4),
            username: "northwind".into(),
            role: Role::Provider,
            provider: Some(ProviderId(1)),
            epoch: 0,
        };
        let token = qbill_tests::tokens().issue(&holder, self.queue).unwrap().0;
        let body = json!({ "queue_name": self.queue.to_string(), "request_id": request_id, "bills": bills });
        let reply = self
            .send(InboundMessage {
                message_id: Uuid::new_v4().to_string(),
                body: body.to_string(),
                attributes: HashMap::from([
                    (attribute::ROUTE.into(), "bills_ingest".into()),
                    (attribute::PROVIDER_ID.into(), "1".into()),
                    (
                        attribute::AUTHORIZATION.into(),
                        format!("{AUTHORIZATION_MARKER}Bearer {token}"),
                    ),
                ]),
            })
            .await;
        assert_eq!(reply["status"], "ok", "{reply}");
        reply
    }

    async fn ingest(&self, bills: Value) -> Value {
        self.ingest_as(Uuid::new_v4(), bills).await
    }

    /// `qbill admin move-account` on this database, through the real binary.
    fn move_account(&self, number: &str, to: Option<i64>) -> Value {
        let mut command = std::process::Command::new(qbill_tests::qbill_binary());
        command
            .args(["admin", "move-account", "--provider-id", "1"])
            .args(["--account-number", number])
            .envs(qbill_tests::database_env(&self.db.url, &self.db.admin_url));
        if let Some(to) = to {
            command.args(["--to-apartment", &to.to_string()]);
        }
        let output = command.output().expect("qbill runs");
        assert!(output.status.success(), "{output:?}");
        serde_json::from_slice(&output.stdout).expect("a JSON line")
    }
}

/// A bill of Northwind's for `account`.
fn bill(external_id: &str, account: &str) -> Value {
    json!({
        "external_id": external_id, "account_number": account, "address": "3 Quay Lane, Flat 5",
        "utility": "electricity", "period_start": "2026-11-01", "period_end": "2026-11-30",
        "due_date": "2026-12-20", "amount": "12.30", "currency": "EUR",
    })
}

#[tokio::test]
async fn failures_older_than_the_window_neither_count_nor_stay() {
    let f = Fixture::new().await;
    f.db.pool
        .get()
        .await
        .unwrap()
        .execute(
            "INSERT INTO link_failures (user_id, failed_at)
             SELECT 1, now() - interval '16 minutes' FROM generate_series(1, 5)",
            &[],
        )
        .await
        .unwrap();
    let wrong = f.link(DEMO, attempt("AAAA-BBBB-CCCC")).await;
    assert_eq!(error_code(&wrong), "not_found", "{wrong}");
    assert_eq!(
        f.db.count("SELECT count(*) FROM link_failures WHERE user_id = 1", &[])
            .await,
        1,
        "the five old failures are gone, the new one counts"
    );
    let linked = f.link(DEMO, attempt("nwnd demo 2026")).await;
    assert_eq!(linked["status"], "ok", "{linked}");
    assert_eq!(
        linked["data"]["apartment"]["address"],
        "3 Quay Lane, Flat 5"
    );
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM bills WHERE id IN (9001, 9002) AND apartment_id = $1",
            &[&linked["data"]["apartment"]["id"].as_i64().unwrap()]
        )
        .await,
        2,
        "the account's bills came with it"
    );
}

#[tokio::test]
async fn a_code_links_once_and_another_household_with_it_gets_what_a_wrong_code_gets() {
    let f = Fixture::new().await;
    let first = f.link(DEMO2, attempt("NWND-DEMO-2026")).await;
    assert_eq!(first["status"], "ok", "{first}");
    let apartment = first["data"]["apartment"]["id"].as_i64().unwrap();

    let wrong = f
        .link(
            DEMO,
            json!({ "provider_id": 1, "account_number": "NO-SUCH-ACCOUNT", "activation_code": "NWND-DEMO-2026" }),
        )
        .await;
    let attempt_id = Uuid::new_v4();
    let taken = f.link_as(attempt_id, DEMO, attempt("NWND-DEMO-2026")).await;
    assert_eq!(error_code(&taken), "not_found", "{taken}");
    assert_eq!(
        taken["error"], wrong["error"],
        "the same answer as no account"
    );
    // Redelivered: counted again, told once.
    let again = f.link_as(attempt_id, DEMO, attempt("NWND-DEMO-2026")).await;
    assert_eq!(again["error"], wrong["error"]);
    assert_eq!(
        f.db.count("SELECT count(*) FROM link_failures WHERE user_id = 1", &[])
            .await,
        3,
        "each attempt counts as a failure"
    );

    // The account stays where it was, with its bills.
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM service_accounts WHERE id = 1 AND apartment_id = $1",
            &[&apartment]
        )
        .await,
        1
    );
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM bills WHERE account_id = 1 AND apartment_id = $1",
            &[&apartment]
        )
        .await,
        2,
        "9001 and 9002 stay with demo2"
    );
    // Its owner is told, once per attempt (demo2 has no verified address: the inbox only).
    let told =
        f.db.pool
            .get()
            .await
            .unwrap()
            .query(
                "SELECT data FROM notifications WHERE user_id = 2 AND event = 'account.security'",
                &[],
            )
            .await
            .unwrap();
    assert_eq!(
        told.len(),
        1,
        "once for the attempt and its redelivery: {told:?}"
    );
    let data: Value = told[0].get(0);
    assert_eq!(data["change"], "link_attempt");
    assert_eq!(data["provider"], "Northwind Energy");
    assert_eq!(data["account_number"], "NW-20417");
    let inbox = f
        .ask("notifications", Some(1), Some(&f.token(DEMO2)), json!({}))
        .await;
    let body = inbox["data"]["notifications"][0]["body"]
        .as_str()
        .unwrap_or_default();
    assert!(
        body.contains("Someone tried to link your Northwind Energy account NW-20417")
            && body.contains("It stays linked to yours"),
        "{inbox}"
    );
    // The one who tried is told nothing.
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM notifications WHERE user_id = 1 AND event = 'account.security'",
            &[]
        )
        .await,
        0
    );
}

#[tokio::test]
async fn a_repeat_of_a_link_gets_its_reply_though_the_code_is_spent() {
    let f = Fixture::new().await;
    let request = Uuid::new_v4();
    let first = f.link_as(request, DEMO2, attempt("NWND-DEMO-2026")).await;
    assert_eq!(first["status"], "ok", "{first}");
    let repeat = f.link_as(request, DEMO2, attempt("NWND-DEMO-2026")).await;
    assert_eq!(repeat, first);
    assert_eq!(
        f.db.count("SELECT count(*) FROM link_failures", &[]).await,
        0
    );
}

#[tokio::test]
async fn the_next_ingest_carries_a_rotated_code_once_which_links_only_once_the_operator_unlinks() {
    let f = Fixture::new().await;
    let linked = f.link(DEMO2, attempt("NWND-DEMO-2026")).await;
    let old_apartment = linked["data"]["apartment"]["id"].as_i64().unwrap();

    // The link spent the code: Northwind's next batch naming the account carries a new one.
    let next = f.ingest(json!([bill("NW-ROT-1", "NW-20417")])).await;
    assert_eq!(next["data"]["new_accounts"], json!([]), "{next}");
    let rotated = next["data"]["rotated_codes"].as_array().unwrap();
    assert_eq!(rotated.len(), 1, "{next}");
    assert_eq!(rotated[0]["account_number"], "NW-20417");
    let code = rotated[0]["activation_code"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 14, "XXXX-XXXX-XXXX: {code}");
    assert_ne!(code, "NWND-DEMO-2026");
    // Once: the batch after it does not repeat it.
    let after = f.ingest(json!([bill("NW-ROT-1", "NW-20417")])).await;
    assert_eq!(after["data"]["rotated_codes"], json!([]), "{after}");
    assert_eq!(after["data"]["bills"][0]["status"], "unchanged");

    // While the account is linked, even its current code links nothing.
    let refused = f.link(DEMO, attempt(&code)).await;
    assert_eq!(error_code(&refused), "not_found", "{refused}");
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM service_accounts WHERE id = 1 AND apartment_id = $1",
            &[&old_apartment]
        )
        .await,
        1
    );

    // The operator unlinks it: that voids the code too, and the next batch carries a new one.
    let unlinked = f.move_account("NW-20417", None);
    assert_eq!(unlinked["outcome"], "unlinked", "{unlinked}");
    let refused = f.link(DEMO, attempt(&code)).await;
    assert_eq!(error_code(&refused), "not_found", "{refused}");
    let later = f.ingest(json!([bill("NW-ROT-2", "NW-20417")])).await;
    let code = later["data"]["rotated_codes"][0]["activation_code"]
        .as_str()
        .unwrap_or_else(|| panic!("{later}"))
        .to_owned();
    let moved = f.link(DEMO, attempt(&code)).await;
    assert_eq!(moved["status"], "ok", "{moved}");
    let new_apartment = moved["data"]["apartment"]["id"].as_i64().unwrap();
    assert_ne!(new_apartment, old_apartment);

    // The bills that came before the unlink stay with demo2; the one after is demo's.
    let bills_of = |apartment: i64| {
        let pool = f.db.pool.clone();
        async move {
            let rows = pool
                .get()
                .await
                .unwrap()
                .query(
                    "SELECT coalesce(external_id, id::text) FROM bills WHERE account_id = 1 AND apartment_id = $1 ORDER BY 1",
                    &[&apartment],
                )
                .await
                .unwrap();
            rows.iter().map(|r| r.get(0)).collect::<Vec<String>>()
        }
    };
    assert_eq!(
        bills_of(old_apartment).await,
        ["9002", "NW-INV-9001", "NW-ROT-1"]
    );
    assert_eq!(bills_of(new_apartment).await, ["NW-ROT-2"]);
}

#[tokio::test]
async fn an_ingest_keeps_no_code_in_its_stored_reply_and_its_repeat_gives_the_same_code_while_it_works()
 {
    let f = Fixture::new().await;
    let request = Uuid::new_v4();
    let first = f
        .ingest_as(request, json!([bill("NW-NEW-1", "NW-30001")]))
        .await;
    let code = first["data"]["new_accounts"][0]["activation_code"]
        .as_str()
        .unwrap_or_else(|| panic!("{first}"))
        .to_owned();
    let stored: String =
        f.db.pool
            .get()
            .await
            .unwrap()
            .query_one(
                "SELECT reply::text FROM processed_requests WHERE request_id = $1",
                &[&request],
            )
            .await
            .unwrap()
            .get(0);
    let bare: String = code.chars().filter(|c| *c != '-').collect();
    for part in [code.as_str(), &bare, &code[..4], &code[5..9], &code[10..]] {
        assert!(
            !stored.contains(part),
            "{part} in the stored reply: {stored}"
        );
    }
    let stored_hash = f
        .db
        .count(
            "SELECT count(*) FROM service_accounts WHERE account_number = 'NW-30001' AND activation_code_hash IS NOT NULL",
            &[],
        )
        .await;
    assert_eq!(stored_hash, 1);

    // A repeat derives the same code again.
    let repeat = f
        .ingest_as(request, json!([bill("NW-NEW-1", "NW-30001")]))
        .await;
    assert_eq!(repeat, first);

    // Once the code is used, a repeat gives it no more, and says why.
    let linked = f
        .link(
            DEMO,
            json!({ "provider_id": 1, "account_number": "NW-30001", "activation_code": code }),
        )
        .await;
    assert_eq!(linked["status"], "ok", "{linked}");
    let late = f
        .ingest_as(request, json!([bill("NW-NEW-1", "NW-30001")]))
        .await;
    assert_eq!(late["data"]["bills"], first["data"]["bills"]);
    assert_eq!(
        late["data"]["new_accounts"][0]["account_number"],
        "NW-30001"
    );
    assert_eq!(
        late["data"]["new_accounts"][0]["activation_code"],
        Value::Null,
        "{late}"
    );
    assert!(
        late["data"]["new_accounts"][0]["note"].is_string(),
        "{late}"
    );
}
