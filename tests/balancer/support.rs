//! Helpers for the balancer's integration tests: a tiny HTTP/1.1 backend
//! that records every byte it receives, a handle on a real `sitec balancer`
//! process, and a strict-enough client. Everything binds to 127.0.0.1
//! port 0; every wait is bounded.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const WAIT: Duration = Duration::from_secs(10);

/// A test backend: answers every request with 200 and a body naming the
/// backend, the method, the path and the body length; special paths:
/// `/headers` echoes the request head, `/echo` the body, `/chunked` answers
/// chunked with a trailer, `/eof` answers with no length and closes,
/// `/ws` switches protocols and echoes bytes, `/slow` waits 300 ms
/// (`/slow?ms=N`: N ms), `/hold` waits until the test calls `release`,
/// `/reset` closes without answering, `POST /early` answers 401 before
/// reading any of the body and closes, `/raw` answers with the request's body
/// as its whole response, bytes as given.
pub struct TestBackend {
    pub addr: SocketAddr,
    pub name: String,
    received: Arc<Mutex<Vec<u8>>>,
    pub connections: Arc<AtomicUsize>,
    pub requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    released: Arc<AtomicBool>,
    /// The thread that owns the listener: joined, the port is closed.
    accepting: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl TestBackend {
    pub fn start(name: &str) -> TestBackend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind test backend");
        Self::on(listener, name)
    }

    /// A backend on a given address (to bring one back on its old port).
    pub fn start_at(addr: SocketAddr, name: &str) -> TestBackend {
        let deadline = Instant::now() + WAIT;
        loop {
            match TcpListener::bind(addr) {
                Ok(l) => return Self::on(l, name),
                Err(e) if Instant::now() > deadline => panic!("rebind {addr}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    fn on(listener: TcpListener, name: &str) -> TestBackend {
        let b = TestBackend {
            addr: listener.local_addr().expect("addr"),
            name: name.to_owned(),
            received: Arc::default(),
            connections: Arc::default(),
            requests: Arc::default(),
            stop: Arc::default(),
            released: Arc::default(),
            accepting: Mutex::new(None),
        };
        let (received, connections, requests, stop, released, name) = (
            b.received.clone(),
            b.connections.clone(),
            b.requests.clone(),
            b.stop.clone(),
            b.released.clone(),
            b.name.clone(),
        );
        listener.set_nonblocking(true).expect("nonblocking");
        let accepting = std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        connections.fetch_add(1, Ordering::Relaxed);
                        let (received, requests, name) =
                            (received.clone(), requests.clone(), name.clone());
                        let flags = Flags {
                            stop: stop.clone(),
                            released: released.clone(),
                        };
                        std::thread::spawn(move || serve(s, &received, &requests, &flags, &name));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        *b.accepting.lock().expect("lock") = Some(accepting);
        b
    }

    /// Every byte any connection sent it.
    pub fn received(&self) -> Vec<u8> {
        self.received.lock().expect("lock").clone()
    }

    /// Lets every `/hold` request, waiting or to come, be answered.
    pub fn release(&self) {
        self.released.store(true, Ordering::SeqCst);
    }

    pub fn received_text(&self) -> String {
        String::from_utf8_lossy(&self.received()).into_owned()
    }

    /// Stops accepting and closes its listener: when this returns, new
    /// connections are refused (open ones close at their next read).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(accepting) = self.accepting.lock().expect("lock").take() {
            accepting.join().expect("the accepting thread");
        }
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What a test tells a backend's connections: stop, or answer `/hold`.
struct Flags {
    stop: Arc<AtomicBool>,
    released: Arc<AtomicBool>,
}

fn serve(
    mut s: TcpStream,
    received: &Mutex<Vec<u8>>,
    requests: &AtomicUsize,
    flags: &Flags,
    name: &str,
) {
    let stop = &flags.stop;
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let idle_since = Instant::now();
    loop {
        if stop.load(Ordering::Relaxed) || idle_since.elapsed() > Duration::from_secs(30) {
            return;
        }
        let Some(end) = find(&buf, b"\r\n\r\n") else {
            match s.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => {
                    received
                        .lock()
                        .expect("lock")
                        .extend_from_slice(&chunk[..n]);
                    buf.extend_from_slice(&chunk[..n]);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return,
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
        let mut rest = buf.split_off(end + 4);
        let header = |n: &str| {
            head.lines().find_map(|l| {
                l.split_once(':')
                    .filter(|(k, _)| k.eq_ignore_ascii_case(n))
                    .map(|(_, v)| v.trim().to_owned())
            })
        };
        if head.starts_with("POST /early ") {
            // Refuses at once, reads none of the body, and closes.
            let _ = s.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 8\r\n\r\nno entry");
            return;
        }
        let Some(body) = read_body(&mut s, &mut rest, &header, received) else {
            return;
        };
        buf = rest;
        requests.fetch_add(1, Ordering::Relaxed);
        let mut parts = head.split(' ');
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let text = format!("{name} {method} {path} {}", body.len());
        let route = path.split('?').next().unwrap_or_default();
        let out = match route {
            "/headers" => ok(&head),
            "/echo" => ok(&String::from_utf8_lossy(&body)),
            "/chunked" => format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Check\r\n\r\n5\r\nhello\r\n7\r\n, world\r\n0\r\nX-Check: {name}\r\n\r\n"
            ),
            "/eof" => {
                let _ = s.write_all(format!("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{text}").as_bytes());
                return;
            }
            "/reset" => return,
            "/raw" => String::from_utf8_lossy(&body).into_owned(),
            "/ws" => {
                let _ = s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
                let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
                if !buf.is_empty() {
                    let _ = s.write_all(&buf);
                }
                while let Ok(n) = s.read(&mut chunk) {
                    if n == 0 || s.write_all(&chunk[..n]).is_err() {
                        break;
                    }
                }
                return;
            }
            "/hold" => {
                let deadline = Instant::now() + Duration::from_secs(60);
                while !flags.released.load(Ordering::SeqCst)
                    && !stop.load(Ordering::Relaxed)
                    && Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                ok(&text)
            }
            "/slow" => {
                let ms = path.split("ms=").nth(1).and_then(|v| v.parse().ok()).unwrap_or(300);
                std::thread::sleep(Duration::from_millis(ms));
                ok(&text)
            }
            _ if method == "HEAD" => format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", text.len()),
            _ => ok(&text),
        };
        if s.write_all(out.as_bytes()).is_err() {
            return;
        }
        if header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close")) {
            let _ = s.shutdown(Shutdown::Both);
            return;
        }
    }
}

fn ok(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n{body}",
        body.len()
    )
}

/// Reads a request body (by Content-Length or chunked, leniently).
fn read_body(
    s: &mut TcpStream,
    rest: &mut Vec<u8>,
    header: &dyn Fn(&str) -> Option<String>,
    received: &Mutex<Vec<u8>>,
) -> Option<Vec<u8>> {
    let mut more = |rest: &mut Vec<u8>| -> bool {
        let mut chunk = [0u8; 16384];
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            match s.read(&mut chunk) {
                Ok(0) => return false,
                Ok(n) => {
                    received
                        .lock()
                        .expect("lock")
                        .extend_from_slice(&chunk[..n]);
                    rest.extend_from_slice(&chunk[..n]);
                    return true;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return false,
            }
        }
        false
    };
    if let Some(n) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        while rest.len() < n {
            if !more(rest) {
                return None;
            }
        }
        let tail = rest.split_off(n);
        return Some(std::mem::replace(rest, tail));
    }
    if header("transfer-encoding").is_some() {
        let mut body = Vec::new();
        loop {
            let Some(line_end) = find(rest, b"\r\n") else {
                if !more(rest) {
                    return None;
                }
                continue;
            };
            let size = usize::from_str_radix(
                std::str::from_utf8(&rest[..line_end])
                    .ok()?
                    .split(';')
                    .next()?,
                16,
            )
            .ok()?;
            if size == 0 {
                while find(rest, b"\r\n\r\n").is_none() && !rest.starts_with(b"0\r\n\r\n") {
                    if !more(rest) {
                        return None;
                    }
                }
                let end = if rest.starts_with(b"0\r\n\r\n") {
                    5
                } else {
                    find(rest, b"\r\n\r\n")? + 4
                };
                rest.drain(..end);
                return Some(body);
            }
            while rest.len() < line_end + 2 + size + 2 {
                if !more(rest) {
                    return None;
                }
            }
            body.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
            rest.drain(..line_end + 2 + size + 2);
        }
    }
    Some(Vec::new())
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A running `sitec balancer`; killed when dropped.
pub struct Balancer {
    child: Child,
    pub http: SocketAddr,
    pub https: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    stderr: Arc<Mutex<String>>,
    pub dir: std::path::PathBuf,
}

static DIRS: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under the target dir for one test's files.
pub fn test_dir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "balancer-{}-{}",
        std::process::id(),
        DIRS.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("test dir");
    dir
}

/// `--route DOMAIN=ADDR,ADDR` for each route.
fn route_args(routes: &[(&str, Vec<SocketAddr>)]) -> Vec<String> {
    let mut args = Vec::new();
    for (domain, backends) in routes {
        let list: Vec<String> = backends.iter().map(ToString::to_string).collect();
        args.push("--route".into());
        args.push(format!("{domain}={}", list.join(",")));
    }
    args
}

/// The listeners besides HTTP that a start announces (one stdout line
/// each), so a test waits for every one it may use, however long a loaded
/// machine takes to print them.
struct Listeners {
    https: bool,
    admin: bool,
}

impl Listeners {
    /// From `--admin` among the arguments, or the `[listen]` table of the
    /// `balancer.toml` in `dir` when the balancer runs with `--config`.
    fn named_by(args: &[String], dir: &std::path::Path) -> Listeners {
        let mut wanted = Listeners {
            https: false,
            admin: args.iter().any(|a| a == "--admin"),
        };
        if args.iter().any(|a| a == "--config") {
            let text = std::fs::read_to_string(dir.join("balancer.toml")).unwrap_or_default();
            if let Ok(doc) = text.parse::<toml_edit::DocumentMut>() {
                let listen = doc.get("listen");
                wanted.https |= listen
                    .and_then(|l| l.get("https"))
                    .and_then(|h| h.as_array())
                    .is_some_and(|a| !a.is_empty());
                wanted.admin |= listen.and_then(|l| l.get("admin")).is_some();
            }
        }
        wanted
    }
}

impl Balancer {
    /// `--listen 127.0.0.1:0 --route ...` plus extra arguments.
    pub fn ad_hoc(routes: &[(&str, Vec<SocketAddr>)], extra: &[&str]) -> Balancer {
        let mut args: Vec<String> = vec![
            "balancer".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--workers".into(),
            "2".into(),
        ];
        args.extend(route_args(routes));
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        Self::spawn(&args, test_dir())
    }

    /// Runs with a config file written into a fresh directory.
    pub fn with_config(config: &str) -> Balancer {
        let dir = test_dir();
        let path = dir.join("balancer.toml");
        std::fs::write(&path, config).expect("write config");
        let args = vec![
            "balancer".into(),
            "--config".into(),
            path.display().to_string(),
        ];
        Self::spawn(&args, dir)
    }

    /// Like `ad_hoc`, run by `prefix` (a command that runs the rest, as
    /// `prlimit --nofile=256:` does).
    pub fn ad_hoc_under(prefix: &[&str], routes: &[(&str, Vec<SocketAddr>)]) -> Balancer {
        let mut args: Vec<String> = prefix[1..].iter().map(|s| (*s).to_owned()).collect();
        args.push(env!("CARGO_BIN_EXE_sitec").to_owned());
        args.extend(["balancer", "--listen", "127.0.0.1:0"].map(String::from));
        args.extend(route_args(routes));
        Self::spawn_program(prefix[0], &args, test_dir())
    }

    fn spawn(args: &[String], dir: std::path::PathBuf) -> Balancer {
        Self::spawn_program(env!("CARGO_BIN_EXE_sitec"), args, dir)
    }

    fn spawn_program(program: &str, args: &[String], dir: std::path::PathBuf) -> Balancer {
        let wanted = Listeners::named_by(args, &dir);
        let mut child = Command::new(program)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sitec balancer");
        let stderr = Arc::new(Mutex::new(String::new()));
        let err_pipe = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().expect("lock");
                s.push_str(&line);
                s.push('\n');
            }
        });
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let (mut http, mut https, mut admin) = (None, None, None);
        let deadline = Instant::now() + WAIT;
        while http.is_none()
            || (wanted.https && https.is_none())
            || (wanted.admin && admin.is_none())
        {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                let _ = child.kill();
                panic!(
                    "the balancer did not start: {}",
                    stderr.lock().expect("lock")
                );
            };
            let addr = line.rsplit(' ').next().and_then(|a| a.parse().ok());
            if line.contains(": http on") {
                http = addr;
            } else if line.contains(": https on") {
                https = addr;
            } else if line.contains(": admin on") {
                admin = addr;
            }
        }
        Balancer {
            child,
            http: http.expect("http listener"),
            https,
            admin,
            stderr,
            dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        crate::common::signal(self.pid(), sig);
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("lock").clone()
    }

    /// Waits until the log holds `needle` `times` times.
    pub fn wait_log(&self, needle: &str, times: usize) -> bool {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if self.stderr().matches(needle).count() >= times {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        crate::common::wait_exit(&mut self.child, limit)
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed response as a client sees it.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
    pub trailers: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_owned())
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A client connection that reads responses one by one: plain TCP, or
/// any other stream (TLS) given to `over`.
pub struct Client<S = TcpStream> {
    pub stream: S,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect to balancer");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        Client::over(stream)
    }
}

impl<S: Read + Write> Client<S> {
    pub fn over(stream: S) -> Client<S> {
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16384];
        match self.stream.read(&mut chunk) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// Reads one response to a request with this method; None on close.
    pub fn response_to(&mut self, method: &str) -> Option<Response> {
        let end = loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                break end;
            }
            if !self.fill() {
                return None;
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end + 4);
        let status = head.get(9..12)?.parse().ok()?;
        let mut r = Response {
            status,
            head,
            body: Vec::new(),
            trailers: String::new(),
        };
        if method == "HEAD" || status < 200 || status == 204 || status == 304 {
            return Some(r);
        }
        if let Some(n) = r
            .header("content-length")
            .and_then(|v| v.parse::<usize>().ok())
        {
            while self.buf.len() < n {
                if !self.fill() {
                    return None;
                }
            }
            r.body = self.buf.drain(..n).collect();
        } else if r.header("transfer-encoding").is_some() {
            loop {
                let line_end = loop {
                    if let Some(i) = find(&self.buf, b"\r\n") {
                        break i;
                    }
                    if !self.fill() {
                        return None;
                    }
                };
                let size =
                    usize::from_str_radix(std::str::from_utf8(&self.buf[..line_end]).ok()?, 16)
                        .ok()?;
                if size == 0 {
                    let end = loop {
                        if self.buf.starts_with(b"0\r\n\r\n") {
                            break 5;
                        }
                        if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                            break i + 4;
                        }
                        if !self.fill() {
                            return None;
                        }
                    };
                    r.trailers = String::from_utf8_lossy(&self.buf[line_end + 2..end]).into_owned();
                    self.buf.drain(..end);
                    break;
                }
                while self.buf.len() < line_end + 2 + size + 2 {
                    if !self.fill() {
                        return None;
                    }
                }
                r.body
                    .extend_from_slice(&self.buf[line_end + 2..line_end + 2 + size]);
                self.buf.drain(..line_end + 2 + size + 2);
            }
        } else {
            while self.fill() {}
            r.body = std::mem::take(&mut self.buf);
        }
        Some(r)
    }

    pub fn response(&mut self) -> Option<Response> {
        self.response_to("GET")
    }

    /// Reads exactly `n` bytes past the last response (raw protocols).
    pub fn read_raw(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(
                self.fill(),
                "connection closed after {} of {n} bytes",
                self.buf.len()
            );
        }
        self.buf.drain(..n).collect()
    }

    /// True if the server closed the connection (EOF, or a reset) within
    /// the wait; false if bytes came first, or nothing came before the
    /// read timed out (a connection left open is not a closed one).
    pub fn closed(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut chunk = [0u8; 16384];
        match self.stream.read(&mut chunk) {
            Ok(0) => true,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                false
            }
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    }
}

/// One request on a fresh connection.
pub fn request(addr: SocketAddr, raw: &str) -> Option<Response> {
    let mut c = Client::connect(addr);
    c.send(raw.as_bytes());
    c.response_to(raw.split(' ').next().unwrap_or("GET"))
}

pub fn get(addr: SocketAddr, host: &str, path: &str) -> Option<Response> {
    request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )
}

/// Clients sending one request after another on kept-alive connections
/// until stopped (60 s at most, or when dropped), counting every answer
/// `ok` refuses.
pub struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    failures: Arc<AtomicUsize>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    /// `clients` threads; with `churn`, every other one reconnects before
    /// each request.
    pub fn start(
        addr: SocketAddr,
        clients: usize,
        request: &'static [u8],
        ok: fn(&Response) -> bool,
        churn: bool,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(AtomicUsize::new(0));
        let threads = (0..clients)
            .map(|i| {
                let (stop, done, failures) = (stop.clone(), done.clone(), failures.clone());
                std::thread::spawn(move || {
                    let deadline = Instant::now() + Duration::from_secs(60);
                    let mut c = Client::connect(addr);
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        if churn && i % 2 == 1 {
                            c = Client::connect(addr);
                        }
                        c.send(request);
                        if !c.response().is_some_and(|r| ok(&r)) {
                            failures.fetch_add(1, Ordering::Relaxed);
                            c = Client::connect(addr);
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        Load {
            stop,
            done,
            failures,
            threads,
        }
    }

    /// Requests answered (or failed) so far.
    pub fn done(&self) -> usize {
        self.done.load(Ordering::Relaxed)
    }

    /// Waits until `n` requests in all were answered (or failed): a test
    /// drives the traffic it needs instead of hoping a time window holds it.
    pub fn wait_done(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.done() < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} requests done in 30 s",
                self.done()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the clients; returns (requests, failures).
    pub fn finish(mut self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        for t in std::mem::take(&mut self.threads) {
            t.join().expect("load client");
        }
        (
            self.done.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Load {
    /// A test that failed midway stops its clients too.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
