//! SIGHUP reloads without losing a request; a bad config is refused and
//! the old one keeps serving; SIGTERM lets in-flight requests finish.

use crate::support::*;
use std::sync::atomic::Ordering;
use std::time::Duration;

fn config(backend: std::net::SocketAddr) -> String {
    format!("[listen]\nhttp = [\"127.0.0.1:0\"]\n[[route]]\ndomains = [\"*\"]\nbackends = [\"{backend}\"]\n")
}

#[test]
fn reload_under_load_fails_no_request() {
    let old = TestBackend::start("old");
    let new = TestBackend::start("new");
    let lb = Balancer::with_config(&config(old.addr));
    // Half the clients keep alive, half reconnect before each request.
    let ok = |r: &Response| r.text() == "ok";
    let load = Load::start(
        lb.http,
        4,
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok",
        ok,
        true,
    );
    let path = lb.dir.join("balancer.toml");
    // Traffic before, between and after the reloads: 30 requests each.
    for round in 0..4 {
        load.wait_done(load.done() + 30);
        let target = if round % 2 == 0 { new.addr } else { old.addr };
        std::fs::write(&path, config(target)).expect("rewrite config");
        lb.signal("HUP");
        assert!(lb.wait_log("reloaded", round + 1), "{}", lb.stderr());
    }
    load.wait_done(load.done() + 30);
    let (_, failures) = load.finish();
    assert_eq!(failures, 0, "{}", lb.stderr());
    assert!(
        new.requests.load(Ordering::Relaxed) > 0,
        "the new backend never got traffic"
    );
}

#[test]
fn a_bad_config_is_refused_and_the_old_one_keeps_serving() {
    let b = TestBackend::start("b");
    let lb = Balancer::with_config(&config(b.addr));
    let path = lb.dir.join("balancer.toml");
    std::fs::write(
        &path,
        config(b.addr).replace("backends = [", "backends = [\"nonsense\", "),
    )
    .expect("write");
    lb.signal("HUP");
    assert!(lb.wait_log("refused the new config", 1), "{}", lb.stderr());
    let log = lb.stderr();
    assert!(
        log.contains("route[0].backends[0]") && log.contains("still serving the previous one"),
        "{log}"
    );
    assert_eq!(
        get(lb.http, "a", "/").expect("still serving").text(),
        "b GET / 0"
    );
    std::fs::write(&path, "[listen\n").expect("write");
    lb.signal("HUP");
    assert!(lb.wait_log("refused the new config", 2), "{}", lb.stderr());
    assert_eq!(get(lb.http, "a", "/").expect("still serving").status, 200);
}

#[test]
fn sigterm_drains_in_flight_requests() {
    let b = TestBackend::start("b");
    let mut lb = Balancer::with_config(&config(b.addr));
    let mut idle = Client::connect(lb.http);
    idle.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(idle.response().expect("response").status, 200);
    let addr = lb.http;
    let slow = std::thread::spawn(move || {
        let mut c = Client::connect(addr);
        c.send(b"GET /hold HTTP/1.1\r\nHost: a\r\n\r\n");
        let r = c.response();
        (r, c.closed())
    });
    // In flight: the backend has it, and answers once the drain began
    // (its listener closed: connections are refused).
    assert!(
        crate::common::eventually(WAIT, || b.received_text().contains("GET /hold")),
        "the held request never reached the backend"
    );
    lb.signal("TERM");
    assert!(
        crate::common::eventually(WAIT, || std::net::TcpStream::connect(addr).is_err()),
        "still accepting after SIGTERM: {}",
        lb.stderr()
    );
    b.release();
    let (r, closed) = slow.join().expect("thread");
    let r = r.expect("the in-flight request was dropped");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection").as_deref(), Some("close"));
    assert!(closed);
    assert!(
        idle.closed(),
        "idle keep-alive connection not closed on drain"
    );
    let status = lb
        .wait_exit(Duration::from_secs(5))
        .expect("did not exit after draining");
    assert!(status.success());
}
