//! Integration tests for `sitec agent`: the real binary on loopback with
//! free ports and a config in a scratch folder, talked to by zmq.rs
//! clients. systemd is not PID 1 here, so a stub `systemctl` first on PATH
//! answers for the app's units the way the real one does.

mod common;

use common::{free_port, signal, wait_exit, write_script, Scratch};
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use zeromq::{DealerSocket, ReqSocket, Socket, SocketRecv, SocketSend, SubSocket, ZmqMessage};

const WAIT: Duration = Duration::from_secs(15);

/// `systemctl show -p ActiveState,SubState -- UNIT...`: every unit runs.
const SYSTEMCTL: &str = "#!/bin/sh\nfor u in \"$@\"; do case $u in *.service) \
    printf 'ActiveState=active\\nSubState=running\\n\\n';; esac; done\n";

/// A running `sitec agent` with its own ports and files; killed when dropped.
struct Agent {
    child: Child,
    dir: Scratch,
    control: String,
    heartbeat: String,
}

/// A fresh loopback endpoint.
fn endpoint() -> String {
    format!("tcp://127.0.0.1:{}", free_port())
}

impl Agent {
    /// Starts an agent that follows `app.log` in its folder (which holds a
    /// line already) and collects its own lines under `fleet/` (the host
    /// has the `logs` role).
    fn start(what: &str) -> Agent {
        let dir = Scratch::new(what);
        fs::write(dir.path().join("app.log"), "before the agent\n").expect("log file");
        let logs = endpoint();
        let fleet = dir.path().join("fleet");
        Agent::spawn(dir, "run1", &[&logs], Some((&logs, &fleet)))
    }

    /// Starts agent `host` in `dir`, following `dir/app.log` and shipping
    /// to `collectors`; with `collect`, a collector at that endpoint
    /// filing under that folder.
    fn spawn(
        dir: Scratch,
        host: &str,
        collectors: &[&str],
        collect: Option<(&str, &Path)>,
    ) -> Agent {
        let [control, heartbeat] = [endpoint(), endpoint()];
        let root = dir.path().display();
        let collectors: Vec<String> = collectors.iter().map(|c| format!("\"{c}\"")).collect();
        let collector = collect.map_or(String::new(), |(at, fleet)| {
            format!(
                "[collector]\nendpoint = \"{at}\"\ndir = \"{}\"\n\n",
                fleet.display()
            )
        });
        let config = format!(
            "host = \"{host}\"\n\n[bus]\ncontrol = \"{control}\"\nheartbeat = \"{heartbeat}\"\n\
             log_collectors = [{}]\nkey_file = \"{root}/bus.key\"\n\n{collector}\
             [[app]]\nname = \"blog\"\nservice = \"sitec-app-blog.service\"\n\
             workers = [\"sitec-app-blog-worker-celery.service\"]\n\n\
             [[log]]\npath = \"{root}/app.log\"\ntag = \"blog/app.log\"\n",
            collectors.join(", ")
        );
        fs::write(dir.path().join("agent.toml"), config).expect("write config");
        let bin = dir.path().join("bin");
        write_script(&bin.join("systemctl"), SYSTEMCTL).expect("stub systemctl");
        let path = std::env::var("PATH").unwrap_or_default();
        let stderr = fs::File::create(dir.path().join("stderr")).expect("stderr file");
        let child = Command::new(env!("CARGO_BIN_EXE_sitec"))
            .args(["agent", "--config"])
            .arg(dir.path().join("agent.toml"))
            .env("PATH", format!("{}:{path}", bin.display()))
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start sitec agent");
        Agent {
            child,
            dir,
            control,
            heartbeat,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn stderr(&self) -> String {
        fs::read_to_string(self.path("stderr")).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

fn json_of(message: &ZmqMessage) -> Value {
    let last = message.iter().last().expect("a frame");
    serde_json::from_slice(last).expect("a JSON frame")
}

/// Sends `request` on a DEALER and returns the answer.
async fn ask(dealer: &mut DealerSocket, request: &[u8]) -> Value {
    dealer
        .send(ZmqMessage::from(request.to_vec()))
        .await
        .expect("send request");
    json_of(&within("an answer", dealer.recv()).await.expect("answer"))
}

#[tokio::test]
async fn publishes_heartbeats_and_answers_control_requests() {
    let agent = Agent::start("agent-bus");
    let mut sub = SubSocket::new();
    within("heartbeat connect", sub.connect(&agent.heartbeat))
        .await
        .expect("connect SUB");
    sub.subscribe("").await.expect("subscribe");
    let first = json_of(&within("a heartbeat", sub.recv()).await.expect("beat"));
    let second = json_of(
        &within("a second heartbeat", sub.recv())
            .await
            .expect("beat"),
    );
    assert_eq!(first["host"], "run1", "{first}");
    assert_eq!(first["version"], env!("CARGO_PKG_VERSION"));
    assert!(first["time"].as_f64().is_some_and(|t| t > 1.6e9), "{first}");
    assert!(second["seq"].as_u64() > first["seq"].as_u64());
    let blog = &first["apps"][0];
    assert_eq!(
        (
            blog["name"].clone(),
            blog["healthy"].clone(),
            blog["serving"].clone()
        ),
        (json!("blog"), json!(true), json!(true)),
        "{first}\n{}",
        agent.stderr()
    );
    assert_eq!(
        blog["units"][1]["unit"],
        "sitec-app-blog-worker-celery.service"
    );
    assert_eq!(blog["units"][1]["sub"], "running");

    let mut dealer = DealerSocket::new();
    within("control connect", dealer.connect(&agent.control))
        .await
        .expect("connect DEALER");
    let ping = ask(&mut dealer, br#"{"op": "ping"}"#).await;
    assert_eq!(
        (ping["ok"].clone(), ping["host"].clone()),
        (json!(true), json!("run1")),
        "{ping}"
    );
    assert!(ping["uptime_seconds"].is_u64(), "{ping}");
    let unknown = ask(&mut dealer, br#"{"op": "reboot"}"#).await;
    assert_eq!(unknown["ok"], false, "{unknown}");
    assert!(unknown["error"]
        .as_str()
        .is_some_and(|e| e.contains("unknown op")));
    let garbage = ask(&mut dealer, b"\x00not json").await;
    assert_eq!(garbage["ok"], false, "{garbage}");

    // A REQ client (what the CLI uses) gets its envelope back.
    let mut req = ReqSocket::new();
    within("control connect", req.connect(&agent.control))
        .await
        .expect("connect REQ");
    req.send(ZmqMessage::from(r#"{"op": "status"}"#))
        .await
        .expect("send status");
    let status = json_of(&within("status", req.recv()).await.expect("status"));
    assert_eq!(status["apps"][0]["name"], "blog", "{status}");
    assert_eq!(status["apps"][0]["units"][0]["active"], "active");
}

/// Appends `text` to `path`.
fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log");
    f.write_all(text.as_bytes()).expect("append");
}

/// Appends numbered lines to the followed file until one reaches the
/// collector's file (the agent starts following at the file's end, at a
/// moment this test cannot see); returns what the collector filed.
async fn ship_until_collected(agent: &Agent, word: &str) -> String {
    let filed = agent.path("fleet/run1/blog/app.log");
    let deadline = Instant::now() + WAIT;
    for n in 0.. {
        append(&agent.path("app.log"), &format!("{word} {n}\n"));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let text = fs::read_to_string(&filed).unwrap_or_default();
        if text.contains(word) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "no line reached {}:\n{}",
            filed.display(),
            agent.stderr()
        );
    }
    unreachable!()
}

#[tokio::test]
async fn ships_appended_lines_to_the_collector_across_a_rotation() {
    let agent = Agent::start("agent-logs");
    let filed = ship_until_collected(&agent, "hello").await;
    assert!(
        !filed.contains("before the agent"),
        "old lines are not shipped:\n{filed}"
    );
    fs::rename(agent.path("app.log"), agent.path("app.log.1")).expect("rotate");
    let filed = ship_until_collected(&agent, "rotated").await;
    assert!(filed.lines().any(|l| l.starts_with("rotated ")), "{filed}");
}

/// Appends a line to run1's `app.log` every 200 ms until `filed` (under
/// `fleet`) holds one: a collector that starts late, then restarts.
#[test]
fn a_collector_that_starts_late_or_restarts_gets_the_lines() {
    let dir = Scratch::new("agent-shipper");
    let fleet = dir.path().join("fleet");
    let at = endpoint();
    // app.log appears after the agent started: it is read from its start.
    let shipper = Agent::spawn(dir, "run1", &[&at], None);
    let filed = fleet.join("run1/blog/app.log");
    let until_filed = |word: &str| {
        for n in 0..75 {
            append(&shipper.path("app.log"), &format!("{word} {n}\n"));
            std::thread::sleep(Duration::from_millis(200));
            if fs::read_to_string(&filed)
                .unwrap_or_default()
                .contains(word)
            {
                return;
            }
        }
        panic!("no `{word}` line was filed:\n{}", shipper.stderr());
    };
    assert!(
        common::eventually(WAIT, || shipper.stderr().contains("agent for run1 running")),
        "{}",
        shipper.stderr()
    );
    append(&shipper.path("app.log"), "no collector yet\n");
    std::thread::sleep(Duration::from_millis(500));
    let collector = |n: u8| {
        let dir = Scratch::new(&format!("agent-collector-{n}"));
        Agent::spawn(dir, "lb1", &[], Some((&at, &fleet)))
    };
    let mut first = collector(1);
    until_filed("first collector");
    let text = fs::read_to_string(&filed).unwrap_or_default();
    assert!(
        text.starts_with("no collector yet\n"),
        "queued while away:\n{text}"
    );
    signal(first.child.id(), "TERM");
    assert!(wait_exit(&mut first.child, WAIT).is_some_and(|s| s.success()));
    let _second = collector(2);
    until_filed("second collector");
}

#[test]
fn sigterm_exits_zero_at_once() {
    let mut agent = Agent::start("agent-stop");
    // Running: it has bound its sockets.
    assert!(
        common::eventually(WAIT, || agent.stderr().contains("agent for run1 running")),
        "{}",
        agent.stderr()
    );
    let sent = Instant::now();
    signal(agent.child.id(), "TERM");
    let status = wait_exit(&mut agent.child, Duration::from_secs(3));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        agent.stderr()
    );
    assert!(sent.elapsed() < Duration::from_secs(2));
    assert!(agent
        .stderr()
        .contains("bus authentication is not implemented"));
}

#[test]
fn check_validates_the_config_and_names_the_line() {
    let dir = Scratch::new("agent-check");
    let path = dir.path().join("agent.toml");
    let good = "host = \"run1\"\n[bus]\ncontrol = \"tcp://127.0.0.1:7701\"\nheartbeat = \"tcp://127.0.0.1:7702\"\n";
    fs::write(&path, good).expect("write");
    let check = || {
        Command::new(env!("CARGO_BIN_EXE_sitec"))
            .args(["agent", "--check", "--config"])
            .arg(&path)
            .output()
            .expect("run sitec agent --check")
    };
    let out = check();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("is valid"));
    fs::write(&path, good.replace("tcp://127.0.0.1:7702", "7702")).expect("write");
    let out = check();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("{}:4:13: bus.heartbeat", path.display())),
        "{err}"
    );
    assert!(err.contains("tcp://ADDRESS:PORT"), "{err}");
}
