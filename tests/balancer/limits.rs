//! Limits and slow clients: 414, 431, 413, the header deadline against
//! slowloris, idle keep-alive timeouts; a backend that answers before it has
//! read a large body; the lingering close after a refused upload.

use crate::support::*;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn limited(backend: std::net::SocketAddr) -> Balancer {
    Balancer::with_config(&format!(
        "[listen]\nhttp = [\"127.0.0.1:0\"]\n\
         [limits]\nmax_request_line = 100\nmax_header_bytes = 1000\nmax_headers = 10\nmax_body = 1000\nrequest_buffer = 64\n\
         [timeouts]\nheader_ms = 1000\nidle_ms = 1500\n\
         [[route]]\ndomains = [\"*\"]\nbackends = [\"{backend}\"]\n\
         [[route]]\ndomains = [\"small.example.com\"]\nbackends = [\"{backend}\"]\nmax_body = 10\n"
    ))
}

#[test]
fn size_limits() {
    let b = TestBackend::start("b1");
    let lb = limited(b.addr);
    let long_line = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(200));
    let big_head = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "a".repeat(1200)
    );
    let many: String = (0..11).map(|i| format!("X-{i}: 1\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
    let big_body = format!(
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n{}",
        "a".repeat(1001)
    );
    let app_body =
        "POST / HTTP/1.1\r\nHost: small.example.com\r\nContent-Length: 11\r\n\r\nhello world";
    let chunked = "POST / HTTP/1.1\r\nHost: small.example.com\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n";
    for (name, raw, status) in [
        ("long request line", long_line.as_str(), 414),
        ("big head", &big_head, 431),
        ("many fields", &many, 431),
        ("big body", &big_body, 413),
        ("app body limit", app_body, 413),
        ("chunked over the app limit", chunked, 413),
    ] {
        let r = request(lb.http, raw).unwrap_or_else(|| panic!("{name}: no response"));
        assert_eq!(r.status, status, "{name}");
    }
    assert!(b.received().is_empty(), "{}", b.received_text());
    let ok = request(
        lb.http,
        "POST /echo HTTP/1.1\r\nHost: small.example.com\r\nContent-Length: 10\r\n\r\nhelloworld",
    );
    assert_eq!(ok.expect("at the limit").text(), "helloworld");
}

#[test]
fn large_bodies_stream_past_the_buffer() {
    let b = TestBackend::start("b1");
    let lb = limited(b.addr);
    let body = "x".repeat(900);
    let r = request(
        lb.http,
        &format!("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 900\r\n\r\n{body}"),
    );
    assert_eq!(r.expect("response").text(), body);
    let chunks: String = (0..30)
        .map(|_| format!("1e\r\n{}\r\n", "y".repeat(30)))
        .collect();
    let r = request(
        lb.http,
        &format!(
            "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{chunks}0\r\n\r\n"
        ),
    );
    assert_eq!(r.expect("response").text(), "y".repeat(900));
}

#[test]
fn slowloris_cannot_starve_real_clients() {
    let b = TestBackend::start("b1");
    // A head deadline (5 s) longer than a loaded machine takes for what
    // follows: the slow clients are still waiting while the real ones are
    // served, whatever the load.
    let lb = Balancer::with_config(&format!(
        "[listen]\nhttp = [\"127.0.0.1:0\"]\n[timeouts]\nheader_ms = 5000\n\
         [[route]]\ndomains = [\"*\"]\nbackends = [\"{}\"]\n",
        b.addr
    ));
    let started = Instant::now();
    let mut slow: Vec<_> = (0..1000)
        .map(|_| {
            let mut c = Client::connect(lb.http);
            c.send(b"GET / HTTP/1.1\r\nHost: a\r\n");
            c
        })
        .collect();
    // Real clients are answered while a thousand heads dribble in.
    for i in 0..20 {
        let r = get(lb.http, "a", &format!("/real{i}")).expect("a real client was starved");
        assert_eq!(r.status, 200);
        for c in slow.iter_mut().step_by(50) {
            let _ = c.stream.write_all(b"X: 1\r\n");
        }
    }
    let served_by = started.elapsed();
    // Not by outlasting the slow ones: none has been answered yet.
    for (i, c) in slow.iter_mut().enumerate() {
        c.stream.set_nonblocking(true).expect("nonblocking");
        let mut byte = [0u8; 1];
        let waiting = matches!(
            std::io::Read::read(&mut c.stream, &mut byte),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
        );
        assert!(
            waiting || served_by >= Duration::from_secs(5),
            "slow client {i} was answered before the real clients were served ({served_by:?})"
        );
        c.stream.set_nonblocking(false).expect("blocking");
    }
    // Past the header deadline every slow client is answered 408 and closed.
    for (i, c) in slow.iter_mut().enumerate().step_by(97) {
        let r = c
            .response()
            .unwrap_or_else(|| panic!("slow client {i} not answered"));
        assert_eq!(r.status, 408);
        assert!(c.closed());
    }
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "answered 408 before the head deadline"
    );
    assert_eq!(b.requests.load(std::sync::atomic::Ordering::Relaxed), 20);
}

/// The balancer closes the connection idle_ms (1.5 s) after its last
/// answer: not before, and without a word (a 408 for a request never
/// begun, after the head deadline, would be bytes). The wait is long (a
/// loaded machine may stretch the close), and a failure says whether the
/// balancer wrote something or nothing came at all. "Not before" counts
/// from `asked`, an instant before the last request was sent, so before
/// the balancer's answer whatever the load: counted from when this thread
/// got round to reading the answer, a loaded machine's delay there came
/// off the idle time, and a correct close could look early.
fn closes_when_idle(c: &mut Client, asked: Instant) {
    c.stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut came = Vec::new();
    let closed = loop {
        let mut chunk = [0u8; 4096];
        match std::io::Read::read(&mut c.stream, &mut chunk) {
            Ok(0) => break true,
            Ok(n) => came.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    assert!(
        closed && came.is_empty(),
        "idle connection not closed quietly {:?} after the last request (closed: {closed}): {:?}",
        asked.elapsed(),
        String::from_utf8_lossy(&came)
    );
    let waited = asked.elapsed();
    assert!(
        waited >= Duration::from_millis(1500),
        "closed {waited:?} after the last request, before idle_ms"
    );
}

#[test]
fn idle_keep_alive_connections_are_closed() {
    let b = TestBackend::start("b1");
    let lb = limited(b.addr);
    let mut c = Client::connect(lb.http);
    let asked = Instant::now();
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(c.response().expect("response").status, 200);
    closes_when_idle(&mut c, asked);
}

#[test]
fn the_idle_timeout_counts_from_the_last_request() {
    // The idle timer is armed once per connection and moved only when it
    // fires early: a connection that keeps sending past its first idle
    // period stays open, then closes idle_ms after its last answer.
    let b = TestBackend::start("b1");
    let lb = limited(b.addr);
    let mut c = Client::connect(lb.http);
    let opened = Instant::now();
    // A request every half idle_ms: a lot of slack for a loaded machine.
    // The sleep is what is tested (the connection sits idle between
    // requests, for less than idle_ms), not a wait for something to happen.
    while opened.elapsed() < Duration::from_secs(3) {
        c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(c.response().expect("response").status, 200);
        std::thread::sleep(Duration::from_millis(750));
    }
    // Three seconds open, twice idle_ms: still served.
    let asked = Instant::now();
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(c.response().expect("response").status, 200);
    closes_when_idle(&mut c, asked);
}

/// A backend that answers before it has read a large body (an app's 401 or
/// 413) and closes: the client gets that answer, not a 502, whether the
/// body has a length or is chunked, and the connection closes after it.
#[test]
fn an_early_answer_to_a_large_body_reaches_the_client() {
    let b = TestBackend::start("b1");
    let lb = Balancer::ad_hoc(&[("*", vec![b.addr])], &[]);
    let body = vec![b'x'; 4 << 20];
    let mut chunked = Vec::new();
    for piece in body.chunks(100_000) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let length_head = format!(
        "POST /early HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let chunked_head =
        "POST /early HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_owned();
    for (head, body) in [(length_head, &body), (chunked_head, &chunked)] {
        let stream = TcpStream::connect(lb.http).expect("connect");
        let mut writer = stream.try_clone().expect("clone");
        let mut upload = head.into_bytes();
        upload.extend_from_slice(body);
        // The balancer stops reading mid-body: the writer's errors are expected.
        let sending = std::thread::spawn(move || {
            let _ = writer.write_all(&upload);
        });
        let mut c = Client::over(stream);
        let r = c.response().expect("an answer, not a reset");
        assert_eq!((r.status, r.text()), (401, "no entry".to_owned()));
        assert_eq!(r.header("connection").as_deref(), Some("close"));
        assert!(c.closed());
        sending.join().expect("writer");
    }
}

/// A client that writes its whole body before it reads (as most HTTP
/// libraries do) gets the answer to a request refused before its body was
/// read, and no broken pipe: the balancer reads and drops the rest of the
/// body before it closes (a lingering close), instead of resetting the
/// connection under the upload.
#[test]
fn a_refused_upload_is_drained_not_reset() {
    let b = TestBackend::start("b1");
    let lb = Balancer::ad_hoc(&[("*", vec![b.addr])], &[]);
    // More than the kernel's socket buffers on both sides hold.
    let n = 32 << 20;
    let mut upload = format!(
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {n}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    upload.resize(upload.len() + n, b'x');
    let mut c = Client::connect(lb.http);
    c.send(&upload);
    let r = c.response().expect("response");
    assert_eq!(r.status, 400);
    assert!(c.closed());
    assert!(b.received().is_empty());
}

/// A proxied connection takes two descriptors: under a soft limit of 256
/// open files (a shell's is often 1024) the balancer would refuse clients
/// past about 120. It raises the soft limit to the hard one on start.
#[test]
fn the_open_files_limit_is_raised_to_the_hard_one() {
    let b = TestBackend::start("b");
    let lb = Balancer::ad_hoc_under(&["prlimit", "--nofile=256:"], &[("*", vec![b.addr])]);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", lb.pid())).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("an open files line");
    let soft_and_hard: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(soft_and_hard[0], soft_and_hard[1], "{line}");
    let mut clients: Vec<Client> = (0..300).map(|_| Client::connect(lb.http)).collect();
    for c in &mut clients {
        c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    }
    for c in &mut clients {
        assert_eq!(
            c.response_to("GET").map(|r| r.status),
            Some(200),
            "{}",
            lb.stderr()
        );
    }
}

/// Out of descriptors, the balancer retries accepting every 10 ms: it says
/// so once a second, not a hundred times.
#[test]
fn running_out_of_descriptors_is_logged_once_a_second() {
    let b = TestBackend::start("b");
    let lb = Balancer::ad_hoc_under(&["prlimit", "--nofile=64:64"], &[("*", vec![b.addr])]);
    let first_possible = Instant::now();
    let clients: Vec<TcpStream> = (0..100)
        .filter_map(|_| TcpStream::connect(lb.http).ok())
        .collect();
    // Wait for the third warning rather than for time to pass: once a
    // second, it comes two seconds after the first (some 200 retries of
    // 10 ms later), so the count is at most one more than the whole seconds
    // since the first failure could have happened, whatever the load
    // stretches them to. Said at every retry, the third comes within 30 ms,
    // with no whole second gone by.
    assert!(lb.wait_log("accept failed", 3), "{}", lb.stderr());
    let warnings = lb.stderr().matches("accept failed").count();
    let seconds = first_possible.elapsed().as_secs();
    assert!(
        warnings as u64 <= seconds + 1,
        "{warnings} warnings in {seconds} s: {}",
        lb.stderr()
    );
    drop(clients);
}
