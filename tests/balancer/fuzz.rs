//! Property tests of the request parsing path (scanner, head parser,
//! chunked decoder, forwarded head), a bounded number of cases per run
//! (512 a property; `FUZZ_CASES` for more):
//! arbitrary and mutated input never panics; what is accepted is forwarded
//! with exactly one framing of our own, and re-parses to the same request;
//! the head scanner and the chunked decoder, fed in arbitrary pieces, agree
//! with an obvious whole-input reading of the same bytes.

use proptest::prelude::*;
use sitec::balancer::{
    request_head, ChunkedDecoder, Emit, Framing, HeadLimits, HeadScanner, HeadSpan, Origin,
    OutFraming, RequestHead,
};

const LIMITS: HeadLimits = HeadLimits {
    max_line: 1024,
    max_bytes: 4096,
    max_fields: 32,
};

/// Where reads of `len` input bytes end when a socket cuts it at `cuts`
/// (each taken modulo `len + 1`), in order, the last at `len`.
fn read_ends(cuts: &[usize], len: usize) -> Vec<usize> {
    let mut ends: Vec<usize> = cuts.iter().map(|c| c % (len + 1)).collect();
    ends.push(len);
    ends.sort_unstable();
    ends
}

/// Feeds `input` to a scanner in pieces as a socket would (cut at
/// `cuts`): the first complete head's span, a refusal's status, or None.
fn scan_in_pieces(
    input: &[u8],
    cuts: &[usize],
    limits: &HeadLimits,
) -> Result<Option<HeadSpan>, u16> {
    let mut scanner = HeadScanner::default();
    let points = read_ends(cuts, input.len());
    for end in points {
        if let Some(span) = scanner.scan(&input[..end], limits).map_err(|r| r.status)? {
            return Ok(Some(span));
        }
    }
    Ok(None)
}

/// The parse result of the first complete head in `input` fed in pieces,
/// or None if it never completes.
fn parse_in_pieces(input: &[u8], cuts: &[usize]) -> Option<Result<RequestHead, u16>> {
    match scan_in_pieces(input, cuts, &LIMITS) {
        Err(status) => Some(Err(status)),
        Ok(Some(span)) => {
            Some(RequestHead::parse(&input[span.start..span.end], &LIMITS).map_err(|r| r.status))
        }
        Ok(None) => None,
    }
}

/// Where a scanner must find the head in a complete input, the slow and
/// obvious way: past any leading empty lines, up to the first CRLF CRLF that
/// ends the first line or a line after it; refused (`Err`) when an LF before
/// that end (or anywhere, with no end) lacks its CR. No size limits.
fn obvious_head(input: &[u8]) -> Result<Option<(usize, usize)>, ()> {
    let bare_before =
        |end: usize| (0..end).any(|i| input[i] == b'\n' && (i == 0 || input[i - 1] != b'\r'));
    let mut start = 0;
    while input[start..].starts_with(b"\r\n") {
        start += 2;
    }
    let end = input[start..]
        .iter()
        .position(|&b| b == b'\n')
        .map(|lf| (start + lf).saturating_sub(1).max(start))
        .and_then(|line_end| {
            let at = input[line_end..]
                .windows(4)
                .position(|w| w == b"\r\n\r\n")?;
            Some(line_end + at + 4)
        });
    match end {
        Some(end) if !bare_before(end) => Ok(Some((start, end))),
        None if !bare_before(input.len()) => Ok(None),
        _ => Err(()),
    }
}

fn forwarded(req: &RequestHead) -> Vec<u8> {
    let framing = match req.framing {
        Framing::None => OutFraming::None,
        Framing::Length(n) => OutFraming::Length(n),
        Framing::Chunked => OutFraming::Chunked,
    };
    let origin = Origin::new("192.0.2.1".parse().expect("ip"), false);
    request_head(req, &origin, framing)
}

/// The forwarded head must parse again, to the same request, with one
/// framing field at most.
fn check_forwarded(req: &RequestHead) -> Result<(), TestCaseError> {
    let out = forwarded(req);
    let again = RequestHead::parse(
        &out,
        &HeadLimits {
            max_line: 8192,
            max_bytes: 65536,
            max_fields: 100,
        },
    )
    .map_err(|r| TestCaseError::fail(format!("forwarded head refused: {}", r.reason)))?;
    prop_assert_eq!(again.method(), req.method());
    prop_assert_eq!(again.path(), req.path());
    prop_assert_eq!(again.host(), req.host());
    prop_assert_eq!(again.framing, req.framing);
    let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
    let framings = text.matches("\r\ncontent-length:").count()
        + text.matches("\r\ntransfer-encoding:").count();
    prop_assert!(framings <= 1, "{}", text);
    Ok(())
}

fn http_bytes() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop::sample::select(vec![
        &b"GET "[..],
        b"POST ",
        b"/",
        b" HTTP/1.1",
        b" HTTP/1.0",
        b"\r\n",
        b"\n",
        b"\r",
        b"Host: a",
        b"Content-Length: ",
        b"Transfer-Encoding: chunked",
        b":",
        b" ",
        b"\t",
        b"0",
        b"5",
        b"x",
        b",",
        b"\x00",
        b"\x7f",
        b"\xff",
        b"chunked",
    ]);
    prop::collection::vec(pieces, 0..40).prop_map(|v| v.concat())
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]{0,12}"
}

fn valid_request() -> impl Strategy<Value = (String, Vec<u8>)> {
    (
        prop::sample::select(vec![
            "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH",
        ]),
        "/[a-zA-Z0-9/._~%?=&-]{0,30}",
        "[a-z0-9]{1,10}(\\.[a-z0-9]{1,10}){0,3}",
        prop::collection::vec((token(), "[ -~]{0,20}"), 0..8),
        prop::option::of(0u8..3),
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(method, path, host, fields, framing, body)| {
            let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
            for (name, value) in fields {
                let lower = name.to_ascii_lowercase();
                if ["host", "content-length", "transfer-encoding", "expect"]
                    .contains(&lower.as_str())
                {
                    continue;
                }
                head.push_str(&format!("{name}: {}\r\n", value.trim()));
            }
            let body = match framing {
                Some(1) => {
                    head.push_str(&format!("Content-Length: {}\r\n", body.len()));
                    body
                }
                Some(2) => {
                    head.push_str("Transfer-Encoding: chunked\r\n");
                    let mut b = format!("{:x}\r\n", body.len()).into_bytes();
                    b.extend_from_slice(&body);
                    b.extend_from_slice(b"\r\n0\r\n\r\n");
                    b
                }
                _ => Vec::new(),
            };
            head.push_str("\r\n");
            let mut raw = head.clone().into_bytes();
            raw.extend_from_slice(&body);
            (head, raw)
        })
}

/// The line at `at`, without its CRLF, and where the next one starts; None
/// when no LF follows or the LF has no CR right before it.
fn crlf_line(input: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let lf = at + input[at..].iter().position(|&b| b == b'\n')?;
    (lf > at && input[lf - 1] == b'\r').then(|| (&input[at..lf - 1], lf + 1))
}

/// A trailer line as RFC 9110 §5 has it: a token, a colon right after it,
/// then only visible bytes, SP, HTAB and obs-text.
fn obvious_field_line(line: &[u8]) -> bool {
    const TCHAR: &[u8] = b"!#$%&'*+-.^_`|~";
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    let name_ok = colon > 0
        && line[..colon]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || TCHAR.contains(b));
    name_ok
        && line[colon + 1..]
            .iter()
            .all(|&b| b == b'\t' || (b >= b' ' && b != 0x7f))
}

/// An obvious reading of a whole chunked body (RFC 9112 §7.1, with the
/// decoder's limits: at most 15 size digits, extensions of at most 4096
/// visible bytes, trailers of at most `max_trailer` bytes with the blank
/// line): its data and where it ends, or None when the input holds no
/// complete valid body from its start.
fn obvious_chunked(input: &[u8], max_trailer: usize) -> Option<(Vec<u8>, usize)> {
    let mut data = Vec::new();
    let mut at = 0;
    loop {
        let (line, next) = crlf_line(input, at)?;
        let (size, ext) = match line.iter().position(|&b| b == b';') {
            Some(semi) => (&line[..semi], Some(&line[semi + 1..])),
            None => (line, None),
        };
        if size.is_empty() || size.len() > 15 || !size.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        if let Some(ext) = ext {
            if ext.len() > 4096
                || !ext
                    .iter()
                    .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
            {
                return None;
            }
        }
        let size = usize::from_str_radix(std::str::from_utf8(size).ok()?, 16).ok()?;
        at = next;
        if size == 0 {
            break;
        }
        data.extend_from_slice(input.get(at..at.checked_add(size)?)?);
        at += size;
        if input.get(at..at + 2)? != b"\r\n" {
            return None;
        }
        at += 2;
    }
    let trailers = at;
    loop {
        let (line, next) = crlf_line(input, at)?;
        if next - trailers > max_trailer {
            return None;
        }
        at = next;
        if line.is_empty() {
            return Some((data, at));
        }
        if !obvious_field_line(line) {
            return None;
        }
    }
}

/// Chunked bodies, valid ones (sizes in either case, extensions, data that
/// holds CR, LF and digits, trailers, bytes after the end) with up to three
/// edits each: a piece inserted, a byte removed or replaced.
fn chunked_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop::sample::select(vec![
        &b"0"[..],
        b"5",
        b"a",
        b"F",
        b"00000000000000",
        b"g",
        b"-",
        b"0x",
        b";",
        b";e=\"v\"",
        b" ",
        b"\t",
        b"\r\n",
        b"\n",
        b"\r",
        b"X-T: 1",
        b":",
        b"\x00",
        b"\x7f",
        b"\xff",
    ]);
    let data = prop::collection::vec(prop::sample::select(vec![b'd', b'\r', b'\n', b'0']), 0..20);
    let chunk = (data, prop::option::of("[a-z=\" \t]{0,6}"), any::<bool>());
    let valid = (
        prop::collection::vec(chunk, 0..4),
        prop::collection::vec("[A-Za-z-]{1,5}:[ -~]{0,5}", 0..3),
        prop::sample::select(vec![&b""[..], b"NEXT", b"0\r\n\r\n"]),
    )
        .prop_map(|(chunks, trailers, after)| {
            let mut wire = Vec::new();
            for (data, ext, upper) in chunks.iter().filter(|c| !c.0.is_empty()) {
                let size = if *upper {
                    format!("{:X}", data.len())
                } else {
                    format!("{:x}", data.len())
                };
                wire.extend_from_slice(size.as_bytes());
                if let Some(ext) = ext {
                    wire.extend_from_slice(format!(";{ext}").as_bytes());
                }
                wire.extend_from_slice(b"\r\n");
                wire.extend_from_slice(data);
                wire.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(b"0\r\n");
            for t in trailers {
                wire.extend_from_slice(t.as_bytes());
                wire.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(b"\r\n");
            wire.extend_from_slice(after);
            wire
        });
    let edits = prop::collection::vec((any::<usize>(), 0u8..3, piece), 0..4);
    (valid, edits).prop_map(|(mut wire, edits)| {
        for (at, kind, piece) in edits {
            let at = at % (wire.len() + 1);
            match kind {
                0 => drop(wire.splice(at..at, piece.iter().copied())),
                _ if at == wire.len() => {}
                1 => drop(wire.remove(at)),
                _ => wire[at] = piece[0],
            }
        }
        wire
    })
}

/// 512 cases a property in CI; `FUZZ_CASES=1000000 cargo test --release
/// --test balancer fuzz` for a longer hunt.
fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(512)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600), cuts in prop::collection::vec(any::<usize>(), 0..6)) {
        if let Some(Ok(req)) = parse_in_pieces(&bytes, &cuts) {
            check_forwarded(&req)?;
        }
    }

    #[test]
    fn http_like_bytes_never_panic(bytes in http_bytes(), cuts in prop::collection::vec(any::<usize>(), 0..6)) {
        if let Some(Ok(req)) = parse_in_pieces(&bytes, &cuts) {
            check_forwarded(&req)?;
        }
    }

    #[test]
    fn the_scanner_finds_the_obvious_head_across_any_split(bytes in http_bytes(), cuts in prop::collection::vec(any::<usize>(), 0..6)) {
        let roomy = HeadLimits { max_line: usize::MAX / 2, max_bytes: usize::MAX / 2, max_fields: 32 };
        let found = scan_in_pieces(&bytes, &cuts, &roomy).map(|s| s.map(|s| (s.start, s.end))).map_err(|_| ());
        prop_assert_eq!(found, obvious_head(&bytes), "{:?}", String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn valid_requests_are_accepted_and_forwarded_faithfully((head, raw) in valid_request(), cuts in prop::collection::vec(any::<usize>(), 0..6)) {
        let parsed = parse_in_pieces(&raw, &cuts);
        let req = match parsed {
            Some(Ok(req)) => req,
            other => return Err(TestCaseError::fail(format!("{head:?} not accepted: {other:?}"))),
        };
        check_forwarded(&req)?;
    }

    #[test]
    fn mutated_requests_never_panic((_, raw) in valid_request(), at in any::<usize>(), byte in any::<u8>(), cuts in prop::collection::vec(any::<usize>(), 0..4)) {
        let mut raw = raw;
        let i = at % raw.len();
        raw[i] = byte;
        if let Some(Ok(req)) = parse_in_pieces(&raw, &cuts) {
            check_forwarded(&req)?;
        }
    }

    #[test]
    fn chunked_bodies_decode_across_any_split(
        chunks in prop::collection::vec((prop::collection::vec(any::<u8>(), 1..40), prop::option::of("[a-z=]{1,8}")), 0..6),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let mut wire = Vec::new();
        let mut data = Vec::new();
        for (chunk, ext) in &chunks {
            wire.extend_from_slice(format!("{:X}", chunk.len()).as_bytes());
            if let Some(ext) = ext {
                wire.extend_from_slice(format!(";{ext}").as_bytes());
            }
            wire.extend_from_slice(b"\r\n");
            wire.extend_from_slice(chunk);
            wire.extend_from_slice(b"\r\n");
            data.extend_from_slice(chunk);
        }
        wire.extend_from_slice(b"0\r\nX-T: 1\r\n\r\n");
        for emit in [Emit::Data, Emit::Chunks] {
            let mut decoder = ChunkedDecoder::new(1024);
            let mut out = Vec::new();
            let points = read_ends(&cuts, wire.len());
            let mut pos = 0;
            for end in points {
                pos += decoder.feed(&wire[pos..end], &mut out, emit).map_err(|r| TestCaseError::fail(r.reason))?;
            }
            prop_assert!(decoder.is_done());
            prop_assert_eq!(pos, wire.len());
            if emit == Emit::Data {
                prop_assert_eq!(&out, &data);
            } else {
                // Our own chunks decode back to the same data and trailer.
                let mut again = ChunkedDecoder::new(1024);
                let mut plain = Vec::new();
                again.feed(&out, &mut plain, Emit::Data).map_err(|r| TestCaseError::fail(r.reason))?;
                prop_assert!(again.is_done());
                prop_assert_eq!(&plain, &data);
                prop_assert!(out.ends_with(b"0\r\nX-T: 1\r\n\r\n"));
            }
        }
    }

    #[test]
    fn arbitrary_chunked_input_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut decoder = ChunkedDecoder::new(256);
        let mut out = Vec::new();
        let _ = decoder.feed(&bytes, &mut out, Emit::Chunks);
    }
    #[test]
    fn the_chunked_decoder_reads_what_an_obvious_reading_does(
        bytes in chunked_bytes(),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
        max_trailer in 4usize..40,
    ) {
        // Whatever the split, the decoder finishes exactly where the obvious
        // reading does, with the same data, and never finishes a body that
        // reading refuses.
        let expected = obvious_chunked(&bytes, max_trailer);
        let mut decoder = ChunkedDecoder::new(max_trailer);
        let mut out = Vec::new();
        let points = read_ends(&cuts, bytes.len());
        let mut pos = 0;
        for end in points {
            match decoder.feed(&bytes[pos..end], &mut out, Emit::Data) {
                Ok(used) => pos += used,
                Err(_) => break,
            }
            if decoder.is_done() {
                break;
            }
        }
        let got = decoder.is_done().then_some((out, pos));
        prop_assert_eq!(got, expected, "{:?}", String::from_utf8_lossy(&bytes));
    }
}
