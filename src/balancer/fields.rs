//! Strict HTTP/1.1 field-line syntax (RFC 9110 §5, RFC 9112 §5), shared by
//! request heads, response heads and chunked trailers. It splits one line at
//! a time and returns where the name and value are; the value bytes of a
//! head's lines are checked all at once, a trailer's one line at a time. It
//! never allocates and never decides what a field means.

use super::refusal::Refusal;
use std::ops::Range;

/// `tchar` from RFC 9110 §5.6.2: the bytes a token (a method or a field
/// name) may hold.
const fn tchar_rule(b: u8) -> bool {
    matches!(b,
        b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.'
        | b'^' | b'_' | b'`' | b'|' | b'~' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
}

/// `tchar_rule` for every byte: one load per byte on the request path
/// instead of a chain of comparisons.
static TCHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = tchar_rule(b as u8);
        b += 1;
    }
    table
};

/// Whether `b` is a `tchar` (RFC 9110 §5.6.2).
pub fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

/// Whether every byte may stand in a field value: visible ASCII, SP, HTAB
/// and obs-text; every other control character (NUL, a lone CR, DEL...) is
/// refused. Written without an early exit so the compiler can check many
/// bytes at once.
fn all_value_bytes(bytes: &[u8]) -> bool {
    !bytes.iter().fold(false, |bad, &b| {
        bad | ((b < b' ') & (b != b'\t')) | (b == 0x7f)
    })
}

/// One field line (without its CRLF), as ranges into that line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldLine {
    pub name: Range<usize>,
    pub value: Range<usize>,
}

/// Whether a whole byte string is a token (a method, a field name). Without
/// an early exit: tokens are short and valid, and a table load per byte
/// beats a branch per byte.
pub fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().fold(true, |ok, &b| ok & is_tchar(b))
}

/// Checks and splits `name: value` strictly: a value of allowed bytes, and
/// the name rules of `split_field_line`. For a lone line (a trailer); a
/// head checks its values all at once (`field_section_bytes_valid`).
pub fn parse_field_line(line: &[u8]) -> Result<FieldLine, Refusal> {
    let field = split_field_line(line)?;
    if !all_value_bytes(&line[field.name.end + 1..]) {
        return Err(Refusal::bad("control character in a field value"));
    }
    Ok(field)
}

/// Splits `name: value` strictly: a token name, a colon right after it, the
/// optional whitespace around the value trimmed. It does not look at the
/// value's bytes: the caller does (`parse_field_line`,
/// `field_section_bytes_valid`).
pub fn split_field_line(line: &[u8]) -> Result<FieldLine, Refusal> {
    let colon = match memchr::memchr(b':', line) {
        Some(colon) if is_token(&line[..colon]) => colon,
        _ => return Err(name_refusal(line)),
    };
    let mut start = colon + 1;
    let mut end = line.len();
    while start < end && matches!(line[start], b' ' | b'\t') {
        start += 1;
    }
    while end > start && matches!(line[end - 1], b' ' | b'\t') {
        end -= 1;
    }
    Ok(FieldLine {
        name: 0..colon,
        value: start..end,
    })
}

/// Why a field line without a valid `name:` is refused: the first byte
/// that is not a `tchar` tells.
fn name_refusal(line: &[u8]) -> Refusal {
    match line.first() {
        None => return Refusal::bad("empty field line"),
        Some(b' ' | b'\t') => return Refusal::bad("obsolete line folding"),
        Some(_) => {}
    }
    match line.iter().find(|&&b| !is_tchar(b)) {
        None => Refusal::bad("field line without a colon"),
        // Not after a name: a colon after one is a valid line.
        Some(b':') => Refusal::bad("empty field name"),
        Some(b' ' | b'\t') => Refusal::bad("whitespace before the colon of a field"),
        Some(_) => Refusal::bad("invalid character in a field name"),
    }
}

/// Whether every byte of a head's field section (its field lines and the
/// blank line, CRLFs included, as the scanner found them) may stand there:
/// the value bytes of `all_value_bytes`, LF, and CR only before an LF. One
/// pass over the whole section, which the compiler checks many bytes at a
/// time, instead of one short pass per value.
pub fn field_section_bytes_valid(section: &[u8]) -> bool {
    // Each byte with the one after it; the last byte has none, so it must
    // be the LF that ends the section.
    let bad = section
        .iter()
        .zip(section.get(1..).unwrap_or_default())
        .fold(false, |bad, (&b, &next)| {
            // `all_value_bytes`'s rule, with LF allowed, written out: calling
            // a shared predicate from both cost ~90 instructions a request
            // (callgrind), the compiler no longer folding this loop as well.
            let control = (b < b' ') & (b != b'\t') & (b != b'\n');
            let line_end = (b == b'\r') & (next == b'\n');
            bad | (control & !line_end) | (b == 0x7f)
        });
    !bad && section.last().is_none_or(|&b| b == b'\n')
}

/// Iterates over the comma-separated, trimmed, non-empty elements of a list
/// value such as `Connection: keep-alive, Upgrade`.
pub fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|item| item.trim_ascii())
        .filter(|item| !item.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_trims() {
        let line = b"Host: \t example.com \t";
        let f = parse_field_line(line).expect("valid");
        assert_eq!(&line[f.name], b"Host");
        assert_eq!(&line[f.value], b"example.com");
    }

    #[test]
    fn tables_follow_the_rules() {
        for b in 0..=255u8 {
            assert_eq!(is_tchar(b), tchar_rule(b), "{b}");
            let value_byte = b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80;
            assert_eq!(all_value_bytes(&[b'a', b, b'z']), value_byte, "{b}");
        }
    }

    #[test]
    fn a_field_section_holds_value_bytes_and_line_ends() {
        for b in 0..=255u8 {
            // LF too: the scanner refused any LF without its CR before.
            let allowed = b == b'\t' || b == b'\n' || (b' '..=b'~').contains(&b) || b >= 0x80;
            let section = [&b"X: a"[..], &[b], b"z\r\nY: 1\r\n\r\n"].concat();
            assert_eq!(field_section_bytes_valid(&section), allowed, "{b}");
            let at_the_end = [&b"X: a"[..], &[b], b"\r\n\r\n"].concat();
            assert_eq!(field_section_bytes_valid(&at_the_end), allowed, "{b} last");
        }
        assert!(field_section_bytes_valid(b"\r\n"));
        assert!(field_section_bytes_valid(b""));
        assert!(!field_section_bytes_valid(b"X: a\r\r\n\r\n"));
        assert!(!field_section_bytes_valid(b"X: a\r\n\r"));
    }

    #[test]
    fn refuses_each_ambiguity() {
        for (line, why) in [
            (&b" folded"[..], "obsolete line folding"),
            (b"Host : x", "whitespace before the colon of a field"),
            (b"Ho\x01st: x", "invalid character in a field name"),
            (b": x", "empty field name"),
            (b"X: a\rb", "control character in a field value"),
            (b"X: a\x00b", "control character in a field value"),
            (b"nocolon", "field line without a colon"),
        ] {
            assert_eq!(parse_field_line(line).map_err(|r| r.reason), Err(why));
            if why != "control character in a field value" {
                assert_eq!(split_field_line(line).map_err(|r| r.reason), Err(why));
            }
        }
    }
}
