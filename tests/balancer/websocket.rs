//! WebSocket upgrades pass through and stream both ways until a side
//! closes; a config reload does not cut them.

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
