//! Every ambiguous request is refused with 400 (or the status that names
//! the problem) and the backend receives nothing at all; every ambiguous
//! response from a backend is a 502 and nothing of it reaches the client.

use crate::support::*;

const CASES: &[(&str, &str, u16)] = &[
    ("CL and TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("TE and CL", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400),
    ("differing CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
    ("CL list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello", 400),
    ("CL sign", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", 400),
    ("CL hex", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello", 400),
    ("CL empty", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", 400),
    ("TE gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    ("TE chunked not last", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", 400),
    ("TE list", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 400),
    ("TE twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("TE x-chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400),
    ("TE vertical tab", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n", 400),
    ("TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n  folded\r\n\r\n", 400),
    ("obs-fold TE", "POST / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("bare LF", "GET / HTTP/1.1\nHost: a\n\n", 400),
    ("bare LF in field", "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", 400),
    ("bare CR", "GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400),
    ("space before colon", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400),
    ("tab before colon", "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", 400),
    ("NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400),
    ("control in name", "GET / HTTP/1.1\r\nHost: a\r\nX\x01Y: b\r\n\r\n", 400),
    ("DEL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", 400),
    ("no Host", "GET / HTTP/1.1\r\n\r\n", 400),
    ("two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("bad Host", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    ("double space", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("bad version", "GET / HTTP/1.1x\r\nHost: a\r\n\r\n", 400),
    ("HTTP/2 line", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    ("space in target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("invalid chunk size", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk size with space", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n", 400),
    ("negative chunk", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk overflow", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nx\r\n0\r\n\r\n", 400),
    ("chunk longer than size", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk bare LF", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", 400),
    ("bad trailer", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nno colon\r\n\r\n", 400),
    ("CONNECT", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 405),
    ("unknown expectation", "GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", 417),
];

#[test]
fn every_ambiguous_request_is_refused_and_nothing_is_forwarded() {
    let b = TestBackend::start("b1");
    let lb = Balancer::ad_hoc(&[("*", vec![b.addr])], &[]);
    for (name, raw, status) in CASES {
        let mut c = Client::connect(lb.http);
        c.send(raw.as_bytes());
        let r = c
            .response()
            .unwrap_or_else(|| panic!("{name}: no response"));
        assert_eq!(r.status, *status, "{name}");
        assert_eq!(r.header("connection").as_deref(), Some("close"), "{name}");
        assert!(c.closed(), "{name}: connection left open after a refusal");
        assert!(
            b.received().is_empty(),
            "{name}: the backend received {:?}",
            b.received_text()
        );
    }
}

#[test]
fn a_smuggled_request_after_a_valid_one_is_refused_too() {
    let b = TestBackend::start("b1");
    let lb = Balancer::ad_hoc(&[("*", vec![b.addr])], &[]);
    let mut c = Client::connect(lb.http);
    c.send(b"GET /first HTTP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    assert_eq!(c.response().expect("first").status, 200);
    assert_eq!(c.response().expect("second").status, 400);
    let seen = b.received_text();
    assert_eq!(seen.matches("HTTP/1.1\r\n").count(), 1, "{seen}");
    assert!(!seen.contains("POST"), "{seen}");
}

/// Responses a backend could send that a client (or the next request on a
/// pooled connection) could read differently from the balancer.
const RESPONSES: &[(&str, &str)] = &[
    ("CL and TE", "HTTP/1.1 200 OK\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nSMUGGLED"),
    ("differing CL", "HTTP/1.1 200 OK\r\nContent-Length: 8\r\nContent-Length: 2\r\n\r\nSMUGGLED"),
    ("CL list", "HTTP/1.1 200 OK\r\nContent-Length: 8, 8\r\n\r\nSMUGGLED"),
    ("TE gzip, chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n"),
    ("TE gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nSMUGGLED"),
    ("TE in HTTP/1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n"),
    ("bare LF", "HTTP/1.1 200 OK\nContent-Length: 8\n\nSMUGGLED"),
    ("obs-fold", "HTTP/1.1 200 OK\r\nX-A: 1\r\n Content-Length: 8\r\nContent-Length: 8\r\n\r\nSMUGGLED"),
    ("space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 8\r\n\r\nSMUGGLED"),
    ("NUL in value", "HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 8\r\n\r\nSMUGGLED"),
    ("bad status", "HTTP/1.1 2000 OK\r\nContent-Length: 8\r\n\r\nSMUGGLED"),
    ("unasked 101", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nSMUGGLED"),
];

/// Has the test backend answer with `raw` (through `/raw`); what reaches the client.
fn answer_with(c: &mut Client, raw: &str) -> Option<Response> {
    let len = raw.len();
    c.send(
        format!("POST /raw HTTP/1.1\r\nHost: a\r\nContent-Length: {len}\r\n\r\n{raw}").as_bytes(),
    );
    c.response()
}

#[test]
fn every_ambiguous_response_is_a_502_and_nothing_of_it_is_passed_on() {
    let b = TestBackend::start("b1");
    let lb = Balancer::ad_hoc(&[("*", vec![b.addr])], &[]);
    for (name, raw) in RESPONSES {
        let mut c = Client::connect(lb.http);
        let r = answer_with(&mut c, raw).unwrap_or_else(|| panic!("{name}: no response"));
        assert_eq!(r.status, 502, "{name}");
        assert!(!r.text().contains("SMUGGLED"), "{name}: {}", r.text());
        // The backend stays in rotation and its connection is not reused.
        let r = get(lb.http, "a", "/after").unwrap_or_else(|| panic!("{name}: no response after"));
        assert_eq!(
            (r.status, r.text()),
            (200, "b1 GET /after 0".to_owned()),
            "{name}"
        );
    }
    assert!(lb
        .stderr()
        .contains("invalid response: Transfer-Encoding other than a single chunked"));
}

/// A misbehaving backend's bytes after a complete response (here a whole
/// second response in the same write) are never read as the answer to the
/// client's next request on the same connection.
#[test]
fn bytes_past_a_response_never_answer_the_next_request() {
    let b = TestBackend::start("b1");
    let lb = Balancer::ad_hoc(&[("*", vec![b.addr])], &[]);
    let raw = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nSMUGGLED";
    let mut c = Client::connect(lb.http);
    let r = answer_with(&mut c, raw).expect("response");
    assert_eq!((r.status, r.text()), (200, "ok".to_owned()));
    for _ in 0..3 {
        c.send(b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n");
        let r = c.response().expect("next response");
        assert_eq!((r.status, r.text()), (200, "b1 GET /next 0".to_owned()));
    }
}
