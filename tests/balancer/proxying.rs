//! Plain proxying: keep-alive on both sides, forwarding headers, chunked
//! bodies both ways with trailers, 100-continue, pipelining, HTTP/1.0,
//! absolute-form targets, routing by host.

use crate::support::*;
use std::sync::atomic::Ordering;

#[test]
fn forwards_and_rewrites_headers() {
    let b = TestBackend::start("b1");
    let lb = Balancer::ad_hoc(&[("blog.example.com", vec![b.addr])], &[]);
    let r = request(
        lb.http,
        "GET /headers?x=1 HTTP/1.1\r\nHost: blog.example.com\r\nConnection: close, X-Private\r\nX-Private: secret\r\n\
         Keep-Alive: timeout=5\r\nTE: trailers\r\nX-Forwarded-For: 6.6.6.6\r\nUser-Agent: test\r\n\
         X_Forwarded_For: 5.5.5.5\r\n\r\n",
    )
    .expect("response");
    assert_eq!(r.status, 200);
    let seen = r.text();
    assert!(
        seen.starts_with("GET /headers?x=1 HTTP/1.1\r\nHost: blog.example.com\r\n"),
        "{seen}"
    );
    assert!(seen.contains("User-Agent: test\r\n"), "{seen}");
    assert!(seen.contains("X-Forwarded-For: 127.0.0.1\r\n"), "{seen}");
    assert!(seen.contains("X-Forwarded-Proto: http\r\n"), "{seen}");
    assert!(
        seen.contains("X-Forwarded-Host: blog.example.com\r\n"),
        "{seen}"
    );
    assert!(
        seen.contains("Forwarded: for=127.0.0.1;host=\"blog.example.com\";proto=http\r\n"),
        "{seen}"
    );
    // `X_Forwarded_For` would reach a WSGI app as HTTP_X_FORWARDED_FOR.
    for gone in [
        "6.6.6.6",
        "5.5.5.5",
        "X-Private",
        "Keep-Alive",
        "TE:",
        "Connection",
    ] {
        assert!(!seen.contains(gone), "{gone} was forwarded: {seen}");
    }
    assert_eq!(r.header("connection").as_deref(), Some("close"));
}

#[test]
fn keeps_connections_alive_on_both_sides() {
    let b = TestBackend::start("b1");
    let lb = Balancer::ad_hoc(&[("*", vec![b.addr])], &[]);
    let mut c = Client::connect(lb.http);
    for i in 0..5 {
        c.send(format!("GET /n{i} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
        let r = c
            .response()
            .expect("response on the same client connection");
        assert_eq!(r.text(), format!("b1 GET /n{i} 0"));
    }
    assert_eq!(b.requests.load(Ordering::Relaxed), 5);
    assert_eq!(
        b.connections.load(Ordering::Relaxed),
        1,
        "the backend connection was not reused"
    );
}

#[test]
fn chunked_both_ways_with_trailers() {
    let b = TestBackend::start("b1");
    let lb = Balancer::ad_hoc(&[("*", vec![b.addr])], &[]);
    let mut c = Client::connect(lb.http);
    // A trailer may not carry framing or forwarding fields: they are dropped.
    c.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nWiki\r\n5\r\npedia\r\n\
              0\r\nX-Sum: 9\r\nContent-Length: 99\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n");
    let r = c.response().expect("response");
    assert_eq!(r.text(), "Wikipedia");
    let sent = b.received_text();
    assert!(sent.contains("Transfer-Encoding: chunked\r\n"), "{sent}");
    assert!(
        sent.ends_with("\r\n\r\n4\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Sum: 9\r\n\r\n"),
        "extension kept, trailer lost or a barred trailer kept: {sent}"
    );
    c.send(b"GET /chunked HTTP/1.1\r\nHost: a\r\n\r\n");
    let r = c.response().expect("chunked response");
    assert_eq!(r.header("transfer-encoding").as_deref(), Some("chunked"));
    assert_eq!(r.text(), "hello, world");
    assert_eq!(r.trailers, "X-Check: b1\r\n\r\n");
}

#[test]
fn answers_expect_100_continue() {
    let b = TestBackend::start("b1");
    let lb = Balancer::ad_hoc(&[("*", vec![b.addr])], &[]);
    let mut c = Client::connect(lb.http);
    c.send(b"PUT /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    let interim = c.response().expect("100 Continue before the body is sent");
    assert_eq!(interim.status, 100);
    assert!(b.received().is_empty(), "forwarded before the body arrived");
    c.send(b"hello");
    let r = c.response().expect("final response");
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
    assert!(
        !b.received_text().to_ascii_lowercase().contains("expect"),
        "Expect forwarded"
    );
}

#[test]
fn answers_pipelined_requests_in_order() {
    let b = TestBackend::start("b1");
    let lb = Balancer::ad_hoc(&[("*", vec![b.addr])], &[]);
    let mut c = Client::connect(lb.http);
    let mut all = String::new();
    for p in ["/slow", "/b", "/c"] {
        all.push_str(&format!("GET {p} HTTP/1.1\r\nHost: a\r\n\r\n"));
    }
    all.push_str("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nxyzGET /d HTTP/1.1\r\nHost: a\r\n\r\n");
    c.send(all.as_bytes());
    let got: Vec<String> = (0..5)
        .map(|_| c.response().expect("pipelined response").text())
        .collect();
    assert_eq!(
        got,
        [
            "b1 GET /slow 0",
            "b1 GET /b 0",
            "b1 GET /c 0",
            "xyz",
            "b1 GET /d 0"
        ]
    );
}

#[test]
fn serves_http10_clients() {
    let b = TestBackend::start("b1");
    let lb = Balancer::ad_hoc(&[("*", vec![b.addr])], &[]);
    let mut c = Client::connect(lb.http);
    c.send(b"GET /chunked HTTP/1.0\r\n\r\n");
    let r = c.response().expect("response");
    assert_eq!(
        r.text(),
        "hello, world",
        "chunks must be decoded for HTTP/1.0"
    );
    assert!(r.header("transfer-encoding").is_none());
    let mut c = Client::connect(lb.http);
    c.send(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = c.response().expect("response");
    assert_eq!(r.header("connection").as_deref(), Some("keep-alive"));
    c.send(b"GET /b HTTP/1.0\r\n\r\n");
    assert_eq!(c.response().expect("second").text(), "b1 GET /b 0");
    assert!(c.closed(), "HTTP/1.0 without keep-alive must be closed");
}

#[test]
fn body_until_close_becomes_chunked() {
    let b = TestBackend::start("b1");
    let lb = Balancer::ad_hoc(&[("*", vec![b.addr])], &[]);
    let mut c = Client::connect(lb.http);
    c.send(b"GET /eof HTTP/1.1\r\nHost: a\r\n\r\n");
    let r = c.response().expect("response");
    assert_eq!(r.header("transfer-encoding").as_deref(), Some("chunked"));
    assert_eq!(r.text(), "b1 GET /eof 0");
    c.send(b"GET /again HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(c.response().expect("kept alive").text(), "b1 GET /again 0");
}

#[test]
fn absolute_form_targets_route_by_their_host() {
    let a = TestBackend::start("a");
    let b = TestBackend::start("b");
    let lb = Balancer::ad_hoc(
        &[
            ("a.example.com", vec![a.addr]),
            ("b.example.com", vec![b.addr]),
        ],
        &[],
    );
    let r = request(
        lb.http,
        "GET http://b.example.com/p?q HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n",
    )
    .expect("response");
    assert_eq!(r.text(), "b GET /p?q 0");
    assert!(b
        .received_text()
        .starts_with("GET /p?q HTTP/1.1\r\nHost: b.example.com\r\n"));
    assert!(a.received().is_empty());
}

#[test]
fn routes_by_host_with_wildcards_and_catch_all() {
    let exact = TestBackend::start("exact");
    let wild = TestBackend::start("wild");
    let any = TestBackend::start("any");
    let lb = Balancer::ad_hoc(
        &[
            ("blog.example.com", vec![exact.addr]),
            ("*.example.com", vec![wild.addr]),
            ("*", vec![any.addr]),
        ],
        &[],
    );
    for (host, who) in [
        ("blog.example.com", "exact"),
        ("BLOG.example.com:8080", "exact"),
        ("shop.example.com", "wild"),
        ("a.b.example.com", "wild"),
        ("example.com", "any"),
        ("other.org", "any"),
    ] {
        let r = get(lb.http, host, "/").expect("response");
        assert!(
            r.text().starts_with(&format!("{who} ")),
            "{host}: {}",
            r.text()
        );
    }
    let only = Balancer::ad_hoc(&[("blog.example.com", vec![exact.addr])], &[]);
    let r = get(only.http, "nobody.example.com", "/").expect("response");
    assert_eq!(r.status, 404);
    assert!(r.text().contains("<h1>404 Not Found</h1>"));
}

#[test]
fn head_requests_keep_content_length_without_body() {
    let b = TestBackend::start("b1");
    let lb = Balancer::ad_hoc(&[("*", vec![b.addr])], &[]);
    let mut c = Client::connect(lb.http);
    c.send(b"HEAD /x HTTP/1.1\r\nHost: a\r\n\r\nGET /y HTTP/1.1\r\nHost: a\r\n\r\n");
    let r = c.response_to("HEAD").expect("HEAD response");
    assert_eq!(r.header("content-length").as_deref(), Some("12"));
    assert_eq!(c.response().expect("next").text(), "b1 GET /y 0");
}
