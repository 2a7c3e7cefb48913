//! Spreadsheets (Office Open XML, `.xlsx`) with typed cells, for statements and settlements:
//! days and instants are date cells, amounts number cells shown with two places (a spreadsheet
//! holds them as binary floating point; the CSV and the API keep the exact decimals), ids and
//! names text cells, a bold header frozen at the top of each sheet.
//!
//! - A statement: a `Summary` sheet (each provider's opening, charged, credited, paid and closing,
//!   then the sums), then a sheet per provider with its entries and the balance after each.
//! - A settlement: a `Totals` sheet (by currency: payments, refunds, gross, refunds, fees, net,
//!   collected elsewhere, paid out), then a sheet per day (and currency) with its lines.
//!
//! The same document gives the same bytes: the workbook's creation time is the window's last day.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use rust_xlsxwriter::{DocProperties, Format, Workbook, Worksheet, XlsxError};

use super::super::{Document, EntryKind, Settlement, SettlementTotals, Statement};

/// The document as a spreadsheet: statements and settlements only.
pub fn xlsx(document: &Document) -> anyhow::Result<Vec<u8>> {
    let mut workbook = Workbook::new();
    let styles = Styles::new();
    let last_day = match document {
        Document::Statement(s) => {
            statement(&mut workbook, &styles, s)?;
            s.to
        }
        Document::Settlement(s) => {
            settlement(&mut workbook, &styles, s)?;
            s.to
        }
        other => anyhow::bail!("a {} has no spreadsheet", other.kind().as_str()),
    };
    let created = last_day.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
    workbook.set_properties(
        &DocProperties::new()
            .set_author("qbill")
            .set_creation_datetime(&created),
    );
    Ok(workbook.save_to_buffer()?)
}

struct Styles {
    header: Format,
    money: Format,
    day: Format,
    instant: Format,
    bold_money: Format,
    bold: Format,
}

impl Styles {
    fn new() -> Self {
        Self {
            header: Format::new().set_bold(),
            money: Format::new().set_num_format("#,##0.00"),
            day: Format::new().set_num_format("yyyy-mm-dd"),
            instant: Format::new().set_num_format("yyyy-mm-dd hh:mm:ss"),
            bold_money: Format::new().set_bold().set_num_format("#,##0.00"),
            bold: Format::new().set_bold(),
        }
    }
}

/// An amount as a number cell (two places are exact in a double for the amounts money has).
fn number(amount: Decimal) -> f64 {
    amount.to_f64().unwrap_or(f64::NAN)
}

fn header(sheet: &mut Worksheet, styles: &Styles, names: &[&str]) -> Result<(), XlsxError> {
    for (col, name) in names.iter().enumerate() {
        sheet.write_string_with_format(0, col as u16, *name, &styles.header)?;
        sheet.set_column_width(col as u16, (name.len() + 4).max(12) as f64)?;
    }
    sheet.set_freeze_panes(1, 0)?;
    Ok(())
}

fn day(
    sheet: &mut Worksheet,
    styles: &Styles,
    row: u32,
    col: u16,
    day: NaiveDate,
) -> Result<(), XlsxError> {
    sheet.write_datetime_with_format(row, col, day, &styles.day)?;
    Ok(())
}

fn instant(
    sheet: &mut Worksheet,
    styles: &Styles,
    row: u32,
    col: u16,
    at: DateTime<Utc>,
) -> Result<(), XlsxError> {
    sheet.write_datetime_with_format(row, col, at.naive_utc(), &styles.instant)?;
    Ok(())
}

/// A sheet name as Excel takes it: at most 31 characters, none of `[]:*?/\`, unique (a number
/// added if taken).
fn sheet_name(wanted: &str, taken: &mut Vec<String>) -> String {
    let clean: String = wanted
        .chars()
        .map(|c| if "[]:*?/\\".contains(c) { ' ' } else { c })
        .collect();
    let base: String = clean.trim().chars().take(28).collect();
    let base = if base.is_empty() {
        "Sheet".to_owned()
    } else {
        base
    };
    let mut name = base.clone();
    let mut n = 2;
    while taken.iter().any(|t| t.eq_ignore_ascii_case(&name)) {
        name = format!("{base} {n}");
        n += 1;
    }
    taken.push(name.clone());
    name
}

const SUMMARY_HEADER: [&str; 6] = [
    "Provider", "Opening", "Charged", "Credited", "Paid", "Closing",
];
const ENTRY_HEADER: [&str; 6] = [
    "Date",
    "Entry",
    "Reference",
    "Description",
    "Amount",
    "Balance",
];

fn statement(workbook: &mut Workbook, styles: &Styles, s: &Statement) -> anyhow::Result<()> {
    let mut taken = vec!["Summary".to_owned()];
    let summary = workbook.add_worksheet();
    summary.set_name("Summary")?;
    header(summary, styles, &SUMMARY_HEADER)?;
    summary.set_column_width(0, 30)?;
    let mut row = 1;
    for account in &s.providers {
        summary.write_string(row, 0, &account.provider)?;
        for (col, amount) in [
            account.opening,
            account.charged,
            account.credited,
            account.paid,
            account.closing,
        ]
        .into_iter()
        .enumerate()
        {
            summary.write_number_with_format(row, col as u16 + 1, number(amount), &styles.money)?;
        }
        row += 1;
    }
    summary.write_string_with_format(row, 0, "All providers", &styles.bold)?;
    for (col, amount) in [s.opening, s.charged, s.credited, s.paid, s.closing]
        .into_iter()
        .enumerate()
    {
        summary.write_number_with_format(
            row,
            col as u16 + 1,
            number(amount),
            &styles.bold_money,
        )?;
    }
    summary.write_string(row + 2, 0, format!("Currency: {}", s.currency.as_str()))?;
    summary.write_string(
        row + 3,
        0,
        format!(
            "Apartment {}, {} to {} (whole days, UTC)",
            s.apartment.id, s.from, s.to
        ),
    )?;

    for account in &s.providers {
        let name = sheet_name(&account.provider, &mut taken);
        let sheet = workbook.add_worksheet();
        sheet.set_name(name)?;
        header(sheet, styles, &ENTRY_HEADER)?;
        sheet.set_column_width(3, 44)?;
        day(sheet, styles, 1, 0, s.from)?;
        sheet.write_string(1, 1, "opening")?;
        sheet.write_string(1, 3, "opening balance")?;
        sheet.write_number_with_format(1, 5, number(account.opening), &styles.money)?;
        let mut row = 2;
        for e in &account.entries {
            day(sheet, styles, row, 0, e.at.date_naive())?;
            sheet.write_string(
                row,
                1,
                match e.kind {
                    EntryKind::Bill => "bill",
                    EntryKind::Void => "void",
                    EntryKind::Payment => "payment",
                    EntryKind::Refund => "refund",
                    EntryKind::Credit => "credit",
                },
            )?;
            sheet.write_string(row, 2, &e.reference)?;
            sheet.write_string(row, 3, &e.description)?;
            sheet.write_number_with_format(row, 4, number(e.amount), &styles.money)?;
            sheet.write_number_with_format(row, 5, number(e.balance), &styles.money)?;
            row += 1;
        }
        day(sheet, styles, row, 0, s.to)?;
        sheet.write_string_with_format(row, 1, "closing", &styles.bold)?;
        sheet.write_string_with_format(row, 3, "closing balance", &styles.bold)?;
        sheet.write_number_with_format(row, 5, number(account.closing), &styles.bold_money)?;
    }
    Ok(())
}

const TOTALS_HEADER: [&str; 10] = [
    "Currency",
    "Payments",
    "Refunds (count)",
    "Gross",
    "Refunds",
    "Fees",
    "Net",
    "Collected elsewhere",
    "Paid out",
    "Days",
];
const LINE_HEADER: [&str; 9] = [
    "At (UTC)", "Line", "Payment", "Refund", "Via", "Amount", "Fee", "Net", "Currency",
];

fn totals_row(
    sheet: &mut Worksheet,
    styles: &Styles,
    row: u32,
    t: &SettlementTotals,
) -> Result<(), XlsxError> {
    sheet.write_string(row, 0, &t.currency)?;
    sheet.write_number(row, 1, t.payments as f64)?;
    sheet.write_number(row, 2, t.refunds_count as f64)?;
    for (col, amount) in [
        t.gross,
        t.refunds,
        t.fees,
        t.net,
        t.collected_elsewhere,
        t.net - t.collected_elsewhere,
    ]
    .into_iter()
    .enumerate()
    {
        sheet.write_number_with_format(row, col as u16 + 3, number(amount), &styles.money)?;
    }
    Ok(())
}

fn settlement(workbook: &mut Workbook, styles: &Styles, s: &Settlement) -> anyhow::Result<()> {
    let several_currencies = s.totals.len() > 1;
    let mut taken = vec!["Totals".to_owned()];
    let totals = workbook.add_worksheet();
    totals.set_name("Totals")?;
    header(totals, styles, &TOTALS_HEADER)?;
    let mut row = 1;
    for t in &s.totals {
        totals_row(totals, styles, row, t)?;
        let days = s
            .days
            .iter()
            .filter(|d| d.totals.currency == t.currency)
            .count();
        totals.write_number(row, 9, days as f64)?;
        row += 1;
    }
    totals.write_string(
        row + 1,
        0,
        format!(
            "Provider {} ({}), {} to {} (whole days, UTC)",
            s.provider_id, s.provider, s.from, s.to
        ),
    )?;

    for d in &s.days {
        let wanted = if several_currencies {
            format!("{} {}", d.day, d.totals.currency)
        } else {
            d.day.to_string()
        };
        let name = sheet_name(&wanted, &mut taken);
        let sheet = workbook.add_worksheet();
        sheet.set_name(name)?;
        header(sheet, styles, &LINE_HEADER)?;
        sheet.set_column_width(0, 20)?;
        sheet.set_column_width(2, 38)?;
        sheet.set_column_width(3, 38)?;
        let mut row = 1;
        for line in &d.lines {
            instant(sheet, styles, row, 0, line.at)?;
            sheet.write_string(row, 1, &line.kind)?;
            sheet.write_string(row, 2, line.payment_id.to_string())?;
            if let Some(refund) = line.refund_id {
                sheet.write_string(row, 3, refund.to_string())?;
            }
            sheet.write_string(row, 4, &line.via)?;
            let signed = if line.kind == "refund" {
                -line.amount
            } else {
                line.amount
            };
            sheet.write_number_with_format(row, 5, number(signed), &styles.money)?;
            sheet.write_number_with_format(row, 6, number(line.fee), &styles.money)?;
            sheet.write_number_with_format(row, 7, number(line.net()), &styles.money)?;
            sheet.write_string(row, 8, &d.totals.currency)?;
            row += 1;
        }
        sheet.write_string_with_format(row, 1, "the day", &styles.bold)?;
        sheet.write_number_with_format(
            row,
            5,
            number(d.totals.gross - d.totals.refunds),
            &styles.bold_money,
        )?;
        sheet.write_number_with_format(row, 6, number(d.totals.fees), &styles.bold_money)?;
        sheet.write_number_with_format(row, 7, number(d.totals.net), &styles.bold_money)?;
        sheet.write_string(row, 8, &d.totals.currency)?;
    }
    Ok(())
}
