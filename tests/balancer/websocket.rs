//! WebSocket upgrades pass through and stream both ways until a side
//! closes; a config reload does not cut them. No other upgrade passes.

use crate::support::*;
use std::io::Write;

const HANDSHAKE: &[u8] =
    b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// A masked text frame, as a browser sends it.
fn frame(text: &str) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut f = vec![0x81, 0x80 | u8::try_from(text.len()).expect("short")];
    f.extend_from_slice(&mask);
    f.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

fn echo(c: &mut Client, text: &str) {
    let f = frame(text);
    c.stream.write_all(&f).expect("send frame");
    assert_eq!(c.read_raw(f.len()), f);
}

#[test]
fn websocket_echo_survives_a_reload() {
    let b = TestBackend::start("b");
    let lb = Balancer::with_config(&format!(
        "[listen]\nhttp = [\"127.0.0.1:0\"]\n[[route]]\ndomains = [\"*\"]\nbackends = [\"{}\"]\n",
        b.addr
    ));
    let mut c = Client::connect(lb.http);
    let mut first = HANDSHAKE.to_vec();
    first.extend_from_slice(&frame("early"));
    c.send(&first);
    let r = c.response_to("HEAD").expect("101");
    assert_eq!(r.status, 101);
    assert_eq!(r.header("upgrade").as_deref(), Some("websocket"));
    assert_eq!(r.header("connection").as_deref(), Some("upgrade"));
    let early = frame("early");
    assert_eq!(c.read_raw(early.len()), early, "early frame not echoed");
    echo(&mut c, "hello");
    let seen = b.received_text();
    assert!(
        seen.contains("Upgrade: websocket\r\n") && seen.contains("Connection: upgrade\r\n"),
        "{seen}"
    );
    std::fs::write(
        lb.dir.join("balancer.toml"),
        std::fs::read_to_string(lb.dir.join("balancer.toml")).expect("read"),
    )
    .expect("rewrite");
    lb.signal("HUP");
    assert!(lb.wait_log("reloaded", 1));
    for i in 0..10 {
        echo(&mut c, &format!("after reload {i}"));
    }
    c.stream.shutdown(std::net::Shutdown::Write).expect("close");
    assert!(c.closed(), "the tunnel did not close after the client did");
}

/// An open WebSocket is a tunnel, not a request in flight: `/rotation`
/// counts it apart, so draining its runner for a rolling restart does not
/// wait for it (the app server's restart closes it with a close frame).
#[test]
fn an_open_websocket_is_a_tunnel_not_a_request_in_flight() {
    let b = TestBackend::start("b");
    let lb = Balancer::ad_hoc(&[("*", vec![b.addr])], &["--admin", "127.0.0.1:0"]);
    let admin = lb.admin.expect("admin listener");
    let backend = |what: &str| {
        let rotation = get(admin, "admin", "/rotation").expect("/rotation");
        let doc: serde_json::Value = serde_json::from_str(&rotation.text()).expect("json");
        doc["routes"][0]["backends"][0][what].clone()
    };
    let mut c = Client::connect(lb.http);
    c.send(HANDSHAKE);
    assert_eq!(c.response_to("GET").expect("101").status, 101);
    echo(&mut c, "open");
    assert_eq!(backend("in_flight"), 0, "a tunnel counted as a request");
    assert_eq!(backend("tunnels"), 1);
    c.stream.shutdown(std::net::Shutdown::Write).expect("close");
    assert!(c.closed(), "the tunnel did not close after the client did");
    let mut left = serde_json::Value::Null;
    for _ in 0..50 {
        left = backend("tunnels");
        if left == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(left, 0, "a closed tunnel still counted");
}

/// An `h2c` upgrade would have the balancer tunnel HTTP/2 requests it never
/// parsed, routed or logged to whichever backend took the first one (h2c
/// smuggling): it goes on as a plain request, and a backend that switches
/// protocols anyway is a 502, never a tunnel.
#[test]
fn only_websocket_upgrades_pass() {
    let b = TestBackend::start("b");
    let lb = Balancer::ad_hoc(&[("*", vec![b.addr])], &[]);
    let h2c = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n\
             Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
        )
    };
    let mut c = Client::connect(lb.http);
    c.send(h2c("/headers").as_bytes());
    let r = c.response_to("GET").expect("response");
    assert_eq!(r.status, 200);
    let seen = r.text();
    for gone in ["Upgrade", "upgrade", "HTTP2-Settings"] {
        assert!(!seen.contains(gone), "{gone} was forwarded: {seen}");
    }
    // The same connection goes on with HTTP/1.1.
    c.send(b"GET /headers HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(c.response_to("GET").expect("second response").status, 200);

    // The test backend's /ws answers 101 whatever it was asked.
    let mut c = Client::connect(lb.http);
    c.send(h2c("/ws").as_bytes());
    let r = c.response_to("GET").expect("response");
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(c.closed(), "a tunnel was opened");
}
