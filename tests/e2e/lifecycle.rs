//! Bills from providers through the gateway: operators add providers and users, providers send
//! and void bills and set their policy, households link accounts and see and pay their bills;
//! each role refused where it does not belong, and bad input changing nothing.

use qbill::client::GatewayClient;
use qbill_tests::{count, db_pool};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{REPLY_TIMEOUT, served};

/// A logged-in client.
pub(crate) struct Session {
    pub(crate) client: GatewayClient,
}

impl Session {
    pub(crate) async fn login(username: &str, password: &str) -> Self {
        let mut client = GatewayClient::new(&served().gateway, Uuid::new_v4());
        let reply = client
            .auth(username, password, REPLY_TIMEOUT)
            .await
            .unwrap();
        assert_eq!(reply["status"], "ok", "{username}: {reply}");
        Self { client }
    }

    pub(crate) async fn ask(&mut self, path: &str, body: Value) -> Value {
        self.ask_as(path, Uuid::new_v4(), body).await
    }

    pub(crate) async fn ask_as(&mut self, path: &str, request_id: Uuid, body: Value) -> Value {
        self.client
            .request(path, request_id, body, REPLY_TIMEOUT)
            .await
            .unwrap()
    }
}

pub(crate) fn error(reply: &Value) -> &str {
    reply["error"]["code"].as_str().unwrap_or("")
}

pub(crate) fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &Uuid::new_v4().simple().to_string()[..10])
}

/// A provider of its own, created by the demo operator, and its user's session.
pub(crate) async fn new_provider(ops: &mut Session) -> (i64, Session) {
    let username = unique("prov");
    let reply = ops
        .ask(
            "/providers",
            json!({ "name": unique("Provider"), "currency": "EUR", "username": username,
                    "password": "provider-password" }),
        )
        .await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(reply["kind"], "provider");
    let provider = reply["data"]["provider_id"].as_i64().unwrap();
    (
        provider,
        Session::login(&username, "provider-password").await,
    )
}

/// A household of its own, created by the demo operator.
async fn new_household(ops: &mut Session) -> (String, Session) {
    let username = unique("home");
    let reply = ops
        .ask(
            "/users",
            json!({ "username": username, "password": "household-password", "role": "household" }),
        )
        .await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(reply["kind"], "user");
    let session = Session::login(&username, "household-password").await;
    (username, session)
}

pub(crate) fn bill(external_id: &str, account: &str, amount: &str, due: &str) -> Value {
    json!({
        "external_id": external_id, "account_number": account, "address": "1 Test Street",
        "utility": "water", "period_start": "2026-10-01", "period_end": "2026-10-31",
        "due_date": due, "amount": amount, "currency": "EUR",
    })
}

#[tokio::test]
async fn an_operator_adds_providers_and_users_and_a_taken_username_is_a_conflict() {
    let mut ops = Session::login("ops", "ops-password").await;
    let (provider, mut provider_user) = new_provider(&mut ops).await;
    let (username, _) = new_household(&mut ops).await;

    let again = ops
        .ask(
            "/users",
            json!({ "username": username, "password": "another-password", "role": "operator" }),
        )
        .await;
    assert_eq!(error(&again), "conflict", "{again}");
    let second = ops
        .ask(
            "/users",
            json!({ "username": unique("api"), "password": "provider-password",
                    "role": "provider", "provider_id": provider }),
        )
        .await;
    assert_eq!(second["data"]["provider_id"], provider, "{second}");
    assert_eq!(second["data"]["role"], "provider");

    // A request sent again with its request_id gets the same reply, and creates nobody twice;
    // the same request_id with another request is refused.
    let request_id = Uuid::new_v4();
    let body = json!({ "username": unique("again"), "password": "household-password", "role": "household" });
    let first = ops.ask_as("/users", request_id, body.clone()).await;
    let repeat = ops.ask_as("/users", request_id, body).await;
    assert_eq!(first["data"], repeat["data"], "{first} {repeat}");
    let other = ops
        .ask_as(
            "/users",
            request_id,
            json!({ "username": unique("other"), "password": "household-password", "role": "household" }),
        )
        .await;
    assert_eq!(error(&other), "conflict", "{other}");

    // The provider's token says whom it acts for: its own policy, not another's.
    let own = provider_user
        .ask(
            &format!("/providers/{provider}/policy"),
            json!({ "grace_days": 3, "late_fee": null }),
        )
        .await;
    assert_eq!(own["status"], "ok", "{own}");
    assert_eq!(own["kind"], "policy");
    let other = provider_user
        .ask(
            "/providers/1/policy",
            json!({ "grace_days": 3, "late_fee": null }),
        )
        .await;
    assert_eq!(error(&other), "forbidden", "{other}");
}

#[tokio::test]
async fn every_route_refuses_the_roles_it_does_not_take() {
    let mut ops = Session::login("ops", "ops-password").await;
    let mut household = Session::login("demo2", "demo2-password").await;
    let mut provider = Session::login("northwind", "northwind-password").await;
    let batch = json!({ "bills": [bill(&unique("x"), "ACC-1", "10.00", "2026-12-01")] });
    let policy = json!({ "grace_days": 0, "late_fee": null });
    let void = json!({ "reason": "test" });

    for (path, body) in [
        (
            "/providers",
            json!({ "name": "X", "currency": "EUR", "username": "xprov", "password": "provider-password" }),
        ),
        (
            "/users",
            json!({ "username": "xuser", "password": "household-password", "role": "household" }),
        ),
        ("/providers/1/bills", batch.clone()),
        ("/providers/1/bills/9001/void", void.clone()),
        ("/providers/1/policy", policy.clone()),
    ] {
        let reply = household.ask(path, body).await;
        assert_eq!(error(&reply), "forbidden", "a household on {path}: {reply}");
    }
    for (path, body) in [
        ("/apartments/1/utils", json!({})),
        ("/apartments/1/histories", json!({})),
        ("/apartments/1/payments", json!({ "bills_id": [1081] })),
        ("/apartments/1/bills/1081", json!({})),
        (
            "/apartments/link",
            json!({ "provider_id": 1, "account_number": "NW-20417", "activation_code": "NWND-DEMO-2026" }),
        ),
        (
            "/users",
            json!({ "username": "xuser", "password": "household-password", "role": "household" }),
        ),
    ] {
        let reply = provider.ask(path, body).await;
        assert_eq!(error(&reply), "forbidden", "a provider on {path}: {reply}");
    }
    // Another provider's id in the path.
    for (path, body) in [
        ("/providers/2/bills", batch.clone()),
        ("/providers/2/bills/1083/void", void.clone()),
        ("/providers/2/policy", policy.clone()),
    ] {
        let reply = provider.ask(path, body).await;
        assert_eq!(error(&reply), "forbidden", "northwind on {path}: {reply}");
    }
    // Operators read any apartment, but never pay or link.
    let utils = ops.ask("/apartments/1/utils", json!({})).await;
    assert_eq!(utils["status"], "ok", "{utils}");
    let detail = ops.ask("/apartments/1/bills/1091", json!({})).await;
    assert_eq!(detail["status"], "ok", "{detail}");
    let pay = ops
        .ask("/apartments/1/payments", json!({ "bills_id": [1081] }))
        .await;
    assert_eq!(error(&pay), "forbidden", "{pay}");
    // A household reads only its own apartment's bills.
    let theirs = household.ask("/apartments/1/bills/1081", json!({})).await;
    assert_eq!(error(&theirs), "forbidden", "{theirs}");
    // An unknown provider.
    let unknown = ops.ask("/providers/999999/policy", policy).await;
    assert_eq!(error(&unknown), "not_found", "{unknown}");
    // No token at all: the gateway refuses it, and nothing reaches a worker.
    let anonymous = GatewayClient::new(&served().gateway, Uuid::new_v4());
    let accepted = anonymous
        .post("/providers/1/bills", Uuid::new_v4(), batch)
        .await
        .unwrap();
    assert_eq!(accepted.status, 400, "{:?}", accepted.body);
}

#[tokio::test]
async fn a_provider_sends_bills_a_household_links_and_pays_and_the_provider_voids() {
    let db = db_pool(&served().admin_url);
    let mut ops = Session::login("ops", "ops-password").await;
    let (provider, mut sender) = new_provider(&mut ops).await;
    let (_, mut home) = new_household(&mut ops).await;
    let path = format!("/providers/{provider}/bills");
    let account = unique("ACC");
    let mut with_lines = bill("INV-1", &account, "30.00", "2026-12-10");
    with_lines["lines"] = json!([
        { "description": "Water", "quantity": "12.5", "unit_price": "2.00", "amount": "25.00" },
        { "description": "Standing charge", "quantity": "1", "unit_price": "5", "amount": "5.00" },
    ]);
    let batch = json!({ "bills": [with_lines, bill("INV-2", &account, "12.40", "2026-12-20"),
                                   bill("INV-3", &account, "7.00", "2027-01-20")] });
    let ingest = sender.ask(&path, batch.clone()).await;
    assert_eq!(ingest["status"], "ok", "{ingest}");
    assert_eq!(ingest["kind"], "bills_ingest");
    let bills: Vec<i64> = ingest["data"]["bills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            assert_eq!(b["status"], "created");
            b["bill_id"].as_i64().unwrap()
        })
        .collect();
    let accounts = ingest["data"]["new_accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 1, "{ingest}");
    assert_eq!(accounts[0]["account_number"], account.as_str());
    let code = accounts[0]["activation_code"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 14, "XXXX-XXXX-XXXX: {code}");

    // The same batch again changes nothing; the same id with other content is refused, and the
    // whole batch with it.
    let again = sender.ask(&path, batch).await;
    assert!(
        again["data"]["bills"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["status"] == "unchanged"),
        "{again}"
    );
    assert_eq!(again["data"]["new_accounts"], json!([]));
    let stored = |db: &deadpool_postgres::Pool| {
        let db = db.clone();
        async move {
            count(
                &db,
                "SELECT count(*) FROM bills WHERE provider_id = $1",
                &[&provider],
            )
            .await
        }
    };
    assert_eq!(stored(&db).await, 3);
    let changed = sender
        .ask(
            &path,
            json!({ "bills": [bill("INV-4", &account, "1.00", "2026-12-01"),
                              bill("INV-2", &account, "99.99", "2026-12-20")] }),
        )
        .await;
    assert_eq!(error(&changed), "conflict", "{changed}");
    assert!(
        changed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("bills[1]"),
        "{changed}"
    );
    assert_eq!(stored(&db).await, 3, "INV-4 was not stored either");

    // The household links the account: a new apartment with the account's address, at once in
    // the login reply, with the bills sent before.
    let link = home
        .ask(
            "/apartments/link",
            json!({ "provider_id": provider, "account_number": account, "activation_code": code.to_lowercase() }),
        )
        .await;
    assert_eq!(link["status"], "ok", "{link}");
    assert_eq!(link["kind"], "apartments_link");
    let apartment = link["data"]["apartment"]["id"].as_i64().unwrap();
    assert_eq!(link["data"]["apartment"]["address"], "1 Test Street");
    let utils = home
        .ask(&format!("/apartments/{apartment}/utils"), json!({}))
        .await;
    assert_eq!(utils["status"], "ok", "{utils}");
    assert_eq!(utils["data"]["bills_count"], 3);
    assert_eq!(utils["data"]["totals"]["total"], "49.40");
    assert_eq!(utils["data"]["bills"][0]["status"], "open");
    assert_eq!(utils["data"]["bills"][0]["days_overdue"], 0);

    // One bill in detail: lines and events.
    let detail = home
        .ask(
            &format!("/apartments/{apartment}/bills/{}", bills[0]),
            json!({}),
        )
        .await;
    assert_eq!(detail["kind"], "bill", "{detail}");
    assert_eq!(detail["data"]["lines"][1]["description"], "Standing charge");
    assert_eq!(detail["data"]["late_fee_of"], Value::Null);
    assert_eq!(detail["data"]["events"][0]["status"], "open");

    // A bill sent after linking is the apartment's at once.
    let later = sender
        .ask(
            &path,
            json!({ "bills": [bill("INV-5", &account, "3.00", "2027-02-20")] }),
        )
        .await;
    assert_eq!(later["status"], "ok", "{later}");
    let utils = home
        .ask(&format!("/apartments/{apartment}/utils"), json!({}))
        .await;
    assert_eq!(utils["data"]["bills_count"], 4, "{utils}");

    // Pay one, the provider voids another: it leaves utils and cannot be paid.
    let paid = home
        .ask(
            &format!("/apartments/{apartment}/payments"),
            json!({ "bills_id": [bills[0]], "payment_method": qbill_tests::test_card().await }),
        )
        .await;
    assert_eq!(paid["status"], "ok", "{paid}");
    assert_eq!(paid["data"]["status"], "succeeded", "{paid}");
    let void_path = format!("/providers/{provider}/bills/{}/void", bills[1]);
    let void = sender
        .ask(&void_path, json!({ "reason": "meter misread" }))
        .await;
    assert_eq!(void["kind"], "bill_void", "{void}");
    assert_eq!(void["data"]["status"], "void");
    let void_again = sender.ask(&void_path, json!({ "reason": "again" })).await;
    assert_eq!(void_again["data"], void["data"], "the same reply");
    let paid_void = sender
        .ask(
            &format!("/providers/{provider}/bills/{}/void", bills[0]),
            json!({ "reason": "too late" }),
        )
        .await;
    assert_eq!(error(&paid_void), "already_paid", "{paid_void}");
    let pay_void = home
        .ask(
            &format!("/apartments/{apartment}/payments"),
            json!({ "bills_id": [bills[1]] }),
        )
        .await;
    assert_eq!(error(&pay_void), "conflict", "{pay_void}");
    let utils = home
        .ask(&format!("/apartments/{apartment}/utils"), json!({}))
        .await;
    let listed: Vec<i64> = utils["data"]["bills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["bill_id"].as_i64().unwrap())
        .collect();
    assert!(
        !listed.contains(&bills[0]) && !listed.contains(&bills[1]),
        "{listed:?}"
    );
    let events: Vec<String> = home
        .ask(
            &format!("/apartments/{apartment}/bills/{}", bills[1]),
            json!({}),
        )
        .await["data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(events, ["open", "void"]);
    // Every change was audited under the request that made it.
    assert!(
        count(
            &db,
            "SELECT count(*) FROM audit_events WHERE entity = 'account' AND action = 'linked'
             AND new_state->>'apartment_id' = $1",
            &[&apartment.to_string()],
        )
        .await
            == 1
    );
}

#[tokio::test]
async fn the_login_reply_lists_a_linked_apartment_at_once() {
    let mut ops = Session::login("ops", "ops-password").await;
    let (provider, mut sender) = new_provider(&mut ops).await;
    let (username, mut home) = new_household(&mut ops).await;
    let account = unique("ACC");
    let ingest = sender
        .ask(
            &format!("/providers/{provider}/bills"),
            json!({ "bills": [bill("L-1", &account, "5.00", "2026-12-01")] }),
        )
        .await;
    let code = ingest["data"]["new_accounts"][0]["activation_code"]
        .as_str()
        .unwrap()
        .to_owned();
    // A first login caches the (empty) apartment list.
    let mut again = GatewayClient::new(&served().gateway, Uuid::new_v4());
    let before = again
        .auth(&username, "household-password", REPLY_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(before["data"]["apartments"], json!([]));
    let link = home
        .ask(
            "/apartments/link",
            json!({ "provider_id": provider, "account_number": account, "activation_code": code }),
        )
        .await;
    let apartment = link["data"]["apartment"]["id"].as_i64().unwrap();
    let after = again
        .auth(&username, "household-password", REPLY_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(after["data"]["apartments"][0]["id"], apartment, "{after}");
}

#[tokio::test]
async fn the_same_batch_sent_twice_at_once_stores_every_bill_once() {
    let db = db_pool(&served().admin_url);
    let mut ops = Session::login("ops", "ops-password").await;
    let username = unique("prov");
    let created = ops
        .ask(
            "/providers",
            json!({ "name": unique("Provider"), "currency": "EUR", "username": username,
                    "password": "provider-password" }),
        )
        .await;
    let provider = created["data"]["provider_id"].as_i64().unwrap();
    // Two sessions of the provider's user, each with its own reply queue.
    let mut first = Session::login(&username, "provider-password").await;
    let mut second = Session::login(&username, "provider-password").await;
    let path = format!("/providers/{provider}/bills");
    let batch = json!({ "bills": (0..40).map(|i| bill(&format!("C-{i:03}"), &format!("ACC-{}", i % 7), "4.20", "2026-12-01")).collect::<Vec<_>>() });
    let (a, b) = tokio::join!(
        first.ask(&path, batch.clone()),
        second.ask(&path, batch.clone())
    );
    let statuses = |r: &Value| -> Vec<String> {
        r["data"]["bills"]
            .as_array()
            .unwrap_or_else(|| panic!("{r}"))
            .iter()
            .map(|b| b["status"].as_str().unwrap().to_owned())
            .collect()
    };
    let (a, b) = (statuses(&a), statuses(&b));
    for i in 0..40 {
        let mut pair = [a[i].as_str(), b[i].as_str()];
        pair.sort_unstable();
        assert_eq!(pair, ["created", "unchanged"], "bill {i}");
    }
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM bills WHERE provider_id = $1",
            &[&provider]
        )
        .await,
        40
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM service_accounts WHERE provider_id = $1",
            &[&provider]
        )
        .await,
        7
    );
}

#[tokio::test]
async fn failed_links_are_throttled_per_user_and_a_wrong_code_looks_like_no_account() {
    let mut ops = Session::login("ops", "ops-password").await;
    let (provider, mut sender) = new_provider(&mut ops).await;
    let (_, mut home) = new_household(&mut ops).await;
    let (_, mut neighbour) = new_household(&mut ops).await;
    let account = unique("ACC");
    let ingest = sender
        .ask(
            &format!("/providers/{provider}/bills"),
            json!({ "bills": [bill("T-1", &account, "5.00", "2026-12-01")] }),
        )
        .await;
    let code = ingest["data"]["new_accounts"][0]["activation_code"]
        .as_str()
        .unwrap()
        .to_owned();
    let attempt = |account: &str, code: &str| json!({ "provider_id": provider, "account_number": account, "activation_code": code });
    let wrong_code = home
        .ask("/apartments/link", attempt(&account, "AAAA-BBBB-CCCC"))
        .await;
    let no_account = home
        .ask("/apartments/link", attempt("NO-SUCH-ACCOUNT", &code))
        .await;
    assert_eq!(error(&wrong_code), "not_found");
    assert_eq!(wrong_code["error"], no_account["error"], "the same answer");
    for _ in 0..3 {
        let reply = home
            .ask("/apartments/link", attempt(&account, "AAAA-BBBB-CCCC"))
            .await;
        assert_eq!(error(&reply), "not_found", "{reply}");
    }
    // Five failures: even the right code waits for the window to pass.
    let locked = home.ask("/apartments/link", attempt(&account, &code)).await;
    assert_eq!(error(&locked), "forbidden", "{locked}");
    assert!(
        locked["error"]["message"]
            .as_str()
            .unwrap()
            .contains("too many"),
        "{locked}"
    );
    // Another user is not held back by them.
    let linked = neighbour
        .ask("/apartments/link", attempt(&account, &code))
        .await;
    assert_eq!(linked["status"], "ok", "{linked}");
}

/// `qbill admin move-account`, the real binary against the pool's database: an account moves
/// between households only by an operator, leaving the bills it had (and their debts) behind.
#[tokio::test]
async fn an_operator_moves_an_account_and_its_earlier_bills_stay_with_the_household_that_had_it() {
    let db = db_pool(&served().admin_url);
    let mut ops = Session::login("ops", "ops-password").await;
    let (provider, mut sender) = new_provider(&mut ops).await;
    let (_, mut first) = new_household(&mut ops).await;
    let (_, mut second) = new_household(&mut ops).await;
    let path = format!("/providers/{provider}/bills");
    let (account, other) = (unique("ACC"), unique("ACC"));
    let ingest = sender
        .ask(
            &path,
            json!({ "bills": [bill("M-1", &account, "20.00", "2026-12-01"),
                              bill("M-2", &other, "5.00", "2026-12-01")] }),
        )
        .await;
    let code = |number: &str| {
        ingest["data"]["new_accounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["account_number"] == number)
            .unwrap_or_else(|| panic!("{ingest}"))["activation_code"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let link = |number: &str, code: String| json!({ "provider_id": provider, "account_number": number, "activation_code": code });
    let from = first
        .ask("/apartments/link", link(&account, code(&account)))
        .await;
    let from = from["data"]["apartment"]["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("{from}"));
    let to = second
        .ask("/apartments/link", link(&other, code(&other)))
        .await;
    let to = to["data"]["apartment"]["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("{to}"));

    let qbill = |args: &[String]| {
        let output = std::process::Command::new(qbill_tests::qbill_binary())
            .args([
                "admin",
                "move-account",
                "--provider-id",
                &provider.to_string(),
            ])
            .args(args)
            .envs(qbill_tests::database_env(
                &served().db_url,
                &served().admin_url,
            ))
            .output()
            .expect("qbill runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.success(), stdout, stderr)
    };
    let to_args = |number: &str, apartment: i64| {
        vec![
            "--account-number".to_owned(),
            number.to_owned(),
            "--to-apartment".to_owned(),
            apartment.to_string(),
        ]
    };
    let (ok, out, err) = qbill(&to_args(&account, to));
    assert!(ok, "{out}{err}");
    let moved: Value = serde_json::from_str(out.trim()).expect("one JSON line");
    assert_eq!(moved["outcome"], "moved", "{moved}");
    assert_eq!(moved["from_apartment"], from);
    assert_eq!(moved["to_apartment"], to);
    let request = moved["request_id"].as_str().unwrap().to_owned();

    // Audited under the command's own request id, as the operator's command.
    let audited = |db: &deadpool_postgres::Pool| {
        let (db, request) = (db.clone(), request.clone());
        async move {
            count(
                &db,
                "SELECT count(*) FROM audit_events WHERE entity = 'account' AND action = 'moved'
                 AND request_id::text = $1 AND actor_user IS NULL
                 AND new_state->>'via' = 'qbill admin move-account'
                 AND (old_state->>'apartment_id')::bigint = $2 AND (new_state->>'apartment_id')::bigint = $3",
                &[&request, &from, &to],
            )
            .await
        }
    };
    assert_eq!(audited(&db).await, 1);

    // Again: nothing changes.
    let (ok, out, err) = qbill(&to_args(&account, to));
    assert!(ok, "{out}{err}");
    let again: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(again["outcome"], "unchanged", "{again}");
    assert_eq!(again["request_id"], Value::Null);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM audit_events WHERE entity = 'account' AND entity_id = $1 AND action = 'moved'",
            &[&moved["account_id"].as_i64().unwrap().to_string()],
        )
        .await,
        1
    );

    // Its bill from before stays with the first household; the next goes to the second, and the
    // provider's reply carries the account's new code.
    let later = sender
        .ask(
            &path,
            json!({ "bills": [bill("M-3", &account, "7.00", "2027-01-01")] }),
        )
        .await;
    assert_eq!(
        later["data"]["rotated_codes"][0]["account_number"],
        account.as_str(),
        "{later}"
    );
    let listed = |reply: &Value| -> Vec<String> {
        reply["data"]["bills"]
            .as_array()
            .unwrap_or_else(|| panic!("{reply}"))
            .iter()
            .map(|b| b["amount"].as_str().unwrap().to_owned())
            .collect()
    };
    let theirs = first
        .ask(&format!("/apartments/{from}/utils"), json!({}))
        .await;
    assert_eq!(listed(&theirs), ["20.00"], "the old debt stays: {theirs}");
    let ours = second
        .ask(&format!("/apartments/{to}/utils"), json!({}))
        .await;
    let mut amounts = listed(&ours);
    amounts.sort();
    assert_eq!(amounts, ["5.00", "7.00"], "{ours}");

    // Refused: what does not exist, and an apartment of another currency.
    let username = unique("prov");
    let dollars = ops
        .ask(
            "/providers",
            json!({ "name": unique("Provider"), "currency": "USD", "username": username,
                    "password": "provider-password" }),
        )
        .await;
    let dollars_provider = dollars["data"]["provider_id"].as_i64().unwrap();
    let mut dollars_sender = Session::login(&username, "provider-password").await;
    let usd_account = unique("ACC");
    let mut usd_bill = bill("U-1", &usd_account, "3.00", "2026-12-01");
    usd_bill["currency"] = json!("USD");
    let usd = dollars_sender
        .ask(
            &format!("/providers/{dollars_provider}/bills"),
            json!({ "bills": [usd_bill] }),
        )
        .await;
    let usd_code = usd["data"]["new_accounts"][0]["activation_code"]
        .as_str()
        .unwrap()
        .to_owned();
    let usd_link = second
        .ask(
            "/apartments/link",
            json!({ "provider_id": dollars_provider, "account_number": usd_account, "activation_code": usd_code }),
        )
        .await;
    let usd_apartment = usd_link["data"]["apartment"]["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("{usd_link}"));
    for (args, says) in [
        (to_args("NO-SUCH-ACCOUNT", to), "has no account"),
        (to_args(&account, 999_999_999), "no apartment 999999999"),
        (to_args(&account, usd_apartment), "billed in USD"),
    ] {
        let (ok, out, err) = qbill(&args);
        assert!(!ok, "{args:?}: {out}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let output = std::process::Command::new(qbill_tests::qbill_binary())
        .args([
            "admin",
            "move-account",
            "--provider-id",
            "999999999",
            "--account-number",
            &account,
        ])
        .envs(qbill_tests::database_env(
            &served().db_url,
            &served().admin_url,
        ))
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no provider 999999999"));
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM service_accounts WHERE provider_id = $1 AND account_number = $2 AND apartment_id = $3",
            &[&provider, &account, &to],
        )
        .await,
        1,
        "the refusals changed nothing"
    );
}

/// The hostile catalogue, grown with the bodies of the provider routes: each case gets the
/// gateway's 400 or the right error reply, and no row changes.
#[tokio::test]
async fn hostile_provider_requests_each_get_the_right_error_and_change_nothing() {
    let db = db_pool(&served().admin_url);
    let mut ops = Session::login("ops", "ops-password").await;
    let (provider, mut sender) = new_provider(&mut ops).await;
    let path = format!("/providers/{provider}/bills");
    let good = |external: &str| bill(external, "H-ACC", "10.00", "2026-12-01");
    let with = |field: &str, value: Value| {
        let mut b = good("H-1");
        b[field] = value;
        json!({ "bills": [b] })
    };
    let lines = |amounts: &[&str]| {
        let mut b = good("H-1");
        b["lines"] = amounts
            .iter()
            .map(|a| json!({ "description": "x", "quantity": "1", "unit_price": "1", "amount": a }))
            .collect();
        json!({ "bills": [b] })
    };
    let state = || {
        let db = db.clone();
        async move {
            [
                count(
                    &db,
                    "SELECT count(*) FROM bills WHERE provider_id = $1",
                    &[&provider],
                )
                .await,
                count(
                    &db,
                    "SELECT count(*) FROM service_accounts WHERE provider_id = $1",
                    &[&provider],
                )
                .await,
                // What the cases named (other tests add providers and users meanwhile).
                count(
                    &db,
                    "SELECT count(*) FROM providers WHERE name = 'Lower' OR name LIKE 'Taken-%'",
                    &[],
                )
                .await,
                count(
                    &db,
                    "SELECT count(*) FROM users WHERE username LIKE 'x-%'",
                    &[],
                )
                .await,
                count(
                    &db,
                    "SELECT count(*) FROM bills WHERE status = 'void' AND provider_id IN (1, $1)",
                    &[&provider],
                )
                .await,
            ]
        }
    };
    let before = state().await;
    let many: Vec<Value> = (0..101).map(|i| good(&format!("M-{i}"))).collect();
    // (what, session: true = provider, false = operator, path, body, expected)
    let cases: Vec<(&str, bool, String, Value, &str)> = vec![
        (
            "a month 13",
            true,
            path.clone(),
            with("due_date", json!("2026-13-01")),
            "invalid_request",
        ),
        (
            "February 30th",
            true,
            path.clone(),
            with("period_end", json!("2026-02-30")),
            "invalid_request",
        ),
        (
            "a date without zeros",
            true,
            path.clone(),
            with("due_date", json!("2026-1-1")),
            "400",
        ),
        (
            "a negative amount",
            true,
            path.clone(),
            with("amount", json!("-5.00")),
            "400",
        ),
        (
            "a zero amount",
            true,
            path.clone(),
            with("amount", json!("0.00")),
            "invalid_request",
        ),
        (
            "an amount with one place",
            true,
            path.clone(),
            with("amount", json!("12.5")),
            "400",
        ),
        (
            "an amount as a number",
            true,
            path.clone(),
            with("amount", json!(12.5)),
            "400",
        ),
        (
            "lines that do not add up",
            true,
            path.clone(),
            lines(&["4.00", "5.00"]),
            "invalid_request",
        ),
        ("six lines", true, path.clone(), lines(&["2.00"; 6]), "400"),
        (
            "101 bills",
            true,
            path.clone(),
            json!({ "bills": many }),
            "400",
        ),
        (
            "no bills",
            true,
            path.clone(),
            json!({ "bills": [] }),
            "400",
        ),
        (
            "a period that ends before it starts",
            true,
            path.clone(),
            with("period_end", json!("2026-09-01")),
            "invalid_request",
        ),
        (
            "another currency than the provider's",
            true,
            path.clone(),
            with("currency", json!("USD")),
            "invalid_request",
        ),
        (
            "an unknown utility",
            true,
            path.clone(),
            with("utility", json!("steam")),
            "invalid_request",
        ),
        (
            "an external id with a space",
            true,
            path.clone(),
            with("external_id", json!("A 1")),
            "400",
        ),
        (
            "an address of 121 characters",
            true,
            path.clone(),
            with("address", json!("a".repeat(121))),
            "400",
        ),
        (
            "an unknown field",
            true,
            path.clone(),
            with("colour", json!("red")),
            "400",
        ),
        (
            "the same external id twice",
            true,
            path.clone(),
            json!({ "bills": [good("D-1"), good("D-1")] }),
            "invalid_request",
        ),
        (
            "another provider's id in the path",
            true,
            "/providers/1/bills".into(),
            json!({ "bills": [good("O-1")] }),
            "forbidden",
        ),
        (
            "an unknown provider",
            false,
            "/providers/999999/bills".into(),
            json!({ "bills": [good("U-1")] }),
            "not_found",
        ),
        (
            "a provider id that is not a number",
            false,
            "/providers/abc/bills".into(),
            json!({ "bills": [good("U-2")] }),
            "invalid_request",
        ),
        (
            "voiding an unknown bill",
            true,
            format!("/providers/{provider}/bills/99999999/void"),
            json!({ "reason": "x" }),
            "not_found",
        ),
        (
            "voiding another provider's bill",
            true,
            format!("/providers/{provider}/bills/1081/void"),
            json!({ "reason": "x" }),
            "not_found",
        ),
        (
            "voiding without a reason",
            true,
            format!("/providers/{provider}/bills/1081/void"),
            json!({ "reason": "" }),
            "400",
        ),
        (
            "negative grace days",
            true,
            format!("/providers/{provider}/policy"),
            json!({ "grace_days": -1, "late_fee": null }),
            "400",
        ),
        (
            "a fee of 150 %",
            true,
            format!("/providers/{provider}/policy"),
            json!({ "grace_days": 1, "late_fee": { "kind": "percent", "value": "150.00" } }),
            "invalid_request",
        ),
        (
            "a fee of an unknown kind",
            true,
            format!("/providers/{provider}/policy"),
            json!({ "grace_days": 1, "late_fee": { "kind": "daily", "value": "1.00" } }),
            "400",
        ),
        (
            "a fee that is a string",
            true,
            format!("/providers/{provider}/policy"),
            json!({ "grace_days": 1, "late_fee": "5%" }),
            "invalid_request",
        ),
        (
            "a user of an unknown role",
            false,
            "/users".into(),
            json!({ "username": "x-admin", "password": "long-enough-password", "role": "admin" }),
            "400",
        ),
        (
            "a provider's user without a provider",
            false,
            "/users".into(),
            json!({ "username": "x-prov", "password": "long-enough-password", "role": "provider" }),
            "invalid_request",
        ),
        (
            "a provider's user of an unknown provider",
            false,
            "/users".into(),
            json!({ "username": "x-prov2", "password": "long-enough-password", "role": "provider", "provider_id": 999999 }),
            "not_found",
        ),
        (
            "a short password",
            false,
            "/users".into(),
            json!({ "username": "x-short", "password": "short", "role": "household" }),
            "400",
        ),
        (
            "a currency in lower case",
            false,
            "/providers".into(),
            json!({ "name": "Lower", "currency": "eur", "username": "x-lower", "password": "long-enough-password" }),
            "400",
        ),
        (
            "a provider name taken",
            false,
            "/providers".into(),
            json!({ "name": "Northwind Energy", "currency": "EUR", "username": "x-taken", "password": "long-enough-password" }),
            "conflict",
        ),
        (
            "a username taken",
            false,
            "/providers".into(),
            json!({ "name": unique("Taken"), "currency": "EUR", "username": "demo", "password": "long-enough-password" }),
            "conflict",
        ),
        (
            "a link code with punctuation",
            false,
            "/apartments/link".into(),
            json!({ "provider_id": 1, "account_number": "NW-20417", "activation_code": "NWND!" }),
            "400",
        ),
    ];
    let mut failures = Vec::new();
    for (what, as_provider, path, body, expect) in &cases {
        let session = if *as_provider { &mut sender } else { &mut ops };
        let request_id = Uuid::new_v4();
        let mut fields = body.clone();
        fields["queue_name"] = json!(session.client.queue());
        fields["request_id"] = json!(request_id);
        let accepted = session
            .client
            .post_raw(path, fields.to_string())
            .await
            .unwrap();
        let got = match accepted.status {
            400 => "400".to_owned(),
            202 => {
                let reply = session
                    .client
                    .wait_for("/replies", request_id, REPLY_TIMEOUT)
                    .await
                    .unwrap();
                error(&reply).to_owned()
            }
            status => format!("HTTP {status}"),
        };
        if got != *expect {
            failures.push(format!("{what}: expected {expect}, got {got}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases went wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(state().await, before, "no row changed");
}

/// The largest valid batch: 100 bills of 5 lines, every text at its bound in 4-byte characters,
/// in compact JSON. It must fit one SQS message, so the gateway enqueues it and a worker stores it.
#[tokio::test]
async fn the_largest_valid_batch_of_bills_fits_one_message_and_is_stored() {
    let db = db_pool(&served().admin_url);
    let mut ops = Session::login("ops", "ops-password").await;
    let (provider, mut sender) = new_provider(&mut ops).await;
    let wide = |chars: usize| "\u{1D11E}".repeat(chars);
    let id = |prefix: &str, i: usize| format!("{prefix}{i:0>width$}", width = 40 - prefix.len());
    let bills: Vec<Value> = (0..100)
        .map(|i| {
            json!({
                "external_id": id("E", i), "account_number": id("A", i), "address": wide(120),
                "utility": "electricity", "period_start": "2026-10-01", "period_end": "2026-10-31",
                "due_date": "2026-11-20", "amount": "500000000000.00", "currency": "EUR",
                "lines": (0..5).map(|_| json!({
                    "description": wide(60), "quantity": "123456789012.123456",
                    "unit_price": "123456789012.123456", "amount": "100000000000.00",
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let request_id = Uuid::new_v4();
    let body =
        json!({ "queue_name": sender.client.queue(), "request_id": request_id, "bills": bills })
            .to_string();
    println!(
        "reliability: largest valid bills_ingest body: {} bytes",
        body.len()
    );
    assert!(
        body.len() > 250_000,
        "the texts are at their bounds: {}",
        body.len()
    );
    assert!(
        body.len() < 256 * 1024 - 2048,
        "room for the attributes: {}",
        body.len()
    );
    let accepted = sender
        .client
        .post_raw(&format!("/providers/{provider}/bills"), body)
        .await
        .unwrap();
    assert_eq!(accepted.status, 202, "{:?}", accepted.body);
    let reply = sender
        .client
        .wait_for("/replies", request_id, REPLY_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(reply["status"], "ok", "{reply:.300}");
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM bills WHERE provider_id = $1",
            &[&provider]
        )
        .await,
        100
    );
}
