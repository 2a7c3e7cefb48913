//! Writes the sample documents (`qbill_core::documents::sample`) as PDF and CSV files, to look at
//! the layout:
//!
//!     cargo run -p qbill-core --example documents -- target/documents
//!     pdftoppm -png -r 60 target/documents/statement.pdf target/documents/statement

use std::path::PathBuf;

use qbill_core::documents::{Document, Format, render, sample};

fn main() -> anyhow::Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "target/documents".into()),
    );
    std::fs::create_dir_all(&dir)?;
    let documents = [
        ("receipt", Document::Receipt(sample::receipt(5))),
        ("bill", Document::Bill(sample::bill("overdue"))),
        ("bill-paid", Document::Bill(sample::bill("paid"))),
        ("statement", Document::Statement(sample::statement(12, 6))),
    ];
    for (name, document) in &documents {
        for format in [Format::Pdf, Format::Csv] {
            let path = dir.join(format!("{name}.{}", format.as_str()));
            std::fs::write(&path, render::render(document, format)?)?;
            println!("{}", path.display());
        }
    }
    Ok(())
}
