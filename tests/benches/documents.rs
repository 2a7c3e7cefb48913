//! How long a document takes to render, and how big it is: a receipt of 5 bills and a 12-month
//! statement (6 providers, 72 bills, 12 payments), each as PDF and as CSV, built in memory
//! (`qbill_core::documents::sample`); no database, no service.
//!
//!     cargo bench -p qbill-tests --bench documents -- [renders per document, default 50]
//!
//! Each render is of a different document (other ids, every amount a cent more than the last
//! time), as in a worker: Typst memoises what it laid out, and the same document again would only
//! measure its cache. The first PDF of the process is timed apart: it builds Typst's library and
//! reads the fonts, what a Lambda's first request pays. A benchmark, not a test: it asserts
//! nothing but that every render succeeded.

use std::time::{Duration, Instant};

use qbill_core::documents::{Document, Format, render, sample};
use qbill_core::types::BillId;
use rust_decimal::Decimal;
use uuid::Uuid;

const WARM_UP: usize = 3;

fn main() {
    let renders: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(50);
    let documents = [
        ("receipt", Document::Receipt(sample::receipt(5))),
        ("statement", Document::Statement(sample::statement(12, 6))),
    ];
    let started = Instant::now();
    render::pdf(&documents[0].1).expect("the first PDF");
    println!(
        "first PDF of the process (cold): {:.1} ms",
        ms(started.elapsed())
    );
    println!("{renders} renders of each, after {WARM_UP} to warm up");
    println!(
        "{:>9} {:>6} {:>8} {:>8} {:>9} {:>8}",
        "document", "format", "bytes", "min ms", "median ms", "p95 ms"
    );
    for (name, document) in &documents {
        for format in [Format::Pdf, Format::Csv] {
            let mut bytes = Vec::with_capacity(renders);
            let mut times = Vec::with_capacity(renders);
            for i in 0..WARM_UP + renders {
                let document = vary(document, i);
                let started = Instant::now();
                let rendered = render::render(&document, format).expect("rendered");
                if i >= WARM_UP {
                    times.push(started.elapsed());
                    bytes.push(rendered.len());
                }
            }
            bytes.sort_unstable();
            let bytes = bytes[bytes.len() / 2];
            times.sort_unstable();
            let p95 = times[(times.len() * 95).div_ceil(100).saturating_sub(1)];
            println!(
                "{name:>9} {:>6} {bytes:>8} {:>8.3} {:>9.3} {:>8.3}",
                format.as_str(),
                ms(times[0]),
                ms(times[times.len() / 2]),
                ms(p95),
            );
        }
    }
    // Linux says how much memory the process held at most: Typst's cache and the fonts.
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(peak) = status.lines().find(|l| l.starts_with("VmHWM:"))
    {
        println!("peak resident memory: {}", peak["VmHWM:".len()..].trim());
    }
}

/// `document` made different for the `i`th render: other ids, every amount `i` cents more.
fn vary(document: &Document, i: usize) -> Document {
    let more = |amount: &mut Decimal| *amount += Decimal::new(i as i64, 2);
    let mut document = document.clone();
    match &mut document {
        Document::Receipt(r) => {
            r.payment_id = Uuid::from_u128(i as u128);
            for b in &mut r.bills {
                b.bill_id = BillId(b.bill_id.0 + 1000 * i as i64);
                more(&mut b.amount);
            }
            r.total = r.bills.iter().map(|b| b.amount).sum();
        }
        Document::Statement(s) => {
            for p in &mut s.providers {
                [&mut p.opening, &mut p.closing].into_iter().for_each(more);
                for e in &mut p.entries {
                    e.reference = format!("{}-{i}", e.reference);
                    [&mut e.amount, &mut e.balance].into_iter().for_each(more);
                }
            }
        }
        Document::Bill(_) | Document::Settlement(_) => {
            unreachable!("no bill or settlement is measured")
        }
    }
    document
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
