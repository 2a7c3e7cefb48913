//! Documents against real Postgres and LocalStack's S3 (which checks presigned links, as
//! `scripts/local-stack` starts it): what the files say, read back with a PDF library and a CSV
//! parser and compared with the database; issued once; refused to whoever may not read them.

use std::collections::BTreeMap;
use std::time::Duration;

use qbill_core::Engine;
use qbill_core::config::DocumentsConfig;
use qbill_tests::{csv_rows, documents_config, download_document, pdf_text};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{DEMO, DEMO2, Fixture, error_code};

/// A statement window well in the past of any test run: the demo set's months.
const FROM: &str = "2026-05-01";
const TO: &str = "2026-10-31";

impl Fixture {
    /// Asks, as `user`, for a document of `apartment`; returns the reply.
    async fn document(&self, user: (i64, &str), apartment: i64, fields: Value) -> Value {
        self.ask("document", Some(apartment), Some(&self.token(user)), fields)
            .await
    }

    /// Like [`Fixture::document`], for a request that must succeed: the reply's data.
    async fn issued(&self, apartment: i64, fields: Value) -> Value {
        let reply = self.document(DEMO, apartment, fields).await;
        assert_eq!(reply["status"], "ok", "{reply}");
        assert_eq!(reply["kind"], "document", "{reply}");
        reply["data"].clone()
    }

    async fn decimal(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Decimal {
        let client = self.db.pool.get().await.unwrap();
        client.query_one(sql, params).await.unwrap().get(0)
    }
}

fn amount(raw: &str) -> Decimal {
    raw.parse()
        .unwrap_or_else(|_| panic!("{raw:?} is not a decimal"))
}

#[tokio::test]
async fn a_receipt_as_pdf_and_csv_carries_the_payment_as_the_database_has_it_and_is_issued_once() {
    let f = Fixture::new().await;
    let paid = f.pay(1, &[1081, 1092]).await;
    assert_eq!(paid["status"], "ok", "{paid}");
    let payment: Uuid = paid["data"]["payment_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let total = f
        .decimal("SELECT total FROM payments WHERE id = $1", &[&payment])
        .await;

    let pdf = f
        .issued(
            1,
            json!({ "kind": "receipt", "format": "pdf", "payment_id": payment }),
        )
        .await;
    assert_eq!(pdf["kind"], "receipt");
    assert_eq!(pdf["format"], "pdf");
    let bytes = download_document(&pdf).await;
    assert!(bytes.starts_with(b"%PDF"), "a PDF file");
    let text = pdf_text(&bytes);
    assert!(
        text.contains(&payment.to_string()),
        "the payment id: {text}"
    );
    assert!(
        text.contains("12 Harbour Street, Flat 3"),
        "the address: {text}"
    );
    let client = f.db.pool.get().await.unwrap();
    for row in client
        .query(
            "SELECT id, amount FROM bills WHERE payment_id = $1",
            &[&payment],
        )
        .await
        .unwrap()
    {
        let (id, amount): (i64, Decimal) = (row.get(0), row.get(1));
        assert!(text.contains(&id.to_string()), "bill {id}: {text}");
        assert!(
            text.contains(&amount.to_string()),
            "bill {id}'s {amount}: {text}"
        );
    }
    assert!(
        text.contains(&total.to_string()),
        "the total {total}: {text}"
    );

    let csv = f
        .issued(
            1,
            json!({ "kind": "receipt", "format": "csv", "payment_id": payment }),
        )
        .await;
    let rows = csv_rows(&download_document(&csv).await);
    assert_eq!(rows.len(), 2, "one row per bill: {rows:?}");
    assert!(rows.iter().all(|r| r["payment_id"] == payment.to_string()));
    let mut ids: Vec<&str> = rows.iter().map(|r| r["bill_id"].as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["1081", "1092"]);
    let sum: Decimal = rows.iter().map(|r| amount(&r["amount"])).sum();
    assert_eq!(sum, total, "the rows add up to the payment");

    // Asked again: the same document, a fresh link.
    let again = f
        .issued(
            1,
            json!({ "kind": "receipt", "format": "pdf", "payment_id": payment }),
        )
        .await;
    assert_eq!(again["document_id"], pdf["document_id"]);
    assert_eq!(again["sha256"], pdf["sha256"]);
    assert_eq!(download_document(&again).await, bytes);
    assert_ne!(pdf["sha256"], csv["sha256"]);
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM documents WHERE subject = $1",
            &[&payment.to_string()]
        )
        .await,
        2,
        "one PDF and one CSV"
    );
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM audit_events WHERE entity = 'document' AND actor_user = 1",
            &[]
        )
        .await,
        2,
        "each issue is audited once"
    );
}

#[tokio::test]
async fn a_statement_csv_balances_for_every_provider_and_matches_the_books() {
    let f = Fixture::new().await;
    let data = f
        .issued(
            1,
            json!({ "kind": "statement", "format": "csv", "from": FROM, "to": TO }),
        )
        .await;
    let rows = csv_rows(&download_document(&data).await);
    assert!(!rows.is_empty());

    // Each provider: an opening row, its entries, a closing row; opening + entries = closing.
    let mut by_provider: BTreeMap<String, Vec<&BTreeMap<String, String>>> = BTreeMap::new();
    for row in &rows {
        assert_eq!(row["currency"], "EUR");
        by_provider
            .entry(row["provider"].clone())
            .or_default()
            .push(row);
    }
    assert_eq!(
        by_provider.keys().collect::<Vec<_>>(),
        ["Clearwater Utilities", "Northwind Energy"]
    );
    let (mut bills, mut payments, mut closing) = (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
    for (provider, rows) in &by_provider {
        assert_eq!(rows.first().unwrap()["entry"], "opening", "{provider}");
        assert_eq!(rows.last().unwrap()["entry"], "closing", "{provider}");
        let mut balance = amount(&rows[0]["balance"]);
        for row in &rows[1..rows.len() - 1] {
            balance += amount(&row["amount"]);
            assert_eq!(amount(&row["balance"]), balance, "{provider}: {row:?}");
            match row["entry"].as_str() {
                "bill" => bills += amount(&row["amount"]),
                "payment" => payments += amount(&row["amount"]),
                other => panic!("no voids in the demo set, got {other}"),
            }
        }
        assert_eq!(
            amount(&rows.last().unwrap()["balance"]),
            balance,
            "{provider}"
        );
        closing += balance;
    }

    // The same figures, straight from the tables.
    let (start, end) = ("2026-05-01 00:00:00+00", "2026-11-01 00:00:00+00");
    let issued = f
        .decimal(
            "SELECT coalesce(sum(amount), 0) FROM bills
             WHERE apartment_id = 1 AND issued_at >= $1::text::timestamptz AND issued_at < $2::text::timestamptz",
            &[&start, &end],
        )
        .await;
    let paid = f
        .decimal(
            "SELECT coalesce(sum(total), 0) FROM payments
             WHERE apartment_id = 1 AND paid_at >= $1::text::timestamptz AND paid_at < $2::text::timestamptz",
            &[&start, &end],
        )
        .await;
    let owed = f
        .decimal(
            "SELECT coalesce(sum(amount), 0) FROM bills
             WHERE apartment_id = 1 AND issued_at < $1::text::timestamptz
               AND (payment_id IS NULL OR payment_id IN (SELECT id FROM payments WHERE paid_at >= $1::text::timestamptz))",
            &[&end],
        )
        .await;
    assert!(issued > Decimal::ZERO && paid > Decimal::ZERO);
    assert_eq!(bills, issued, "every bill issued in the window");
    assert_eq!(payments, -paid, "every payment made in the window");
    assert_eq!(closing, owed, "what was owed at the end of the window");

    let pdf = f
        .issued(
            1,
            json!({ "kind": "statement", "format": "pdf", "from": FROM, "to": TO }),
        )
        .await;
    let text = pdf_text(&download_document(&pdf).await);
    assert!(
        text.contains("Northwind Energy") && text.contains("Clearwater Utilities"),
        "{text}"
    );
    assert!(
        text.contains(&owed.to_string()),
        "the closing balance {owed}: {text}"
    );
}

#[tokio::test]
async fn a_statement_as_a_spreadsheet_has_typed_cells_that_agree_with_its_csv() {
    use calamine::{Data, Reader, Xlsx};
    let f = Fixture::new().await;
    let window =
        |format: &str| json!({ "kind": "statement", "format": format, "from": FROM, "to": TO });
    let rows = csv_rows(&download_document(&f.issued(1, window("csv")).await).await);
    let data = f.issued(1, window("xlsx")).await;
    assert_eq!(data["format"], "xlsx");
    let bytes = download_document(&data).await;
    let mut book: Xlsx<_> = Xlsx::new(std::io::Cursor::new(bytes)).expect("an XLSX file");
    assert_eq!(
        book.sheet_names(),
        ["Summary", "Clearwater Utilities", "Northwind Energy"]
    );
    // The summary's closing column, per provider, is each provider's closing row of the CSV.
    let summary = book.worksheet_range("Summary").unwrap();
    assert_eq!(
        summary.get_value((0, 5)),
        Some(&Data::String("Closing".into()))
    );
    for row in 1..=2u32 {
        let Some(Data::String(provider)) = summary.get_value((row, 0)) else {
            panic!("a provider's name in row {row}");
        };
        let Some(Data::Float(closing)) = summary.get_value((row, 5)) else {
            panic!("a number cell");
        };
        let csv_closing = rows
            .iter()
            .find(|r| &r["provider"] == provider && r["entry"] == "closing")
            .map(|r| r["balance"].parse::<f64>().unwrap())
            .unwrap();
        assert!(
            (closing - csv_closing).abs() < 0.005,
            "{provider}: {closing} {csv_closing}"
        );
    }
    // A provider's sheet: one row per CSV row of it, days as date cells, amounts as numbers.
    let northwind = book.worksheet_range("Northwind Energy").unwrap();
    let csv_rows_of = rows
        .iter()
        .filter(|r| r["provider"] == "Northwind Energy")
        .count();
    assert_eq!(northwind.height() - 1, csv_rows_of);
    assert!(matches!(
        northwind.get_value((2, 0)),
        Some(Data::DateTime(_))
    ));
    assert!(matches!(northwind.get_value((2, 4)), Some(Data::Float(_))));
    // A receipt has no spreadsheet.
    let refused = f
        .document(
            DEMO,
            1,
            json!({ "kind": "receipt", "format": "xlsx", "payment_id": Uuid::new_v4() }),
        )
        .await;
    assert_eq!(error_code(&refused), "invalid_request", "{refused}");
}

#[tokio::test]
async fn a_bill_document_shows_its_lines_and_status_and_a_paid_bill_is_a_new_document() {
    let f = Fixture::new().await;
    let open = f
        .issued(
            1,
            json!({ "kind": "bill", "format": "pdf", "bill_id": 1081 }),
        )
        .await;
    let text = pdf_text(&download_document(&open).await);
    assert!(
        text.contains("1081") && text.contains("Northwind Energy"),
        "{text}"
    );
    assert!(text.to_lowercase().contains("open"), "its status: {text}");

    let csv = f
        .issued(
            1,
            json!({ "kind": "bill", "format": "csv", "bill_id": 1081 }),
        )
        .await;
    let rows = csv_rows(&download_document(&csv).await);
    let amount_in_db = f
        .decimal("SELECT amount FROM bills WHERE id = 1081", &[])
        .await;
    let sum: Decimal = rows.iter().map(|r| amount(&r["amount"])).sum();
    assert_eq!(sum, amount_in_db, "the lines add up to the bill: {rows:?}");
    assert!(
        rows.iter()
            .all(|r| r["bill_id"] == "1081" && r["status"] == "open")
    );

    assert_eq!(f.pay(1, &[1081]).await["status"], "ok");
    let paid = f
        .issued(
            1,
            json!({ "kind": "bill", "format": "pdf", "bill_id": 1081 }),
        )
        .await;
    assert_ne!(
        paid["document_id"], open["document_id"],
        "a new status, a new document"
    );
    let text = pdf_text(&download_document(&paid).await);
    assert!(text.to_lowercase().contains("paid"), "{text}");
    // The document issued while the bill was open is still there, as it was.
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM documents WHERE subject IN ('1081:open', '1081:paid')",
            &[]
        )
        .await,
        3
    );
}

#[tokio::test]
async fn another_households_documents_and_bad_requests_are_refused_and_issue_nothing() {
    let f = Fixture::new().await;
    let paid = f.pay(1, &[1081]).await;
    let payment = paid["data"]["payment_id"].as_str().unwrap().to_owned();

    let cases = [
        // demo2 asks for demo's apartment.
        (
            DEMO2,
            1,
            json!({ "kind": "receipt", "format": "pdf", "payment_id": payment }),
            "forbidden",
        ),
        (
            DEMO2,
            1,
            json!({ "kind": "statement", "format": "csv", "from": FROM, "to": TO }),
            "forbidden",
        ),
        // demo2 names demo's payment and bill on its own apartment.
        (
            DEMO2,
            3,
            json!({ "kind": "receipt", "format": "pdf", "payment_id": payment }),
            "not_found",
        ),
        (
            DEMO2,
            3,
            json!({ "kind": "bill", "format": "pdf", "bill_id": 1081 }),
            "not_found",
        ),
        (
            DEMO,
            99999,
            json!({ "kind": "bill", "format": "pdf", "bill_id": 1081 }),
            "not_found",
        ),
        (
            DEMO,
            1,
            json!({ "kind": "receipt", "format": "pdf", "payment_id": Uuid::new_v4() }),
            "not_found",
        ),
        // What the worker checks beyond the gateway's schema.
        (
            DEMO,
            1,
            json!({ "kind": "receipt", "format": "pdf" }),
            "invalid_request",
        ),
        (
            DEMO,
            1,
            json!({ "kind": "bill", "format": "pdf", "bill_id": 1081, "from": FROM }),
            "invalid_request",
        ),
        (
            DEMO,
            1,
            json!({ "kind": "statement", "format": "pdf", "from": TO, "to": FROM }),
            "invalid_request",
        ),
        (
            DEMO,
            1,
            json!({ "kind": "statement", "format": "pdf", "from": "2025-01-01", "to": TO }),
            "invalid_request",
        ),
        (
            DEMO,
            1,
            json!({ "kind": "statement", "format": "pdf", "from": "2026-02-30", "to": TO }),
            "invalid_request",
        ),
        (
            DEMO,
            1,
            json!({ "kind": "letter", "format": "pdf" }),
            "invalid_request",
        ),
        (
            DEMO,
            1,
            json!({ "kind": "bill", "format": "docx", "bill_id": 1081 }),
            "invalid_request",
        ),
    ];
    for (user, apartment, fields, code) in cases {
        let reply = f.document(user, apartment, fields.clone()).await;
        assert_eq!(error_code(&reply), code, "{fields}: {reply}");
    }
    // Today, and later, are not over yet.
    let today = chrono::Utc::now().date_naive().to_string();
    let reply = f
        .document(
            DEMO,
            1,
            json!({ "kind": "statement", "format": "csv", "from": FROM, "to": today }),
        )
        .await;
    assert_eq!(error_code(&reply), "invalid_request", "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("past days"),
        "{reply}"
    );

    assert_eq!(f.db.count("SELECT count(*) FROM documents", &[]).await, 0);
}

#[tokio::test]
async fn an_expired_or_altered_link_is_refused_by_s3() {
    let f = Fixture::new().await;
    let mut engine: Engine = qbill_tests::engine(&f.db, None);
    engine.services = engine.services.with_documents(DocumentsConfig {
        url_lifetime: Duration::from_secs(2),
        ..documents_config()
    });
    let f = Fixture { engine, ..f };
    let data = f
        .issued(
            1,
            json!({ "kind": "bill", "format": "csv", "bill_id": 1082 }),
        )
        .await;
    let url = data["url"].as_str().unwrap();
    let expires: chrono::DateTime<chrono::Utc> =
        data["expires_at"].as_str().unwrap().parse().unwrap();
    assert!(
        expires <= chrono::Utc::now() + chrono::Duration::seconds(3),
        "{data}"
    );
    assert!(!download_document(&data).await.is_empty(), "works at first");

    let altered = url.replace("X-Amz-Signature=", "X-Amz-Signature=0");
    assert_eq!(
        reqwest::get(&altered).await.unwrap().status(),
        403,
        "an altered signature"
    );
    let other_key = url.replace(".csv?", ".pdf?");
    assert_eq!(
        reqwest::get(&other_key).await.unwrap().status(),
        403,
        "another file"
    );

    tokio::time::sleep(Duration::from_secs(4)).await;
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 403, "expired");
    let body = response.text().await.unwrap();
    assert!(
        body.contains("expired") || body.contains("AccessDenied"),
        "{body}"
    );
}

#[tokio::test]
async fn two_requests_at_once_issue_one_document() {
    let f = Fixture::new().await;
    let fields =
        json!({ "kind": "statement", "format": "pdf", "from": "2026-06-01", "to": "2026-06-30" });
    let (a, b) = tokio::join!(
        f.document(DEMO, 1, fields.clone()),
        f.document(DEMO, 1, fields)
    );
    assert_eq!(a["status"], "ok", "{a}");
    assert_eq!(a["data"]["document_id"], b["data"]["document_id"]);
    assert_eq!(a["data"]["sha256"], b["data"]["sha256"]);
    assert_eq!(f.db.count("SELECT count(*) FROM documents", &[]).await, 1);
}

#[tokio::test]
async fn the_receipt_mail_links_the_receipt_document() {
    let f = Fixture::new().await;
    let email = format!("d-{}@example.test", Uuid::new_v4().simple());
    f.db.pool
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE users SET email = $1, email_verified = true WHERE id = 1",
            &[&email],
        )
        .await
        .unwrap();
    let paid = f.pay(1, &[1083]).await;
    assert_eq!(paid["status"], "ok", "{paid}");
    let payment = paid["data"]["payment_id"].as_str().unwrap();

    let mails = qbill_tests::wait_for_mails(&email, 1).await;
    let text = mails[0]["Body"]["text_part"].as_str().unwrap();
    assert!(text.contains("Your receipt as a PDF"), "{text}");
    let url = text
        .split_whitespace()
        .find(|w| w.starts_with("http"))
        .unwrap_or_else(|| panic!("a link: {text}"));
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    let bytes = response.bytes().await.unwrap();
    assert!(pdf_text(&bytes).contains(payment));

    // The mail's document is the one the route gives.
    let asked = f
        .issued(
            1,
            json!({ "kind": "receipt", "format": "pdf", "payment_id": payment }),
        )
        .await;
    assert_eq!(download_document(&asked).await, bytes.to_vec());
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM documents WHERE subject = $1",
            &[&payment]
        )
        .await,
        1
    );
}

#[tokio::test]
async fn an_apartment_gets_twenty_new_statements_a_day_and_any_issued_one_again() {
    let f = Fixture::new().await;
    let window = |day: u32| json!({ "kind": "statement", "format": "csv", "from": "2026-05-01", "to": format!("2026-06-{day:02}") });
    let first = f.issued(1, window(1)).await;
    for day in 2..=qbill_core::documents::NEW_STATEMENTS_PER_DAY as u32 {
        f.issued(1, window(day)).await;
    }
    // Each new window is a new file kept in S3: not without bound.
    let more = f.document(DEMO, 1, window(25)).await;
    assert_eq!(error_code(&more), "forbidden", "{more}");
    assert_eq!(
        f.db.count(
            "SELECT count(*) FROM documents WHERE apartment_id = 1 AND kind = 'statement'",
            &[]
        )
        .await,
        qbill_core::documents::NEW_STATEMENTS_PER_DAY
    );
    // One issued already is given again, and another apartment has its own bound.
    let again = f.issued(1, window(1)).await;
    assert_eq!(again["document_id"], first["document_id"]);
    f.issued(2, window(25)).await;
}
