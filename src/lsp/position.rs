//! Byte offsets (what spans hold) to and from LSP positions (line and
//! character, counted in UTF-16 code units unless the client agreed to
//! UTF-8), and `file://` URIs to and from paths.

use lsp_types::{Position, Range, Uri};
use std::path::{Path, PathBuf};

/// How the client counts characters in a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    Utf16,
}

/// Where each line of one text starts, to turn offsets into positions.
pub struct Lines<'t> {
    text: &'t str,
    starts: Vec<usize>,
    encoding: Encoding,
    /// The editor's text began with a byte-order mark that the spans do not
    /// count (the parser drops it): one more character on the first line.
    bom: bool,
}

impl<'t> Lines<'t> {
    pub fn new(text: &'t str, encoding: Encoding, bom: bool) -> Lines<'t> {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(at, _)| at + 1))
            .collect();
        Lines {
            text,
            starts,
            encoding,
            bom,
        }
    }

    fn bom_width(&self) -> u32 {
        match (self.bom, self.encoding) {
            (false, _) => 0,
            (true, Encoding::Utf8) => 3,
            (true, Encoding::Utf16) => 1,
        }
    }

    /// The position of byte `offset` (clamped to the text, and back to a
    /// character boundary).
    pub fn position(&self, offset: usize) -> Position {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|start| *start <= offset) - 1;
        let before = &self.text[self.starts[line]..offset];
        let mut character = match self.encoding {
            Encoding::Utf8 => before.len() as u32,
            Encoding::Utf16 => before.encode_utf16().count() as u32,
        };
        if line == 0 {
            character += self.bom_width();
        }
        Position::new(line as u32, character)
    }

    pub fn range(&self, start: usize, end: usize) -> Range {
        Range::new(self.position(start), self.position(end))
    }

    /// The byte offset of `position`; a line past the end is the end of the
    /// text, a character past a line's end is that line's end.
    pub fn offset(&self, position: Position) -> usize {
        let Some(&start) = self.starts.get(position.line as usize) else {
            return self.text.len();
        };
        let line_end = (self.text[start..].find('\n')).map_or(self.text.len(), |at| start + at);
        let mut wanted = position.character;
        if position.line == 0 {
            wanted = wanted.saturating_sub(self.bom_width());
        }
        let mut counted = 0;
        for (at, c) in self.text[start..line_end].char_indices() {
            if counted >= wanted {
                return start + at;
            }
            counted += match self.encoding {
                Encoding::Utf8 => c.len_utf8() as u32,
                Encoding::Utf16 => c.len_utf16() as u32,
            };
        }
        line_end
    }
}

/// The `file://` URI of an absolute path, its bytes percent-encoded but
/// for those a path keeps as they are.
pub fn uri_of(path: &Path) -> Option<Uri> {
    let mut text = String::from("file://");
    for byte in path.to_str()?.bytes() {
        if byte.is_ascii_alphanumeric() || b"/-._~".contains(&byte) {
            text.push(byte as char);
        } else {
            text.push_str(&format!("%{byte:02X}"));
        }
    }
    text.parse().ok()
}

/// The path a `file://` URI names; `None` for any other scheme (an
/// editor's unsaved "untitled:" buffer).
pub fn path_of(uri: &Uri) -> Option<PathBuf> {
    let rest = uri.as_str().strip_prefix("file://")?;
    // `file://host/path`: only the local host (empty or `localhost`).
    let rest = rest.strip_prefix("localhost").unwrap_or(rest);
    if !rest.starts_with('/') {
        return None;
    }
    let bytes = rest.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let hex = (bytes[at] == b'%')
            .then(|| rest.get(at + 1..at + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match hex {
            Some(byte) => {
                decoded.push(byte);
                at += 3;
            }
            None => {
                decoded.push(bytes[at]);
                at += 1;
            }
        }
    }
    String::from_utf8(decoded).ok().map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_positions_agree_in_both_encodings() {
        let text = "host a {\n  x = \"é😀z\"\n}\n";
        let z = text.find('z').expect("z");
        let utf16 = Lines::new(text, Encoding::Utf16, false);
        assert_eq!(utf16.position(z), Position::new(1, 10));
        assert_eq!(utf16.offset(Position::new(1, 10)), z);
        let utf8 = Lines::new(text, Encoding::Utf8, false);
        assert_eq!(utf8.position(z), Position::new(1, 13));
        assert_eq!(utf8.offset(Position::new(1, 13)), z);
        // Past a line's end: the line's end; past the last line: the end.
        assert_eq!(utf16.offset(Position::new(0, 99)), 8);
        assert_eq!(utf16.offset(Position::new(9, 0)), text.len());
        // The byte-order mark the spans do not count.
        let bom = Lines::new(text, Encoding::Utf16, true);
        assert_eq!(bom.position(0), Position::new(0, 1));
        assert_eq!(bom.offset(Position::new(0, 1)), 0);
    }

    #[test]
    fn uris_and_paths_round_trip() {
        let path = Path::new("/home/a b/spec#1/épio.site");
        let uri = uri_of(path).expect("uri");
        assert_eq!(uri.as_str(), "file:///home/a%20b/spec%231/%C3%A9pio.site");
        assert_eq!(path_of(&uri).as_deref(), Some(path));
        let other: Uri = "untitled:Untitled-1".parse().expect("uri");
        assert_eq!(path_of(&other), None);
    }
}
