//! Turns a [`Document`] into the bytes of a PDF ([`pdf`], for people), a CSV file ([`csv`], for
//! programs) or a spreadsheet with typed cells ([`xlsx`], statements and settlements). All are pure and synchronous (a PDF takes tens of
//! milliseconds of CPU: run it off the async runtime) and give the same bytes for the same
//! document.

mod csv;
mod pdf;
mod view;
mod xlsx;

pub use self::csv::csv;
pub use self::pdf::pdf;
pub use self::xlsx::xlsx;
use super::{Document, Format};

/// The document in `format`.
pub fn render(document: &Document, format: Format) -> anyhow::Result<Vec<u8>> {
    match format {
        Format::Pdf => pdf(document),
        Format::Csv => csv(document),
        Format::Xlsx => xlsx(document),
    }
}
