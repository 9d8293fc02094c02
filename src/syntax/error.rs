//! The parser's error type.
//!
//! nom combinators report failures through `ParseError`; ours keeps the
//! furthest offset any alternative reached and the set of things that would
//! have been accepted there, so a message can say "expected `=`, `{`, or a
//! label, found `:`". Problems that are already fully described (an
//! unterminated string, nesting too deep) travel as a finished diagnostic.

use crate::diagnostic::Diagnostic;
use nom::error::{ErrorKind, ParseError};

use super::parser::In;

#[derive(Debug)]
pub struct PError {
    /// Byte offset where parsing stopped.
    pub offset: usize,
    /// What would have been accepted at `offset`, in message words.
    pub expected: Vec<&'static str>,
    /// A problem that is already described in full.
    pub diagnostic: Option<Box<Diagnostic>>,
    /// Parsing cannot go on after this one (end of file inside a block,
    /// nesting too deep): recovery would only produce noise.
    pub abort: bool,
    /// A block reached the end of the file without its `}`.
    pub unclosed_block: bool,
}

impl PError {
    pub fn expected(offset: usize, expected: &[&'static str]) -> PError {
        PError {
            offset,
            expected: expected.to_vec(),
            diagnostic: None,
            abort: false,
            unclosed_block: false,
        }
    }

    pub fn diagnostic(offset: usize, diagnostic: Diagnostic, abort: bool) -> PError {
        PError {
            offset,
            expected: Vec::new(),
            diagnostic: Some(Box::new(diagnostic)),
            abort,
            unclosed_block: false,
        }
    }
}

impl<'a> ParseError<In<'a>> for PError {
    fn from_error_kind(input: In<'a>, _kind: ErrorKind) -> Self {
        PError::expected(input.location_offset(), &[])
    }

    fn append(_input: In<'a>, _kind: ErrorKind, other: Self) -> Self {
        other
    }

    /// Of two failed alternatives keep the one that got further; at the same
    /// place, merge what each expected.
    fn or(mut self, other: Self) -> Self {
        if self.diagnostic.is_some() || other.offset < self.offset {
            return self;
        }
        if other.diagnostic.is_some() || other.offset > self.offset {
            return other;
        }
        for e in other.expected {
            if !self.expected.contains(&e) {
                self.expected.push(e);
            }
        }
        self
    }
}
