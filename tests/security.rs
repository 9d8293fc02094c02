//! Hostile tests on booted hosts (systemd-nspawn, fleet `hostile`): the
//! fleet's own service users turned against it. After a first apply, every
//! service user of each host (an app's user, postgres, redis, www-data, the
//! balancer's and the agent's users) plants a link to a root-only canary at
//! every path apply writes, beside each as the temporary names earlier
//! versions used, and at every log path nginx, systemd and the agent open;
//! the folders and files apply manages are then changed by hand, so the
//! next apply must write every one of them again, and every log is rotated
//! (`logrotate -f`). Nothing outside the intended paths may change (the
//! canary, `/etc/shadow`, `/etc/passwd`, `/etc/group`, `/etc` itself: their
//! bytes, owner and mode), no root-only text may leave the host (not in the
//! plan, not in the collector's files), apply names each link it refused,
//! and once the links are gone the fleet converges and serves again.
//!
//! Also on the booted hosts: `systemd-analyze security` scores the agent and
//! the balancer at 3.5 or less, the agent runs as its own user, and the
//! app's collected static files were written by the app's user, not root.
//! Last, a dedicated database added later makes its cluster beside a link
//! postgres planted at its data folder, and nothing follows it.
//!
//! Needs root and systemd-container, like tests/apply.rs; the fleet takes
//! its addresses from the machine-wide registry, so it runs beside others.

mod common;

use common::{can_boot, repo};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const SPEC: &str = r#"use std/platform

provider local { kind = local }

host lb1 { provider = local  roles = [balancer, logs] }
host run1 { provider = local  roles = [runner] }
host db1 { provider = local  roles = [postgres, redis] }

checks { balancer_redundancy = off }

database main { engine = postgres  primary = db1 }
database cache { engine = redis  tier = dedicated  primary = db1 }

app blog {
  source = "apps/blog"
  python = "3.11"
  wsgi = "blog.wsgi:application"
  domains = ["blog.localhost", "*"]
  paths = ["."]
  static "/static/" = "collected_static"
  databases { default = main  cache = cache }
  tls {
    cert = "tls/blog.localhost.pem"
    key = "tls/blog.localhost.key"
  }
  settings {
    SITE_TITLE = "Hostile"
    SECRET_KEY = secret("blog.secret_key")
  }
}
"#;

const HOSTS: [&str; 3] = ["lb1", "run1", "db1"];

/// The users of each host who may try anything: every service user sitec
/// or a package made there.
fn service_users(host: &str) -> &'static [&'static str] {
    match host {
        "run1" => &["app-blog", "www-data", "sitec-agent"],
        "db1" => &["postgres", "redis", "www-data", "sitec-agent"],
        _ => &["sitec-balancer", "www-data", "sitec-agent"],
    }
}

/// A fleet of its own in a scratch folder, taken down when dropped.
struct Fleet {
    dir: tempfile::TempDir,
    spec: PathBuf,
}

impl Fleet {
    fn up() -> Result<Fleet, Box<dyn std::error::Error>> {
        let dir = tempfile::Builder::new()
            .prefix("sitec-hostile-")
            .tempdir()?;
        let copied = Command::new("cp")
            .arg("-a")
            .arg(repo().join("examples/apps"))
            .arg(repo().join("examples/tls"))
            .arg(dir.path())
            .status()?;
        assert!(copied.success(), "copying the sample app and certificate");
        let spec = dir.path().join("hostile.site");
        std::fs::write(&spec, SPEC)?;
        let fleet = Fleet { dir, spec };
        common::take_down_leftover_fleet("hostile")?;
        let up = fleet.sitec(&["fleet", "up"], &[]);
        assert!(up.status.success(), "fleet up: {}", text(&up));
        Ok(fleet)
    }

    /// `sitec WORDS... SPEC FLAGS...`.
    fn sitec(&self, words: &[&str], flags: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_sitec"))
            .args(words)
            .arg(&self.spec)
            .args(flags)
            .env("SITEC_CACHE", repo().join("target/sitec-test-cache"))
            .stdin(Stdio::null())
            .output()
            .expect("sitec runs")
    }

    fn apply(&self) -> Output {
        self.sitec(&["apply"], &["--yes"])
    }

    /// `sh -c script` as root on `host`; its output, which must say it succeeded.
    fn root(&self, host: &str, script: &str) -> String {
        let out = self.ssh(host, script);
        assert!(out.status.success(), "{host}: `{script}`: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `sh -c script` as root on `host` with `input` on its stdin, which a
    /// failure does not print (it may hold secret values).
    fn root_fed(&self, host: &str, script: &str, input: &[u8]) -> String {
        let out = self
            .fed(host, script, input)
            .wait_with_output()
            .expect("ssh ends");
        assert!(out.status.success(), "{host}: `{script}`: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `sh -c script` as root on `host`, started with `input` written to
    /// its stdin (then closed); its output piped.
    fn fed(&self, host: &str, script: &str, input: &[u8]) -> std::process::Child {
        let config = self.dir.path().join(".fleet/hostile/ssh_config");
        let mut child = Command::new("ssh")
            .arg("-F")
            .arg(config)
            .arg(host)
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ssh runs");
        if let Some(mut stdin) = child.stdin.take() {
            std::io::Write::write_all(&mut stdin, input).expect("ssh takes its input");
        }
        child
    }

    fn ssh(&self, host: &str, script: &str) -> Output {
        let config = self.dir.path().join(".fleet/hostile/ssh_config");
        Command::new("ssh")
            .arg("-F")
            .arg(config)
            .arg(host)
            .arg(script)
            .stdin(Stdio::null())
            .output()
            .expect("ssh runs")
    }

    fn address(&self, host: &str) -> String {
        let status = self.sitec(&["fleet", "status"], &[]);
        String::from_utf8_lossy(&status.stdout)
            .lines()
            .find_map(|l| {
                let mut words = l.split_whitespace();
                (words.next() == Some(host)).then(|| words.next().map(str::to_string))?
            })
            .unwrap_or_else(|| panic!("{host} has no address: {}", text(&status)))
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let down = self.sitec(&["fleet", "down"], &[]);
        if !down.status.success() {
            eprintln!("fleet down failed: {}", text(&down));
        }
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// What must not change on a host: bytes, owner and mode of a few files only
/// root may write (and `/etc` itself), one line each.
const GUARDED: &str = "/etc/shadow /etc/passwd /etc/group /etc/sitec-canary /etc /root";

fn fingerprint(fleet: &Fleet, host: &str) -> String {
    fleet.root(
        host,
        &format!(
            "for f in {GUARDED}; do if [ -f $f ]; then s=$(sha256sum < $f); else s=folder; fi; \
             echo \"$f $(stat -c '%u:%g %a' $f) $s\"; done"
        ),
    )
}

/// Every path apply put on `host` (files, folders, links, trees,
/// virtualenvs), from its state file: `(kind, path)`.
fn managed_paths(fleet: &Fleet, host: &str) -> Vec<(String, String)> {
    let state = fleet.root(host, "cat /var/lib/sitec/state.json");
    let state: serde_json::Value = serde_json::from_str(&state).expect("state.json parses");
    state["managed"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| {
            let (kind, _) = m["id"].as_str()?.split_once(':')?;
            Some((kind.to_string(), m["path"].as_str()?.to_string()))
        })
        .collect()
}

/// The log files nginx, systemd and the agent open on `host` (the agent's
/// `[[log]]` paths, nginx's `access_log` and `error_log` lines).
fn log_paths(fleet: &Fleet, host: &str) -> Vec<String> {
    let listed = fleet.root(
        host,
        "sed -n 's/^path = \"\\(.*\\)\"$/\\1/p' /etc/sitec/agent.toml; \
         cat /etc/nginx/sites-enabled/sitec-*.conf 2>/dev/null | sed -n 's/^ *\\(access\\|error\\)_log \\([^ ;]*\\).*/\\2/p'; \
         grep -h '^Standard\\(Output\\|Error\\)=append:' /etc/systemd/system/sitec-*.service 2>/dev/null | sed 's/.*append://'",
    );
    listed.lines().map(str::to_string).collect()
}

/// Each path, the temporary names earlier versions wrote beside it, and
/// for a folder a name inside it.
fn targets_for(paths: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for path in paths {
        let (folder, name) = path.rsplit_once('/').unwrap_or(("", path));
        out.push(path.clone());
        out.push(format!("{folder}/.{name}.sitec-tmp"));
        out.push(format!("{folder}/.{name}.sitec-new"));
        out.push(format!("{path}/planted"));
        out.push(format!("{path}/planted.log"));
    }
    out.sort();
    out.dedup();
    out
}

/// As each service user, a link to the canary at every target, replacing
/// what the user may replace. With `move_aside`, what the user may rename
/// (anything in a folder of its own, a folder included) is first moved to
/// `PATH.moved-away`, as an attacker would. Returns `user path` for each
/// link that took.
fn plant(fleet: &Fleet, host: &str, targets: &[String], move_aside: bool) -> Vec<String> {
    fleet.root(
        host,
        &format!(
            "printf '%s\\n' {} > /tmp/targets; chmod 0644 /tmp/targets",
            targets.join(" ")
        ),
    );
    let aside = if move_aside {
        "mv -T \"$p\" \"$p.moved-away\" 2>/dev/null; "
    } else {
        ""
    };
    let mut planted = Vec::new();
    for user in service_users(host) {
        let out = fleet.root(
            host,
            &format!(
                "id -u {user} >/dev/null 2>&1 || exit 0; \
                 runuser -u {user} -- sh -c 'while read -r p; do {aside}\
                   if ln -sfT /etc/sitec-canary \"$p\" 2>/dev/null; then echo \"{user} $p\"; fi; \
                 done' < /tmp/targets"
            ),
        );
        planted.extend(out.lines().map(|l| format!("{host} {l}")));
    }
    planted
}

/// Removes every link planted at the targets (to the canary: a managed
/// path may be a link of apply's own, as an app's `current` is), puts back
/// what was moved aside.
fn unplant(fleet: &Fleet) {
    for host in HOSTS {
        fleet.root(
            host,
            "while read -r p; do \
               if [ \"$(readlink \"$p\")\" = /etc/sitec-canary ]; then rm \"$p\"; fi; \
               if [ -e \"$p.moved-away\" ]; then mv -T \"$p.moved-away\" \"$p\"; fi; \
             done < /tmp/targets",
        );
    }
}

/// What apply manages on one host, `(kind, path)`; where a plant there
/// aims: those paths, their temporary names and names inside their
/// folders; and the log files nginx, systemd and the agent open.
struct Survey {
    managed: Vec<(String, String)>,
    targets: Vec<String>,
    logs: Vec<String>,
}

fn survey(fleet: &Fleet) -> Vec<Survey> {
    HOSTS
        .iter()
        .map(|host| {
            let managed = managed_paths(fleet, host);
            let names: Vec<String> = managed.iter().map(|(_, p)| p.clone()).collect();
            let logs = log_paths(fleet, host);
            Survey {
                targets: targets_for(&names),
                managed,
                logs,
            }
        })
        .collect()
}

/// Requests through the balancer, the last to `marker`; waits until the
/// collector on lb1 has filed that one's line (run1's nginx log, shipped by
/// its agent), and returns everything collected.
fn traffic_until_collected(fleet: &Fleet, lb: &str, marker: &str) -> String {
    for path in ["/", "/", marker] {
        let _ = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-H", "Host: blog.localhost"])
            .arg(format!("http://{lb}{path}"))
            .status();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let collected = fleet.root("lb1", "cat $(find /var/log/sitec/fleet -type f) /dev/null");
        if collected.contains(marker) {
            return collected;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{marker} never reached the collector: {collected}"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

/// Every file and folder apply manages on `host` changed by hand, as root
/// (a line added, a mode changed), so the next apply writes each again.
fn disturb(fleet: &Fleet, host: &str, managed: &[(String, String)]) {
    for (kind, path) in managed {
        let change = match kind.as_str() {
            "file" => format!("echo '# changed by hand' >> {path}"),
            "directory" => format!("chmod 0700 {path}"),
            _ => continue,
        };
        fleet.root(
            host,
            &format!("if [ ! -L {path} ] && [ -e {path} ]; then {change}; fi"),
        );
    }
}

/// Every secret a host may hold, `(name, value)`: the spec's secrets file,
/// the database servers' TLS keys and the app's TLS key (the base64 lines
/// of their bodies).
fn secret_values(fleet: &Fleet) -> Vec<(String, String)> {
    let file = fleet.dir.path().join("hostile.secrets.toml");
    let text = std::fs::read_to_string(&file).expect("the secrets file");
    let doc: toml_edit::DocumentMut = text.parse().expect("the secrets file parses");
    let mut secrets: Vec<(String, String)> = doc
        .iter()
        .filter_map(|(name, item)| Some((name.to_string(), item.as_str()?.to_string())))
        .collect();
    // A bus key's value is a seed: hosts hold the CURVE secret key made from it.
    let derived: Vec<(String, String)> = secrets
        .iter()
        .filter(|(name, _)| name.starts_with("bus."))
        .map(|(name, seed)| {
            let key = sitec::bus::keys::derive(seed).key_file_text();
            (name.clone(), key.trim().to_string())
        })
        .collect();
    secrets.extend(derived);
    // Each database server's own TLS key, derived from the fleet CA's secret.
    let ca = (secrets.iter())
        .find(|(name, _)| name == sitec::fleet_ca::CA_SECRET)
        .map(|(_, value)| value.clone())
        .expect("the fleet CA's secret");
    for server in ["postgres", "redis"] {
        let key = sitec::fleet_ca::server_key_pem(&ca, "db1", server).expect("a key");
        secrets.extend(
            key.lines()
                .filter(|l| !l.starts_with("-----") && l.len() >= 40)
                .map(|l| (format!("tls.db1.{server}_key"), l.to_string())),
        );
    }
    let key = std::fs::read_to_string(fleet.dir.path().join("tls/blog.localhost.key"))
        .expect("the TLS key");
    secrets.extend(
        key.lines()
            .filter(|l| !l.starts_with("-----") && l.len() >= 40)
            .map(|l| ("tls.blog.key".to_string(), l.to_string())),
    );
    assert!(
        secrets.len() > 5,
        "too few secrets to look for: {}",
        secrets.len()
    );
    secrets
}

/// Who may read a secret, by its name: its app's user where the app runs
/// and the server that checks it; a host's bus key its agent (and the
/// balancer's its balancer); the agent's Redis password (ROLE only) that
/// Redis server and the agent beside it; the operator's key and anything
/// else, no one.
fn may_read(user: &str, host: &str, secret: &str) -> bool {
    let app_or = |server: &str| user == "app-blog" || (host == "db1" && user == server);
    match secret {
        "blog.secret_key" | "app.blog.secret_key" => user == "app-blog",
        "db.main.blog.password" | "postgres.db1.main.replication.password" => app_or("postgres"),
        "redis.cache.password" => app_or("redis"),
        "redis.cache.agent.password" => host == "db1" && ["redis", "sitec-agent"].contains(&user),
        "tls.blog.key" | "bus.balancer.lb1" => host == "lb1" && user == "sitec-balancer",
        "tls.db1.postgres_key" => host == "db1" && user == "postgres",
        "tls.db1.redis_key" => host == "db1" && user == "redis",
        bus_host => bus_host == format!("bus.host.{host}") && user == "sitec-agent",
    }
}

/// Each service user of each host reads every file it can under the
/// folders where a program keeps state, config, logs or scratch files;
/// returns `host user path secret-name` for each secret it found there,
/// those it may not read first (`wrong`), then those it may (`right`). The
/// values go to the host on stdin and stay in a root-only file for the
/// search.
fn secrets_read_by_each_user(fleet: &Fleet) -> (Vec<String>, Vec<String>) {
    let secrets = secret_values(fleet);
    let values: String = secrets.iter().map(|(_, v)| format!("{v}\n")).collect();
    let (mut wrong, mut right) = (Vec::new(), Vec::new());
    for host in HOSTS {
        fleet.root_fed(
            host,
            "umask 077; cat > /root/secret-values",
            values.as_bytes(),
        );
        for user in service_users(host) {
            // The user lists what it can read; root searches those files.
            let found = fleet.root(
                host,
                &format!(
                    "id -u {user} >/dev/null 2>&1 || exit 0; \
                     runuser -u {user} -- find /etc /srv /var /home /root /opt /tmp /run \
                       -type f -readable -size -8M -print0 2>/dev/null \
                     | xargs -0 -r grep -aoHFZ -f /root/secret-values 2>/dev/null | sort -u; true"
                ),
            );
            for line in found.lines() {
                // `grep -Z`: a NUL after the path (a Z85 key may hold a `:`).
                let Some((path, value)) = line.split_once('\0') else {
                    continue;
                };
                let names = secrets.iter().filter(|(_, v)| v == value);
                for (name, _) in names {
                    let found = format!("{host} {user} {path} {name}");
                    if may_read(user, host, name) {
                        right.push(found);
                    } else {
                        wrong.push(found);
                    }
                }
            }
        }
        fleet.root(host, "rm -f /root/secret-values");
    }
    (wrong, right)
}

/// As the app's user on run1, what a hostile tenant can do to the bus
/// from inside the fleet: to every agent's control, heartbeat and
/// collector port, ZMTP greetings (NULL and CURVE) each followed by a frame
/// that declares 2^62 or 2^32 bytes, and 60 connections per port that
/// never say a word, all held open 20 s; `ready` hears once they are all
/// made. Returns how many connections it made.
fn hostile_tenant_on_the_bus(
    fleet: &Fleet,
    ports: &[String],
    ready: std::sync::mpsc::Sender<()>,
) -> usize {
    const SCRIPT: &str = r#"
import socket, struct, sys, time
held = []
def greeting(mechanism):
    return bytes([0xFF, 0, 0, 0, 0, 0, 0, 0, 1, 0x7F, 3, 0]) + mechanism.ljust(20, b"\0") + b"\0" + bytes(31)
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    for mechanism in (b"NULL", b"CURVE"):
        for size in (1 << 62, 1 << 32):
            for flags in (0x06, 0x02):
                try:
                    s = socket.create_connection((host, int(port)), timeout=3)
                    s.sendall(greeting(mechanism) + bytes([flags]) + struct.pack(">Q", size) + b"x" * 65536)
                    held.append(s)
                except OSError:
                    pass
    for _ in range(60):
        try:
            held.append(socket.create_connection((host, int(port)), timeout=3))
        except OSError:
            break
print("ready", flush=True)
time.sleep(20)
print(len(held))
"#;
    let script = format!(
        "cat > /tmp/tenant.py && chmod 0644 /tmp/tenant.py && \
         runuser -u app-blog -- python3 /tmp/tenant.py {}",
        ports.join(" ")
    );
    let mut child = fleet.fed("run1", &script, SCRIPT.as_bytes());
    let mut made = 0;
    if let Some(stdout) = child.stdout.take() {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
            if line == "ready" {
                let _ = ready.send(());
            } else if let Ok(count) = line.trim().parse() {
                made = count;
            }
        }
    }
    let out = child.wait_with_output().expect("ssh ends");
    assert!(out.status.success(), "the tenant: {}", text(&out));
    made
}

/// `systemctl show -p MainPID` of each of a host's sitec units, one line.
fn sitec_pids(fleet: &Fleet, host: &str) -> String {
    fleet.root(
        host,
        "for u in sitec-agent sitec-balancer; do \
           systemctl is-enabled -q $u 2>/dev/null || continue; \
           echo \"$u $(systemctl is-active $u) $(systemctl show -p MainPID --value $u)\"; done",
    )
}

/// `systemd-analyze security UNIT`'s overall exposure.
fn exposure(fleet: &Fleet, host: &str, unit: &str) -> f64 {
    let out = fleet.root(
        host,
        &format!("systemd-analyze security --no-pager {unit} | tail -n 1"),
    );
    // → Overall exposure level for sitec-agent.service: 1.3 OK :-)
    out.split(": ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|score| score.parse().ok())
        .unwrap_or_else(|| panic!("{host}: no score for {unit} in {out:?}"))
}

#[test]
fn service_users_cannot_turn_apply_logs_or_the_agent_against_root() -> TestResult {
    if !can_boot() {
        return Ok(());
    }
    let _lock = common::exclusive("hostile")?;
    let fleet = Fleet::up()?;
    let first = fleet.apply();
    assert!(first.status.success(), "first apply: {}", text(&first));
    let lb = fleet.address("lb1");

    // Least privilege, as systemd sees it.
    for (host, unit) in [
        ("run1", "sitec-agent"),
        ("lb1", "sitec-agent"),
        ("lb1", "sitec-balancer"),
    ] {
        let score = exposure(&fleet, host, unit);
        assert!(score <= 3.5, "{host}: {unit} scores {score}, more than 3.5");
    }
    for host in HOSTS {
        let agent = fleet.root(
            host,
            "stat -c %U /proc/$(systemctl show -p MainPID --value sitec-agent)",
        );
        assert_eq!(agent.trim(), "sitec-agent", "{host}: the agent's process");
    }
    // App code never ran as root: the collected files are the app user's.
    let collected = fleet.root(
        "run1",
        "find /srv/sitec/apps/blog/current/collected_static/ -mindepth 1 -printf '%u\\n' | sort -u",
    );
    assert_eq!(
        collected.trim(),
        "app-blog",
        "collectstatic wrote as: {collected}"
    );

    // No service user can read a secret that is not its own, anywhere.
    let (wrong, right) = secrets_read_by_each_user(&fleet);
    assert!(
        wrong.is_empty(),
        "secrets a service user can read (host user file secret):\n{}",
        wrong.join("\n")
    );
    // The search finds what it looks for: each user reads its own.
    for expected in [
        "run1 app-blog /etc/sitec/apps/blog/environment",
        "run1 sitec-agent /etc/sitec/bus/host.key bus.host.run1",
        "lb1 sitec-balancer /etc/sitec/bus/balancer.key bus.balancer.lb1",
        "db1 redis /etc/sitec/redis/cache.conf redis.cache.password",
        "db1 sitec-agent /etc/sitec/agent.toml redis.cache.agent.password",
    ] {
        assert!(
            right.iter().any(|r| r.starts_with(expected)),
            "the search did not find `{expected}` among: {right:#?}"
        );
    }

    // A hostile tenant on the bus: every daemon stays up (the same process),
    // and the fleet serves and ships its logs as before.
    let pids: Vec<String> = HOSTS.iter().map(|h| sitec_pids(&fleet, h)).collect();
    let mut ports = Vec::new();
    for host in HOSTS {
        let address = fleet.address(host);
        ports.extend(["7701", "7702", "7703"].map(|p| format!("{address}:{p}")));
    }
    let made = std::thread::scope(|scope| {
        let (ready, made_them) = std::sync::mpsc::channel();
        let tenant = scope.spawn(|| hostile_tenant_on_the_bus(&fleet, &ports, ready));
        // While it holds its connections, logs still reach the collector.
        if made_them
            .recv_timeout(std::time::Duration::from_secs(180))
            .is_err()
        {
            let made = tenant.join().expect("the tenant's ssh");
            panic!("the tenant never held its connections ({made} made)");
        }
        traffic_until_collected(&fleet, &lb, "/?while-the-tenant-holds-on");
        let page = Command::new("curl")
            .args(["-fsS", "--max-time", "10", "-H", "Host: blog.localhost"])
            .arg(format!("http://{lb}/"))
            .output()
            .expect("curl runs");
        assert!(text(&page).contains("Hostile"), "serving: {}", text(&page));
        tenant.join().expect("the tenant's ssh")
    });
    assert!(made > 100, "the tenant made only {made} connections");
    for (host, was) in HOSTS.iter().zip(&pids) {
        assert!(was.contains(" active "), "{host}: {was}");
        assert_eq!(&sitec_pids(&fleet, host), was, "{host}: a daemon restarted");
    }
    traffic_until_collected(&fleet, &lb, "/?after-the-tenant");

    // A canary only root can read, on every host.
    let secret = format!("CANARY-{}-only-root-reads-this", std::process::id());
    let mut before = Vec::new();
    for host in HOSTS {
        fleet.root(
            host,
            &format!("umask 077; echo {secret} > /etc/sitec-canary; chmod 0600 /etc/sitec-canary"),
        );
        before.push(fingerprint(&fleet, host));
    }

    // Round one: a link everywhere a service user can put one, at the
    // paths apply writes, their temporary names and inside their folders;
    // every file and folder apply manages changed by hand, so the apply
    // writes each again beside the links, and must converge. Then every log
    // is rotated, and the logs still reach the collector.
    let surveyed = survey(&fleet);
    let mut planted = Vec::new();
    for (host, at) in HOSTS.iter().zip(&surveyed) {
        planted.extend(plant(&fleet, host, &at.targets, false));
    }
    eprintln!(
        "links the service users could plant:\n{}",
        planted.join("\n")
    );
    let plan = fleet.sitec(&["plan"], &["--json"]);
    let mut shown = text(&plan);
    for (host, at) in HOSTS.iter().zip(&surveyed) {
        disturb(&fleet, host, &at.managed);
    }
    let second = fleet.apply();
    shown.push_str(&text(&second));
    assert!(
        second.status.success(),
        "every host converges beside the links: {}",
        text(&second)
    );
    for host in HOSTS {
        fleet.root(host, "logrotate -f /etc/logrotate.conf");
    }
    traffic_until_collected(&fleet, &lb, "/?after-rotation");
    unplant(&fleet);

    // Round two: the same, and the logs too, and what a service user may
    // rename (anything in a folder of its own, the Redis data folder apply
    // makes, the balancer's log) moved aside first and replaced by a link to
    // the canary. The apply refuses each such path apply manages, by name,
    // and chowns nothing; a rotation and more traffic follow.
    let mut swapped = Vec::new();
    for (host, at) in HOSTS.iter().zip(&surveyed) {
        let mut targets = at.targets.clone();
        targets.extend(at.logs.iter().cloned());
        swapped.extend(plant(&fleet, host, &targets, true));
    }
    eprintln!(
        "links where something was moved aside:\n{}",
        swapped.join("\n")
    );
    let plan = fleet.sitec(&["plan"], &["--json"]);
    shown.push_str(&text(&plan));
    let third = fleet.apply();
    let third_text = text(&third);
    shown.push_str(&third_text);
    let managed_swaps: Vec<&str> = swapped
        .iter()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let (host, path) = (words.next()?, words.nth(1)?);
            let at = HOSTS.iter().position(|h| *h == host)?;
            surveyed[at]
                .managed
                .iter()
                .any(|(_, p)| p == path)
                .then_some(path)
        })
        .collect();
    assert!(
        !managed_swaps.is_empty(),
        "no service user could swap a path apply manages: {swapped:?}"
    );
    for path in managed_swaps {
        assert!(
            third_text.contains(&format!("{path} is a symbolic link (to /etc/sitec-canary)")),
            "apply names the link at {path}: {third_text}"
        );
    }
    for host in HOSTS {
        // Rotating files that are now links fails; what matters is what it changed.
        let _ = fleet.ssh(host, "logrotate -f /etc/logrotate.conf");
    }
    let collected = traffic_until_collected(&fleet, &lb, "/?after-links");

    // Nothing outside the intended paths changed, nothing root-only left.
    for (host, was) in HOSTS.iter().zip(&before) {
        assert_eq!(
            &fingerprint(&fleet, host),
            was,
            "{host}: a guarded file changed"
        );
    }
    assert!(!shown.contains(&secret), "the canary's text was shown");
    assert!(
        !collected.contains(&secret),
        "the canary reached the collector"
    );
    let shadow = fleet.root("run1", "grep '^root:' /etc/shadow | cut -d: -f2");
    if shadow.trim().len() > 2 {
        assert!(
            !collected.contains(shadow.trim()),
            "/etc/shadow reached the collector"
        );
        assert!(!shown.contains(shadow.trim()), "/etc/shadow was shown");
    }

    // The links gone and what was moved aside put back, the fleet converges,
    // serves, and has nothing left to do.
    unplant(&fleet);
    let healed = fleet.apply();
    assert!(
        healed.status.success(),
        "after the links are gone: {}",
        text(&healed)
    );
    let page = Command::new("curl")
        .args([
            "-fsS",
            "--max-time",
            "10",
            "-H",
            "Host: blog.localhost",
            &format!("http://{lb}/"),
        ])
        .output()?;
    assert!(text(&page).contains("Hostile"), "serving: {}", text(&page));
    let quiet = fleet.sitec(&["plan"], &[]);
    assert!(text(&quiet).contains("No changes"), "{}", text(&quiet));

    a_new_cluster_never_follows_a_link_postgres_planted(&fleet);
    Ok(())
}

/// A dedicated database added later gets a cluster of its own, whose data
/// folder is made in `/var/lib/postgresql/15`, postgres's own folder.
/// postgres puts a link to a root-only folder there first: Debian's
/// `pg_createcluster`, run as root, gave that folder to postgres (mode 755)
/// and wrote into it. Now postgres's own `initdb` makes the cluster, so the
/// link leads postgres only where it could go anyway: the apply fails,
/// naming the command, and changes nothing; with the link gone it makes
/// the cluster, which serves the app.
fn a_new_cluster_never_follows_a_link_postgres_planted(fleet: &Fleet) {
    let canary = "/etc/sitec-canary-folder";
    let data = "/var/lib/postgresql/15/ledger";
    let look = format!("find {canary} -printf '%p %u:%g %m %s\\n' | sort; cat {canary}/secret");
    fleet.root(
        "db1",
        &format!(
            "mkdir -m 0700 {canary} && echo only-root > {canary}/secret && chmod 0600 {canary}/secret && \
             cd / && runuser -u postgres -- ln -s {canary} {data}"
        ),
    );
    let before = fleet.root("db1", &look);
    let with_ledger = SPEC
        .replace(
            "database cache {",
            "database ledger { engine = postgres  tier = dedicated  primary = db1 }\ndatabase cache {",
        )
        .replace(
            "databases { default = main  cache = cache }",
            "databases { default = main  cache = cache  ledger = ledger }",
        );
    assert_ne!(with_ledger, SPEC, "the spec gains a dedicated database");
    std::fs::write(&fleet.spec, &with_ledger).expect("the spec is written");
    let refused = fleet.apply();
    assert_eq!(
        fleet.root("db1", &look),
        before,
        "making the cluster wrote through postgres's link: {}",
        text(&refused)
    );
    assert!(!refused.status.success(), "apply made a cluster in a link");
    assert!(
        text(&refused).contains("init-cluster-ledger"),
        "the failure names the command: {}",
        text(&refused)
    );

    fleet.root("db1", &format!("rm {data} && rm -r {canary}"));
    let made = fleet.apply();
    assert!(made.status.success(), "with the link gone: {}", text(&made));
    let owners = fleet.root(
        "db1",
        &format!(
            "systemctl is-active postgresql@15-ledger; stat -c '%U %a' {data} /etc/postgresql/15/ledger; \
             cd / && runuser -u postgres -- psql -XAt -p $(sed -n 's/^port = //p' /etc/postgresql/15/ledger/postgresql.conf) -d postgres -c 'show server_encoding'"
        ),
    );
    assert_eq!(
        owners.trim(),
        "active\npostgres 700\nroot 750\nUTF8",
        "the cluster runs from postgres's data folder and root's config folder"
    );
    let quiet = fleet.sitec(&["plan"], &[]);
    assert!(text(&quiet).contains("No changes"), "{}", text(&quiet));
}
