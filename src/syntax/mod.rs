//! Syntax: `.site` text to a syntax tree with spans, and syntax errors.
//!
//! This stage knows the shapes of the language (entries, blocks, values) but
//! not what any keyword means; that is `resolve`'s job. It never fails: broken
//! input yields a partial tree and diagnostics. It does no IO.

pub mod ast;
mod error;
mod input;
pub(crate) mod parser;
pub mod units;

pub use parser::{parse, MAX_DEPTH};

use crate::diagnostic::Diagnostic;
use crate::source::{FileId, SourceMap, Span};

/// The byte-order mark some editors write at the start of a UTF-8 file.
pub const BOM: &str = "\u{feff}";

/// Reads a file's bytes as a `.site` source, as every command that reads a
/// spec does (`check`, `fmt`, the language server): a byte-order mark is
/// dropped (spans count from after it); invalid UTF-8 is reported at the
/// first bad byte and nothing is parsed (a Latin-1 or binary file would only
/// give noise). Returns the file, its tree and its syntax errors.
pub fn read(
    sources: &mut SourceMap,
    name: &str,
    bytes: Vec<u8>,
) -> (FileId, ast::SourceFile, Vec<Diagnostic>) {
    let (file, decode_error) = decode(sources, name, bytes);
    let text = if decode_error.is_some() {
        ""
    } else {
        sources.text(file)
    };
    let (tree, mut diagnostics) = parse(file, text);
    diagnostics.extend(decode_error);
    (file, tree, diagnostics)
}

/// Decodes a file's bytes: a byte-order mark is dropped; invalid UTF-8 is
/// reported at the first bad byte (the text kept is the file made valid).
pub fn decode(sources: &mut SourceMap, name: &str, bytes: Vec<u8>) -> (FileId, Option<Diagnostic>) {
    let mut bytes = bytes;
    if bytes.starts_with(BOM.as_bytes()) {
        bytes.drain(..BOM.len());
    }
    match String::from_utf8(bytes) {
        Ok(text) => (sources.add(name, text), None),
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let bytes = e.into_bytes();
            let binary = bytes.contains(&0);
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let file = sources.add(name, text);
            // The bad byte became U+FFFD, three bytes long.
            let at = Span::new(file, valid, valid + '\u{fffd}'.len_utf8());
            let diagnostic = if binary {
                Diagnostic::error("E001", "this file is not text")
                    .primary(at, "not UTF-8 text from here")
                    .help("a spec is a text file saved as UTF-8; check the file's name")
            } else {
                Diagnostic::error("E001", "this file is not valid UTF-8")
                    .primary(at, "invalid byte here")
                    .help("save the file as UTF-8")
            };
            (file, Some(diagnostic))
        }
    }
}
