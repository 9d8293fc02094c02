//! Source files and spans.
//!
//! A `SourceMap` owns the text of every file a compilation reads (the user's
//! specs and the stdlib modules embedded in the binary) and hands out
//! `FileId`s. A `Span` is a byte range in one of those files; every AST node,
//! resource and diagnostic carries one, so anything sitec says can point back
//! at the line of the `.site` file that caused it. Line and column are derived
//! from the span only when a diagnostic is rendered.

use codespan_reporting::files::{self, Files};
use std::ops::Range;
use std::sync::OnceLock;

/// Identifies one file in a [`SourceMap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FileId(pub usize);

/// A byte range `start..end` in one source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub file: FileId,
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(file: FileId, start: usize, end: usize) -> Span {
        Span { file, start, end }
    }

    /// The smallest span that covers both `self` and `other` (same file).
    pub fn to(self, other: Span) -> Span {
        Span::new(
            self.file,
            self.start.min(other.start),
            self.end.max(other.end),
        )
    }

    pub fn range(self) -> std::ops::Range<usize> {
        self.start..self.end
    }
}

/// A 1-based line and column, as editors count them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// Every file read during one compilation.
#[derive(Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

/// One file: its name, its text, and where its lines start, worked out the
/// first time a diagnostic needs them (most compilations render none, and
/// indexing every line of a large spec up front was 5% of `sitec check`).
struct SourceFile {
    name: String,
    text: String,
    line_starts: OnceLock<Vec<usize>>,
    /// The text as a diagnostic's excerpt shows it, when that differs
    /// (see [`shown`]); made the first time an excerpt needs it.
    shown: OnceLock<Option<String>>,
}

/// `text` safe to print on a terminal, byte for byte as long: every
/// control character but a tab and a line end (a lone `\r` too), and the
/// invisible characters that reorder a line (bidirectional overrides), as
/// `?` (one byte), `¿` (two) or `\u{fffd}` (three), so spans still fall on
/// the same characters. `None` when there is nothing to replace.
fn shown(text: &str) -> Option<String> {
    let unsafe_char = |(at, c): (usize, char)| {
        let lone_cr = c == '\r' && !text[at + 1..].starts_with('\n');
        (c.is_control() && c != '\t' && c != '\n' && (c != '\r' || lone_cr))
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    text.char_indices().find(|ic| unsafe_char(*ic))?;
    Some(
        text.char_indices()
            .map(|(at, c)| match c.len_utf8() {
                _ if !unsafe_char((at, c)) => c,
                1 => '?',
                2 => '\u{bf}',
                _ => '\u{fffd}',
            })
            .collect(),
    )
}

impl SourceFile {
    fn line_starts(&self) -> &[usize] {
        self.line_starts
            .get_or_init(|| files::line_starts(&self.text).collect())
    }

    /// The byte where line `line_index` starts (the text's length for the
    /// line after the last), as codespan's `SimpleFile` has it.
    fn line_start(&self, line_index: usize) -> Result<usize, files::Error> {
        let starts = self.line_starts();
        match line_index.cmp(&starts.len()) {
            std::cmp::Ordering::Less => Ok(starts[line_index]),
            std::cmp::Ordering::Equal => Ok(self.text.len()),
            std::cmp::Ordering::Greater => Err(files::Error::LineTooLarge {
                given: line_index,
                max: starts.len() - 1,
            }),
        }
    }
}

impl SourceMap {
    pub fn new() -> SourceMap {
        SourceMap::default()
    }

    /// Adds a file; `name` is how diagnostics will show it.
    pub fn add(&mut self, name: impl Into<String>, text: impl Into<String>) -> FileId {
        self.files.push(SourceFile {
            name: name.into(),
            text: text.into(),
            line_starts: OnceLock::new(),
            shown: OnceLock::new(),
        });
        FileId(self.files.len() - 1)
    }

    fn file(&self, file: usize) -> Result<&SourceFile, files::Error> {
        self.files.get(file).ok_or(files::Error::FileMissing)
    }

    pub fn name(&self, file: FileId) -> &str {
        self.files
            .get(file.0)
            .map(|f| f.name.as_str())
            .unwrap_or("<unknown>")
    }

    pub fn text(&self, file: FileId) -> &str {
        self.files
            .get(file.0)
            .map(|f| f.text.as_str())
            .unwrap_or("")
    }

    /// Line and column (1-based; the column counts characters) of a byte offset.
    pub fn position(&self, file: FileId, offset: usize) -> Position {
        match self.location(file.0, offset) {
            Ok(loc) => Position {
                line: loc.line_number,
                column: loc.column_number,
            },
            Err(_) => Position { line: 1, column: 1 },
        }
    }

    /// `file:line:column` of a span's start, the form editors jump to.
    pub fn describe(&self, span: Span) -> String {
        let pos = self.position(span.file, span.start);
        format!("{}:{}:{}", self.name(span.file), pos.line, pos.column)
    }

    /// The files as codespan-reporting reads them.
    pub(crate) fn files(&self) -> &SourceMap {
        self
    }
}

impl<'a> Files<'a> for SourceMap {
    type FileId = usize;
    type Name = String;
    type Source = &'a str;

    fn name(&'a self, file: usize) -> Result<String, files::Error> {
        Ok(self.file(file)?.name.clone())
    }

    /// What an excerpt shows: the text with control characters replaced.
    fn source(&'a self, file: usize) -> Result<&'a str, files::Error> {
        let f = self.file(file)?;
        Ok(f.shown
            .get_or_init(|| shown(&f.text))
            .as_deref()
            .unwrap_or(&f.text))
    }

    fn line_index(&'a self, file: usize, byte_index: usize) -> Result<usize, files::Error> {
        Ok(self
            .file(file)?
            .line_starts()
            .binary_search(&byte_index)
            .unwrap_or_else(|next_line| next_line - 1))
    }

    fn line_range(&'a self, file: usize, line_index: usize) -> Result<Range<usize>, files::Error> {
        let f = self.file(file)?;
        Ok(f.line_start(line_index)?..f.line_start(line_index + 1)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_show_no_control_character_and_keep_every_offset() {
        let text = "a\u{1b}[31mb\r\nc\rd\u{85}e\u{202e}f\tg\u{0}";
        let shown = shown(text).expect("something replaced");
        assert_eq!(shown, "a?[31mb\r\nc?d\u{bf}e\u{fffd}f\tg?");
        assert_eq!(shown.len(), text.len());
        assert_eq!(super::shown("plain\ttext\r\n"), None);
    }
}
