//! Made-up documents, built in memory: for the render tests, the documents benchmark and a look
//! at the layout. Nothing here reads the database.

use chrono::{DateTime, Days, Months, NaiveDate, TimeZone, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::{
    Apartment, Bill, BillLine, Entry, EntryKind, ProviderAccount, Receipt, ReceiptBill, Statement,
};
use crate::types::{ApartmentId, BillId, Currency};

const PROVIDERS: [(&str, &str); 6] = [
    ("Northwind Energy", "electricity"),
    ("Stadtwerke Zürich", "gas"),
    ("Aqua & Söhne", "cold water"),
    ("Fernwärme Nord", "heating"),
    ("Müllabfuhr Süd", "waste"),
    ("Fibre <Net> #1", "internet"),
];

fn eur() -> Currency {
    Currency::parse("EUR").expect("EUR is a currency")
}

fn apartment() -> Apartment {
    Apartment {
        id: ApartmentId(42),
        address: "Hauptstraße 7, 8001 Zürich — Straße & Söhne".to_owned(),
    }
}

fn at(day: NaiveDate, hour: u32) -> DateTime<Utc> {
    Utc.from_utc_datetime(&day.and_hms_opt(hour, 5, 9).expect("a valid time"))
}

/// The payment `8a6e0f4e-…` of `bills` bills (100042 and on), each `1234.50` more than the last
/// by a cent.
pub fn receipt(bills: usize) -> Receipt {
    let start = NaiveDate::from_ymd_opt(2026, 11, 1).expect("a valid day");
    let bills: Vec<ReceiptBill> = (0..bills)
        .map(|i| {
            let (provider, utility) = PROVIDERS[i % PROVIDERS.len()];
            ReceiptBill {
                bill_id: BillId(100_042 + i as i64),
                utility: utility.to_owned(),
                provider: provider.to_owned(),
                period_start: start,
                period_end: NaiveDate::from_ymd_opt(2026, 11, 30).expect("a valid day"),
                amount: Decimal::new(123_450 + i as i64, 2),
            }
        })
        .collect();
    Receipt {
        apartment: apartment(),
        payment_id: Uuid::parse_str("8a6e0f4e-5d1c-4b7a-9e2f-3c4d5e6f7a8b").expect("a uuid"),
        paid_at: at(
            NaiveDate::from_ymd_opt(2026, 12, 3).expect("a valid day"),
            14,
        ),
        currency: eur(),
        total: bills.iter().map(|b| b.amount).sum(),
        bills,
    }
}

/// Bill 100042 with lines whose descriptions hold what markup would read as commands.
pub fn bill(status: &str) -> Bill {
    let lines = vec![
        BillLine {
            description: "Energy, day rate (kWh) & night <rate> #1 $5 *bold* _under_ @ref"
                .to_owned(),
            quantity: Some("1520.5".to_owned()),
            unit_price: Some("0.284615".to_owned()),
            amount: Decimal::new(43_275, 2),
        },
        BillLine {
            description: "Standing charge, \"Basis\" tariff\nsecond line".to_owned(),
            quantity: Some("30".to_owned()),
            unit_price: Some("0.5".to_owned()),
            amount: Decimal::new(1500, 2),
        },
        BillLine {
            description: "Network fee".to_owned(),
            quantity: None,
            unit_price: None,
            amount: Decimal::new(80_175, 2),
        },
        BillLine {
            description: "Credit for an outage".to_owned(),
            quantity: None,
            unit_price: None,
            amount: Decimal::new(-1500, 2),
        },
    ];
    Bill {
        apartment: apartment(),
        bill_id: BillId(100_042),
        provider: "Stadtwerke Zürich".to_owned(),
        account_number: Some("ACC-0042-ZH".to_owned()),
        utility: "electricity".to_owned(),
        period_start: NaiveDate::from_ymd_opt(2026, 11, 1).expect("a valid day"),
        period_end: NaiveDate::from_ymd_opt(2026, 11, 30).expect("a valid day"),
        due_date: NaiveDate::from_ymd_opt(2026, 12, 20).expect("a valid day"),
        issued_at: at(
            NaiveDate::from_ymd_opt(2026, 12, 1).expect("a valid day"),
            6,
        ),
        status: status.to_owned(),
        currency: eur(),
        total: lines.iter().map(|l| l.amount).sum(),
        late_fee_of: (status == "overdue").then_some(BillId(100_001)),
        payment_id: (status == "paid")
            .then(|| Uuid::parse_str("8a6e0f4e-5d1c-4b7a-9e2f-3c4d5e6f7a8b").expect("a uuid")),
        lines,
    }
}

/// `months` whole months to 30 November 2026, of `providers` providers (at most six). Each
/// provider bills on the last day of every month; on the 10th one payment settles the bills of
/// the month before (the first month, what was owed at the opening). The third provider voids its
/// fourth bill, which leaves it out of the next payment.
pub fn statement(months: u32, providers: usize) -> Statement {
    let to = NaiveDate::from_ymd_opt(2026, 11, 30).expect("a valid day");
    let from = (to + Days::new(1)) - Months::new(months);
    let payment =
        |m: u32| Uuid::from_u128(0x8a6e_0f4e_5d1c_4b7a_9e2f_0000_0000_0000 + u128::from(m));
    let accounts: Vec<ProviderAccount> = PROVIDERS[..providers.min(PROVIDERS.len())]
        .iter()
        .enumerate()
        .map(|(p, (provider, utility))| {
            let opening = Decimal::new(8_800 + 1_111 * p as i64, 2);
            let (mut balance, mut charged, mut credited, mut paid) =
                (opening, Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
            let mut entries = Vec::new();
            let mut push = |at, kind, reference: String, description: String, amount| {
                balance += amount;
                entries.push(Entry {
                    at,
                    kind,
                    reference,
                    description,
                    amount,
                    balance,
                });
            };
            let mut owed = Some((99_990 + p as i64, opening));
            for m in 0..months {
                let start = from + Months::new(m);
                let end = start + Months::new(1) - Days::new(1);
                if let Some((bill, amount)) = owed.take() {
                    paid += amount;
                    push(
                        at(start + Days::new(9), 18),
                        EntryKind::Payment,
                        payment(m).to_string(),
                        format!("payment of bill {bill}"),
                        -amount,
                    );
                }
                let bill = 100_000 + i64::from(m) * 10 + p as i64;
                let amount = Decimal::new(9_000 + 137 * i64::from(m) + 2_500 * p as i64, 2);
                charged += amount;
                push(
                    at(end, 6),
                    EntryKind::Bill,
                    bill.to_string(),
                    format!("{utility}, {}", crate::format::period(start, end)),
                    amount,
                );
                owed = Some((bill, amount));
                if p == 2 && m == 3 && m + 1 < months {
                    credited += amount;
                    owed = None;
                    push(
                        at(end + Days::new(4), 9),
                        EntryKind::Void,
                        bill.to_string(),
                        format!("bill {bill} voided"),
                        -amount,
                    );
                }
            }
            ProviderAccount {
                provider: (*provider).to_owned(),
                opening,
                charged,
                credited,
                paid,
                closing: balance,
                entries,
            }
        })
        .collect();
    Statement::new(apartment(), eur(), from, to, accounts)
}
