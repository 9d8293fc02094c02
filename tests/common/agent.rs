//! A real `sitec agent` on loopback for `tests/agent.rs` and
//! `tests/hostile.rs`: free ports, a config and the host's key file (0600)
//! in a scratch folder, and a stub `systemctl` first on PATH (systemd is
//! not PID 1 here) that answers for the app's units as the real one does.
//! Every key is derived from a name (`key`): the host's from its name, the
//! operator's from "operator", the balancer's from "lb1".

use super::{free_port, write_script, Scratch};
use serde_json::Value;
use sitec::bus::{keys, Bus, KeyPair, Kind};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `systemctl show -p ActiveState,SubState -- UNIT...`: every unit runs.
/// Every call is written to `systemctl.log` beside it (`bin/`).
const SYSTEMCTL: &str =
    "#!/bin/sh\necho \"$*\" >> \"$0.log\"\nfor u in \"$@\"; do case $u in *.service) \
    printf 'ActiveState=active\\nSubState=running\\n\\n';; esac; done\n";

/// The key pair the tests give `name` (a host, "operator", "lb1").
pub fn key(name: &str) -> KeyPair {
    keys::derive(name)
}

/// A fresh loopback endpoint.
pub fn endpoint() -> String {
    format!("tcp://127.0.0.1:{}", free_port())
}

/// A running `sitec agent` with its own ports and files; killed when dropped.
pub struct Agent {
    pub child: Child,
    pub dir: Scratch,
    pub host: String,
    pub control: String,
    pub heartbeat: String,
}

impl Agent {
    /// Starts an agent that follows `app.log` in its folder (which holds a
    /// line already) and collects its own lines under `fleet/` (the host
    /// has the `logs` role).
    pub fn start(what: &str) -> Agent {
        let dir = Scratch::new(what);
        fs::write(dir.path().join("app.log"), "before the agent\n").expect("log file");
        let logs = endpoint();
        let fleet = dir.path().join("fleet");
        Agent::spawn(dir, "run1", &[(&logs, "run1")], Some((&logs, &fleet)), "")
    }

    /// Starts agent `host` in `dir`, following `dir/app.log` and shipping
    /// to `collectors` (endpoint, collector host); with `collect`, a
    /// collector at that endpoint filing under that folder the lines of
    /// run1 and run2. `extra` goes at the end of the `[collector]` table.
    pub fn spawn(
        dir: Scratch,
        host: &str,
        collectors: &[(&str, &str)],
        collect: Option<(&str, &Path)>,
        extra: &str,
    ) -> Agent {
        let [control, heartbeat] = [endpoint(), endpoint()];
        let root = dir.path().display();
        let collectors: Vec<String> = (collectors.iter())
            .map(|(at, by)| format!("{{ endpoint = \"{at}\", key = \"{}\" }}", key(by).public))
            .collect();
        let senders: Vec<String> = (["run1", "run2"].iter())
            .map(|h| format!("{{ name = \"{h}\", key = \"{}\" }}", key(h).public))
            .collect();
        let collector = collect.map_or(String::new(), |(at, fleet)| {
            format!(
                "[collector]\nendpoint = \"{at}\"\ndir = \"{}\"\nsenders = [{}]\n{extra}\n",
                fleet.display(),
                senders.join(", ")
            )
        });
        let key_file = dir.path().join("host.key");
        write_key(&key_file, &key(host));
        let config = format!(
            "host = \"{host}\"\nstate_dir = \"{root}/state\"\n\n[bus]\ncontrol = \"{control}\"\nheartbeat = \"{heartbeat}\"\n\
             key_file = \"{}\"\noperator = \"{}\"\n\
             heartbeat_readers = [{{ name = \"lb1\", key = \"{}\" }}]\n\
             log_collectors = [{}]\n\n{collector}\
             [[app]]\nname = \"blog\"\nservice = \"sitec-app-blog.service\"\n\
             workers = [\"sitec-app-blog-worker-celery.service\"]\n\
             socket = \"{root}/gunicorn.sock\"\ndomain = \"blog.localhost\"\n\n\
             [[log]]\npath = \"{root}/app.log\"\ntag = \"blog/app.log\"\nowner = \"{}\"\n",
            key_file.display(),
            key("operator").public,
            key("lb1").public,
            collectors.join(", "),
            me()
        );
        fs::write(dir.path().join("agent.toml"), config).expect("write config");
        let bin = dir.path().join("bin");
        write_script(&bin.join("systemctl"), SYSTEMCTL).expect("stub systemctl");
        let child = run(dir.path());
        let agent = Agent {
            child,
            dir,
            host: host.to_string(),
            control,
            heartbeat,
        };
        agent.wait_running();
        agent
    }

    /// Stops the agent and starts it again on the files in its folder (as
    /// an apply that changed them restarts it).
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = run(self.dir.path());
        self.wait_running();
    }

    fn wait_running(&self) {
        assert!(
            super::eventually(Duration::from_secs(15), || self
                .stderr()
                .contains("running")),
            "{}",
            self.stderr()
        );
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(self.path("stderr")).unwrap_or_default()
    }

    /// Still running?
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its resident memory in KiB (`VmRSS` in /proc).
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.child.id())
    }

    /// A SUB on its heartbeats, as `as_key` (the balancer's key is admitted).
    pub fn subscribe(&self, as_key: &KeyPair) -> Subscription {
        let bus = Bus::new(as_key.clone()).expect("a bus");
        let socket = (bus.connect(Kind::Follow, &self.heartbeat, &key(&self.host).public))
            .expect("connect SUB");
        Subscription { _bus: bus, socket }
    }

    /// A control client with `as_key` (the operator's is admitted).
    pub fn control(&self, as_key: &KeyPair) -> sitec::bus::control::Client {
        sitec::bus::control::Client::connect(&self.control, &key(&self.host).public, as_key)
            .expect("a control client")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sitec agent` on `dir/agent.toml`, the stub systemctl first on PATH,
/// its stderr in `dir/stderr`.
fn run(dir: &Path) -> Child {
    let path = std::env::var("PATH").unwrap_or_default();
    let stderr = fs::File::create(dir.join("stderr")).expect("stderr file");
    Command::new(env!("CARGO_BIN_EXE_sitec"))
        .args(["agent", "--config"])
        .arg(dir.join("agent.toml"))
        .env("PATH", format!("{}:{path}", dir.join("bin").display()))
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start sitec agent")
}

/// A connected SUB socket.
pub struct Subscription {
    _bus: Bus,
    pub socket: zmq::Socket,
}

impl Subscription {
    /// The next heartbeat with the app states as JSON (its last frame), if
    /// one comes within `limit`: the pulses between them (`{host, seq,
    /// time}`, ten a second) are passed over.
    pub fn next(&self, limit: Duration) -> Option<Value> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.socket.poll(zmq::POLLIN, 100).ok()? == 0 {
                continue;
            }
            let frames = self.socket.recv_multipart(0).ok()?;
            let beat: Value = serde_json::from_slice(frames.last()?).ok()?;
            if beat.get("apps").is_some() {
                return Some(beat);
            }
        }
        None
    }
}

/// The name of the user the tests run as (the followed file's owner).
pub fn me() -> String {
    let uid = rustix::process::geteuid().as_raw().to_string();
    let passwd = fs::read_to_string("/etc/passwd").expect("passwd");
    (passwd.lines())
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.get(2) == Some(&uid.as_str())).then(|| f[0].to_string())
        })
        .expect("this user in /etc/passwd")
}

/// Writes `pair`'s key file, 0600.
pub fn write_key(path: &Path, pair: &KeyPair) {
    use std::os::unix::fs::PermissionsExt;
    fs::write(path, pair.key_file_text()).expect("write key");
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod key");
}

/// `VmRSS` of process `pid`, in KiB (0 once it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    (status.lines())
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
