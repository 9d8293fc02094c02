//! Source files and spans.
//!
//! A `SourceMap` owns the text of every file a compilation reads (the user's
//! specs and the stdlib modules embedded in the binary) and hands out
//! `FileId`s. A `Span` is a byte range in one of those files; every AST node,
//! resource and diagnostic carries one, so anything sitec says can point back
//! at the line of the `.site` file that caused it. Line and column are derived
//! from the span only when a diagnostic is rendered.

use codespan_reporting::files::{Files, SimpleFiles};

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
    files: SimpleFiles<String, String>,
}

impl SourceMap {
    pub fn new() -> SourceMap {
        SourceMap::default()
    }

    /// Adds a file; `name` is how diagnostics will show it.
    pub fn add(&mut self, name: impl Into<String>, text: impl Into<String>) -> FileId {
        FileId(self.files.add(name.into(), text.into()))
    }

    pub fn name(&self, file: FileId) -> &str {
        self.files
            .get(file.0)
            .map(|f| f.name().as_str())
            .unwrap_or("<unknown>")
    }

    pub fn text(&self, file: FileId) -> &str {
        self.files
            .get(file.0)
            .map(|f| f.source().as_str())
            .unwrap_or("")
    }

    /// Line and column (1-based; the column counts characters) of a byte offset.
    pub fn position(&self, file: FileId, offset: usize) -> Position {
        match self.files.location(file.0, offset) {
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

    pub(crate) fn files(&self) -> &SimpleFiles<String, String> {
        &self.files
    }
}
