//! Backends that die, reset or stall: passive health takes them out (a
//! refused connect at once, dropped requests three in a row),
//! idempotent requests are retried on another backend, active checks bring
//! them back, and the friendly 502/503/504 pages say what happened.

use crate::support::*;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn config(backends: &[std::net::SocketAddr], extra: &str) -> String {
    config_checked_every(100, backends, extra)
}

fn config_checked_every(
    interval_ms: u64,
    backends: &[std::net::SocketAddr],
    extra: &str,
) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        "[listen]\nhttp = [\"127.0.0.1:0\"]\n[health]\ninterval_ms = {interval_ms}\ntimeout_ms = 200\nfail_timeout_ms = 5000\n\
         {extra}\n[[route]]\ndomains = [\"*\"]\nbackends = [{}]\n",
        list.join(", ")
    )
}

/// A runner that accepts connections and drops them unanswered.
fn dying_backend() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    dying_after(b"")
}

/// A runner that reads each request, writes `answer` (the start of a
/// response, or nothing) and closes.
fn dying_after(answer: &'static [u8]) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            count.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut s) = s {
                // Read the request, say `answer`, and close.
                let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
                let _ = std::io::Read::read(&mut s, &mut [0u8; 4096]);
                let _ = std::io::Write::write_all(&mut s, answer);
            }
        }
    });
    (addr, accepted)
}

#[test]
fn a_backend_dying_mid_stream_causes_no_failed_request() {
    let a = TestBackend::start("a");
    let b = TestBackend::start("b");
    let lb = Balancer::ad_hoc(&[("*", vec![a.addr, b.addr])], &[]);
    let load = Load::start(
        lb.http,
        4,
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        |r| r.status == 200,
        false,
    );
    load.wait_done(50);
    assert!(a.requests.load(Ordering::Relaxed) > 0, "a served nothing");
    a.stop();
    let at_kill = load.done();
    load.wait_done(at_kill + 50);
    let (_, failures) = load.finish();
    assert_eq!(failures, 0, "{}", lb.stderr());
}

#[test]
fn idempotent_requests_are_retried_and_posts_are_not() {
    let (dying, accepted) = dying_backend();
    let good = TestBackend::start("good");
    let lb = Balancer::with_config(&config(&[dying, good.addr], ""));
    // Round-robin starts with the dying backend: the GET is retried.
    let r = get(lb.http, "a", "/page").expect("response");
    assert_eq!((r.status, r.text().as_str()), (200, "good GET /page 0"));
    assert!(accepted.load(Ordering::Relaxed) >= 1);
    assert!(
        lb.wait_log("closed without answering", 1),
        "{}",
        lb.stderr()
    );

    let (dying, _) = dying_backend();
    let good = TestBackend::start("good");
    let lb = Balancer::with_config(&config(&[dying, good.addr], ""));
    let r = request(
        lb.http,
        "POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    )
    .expect("response");
    assert_eq!(
        r.status, 502,
        "a POST that reached a backend must not be sent twice"
    );
    assert!(r.text().contains("<h1>502 Bad Gateway</h1>"));
    assert!(good.received().is_empty());
    // Round-robin sends the next POST to the good one.
    let r = request(
        lb.http,
        "POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    )
    .expect("response");
    assert_eq!(r.text(), "good POST /form 2");
}

/// A gunicorn worker killed for its timeout drops its one request: that
/// takes no runner out (with one runner, everyone else would get 503 until
/// the next active check). Three dropped requests in a row do.
#[test]
fn one_dropped_request_does_not_take_its_backend_out() {
    let only = TestBackend::start("only");
    // Active checks would put it back at once: here only requests count.
    let lb = Balancer::with_config(&config_checked_every(60_000, &[only.addr], ""));
    for _ in 0..2 {
        // `/reset` reads the request and closes without answering.
        let r = get(lb.http, "a", "/reset").expect("response");
        assert_eq!(r.status, 502);
        assert_eq!(get(lb.http, "a", "/page").expect("response").status, 200);
    }
    for _ in 0..3 {
        assert_eq!(get(lb.http, "a", "/reset").expect("response").status, 502);
    }
    let r = get(lb.http, "a", "/page").expect("response");
    assert_eq!(r.status, 503, "three dropped requests in a row took it out");
    assert!(lb.wait_log("out of rotation", 1), "{}", lb.stderr());
}

/// gunicorn writes a response's head and body in two calls: a runner that
/// dies between them must not leave the client a truncated answer.
#[test]
fn a_backend_dying_between_head_and_body_is_retried() {
    let head_only = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf";
    let (dying, accepted) = dying_after(head_only);
    let good = TestBackend::start("good");
    let lb = Balancer::with_config(&config(&[dying, good.addr], ""));
    let r = get(lb.http, "a", "/page").expect("response");
    assert_eq!((r.status, r.text().as_str()), (200, "good GET /page 0"));
    assert!(accepted.load(Ordering::Relaxed) >= 1);
    assert!(lb.wait_log("closed mid-answer", 1), "{}", lb.stderr());

    let (dying, _) = dying_after(head_only);
    let lb = Balancer::with_config(&config(&[dying, good.addr], ""));
    let r = request(
        lb.http,
        "POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    )
    .expect("response");
    assert_eq!(r.status, 502, "a POST is not sent twice, nor cut short");
    assert!(r.text().contains("mid-answer"), "{}", r.text());
}

#[test]
fn active_checks_bring_a_backend_back() {
    let a = TestBackend::start("a");
    let b = TestBackend::start("b");
    let lb = Balancer::with_config(&config(&[a.addr, b.addr], ""));
    let addr = a.addr;
    a.stop();
    drop(a);
    for _ in 0..4 {
        assert!(get(lb.http, "x", "/")
            .expect("response")
            .text()
            .starts_with("b "));
    }
    let back = TestBackend::start_at(addr, "a-again");
    let deadline = Instant::now() + WAIT;
    let mut seen = false;
    while !seen && Instant::now() < deadline {
        seen = get(lb.http, "x", "/")
            .expect("response")
            .text()
            .starts_with("a-again ");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(seen, "the backend never came back into rotation");
    assert!(back.requests.load(Ordering::Relaxed) >= 1);
}

#[test]
fn friendly_pages_for_502_503_504() {
    let free = std::net::SocketAddr::from(([127, 0, 0, 1], crate::common::free_port()));
    // Active checks would find it down first: here only requests do.
    let lb = Balancer::with_config(&config_checked_every(60_000, &[free], ""));
    let r = get(lb.http, "x", "/").expect("response");
    assert_eq!(r.status, 502);
    assert!(
        r.text().contains("did not answer") || r.text().contains("No backend"),
        "{}",
        r.text()
    );
    let r = get(lb.http, "x", "/").expect("response");
    assert_eq!(
        r.status, 503,
        "a backend known to be down is not tried again at once"
    );
    assert!(r.text().contains("<h1>503 Service Unavailable</h1>"));

    let slow = TestBackend::start("slow");
    let lb = Balancer::with_config(&config(&[slow.addr], "[timeouts]\nresponse_ms = 100\n"));
    let r = get(lb.http, "x", "/slow").expect("response");
    assert_eq!(r.status, 504);
    assert!(r.text().contains("<h1>504 Gateway Timeout</h1>"));
}

#[test]
fn least_connections_avoids_the_busy_backend() {
    let a = TestBackend::start("a");
    let b = TestBackend::start("b");
    let lb = Balancer::with_config(
        &config(&[a.addr, b.addr], "")
            .replace("[listen]\n", "[listen]\nadmin = \"127.0.0.1:0\"\n")
            .replace("backends =", "policy = \"least_connections\"\nbackends ="),
    );
    let addr = lb.http;
    // Busy for longer than the test runs: the balancer's end goes when
    // the test does.
    std::thread::spawn(move || get(addr, "x", "/slow?ms=60000"));
    let busy = || {
        [&a, &b]
            .into_iter()
            .find(|x| x.received_text().contains("/slow"))
    };
    assert!(
        crate::common::eventually(WAIT, || busy().is_some()),
        "the slow request reached no backend"
    );
    let busy = busy().expect("busy");
    let idle = if busy.name == a.name { &b } else { &a };
    let admin = lb.admin.expect("admin listener");
    let in_flight = |backend: &TestBackend| {
        let metrics = get(admin, "admin", "/metrics").map(|m| m.text());
        let line = format!("sitec_backend_active{{backend=\"{}\"}} ", backend.addr);
        metrics.and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix(line.as_str()).map(str::to_owned))
        })
    };
    for _ in 0..4 {
        // The balancer counts a request until its exchange is over, which
        // may be a moment after the client has read the answer: wait until
        // it has counted the last fast one out, or a tie could send the
        // next to either backend.
        assert!(
            crate::common::eventually(WAIT, || {
                in_flight(busy).as_deref() == Some("1") && in_flight(idle).as_deref() == Some("0")
            }),
            "in flight: {} {:?}, {} {:?}",
            busy.name,
            in_flight(busy),
            idle.name,
            in_flight(idle)
        );
        let text = get(lb.http, "x", "/").expect("response").text();
        assert!(
            text.starts_with(&format!("{} ", idle.name)),
            "{} is busy, yet it answered: {text}",
            busy.name
        );
    }
}

/// A runner agent's heartbeat (`agent::heartbeat`): its host and one app
/// whose web service runs or not (`serving`), its workers too.
fn heartbeat(host: &str, app: &str, serving: bool) -> String {
    heartbeat_with_workers(host, app, serving, serving)
}

fn heartbeat_with_workers(host: &str, app: &str, serving: bool, healthy: bool) -> String {
    format!(
        "{{\"host\":\"{host}\",\"seq\":1,\"time\":0.0,\"version\":\"test\",\
         \"apps\":[{{\"name\":\"{app}\",\"healthy\":{healthy},\"serving\":{serving},\"units\":[],\"error\":null}}]}}"
    )
}

/// The runners that publish heartbeats in these tests, in the order of
/// their endpoints.
const RUNNERS: [&str; 2] = ["run1", "run2"];

/// Runner agents run1 and run2, each on a real CURVE PUB of its own (the
/// `bus` module the agents use, with each runner's key, admitting the
/// balancer's): every 100 ms each publishes the latest heartbeats sent on
/// the returned channel as `(publishing runner, heartbeat)`.
/// Where the test agents take their heartbeats: `(publishing runner, heartbeat)`.
type Beats = std::sync::mpsc::Sender<Vec<(&'static str, String)>>;

fn agents_publishing() -> (Vec<String>, Beats) {
    use sitec::bus::{keys, Bus, Kind, Peer};
    let endpoints: Vec<String> = RUNNERS
        .iter()
        .map(|_| format!("tcp://127.0.0.1:{}", crate::common::free_port()))
        .collect();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<(&'static str, String)>>();
    let bind = endpoints.clone();
    let (bound, ready) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let balancer = Peer {
            name: "lb1".into(),
            key: keys::derive("lb1").public,
        };
        let publishers: Vec<(Bus, zmq::Socket)> = (RUNNERS.iter().zip(&bind))
            .map(|(host, at)| {
                let bus = Bus::new(keys::derive(host)).expect("a bus");
                let socket = (bus.bind(Kind::Heartbeats, at, std::slice::from_ref(&balancer)))
                    .expect("bind the PUB socket");
                (bus, socket)
            })
            .collect();
        let _ = bound.send(());
        let mut beats = Vec::new();
        loop {
            match rx.try_recv() {
                Ok(latest) => beats = latest,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => return,
                Err(std::sync::mpsc::TryRecvError::Empty) => {}
            }
            for (from, beat) in &beats {
                let i = RUNNERS.iter().position(|r| r == from).expect("a runner");
                let _ = publishers[i].1.send(beat.as_bytes(), zmq::DONTWAIT);
            }
            // The publishers' pace, as an agent's heartbeat interval: no
            // assertion waits on it (the tests wait for marker heartbeats).
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    ready.recv().expect("publishers bound");
    (endpoints, tx)
}

/// Who answered `n` requests: (a's count, b's count) of requests received.
fn served(lb: std::net::SocketAddr, a: &TestBackend, b: &TestBackend, n: usize) -> (usize, usize) {
    let (a0, b0) = (
        a.requests.load(Ordering::SeqCst),
        b.requests.load(Ordering::SeqCst),
    );
    for _ in 0..n {
        let r = get(lb, "blog.example.com", "/").expect("an answer");
        assert_eq!(r.status, 200);
    }
    (
        a.requests.load(Ordering::SeqCst) - a0,
        b.requests.load(Ordering::SeqCst) - b0,
    )
}

/// A balancer routing `blog.example.com` to `a` on run1 and `b` on run2,
/// following run1's and run2's heartbeats at `endpoints` with key `lb1`,
/// its active checks every `interval_ms`. Routes for apps `mark1`..`mark3` on
/// both runners (`Heartbeats::wait_mark`) serve only to show how far the
/// balancer has read each runner's heartbeats.
struct Heartbeats {
    lb: Balancer,
    /// The marker routes' backends.
    _marks: Vec<TestBackend>,
}

fn following_heartbeats(
    endpoints: &[String],
    (a, b): (std::net::SocketAddr, std::net::SocketAddr),
    interval_ms: u64,
) -> Heartbeats {
    use std::os::unix::fs::PermissionsExt;
    let keys = tempfile::tempdir().expect("tempdir").keep();
    let key_file = keys.join("balancer.key");
    std::fs::write(&key_file, sitec::bus::keys::derive("lb1").key_file_text()).expect("key");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let heartbeats: Vec<String> = (RUNNERS.iter().zip(endpoints))
        .map(|(host, at)| {
            let key = sitec::bus::keys::derive(host).public;
            format!("{{ host = \"{host}\", endpoint = \"{at}\", key = \"{key}\" }}")
        })
        .collect();
    let marks: Vec<TestBackend> = (0..6)
        .map(|n| TestBackend::start(&format!("mark{n}")))
        .collect();
    let mark_routes: String = (1..=3)
        .map(|n| {
            format!(
                "[[route]]\nname = \"mark{n}\"\ndomains = [\"mark{n}.example.com\"]\n\
                 backends = [\"{}\", \"{}\"]\nhosts = [\"run1\", \"run2\"]\n",
                marks[2 * n - 2].addr,
                marks[2 * n - 1].addr
            )
        })
        .collect();
    let lb = Balancer::with_config(&format!(
        "[listen]\nhttp = [\"127.0.0.1:0\"]\n[health]\ninterval_ms = {interval_ms}\n\
         [bus]\nkey_file = \"{}\"\nheartbeats = [{}]\n\
         [[route]]\nname = \"blog\"\ndomains = [\"blog.example.com\"]\n\
         backends = [\"{}\", \"{}\"]\nhosts = [\"run1\", \"run2\"]\n{mark_routes}",
        key_file.display(),
        heartbeats.join(", "),
        a,
        b
    ));
    assert!(
        lb.wait_log("following heartbeats from", 2),
        "{}",
        lb.stderr()
    );
    Heartbeats { lb, _marks: marks }
}

/// Test backends `a` on run1 and `b` on run2, their agents publishing, and
/// a balancer following them with active checks every `interval_ms`.
fn two_runners(interval_ms: u64) -> (TestBackend, TestBackend, Beats, Heartbeats) {
    let a = TestBackend::start("a");
    let b = TestBackend::start("b");
    let (endpoints, agents) = agents_publishing();
    let beats = following_heartbeats(&endpoints, (a.addr, b.addr), interval_ms);
    (a, b, agents, beats)
}

/// The `n`th marker round (1 to 3, each used once): put last, each
/// runner's marker is read after every heartbeat that runner sent before
/// it (one socket per runner, in order), and the balancer logs it
/// (`Heartbeats::wait_mark`).
fn mark(n: u8) -> [(&'static str, String); 2] {
    RUNNERS.map(|r| (r, heartbeat(r, &format!("mark{n}"), false)))
}

impl Heartbeats {
    /// Waits until the balancer has read both runners' rounds up to `mark(n)`.
    fn wait_mark(&self, n: u8) {
        for runner in RUNNERS {
            assert!(
                self.lb
                    .wait_log(&format!("{runner}'s agent says mark{n} is not running"), 1),
                "{}",
                self.lb.stderr()
            );
        }
    }
}

/// Waits until the active checks have probed `backend` (a TCP connect each)
/// `n` more times: what would bring it back had a check the last word.
fn probed(backend: &TestBackend, n: usize) {
    let seen = backend.connections.load(Ordering::SeqCst);
    assert!(
        crate::common::eventually(WAIT, || backend.connections.load(Ordering::SeqCst)
            >= seen + n),
        "no active check reached {}",
        backend.name
    );
}

#[test]
fn a_runner_whose_agent_says_the_app_is_down_gets_no_requests_until_it_says_it_runs() {
    // The active checks find `a` answering throughout, yet the heartbeat
    // keeps it out.
    let (a, b, agents, beats) = two_runners(100);
    let lb = &beats.lb;
    assert_eq!(
        served(lb.http, &a, &b, 10),
        (5, 5),
        "round robin before any heartbeat"
    );

    agents
        .send(vec![
            ("run1", heartbeat("run1", "blog", false)),
            ("run2", heartbeat("run2", "blog", true)),
        ])
        .expect("send");
    assert!(
        lb.wait_log("run1's agent says blog is not running", 1),
        "{}",
        lb.stderr()
    );
    // The active checks find `a` answering: they do not bring it back.
    probed(&a, 3);
    assert_eq!(served(lb.http, &a, &b, 10), (0, 10), "{}", lb.stderr());

    // Another app on run1, or run2 speaking for run1 (or for a host it
    // does not know): nothing changes; a host speaks only for itself.
    let mut round = vec![
        ("run1", heartbeat("run1", "blog", false)),
        ("run1", heartbeat("run1", "shop", true)),
        ("run2", heartbeat("run1", "blog", true)),
        ("run2", heartbeat("run3", "blog", true)),
    ];
    round.extend(mark(1));
    agents.send(round).expect("send");
    beats.wait_mark(1);
    assert!(
        lb.wait_log(
            "heartbeats from run2: ignored a heartbeat that speaks for `run1`",
            1
        ),
        "{}",
        lb.stderr()
    );
    assert_eq!(served(lb.http, &a, &b, 4), (0, 4));

    agents
        .send(vec![
            ("run1", heartbeat("run1", "blog", true)),
            ("run2", heartbeat("run2", "blog", true)),
        ])
        .expect("send");
    assert!(
        lb.wait_log("run1's agent says blog runs again", 1),
        "{}",
        lb.stderr()
    );
    assert_eq!(served(lb.http, &a, &b, 10), (5, 5), "{}", lb.stderr());

    // A worker (celery) down on run1 while its web service runs: it serves.
    let mut round = vec![("run1", heartbeat_with_workers("run1", "blog", true, false))];
    round.extend(mark(2));
    agents.send(round).expect("send");
    beats.wait_mark(2);
    assert_eq!(served(lb.http, &a, &b, 10), (5, 5), "{}", lb.stderr());
    assert_eq!(
        lb.stderr()
            .matches("run1's agent says blog is not running")
            .count(),
        1,
        "held out again for a worker: {}",
        lb.stderr()
    );
}

#[test]
fn a_hold_lapses_when_the_agent_falls_silent() {
    let (a, b, agents, beats) = two_runners(100);
    let lb = &beats.lb;
    agents
        .send(vec![("run1", heartbeat("run1", "blog", false))])
        .expect("send");
    assert!(
        lb.wait_log("run1's agent says blog is not running", 1),
        "{}",
        lb.stderr()
    );
    // Held while the agent says so (each beat renews the hold).
    assert_eq!(served(lb.http, &a, &b, 4), (0, 4), "{}", lb.stderr());
    agents.send(Vec::new()).expect("send");
    // No news for longer than the hold (3 s): run1 is the checks' again.
    let started = Instant::now();
    assert!(
        crate::common::eventually(WAIT, || served(lb.http, &a, &b, 2).0 > 0),
        "the hold never lapsed: {}",
        lb.stderr()
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "lapsed at once"
    );
    assert_eq!(served(lb.http, &a, &b, 10), (5, 5), "{}", lb.stderr());
}

/// A runner cut off from the network: it accepts connections and never
/// answers, until `cut` closes its listener (a probe is refused, as one to
/// a dead machine finds no answer) and leaves the open connections mute.
struct Mute {
    addr: std::net::SocketAddr,
    accepted: Arc<AtomicUsize>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    listening: Option<std::thread::JoinHandle<Vec<std::net::TcpStream>>>,
    /// The connections it took, kept open and silent.
    open: Vec<std::net::TcpStream>,
}

impl Mute {
    fn start() -> Mute {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        let addr = l.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (count, stopped) = (accepted.clone(), stop.clone());
        let listening = std::thread::spawn(move || {
            let mut open = Vec::new();
            while !stopped.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((s, _)) => {
                        count.fetch_add(1, Ordering::SeqCst);
                        open.push(s);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            open
        });
        Mute {
            addr,
            accepted,
            stop,
            listening: Some(listening),
            open: Vec::new(),
        }
    }

    fn cut(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(listening) = self.listening.take() {
            self.open = listening.join().expect("the listening thread");
        }
    }
}

/// Both runners beat (blog serving) until the balancer has read it.
fn both_beating(agents: &Beats, beats: &Heartbeats) {
    let mut round: Vec<(&'static str, String)> = RUNNERS
        .iter()
        .map(|r| (*r, heartbeat(r, "blog", true)))
        .collect();
    round.extend(mark(1));
    agents.send(round).expect("send");
    beats.wait_mark(1);
}

/// run1's heartbeats stop and its app answers no more (its machine died):
/// the balancer probes it at once and takes it out, and the GET waiting on
/// it is given up and answered by run2, without waiting for the active
/// checks (a minute apart here) or the response timeout (a minute).
#[test]
fn a_runner_found_dead_is_out_and_its_requests_in_flight_go_to_another() {
    let mut a = Mute::start();
    let b = TestBackend::start("b");
    let (endpoints, agents) = agents_publishing();
    let beats = following_heartbeats(&endpoints, (a.addr, b.addr), 60_000);
    let lb = &beats.lb;
    both_beating(&agents, &beats);
    // GETs until one waits on run1 (round robin: the first or the second).
    let http = lb.http;
    let gets: Vec<std::thread::JoinHandle<Option<Response>>> = (0..2)
        .map(|_| std::thread::spawn(move || get(http, "blog.example.com", "/")))
        .collect();
    assert!(
        crate::common::eventually(WAIT, || a.accepted.load(Ordering::SeqCst) >= 1),
        "no GET reached run1"
    );
    a.cut();
    agents
        .send(vec![("run2", heartbeat("run2", "blog", true))])
        .expect("send");
    for got in gets {
        let r = got.join().expect("a GET").expect("an answer");
        assert_eq!(r.status, 200, "{}\n{}", r.text(), lb.stderr());
    }
    assert!(
        lb.wait_log("run1's heartbeats stopped and it does not answer", 1),
        "{}",
        lb.stderr()
    );
    assert!(lb.stderr().contains("found dead"), "{}", lb.stderr());
    let (to_b, _) = served(lb.http, &b, &b, 4);
    assert_eq!(to_b, 4, "every GET to run2: run1 is out");
}

/// Every heartbeat vanishes (the bus is down) while the runners serve: each
/// is probed, answers and stays in rotation; a bus outage is not a web
/// outage.
#[test]
fn a_bus_outage_takes_no_runner_out() {
    let (a, b, agents, beats) = two_runners(60_000);
    let lb = &beats.lb;
    both_beating(&agents, &beats);
    agents.send(Vec::new()).expect("send");
    assert!(
        lb.wait_log("heartbeats are silent, but it answers: kept in rotation", 2),
        "{}",
        lb.stderr()
    );
    assert_eq!(served(lb.http, &a, &b, 10), (5, 5), "{}", lb.stderr());
    assert!(!lb.stderr().contains("found dead"), "{}", lb.stderr());
}

/// A real backend process (python3) that streams its answers slowly and
/// for ever: `GET /length` a body of announced length (its first 70,000
/// bytes at once, past what the balancer holds back, then 100 bytes every
/// 50 ms), `/chunked` a chunk every 50 ms, `/close` bytes until it closes
/// (HTTP/1.0's framing); each answer names the backend (`X-Backend`). Its
/// listen queue holds one connection: while it is frozen, a second finds
/// no answer, as a dead machine's does.
const STREAMER: &str = r#"
import socket, sys, threading, time
name = sys.argv[1].encode()
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(0)
print(listener.getsockname()[1], flush=True)
def serve(c):
    try:
        asked = b""
        while b"\r\n\r\n" not in asked:
            more = c.recv(4096)
            if not more:
                return
            asked += more
        path = asked.split(b" ")[1]
        head = b"HTTP/1.1 200 OK\r\nX-Backend: " + name + b"\r\n"
        tick = b"x" * 100
        if path == b"/length":
            c.sendall(head + b"Content-Length: 100000000\r\n\r\n" + b"x" * 70000)
            frame = lambda: tick
        elif path == b"/chunked":
            c.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n")
            frame = lambda: b"64\r\n" + tick + b"\r\n"
        else:
            c.sendall(head + b"Connection: close\r\n\r\n")
            frame = lambda: tick
        while True:
            c.sendall(frame())
            time.sleep(0.05)
    except OSError:
        pass
    finally:
        c.close()
while True:
    c, _ = listener.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// A `STREAMER` process, killed when dropped.
struct Streamer {
    child: std::process::Child,
    addr: std::net::SocketAddr,
}

impl Streamer {
    fn start(name: &str) -> Streamer {
        let mut child = std::process::Command::new("python3")
            .args(["-c", STREAMER, name])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut port = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
            &mut port,
        )
        .expect("the streamer's port");
        let port: u16 = port.trim().parse().expect("a port");
        Streamer {
            child,
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    /// Freezes it (SIGSTOP) as a machine that hangs or is cut off: its
    /// connections stay open and mute, nothing closes them, and once its
    /// listen queue is full a connect finds no answer.
    fn freeze(&self) -> Vec<std::net::TcpStream> {
        let pid = self.child.id().to_string();
        let stopped = std::process::Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .expect("kill runs");
        assert!(stopped.success());
        // Every thread stopped (SIGSTOP lands on each as it next runs):
        // none accepts a connection any more.
        let all_stopped = || {
            std::fs::read_dir(format!("/proc/{pid}/task"))
                .into_iter()
                .flatten()
                .flatten()
                .all(|task| {
                    std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
                        stat.rsplit(") ").next().is_some_and(|s| s.starts_with('T'))
                    })
                })
        };
        assert!(
            crate::common::eventually(WAIT, all_stopped),
            "the streamer never stopped"
        );
        let mut queued = Vec::new();
        for _ in 0..8 {
            match std::net::TcpStream::connect_timeout(&self.addr, Duration::from_millis(300)) {
                Ok(s) => queued.push(s),
                Err(_) => return queued,
            }
        }
        panic!("the frozen streamer's listen queue never filled");
    }
}

impl Drop for Streamer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response being read by a client: the head's backend and what came.
struct Streaming {
    kind: &'static str,
    backend: String,
    stream: std::net::TcpStream,
    got: Vec<u8>,
}

impl Streaming {
    /// `GET /KIND`, read until its head and the first body bytes are in.
    fn start(lb: std::net::SocketAddr, kind: &'static str) -> Streaming {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(lb).expect("connect");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        write!(
            stream,
            "GET /{kind} HTTP/1.1\r\nHost: blog.example.com\r\n\r\n"
        )
        .expect("send");
        let mut got = Vec::new();
        let mut chunk = [0u8; 65536];
        let head_end = loop {
            if let Some(end) = find(&got, b"\r\n\r\n") {
                if got.len() > end + 4 {
                    break end;
                }
            }
            let n = stream.read(&mut chunk).expect("the response's start");
            assert!(n > 0, "closed before the body began: {got:?}");
            got.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&got[..head_end]).to_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        let backend = head
            .lines()
            .find_map(|l| l.strip_prefix("x-backend: "))
            .unwrap_or_else(|| panic!("no X-Backend: {head}"))
            .to_string();
        Streaming {
            kind,
            backend,
            stream,
            got,
        }
    }

    /// Reads until the balancer ends the connection (EOF or a reset):
    /// whether it did before `deadline`.
    fn ends_before(&mut self, deadline: Instant) -> bool {
        use std::io::Read;
        let mut chunk = [0u8; 65536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.stream.set_read_timeout(Some(left)).expect("timeout");
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(n) => self.got.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return false
                }
                Err(_) => return true,
            }
        }
    }

    /// Whether more of the body still comes.
    fn still_streams(&mut self) -> bool {
        use std::io::Read;
        let mut chunk = [0u8; 65536];
        matches!(self.stream.read(&mut chunk), Ok(n) if n > 0)
    }

    /// Whether what came is a whole response: the announced length, or the
    /// last chunk. (A close-delimited answer is relayed as chunks.)
    fn complete(&self) -> bool {
        let end = find(&self.got, b"\r\n\r\n").expect("a head") + 4;
        match self.kind {
            "length" => self.got.len() - end >= 100_000_000,
            _ => self.got.ends_with(b"\r\n0\r\n\r\n"),
        }
    }
}

/// run1 hangs while it streams three answers to clients (a body of
/// announced length, a chunked one, one that ends at close), its
/// heartbeats stop and a probe finds no answer: the balancer finds it dead
/// and closes those clients' connections at once, each answer visibly cut
/// short (short of its length, no last chunk), instead of leaving them
/// waiting for the response timeout (a minute). run2's answers stream on.
#[test]
fn a_runner_found_dead_mid_response_ends_its_streams_at_once() {
    let a = Streamer::start("a");
    let b = Streamer::start("b");
    let (endpoints, agents) = agents_publishing();
    let beats = following_heartbeats(&endpoints, (a.addr, b.addr), 60_000);
    let lb = &beats.lb;
    both_beating(&agents, &beats);
    // Each kind twice: one to each runner, round robin or least loaded.
    let mut streams: Vec<Streaming> = ["length", "length", "chunked", "chunked", "close", "close"]
        .into_iter()
        .map(|kind| Streaming::start(lb.http, kind))
        .collect();
    for kind in ["length", "chunked", "close"] {
        let to: Vec<&str> = (streams.iter().filter(|s| s.kind == kind))
            .map(|s| s.backend.as_str())
            .collect();
        assert!(
            to.contains(&"a") && to.contains(&"b"),
            "{kind} went to {to:?}"
        );
    }
    let _queued = a.freeze();
    agents
        .send(vec![("run2", heartbeat("run2", "blog", true))])
        .expect("send");
    // Found dead a quarter of a second after its last pulse, plus a probe:
    // 10 s is a deadline for a loaded machine, not a measure.
    let deadline = Instant::now() + WAIT;
    for s in streams.iter_mut().filter(|s| s.backend == "a") {
        assert!(
            s.ends_before(deadline),
            "the {} answer from the dead runner was still open after 10 s (response timeout 60 s): {}",
            s.kind,
            lb.stderr()
        );
        assert!(!s.complete(), "the {} answer looks whole", s.kind);
    }
    assert!(
        lb.wait_log("found dead mid-response: the response is cut short", 3),
        "{}",
        lb.stderr()
    );
    for s in streams.iter_mut().filter(|s| s.backend == "b") {
        assert!(s.still_streams(), "run2's {} answer stopped", s.kind);
    }
}
