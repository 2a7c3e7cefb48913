//! A provider's settlement through the gateway: a household pays a Northwind bill by card, an
//! operator refunds part of it, the settle job closes the day, and Northwind reads its
//! settlement and gets it as CSV, XLSX (opened, its cells read back) and PDF, all agreeing.

use std::io::Cursor;

use calamine::{Data, Reader, Xlsx};
use chrono::{Duration, Utc};
use qbill_tests::{csv_rows, db_pool, download_document, pdf_text, test_card};
use rust_decimal::Decimal;
use serde_json::json;
use uuid::Uuid;

use crate::lifecycle::Session;
use crate::{REPLY_TIMEOUT, served};

#[tokio::test]
async fn a_provider_reads_its_closed_day_and_gets_it_as_csv_xlsx_and_pdf_through_the_gateway() {
    let db = db_pool(&served().admin_url);
    let (mut home, me) = crate::household("settle", 2).await;
    // A Northwind bill (the seed gives every household gas and electricity from provider 1).
    let bill: i64 = db
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT id FROM bills WHERE apartment_id = $1 AND provider_id = 1 AND status = 'open' ORDER BY id LIMIT 1",
            &[&me.apartment_id],
        )
        .await
        .unwrap()
        .get(0);
    let paid = home
        .request(
            &format!("/apartments/{}/payments", me.apartment_id),
            Uuid::new_v4(),
            json!({ "bills_id": [bill], "payment_method": test_card().await }),
            REPLY_TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(paid["data"]["status"], "succeeded", "{paid}");
    let payment = paid["data"]["payment_id"].as_str().unwrap().to_owned();
    let mut ops = Session::login("ops", "ops-password").await;
    let refunded = ops
        .ask(
            &format!("/payments/{payment}/refund"),
            json!({ "amount": "0.40", "reason": "meter estimate corrected" }),
        )
        .await;
    assert_eq!(refunded["data"]["status"], "succeeded", "{refunded}");
    // Both on yesterday, which the settle job then closes.
    let yesterday = Utc::now().date_naive() - Duration::days(1);
    db.get()
        .await
        .unwrap()
        .batch_execute(&format!(
            "UPDATE payments SET paid_at = '{yesterday} 10:00:00+00' WHERE id = '{payment}';
             UPDATE refunds SET succeeded_at = '{yesterday} 11:00:00+00' WHERE payment_id = '{payment}';"
        ))
        .await
        .unwrap();
    let services = {
        let store = qbill_core::store::application_pool(&served().db_url, 2).unwrap();
        qbill_tests::engine_on(&store, None)
            .services
            .with_processor(qbill_tests::processor())
    };
    qbill_core::jobs::settle::run(&services, Some(yesterday))
        .await
        .unwrap();

    let mut northwind = Session::login("northwind", "northwind-password").await;
    let day = yesterday.to_string();
    let listed = northwind
        .ask(
            "/providers/1/settlements",
            json!({ "from": day, "to": day }),
        )
        .await;
    assert_eq!(listed["kind"], "settlements", "{listed}");
    let settlement = &listed["data"]["settlements"][0];
    let amount = |key: &str| {
        settlement[key]
            .as_str()
            .unwrap()
            .parse::<Decimal>()
            .unwrap()
    };
    assert!(amount("gross") >= paid["data"]["total"].as_str().unwrap().parse().unwrap());
    assert!(amount("refunds") >= Decimal::new(40, 2));
    assert_eq!(
        amount("net") + amount("fees") + amount("refunds"),
        amount("gross")
    );

    let document = async |session: &mut Session, format: &str| {
        let reply = session
            .ask(
                "/providers/1/documents",
                json!({ "kind": "settlement", "format": format, "from": day, "to": day }),
            )
            .await;
        assert_eq!(reply["status"], "ok", "{reply}");
        download_document(&reply["data"]).await
    };
    let csv = csv_rows(&document(&mut northwind, "csv").await);
    assert!(
        csv.iter()
            .any(|r| r["payment_id"] == payment && r["line"] == "payment")
    );
    assert!(
        csv.iter()
            .any(|r| r["payment_id"] == payment && r["line"] == "refund" && r["amount"] == "0.40")
    );
    let csv_net: Decimal = csv
        .iter()
        .map(|r| r["net"].parse::<Decimal>().unwrap())
        .sum();
    assert_eq!(csv_net, amount("net"));

    let xlsx = document(&mut northwind, "xlsx").await;
    let mut book: Xlsx<_> = Xlsx::new(Cursor::new(xlsx)).expect("an XLSX file");
    assert_eq!(book.sheet_names(), ["Totals".to_owned(), day.clone()]);
    let totals = book.worksheet_range("Totals").unwrap();
    let Some(Data::Float(net)) = totals.get_value((1, 6)) else {
        panic!("the net is a number cell: {:?}", totals.get_value((1, 6)));
    };
    assert!((net - amount("net").to_string().parse::<f64>().unwrap()).abs() < 0.005);
    let lines = book.worksheet_range(&day).unwrap();
    let payment_row = (1..lines.height() as u32)
        .find(|&r| lines.get_value((r, 2)) == Some(&Data::String(payment.clone())))
        .expect("the payment's line");
    assert!(matches!(
        lines.get_value((payment_row, 0)),
        Some(Data::DateTime(_))
    ));
    assert!(matches!(lines.get_value((payment_row, 6)), Some(Data::Float(fee)) if *fee > 0.0));

    let text = pdf_text(&document(&mut northwind, "pdf").await);
    assert!(
        text.contains("Settlement") && text.contains("Northwind Energy"),
        "{text}"
    );
    assert!(text.contains(&payment[..8]), "{text}");

    // Another provider's users may not read it.
    let (_, mut other) = crate::lifecycle::new_provider(&mut ops).await;
    let refused = other
        .ask(
            "/providers/1/settlements",
            json!({ "from": day, "to": day }),
        )
        .await;
    assert_eq!(crate::lifecycle::error(&refused), "forbidden", "{refused}");
    // A household may not either; hostile bodies and no token stop at the gateway.
    let by_household = home
        .request(
            "/providers/1/settlements",
            Uuid::new_v4(),
            json!({ "from": day, "to": day }),
            REPLY_TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(
        crate::lifecycle::error(&by_household),
        "forbidden",
        "{by_household}"
    );
    let q = northwind.client.queue().to_string();
    for (path, body) in [
        (
            "/providers/1/settlements",
            json!({ "queue_name": q, "request_id": Uuid::new_v4(), "from": "2026-1-1", "to": day }),
        ),
        (
            "/providers/1/settlements",
            json!({ "queue_name": q, "request_id": Uuid::new_v4(), "from": day, "to": day, "provider_id": 2 }),
        ),
        (
            "/providers/1/documents",
            json!({ "queue_name": q, "request_id": Uuid::new_v4(), "kind": "settlement", "format": "docx", "from": day, "to": day }),
        ),
        (
            "/providers/1/documents",
            json!({ "queue_name": q, "request_id": Uuid::new_v4(), "kind": "receipt", "format": "pdf", "from": day, "to": day }),
        ),
    ] {
        let accepted = northwind
            .client
            .post_raw(path, body.to_string())
            .await
            .unwrap();
        assert_eq!(accepted.status, 400, "{path} {body}: {}", accepted.body);
    }
    let anonymous = qbill::client::GatewayClient::new(&served().gateway, Uuid::new_v4());
    let accepted = anonymous
        .post_raw(
            "/providers/1/settlements",
            json!({ "queue_name": anonymous.queue().to_string(), "request_id": Uuid::new_v4(), "from": day, "to": day }).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(accepted.status, 400, "{}", accepted.body);
}
