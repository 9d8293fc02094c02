//! `Head`: the bytes of one complete message head and the validated field
//! lines in it, shared by requests and responses. It owns a copy of the head
//! so the read buffer can move on to the next pipelined message. Of what the
//! fields mean it knows only what both directions share: how the body is
//! framed, and what `Connection` lists.

use super::fields::{field_section_bytes_valid, split_field_line};
use super::refusal::Refusal;
use super::scanner::HeadLimits;
use std::ops::Range;

/// HTTP/1.0 or HTTP/1.1: the only versions either side may speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    /// Reads `HTTP/1.0` or `HTTP/1.1`; another `HTTP/x.y` is a 505.
    pub fn parse(bytes: &[u8]) -> Result<Version, Refusal> {
        match bytes {
            b"HTTP/1.1" => Ok(Version::Http11),
            b"HTTP/1.0" => Ok(Version::Http10),
            [b'H', b'T', b'T', b'P', b'/', a, b'.', b]
                if a.is_ascii_digit() && b.is_ascii_digit() =>
            {
                Err(Refusal::new(505, "HTTP version not supported"))
            }
            _ => Err(Refusal::bad("malformed HTTP version")),
        }
    }
}

/// How a message's body is delimited, by its framing fields alone (a
/// response's status and request method can still say it has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// The fields the balancer reads or drops itself. Each field of a head is
/// named once, when the head is parsed, so that the many later questions
/// (framing, keep-alive, hop-by-hop, forwarding fields) compare a byte
/// rather than a name, case-insensitively, per field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name {
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    KeepAlive,
    ProxyConnection,
    Te,
    Upgrade,
    Expect,
    ProxyAuthorization,
    ProxyAuthenticate,
    XForwardedFor,
    XForwardedProto,
    XForwardedHost,
    Forwarded,
    /// Any other field: passed on as it is.
    Other,
}

/// Indexed by `Name::of`: keep the order.
const NAMES: [(&[u8], Name); 15] = [
    (b"host", Name::Host),
    (b"content-length", Name::ContentLength),
    (b"transfer-encoding", Name::TransferEncoding),
    (b"connection", Name::Connection),
    (b"keep-alive", Name::KeepAlive),
    (b"proxy-connection", Name::ProxyConnection),
    (b"te", Name::Te),
    (b"upgrade", Name::Upgrade),
    (b"expect", Name::Expect),
    (b"proxy-authorization", Name::ProxyAuthorization),
    (b"proxy-authenticate", Name::ProxyAuthenticate),
    (b"x-forwarded-for", Name::XForwardedFor),
    (b"x-forwarded-proto", Name::XForwardedProto),
    (b"x-forwarded-host", Name::XForwardedHost),
    (b"forwarded", Name::Forwarded),
];

impl Name {
    /// The known field a name (tchars, any case) stands for.
    pub fn of(name: &[u8]) -> Name {
        // By length first: most fields are none of these.
        let candidates: &[(&[u8], Name)] = match name.len() {
            2 => &NAMES[6..7],
            4 => &NAMES[..1],
            6 => &NAMES[8..9],
            7 => &NAMES[7..8],
            9 => &NAMES[14..],
            10 => &NAMES[3..5],
            14 => &NAMES[1..2],
            15..=19 => &NAMES[2..],
            _ => return Name::Other,
        };
        // The first letter rejects most (`Date` is not `host`) at once.
        let first = name[0] | 0x20;
        candidates
            .iter()
            .find(|(known, _)| known[0] == first && same_name(known, name))
            .map_or(Name::Other, |(_, n)| *n)
    }
}

/// Whether a field name (tchars only, as `split_field_line` checked) is
/// `known` (lowercase letters and `-`) in any case. Setting bit 5 lowercases
/// a letter and turns no other tchar into a letter or `-` (only CR, which is
/// no tchar, becomes `-`), so one OR per byte does what
/// `eq_ignore_ascii_case`'s two conversions do.
fn same_name(known: &[u8], name: &[u8]) -> bool {
    known.len() == name.len()
        && known
            .iter()
            .zip(name)
            .fold(true, |same, (&k, &b)| same & (k == b | 0x20))
}

/// One field line of a head, by range into the head's bytes.
#[derive(Debug, Clone)]
struct Field {
    name: Range<usize>,
    value: Range<usize>,
    known: Name,
}

/// What the `Connection` fields of a head list (RFC 9110 §7.6.1), read
/// once while the head is parsed: keep-alive, upgrade and forwarding then
/// ask a flag instead of splitting the fields again, each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionOptions {
    pub close: bool,
    pub keep_alive: bool,
    pub upgrade: bool,
    /// Some token other than `keep-alive` and `upgrade` (which name fields
    /// dropped anyway): it may name a field its sender wants dropped.
    /// `close` counts, as a field named `Close` would be one.
    pub names_fields: bool,
}

impl ConnectionOptions {
    fn add(&mut self, value: &[u8]) {
        for token in super::fields::list_items(value) {
            if token.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if token.eq_ignore_ascii_case(b"upgrade") {
                self.upgrade = true;
            } else {
                self.close |= token.eq_ignore_ascii_case(b"close");
                self.names_fields = true;
            }
        }
    }
}

/// A validated head: the first line and the field lines, by range.
#[derive(Debug, Clone)]
pub struct Head {
    raw: Vec<u8>,
    first: Range<usize>,
    fields: Vec<Field>,
    connection: ConnectionOptions,
}

impl Head {
    /// Validates every field line of a complete head (as found by the
    /// scanner: every line ends in CRLF, the last line is empty).
    pub fn parse(bytes: &[u8], limits: &HeadLimits) -> Result<Head, Refusal> {
        let mut lines = Lines { bytes, pos: 0 };
        let first = lines.next().ok_or(Refusal::bad("empty head"))?;
        let section = &bytes[lines.pos..];
        let mut fields = Vec::with_capacity(16);
        let mut connection = ConnectionOptions::default();
        for line in lines {
            if line.is_empty() {
                break;
            }
            if fields.len() == limits.max_fields {
                return Err(Refusal::new(431, "too many header fields"));
            }
            let f = split_field_line(&bytes[line.clone()])?;
            let name = f.name.start + line.start..f.name.end + line.start;
            let value = f.value.start + line.start..f.value.end + line.start;
            let known = Name::of(&bytes[name.clone()]);
            if known == Name::Connection {
                connection.add(&bytes[value.clone()]);
            }
            fields.push(Field { known, name, value });
        }
        // The values' bytes, all at once: after the names, so a bad name is
        // what a line with both is refused for.
        if !field_section_bytes_valid(section) {
            return Err(Refusal::bad("control character in a field value"));
        }
        Ok(Head {
            raw: bytes.to_vec(),
            first,
            fields,
            connection,
        })
    }

    pub fn first_line(&self) -> &[u8] {
        &self.raw[self.first.clone()]
    }

    /// Every field as (known name, name, value), in the order received.
    pub fn fields(&self) -> impl Iterator<Item = (Name, &[u8], &[u8])> {
        self.fields.iter().map(|f| {
            (
                f.known,
                &self.raw[f.name.clone()],
                &self.raw[f.value.clone()],
            )
        })
    }

    /// The values of every field with this name.
    pub fn values(&self, name: Name) -> impl Iterator<Item = &[u8]> {
        self.fields
            .iter()
            .filter(move |f| f.known == name)
            .map(|f| &self.raw[f.value.clone()])
    }

    /// The body length the `Content-Length` fields give: each must be
    /// digits only, and all must agree.
    pub fn content_length(&self) -> Result<Option<u64>, Refusal> {
        let mut length: Option<u64> = None;
        for value in self.values(Name::ContentLength) {
            let n = parse_length(value)?;
            if length.is_some_and(|m| m != n) {
                return Err(Refusal::bad("differing Content-Length values"));
            }
            length = Some(n);
        }
        Ok(length)
    }

    /// The body's framing, refusing every combination two parsers could
    /// read differently, in either direction: `Content-Length` with
    /// `Transfer-Encoding`, `Transfer-Encoding` in an HTTP/1.0 message, and
    /// any transfer coding but a lone `chunked` (the balancer re-frames what
    /// it forwards, so a coding such as `gzip, chunked` would be lost on the
    /// way; nginx refuses them from its upstreams too).
    pub fn framing(&self, version: Version) -> Result<Framing, Refusal> {
        let mut te = self.values(Name::TransferEncoding);
        let length = self.content_length()?;
        match (te.next(), length) {
            (None, None) => Ok(Framing::None),
            (None, Some(n)) => Ok(Framing::Length(n)),
            (Some(_), Some(_)) => Err(Refusal::bad("both Content-Length and Transfer-Encoding")),
            (Some(_), None) if version == Version::Http10 => {
                Err(Refusal::bad("Transfer-Encoding in an HTTP/1.0 message"))
            }
            (Some(v), None) if v.eq_ignore_ascii_case(b"chunked") && te.next().is_none() => {
                Ok(Framing::Chunked)
            }
            (Some(_), None) => Err(Refusal::bad(
                "Transfer-Encoding other than a single chunked",
            )),
        }
    }

    /// What its `Connection` fields list.
    pub fn connection(&self) -> ConnectionOptions {
        self.connection
    }
}

/// The lines of a scanned head, each without its CRLF.
struct Lines<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Iterator for Lines<'_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        let rest = self.bytes.get(self.pos..)?;
        let lf = memchr::memchr(b'\n', rest)?;
        let start = self.pos;
        self.pos += lf + 1;
        Some(start..(start + lf).saturating_sub(1).max(start))
    }
}

/// Reads a `Content-Length` value: digits only, at most 18 of them.
pub fn parse_length(value: &[u8]) -> Result<u64, Refusal> {
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return Err(Refusal::bad("malformed Content-Length"));
    }
    Ok(value.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::fields::is_tchar;

    #[test]
    fn lengths() {
        assert_eq!(parse_length(b"0"), Ok(0));
        assert_eq!(parse_length(b"123"), Ok(123));
        for bad in [
            &b""[..],
            b"+1",
            b"1 2",
            b"0x10",
            b"-1",
            b"1,1",
            b"9999999999999999999",
        ] {
            assert!(parse_length(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_any_case() {
        for (name, known) in NAMES {
            assert_eq!(Name::of(name), known);
            assert_eq!(Name::of(&name.to_ascii_uppercase()), known);
        }
        assert_eq!(Name::of(b"Content-Type"), Name::Other);
        assert_eq!(Name::of(b"hosts"), Name::Other);
        let head = Head::parse(
            b"GET / HTTP/1.1\r\nHOST: a\r\nX-A: 1\r\nconnection: close\r\n\r\n",
            &crate::balancer::scanner::TEST_LIMITS,
        )
        .expect("valid");
        assert_eq!(head.values(Name::Host).collect::<Vec<_>>(), [b"a"]);
        assert_eq!(
            head.connection(),
            ConnectionOptions {
                close: true,
                names_fields: true,
                ..ConnectionOptions::default()
            }
        );
        let options = |fields: &str| {
            let raw = format!("GET / HTTP/1.1\r\nHost: a\r\n{fields}\r\n");
            let head = Head::parse(raw.as_bytes(), &crate::balancer::scanner::TEST_LIMITS);
            head.expect("valid").connection()
        };
        let all =
            options("Connection: Keep-Alive, X-A\r\nX-A: 1\r\nconnection: ,UPGRADE , close\r\n");
        assert_eq!(
            all,
            ConnectionOptions {
                close: true,
                keep_alive: true,
                upgrade: true,
                names_fields: true,
            }
        );
        let usual = options("Connection: keep-alive\r\n");
        assert!(usual.keep_alive && !usual.names_fields);
        assert_eq!(
            options("X-Connection: close\r\n"),
            ConnectionOptions::default()
        );
    }

    #[test]
    fn refuses_control_characters_in_any_field() {
        let parse = |fields: &str| {
            let raw = format!("GET / HTTP/1.1\r\nHost: a\r\n{fields}\r\n");
            Head::parse(raw.as_bytes(), &crate::balancer::scanner::TEST_LIMITS)
                .map_err(|r| r.reason)
        };
        for bad in [
            "X: a\rb\r\n",
            "X: a\x00b\r\n",
            "X: \x7f\r\n",
            "X: 1\r\nY: \x1b\r\n",
        ] {
            assert_eq!(
                parse(bad).err(),
                Some("control character in a field value"),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse("X: a\x00b\r\nY : 1\r\n").err(),
            Some("whitespace before the colon of a field"),
            "a bad name is the reason given, whatever the values hold"
        );
        assert!(parse("X: \t\u{e9} ~\r\n").is_ok(), "obs-text, HTAB and SP");
    }

    #[test]
    fn same_name_is_eq_ignore_ascii_case_for_tchars() {
        let tchars: Vec<u8> = (0..=255u8).filter(|&b| is_tchar(b)).collect();
        for (known, _) in NAMES {
            for &b in &tchars {
                for at in 0..known.len() {
                    let mut name = known.to_vec();
                    name[at] = b;
                    assert_eq!(
                        same_name(known, &name),
                        known.eq_ignore_ascii_case(&name),
                        "{known:?} {name:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn versions() {
        assert_eq!(Version::parse(b"HTTP/1.0"), Ok(Version::Http10));
        assert_eq!(Version::parse(b"HTTP/2.0").map_err(|r| r.status), Err(505));
        assert_eq!(Version::parse(b"http/1.1").map_err(|r| r.status), Err(400));
    }
}
