//! Integration tests for `sitec agent`: the real binary on loopback with
//! free ports, a config and its key in a scratch folder
//! (`common::agent`), talked to over the CURVE bus by clients with the keys
//! the agent admits. Hostile peers are `tests/hostile.rs`'s.

mod common;

use common::agent::{endpoint, key, Agent};
use common::{signal, wait_exit, Scratch};
use serde_json::{json, Value};
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(15);

#[test]
fn publishes_heartbeats_and_answers_control_requests() {
    let agent = Agent::start("agent-bus");
    let sub = agent.subscribe(&key("lb1"));
    let first = sub.next(WAIT).expect("a heartbeat");
    let second = sub.next(WAIT).expect("a second heartbeat");
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

    let mut control = agent.control(&key("operator"));
    let ask = |c: &mut sitec::bus::control::Client, request: Value| -> Value {
        c.ask(&request, WAIT).expect("an answer")
    };
    let ping = ask(&mut control, json!({"op": "ping"}));
    assert_eq!(
        (ping["ok"].clone(), ping["host"].clone()),
        (json!(true), json!("run1")),
        "{ping}"
    );
    assert!(ping["uptime_seconds"].is_u64(), "{ping}");
    let unknown = ask(&mut control, json!({"op": "reboot"}));
    assert_eq!(unknown["ok"], false, "{unknown}");
    assert!(unknown["error"]
        .as_str()
        .is_some_and(|e| e.contains("unknown op")));
    let status = ask(&mut control, json!({"op": "status"}));
    assert_eq!(status["apps"][0]["name"], "blog", "{status}");
    assert_eq!(status["apps"][0]["units"][0]["active"], "active");
}

/// Rotating keys is rewriting the files and restarting (what an apply
/// does): the new keys work, the old ones are refused.
#[test]
fn rotated_keys_work_and_the_old_ones_are_refused() {
    let mut agent = Agent::start("agent-rotate");
    let ping = json!({"op": "ping"});
    let short = Duration::from_secs(3);
    assert!(agent.control(&key("operator")).ask(&ping, WAIT).is_ok());
    let config = fs::read_to_string(agent.path("agent.toml")).expect("config");
    let old_operator = key("operator").public.z85();
    let new_operator = key("operator, rotated");
    fs::write(
        agent.path("agent.toml"),
        config.replace(&old_operator, &new_operator.public.z85()),
    )
    .expect("rewrite config");
    let new_host = key("run1, rotated");
    common::agent::write_key(&agent.path("host.key"), &new_host);
    agent.restart();
    let ask = |server: &sitec::bus::KeyPair, operator: &sitec::bus::KeyPair, wait| {
        sitec::bus::control::Client::connect(&agent.control, &server.public, operator)
            .expect("client")
            .ask(&ping, wait)
    };
    // Answered (however long a loaded machine takes), so the agent is up
    // and answering when the old keys get nothing for `short`.
    assert!(
        ask(&new_host, &new_operator, WAIT).is_ok(),
        "{}",
        agent.stderr()
    );
    assert!(
        ask(&new_host, &key("operator"), short).is_err(),
        "the old operator key was obeyed"
    );
    assert!(
        ask(&key("run1"), &new_operator, short).is_err(),
        "the old host key was spoken"
    );
}

/// A REQ client (as well as the DEALER `Client` uses) gets its envelope
/// back, and a body that is not JSON an error.
#[test]
fn a_req_client_gets_its_answers() {
    let agent = Agent::start("agent-req");
    let bus = sitec::bus::Bus::new(key("operator")).expect("a bus");
    let context = zmq::Context::new();
    let req = context.socket(zmq::REQ).expect("REQ");
    let operator = key("operator");
    req.set_curve_serverkey(key("run1").public.as_bytes())
        .expect("server key");
    req.set_curve_publickey(operator.public.as_bytes())
        .expect("public key");
    // The secret half through a key file, as a daemon gets it.
    let dir = Scratch::new("agent-req-key");
    common::agent::write_key(&dir.path().join("k"), &operator);
    let text = fs::read_to_string(dir.path().join("k")).expect("key");
    let secret = zmq::z85_decode(text.trim()).expect("z85");
    req.set_curve_secretkey(&secret).expect("secret key");
    req.set_rcvtimeo(15_000).expect("timeout");
    req.connect(&agent.control).expect("connect");
    for (body, says) in [
        (&b"\x00not json"[..], "not JSON"),
        (&br#"{"op": "ping"}"#[..], ""),
    ] {
        req.send(body, 0).expect("send");
        let answer: Value =
            serde_json::from_slice(&req.recv_bytes(0).expect("an answer")).expect("JSON");
        if says.is_empty() {
            assert_eq!(answer["ok"], true, "{answer}");
        } else {
            assert!(
                answer["error"].as_str().is_some_and(|e| e.contains(says)),
                "{answer}"
            );
        }
    }
    drop(bus);
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
    assert!(filed.lines().any(|l| l.contains("\trotated ")), "{filed}");
}

/// Appends a line to run1's `app.log` every 200 ms until `filed` (under
/// `fleet`) holds one: a collector that starts late, then restarts.
#[test]
fn a_collector_that_starts_late_or_restarts_gets_the_lines() {
    let dir = Scratch::new("agent-shipper");
    let fleet = dir.path().join("fleet");
    let at = endpoint();
    // app.log appears after the agent started: it is read from its start.
    let shipper = Agent::spawn(dir, "run1", &[(&at, "lb1")], None, "");
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
    // Queued before any collector is up: the agent has read the line.
    assert!(
        common::eventually(WAIT, || read_to_end(
            shipper.child.id(),
            &shipper.path("app.log")
        )),
        "the agent never read app.log"
    );
    let collector = |n: u8| {
        let dir = Scratch::new(&format!("agent-collector-{n}"));
        Agent::spawn(dir, "lb1", &[], Some((&at, &fleet)), "")
    };
    let mut first = collector(1);
    until_filed("first collector");
    let text = fs::read_to_string(&filed).unwrap_or_default();
    assert!(
        text.lines()
            .next()
            .is_some_and(|l| l.ends_with("Z\tno collector yet")),
        "queued while away:\n{text}"
    );
    signal(first.child.id(), "TERM");
    assert!(wait_exit(&mut first.child, WAIT).is_some_and(|s| s.success()));
    let _second = collector(2);
    until_filed("second collector");
}

/// The lines filed at `path`, without their times.
fn filed_lines(path: &Path) -> Vec<String> {
    (fs::read_to_string(path).unwrap_or_default().lines())
        .map(|l| l.split_once('\t').map_or(l, |(_, text)| text).to_string())
        .collect()
}

/// Acknowledged shipping (`agent::ship`, `agent::collector`): lines written
/// while the shipping agent is killed (SIGKILL, batches in flight) and
/// down, while the collector is killed and down, and across a rotation,
/// are filed each exactly once and in order.
#[test]
fn every_line_is_filed_once_across_restarts_and_a_rotation() {
    let dir = Scratch::new("agent-acked");
    let fleet = dir.path().join("fleet");
    let at = endpoint();
    let mut shipper = Agent::spawn(dir, "run1", &[(&at, "lb1")], None, "");
    let mut collector = Agent::spawn(
        Scratch::new("agent-acked-lb1"),
        "lb1",
        &[],
        Some((&at, &fleet)),
        "",
    );
    let log = shipper.path("app.log");
    let filed = fleet.join("run1/blog/app.log");
    let write = |from: u32, to: u32| {
        let text: String = (from..to).map(|n| format!("line {n}\n")).collect();
        append(&log, &text);
    };
    let until_filed = |n: u32, what: &str, shipper: &Agent| {
        let want: Vec<String> = (0..n).map(|n| format!("line {n}")).collect();
        let mut got = Vec::new();
        let arrived = common::eventually(Duration::from_secs(60), || {
            got = filed_lines(&filed);
            got.len() >= want.len()
        });
        assert!(
            arrived,
            "{what}: {} of {n} lines filed:\n{}",
            got.len(),
            shipper.stderr()
        );
        assert!(
            got == want,
            "{what}: not each line once, in order: {:?}",
            got.iter()
                .enumerate()
                .find(|(i, l)| want.get(*i) != Some(*l))
        );
    };
    // app.log appears after the agent started: read from its start.
    write(0, 2000);
    until_filed(2000, "first lines", &shipper);
    // Killed with lines just written (some read, none acknowledged), more
    // written while it is down: the restarted agent goes on where the
    // collector has them.
    write(2000, 4000);
    shipper.restart();
    write(4000, 5000);
    until_filed(5000, "across the agent's restart", &shipper);
    // The collector killed, lines written while it is down.
    signal(collector.child.id(), "KILL");
    let _ = collector.child.wait();
    write(5000, 6000);
    collector.restart();
    until_filed(6000, "across the collector's restart", &shipper);
    // Rotated: the rest of the old file, then the new one, after a restart too.
    write(6000, 6500);
    fs::rename(&log, shipper.path("app.log.1")).expect("rotate");
    shipper.restart();
    write(6500, 7000);
    until_filed(7000, "across a rotation", &shipper);
}

/// Whether process `pid` has `path` open and has read all of it: its
/// offset in `/proc/PID/fdinfo` is the file's length.
fn read_to_end(pid: u32, path: &Path) -> bool {
    let Ok(length) = fs::metadata(path).map(|m| m.len()) else {
        return false;
    };
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten()
        .filter(|fd| fs::read_link(fd.path()).is_ok_and(|p| p == path))
        .filter_map(|fd| {
            fs::read_to_string(format!(
                "/proc/{pid}/fdinfo/{}",
                fd.file_name().to_string_lossy()
            ))
            .ok()
        })
        .any(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("pos:"))
                .and_then(|p| p.trim().parse::<u64>().ok())
                == Some(length)
        })
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
    // An agent that waited out its tasks would never exit: they run for
    // good (the followers poll every 250 ms).
    signal(agent.child.id(), "TERM");
    let status = wait_exit(&mut agent.child, WAIT);
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        agent.stderr()
    );
}

#[test]
fn check_validates_the_config_and_its_key_and_names_the_line() {
    let dir = Scratch::new("agent-check");
    let path = dir.path().join("agent.toml");
    let key_file = dir.path().join("host.key");
    common::agent::write_key(&key_file, &key("run1"));
    let good = format!(
        "host = \"run1\"\nstate_dir = \"/var/lib/sitec-agent\"\n[bus]\ncontrol = \"tcp://127.0.0.1:7701\"\nheartbeat = \"tcp://127.0.0.1:7702\"\nkey_file = \"{}\"\noperator = \"{}\"\n",
        key_file.display(),
        key("operator").public
    );
    fs::write(&path, &good).expect("write");
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
        err.contains(&format!("{}:5:13: bus.heartbeat", path.display())),
        "{err}"
    );
    assert!(err.contains("tcp://ADDRESS:PORT"), "{err}");
    // A key file others can read is refused, and its text never shown.
    fs::write(&path, &good).expect("write");
    fs::set_permissions(
        &key_file,
        <fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o644),
    )
    .expect("chmod");
    let out = check();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("chmod 600"), "{err}");
    let secret = fs::read_to_string(&key_file).expect("key");
    assert!(!err.contains(secret.trim()), "{err}");
}

fn holder(token: &str) -> Value {
    json!({"who": "alice", "from": "laptop", "pid": 4242, "what": "apply fleet.site", "token": token})
}

/// The fleet lock's lease, as the operator's `Lock` asks for it: a second
/// holder is refused with the first named, the record outlives an agent
/// restart, a break says whose it was.
#[test]
fn the_lease_is_held_across_a_restart_until_broken() {
    let mut agent = Agent::start("agent-lease");
    let mut control = agent.control(&key("operator"));
    let take = |token: &str| json!({"op": "lease", "action": "take", "holder": holder(token), "ttl_seconds": 30});
    let first = control.ask(&take("a"), WAIT).expect("an answer");
    assert_eq!(first["outcome"], "granted", "{first}");
    agent.restart();
    let mut control = agent.control(&key("operator"));
    let second = control.ask(&take("b"), WAIT).expect("an answer");
    assert_eq!(second["outcome"], "held", "{second}");
    assert_eq!(
        (
            second["lease"]["who"].clone(),
            second["lease"]["what"].clone()
        ),
        (json!("alice"), json!("apply fleet.site")),
        "{second}"
    );
    let record = fs::read_to_string(agent.path("state/lease.json")).expect("the record on disk");
    assert!(record.contains("\"token\":\"a\""), "{record}");
    let status = control.ask(&json!({"op": "status"}), WAIT).expect("status");
    assert_eq!(status["lease"]["token"], "a", "{status}");
    let broken = control
        .ask(&json!({"op": "lease", "action": "break"}), WAIT)
        .expect("an answer");
    assert_eq!(broken["lease"]["token"], "a", "{broken}");
    let renewed = control
        .ask(
            &json!({"op": "lease", "action": "renew", "holder": holder("a"), "ttl_seconds": 30}),
            WAIT,
        )
        .expect("an answer");
    assert_eq!(
        renewed["outcome"], "lost",
        "the broken holder learns it: {renewed}"
    );
    assert_eq!(
        control.ask(&take("b"), WAIT).expect("an answer")["outcome"],
        "granted"
    );
}

/// A lease that is not renewed lapses: the next holder gets it.
#[test]
fn a_lease_lapses_when_its_holder_stops_renewing() {
    let agent = Agent::start("agent-lapse");
    let mut control = agent.control(&key("operator"));
    let take = |token: &str, ttl: f64| json!({"op": "lease", "action": "take", "holder": holder(token), "ttl_seconds": ttl});
    assert_eq!(
        control.ask(&take("a", 1.0), WAIT).expect("answer")["outcome"],
        "granted"
    );
    assert_eq!(
        control.ask(&take("b", 30.0), WAIT).expect("answer")["outcome"],
        "held"
    );
    assert!(
        common::eventually(WAIT, || control
            .ask(&take("b", 30.0), WAIT)
            .is_ok_and(|a| a["outcome"] == "granted")),
        "a's lease never lapsed"
    );
}

/// A drain goes out in a heartbeat at once and ends with `undrain`.
#[test]
fn a_drain_is_announced_in_the_next_heartbeat() {
    let agent = Agent::start("agent-drain");
    let sub = agent.subscribe(&key("lb1"));
    sub.next(WAIT).expect("a first heartbeat");
    let mut control = agent.control(&key("operator"));
    let drain = json!({"op": "drain", "app": "blog", "why": "restart by alice", "ttl_seconds": 60});
    assert_eq!(
        control.ask(&drain, WAIT).expect("an answer")["drained"],
        true
    );
    let drained = |sub: &common::agent::Subscription, want: Value| {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Some(beat) = sub.next(WAIT) {
                if beat["apps"][0]["drain"] == want {
                    return true;
                }
            }
        }
        false
    };
    assert!(drained(&sub, json!("restart by alice")));
    control
        .ask(&json!({"op": "undrain", "app": "blog"}), WAIT)
        .expect("an answer");
    assert!(drained(&sub, Value::Null));
    let unknown = control
        .ask(
            &json!({"op": "drain", "app": "shop", "ttl_seconds": 5}),
            WAIT,
        )
        .expect("an answer");
    assert!(
        unknown["error"]
            .as_str()
            .is_some_and(|e| e.contains("no app `shop` runs on run1")),
        "{unknown}"
    );
}

/// `status` reports the host's load, memory and file systems as found now.
#[test]
fn status_reports_what_the_host_is_doing() {
    let agent = Agent::start("agent-status");
    let mut control = agent.control(&key("operator"));
    let status = control
        .ask(&json!({"op": "status"}), WAIT)
        .expect("an answer");
    assert_eq!(status["ok"], true, "{status}");
    assert!(status["load"][0].as_f64().is_some(), "{status}");
    assert!(
        status["memory"]["total"].as_u64().is_some_and(|t| t > 0),
        "{status}"
    );
    assert!(
        status["boot_seconds"].as_f64().is_some_and(|t| t > 0.0),
        "{status}"
    );
    assert_eq!(status["postgres"], json!([]));
    assert_eq!(status["balancer"], Value::Null);
}

/// `restart` runs systemctl on the app's units only; `probe` asks the app's
/// socket until it answers below 500.
#[test]
fn restart_and_probe_an_app() {
    use std::io::{Read, Write};
    let agent = Agent::start("agent-restart");
    let mut control = agent.control(&key("operator"));
    let restart = json!({"op": "restart", "app": "blog", "units": "web", "timeout_ms": 5000});
    let answer = control.ask(&restart, WAIT).expect("an answer");
    assert_eq!(
        answer["restarted"],
        json!(["sitec-app-blog.service"]),
        "{answer}"
    );
    let workers = json!({"op": "restart", "app": "blog", "units": "workers", "timeout_ms": 5000});
    control.ask(&workers, WAIT).expect("an answer");
    let calls = fs::read_to_string(agent.path("bin/systemctl.log")).expect("systemctl was run");
    assert!(
        calls.contains("restart --no-ask-password -- sitec-app-blog.service\n"),
        "{calls}"
    );
    assert!(
        calls.contains("restart --no-ask-password -- sitec-app-blog-worker-celery.service\n"),
        "{calls}"
    );
    // Nothing answers yet: the probe says so when its time is up.
    let probe = json!({"op": "probe", "app": "blog", "timeout_ms": 300});
    let answer = control.ask(&probe, WAIT).expect("an answer");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("did not answer")),
        "{answer}"
    );
    // An app that answers 502 twice, then 200.
    let listener =
        std::os::unix::net::UnixListener::bind(agent.path("gunicorn.sock")).expect("bind");
    let server = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for (n, stream) in listener.incoming().enumerate().take(3) {
            let mut stream = stream.expect("a connection");
            let mut request = [0u8; 1024];
            let got = stream.read(&mut request).expect("a request");
            seen.push(String::from_utf8_lossy(&request[..got]).into_owned());
            let status = if n < 2 { "502 Bad Gateway" } else { "200 OK" };
            let _ = write!(stream, "HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
        }
        seen
    });
    let probe = json!({"op": "probe", "app": "blog", "timeout_ms": 10_000});
    let answer = control.ask(&probe, WAIT).expect("an answer");
    assert_eq!(answer["status"], 200, "{answer}");
    let seen = server.join().expect("the app");
    assert!(
        seen[2].starts_with("GET / HTTP/1.1\r\nHost: blog.localhost\r\n"),
        "{seen:?}"
    );
}
