//! Every ambiguous request is refused with 400 (or the status that names
//! the problem) and the backend receives nothing at all.

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
