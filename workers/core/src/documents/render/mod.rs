//! Turns a [`Document`] into the bytes of a PDF or a CSV file.

use super::{Document, Format};

/// The document in `format`.
pub fn render(document: &Document, format: Format) -> anyhow::Result<Vec<u8>> {
    match format {
        Format::Pdf => pdf(document),
        Format::Csv => csv(document),
    }
}

pub fn pdf(_document: &Document) -> anyhow::Result<Vec<u8>> {
    anyhow::bail!("PDF rendering is not written yet")
}

pub fn csv(_document: &Document) -> anyhow::Result<Vec<u8>> {
    anyhow::bail!("CSV rendering is not written yet")
}
