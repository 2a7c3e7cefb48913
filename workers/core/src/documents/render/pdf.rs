//! PDFs, typeset by Typst from the templates in `workers/core/templates/documents/`. The
//! templates and the fonts (DejaVu Sans, `workers/core/fonts/`) are compiled into the binary, so
//! a Lambda needs no files; the document reaches its template as the virtual file `/data.json`
//! ([`super::view`]).
//!
//! The same document gives the same bytes: no clock is read (`today()` is unknown, the PDF
//! carries no creation date) and the PDF's identifier is derived from the data.

use std::fmt::Write as _;
use std::sync::LazyLock;

use sha2::{Digest, Sha256};
use typst::diag::{FileError, FileResult, Severity, SourceDiagnostic};
use typst::foundations::{Bytes, Datetime, Duration, Smart};
use typst::syntax::{FileId, RootedPath, Source, VirtualPath, VirtualRoot};
use typst::text::{Font, FontBook};
use typst::utils::LazyHash;
use typst::{Library, LibraryExt, World, WorldExt};
use typst_pdf::PdfOptions;

use super::super::Document;
use super::view::View;

macro_rules! templates {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../../templates/documents/", $name))),)*]
    };
}

/// The templates by file name; each document's is named after its kind.
const TEMPLATES: &[(&str, &str)] = templates![
    "_common.typ",
    "receipt.typ",
    "bill.typ",
    "statement.typ",
    "settlement.typ"
];

const FONTS: &[&[u8]] = &[
    include_bytes!("../../../fonts/DejaVuSans.ttf"),
    include_bytes!("../../../fonts/DejaVuSans-Bold.ttf"),
];

/// How many renders a memoised result of Typst's may go unused before it is dropped: none, so a
/// long-running worker holds no layouts between documents. Two documents share little but the
/// templates: in the documents benchmark, keeping results for 4 renders was no faster and took
/// twice the peak memory (105 MB against 48 MB).
const CACHE_AGE: usize = 0;

/// What every render shares, built once per process.
struct Shared {
    library: LazyHash<Library>,
    book: LazyHash<FontBook>,
    fonts: Vec<Font>,
    sources: Vec<Source>,
    data: FileId,
}

static SHARED: LazyLock<Shared> = LazyLock::new(|| {
    let fonts: Vec<Font> = FONTS
        .iter()
        .flat_map(|data| Font::iter(Bytes::new(*data)))
        .collect();
    assert_eq!(fonts.len(), FONTS.len(), "every embedded font loads");
    Shared {
        library: LazyHash::new(Library::default()),
        book: LazyHash::new(FontBook::from_fonts(&fonts)),
        fonts,
        sources: TEMPLATES
            .iter()
            .map(|(name, text)| Source::new(file_id(name), (*text).to_owned()))
            .collect(),
        data: file_id("data.json"),
    }
});

fn file_id(name: &str) -> FileId {
    let path = VirtualPath::new(format!("/{name}")).expect("a template name is a valid path");
    RootedPath::new(VirtualRoot::Project, path).intern()
}

/// One document being typeset: its template and its data.
struct Job {
    main: FileId,
    data: Bytes,
}

impl World for Job {
    fn library(&self) -> &LazyHash<Library> {
        &SHARED.library
    }

    fn book(&self) -> &LazyHash<FontBook> {
        &SHARED.book
    }

    fn main(&self) -> FileId {
        self.main
    }

    fn source(&self, id: FileId) -> FileResult<Source> {
        SHARED
            .sources
            .iter()
            .find(|s| s.id() == id)
            .cloned()
            .ok_or_else(|| FileError::NotFound(id.vpath().get_with_slash().into()))
    }

    fn file(&self, id: FileId) -> FileResult<Bytes> {
        if id == SHARED.data {
            Ok(self.data.clone())
        } else {
            self.source(id)
                .map(|s| Bytes::from_string(s.text().to_owned()))
        }
    }

    fn font(&self, index: usize) -> Option<Font> {
        SHARED.fonts.get(index).cloned()
    }

    fn today(&self, _offset: Option<Duration>) -> Option<Datetime> {
        None
    }
}

/// A typeset document and what Typst warned about (none is expected).
pub(super) struct Typeset {
    pub bytes: Vec<u8>,
    pub warnings: Vec<String>,
}

/// The document as a PDF; Typst's warnings are logged.
pub fn pdf(document: &Document) -> anyhow::Result<Vec<u8>> {
    let typeset = typeset(document)?;
    for warning in &typeset.warnings {
        tracing::warn!(document.kind = document.kind().as_str(), "{warning}");
    }
    Ok(typeset.bytes)
}

pub(super) fn typeset(document: &Document) -> anyhow::Result<Typeset> {
    let data = serde_json::to_vec(&View::new(document))?;
    let mut warnings = missing_glyphs(&data);
    let kind = document.kind().as_str();
    let job = Job {
        main: file_id(&format!("{kind}.typ")),
        data: Bytes::new(data),
    };
    let mut typeset = compile(&job)
        .map_err(|errors| anyhow::anyhow!("typesetting the {kind} failed: {errors}"))?;
    warnings.append(&mut typeset.warnings);
    Ok(Typeset {
        bytes: typeset.bytes,
        warnings,
    })
}

/// Typesets `job`; its errors, each where in which template, on failure.
fn compile(job: &Job) -> Result<Typeset, String> {
    // Names this PDF among others (a PDF reader may tell two files apart by it); taken from the
    // data, so the same document keeps it.
    let ident = crate::types::hex(
        &Sha256::new()
            .chain_update(job.main.vpath().get_without_slash())
            .chain_update(job.data.as_slice())
            .finalize(),
    );
    let compiled = typst::compile(job);
    let warnings = compiled.warnings.iter().map(|w| describe(job, w)).collect();
    let exported = compiled.output.and_then(|paged| {
        let options = PdfOptions {
            ident: Smart::Custom(ident),
            ..PdfOptions::default()
        };
        typst_pdf::pdf(&paged, &options)
    });
    typst::comemo::evict(CACHE_AGE);
    match exported {
        Ok(bytes) => Ok(Typeset { bytes, warnings }),
        Err(errors) => Err(errors
            .iter()
            .map(|e| describe(job, e))
            .collect::<Vec<_>>()
            .join("; ")),
    }
}

/// `bill.typ:12:5: error: unknown variable: dat (hint: …)`.
fn describe(world: &Job, diagnostic: &SourceDiagnostic) -> String {
    let severity = match diagnostic.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let place = diagnostic.span.id().map(|id| {
        let name = id.vpath().get_without_slash().to_owned();
        let line_column = world.range(diagnostic.span).and_then(|range| {
            let source = world.source(id).ok()?;
            source.lines().byte_to_line_column(range.start)
        });
        match line_column {
            Some((line, column)) => format!("{name}:{}:{}: ", line + 1, column + 1),
            None => format!("{name}: "),
        }
    });
    let mut text = format!(
        "{}{severity}: {}",
        place.unwrap_or_default(),
        diagnostic.message
    );
    for hint in &diagnostic.hints {
        let _ = write!(text, " (hint: {})", hint.v);
    }
    text
}

/// Characters of the data that no embedded font can draw (they would print as empty boxes),
/// counted rather than named: the data is a household's.
fn missing_glyphs(data: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(data);
    let missing = text
        .chars()
        .filter(|c| !c.is_control())
        .filter(|&c| {
            !SHARED
                .fonts
                .iter()
                .any(|f| f.info().coverage.contains(c as u32))
        })
        .count();
    if missing == 0 {
        Vec::new()
    } else {
        vec![format!(
            "{missing} characters have no glyph in DejaVu Sans and print as empty boxes"
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::documents::{EntryKind, sample};

    /// The text of every page, as a PDF reader extracts it, and the number of pages.
    fn text_of(pdf: &[u8]) -> (String, usize) {
        let document = lopdf::Document::load_mem(pdf).expect("a PDF lopdf reads");
        let pages: Vec<u32> = document.get_pages().keys().copied().collect();
        let text = document.extract_text(&pages).expect("its text");
        (text, pages.len())
    }

    fn typeset_cleanly(document: &Document) -> Vec<u8> {
        let typeset = typeset(document).expect("it typesets");
        assert!(typeset.warnings.is_empty(), "{:?}", typeset.warnings);
        assert!(typeset.bytes.starts_with(b"%PDF-"));
        typeset.bytes
    }

    #[test]
    fn a_receipt_carries_its_payment_its_bills_and_its_total_as_text() {
        let receipt = sample::receipt(5);
        let (text, pages) = text_of(&typeset_cleanly(&Document::Receipt(receipt.clone())));
        assert_eq!(pages, 1);
        for expected in [
            "Receipt",
            "8a6e0f4e-5d1c-4b7a-9e2f-3c4d5e6f7a8b",
            "3 December 2026, 14:05 UTC",
            "100042",
            "100046",
            "€1,234.50",
            "€6,172.60",
            "Apartment 42",
            "Page 1 of 1",
        ] {
            assert!(text.contains(expected), "{expected:?} is not in {text:?}");
        }
    }

    #[test]
    fn the_same_document_gives_the_same_bytes() {
        for document in [
            Document::Receipt(sample::receipt(3)),
            Document::Bill(sample::bill("open")),
            Document::Statement(sample::statement(3, 2)),
        ] {
            let first = typeset_cleanly(&document);
            // Another document in between, as in a worker, must not change the next one.
            typeset_cleanly(&Document::Receipt(sample::receipt(1)));
            assert!(first == typeset_cleanly(&document), "{:?}", document.kind());
        }
    }

    #[test]
    fn a_year_long_statement_runs_over_numbered_pages() {
        let statement = sample::statement(12, 6);
        let count = |kind| {
            let entries = statement.providers.iter().flat_map(|p| &p.entries);
            entries.filter(|e| e.kind == kind).count()
        };
        // 72 bills, one voided, the others paid by 12 payments (one a month).
        assert_eq!(
            [EntryKind::Bill, EntryKind::Void, EntryKind::Payment].map(count),
            [72, 1, 71]
        );
        let (text, pages) = text_of(&typeset_cleanly(&Document::Statement(statement)));
        assert!(pages > 1, "{pages} page");
        assert!(text.contains(&format!("Page 1 of {pages}")), "{text}");
        assert!(text.contains(&format!("Page {pages} of {pages}")));
        for expected in [
            "Summary",
            "All providers",
            "Closing balance",
            "Fibre <Net> #1",
        ] {
            assert!(text.contains(expected), "{expected:?} is not in the text");
        }
    }

    #[test]
    fn data_is_printed_literally_never_read_as_markup() {
        for status in ["open", "overdue", "paid", "void"] {
            let mut bill = sample::bill(status);
            bill.apartment.address = "Zürich — Straße 1 & 2".to_owned();
            let (text, _) = text_of(&typeset_cleanly(&Document::Bill(bill)));
            let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
            for expected in [
                "Zürich — Straße 1 & 2",
                "night <rate> #1 $5 *bold*",
                "_under_ @ref",
                "\"Basis\" tariff",
                "€0.284615",
                "-€15.00",
                "€1,234.50",
                &status.to_uppercase(),
            ] {
                assert!(text.contains(expected), "{expected:?} is not in {text:?}");
            }
        }
    }

    #[test]
    fn a_character_no_font_can_draw_is_reported_not_fatal() {
        let mut receipt = sample::receipt(1);
        receipt.apartment.address = "北京市 1".to_owned();
        let typeset = typeset(&Document::Receipt(receipt)).expect("it still typesets");
        assert_eq!(
            typeset.warnings,
            ["3 characters have no glyph in DejaVu Sans and print as empty boxes"]
        );
    }

    #[test]
    fn a_template_error_says_where_it_is() {
        let job = Job {
            main: file_id("receipt.typ"),
            data: Bytes::new(b"{\"title\": \"Receipt\"}".to_vec()),
        };
        let error = compile(&job).err().expect("the data lacks fields");
        assert!(
            error.contains(".typ:") && error.contains("error: "),
            "{error}"
        );
    }
}
