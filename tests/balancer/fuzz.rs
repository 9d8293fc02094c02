//! Property tests of the request parsing path (scanner, head parser,
//! chunked decoder, forwarded head), a bounded number of cases per run:
//! arbitrary and mutated input never panics; what is accepted is forwarded
//! with exactly one framing of our own, and re-parses to the same request.

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

/// Feeds `input` to a scanner in pieces as a socket would (cut at
/// `cuts`): the first complete head's span, a refusal's status, or None.
fn scan_in_pieces(
    input: &[u8],
    cuts: &[usize],
    limits: &HeadLimits,
) -> Result<Option<HeadSpan>, u16> {
    let mut scanner = HeadScanner::default();
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    points.push(input.len());
    points.sort_unstable();
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

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
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
            points.push(wire.len());
            points.sort_unstable();
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
}
