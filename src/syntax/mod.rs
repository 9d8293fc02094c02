//! Syntax: `.site` text to a syntax tree with spans, and syntax errors.
//!
//! This stage knows the shapes of the language (entries, blocks, values) but
//! not what any keyword means; that is `resolve`'s job. It never fails: broken
//! input yields a partial tree and diagnostics. It does no IO.

pub mod ast;
mod error;
mod input;
pub(crate) mod parser;

pub use parser::{parse, MAX_DEPTH};

use crate::diagnostic::Diagnostic;
use crate::source::{FileId, SourceMap};

/// Reads a file's bytes as a `.site` source: invalid UTF-8 is reported at the
/// first bad byte, and the valid part before it is still parsed.
pub fn decode(sources: &mut SourceMap, name: &str, bytes: Vec<u8>) -> (FileId, Option<Diagnostic>) {
    match String::from_utf8(bytes) {
        Ok(text) => (sources.add(name, text), None),
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let bytes = e.into_bytes();
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let file = sources.add(name, text);
            let diagnostic = Diagnostic::error("E001", "this file is not valid UTF-8")
                .primary(
                    crate::source::Span::new(file, valid, valid + 1),
                    "invalid byte here",
                )
                .help("save the file as UTF-8");
            (file, Some(diagnostic))
        }
    }
}
