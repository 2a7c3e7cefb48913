//! What each provider is owed: the settle job closes each day once into settlements whose numbers
//! agree with the books (gross is the settled payments, net + fees + refunds is gross), a late
//! refund lands on the day it happened, and the settlements are listed and issued as CSV, XLSX
//! and PDF to the provider and operators only.

use std::io::Cursor;

use calamine::{Data, Reader, Xlsx};
use chrono::{Duration, NaiveDate, Utc};
use qbill_core::types::Role;
use qbill_tests::{csv_rows, download_document, pdf_text};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::card_payments::{GOOD_CARD, card, card_fixture, pay_with};
use crate::{DEMO, Fixture, bill_ids, error_code, northwind, operator, token};

fn day(days_ago: i64) -> NaiveDate {
    Utc::now().date_naive() - Duration::days(days_ago)
}

/// Moves a payment (and its audit of it) to noon of `day`.
async fn paid_on(f: &Fixture, payment: &str, day: NaiveDate) {
    f.db.pool
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE payments SET paid_at = $2::date + time '12:00' AT TIME ZONE 'UTC',
                                 created_at = $2::date + time '12:00' AT TIME ZONE 'UTC'
             WHERE id = $1::text::uuid",
            &[&payment, &day],
        )
        .await
        .unwrap();
}

async fn refunded_on(f: &Fixture, refund: &str, day: NaiveDate) {
    f.db.pool
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE refunds SET succeeded_at = $2::date + time '15:00' AT TIME ZONE 'UTC' WHERE id = $1::text::uuid",
            &[&refund, &day],
        )
        .await
        .unwrap();
}

async fn refund(f: &Fixture, payment: &str, amount: Option<&str>) -> String {
    let mut body = json!({ "queue_name": f.queue.to_string(), "request_id": Uuid::new_v4(), "reason": "test" });
    if let Some(amount) = amount {
        body["amount"] = json!(amount);
    }
    let mut request = qbill_tests::message("refund", None, None, body);
    request.attributes.insert(
        qbill_core::envelope::attribute::PAYMENT_ID.into(),
        payment.to_owned(),
    );
    request.attributes.insert(
        qbill_core::envelope::attribute::AUTHORIZATION.into(),
        format!(
            "{}Bearer {}",
            qbill_core::envelope::AUTHORIZATION_MARKER,
            operator(f)
        ),
    );
    let reply = f.send(request).await;
    assert_eq!(reply["data"]["status"], "succeeded", "{reply}");
    reply["data"]["refund_id"].as_str().unwrap().to_owned()
}

/// A card payment of these bills of apartment 1; its id.
async fn card_payment(f: &Fixture, bills: &[i64]) -> String {
    let reply = pay_with(f, 1, bills, Some(&card(GOOD_CARD).await)).await;
    assert_eq!(reply["data"]["status"], "succeeded", "{reply}");
    reply["data"]["payment_id"].as_str().unwrap().to_owned()
}

async fn decimal(
    f: &Fixture,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Decimal {
    f.db.pool
        .get()
        .await
        .unwrap()
        .query_one(sql, params)
        .await
        .unwrap()
        .get(0)
}

/// Card payments, a payment made elsewhere, partial and whole refunds over four past days.
async fn activity(f: &Fixture) -> Vec<String> {
    let bills = bill_ids(&f.demo_utils(1).await["bills"]);
    assert!(bills.len() >= 5, "{bills:?}");
    let a = card_payment(f, &bills[0..2]).await;
    let b = card_payment(f, &bills[2..3]).await;
    let c = card_payment(f, &bills[3..4]).await;
    let cash = f
        .ask(
            "payments_external",
            Some(1),
            Some(&operator(f)),
            json!({ "bills_id": [bills[4]], "method": "cash", "reference": "desk",
                    "received_on": day(0).to_string() }),
        )
        .await;
    let cash = cash["data"]["payment_id"].as_str().unwrap().to_owned();
    paid_on(f, &a, day(5)).await;
    paid_on(f, &b, day(5)).await;
    paid_on(f, &c, day(4)).await;
    paid_on(f, &cash, day(4)).await;
    let partial = refund(f, &a, Some("1.10")).await;
    refunded_on(f, &partial, day(4)).await;
    let second = refund(f, &a, Some("0.33")).await;
    refunded_on(f, &second, day(3)).await;
    let whole = refund(f, &b, None).await;
    refunded_on(f, &whole, day(3)).await;
    vec![a, b, c, cash]
}

#[tokio::test]
async fn settlements_add_up_to_the_books_over_any_window_and_a_closed_day_never_changes() {
    let f = card_fixture().await;
    let payments = activity(&f).await;
    let services = &f.engine.services;
    // Two runs at once close each day once.
    let (one, two) = tokio::join!(
        qbill_core::jobs::settle::run(services, Some(day(2))),
        qbill_core::jobs::settle::run(services, Some(day(2)))
    );
    let (one, two) = (one.unwrap(), two.unwrap());
    let closed: i64 =
        f.db.pool
            .get()
            .await
            .unwrap()
            .query_one("SELECT count(*) FROM settlement_days", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(one.days + two.days, closed as u64, "{one:?} {two:?}");
    assert!(one.fees_read + two.fees_read >= 3, "{one:?} {two:?}");

    for (from, to) in [
        (day(5), day(5)),
        (day(5), day(3)),
        (day(4), day(2)),
        (day(400), day(2)),
    ] {
        // Gross is the settled payments' bills, provider by provider.
        let gross = decimal(
            &f,
            "SELECT coalesce(sum(gross), 0) FROM settlements WHERE day BETWEEN $1 AND $2",
            &[&from, &to],
        )
        .await;
        let books = decimal(
            &f,
            "SELECT coalesce(sum(total), 0) FROM payments
             WHERE status = 'succeeded' AND paid_at >= $1::date AT TIME ZONE 'UTC'
               AND paid_at < ($2::date + 1) AT TIME ZONE 'UTC'",
            &[&from, &to],
        )
        .await;
        assert_eq!(gross, books, "{from}..{to}");
        let refunds = decimal(
            &f,
            "SELECT coalesce(sum(refunds), 0) FROM settlements WHERE day BETWEEN $1 AND $2",
            &[&from, &to],
        )
        .await;
        let given = decimal(
            &f,
            "SELECT coalesce(sum(amount), 0) FROM refunds
             WHERE status = 'succeeded' AND succeeded_at >= $1::date AT TIME ZONE 'UTC'
               AND succeeded_at < ($2::date + 1) AT TIME ZONE 'UTC'",
            &[&from, &to],
        )
        .await;
        assert_eq!(refunds, given, "{from}..{to}");
        let fees = decimal(
            &f,
            "SELECT coalesce(sum(fees), 0) FROM settlements WHERE day BETWEEN $1 AND $2",
            &[&from, &to],
        )
        .await;
        let charged = decimal(
            &f,
            "SELECT coalesce(sum(processor_fee), 0) FROM payments
             WHERE status = 'succeeded' AND paid_at >= $1::date AT TIME ZONE 'UTC'
               AND paid_at < ($2::date + 1) AT TIME ZONE 'UTC'",
            &[&from, &to],
        )
        .await;
        assert_eq!(fees, charged, "{from}..{to}");
        let net = decimal(
            &f,
            "SELECT coalesce(sum(net), 0) FROM settlements WHERE day BETWEEN $1 AND $2",
            &[&from, &to],
        )
        .await;
        assert_eq!(net + fees + refunds, gross, "{from}..{to}");
    }
    // The processor's fee is the local processor's price: 1.5% plus 25 cents, per card payment.
    let fee = decimal(
        &f,
        "SELECT processor_fee FROM payments WHERE id = $1::text::uuid",
        &[&payments[2]],
    )
    .await;
    let total = decimal(
        &f,
        "SELECT total FROM payments WHERE id = $1::text::uuid",
        &[&payments[2]],
    )
    .await;
    let cents = (total * Decimal::from(100)).trunc();
    let expected = ((cents * Decimal::new(15, 3)).round() + Decimal::from(25)) / Decimal::from(100);
    assert_eq!(fee, expected);
    // The cash payment is collected elsewhere, with no fee.
    let elsewhere = decimal(
        &f,
        "SELECT coalesce(sum(collected_elsewhere), 0) FROM settlements WHERE day = $1",
        &[&day(4)],
    )
    .await;
    let cash = decimal(
        &f,
        "SELECT total FROM payments WHERE id = $1::text::uuid",
        &[&payments[3]],
    )
    .await;
    assert_eq!(elsewhere, cash);

    // A refund now, of a payment of a closed day, lands on its own day; the closed day is as it was.
    let before = decimal(
        &f,
        "SELECT sum(net) FROM settlements WHERE day = $1",
        &[&day(4)],
    )
    .await;
    let late = refund(&f, &payments[2], Some("0.50")).await;
    refunded_on(&f, &late, day(1)).await;
    let again = qbill_core::jobs::settle::run(services, Some(day(1)))
        .await
        .unwrap();
    assert_eq!(again.days, 1, "{again:?}");
    assert_eq!(
        decimal(
            &f,
            "SELECT sum(net) FROM settlements WHERE day = $1",
            &[&day(4)]
        )
        .await,
        before
    );
    assert_eq!(
        decimal(
            &f,
            "SELECT sum(refunds) FROM settlements WHERE day = $1",
            &[&day(1)]
        )
        .await,
        Decimal::new(50, 2)
    );
    let nothing = qbill_core::jobs::settle::run(services, Some(day(1)))
        .await
        .unwrap();
    assert_eq!(nothing.days, 0, "{nothing:?}");
}

async fn settlements(
    f: &Fixture,
    token: &str,
    provider: i64,
    from: NaiveDate,
    to: NaiveDate,
) -> Value {
    provider_route(
        f,
        "settlements",
        token,
        provider,
        json!({ "from": from.to_string(), "to": to.to_string() }),
    )
    .await
}

async fn provider_route(
    f: &Fixture,
    route: &str,
    token: &str,
    provider: i64,
    fields: Value,
) -> Value {
    let mut body = json!({ "queue_name": f.queue.to_string(), "request_id": Uuid::new_v4() });
    body.as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    let mut request = qbill_tests::message(route, None, None, body);
    request.attributes.insert(
        qbill_core::envelope::attribute::PROVIDER_ID.into(),
        provider.to_string(),
    );
    request.attributes.insert(
        qbill_core::envelope::attribute::AUTHORIZATION.into(),
        format!(
            "{}Bearer {token}",
            qbill_core::envelope::AUTHORIZATION_MARKER
        ),
    );
    f.send(request).await
}

#[tokio::test]
async fn a_provider_lists_its_settlements_and_gets_them_as_csv_xlsx_and_pdf_that_agree() {
    let f = card_fixture().await;
    activity(&f).await;
    qbill_core::jobs::settle::run(&f.engine.services, Some(day(2)))
        .await
        .unwrap();

    let listed = settlements(&f, &northwind(&f), 1, day(6), day(2)).await;
    assert_eq!(listed["status"], "ok", "{listed}");
    let days = listed["data"]["settlements"].as_array().unwrap();
    assert!(!days.is_empty(), "{listed}");
    for s in days {
        let [gross, refunds, fees, net] = ["gross", "refunds", "fees", "net"]
            .map(|k| s[k].as_str().unwrap().parse::<Decimal>().unwrap());
        assert_eq!(net + fees + refunds, gross, "{s}");
    }
    assert_eq!(listed["data"]["open_from"], Value::Null, "{listed}");
    // A window reaching today names the first day still open.
    let open = settlements(&f, &northwind(&f), 1, day(3), day(0)).await;
    assert_eq!(
        open["data"]["open_from"],
        json!(day(1).to_string()),
        "{open}"
    );

    let net: Decimal = days
        .iter()
        .map(|s| s["net"].as_str().unwrap().parse::<Decimal>().unwrap())
        .sum();
    let window =
        json!({ "kind": "settlement", "from": day(6).to_string(), "to": day(2).to_string() });
    let ask = async |format: &str| {
        let mut fields = window.clone();
        fields["format"] = json!(format);
        let reply = provider_route(&f, "provider_documents", &northwind(&f), 1, fields).await;
        assert_eq!(reply["status"], "ok", "{reply}");
        assert_eq!(reply["data"]["format"], format, "{reply}");
        reply["data"].clone()
    };

    // CSV: every line names its payment; the net column adds up to the settlements' net.
    let csv = download_document(&ask("csv").await).await;
    let rows = csv_rows(&csv);
    assert!(!rows.is_empty());
    let csv_net: Decimal = rows
        .iter()
        .map(|r| r["net"].parse::<Decimal>().unwrap())
        .sum();
    assert_eq!(csv_net, net);
    assert!(
        rows.iter()
            .all(|r| Uuid::parse_str(&r["payment_id"]).is_ok())
    );
    assert!(
        rows.iter()
            .any(|r| r["line"] == "refund" && !r["refund_id"].is_empty())
    );
    assert!(rows.iter().any(|r| r["via"] == "external"));

    // XLSX: a totals sheet and a sheet per day, typed cells that read back as the numbers.
    let document = ask("xlsx").await;
    let bytes = download_document(&document).await;
    let mut book: Xlsx<_> = Xlsx::new(Cursor::new(bytes)).expect("an XLSX file");
    let sheets = book.sheet_names();
    assert_eq!(sheets[0], "Totals", "{sheets:?}");
    assert_eq!(sheets.len(), 1 + days.len(), "{sheets:?}");
    for s in days {
        assert!(
            sheets.contains(&s["day"].as_str().unwrap().to_owned()),
            "{sheets:?}"
        );
    }
    let totals = book.worksheet_range("Totals").unwrap();
    assert_eq!(totals.get_value((0, 6)), Some(&Data::String("Net".into())));
    match totals.get_value((1, 6)) {
        Some(Data::Float(value)) => {
            assert!(
                (value - net.to_string().parse::<f64>().unwrap()).abs() < 0.005,
                "{value} {net}"
            )
        }
        other => panic!("the net is a number cell: {other:?}"),
    }
    let first_day = book.worksheet_range(&sheets[1]).unwrap();
    assert!(
        matches!(first_day.get_value((1, 0)), Some(Data::DateTime(_))),
        "{:?}",
        first_day.get_value((1, 0))
    );
    assert!(matches!(first_day.get_value((1, 5)), Some(Data::Float(_))));
    let day_net: f64 = (1..first_day.height() as u32 - 1)
        .map(|row| match first_day.get_value((row, 7)) {
            Some(Data::Float(v)) => *v,
            other => panic!("{other:?}"),
        })
        .sum();
    let listed_first: f64 = days[0]["net"].as_str().unwrap().parse().unwrap();
    assert!(
        (day_net - listed_first).abs() < 0.005,
        "{day_net} {listed_first}"
    );
    // Issued once: asked again, the same file.
    assert_eq!(ask("xlsx").await["sha256"], document["sha256"]);

    // PDF: the provider's name, the totals, each day.
    let pdf = download_document(&ask("pdf").await).await;
    let text = pdf_text(&pdf);
    assert!(text.contains("Settlement"), "{text}");
    assert!(text.contains("Northwind"), "{text}");
    assert!(text.contains("Paid out"), "{text}");
    assert!(text.contains("refund"), "{text}");
}

#[tokio::test]
async fn settlements_are_refused_to_other_providers_households_and_bad_windows() {
    let f = card_fixture().await;
    qbill_core::jobs::settle::run(&f.engine.services, Some(day(2)))
        .await
        .unwrap();
    let other = token(&f, (4, "northwind"), Role::Provider, Some(2));
    let reply = settlements(&f, &other, 1, day(6), day(2)).await;
    assert_eq!(error_code(&reply), "forbidden", "{reply}");
    let household = f.token(DEMO);
    let reply = settlements(&f, &household, 1, day(6), day(2)).await;
    assert_eq!(error_code(&reply), "forbidden", "{reply}");
    let reply = provider_route(&f, "provider_documents", &household, 1,
        json!({ "kind": "settlement", "format": "csv", "from": day(6).to_string(), "to": day(2).to_string() })).await;
    assert_eq!(error_code(&reply), "forbidden", "{reply}");
    for body in [
        json!({ "from": day(2).to_string(), "to": day(6).to_string() }),
        json!({ "from": day(400).to_string(), "to": day(2).to_string() }),
        json!({ "from": "2026-13-01", "to": "2026-12-01" }),
        json!({ "from": day(6).to_string() }),
        json!({ "from": day(6).to_string(), "to": day(2).to_string(), "provider_id": 2 }),
    ] {
        let reply = provider_route(&f, "settlements", &operator(&f), 1, body.clone()).await;
        assert_eq!(error_code(&reply), "invalid_request", "{body} -> {reply}");
    }
    for body in [
        json!({ "kind": "statement", "format": "csv", "from": day(6).to_string(), "to": day(2).to_string() }),
        json!({ "kind": "settlement", "format": "docx", "from": day(6).to_string(), "to": day(2).to_string() }),
    ] {
        let reply = provider_route(&f, "provider_documents", &operator(&f), 1, body.clone()).await;
        assert_eq!(error_code(&reply), "invalid_request", "{body} -> {reply}");
    }
    // A window with a day still open is not issued: its document would change.
    let reply = provider_route(&f, "provider_documents", &operator(&f), 1,
        json!({ "kind": "settlement", "format": "csv", "from": day(3).to_string(), "to": day(0).to_string() })).await;
    assert_eq!(error_code(&reply), "conflict", "{reply}");
    let documents: i64 =
        f.db.pool
            .get()
            .await
            .unwrap()
            .query_one(
                "SELECT count(*) FROM documents WHERE provider_id IS NOT NULL",
                &[],
            )
            .await
            .unwrap()
            .get(0);
    assert_eq!(documents, 0);
    let unknown = provider_route(
        &f,
        "settlements",
        &operator(&f),
        999,
        json!({ "from": day(6).to_string(), "to": day(2).to_string() }),
    )
    .await;
    assert_eq!(error_code(&unknown), "not_found", "{unknown}");
}
