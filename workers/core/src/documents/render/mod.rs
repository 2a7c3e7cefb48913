//! Turns a [`Document`] into the bytes of a PDF ([`pdf`], for people) or a CSV file ([`csv`],
//! for spreadsheets and programs). Both are pure and synchronous (a PDF takes tens of
//! milliseconds of CPU: run it off the async runtime) and give the same bytes for the same
//! document.

mod csv;
mod pdf;
mod view;

pub use self::csv::csv;
pub use self::pdf::pdf;
use super::{Document, Format};

/// The document in `format`.
pub fn render(document: &Document, format: Format) -> anyhow::Result<Vec<u8>> {
    match format {
        Format::Pdf => pdf(document),
        Format::Csv => csv(document),
    }
}
