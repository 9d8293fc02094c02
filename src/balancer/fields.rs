//! Strict HTTP/1.1 field-line syntax (RFC 9110 §5, RFC 9112 §5), shared by
//! request heads, response heads and chunked trailers. It validates one line
//! at a time and returns where the name and value are; it never allocates and
//! never decides what a field means.

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

/// Splits `name: value` strictly: a token name, a colon right after it, a
/// value of allowed bytes with the optional whitespace around it trimmed.
pub fn parse_field_line(line: &[u8]) -> Result<FieldLine, Refusal> {
    match line.first() {
        None => return Err(Refusal::bad("empty field line")),
        Some(b' ' | b'\t') => return Err(Refusal::bad("obsolete line folding")),
        Some(_) => {}
    }
    let colon = line
        .iter()
        .position(|&b| !is_tchar(b))
        .ok_or(Refusal::bad("field line without a colon"))?;
    match line[colon] {
        b':' if colon > 0 => {}
        b':' => return Err(Refusal::bad("empty field name")),
        b' ' | b'\t' => return Err(Refusal::bad("whitespace before the colon of a field")),
        _ => return Err(Refusal::bad("invalid character in a field name")),
    }
    let mut start = colon + 1;
    let mut end = line.len();
    if !all_value_bytes(&line[start..]) {
        return Err(Refusal::bad("control character in a field value"));
    }
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
        }
    }
}
