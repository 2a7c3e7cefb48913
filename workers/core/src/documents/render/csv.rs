//! CSV files as RFC 4180 has them: a header row, CRLF line ends, fields quoted only when they
//! must be, UTF-8. Values are for programs: amounts as plain decimals (`-1234.50`), days as ISO
//! 8601 (`2026-11-30`), instants as RFC 3339 in UTC (`2026-12-03T14:05:09Z`), an absent value
//! as an empty field.
//!
//! - A receipt: one row per bill it paid.
//! - A bill: one row per line, numbered from 1.
//! - A statement: per provider, an `opening` row (on `from`, its balance), its entries (`bill`,
//!   `void`, `payment`, each with the signed amount and the balance after it) and a `closing`
//!   row (on `to`), so that opening plus the amounts gives the closing for every provider.
//! - A settlement: one row per line (`payment` or `refund`), each naming its payment (and
//!   refund), with its fee and what it adds to the day's net: a day's `net` column sums to its
//!   settlement's net.
//!
//! Text someone else wrote (a provider's name, account number or line description) that begins
//! with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading apostrophe, so that a
//! spreadsheet opening the file shows it as text instead of running it as a formula (OWASP's
//! advice against CSV injection). Numbers, ids and days are never changed.

use ::csv::{Terminator, Writer, WriterBuilder};

use super::super::{Bill, Document, EntryKind, Receipt, Settlement, Statement};
use super::view::instant;
use crate::types::amount_string;

const RECEIPT_HEADER: [&str; 10] = [
    "payment_id",
    "paid_at",
    "apartment_id",
    "bill_id",
    "utility",
    "provider",
    "period_start",
    "period_end",
    "amount",
    "currency",
];

const BILL_HEADER: [&str; 14] = [
    "bill_id",
    "provider",
    "account_number",
    "utility",
    "period_start",
    "period_end",
    "due_date",
    "status",
    "line",
    "description",
    "quantity",
    "unit_price",
    "amount",
    "currency",
];

const STATEMENT_HEADER: [&str; 8] = [
    "date",
    "provider",
    "entry",
    "reference",
    "description",
    "amount",
    "balance",
    "currency",
];

const SETTLEMENT_HEADER: [&str; 11] = [
    "day",
    "provider_id",
    "at",
    "line",
    "payment_id",
    "refund_id",
    "via",
    "amount",
    "fee",
    "net",
    "currency",
];

/// The document as a CSV file.
pub fn csv(document: &Document) -> anyhow::Result<Vec<u8>> {
    let mut out = WriterBuilder::new()
        .terminator(Terminator::CRLF)
        .from_writer(Vec::new());
    match document {
        Document::Receipt(r) => receipt(&mut out, r)?,
        Document::Bill(b) => bill(&mut out, b)?,
        Document::Statement(s) => statement(&mut out, s)?,
        Document::Settlement(s) => settlement(&mut out, s)?,
    }
    Ok(out.into_inner()?)
}

type Out = Writer<Vec<u8>>;

/// Text for a cell that a spreadsheet will not read as a formula.
fn text(raw: &str) -> std::borrow::Cow<'_, str> {
    match raw.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{raw}").into(),
        _ => raw.into(),
    }
}

fn receipt(out: &mut Out, r: &Receipt) -> ::csv::Result<()> {
    out.write_record(RECEIPT_HEADER)?;
    let (payment_id, paid_at) = (r.payment_id.to_string(), instant(r.paid_at));
    let apartment_id = r.apartment.id.to_string();
    for b in &r.bills {
        out.write_record([
            payment_id.as_str(),
            &paid_at,
            &apartment_id,
            &b.bill_id.to_string(),
            &b.utility,
            &text(&b.provider),
            &b.period_start.to_string(),
            &b.period_end.to_string(),
            &amount_string(b.amount),
            r.currency.as_str(),
        ])?;
    }
    Ok(())
}

fn bill(out: &mut Out, b: &Bill) -> ::csv::Result<()> {
    out.write_record(BILL_HEADER)?;
    let bill_id = b.bill_id.to_string();
    let (start, end, due) = (
        b.period_start.to_string(),
        b.period_end.to_string(),
        b.due_date.to_string(),
    );
    for (i, line) in b.lines.iter().enumerate() {
        out.write_record([
            bill_id.as_str(),
            &text(&b.provider),
            &text(b.account_number.as_deref().unwrap_or("")),
            &b.utility,
            &start,
            &end,
            &due,
            &b.status,
            &(i + 1).to_string(),
            &text(&line.description),
            line.quantity.as_deref().unwrap_or(""),
            line.unit_price.as_deref().unwrap_or(""),
            &amount_string(line.amount),
            b.currency.as_str(),
        ])?;
    }
    Ok(())
}

fn statement(out: &mut Out, s: &Statement) -> ::csv::Result<()> {
    out.write_record(STATEMENT_HEADER)?;
    let (from, to, currency) = (s.from.to_string(), s.to.to_string(), s.currency.as_str());
    for account in &s.providers {
        let provider = text(&account.provider);
        let provider = provider.as_ref();
        out.write_record([
            from.as_str(),
            provider,
            "opening",
            "",
            "opening balance",
            "",
            &amount_string(account.opening),
            currency,
        ])?;
        for e in &account.entries {
            out.write_record([
                e.at.date_naive().to_string().as_str(),
                provider,
                match e.kind {
                    EntryKind::Bill => "bill",
                    EntryKind::Void => "void",
                    EntryKind::Payment => "payment",
                    EntryKind::Refund => "refund",
                    EntryKind::Credit => "credit",
                },
                &e.reference,
                &text(&e.description),
                &amount_string(e.amount),
                &amount_string(e.balance),
                currency,
            ])?;
        }
        out.write_record([
            to.as_str(),
            provider,
            "closing",
            "",
            "closing balance",
            "",
            &amount_string(account.closing),
            currency,
        ])?;
    }
    Ok(())
}

fn settlement(out: &mut Out, s: &Settlement) -> ::csv::Result<()> {
    out.write_record(SETTLEMENT_HEADER)?;
    let provider = s.provider_id.to_string();
    for day in &s.days {
        let date = day.day.to_string();
        for line in &day.lines {
            out.write_record([
                date.as_str(),
                &provider,
                &instant(line.at),
                &line.kind,
                &line.payment_id.to_string(),
                &line.refund_id.map(|r| r.to_string()).unwrap_or_default(),
                &line.via,
                &amount_string(line.amount),
                &amount_string(line.fee),
                &amount_string(line.net()),
                &day.totals.currency,
            ])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rust_decimal::Decimal;

    use super::*;
    use crate::documents::sample;

    /// The header and the rows, read back as a spreadsheet would.
    fn read(bytes: &[u8]) -> (Vec<String>, Vec<BTreeMap<String, String>>) {
        let mut reader = ::csv::Reader::from_reader(bytes);
        let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
        let rows = reader
            .records()
            .map(|r| {
                let r = r.expect("a well-formed record");
                header
                    .iter()
                    .cloned()
                    .zip(r.iter().map(String::from))
                    .collect()
            })
            .collect();
        (header, rows)
    }

    fn decimal(raw: &str) -> Decimal {
        raw.parse()
            .unwrap_or_else(|_| panic!("{raw:?} is not a decimal"))
    }

    #[test]
    fn a_receipt_has_a_row_per_bill_that_sum_to_its_total() {
        let receipt = sample::receipt(5);
        let bytes = csv(&Document::Receipt(receipt.clone())).unwrap();
        assert!(bytes.starts_with(b"payment_id,paid_at,apartment_id,bill_id,"));
        assert!(bytes.ends_with(b"\r\n"));
        assert!(!bytes.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
        let (header, rows) = read(&bytes);
        assert_eq!(header, RECEIPT_HEADER);
        assert_eq!(rows.len(), 5);
        assert_eq!(
            rows.iter().map(|r| decimal(&r["amount"])).sum::<Decimal>(),
            receipt.total
        );
        let first = &rows[0];
        assert_eq!(first["payment_id"], "8a6e0f4e-5d1c-4b7a-9e2f-3c4d5e6f7a8b");
        assert_eq!(first["paid_at"], "2026-12-03T14:05:09Z");
        assert_eq!(first["apartment_id"], "42");
        assert_eq!(first["bill_id"], "100042");
        assert_eq!(first["period_start"], "2026-11-01");
        assert_eq!(first["period_end"], "2026-11-30");
        assert_eq!(first["amount"], "1234.50");
        assert_eq!(first["currency"], "EUR");
    }

    #[test]
    fn text_a_spreadsheet_would_run_as_a_formula_is_kept_as_text_and_numbers_are_not_touched() {
        let mut bill = sample::bill("open");
        bill.lines[0].description = "=HYPERLINK(\"http://evil.test\",\"pay here\")".to_owned();
        bill.lines[1].description = "-15% loyalty discount".to_owned();
        bill.provider = "@Northwind".to_owned();
        let (_, rows) = read(&csv(&Document::Bill(bill)).unwrap());
        assert_eq!(
            rows[0]["description"],
            "'=HYPERLINK(\"http://evil.test\",\"pay here\")"
        );
        assert_eq!(rows[1]["description"], "'-15% loyalty discount");
        assert!(rows.iter().all(|r| r["provider"] == "'@Northwind"));
        assert_eq!(rows[3]["amount"], "-15.00", "an amount stays a number");
        assert_eq!(rows[2]["description"], "Network fee");
    }

    #[test]
    fn a_bill_has_a_numbered_row_per_line_and_descriptions_round_trip() {
        let bill = sample::bill("open");
        let bytes = csv(&Document::Bill(bill.clone())).unwrap();
        let (header, rows) = read(&bytes);
        assert_eq!(header, BILL_HEADER);
        assert_eq!(rows.len(), bill.lines.len());
        for (i, (row, line)) in rows.iter().zip(&bill.lines).enumerate() {
            assert_eq!(row["line"], (i + 1).to_string());
            assert_eq!(row["description"], line.description);
            assert_eq!(row["quantity"], line.quantity.as_deref().unwrap_or(""));
            assert_eq!(row["unit_price"], line.unit_price.as_deref().unwrap_or(""));
            assert_eq!(decimal(&row["amount"]), line.amount);
            assert_eq!(row["bill_id"], "100042");
            assert_eq!(row["account_number"], "ACC-0042-ZH");
            assert_eq!(row["due_date"], "2026-12-20");
            assert_eq!(row["status"], "open");
        }
        assert_eq!(
            rows[1]["description"],
            "Standing charge, \"Basis\" tariff\nsecond line"
        );
        assert_eq!(rows[3]["amount"], "-15.00");
        assert_eq!(rows[0]["unit_price"], "0.284615");
    }

    #[test]
    fn a_statement_opens_and_closes_every_provider_and_its_amounts_add_up() {
        let statement = sample::statement(12, 6);
        let (header, rows) = read(&csv(&Document::Statement(statement.clone())).unwrap());
        assert_eq!(header, STATEMENT_HEADER);
        let mut providers = Vec::new();
        let mut rows = rows.iter().peekable();
        while let Some(opening) = rows.next() {
            assert_eq!(opening["entry"], "opening");
            assert_eq!(opening["date"], "2025-12-01");
            assert_eq!(opening["amount"], "");
            let provider = &opening["provider"];
            let mut balance = decimal(&opening["balance"]);
            let closing = loop {
                let row = rows.next().expect("a closing row");
                assert_eq!(&row["provider"], provider);
                if row["entry"] == "closing" {
                    break row;
                }
                assert!(["bill", "void", "payment"].contains(&row["entry"].as_str()));
                balance += decimal(&row["amount"]);
                assert_eq!(balance, decimal(&row["balance"]), "{row:?}");
            };
            assert_eq!(closing["date"], "2026-11-30");
            assert_eq!(balance, decimal(&closing["balance"]), "{provider}");
            providers.push(provider.clone());
        }
        let expected: Vec<&String> = statement.providers.iter().map(|p| &p.provider).collect();
        assert_eq!(providers.iter().collect::<Vec<_>>(), expected);
    }
}
