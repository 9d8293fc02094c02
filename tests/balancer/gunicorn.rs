//! The balancer in front of real gunicorn (Debian's `gunicorn` package,
//! installed by `.ci/setup`): keep-alive, chunked uploads, forwarding
//! headers (not spoofed through `_` names), a smuggling attempt that never
//! reaches gunicorn, and a gunicorn
//! killed mid-stream with no failed request. Without gunicorn on PATH these
//! tests fail and say how to install it.

use crate::support::*;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const APP: &str = r#"
import os
def app(environ, start_response):
    body = environ["wsgi.input"].read()
    path = environ.get("PATH_INFO", "")
    with open(os.environ["SITEC_TEST_LOG"], "a") as log:
        log.write(environ["REQUEST_METHOD"] + " " + path + "\n")
    out = "%s %s %s %d %s %s" % (
        os.environ["SITEC_TEST_NAME"], environ["REQUEST_METHOD"], path, len(body),
        environ.get("HTTP_X_FORWARDED_FOR", ""), environ.get("HTTP_X_FORWARDED_PROTO", ""))
    out = out.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(out)))])
    return [out]
"#;

struct Gunicorn {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Gunicorn {
    fn start(dir: &Path, name: &str) -> Gunicorn {
        std::fs::write(dir.join("testapp.py"), APP).expect("write app");
        let log = dir.join(format!("{name}.log"));
        std::fs::write(&log, "").expect("log");
        let mut child = Command::new("gunicorn")
            .args([
                "--bind",
                "127.0.0.1:0",
                "--workers",
                "1",
                "--worker-class",
                "gthread",
                "--threads",
                "4",
            ])
            .args(["--keep-alive", "2", "--chdir"])
            .arg(dir)
            .arg("testapp:app")
            .env("SITEC_TEST_LOG", &log)
            .env("SITEC_TEST_NAME", name)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start gunicorn");
        let err = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + WAIT;
        let addr = loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("gunicorn did not say where it listens");
            if let Some(rest) = line.split("Listening at: http://").nth(1) {
                break rest
                    .split(' ')
                    .next()
                    .expect("addr")
                    .parse()
                    .expect("socket address");
            }
        };
        // Worker boot: wait until it answers.
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(addr).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        Gunicorn { child, addr, log }
    }

    fn requests_seen(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL to gunicorn's workers and master: a runner dying. Each
    /// process by its own (positive) pid, never a group.
    fn kill(&mut self) {
        let master = self.child.id();
        for worker in children(master) {
            kill_pid(worker);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Gunicorn {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The child processes of `pid`, from /proc.
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

fn kill_pid(pid: u32) {
    assert!(pid > 1, "refusing to signal pid {pid}");
    let _ = Command::new("kill")
        .args(["-s", "KILL", &pid.to_string()])
        .status();
}

#[test]
fn gunicorn_behind_the_balancer() {
    crate::common::require("gunicorn", "gunicorn");
    let dir = test_dir();
    let g = Gunicorn::start(&dir, "g1");
    let lb = Balancer::ad_hoc(&[("app.example.com", vec![g.addr])], &[]);
    let mut c = Client::connect(lb.http);
    for i in 0..10 {
        c.send(format!("GET /page{i} HTTP/1.1\r\nHost: app.example.com\r\n\r\n").as_bytes());
        let r = c.response().expect("response over a kept-alive connection");
        assert_eq!(r.text(), format!("g1 GET /page{i} 0 127.0.0.1 http"));
    }
    // gunicorn before 22 (Debian 12 has 20.1) reads `X_Forwarded_For` as
    // `X-Forwarded-For`: the app would see "5.5.5.5,127.0.0.1".
    c.send(b"GET /spoof HTTP/1.1\r\nHost: app.example.com\r\nX_Forwarded_For: 5.5.5.5\r\n\r\n");
    assert_eq!(
        c.response().expect("response").text(),
        "g1 GET /spoof 0 127.0.0.1 http"
    );
    c.send(b"POST /upload HTTP/1.1\r\nHost: app.example.com\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    assert_eq!(
        c.response().expect("chunked upload").text(),
        "g1 POST /upload 11 127.0.0.1 http"
    );
    c.send(b"PUT /big HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(c.response().expect("100").status, 100);
    c.send(b"12345");
    assert_eq!(
        c.response().expect("final").text(),
        "g1 PUT /big 5 127.0.0.1 http"
    );
    let before = g.requests_seen();
    for raw in [
        "POST /smuggle HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\n\r\n",
        "POST /smuggle HTTP/1.1\r\nHost: app.example.com\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
        "GET /smuggle HTTP/1.1\r\nHost: app.example.com\r\nX: a\r\n Transfer-Encoding: chunked\r\n\r\n",
    ] {
        assert_eq!(request(lb.http, raw).expect("refusal").status, 400);
    }
    // A request after them reaches gunicorn, and only it does.
    assert_eq!(
        get(lb.http, "app.example.com", "/after")
            .expect("response")
            .status,
        200
    );
    assert_eq!(
        g.requests_seen(),
        before + "GET /after\n",
        "a refused request reached gunicorn"
    );
    assert!(!g.requests_seen().contains("smuggle") && !g.requests_seen().contains("admin"));
}

#[test]
fn a_gunicorn_killed_mid_stream_fails_no_request() {
    crate::common::require("gunicorn", "gunicorn");
    let dir = test_dir();
    let mut g1 = Gunicorn::start(&dir, "g1");
    let g2 = Gunicorn::start(&dir, "g2");
    let lb = Balancer::ad_hoc(&[("*", vec![g1.addr, g2.addr])], &[]);
    let load = Load::start(
        lb.http,
        4,
        b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n",
        |r| r.status == 200,
        false,
    );
    load.wait_done(50);
    assert!(
        crate::common::eventually(WAIT, || g1.requests_seen().lines().count() > 5),
        "g1 served nothing before the kill"
    );
    g1.kill();
    let at_kill = load.done();
    load.wait_done(at_kill + 50);
    let (_, failures) = load.finish();
    assert_eq!(failures, 0, "{}", lb.stderr());
}
