//! The parser's input: the text still to parse, its byte offset in the file,
//! and the parse context.
//!
//! A located input as nom_locate's `LocatedSpan` is, minus what sitec never
//! reads: `LocatedSpan` counts the new lines of every piece it splits off to
//! track a line number, which was a tenth of the parse. Spans are byte
//! ranges; lines are worked out only when a diagnostic is rendered.

use nom::{Compare, CompareResult, Input, Needed, Offset};
use std::str::{CharIndices, Chars};

#[derive(Clone, Copy, Debug)]
pub struct Located<'a, X> {
    fragment: &'a str,
    offset: usize,
    /// What every parse function sees besides the text.
    pub extra: X,
}

impl<'a, X: Copy> Located<'a, X> {
    /// The whole text, at offset 0.
    pub fn new_extra(text: &'a str, extra: X) -> Self {
        Located {
            fragment: text,
            offset: 0,
            extra,
        }
    }

    /// The text still to parse.
    pub fn fragment(&self) -> &'a str {
        self.fragment
    }

    /// Where the rest starts, in bytes from the start of the file.
    pub fn location_offset(&self) -> usize {
        self.offset
    }
}

impl<'a, X: Copy> Input for Located<'a, X> {
    type Item = char;
    type Iter = Chars<'a>;
    type IterIndices = CharIndices<'a>;

    fn input_len(&self) -> usize {
        self.fragment.len()
    }

    fn take(&self, index: usize) -> Self {
        Located {
            fragment: &self.fragment[..index],
            offset: self.offset,
            extra: self.extra,
        }
    }

    fn take_from(&self, index: usize) -> Self {
        Located {
            fragment: &self.fragment[index..],
            offset: self.offset + index,
            extra: self.extra,
        }
    }

    /// `(rest, taken)`, as nom expects.
    fn take_split(&self, index: usize) -> (Self, Self) {
        (self.take_from(index), self.take(index))
    }

    fn position<P>(&self, predicate: P) -> Option<usize>
    where
        P: Fn(Self::Item) -> bool,
    {
        self.fragment.find(predicate)
    }

    fn iter_elements(&self) -> Self::Iter {
        self.fragment.chars()
    }

    fn iter_indices(&self) -> Self::IterIndices {
        self.fragment.char_indices()
    }

    fn slice_index(&self, count: usize) -> Result<usize, Needed> {
        self.fragment.slice_index(count)
    }
}

impl<X> Offset for Located<'_, X> {
    fn offset(&self, second: &Self) -> usize {
        second.offset - self.offset
    }
}

impl<X> Compare<&str> for Located<'_, X> {
    fn compare(&self, t: &str) -> CompareResult {
        self.fragment.compare(t)
    }

    fn compare_no_case(&self, t: &str) -> CompareResult {
        self.fragment.compare_no_case(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitting_keeps_offsets() {
        let i = Located::new_extra("ab\ncd", ());
        let (rest, taken) = i.take_split(3);
        assert_eq!((rest.fragment(), rest.location_offset()), ("cd", 3));
        assert_eq!((taken.fragment(), taken.location_offset()), ("ab\n", 0));
        assert_eq!(i.offset(&rest), 3);
    }
}
