//! Notifications against real Postgres and LocalStack's SES: recording (`notify()`, keys,
//! preferences), the outbox's senders (one mail per event, retries, backoff, dead mails, leases)
//! and the jobs that record bill events (due soon, overdue).
//!
//! LocalStack keeps every mail it ever sent, so each test mails fresh addresses of its own. A
//! sender whose From address SES has not verified fails for real: LocalStack refuses it.

use std::collections::{BTreeSet, HashSet};

use qbill_core::jobs::{due_soon, notify as sender, overdue};
use qbill_core::mail::MailConfig;
use qbill_core::notify::outbox::{LEASE, MAX_ATTEMPTS, backoff};
use qbill_core::notify::{self, Event};
use qbill_core::services::Services;
use qbill_core::types::UserId;
use qbill_tests::{TestDb, count, engine, engine_on, mails_to};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{DEMO, DEMO2, Fixture};

/// A From address the local SES has not verified: every send is refused.
const UNVERIFIED_FROM: &str = "qbill <unverified@nowhere.test>";

/// An address no test has mailed before.
fn fresh_address() -> String {
    format!("n-{}@example.test", Uuid::new_v4().simple())
}

/// Gives `user` the address `email`, verified or not.
async fn set_email(db: &TestDb, user: i64, email: &str, verified: bool) {
    db.pool
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE users SET email = $2, email_verified = $3 WHERE id = $1",
            &[&user, &email, &verified],
        )
        .await
        .unwrap();
}

/// Services that mail through the local SES as the verified sender.
fn mailing(db: &TestDb) -> Services {
    engine(db, None).services
}

/// Services whose every mail SES refuses.
fn refused(db: &TestDb) -> Services {
    engine(db, None).services.with_mail(MailConfig {
        from: UNVERIFIED_FROM.into(),
        ..MailConfig::default()
    })
}

async fn execute(db: &TestDb, sql: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) {
    db.pool
        .get()
        .await
        .unwrap()
        .execute(sql, params)
        .await
        .unwrap();
}

/// What a `bill.created` template needs, with a provider named after `n` so each subject differs.
fn bill_data(n: i64) -> Value {
    json!({ "bill_id": 100_000 + n, "apartment_id": 1, "provider": format!("Provider {n:04}"),
            "utility": "gas", "amount": "12.34", "currency": "EUR", "due_date": "2026-12-20",
            "late_fee_of": null, "days": 20 })
}

/// Records a `bill.created` for `user` under `key`, as `notify()` does for any change; returns
/// the outbox id when it is to be mailed.
async fn record_bill_created(db: &TestDb, user: i64, key: &str, n: i64) -> Option<i64> {
    db.pool
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT notify($1, 'bill.created', $2, $3)",
            &[&user, &key, &bill_data(n)],
        )
        .await
        .unwrap()
        .get(0)
}

fn subjects(mails: &[Value]) -> Vec<String> {
    mails
        .iter()
        .map(|m| m["Subject"].as_str().expect("a subject").to_owned())
        .collect()
}

/// One outbox row: (mail_status, attempts, seconds until next_attempt_at, last_error, mail_to).
type Outbox = (
    Option<String>,
    i32,
    Option<f64>,
    Option<String>,
    Option<String>,
);

async fn outbox_row(db: &TestDb, id: i64) -> Outbox {
    let row = db
        .pool
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT mail_status, attempts, extract(epoch FROM next_attempt_at - now())::float8,
                    last_error, mail_to
             FROM notifications WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4))
}

#[tokio::test]
async fn two_senders_at_once_mail_each_notification_exactly_once() {
    const N: i64 = 120; // more than one sender's batch, so both keep taking while the other sends
    let db = TestDb::fresh().await;
    let to = fresh_address();
    set_email(&db, DEMO.0, &to, true).await;
    for n in 0..N {
        let id = record_bill_created(&db, DEMO.0, &format!("test:{n}"), n).await;
        assert!(id.is_some(), "a verified address is mailed");
    }
    // Two processes: services of their own over pools of their own, on the same database.
    let other_pool = qbill_core::store::application_pool(&db.url, 8).unwrap();
    let (a, b) = (mailing(&db), engine_on(&other_pool, None).services);

    let (ra, rb) = tokio::join!(sender::run(&a), sender::run(&b));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.sent + rb.sent, N as u64, "{ra:?} {rb:?}");
    println!(
        "reliability: two senders over {N} mails: sent {} and {}, none twice",
        ra.sent, rb.sent
    );
    assert_eq!(
        (ra.failed + rb.failed, ra.dead + rb.dead),
        (0, 0),
        "{ra:?} {rb:?}"
    );

    let mails = mails_to(&to).await;
    assert_eq!(mails.len(), N as usize, "one mail per event, none twice");
    let distinct: HashSet<String> = subjects(&mails).into_iter().collect();
    assert_eq!(distinct.len(), N as usize, "each event's mail once");
    for n in 0..N {
        let provider = format!("Provider {n:04}");
        assert!(
            distinct.iter().any(|s| s.contains(&provider)),
            "no mail for event {n}"
        );
    }
    assert_eq!(
        db.count(
            "SELECT count(*) FROM notifications
             WHERE mail_status = 'sent' AND attempts = 1 AND message_id IS NOT NULL
               AND sent_at IS NOT NULL AND next_attempt_at IS NULL",
            &[]
        )
        .await,
        N,
        "every row sent, each taken by one sender only once"
    );
    assert_eq!(
        db.count("SELECT count(DISTINCT message_id) FROM notifications", &[])
            .await,
        N
    );
    // Nothing is left to send.
    assert_eq!(sender::run(&a).await.unwrap(), sender::Report::default());
}

#[tokio::test]
async fn failing_mails_back_off_die_after_the_last_attempt_and_the_rest_are_sent_later() {
    let db = TestDb::fresh().await;
    let to = fresh_address();
    set_email(&db, DEMO.0, &to, true).await;
    let doomed = record_bill_created(&db, DEMO.0, "test:doomed", 1)
        .await
        .unwrap();
    let later = record_bill_created(&db, DEMO.0, "test:later", 2)
        .await
        .unwrap();
    let (bad, good) = (refused(&db), mailing(&db));

    let first = sender::run(&bad).await.unwrap();
    assert_eq!(
        first,
        sender::Report {
            sent: 0,
            failed: 2,
            dead: 0,
            ..Default::default()
        }
    );
    let wait = backoff(1).as_secs_f64();
    for id in [doomed, later] {
        let (status, attempts, due_in, error, _) = outbox_row(&db, id).await;
        assert_eq!(status.as_deref(), Some("pending"));
        assert_eq!(attempts, 1);
        let due_in = due_in.expect("a next attempt");
        assert!(
            due_in > wait - 10.0 && due_in <= wait + 1.0,
            "the next attempt is one backoff away: {due_in} s"
        );
        let error = error.expect("the error is kept");
        assert!(error.contains("MessageRejected"), "{error}");
    }
    assert_eq!(
        sender::run(&bad).await.unwrap(),
        sender::Report::default(),
        "nothing is due before its backoff ran out"
    );

    // The doomed mail's last attempt fails too: it is dead, and listed.
    execute(
        &db,
        "UPDATE notifications SET attempts = $2, next_attempt_at = now() WHERE id = $1",
        &[&doomed, &(MAX_ATTEMPTS - 1)],
    )
    .await;
    let last = sender::run(&bad).await.unwrap();
    assert_eq!(
        last,
        sender::Report {
            sent: 0,
            failed: 0,
            dead: 1,
            ..Default::default()
        }
    );
    let (status, attempts, _, _, _) = outbox_row(&db, doomed).await;
    assert_eq!((status.as_deref(), attempts), (Some("dead"), MAX_ATTEMPTS));
    let failed = sender::failed(&db.pool, 10).await.unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(
        (
            failed[0].id,
            failed[0].user_id,
            failed[0].event.as_str(),
            failed[0].attempts
        ),
        (doomed, DEMO.0, "bill.created", MAX_ATTEMPTS)
    );
    assert!(
        failed[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("MessageRejected")),
        "{failed:?}"
    );
    // A dead mail is not tried again, even by a sender that works.
    assert_eq!(
        sender::run(&good).await.unwrap(),
        sender::Report::default(),
        "the other mail is still backing off, the dead one is never taken"
    );
    assert!(mails_to(&to).await.is_empty(), "nothing was mailed yet");

    // Once its next attempt is due, a working sender delivers the mail that kept failing.
    execute(
        &db,
        "UPDATE notifications SET next_attempt_at = now() WHERE id = $1",
        &[&later],
    )
    .await;
    assert_eq!(
        sender::run(&good).await.unwrap(),
        sender::Report {
            sent: 1,
            failed: 0,
            dead: 0,
            ..Default::default()
        }
    );
    let (status, attempts, due_in, error, _) = outbox_row(&db, later).await;
    assert_eq!(
        (status.as_deref(), attempts, due_in, error),
        (Some("sent"), 2, None, None)
    );
    let mails = mails_to(&to).await;
    assert_eq!(mails.len(), 1, "only the recovered mail");
    assert!(subjects(&mails)[0].contains("Provider 0002"), "{mails:?}");
    assert_eq!(
        outbox_row(&db, doomed).await.0.as_deref(),
        Some("dead"),
        "the dead mail stays dead"
    );
}

#[tokio::test]
async fn a_mail_left_sending_by_a_sender_that_died_goes_again_once_its_lease_runs_out() {
    let db = TestDb::fresh().await;
    let to = fresh_address();
    set_email(&db, DEMO.0, &to, true).await;
    let id = record_bill_created(&db, DEMO.0, "test:leased", 7)
        .await
        .unwrap();
    // As a sender leaves it when it dies after taking the mail.
    execute(
        &db,
        "UPDATE notifications SET mail_status = 'sending', attempts = 1,
                next_attempt_at = now() + make_interval(secs => $2) WHERE id = $1",
        &[&id, &LEASE.as_secs_f64()],
    )
    .await;
    let good = mailing(&db);
    assert_eq!(
        sender::run(&good).await.unwrap(),
        sender::Report::default(),
        "a leased mail is another sender's"
    );
    execute(
        &db,
        "UPDATE notifications SET next_attempt_at = now() - interval '1 second' WHERE id = $1",
        &[&id],
    )
    .await;
    assert_eq!(sender::run(&good).await.unwrap().sent, 1);
    let (status, attempts, _, _, _) = outbox_row(&db, id).await;
    assert_eq!((status.as_deref(), attempts), (Some("sent"), 2));
    assert_eq!(mails_to(&to).await.len(), 1);
}

#[tokio::test]
async fn the_same_key_recorded_again_records_nothing_new() {
    let db = TestDb::fresh().await;
    set_email(&db, DEMO.0, &fresh_address(), true).await;
    let mut client = db.pool.get().await.unwrap();
    let mut recorded = Vec::new();
    for attempt in 0..2 {
        let tx = client.transaction().await.unwrap();
        recorded.push(
            notify::record(
                &tx,
                UserId(DEMO.0),
                Event::AccountSecurity,
                "account.security:retried",
                &json!({ "change": "password_changed", "at": "2026-11-30T10:00:00Z", "attempt": attempt }),
                None,
            )
            .await
            .unwrap(),
        );
        tx.commit().await.unwrap();
    }
    assert!(recorded[0].is_some(), "the first is mailed");
    assert_eq!(recorded[1], None, "the retry has nothing to mail");
    let attempts: Vec<i64> = client
        .query(
            "SELECT (data->>'attempt')::bigint FROM notifications WHERE key = 'account.security:retried'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(attempts, vec![0], "one row, as first recorded");

    // Two transactions recording the same bill events at once: one row per owner.
    let record = || async {
        let mut client = db.pool.get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        let mails = notify::bills(&tx, Event::BillCreated, &[1081, 1082])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        mails.len()
    };
    let (a, b) = tokio::join!(record(), record());
    assert_eq!(a + b, 2, "each bill's mail recorded once");
    assert_eq!(record().await, 0, "and not again later");
    assert_eq!(
        db.count(
            "SELECT count(*) FROM notifications WHERE event = 'bill.created'",
            &[]
        )
        .await,
        2
    );
}

#[tokio::test]
async fn a_retried_payment_request_records_one_receipt() {
    let f = Fixture::new().await;
    let request = Uuid::new_v4();
    for _ in 0..2 {
        let reply = f
            .ask_as(
                request,
                "payments",
                Some(1),
                Some(&f.token(DEMO)),
                json!({ "bills_id": [1081] }),
            )
            .await;
        assert_eq!(reply["status"], "ok", "{reply}");
    }
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM notifications WHERE event = 'payment.succeeded' AND user_id = $1",
            &[&DEMO.0]
        )
        .await,
        1
    );
}

#[tokio::test]
async fn preferences_decide_inbox_and_mail_but_security_mail_cannot_be_turned_off() {
    let db = TestDb::fresh().await;
    let (verified, unverified) = (fresh_address(), fresh_address());
    set_email(&db, DEMO.0, &verified, true).await;
    set_email(&db, DEMO2.0, &unverified, false).await;
    execute(
        &db,
        "UPDATE users SET notification_preferences = $2 WHERE id = $1",
        &[
            &DEMO.0,
            &json!({ "bill.created": { "email": false },
                     "bill.due_soon": { "email": false, "inbox": false },
                     "account.security": { "email": false, "inbox": false } }),
        ],
    )
    .await;
    let mut client = db.pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    // Demo owns apartment 1 (bill 1081), demo2 apartment 3 (bill 3081).
    let created = notify::bills(&tx, Event::BillCreated, &[1081, 3081])
        .await
        .unwrap();
    let due_soon = notify::bills(&tx, Event::BillDueSoon, &[1082])
        .await
        .unwrap();
    let overdue = notify::bills(&tx, Event::BillOverdue, &[1083, 3083])
        .await
        .unwrap();
    let security = notify::record(
        &tx,
        UserId(DEMO.0),
        Event::AccountSecurity,
        "account.security:test",
        &notify::security("password_changed"),
        None,
    )
    .await
    .unwrap();
    let verify = notify::record(
        &tx,
        UserId(DEMO2.0),
        Event::VerifyEmail,
        "account.verify_email:test",
        &json!({ "nonce": Uuid::new_v4().to_string(), "username": DEMO2.1 }),
        Some(&unverified),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert!(
        created.is_empty(),
        "bill.created mail is off, or unverified"
    );
    assert!(due_soon.is_empty());
    assert_eq!(overdue.len(), 1, "only the verified address: {overdue:?}");
    assert!(security.is_some(), "security mail cannot be turned off");
    assert!(
        verify.is_some(),
        "verification mail goes to the address it verifies"
    );

    let rows: BTreeSet<(i64, String, bool, Option<String>)> = client
        .query(
            "SELECT user_id, event, in_inbox, mail_to FROM notifications",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let expected: BTreeSet<(i64, String, bool, Option<String>)> = [
        // Mail off: the inbox only.
        (DEMO.0, "bill.created", true, None),
        // An unverified address gets no bill mail.
        (DEMO2.0, "bill.created", true, None),
        // Both off: no row at all for bill.due_soon.
        (DEMO.0, "bill.overdue", true, Some(verified.clone())),
        (DEMO2.0, "bill.overdue", true, None),
        // Inbox off, mail forced on.
        (DEMO.0, "account.security", false, Some(verified.clone())),
        // The verification mail, never in the inbox.
        (
            DEMO2.0,
            "account.verify_email",
            false,
            Some(unverified.clone()),
        ),
    ]
    .into_iter()
    .map(|(u, e, i, m)| (u, e.to_owned(), i, m))
    .collect();
    assert_eq!(rows, expected);
    assert_eq!(
        db.count("SELECT count(*) FROM notifications", &[]).await,
        expected.len() as i64,
        "no row twice"
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM notifications WHERE mail_to IS NULL AND mail_status IS NOT NULL",
            &[]
        )
        .await,
        0,
        "a row without an address has nothing to send"
    );

    let report = sender::run(&mailing(&db)).await.unwrap();
    assert_eq!(
        report,
        sender::Report {
            sent: 3,
            failed: 0,
            dead: 0,
            ..Default::default()
        }
    );
    let mut to_verified = subjects(&mails_to(&verified).await);
    to_verified.sort();
    assert_eq!(to_verified.len(), 2, "{to_verified:?}");
    assert!(to_verified[0].starts_with("Overdue:"), "{to_verified:?}");
    assert_eq!(to_verified[1], "Your qbill password was changed");
    assert_eq!(
        subjects(&mails_to(&unverified).await),
        vec!["Verify your email address for qbill"]
    );
}

/// Moves every open bill's due date out of the due-soon window but `bill`, which falls due in
/// `days`; makes demo2 a second owner of apartment 1.
async fn one_bill_due_soon(db: &TestDb, bill: i64, days: i32) {
    execute(
        db,
        "UPDATE bills SET due_date = (now() AT TIME ZONE 'UTC')::date + 30 WHERE status = 'open'",
        &[],
    )
    .await;
    execute(
        db,
        "UPDATE bills SET due_date = (now() AT TIME ZONE 'UTC')::date + $2::integer WHERE id = $1 AND status = 'open'",
        &[&bill, &days],
    )
    .await;
    execute(
        db,
        "INSERT INTO apartment_owners (apartment_id, user_id) VALUES (1, $1)",
        &[&DEMO2.0],
    )
    .await;
}

#[tokio::test]
async fn a_bill_due_in_two_days_notifies_each_owner_once_however_often_the_job_runs() {
    let db = TestDb::fresh().await;
    let to = fresh_address();
    set_email(&db, DEMO.0, &to, true).await;
    one_bill_due_soon(&db, 1101, 2).await;
    // Not due soon: a paid bill, a bill due in five days, a bill of an account no one linked.
    execute(
        &db,
        "UPDATE bills SET due_date = (now() AT TIME ZONE 'UTC')::date + 1 WHERE id IN (1071, 9002)",
        &[],
    )
    .await;
    execute(
        &db,
        "UPDATE bills SET due_date = (now() AT TIME ZONE 'UTC')::date + 5 WHERE id = 1102",
        &[],
    )
    .await;
    execute(&db, "UPDATE bills SET status = 'open' WHERE id = 9002", &[]).await;

    let (a, b) = tokio::join!(due_soon::run(&db.pool), due_soon::run(&db.pool));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        a.mails + b.mails,
        1,
        "one mail, to the owner with a verified address: {a:?} {b:?}"
    );
    assert!(a.bills >= 1 && b.bills >= 1, "{a:?} {b:?}");
    let again = due_soon::run(&db.pool).await.unwrap();
    assert_eq!(
        again,
        due_soon::Report { bills: 1, mails: 0 },
        "seen again, recorded nothing"
    );

    let rows: Vec<(i64, i64, Option<String>, i64)> = db
        .pool
        .get()
        .await
        .unwrap()
        .query(
            "SELECT user_id, (data->>'bill_id')::bigint, mail_to, (data->>'days')::bigint
             FROM notifications WHERE event = 'bill.due_soon' ORDER BY user_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        rows,
        vec![
            (DEMO.0, 1101, Some(to.clone()), 2),
            (DEMO2.0, 1101, None, 2)
        ]
    );
    assert_eq!(
        db.count("SELECT count(*) FROM notifications", &[]).await,
        2,
        "nothing for the other bills"
    );

    let sent = sender::run(&mailing(&db)).await.unwrap();
    assert_eq!(sent.sent, 1);
    let mails = mails_to(&to).await;
    assert_eq!(mails.len(), 1);
    assert!(
        subjects(&mails)[0].starts_with("Your gas bill of"),
        "{mails:?}"
    );
}

#[tokio::test]
async fn the_overdue_job_tells_each_owner_of_each_overdue_bill_and_late_fee_once() {
    let db = TestDb::fresh().await;
    let pool = &db.pool;
    let to = fresh_address();
    set_email(&db, DEMO.0, &to, true).await;
    // Whatever today is, Northwind's gas bill 1081 is past its grace, with a fee to charge.
    execute(
        &db,
        "UPDATE bills SET due_date = (now() AT TIME ZONE 'UTC')::date - 30 WHERE id = 1081",
        &[],
    )
    .await;
    let pairs = |sql: &'static str| async move {
        let rows = pool.get().await.unwrap().query(sql, &[]).await.unwrap();
        rows.iter()
            .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1)))
            .collect::<BTreeSet<(i64, i64)>>()
    };
    // (bill, owner) of every open bill past its grace, before the job.
    let past_grace: BTreeSet<(i64, i64)> = pairs(
        "SELECT b.id, o.user_id FROM bills b JOIN providers p ON p.id = b.provider_id
         JOIN apartment_owners o ON o.apartment_id = b.apartment_id
         WHERE b.status = 'open' AND b.due_date + p.grace_days < (now() AT TIME ZONE 'UTC')::date",
    )
    .await;
    assert!(past_grace.contains(&(1081, DEMO.0)), "{past_grace:?}");

    let report = overdue::run(pool).await.unwrap();
    assert!(report.fees > 0, "{report:?}");
    assert_eq!(
        pairs("SELECT (data->>'bill_id')::bigint, user_id FROM notifications WHERE event = 'bill.overdue'")
            .await,
        past_grace
    );
    let fees: BTreeSet<(i64, i64)> = pairs(
        "SELECT fee.id, o.user_id FROM bills fee JOIN apartment_owners o ON o.apartment_id = fee.apartment_id
         WHERE fee.late_fee_of IS NOT NULL AND fee.id <> 9002",
    )
    .await;
    assert!(!fees.is_empty());
    assert_eq!(
        pairs("SELECT (data->>'bill_id')::bigint, user_id FROM notifications WHERE event = 'late_fee.created'")
            .await,
        fees
    );
    let on_1081 = db
        .count(
            "SELECT count(*) FROM notifications n JOIN bills fee ON fee.id = (n.data->>'bill_id')::bigint
             WHERE n.event = 'late_fee.created' AND fee.late_fee_of = 1081 AND n.user_id = $1
               AND (n.data->>'late_fee_of')::bigint = 1081",
            &[&DEMO.0],
        )
        .await;
    assert_eq!(on_1081, 1, "the fee on 1081 names its bill");

    let total = db.count("SELECT count(*) FROM notifications", &[]).await;
    assert_eq!(total, (past_grace.len() + fees.len()) as i64);
    overdue::run(pool).await.unwrap();
    assert_eq!(
        db.count("SELECT count(*) FROM notifications", &[]).await,
        total,
        "a second run tells no one twice"
    );

    // Demo's are mailed; demo2 has no address and reads them in the inbox.
    let demo_rows = count(
        pool,
        "SELECT count(*) FROM notifications WHERE user_id = $1 AND mail_to = $2 AND in_inbox",
        &[&DEMO.0, &to],
    )
    .await;
    let demo2_rows = count(
        pool,
        "SELECT count(*) FROM notifications WHERE user_id = $1 AND mail_to IS NULL AND in_inbox",
        &[&DEMO2.0],
    )
    .await;
    assert_eq!(demo_rows + demo2_rows, total);
    assert!(demo2_rows > 0);
    let sent = sender::run(&mailing(&db)).await.unwrap();
    assert_eq!(sent.sent, demo_rows as u64, "{sent:?}");
    let mails = qbill_tests::wait_for_mails(&to, demo_rows as usize).await;
    let subjects = subjects(&mails);
    assert_eq!(subjects.len(), demo_rows as usize);
    assert!(subjects.iter().any(|s| s.starts_with("Overdue: ")));
    assert!(subjects.iter().any(|s| s.starts_with("Late fee of ")));
    // No mail waits for a sender any more.
    assert_eq!(
        db.count(
            "SELECT count(*) FROM notifications WHERE mail_status IN ('pending', 'sending')",
            &[]
        )
        .await,
        0
    );
}
