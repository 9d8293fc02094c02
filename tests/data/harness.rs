//! The data tests' fleet: a spec in a scratch folder (with the sample apps
//! beside it) booted as a local fleet on a bridge and subnet of its own
//! (`sitecdata`, 10.77.210.0/24, addresses written in the spec), so it
//! runs beside the apply tests and a quickstart left up; taken down when
//! dropped. One fleet serves every scenario of `tests/data.rs` in turn.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

pub const BRIDGE: &str = "sitecdata";
pub const SUBNET: &str = "10.77.210.0/24";

/// Whether this machine can boot the data fleet (root, systemd-container,
/// btrfs-progs); lacking any, the test fails unless the run sets
/// `SITEC_SKIP_ROOT_TESTS=1` (`common::root_test_can_run`).
pub fn can_boot() -> bool {
    let mut lacking = Vec::new();
    if !crate::common::is_root() {
        lacking.push("root".to_string());
    }
    for (tool, package) in [
        ("/usr/bin/systemd-nspawn", "systemd-container"),
        ("/usr/bin/btrfs", "btrfs-progs"),
    ] {
        if !Path::new(tool).exists() {
            lacking.push(format!("{tool} (apt-get install {package})"));
        }
    }
    crate::common::root_test_can_run(&lacking, "it boots systemd-nspawn hosts with btrfs")
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub struct DataFleet {
    pub dir: tempfile::TempDir,
    pub spec: PathBuf,
}

impl DataFleet {
    /// Writes `NAME.site`, takes down what a killed run left, boots it.
    pub fn boot(name: &str, spec_text: &str) -> Result<Self, Box<dyn std::error::Error>> {
        let dir = tempfile::Builder::new().prefix("sitec-data-").tempdir()?;
        let copied = Command::new("cp")
            .arg("-a")
            .arg(repo().join("examples/apps"))
            .arg(dir.path())
            .status()?;
        assert!(copied.success(), "copying the sample apps");
        let spec = dir.path().join(format!("{name}.site"));
        std::fs::write(&spec, spec_text)?;
        let fleet = Self { dir, spec };
        crate::common::take_down_leftover_fleet(name)?;
        let up = fleet.run(&["fleet", "up"], &["--bridge", BRIDGE, "--subnet", SUBNET]);
        assert!(up.status.success(), "fleet up: {}", text(&up));
        Ok(fleet)
    }

    fn state_root(&self) -> PathBuf {
        self.dir.path().join(".fleet")
    }

    pub fn name(&self) -> String {
        (self.spec.file_stem())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// `sitec WORDS... SPEC REST...`.
    pub fn run(&self, words: &[&str], rest: &[&str]) -> Output {
        self.run_with(words, rest, &[])
    }

    /// [`DataFleet::run`] with more environment (`SITEC_TRACE` for the
    /// failover, whose marks say where its time goes).
    pub fn run_with(&self, words: &[&str], rest: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_sitec"))
            .args(words)
            .arg(&self.spec)
            .args(rest)
            .envs(env.iter().copied())
            .env("SITEC_CACHE", repo().join("target/sitec-test-cache"))
            .stdin(Stdio::null())
            .output()
            .expect("sitec runs")
    }

    /// `sitec apply --yes`, which must succeed; its output.
    pub fn apply(&self) -> String {
        let out = self.run(&["apply"], &["--yes"]);
        assert!(out.status.success(), "apply: {}", text(&out));
        text(&out)
    }

    /// A shell script on `host` over the fleet's ssh config.
    pub fn ssh(&self, host: &str, script: &str) -> Output {
        let config = self.state_root().join(self.name()).join("ssh_config");
        Command::new("ssh")
            .arg("-F")
            .arg(config)
            .arg(host)
            .arg(script)
            .stdin(Stdio::null())
            .output()
            .expect("ssh runs")
    }

    /// [`DataFleet::ssh`] that must succeed: its stdout, trimmed.
    pub fn sh(&self, host: &str, script: &str) -> String {
        let out = self.ssh(host, script);
        let shown: String = script.chars().take(300).collect();
        assert!(out.status.success(), "on {host}: `{shown}`: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `psql` as postgres on `host`, one value per line, `|` between columns.
    pub fn psql(&self, host: &str, database: &str, sql: &str) -> String {
        self.sh(
            host,
            &format!(
                "cd / && runuser -u postgres -- psql -X -A -t -v ON_ERROR_STOP=1 -d {database} -c {}",
                quote(sql)
            ),
        )
    }

    /// A generated secret's value from the spec's secrets file.
    pub fn secret(&self, name: &str) -> String {
        let path = self.spec.with_extension("secrets.toml");
        let text = std::fs::read_to_string(&path).expect("the secrets file");
        let doc: toml_edit::DocumentMut = text.parse().expect("the secrets file is TOML");
        doc.get(name)
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("no secret {name}"))
            .to_string()
    }

    /// `sitec backups SPEC DATABASE --json`: its snapshots' rows.
    pub fn backups(&self, database: &str) -> Vec<serde_json::Value> {
        let out = self.run(&["backups"], &[database, "--json"]);
        assert!(out.status.success(), "sitec backups: {}", text(&out));
        serde_json::from_slice(&out.stdout).expect("sitec backups --json is JSON")
    }

    /// The network link on this machine that is `host`'s `host0`.
    pub fn outer_link(&self, host: &str) -> String {
        crate::common::link_with_index(&self.sh(host, "cat /sys/class/net/host0/iflink"))
    }

    /// Takes the fleet down now; what the machine still holds of it after.
    pub fn down(&self) -> Vec<String> {
        let out = self.run(&["fleet", "down"], &[]);
        assert!(out.status.success(), "fleet down: {}", text(&out));
        leftovers(&self.state_root())
    }
}

impl Drop for DataFleet {
    fn drop(&mut self) {
        let down = self.run(&["fleet", "down"], &[]);
        if !down.status.success() {
            eprintln!("fleet down failed: {}", text(&down));
        }
    }
}

/// Mounts below `dir` and loop devices backed by files below it.
pub fn leftovers(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let loops = Command::new("losetup")
        .arg("--list")
        .arg("--noheadings")
        .arg("--output=NAME,BACK-FILE")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    (mounts.lines().map(|l| format!("mount: {l}")))
        .chain(loops.lines().map(|l| format!("loop device: {l}")))
        .filter(|l| l.contains(&dir))
        .collect()
}

/// Cuts (`up` false) or restores a host's link: to its peers it is gone,
/// without a reset, as a dead host is.
pub fn set_link(link: &str, up: bool) {
    let out = Command::new("ip")
        .args(["link", "set", link, if up { "up" } else { "down" }])
        .output()
        .expect("ip runs");
    assert!(out.status.success(), "ip link set {link}: {}", text(&out));
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `text` as one single-quoted shell word.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Polls `probe` until it gives `Some` or `limit` passes.
pub fn wait_for<T>(limit: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = probe() {
            return Some(found);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
