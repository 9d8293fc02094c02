//! Plan and apply, for real: boots local fleets (systemd-nspawn hosts with
//! their own sshd and systemd), applies specs with the real binary, and
//! checks what a user sees: the app answering through every balancer, a
//! second apply changing nothing, a setting change touching only its file
//! and service, a dropped app pruned, a config nginx rejects never loaded,
//! services that die or crash-loop as they start failing the apply, an
//! unreachable host failing alone, a host cut off mid-apply failing alone
//! (ssh's keepalives, not TCP's timeout), and applies killed with SIGKILL always
//! converging on the next run with no half-written file anywhere; and
//! releases on two runners: a new one live with its own static files, a
//! rollback and forward again without a build, a broken one leaving the
//! live one serving; and rolling deploys under load through the balancer:
//! a new release (with a migration) and a rollback failing no request, a
//! release whose migration fails leaving both runners on the live one.
//!
//! Needs root and systemd-container (CI has both; elsewhere the tests fail
//! unless the run sets `SITEC_SKIP_ROOT_TESTS=1`). Each test takes a lock
//! named by its fleet (`common::exclusive`), so the same test in two
//! worktrees runs one at a time while different tests run side by side;
//! fleet names and addresses differ from the quickstart's, so they also run
//! beside a quickstart fleet the operator left up. The sample app's
//! wheelhouse is built once into `target/sitec-test-cache`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

type TestResult = Result<(), Box<dyn std::error::Error>>;

use common::exclusive;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A spec in a scratch folder (with the sample app beside it), its fleet
/// taken down when dropped.
struct Fleet {
    dir: tempfile::TempDir,
    spec: PathBuf,
}

impl Fleet {
    fn new(name: &str, text: &str) -> Result<Self, Box<dyn std::error::Error>> {
        Self::booted(name, text, &[])
    }

    /// `new`, with more arguments for `fleet up` (a bridge and subnet of
    /// the fleet's own, so hosts named as other tests' run beside them).
    fn booted(
        name: &str,
        text: &str,
        up_args: &[&str],
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let dir = tempfile::Builder::new().prefix("sitec-apply-").tempdir()?;
        let status = Command::new("cp")
            .arg("-a")
            .arg(repo().join("examples/apps"))
            .arg(repo().join("examples/tls"))
            .arg(dir.path())
            .status()?;
        assert!(status.success(), "copying the sample apps and certificates");
        let spec = dir.path().join(format!("{name}.site"));
        std::fs::write(&spec, text)?;
        let fleet = Self { dir, spec };
        common::take_down_leftover_fleet(name)?;
        let up = fleet.sitec_with(&["fleet", "up"], up_args);
        assert!(up.status.success(), "fleet up: {}", text_of(&up));
        Ok(fleet)
    }

    /// `sitec COMMAND... SPEC REST...`, not started yet.
    fn command(&self, command_words: &[&str], rest: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sitec"));
        command
            .args(command_words)
            .arg(&self.spec)
            .args(rest)
            .env("SITEC_CACHE", repo().join("target/sitec-test-cache"))
            .stdin(Stdio::null());
        command
    }

    /// Runs `sitec COMMAND... SPEC REST...`.
    fn sitec_with(&self, command_words: &[&str], rest: &[&str]) -> Output {
        self.command(command_words, rest)
            .output()
            .expect("sitec runs")
    }

    /// Runs `sitec ARGS... SPEC` with the flags after the spec.
    fn sitec(&self, args: &[&str]) -> Output {
        let words = args.iter().take_while(|a| !a.starts_with('-')).count();
        self.sitec_with(&args[..words], &args[words..])
    }

    /// `sitec set SPEC APP KEY=VALUE`.
    fn set(&self, app: &str, assignment: &str) {
        let out = self.sitec_with(&["set"], &[app, assignment]);
        assert!(out.status.success(), "sitec set: {}", text_of(&out));
    }

    fn apply(&self) -> Output {
        self.sitec(&["apply", "--yes"])
    }

    fn write_spec(&self, text: &str) {
        std::fs::write(&self.spec, text).expect("spec written");
    }

    fn address(&self, host: &str) -> String {
        let status = self.sitec(&["fleet", "status"]);
        String::from_utf8_lossy(&status.stdout)
            .lines()
            .find_map(|l| {
                let mut words = l.split_whitespace();
                (words.next() == Some(host)).then(|| words.next().map(str::to_string))?
            })
            .unwrap_or_else(|| panic!("{host} has no address: {}", text_of(&status)))
    }

    /// Runs a shell command on a host over the fleet's ssh config.
    fn ssh(&self, host: &str, script: &str) -> Output {
        let config = self
            .dir
            .path()
            .join(".fleet")
            .join(self.name())
            .join("ssh_config");
        Command::new("ssh")
            .arg("-F")
            .arg(config)
            .arg(host)
            .arg(script)
            .stdin(Stdio::null())
            .output()
            .expect("ssh runs")
    }

    /// Runs a command inside a host without ssh (nsenter into its init).
    fn inside(&self, host: &str, script: &str) -> Output {
        let state = self
            .dir
            .path()
            .join(".fleet")
            .join(self.name())
            .join("fleet.json");
        let state: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&state).expect("fleet.json"))
                .expect("fleet.json parses");
        let nspawn = state["hosts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|h| h["name"] == host)
            .and_then(|h| h["pid"].as_u64())
            .expect("the host's nspawn pid");
        let children = std::fs::read_to_string(format!("/proc/{nspawn}/task/{nspawn}/children"))
            .expect("nspawn's children");
        let init = children
            .split_whitespace()
            .next()
            .expect("the host's init")
            .to_string();
        Command::new("nsenter")
            .args(["-t", &init, "-a", "sh", "-c", script])
            .stdin(Stdio::null())
            .output()
            .expect("nsenter runs")
    }

    /// The operator's end of the host's veth (the `vb-…` link on the
    /// fleet's bridge): setting it down cuts the host off without a reset.
    fn outer_link(&self, host: &str) -> String {
        let peer = self.inside(host, "cat /sys/class/net/host0/iflink");
        let index = String::from_utf8_lossy(&peer.stdout).trim().to_string();
        common::link_with_index(&index)
    }

    /// `sitec apply --yes`, cutting `link` as soon as the plan is printed
    /// (every master is open by then; balancers are applied last). Gives up
    /// (killing the apply) after three minutes. The exit status and output.
    fn apply_cutting_after_plan(&self, link: &str) -> (std::process::ExitStatus, String) {
        use std::io::BufRead;
        let mut child = self
            .command(&["apply"], &["--yes"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sitec runs");
        let pid = child.id();
        // Kills the apply unless told it finished (or the test is gone).
        let (finished, wait) = std::sync::mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                wait.recv_timeout(Duration::from_secs(180))
            {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        });
        let mut stderr = child.stderr.take().expect("stderr");
        let errors = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
            text
        });
        let mut text = String::new();
        let mut cut = false;
        for line in std::io::BufReader::new(child.stdout.take().expect("stdout")).lines() {
            let Ok(line) = line else { break };
            if !cut && line.starts_with("Plan: ") {
                let down = Command::new("ip")
                    .args(["link", "set", link, "down"])
                    .output()
                    .expect("ip runs");
                assert!(down.status.success(), "{}", text_of(&down));
                cut = true;
            }
            text.push_str(&line);
            text.push('\n');
        }
        let status = child.wait().expect("sitec finishes");
        let _ = finished.send(());
        let _ = watchdog.join();
        text.push_str(&errors.join().unwrap_or_default());
        assert!(cut, "the plan was printed: {text}");
        (status, text)
    }

    fn name(&self) -> String {
        self.spec
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The plan as JSON.
    fn plan(&self) -> serde_json::Value {
        let out = self.sitec(&["plan", "--json"]);
        assert!(out.status.success(), "plan: {}", text_of(&out));
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("plan JSON: {e}: {}", text_of(&out)))
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let down = self.sitec(&["fleet", "down"]);
        if !down.status.success() {
            eprintln!("fleet down failed: {}", text_of(&down));
        }
    }
}

fn text_of(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// GET http://ADDRESS/PATH with a Host header; the body, or the error.
fn get(address: &str, host: &str, path: &str) -> Result<String, String> {
    curl(
        Command::new("curl")
            .args(["-H", &format!("Host: {host}")])
            .arg(format!("http://{address}{path}")),
    )
}

/// The body `curl -fsS --max-time 10` (and `command`'s arguments) fetches,
/// or its error.
fn curl(command: &mut Command) -> Result<String, String> {
    let out = command
        .args(["-fsS", "--max-time", "10"])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `https://NAME/PATH` through the balancer at `address`, trusting only the
/// quickstart's test CA (`examples/tls`).
fn https_get(address: &str, name: &str, path: &str) -> Result<String, String> {
    curl(
        Command::new("curl")
            .arg("--cacert")
            .arg(repo().join("examples/tls/ca.pem"))
            .arg("--resolve")
            .arg(format!("{name}:443:{address}"))
            .arg(format!("https://{name}{path}")),
    )
}

/// `(id, action)` of every change of a host in a JSON plan.
fn changes(plan: &serde_json::Value, host: &str) -> Vec<(String, String)> {
    plan["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h["host"] == host)
        .flat_map(|h| h["changes"].as_array().cloned().unwrap_or_default())
        .map(|c| {
            (
                c["id"].as_str().unwrap_or("").to_string(),
                c["action"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn services(plan: &serde_json::Value, host: &str) -> Vec<(String, String)> {
    plan["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h["host"] == host)
        .flat_map(|h| h["services"].as_array().cloned().unwrap_or_default())
        .map(|s| {
            (
                s["id"].as_str().unwrap_or("").to_string(),
                s["action"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Waits (up to 30 seconds: gunicorn replaces its workers on a reload)
/// until the blog's front page through `address` shows `text`.
fn serves(address: &str, text: &str) {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let page = get(address, "blog.localhost", "/");
        if page.as_deref().is_ok_and(|p| p.contains(text)) {
            return;
        }
        assert!(
            Instant::now() < until,
            "`{text}` never showed through {address}: {page:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `text` in single quotes for sh.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// The sha256 of a local file, by `sha256sum`.
fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum runs");
    assert!(out.status.success(), "sha256sum {}", path.display());
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// What one resource of `resources.json` should look like on its host, and
/// the shell that prints what it does look like (one line each, the same
/// shape): files with owner, group, mode and the sha256 of the file
/// `sitec render` wrote under `rendered`; folders with owner, group and
/// mode; symlinks with their target; services with `systemctl`'s states;
/// users and packages that they exist. Other kinds are left to the app
/// answering.
fn expected_and_probe(resource: &serde_json::Value, rendered: &Path) -> Option<(String, String)> {
    let text = |key: &str| resource[key].as_str().unwrap_or_default().to_string();
    let path = text("path");
    let q = quoted(&path);
    // `0640` as `stat -c %a` prints it: 640.
    let mode = || u32::from_str_radix(&text("mode"), 8).map_or(text("mode"), |m| format!("{m:o}"));
    let stat = format!("stat -c '%U %G %a' -- {q}");
    Some(match text("kind").as_str() {
        "file" if resource["absent"] == true => (
            format!("{path} absent"),
            format!("if test -e {q}; then echo {q} present; else echo {q} absent; fi"),
        ),
        "file" => {
            let local = rendered.join(path.trim_start_matches('/'));
            assert!(local.is_file(), "render wrote no {}", local.display());
            (
                format!(
                    "{path} {} {} {} {}",
                    text("owner"),
                    text("group"),
                    mode(),
                    sha256sum(&local)
                ),
                format!("echo {q} $({stat}) $(sha256sum < {q} | cut -d' ' -f1)"),
            )
        }
        "directory" => (
            format!("{path} {} {} {}", text("owner"), text("group"), mode()),
            format!("echo {q} $({stat})"),
        ),
        "symlink" => (
            format!("{path} -> {}", text("target")),
            format!("echo {q} '->' $(readlink -- {q})"),
        ),
        "service" => {
            let name = text("name");
            let running = if resource["running"] == true {
                "active"
            } else {
                "inactive"
            };
            // `is-enabled` says `static`, `alias`... for units enabled otherwise.
            let (enabled, enabled_probe) = if resource["enabled"] == true {
                let probe = format!(
                    "$(case $(systemctl is-enabled {name}) in \
                     enabled|static|alias|indirect|generated|enabled-runtime) echo enabled;; \
                     *) echo disabled;; esac)"
                );
                ("enabled", probe)
            } else {
                ("any", "any".to_string())
            };
            (
                format!("{name} {running} {enabled}"),
                format!("echo {name} $(systemctl is-active {name}) {enabled_probe}"),
            )
        }
        "user" => {
            let name = text("name");
            match resource["uid"].as_u64() {
                // A fixed uid: the user and its group hold it.
                Some(uid) => (
                    format!("user {name} {uid}:{uid}"),
                    format!("echo user {name} $(id -u {name}):$(id -g {name})"),
                ),
                None => (
                    format!("user {name}"),
                    format!("id -u {name} >/dev/null && echo user {name}"),
                ),
            }
        }
        "package" => {
            let name = text("name");
            (
                format!("package {name} installed"),
                format!("echo package {name} $(dpkg-query -W -f='${{db:Status-Status}}' {name})"),
            )
        }
        _ => return None,
    })
}

/// Every host holds what `sitec render` writes for it (`expected_and_probe`),
/// read over ssh, one round trip per host. Neither `plan` nor
/// `host::assess` takes part: what they judge together cannot vouch for
/// itself here.
fn assert_hosts_hold_the_rendered_state(fleet: &Fleet) {
    let out = fleet.dir.path().join("rendered");
    let _ = std::fs::remove_dir_all(&out);
    let rendered = fleet.sitec_with(&["render"], &["--out", &out.to_string_lossy()]);
    assert!(rendered.status.success(), "render: {}", text_of(&rendered));
    let mut hosts: Vec<PathBuf> = std::fs::read_dir(&out)
        .expect("rendered hosts")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    hosts.sort();
    assert!(!hosts.is_empty(), "render wrote no host");
    for dir in hosts {
        let host = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let resources: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("resources.json")).expect("resources.json"),
        )
        .expect("resources.json parses");
        let (expected, probes): (Vec<String>, Vec<String>) = resources["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| expected_and_probe(r, &dir))
            .unzip();
        let seen = fleet.ssh(&host, &probes.join("\n"));
        let seen: Vec<String> = String::from_utf8_lossy(&seen.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        let differing: Vec<String> = (0..expected.len().max(seen.len()))
            .map(|i| (expected.get(i), seen.get(i)))
            .filter(|(want, found)| want != found)
            .map(|(want, found)| {
                format!(
                    "  want `{}`, found `{}`",
                    want.map_or("", |w| w),
                    found.map_or("", |f| f)
                )
            })
            .collect();
        assert!(
            differing.is_empty(),
            "{host} does not hold what render wrote:\n{}",
            differing.join("\n")
        );
    }
}

fn assert_no_changes(fleet: &Fleet) {
    let plan = fleet.plan();
    assert_eq!(
        plan["summary"]["hosts_changing"], 0,
        "expected no changes: {plan:#}"
    );
    let again = fleet.apply();
    assert!(again.status.success(), "{}", text_of(&again));
    assert!(
        text_of(&again).contains("No changes"),
        "{}",
        text_of(&again)
    );
}

/// The quickstart spec, made to run beside the operator's own quickstart
/// fleet (the README's first command leaves it up): the test boots it as
/// fleet `qstest` and gives its hosts addresses above the automatic range
/// (.10 to .250), which no host without an `address` is ever given.
fn quickstart_text() -> String {
    let text = std::fs::read_to_string(repo().join("examples/quickstart.site"))
        .expect("quickstart readable");
    with_addresses(text, &[("lb1", 251), ("run1", 252), ("db1", 253)])
}

/// `text` with each host `(name, N)` at address 10.77.0.N.
fn with_addresses(text: String, hosts: &[(&str, u8)]) -> String {
    with_addresses_in("10.77.0", text, hosts)
}

/// `text` with each host `(name, N)` at address `PREFIX.N`.
fn with_addresses_in(prefix: &str, mut text: String, hosts: &[(&str, u8)]) -> String {
    for (host, last) in hosts {
        let declared = format!("host {host} {{ provider = local ");
        assert!(text.contains(&declared), "the spec declares {host}");
        text = text.replace(
            &declared,
            &format!("{declared} address = \"{prefix}.{last}\" "),
        );
    }
    text
}

/// A role of your own (#21): a daemon whose unit and whose config come from
/// templates beside the spec, the config reading the app's secret key
/// (`secrets = true`). On run1 the config is root's, 0640 and holds the
/// value; the daemon starts only if its environment has it; a plan of a
/// change to the config shows the key by name, never its value; without
/// the role, it goes.
fn a_daemon_of_your_own_gets_its_secret_and_plans_hide_it(fleet: &Fleet) -> TestResult {
    let templates = fleet.dir.path().join("templates");
    std::fs::create_dir_all(&templates)?;
    std::fs::write(
        templates.join("keeper.service.hbs"),
        "[Unit]\nDescription=Keeps {{app.name}}'s key on {{host.name}}\n\n[Service]\nType=exec\nDynamicUser=yes\nEnvironmentFile=/etc/keeper/{{app.name}}.env\nExecStart=/bin/sh -c 'test -n \"$KEY\" && exec sleep infinity'\n\n[Install]\nWantedBy=multi-user.target\n",
    )?;
    let env = templates.join("keeper.env.hbs");
    std::fs::write(&env, "KEY={{app.settings.SECRET_KEY}}\n")?;
    let role = "\nrole keeper {\n  directory \"/etc/keeper\" {}\n  each app {\n    file \"/etc/keeper/{app}.env\" {\n      template = \"./templates/keeper.env.hbs\"\n      secrets = true\n      notify = [\"service:keeper-{app}\"]\n    }\n    service \"keeper-{app}\" {\n      unit = \"./templates/keeper.service.hbs\"\n      requires = [\"file:/etc/keeper/{app}.env\"]\n    }\n  }\n}\n";
    fleet.write_spec(
        &(quickstart_text().replace("roles = [runner]", "roles = [runner, keeper]") + role),
    );
    let applied = fleet.apply();
    assert!(applied.status.success(), "{}", text_of(&applied));
    let secrets = std::fs::read_to_string(fleet.dir.path().join("qstest.secrets.toml"))?;
    let secrets: toml::Table = secrets.parse()?;
    let key = secrets
        .get("blog.secret_key")
        .and_then(|v| v.as_str())
        .ok_or("no blog.secret_key")?;
    let on_host = fleet.ssh(
        "run1",
        "stat -c '%U %G %a' /etc/keeper/blog.env && cat /etc/keeper/blog.env && systemctl is-active keeper-blog",
    );
    assert!(on_host.status.success(), "{}", text_of(&on_host));
    assert_eq!(
        String::from_utf8_lossy(&on_host.stdout).trim(),
        format!("root root 640\nKEY={key}\nactive"),
        "the config and the daemon on run1"
    );
    std::fs::write(&env, "KEY={{app.settings.SECRET_KEY}}\nLEVEL=2\n")?;
    let plan = fleet.plan();
    let shown = plan.to_string();
    assert!(
        shown.contains("+LEVEL=2") && shown.contains("<secret blog.secret_key>"),
        "{plan:#}"
    );
    for value in secrets.values().filter_map(|v| v.as_str()) {
        assert!(!shown.contains(value), "a secret's value in the plan");
    }
    fleet.write_spec(&quickstart_text());
    let removed = fleet.apply();
    assert!(removed.status.success(), "{}", text_of(&removed));
    assert_no_changes(fleet);
    Ok(())
}

#[test]
fn quickstart_converges_serves_and_changes_only_what_the_spec_changes() -> TestResult {
    if !common::can_boot() {
        return Ok(());
    }
    let _lock = exclusive("qstest")?;
    let fleet = Fleet::new("qstest", &quickstart_text())?;

    let first = fleet.apply();
    assert!(first.status.success(), "first apply: {}", text_of(&first));
    let lb = fleet.address("lb1");
    // No polling: apply returns once the balancer has the runner in
    // rotation (`apply::wait_serving`), so the first request is served.
    let page = get(&lb, "blog.localhost", "/")?;
    assert!(
        page.contains("Hello from sitec") && page.contains("Hello from a runner"),
        "{page}"
    );
    let css = get(&lb, "blog.localhost", "/static/posts/blog.css")?;
    assert!(css.contains('{'), "the static file: {css}");
    // lb1 collects the fleet's logs: a request reaches `sitec logs`, from
    // run1's nginx and gunicorn (the app's lines; nginx logs no static
    // file) and from the balancer (lb1's).
    let (mut app_lines, mut lb_lines) = (String::new(), String::new());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline
        && !(app_lines.contains(" run1 ") && lb_lines.contains(" lb1 "))
    {
        get(&lb, "blog.localhost", "/?shipped")?;
        std::thread::sleep(std::time::Duration::from_millis(200));
        app_lines = text_of(&fleet.sitec_with(&["logs"], &["blog", "--grep", "shipped"]));
        lb_lines = text_of(&fleet.sitec_with(&["logs"], &["lb1", "--grep", "shipped"]));
    }
    assert!(
        app_lines.contains(" run1 ") && lb_lines.contains(" lb1 "),
        "sitec logs shows the request from run1 and lb1: {app_lines}\n{lb_lines}"
    );
    assert!(
        get(&lb, "anything.example", "/")?.contains("Hello from sitec"),
        "the `*` route"
    );
    // The app's `tls`: HTTPS at the balancer with the test certificate.
    let page = https_get(&lb, "blog.localhost", "/")?;
    assert!(page.contains("Hello from sitec"), "over https: {page}");
    assert_no_changes(&fleet);
    assert_hosts_hold_the_rendered_state(&fleet);

    // Hand-made drift of a file's mode (one holding the secret key), a
    // folder's mode and a file's owner: the next apply puts each back.
    for (host, change) in [
        (
            "run1",
            "chmod 0644 /etc/sitec/apps/blog/python/sitec_settings.py",
        ),
        ("run1", "chmod 0700 /srv/sitec/apps/blog"),
        ("lb1", "chown nobody /etc/sitec/tls/blog.key"),
    ] {
        let changed = fleet.ssh(host, change);
        assert!(changed.status.success(), "{change}: {}", text_of(&changed));
    }
    let put_back = fleet.apply();
    assert!(put_back.status.success(), "{}", text_of(&put_back));
    assert_hosts_hold_the_rendered_state(&fleet);
    serves(&lb, "Hello from sitec");

    rotating_bus_keys_is_one_apply(&fleet)?;

    // A setting: only the settings file changes, only gunicorn reloads.
    fleet.set("blog", "SITE_TITLE=\"Changed by a test\"");
    let plan = fleet.plan();
    assert_eq!(
        changes(&plan, "run1"),
        [(
            "file:/etc/sitec/apps/blog/python/sitec_settings.py".to_string(),
            "change".to_string()
        )],
        "{plan:#}"
    );
    assert_eq!(
        services(&plan, "run1"),
        [("service:sitec-app-blog".to_string(), "reload".to_string())]
    );
    assert_eq!(plan["summary"]["hosts_changing"], 1);
    // The settings module holds the secret key: its diff shows the change
    // and the key's name, never its value.
    let diff = plan["hosts"]
        .as_array()
        .and_then(|hosts| hosts.iter().find(|h| h["host"] == "run1"))
        .and_then(|h| h["changes"][0]["diff"].as_str())
        .unwrap_or_default()
        .to_string();
    assert!(
        diff.contains("+SITE_TITLE = \"Changed by a test\"")
            && diff.contains("SECRET_KEY = \"<secret blog.secret_key>\""),
        "{diff}"
    );
    let secrets = std::fs::read_to_string(fleet.dir.path().join("qstest.secrets.toml"))?;
    let secrets: toml::Table = secrets.parse()?;
    for value in secrets.values().filter_map(|v| v.as_str()) {
        assert!(
            !diff.contains(value),
            "a secret's value in the plan: {diff}"
        );
    }
    let applied = fleet.apply();
    assert!(applied.status.success(), "{}", text_of(&applied));
    serves(&lb, "Changed by a test");
    assert_no_changes(&fleet);

    // A config nginx rejects is never loaded, and put back as it was.
    let broken = quickstart_text().replace("roles = [runner]", "roles = [runner, broken]")
        + "\nrole broken {\n  file \"/etc/nginx/sites-enabled/zz-broken.conf\" {\n    content = \"this is not nginx;\"\n    notify = [\"service:nginx\"]\n  }\n}\n";
    fleet.write_spec(&broken);
    let rejected = fleet.apply();
    let text = text_of(&rejected);
    assert!(!rejected.status.success(), "{text}");
    assert!(
        text.contains("nginx -t") && text.contains("zz-broken.conf"),
        "the error names the check and the file: {text}"
    );
    assert!(
        get(&lb, "blog.localhost", "/")?.contains("Changed by a test"),
        "still serving"
    );
    let gone = fleet.ssh(
        "run1",
        "test ! -e /etc/nginx/sites-enabled/zz-broken.conf && nginx -t",
    );
    assert!(
        gone.status.success(),
        "the rejected file was put back: {}",
        text_of(&gone)
    );
    fleet.write_spec(&quickstart_text());
    let fixed = fleet.apply();
    assert!(fixed.status.success(), "{}", text_of(&fixed));
    assert_no_changes(&fleet);

    // A service that dies as it starts fails the apply, with its journal,
    // and so does one in a crash loop that systemd keeps restarting (it
    // looks active at most instants); the spec without them takes them
    // away again.
    let dying = quickstart_text().replace("roles = [runner]", "roles = [runner, dying]")
        + "\nrole dying {\n  file \"/etc/systemd/system/dying.service\" {\n    content = \"[Service]\\nType=exec\\nExecStart=/bin/sh -c 'echo dying on purpose; exit 3'\\n\"\n    notify = [\"service:dying\"]\n  }\n  service dying { requires = [\"file:/etc/systemd/system/dying.service\"] }\n"
        + "  file \"/etc/systemd/system/looping.service\" {\n    content = \"[Unit]\\nStartLimitIntervalSec=0\\n[Service]\\nType=exec\\nExecStart=/bin/sh -c 'sleep 0.05; echo looping on purpose; exit 1'\\nRestart=always\\nRestartSec=30ms\\n\"\n    notify = [\"service:looping\"]\n  }\n  service looping { requires = [\"file:/etc/systemd/system/looping.service\"] }\n}\n";
    fleet.write_spec(&dying);
    let died = fleet.apply();
    let text = text_of(&died);
    assert!(!died.status.success(), "{text}");
    assert!(
        text.contains("dying.service") && text.contains("dying on purpose"),
        "the error names the unit and shows its journal: {text}"
    );
    assert!(
        text.contains("looping.service") && text.contains("looping on purpose"),
        "a crash loop is a failed start too: {text}"
    );
    serves(&lb, "Changed by a test");
    fleet.write_spec(&quickstart_text());
    let fixed = fleet.apply();
    assert!(fixed.status.success(), "{}", text_of(&fixed));
    assert_no_changes(&fleet);

    a_daemon_of_your_own_gets_its_secret_and_plans_hide_it(&fleet)?;

    // A saved plan applies exactly, and is refused by a host that changed
    // since (here: a managed file edited by hand, which the plan also flags).
    fleet.set("blog", "SITE_TITLE=\"From a saved plan\"");
    let saved = fleet.dir.path().join("saved.plan");
    let planned = fleet.sitec_with(&["plan"], &["--out", &saved.to_string_lossy()]);
    assert!(planned.status.success(), "{}", text_of(&planned));
    let mode = std::fs::metadata(&saved)?.permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600,
        "a saved plan holds secrets"
    );
    let edited = fleet.ssh(
        "run1",
        "echo '# by hand' >> /etc/sitec/apps/blog/gunicorn.conf.py",
    );
    assert!(edited.status.success());
    let refused = Command::new(env!("CARGO_BIN_EXE_sitec"))
        .arg("apply")
        .arg(&saved)
        .arg("--yes")
        .output()?;
    assert!(!refused.status.success(), "{}", text_of(&refused));
    assert!(
        text_of(&refused).contains("changed since the plan"),
        "{}",
        text_of(&refused)
    );
    let drift = fleet.plan();
    let drifted: Vec<&serde_json::Value> = drift["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|h| h["changes"].as_array().into_iter().flatten())
        .filter(|c| c["drifted"] == true)
        .collect();
    assert_eq!(
        drifted.len(),
        1,
        "the edited file is flagged as drift: {drift:#}"
    );
    let planned = fleet.sitec_with(&["plan"], &["--out", &saved.to_string_lossy()]);
    assert!(planned.status.success(), "{}", text_of(&planned));
    let exact = Command::new(env!("CARGO_BIN_EXE_sitec"))
        .arg("apply")
        .arg(&saved)
        .arg("--yes")
        .output()?;
    assert!(exact.status.success(), "{}", text_of(&exact));
    serves(&lb, "From a saved plan");
    assert_no_changes(&fleet);

    // An unreachable host fails alone; the next apply converges it.
    fleet.set("blog", "SITE_TITLE=\"While lb1 was away\"");
    let away = fleet.ssh("lb1", "systemctl stop ssh.service");
    assert!(away.status.success(), "{}", text_of(&away));
    let partial = fleet.apply();
    let text = text_of(&partial);
    assert!(!partial.status.success(), "{text}");
    assert!(
        text.contains("lb1") && text.contains("unreachable"),
        "{text}"
    );
    serves(&lb, "While lb1 was away");
    let back = fleet.inside("lb1", "systemctl start ssh.service");
    assert!(back.status.success(), "{}", text_of(&back));
    let healed = fleet.apply();
    assert!(healed.status.success(), "{}", text_of(&healed));
    assert_no_changes(&fleet);

    // A host that vanishes mid-apply (its network cut once the plan is
    // made, so its master is open and then hears nothing, not even a
    // reset) fails alone after ssh's keepalives give up; the others
    // converge, and the next apply converges it.
    fleet.set("blog", "SITE_TITLE=\"While lb1 was cut off\"");
    // lb1 gets work too: its config edited by hand, which the plan puts back.
    let edited = fleet.ssh("lb1", "echo '# by hand' >> /etc/sitec/balancer.toml");
    assert!(edited.status.success(), "{}", text_of(&edited));
    let veth = fleet.outer_link("lb1");
    let started = Instant::now();
    let (status, text) = fleet.apply_cutting_after_plan(&veth);
    let took = started.elapsed();
    let up = Command::new("ip")
        .args(["link", "set", &veth, "up"])
        .output()?;
    assert!(up.status.success(), "{}", text_of(&up));
    assert!(!status.success(), "{text}");
    assert!(
        text.contains("lb1: lost the connection"),
        "the failure names the host and says why: {text}"
    );
    assert!(
        took < Duration::from_secs(90),
        "a vanished host costs ssh's keepalives, not TCP's timeout: {took:?}\n{text}"
    );
    let changed = fleet.ssh(
        "run1",
        "grep -l 'While lb1 was cut off' /etc/sitec/apps/blog/python/sitec_settings.py",
    );
    assert!(
        !String::from_utf8_lossy(&changed.stdout).trim().is_empty(),
        "the other hosts converged: {text}"
    );
    eprintln!("a vanished host: the apply failed after {took:?}:\n{text}");
    let healed = fleet.apply();
    assert!(healed.status.success(), "{}", text_of(&healed));
    serves(&lb, "While lb1 was cut off");
    assert_no_changes(&fleet);

    // Applies killed at random points: the next one always converges, and
    // no host holds a half-written file.
    let mut seed = u64::from(std::process::id());
    for round in 0..10 {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        fleet.set("blog", &format!("SITE_TITLE=\"Round {round}\""));
        let mut child = fleet
            .command(&["apply"], &["--yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        std::thread::sleep(Duration::from_millis(300 + (seed >> 33) % 2500));
        let _ = child.kill();
        let _ = child.wait();
        let next = fleet.apply();
        assert!(next.status.success(), "round {round}: {}", text_of(&next));
        assert_no_changes(&fleet);
        for host in ["lb1", "run1", "db1"] {
            let tmp = fleet.ssh(host, "find /etc /srv /var/lib/sitec /usr/local/lib/sitec -name '*.sitec-tmp*' 2>/dev/null");
            assert_eq!(
                String::from_utf8_lossy(&tmp.stdout).trim(),
                "",
                "round {round}: half-written files on {host}"
            );
        }
        serves(&lb, &format!("Round {round}"));
    }
    assert_hosts_hold_the_rendered_state(&fleet);
    Ok(())
}

/// Six hosts: two balancers, two runners, a database and a Redis host; two
/// apps, one of them dropped later.
const SIX_HOSTS: &str = r#"use std/platform

provider local { kind = local }

host lbx1 { provider = local  roles = [balancer] }
host lbx2 { provider = local  roles = [balancer] }
host runx1 { provider = local  roles = [runner] }
host runx2 { provider = local  roles = [runner] }
host dbx1 { provider = local  roles = [postgres] }
host cachex1 { provider = local  roles = [redis, postgres] }

# Containers on one machine: one provider only.
checks { balancer_redundancy = off  replica_spread = off }

database main { engine = postgres  primary = dbx1  standby = cachex1 }
database cache { engine = redis  tier = dedicated  primary = cachex1 }

app blog {
  source = "apps/blog"
  python = "3.11"
  wsgi = "blog.wsgi:application"
  domains = ["blog.test"]
  replicas = 2
  databases { default = main  cache = cache }
  static "/static/" = "collected_static"
  settings { SITE_TITLE = "Blog on two runners"  SECRET_KEY = secret("blog.secret_key") }
  # Its broker and result backend are `cache` (REDIS_URL): /count round-trips.
  worker celery { command = "celery -A blog worker --concurrency 1" }
  # A scheduler runs once per app: on the leader alone.
  worker beat { command = "celery -A blog beat --schedule /tmp/celerybeat-schedule"  once = true }
}
"#;

/// cachex1's cluster is a copy of dbx1's and streams from it: the primary
/// lists it as a streaming standby, and the tables the blog's migrations
/// made on the primary are readable on the standby.
/// Deletes run1's, lb1's and the operator's bus key secrets (apply makes
/// new ones) and applies: run1's agent answers the new operator key under
/// its new key, and refuses the old operator key; the old host key no
/// longer answers; the balancer still serves, and plan has nothing left.
fn rotating_bus_keys_is_one_apply(fleet: &Fleet) -> TestResult {
    use sitec::bus::keys::derive;
    let path = fleet.dir.path().join("qstest.secrets.toml");
    let values =
        |text: &str| -> Result<toml::Table, Box<dyn std::error::Error>> { Ok(text.parse()?) };
    let text = std::fs::read_to_string(&path)?;
    let old = values(&text)?;
    let mut doc: toml_edit::DocumentMut = text.parse()?;
    for name in ["bus.host.run1", "bus.balancer.lb1", "bus.operator"] {
        assert!(doc.remove(name).is_some(), "{name} in the secrets file");
    }
    std::fs::write(&path, doc.to_string())?;
    let applied = fleet.apply();
    assert!(applied.status.success(), "{}", text_of(&applied));
    let new = values(&std::fs::read_to_string(&path)?)?;
    let key = |t: &toml::Table, name: &str| derive(t[name].as_str().unwrap_or_default());
    let control = format!("tcp://{}:7701", fleet.address("run1"));
    let ask = |server: &sitec::bus::KeyPair, operator: &sitec::bus::KeyPair, wait: u64| {
        sitec::bus::control::Client::connect(&control, &server.public, operator).and_then(
            |mut c| {
                c.ask(
                    &serde_json::json!({"op": "ping"}),
                    Duration::from_secs(wait),
                )
            },
        )
    };
    let (new_run1, new_operator) = (key(&new, "bus.host.run1"), key(&new, "bus.operator"));
    let pong = ask(&new_run1, &new_operator, 15)?;
    assert_eq!(pong["host"], "run1", "{pong}");
    assert!(
        ask(&new_run1, &key(&old, "bus.operator"), 3).is_err(),
        "the old operator key was obeyed"
    );
    assert!(
        ask(&key(&old, "bus.host.run1"), &new_operator, 3).is_err(),
        "run1 still speaks with its old key"
    );
    serves(&fleet.address("lb1"), "Hello from sitec");
    assert_no_changes(fleet);
    Ok(())
}

fn standby_streams(fleet: &Fleet) {
    let psql = |host: &str, db: &str, sql: &str| {
        let out = fleet.ssh(
            host,
            &format!("runuser -u postgres -- psql -d {db} -XAtc \"{sql}\""),
        );
        text_of(&out)
    };
    let mut seen = String::new();
    for _ in 0..50 {
        seen = psql(
            "dbx1",
            "postgres",
            "select application_name || ' ' || state from pg_stat_replication",
        );
        if seen.contains("cachex1 streaming") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(
        seen.contains("cachex1 streaming"),
        "pg_stat_replication on dbx1: {seen}"
    );
    let standby = psql(
        "cachex1",
        "blog",
        "select pg_is_in_recovery(), count(*) > 0 from django_migrations",
    );
    assert!(standby.contains("t|t"), "on the standby: {standby}");
}

/// A request through the balancer enqueues a task on the app's Redis, a
/// runner's Celery worker runs it against Postgres, and the page shows the
/// answer and the worker's name: a task that ran in gunicorn's own process
/// (no broker) would say "this process". Workers start with the app, so the
/// first requests may wait for one (the page answers 504 then).
fn celery_task_round_trips(fleet: &Fleet) -> TestResult {
    let balancer = fleet.address("lbx1");
    let mut last = Err(String::new());
    let answered = common::eventually(Duration::from_secs(60), || {
        last = get(&balancer, "blog.test", "/count");
        matches!(&last, Ok(page) if page.contains("counted by celery@"))
    });
    assert!(answered, "/count through lbx1: {last:?}");
    let page = last?;
    assert!(
        page.starts_with("2 posts, counted by celery@runx"),
        "the worker counted the seeded posts: {page}"
    );
    // `once = true`: celery beat runs on one runner, the other has no unit.
    let beat = |host: &str| {
        let out = fleet.ssh(
            host,
            "systemctl is-active sitec-app-blog-worker-beat; \
             test -e /etc/systemd/system/sitec-app-blog-worker-beat.service && echo unit",
        );
        text_of(&out).trim().to_string()
    };
    let mut seen = [beat("runx1"), beat("runx2")];
    seen.sort();
    assert_eq!(seen, ["active\nunit", "inactive"], "beat on runx1, runx2");
    Ok(())
}

const SECOND_APP: &str = r#"
app notes {
  source = "apps/blog"
  python = "3.11"
  wsgi = "blog.wsgi:application"
  domains = ["notes.test"]
  databases { default = main }
  static "/static/" = "collected_static"
  settings { SITE_TITLE = "Notes"  SECRET_KEY = secret("notes.secret_key") }
}
"#;

#[test]
fn six_hosts_serve_through_every_balancer_and_prune_a_dropped_app() -> TestResult {
    if !common::can_boot() {
        return Ok(());
    }
    let _lock = exclusive("sixhosts")?;
    let fleet = Fleet::new("sixhosts", &format!("{SIX_HOSTS}{SECOND_APP}"))?;
    let first = fleet.apply();
    assert!(first.status.success(), "first apply: {}", text_of(&first));
    assert_hosts_hold_the_rendered_state(&fleet);
    standby_streams(&fleet);
    celery_task_round_trips(&fleet)?;
    for lb in ["lbx1", "lbx2"] {
        let address = fleet.address(lb);
        assert!(
            get(&address, "blog.test", "/")?.contains("Blog on two runners"),
            "blog through {lb}"
        );
        assert!(
            get(&address, "notes.test", "/")?.contains("Notes"),
            "notes through {lb}"
        );
    }
    assert_no_changes(&fleet);

    // Drop `notes`: its files, service, release and user go; blog stays.
    fleet.write_spec(SIX_HOSTS);
    let plan = fleet.plan();
    let removed: Vec<String> = ["runx1", "runx2"]
        .iter()
        .flat_map(|h| changes(&plan, h))
        .filter(|(_, action)| action == "remove")
        .map(|(id, _)| id)
        .collect();
    assert!(
        removed.iter().any(|id| id == "service:sitec-app-notes"),
        "{plan:#}"
    );
    assert!(
        removed
            .iter()
            .any(|id| id == "file:/etc/nginx/sites-enabled/sitec-notes.conf"),
        "{plan:#}"
    );
    let pruned = fleet.apply();
    assert!(pruned.status.success(), "{}", text_of(&pruned));
    let runner = fleet.sitec(&["plan"]);
    assert!(
        text_of(&runner).contains("No changes"),
        "{}",
        text_of(&runner)
    );
    let left = fleet.ssh(
        "runx1",
        "test ! -e /etc/nginx/sites-enabled/sitec-notes.conf && test ! -e /srv/sitec/apps/notes/current && ! id app-notes && ! systemctl is-active sitec-app-notes",
    );
    assert!(left.status.success(), "notes pruned: {}", text_of(&left));
    assert_hosts_hold_the_rendered_state(&fleet);
    for lb in ["lbx1", "lbx2"] {
        assert!(
            get(&fleet.address(lb), "blog.test", "/")?.contains("Blog on two runners"),
            "blog through {lb}"
        );
    }
    blog_stopped_on_one_runner_is_held_out_by_heartbeats(&fleet)?;
    Ok(())
}

/// runx1's gunicorn stops: its nginx still answers (with 502s), so only its
/// agent's heartbeat can tell the balancers; they hold runx1 out, no
/// request fails, and it is back once the app runs again.
fn blog_stopped_on_one_runner_is_held_out_by_heartbeats(fleet: &Fleet) -> TestResult {
    // Whether `lb`'s balancer logs `needle` within 10 s.
    let hears = |lb: &str, needle: &str| {
        common::eventually(Duration::from_secs(10), || {
            let out = fleet.ssh(lb, "journalctl -u sitec-balancer --no-pager -o cat");
            text_of(&out).contains(needle)
        })
    };
    let stop = fleet.ssh("runx1", "systemctl stop sitec-app-blog");
    assert!(stop.status.success(), "{}", text_of(&stop));
    for lb in ["lbx1", "lbx2"] {
        assert!(
            hears(lb, "runx1's agent says blog is not running"),
            "{lb} never heard that blog stopped on runx1"
        );
        for _ in 0..10 {
            get(&fleet.address(lb), "blog.test", "/")
                .map_err(|e| format!("blog through {lb} with runx1 held out: {e}"))?;
        }
    }
    let start = fleet.ssh("runx1", "systemctl start sitec-app-blog");
    assert!(start.status.success(), "{}", text_of(&start));
    for lb in ["lbx1", "lbx2"] {
        assert!(
            hears(lb, "runx1's agent says blog runs again"),
            "{lb} never heard that blog runs again on runx1"
        );
    }
    Ok(())
}

/// The quickstart on two runners (fleet `reltest`), keeping 3 releases.
fn two_runner_text() -> String {
    with_addresses(
        rolling_text(),
        &[("lb1", 241), ("run1", 242), ("run2", 243), ("db1", 244)],
    )
}

/// `sitec releases --json`: each runner's releases.
fn releases_of(fleet: &Fleet) -> serde_json::Value {
    let out = fleet.sitec_with(&["releases"], &["blog", "--json"]);
    assert!(out.status.success(), "sitec releases: {}", text_of(&out));
    serde_json::from_slice(&out.stdout).expect("releases JSON")
}

/// The release live on `host`, as `sitec releases --json` lists it.
fn live_release<'a>(releases: &'a serde_json::Value, host: &str) -> &'a serde_json::Value {
    (releases[host].as_array().into_iter().flatten())
        .find(|r| r["live"] == true)
        .unwrap_or_else(|| panic!("{host} has no live release: {releases:#}"))
}

/// The content hash (12 digits) of the release live on `host`.
fn live_on(releases: &serde_json::Value, host: &str) -> String {
    let digest = live_release(releases, host)["digest"].as_str();
    digest.unwrap_or_default()[..12].to_string()
}

/// The virtualenv (its path) the release live on `host` runs.
fn venv_on(releases: &serde_json::Value, host: &str) -> String {
    let venv = live_release(releases, host)["venv"].as_str();
    venv.unwrap_or_else(|| panic!("{host}'s live release runs no virtualenv: {releases:#}"))
        .to_string()
}

/// Whether the app's user imports `module` with the live release's virtualenv on `host`.
fn imports(fleet: &Fleet, host: &str, module: &str) -> bool {
    let script = format!(
        "runuser -u app-blog -- /srv/sitec/apps/blog/current/venv/bin/python -c 'import {module}'"
    );
    fleet.ssh(host, &script).status.success()
}

/// Replaces `old` with `new` in the sample blog's `file`.
fn edit(fleet: &Fleet, file: &str, old: &str, new: &str) -> TestResult {
    let path = fleet.dir.path().join("apps/blog").join(file);
    let text = std::fs::read_to_string(&path)?;
    assert!(text.contains(old), "{file} holds no {old:?}");
    std::fs::write(&path, text.replacen(old, new, 1))?;
    Ok(())
}

/// Waits (up to 30 s) until the page through the balancer does or does not
/// hold `text`; the last page otherwise.
fn page_turns(lb: &str, text: &str, holds: bool) -> Result<(), String> {
    let mut last = String::new();
    let turned = common::eventually(Duration::from_secs(30), || {
        last = get(lb, "blog.localhost", "/").unwrap_or_else(|e| e);
        last.contains(text) == holds
    });
    if turned {
        Ok(())
    } else {
        Err(format!(
            "the page should {}hold {text:?}: {last}",
            if holds { "" } else { "not " }
        ))
    }
}

#[test]
fn releases_switch_roll_back_and_survive_a_broken_one() -> TestResult {
    if !common::can_boot() {
        return Ok(());
    }
    let _lock = exclusive("reltest")?;
    let fleet = Fleet::new("reltest", &two_runner_text())?;
    let first = fleet.apply();
    assert!(first.status.success(), "first apply: {}", text_of(&first));
    let lb = fleet.address("lb1");
    page_turns(&lb, "Hello from sitec", true)?;
    let v1 = live_on(&releases_of(&fleet), "run1");
    let link = fleet.ssh(
        "run1",
        "readlink /srv/sitec/apps/blog/current; stat -c %U /srv/sitec/apps/blog",
    );
    let link = text_of(&link);
    assert!(
        link.starts_with("releases/") && link.contains(&v1) && link.ends_with("root\n"),
        "{link}"
    );

    // v2: a changed template, live on both runners; v1 stays kept.
    // Its static files too: each release serves its own.
    let app = fleet.dir.path().join("apps/blog/apps/posts");
    for (file, line) in [
        ("templates/posts/index.html", "<p>Release two</p>"),
        ("static/posts/blog.css", "/* release two */"),
    ] {
        let original = std::fs::read_to_string(app.join(file))?;
        std::fs::write(app.join(file), format!("{original}\n{line}\n"))?;
    }
    let second = fleet.apply();
    assert!(second.status.success(), "v2: {}", text_of(&second));
    page_turns(&lb, "Release two", true)?;
    let served = get(&lb, "blog.localhost", "/static/posts/blog.css")?;
    assert!(served.contains("release two"), "v2's static file: {served}");
    // The releases are root's alone; the app's user wrote only its outputs.
    let owners = fleet.ssh(
        "run1",
        "cd /srv/sitec/apps/blog && find releases ! -user root; echo --; \
         find output ! -user app-blog; echo --; readlink current/collected_static; \
         runuser -u app-blog -- touch current/manage.py 2>/dev/null && echo writable",
    );
    let owners = String::from_utf8_lossy(&owners.stdout).into_owned();
    let listed = releases_of(&fleet);
    let live = live_release(&listed, "run1")["id"]
        .as_str()
        .unwrap_or_default();
    let outputs = format!("--\n--\n../../output/{live}\n");
    assert_eq!(
        owners,
        outputs,
        "{}",
        text_of(&fleet.ssh("run1", "ls -lR /srv/sitec/apps/blog | head -50"))
    );
    let v2 = live_on(&listed, "run1");
    assert_eq!(live_on(&listed, "run2"), v2);
    assert_ne!(v1, v2);
    assert_eq!(
        listed["run2"].as_array().map(Vec::len),
        Some(2),
        "{listed:#}"
    );

    // Back to v1 without a build, runner by runner; the pin keeps plan quiet.
    let started = Instant::now();
    let back = fleet.sitec_with(&["rollback"], &["blog"]);
    assert!(back.status.success(), "rollback: {}", text_of(&back));
    page_turns(&lb, "Release two", false)?;
    let served = get(&lb, "blog.localhost", "/static/posts/blog.css")?;
    assert!(
        !served.contains("release two"),
        "v1's static file: {served}"
    );
    eprintln!(
        "rollback to v1 took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let listed = releases_of(&fleet);
    assert_eq!(
        (live_on(&listed, "run1"), live_on(&listed, "run2")),
        (v1.clone(), v1.clone())
    );
    let plan = fleet.sitec(&["plan"]);
    assert!(
        text_of(&plan).contains("is pinned by `sitec rollback`"),
        "{}",
        text_of(&plan)
    );
    assert_no_changes(&fleet);

    // Forward to v2 by its hash, then a v3 whose WSGI module fails to
    // import: the apply fails on the runners and v2 keeps serving.
    let forward = fleet.sitec_with(&["rollback"], &["blog", "--to", &v2]);
    assert!(
        forward.status.success(),
        "rollback --to: {}",
        text_of(&forward)
    );
    page_turns(&lb, "Release two", true)?;
    let wsgi = fleet.dir.path().join("apps/blog/blog/wsgi.py");
    let mut broken = std::fs::read_to_string(&wsgi)?;
    broken.push_str("\nraise RuntimeError(\"release three is broken\")\n");
    std::fs::write(&wsgi, broken)?;
    let third = fleet.apply();
    assert!(
        !third.status.success(),
        "a broken release applied: {}",
        text_of(&third)
    );
    assert!(
        text_of(&third).contains("release three is broken"),
        "{}",
        text_of(&third)
    );
    page_turns(&lb, "Release two", true)?;
    let listed = releases_of(&fleet);
    assert_eq!(
        (live_on(&listed, "run1"), live_on(&listed, "run2")),
        (v2.clone(), v2)
    );
    assert_eq!(
        listed["run1"].as_array().map(Vec::len),
        Some(2),
        "the broken one is gone: {listed:#}"
    );
    Ok(())
}

/// The quickstart with a second runner of the blog keeping 3 releases, and
/// no address: `fleet up` gives each host one of its own.
fn rolling_text() -> String {
    let text = std::fs::read_to_string(repo().join("examples/quickstart.site"))
        .expect("quickstart readable");
    let run1 = "host run1 { provider = local  roles = [runner] }";
    assert!(text.contains(run1), "{text}");
    let text = text.replace(
        run1,
        &format!("{run1}\nhost run2 {{ provider = local  roles = [runner] }}"),
    );
    text.replace(
        "  python = \"3.11\"\n",
        "  python = \"3.11\"\n  replicas = 2\n  releases = 3\n",
    )
}

/// A migration of the sample blog's posts, after `after`, running `code`
/// (the body of `def forward(apps, schema_editor):`).
fn add_migration(fleet: &Fleet, name: &str, after: &str, code: &str) -> TestResult {
    let text = format!(
        "from django.db import migrations\n\n\ndef forward(apps, schema_editor):\n    {code}\n\n\n\
         class Migration(migrations.Migration):\n    dependencies = [(\"posts\", \"{after}\")]\n\n    \
         operations = [migrations.RunPython(forward, migrations.RunPython.noop)]\n"
    );
    let path = (fleet.dir.path()).join(format!("apps/blog/apps/posts/migrations/{name}.py"));
    std::fs::write(path, text)?;
    Ok(())
}

/// Adds `line` to the blog's front page template.
fn add_to_page(fleet: &Fleet, line: &str) -> TestResult {
    let page = (fleet.dir.path()).join("apps/blog/apps/posts/templates/posts/index.html");
    let original = std::fs::read_to_string(&page)?;
    std::fs::write(&page, format!("{original}\n{line}\n"))?;
    Ok(())
}

/// Runs `change` while clients loop through the balancer at `lb`; asserts
/// that no request failed and returns what `change` returned.
fn under_load<T>(lb: &str, what: &str, change: impl FnOnce() -> T) -> T {
    let load = common::load::Load::start(lb, "blog.localhost", 4);
    load.wait_answered(20);
    let started = Instant::now();
    let out = change();
    let seconds = started.elapsed().as_secs_f64();
    load.wait_answered(20);
    let p99 = load.p99();
    let (answered, failed) = load.stop();
    eprintln!(
        "{what}: {seconds:.1} s, {answered} requests answered, {} failed, p99 {:.0} ms",
        failed.len(),
        p99.as_secs_f64() * 1000.0
    );
    assert_eq!(failed.len(), 0, "{what}: failed requests: {failed:?}");
    out
}

#[test]
fn rolling_deploys_drop_no_request_and_a_failed_migration_changes_no_runner() -> TestResult {
    if !common::can_boot() {
        return Ok(());
    }
    let _lock = exclusive("rolltest")?;
    // The quickstart's host names, which other fleets' hosts (without an
    // address) share: its own bridge and subnet, so it runs beside them.
    let text = with_addresses_in(
        "10.77.223",
        rolling_text(),
        &[("lb1", 10), ("run1", 11), ("run2", 12), ("db1", 20)],
    );
    let fleet = Fleet::booted(
        "rolltest",
        &text,
        &["--bridge", "sitecroll", "--subnet", "10.77.223.0/24"],
    )?;
    let first = fleet.apply();
    assert!(first.status.success(), "first apply: {}", text_of(&first));
    let lb = fleet.address("lb1");
    page_turns(&lb, "Hello from sitec", true)?;
    let v1 = live_on(&releases_of(&fleet), "run1");
    let venv1 = venv_on(&releases_of(&fleet), "run1");

    // v2, with a migration that adds a post: migrated on the leader before
    // any runner serves it, then each runner drained, switched, returned.
    // A code change only: the release runs v1's virtualenv, nothing built.
    add_to_page(&fleet, "<p>Release two</p>")?;
    add_migration(
        &fleet,
        "0003_release_two",
        "0002_seed_posts",
        "apps.get_model(\"posts\", \"Post\").objects.create(title=\"Migrated by release two\", body=\"-\", published=\"2026-12-01T00:00:00Z\")",
    )?;
    let venvs_id = "virtualenv:/srv/sitec/apps/blog/venvs";
    let plan = fleet.plan();
    for host in ["run1", "run2"] {
        let built = changes(&plan, host);
        assert!(
            built.iter().any(|(id, _)| id.starts_with("tree:"))
                && !built.iter().any(|(id, _)| id == venvs_id),
            "{host}: a code change is a new release on the same virtualenv: {built:?}"
        );
    }
    let second = under_load(&lb, "a deploy of v2 to two runners", || fleet.apply());
    let said = text_of(&second);
    assert!(second.status.success(), "v2: {said}");
    for host in ["run1", "run2"] {
        assert!(
            said.contains(&format!("{host}: blog answers; back in rotation")),
            "{host} was drained and returned: {said}"
        );
    }
    page_turns(&lb, "Release two", true)?;
    page_turns(&lb, "Migrated by release two", true)?;
    let listed = releases_of(&fleet);
    let v2 = live_on(&listed, "run1");
    assert_eq!(live_on(&listed, "run2"), v2);
    assert_ne!(v1, v2);
    assert_eq!(venv_on(&listed, "run1"), venv1, "v2 reuses v1's virtualenv");

    // v3, whose migration fails: the leader's new release never goes live,
    // the other runner is not touched, v2 serves on both.
    add_to_page(&fleet, "<p>Release three</p>")?;
    add_migration(
        &fleet,
        "0004_release_three",
        "0003_release_two",
        "raise RuntimeError(\"release three cannot migrate\")",
    )?;
    let third = under_load(&lb, "a deploy of v3 whose migration fails", || {
        fleet.apply()
    });
    let said = text_of(&third);
    assert!(
        !third.status.success(),
        "a failed migration applied: {said}"
    );
    assert!(said.contains("release three cannot migrate"), "{said}");
    assert!(
        said.contains("the rolling deploy of blog stopped at run1"),
        "{said}"
    );
    page_turns(&lb, "Release two", true)?;
    page_turns(&lb, "Release three", false)?;
    let listed = releases_of(&fleet);
    assert_eq!(
        (live_on(&listed, "run1"), live_on(&listed, "run2")),
        (v2.clone(), v2.clone()),
        "{listed:#}"
    );

    // A rollback rolls the same way.
    let back = under_load(&lb, "a rollback to v1", || {
        fleet.sitec_with(&["rollback"], &["blog"])
    });
    assert!(back.status.success(), "rollback: {}", text_of(&back));
    page_turns(&lb, "Release two", false)?;
    let listed = releases_of(&fleet);
    assert_eq!(
        (live_on(&listed, "run1"), live_on(&listed, "run2")),
        (v1.clone(), v1)
    );
    requirements_change_fail_and_roll_back(&fleet, &lb, &venv1)
}

/// The rolling fleet on v1 (pinned by a rollback, whose virtualenv is
/// `venv1`): v2's code with a new requirement builds a new virtualenv
/// beside the live one while it serves; a requirement the wheelhouse lacks
/// fails the leader's pip and leaves both runners on the live release and
/// its virtualenv; a rollback brings the old virtualenv back, unbuilt.
fn requirements_change_fail_and_roll_back(fleet: &Fleet, lb: &str, venv1: &str) -> TestResult {
    let venvs_id = "virtualenv:/srv/sitec/apps/blog/venvs";
    // Back to v2's code (without v3's failing migration), toml added.
    std::fs::remove_file(
        (fleet.dir.path()).join("apps/blog/apps/posts/migrations/0004_release_three.py"),
    )?;
    edit(
        fleet,
        "apps/posts/templates/posts/index.html",
        "\n<p>Release three</p>\n",
        "",
    )?;
    edit(
        fleet,
        "requirements.txt",
        "six==1.17.0\n",
        "six==1.17.0\ntoml==0.10.2\n",
    )?;
    assert!(
        !imports(fleet, "run1", "toml"),
        "v1's virtualenv has no toml"
    );
    let plan = fleet.plan();
    let built = changes(&plan, "run1");
    assert!(
        built.iter().any(|(id, _)| id == venvs_id),
        "new requirements build a virtualenv: {built:?}"
    );
    let fourth = under_load(lb, "a requirements change on two runners", || fleet.apply());
    let said = text_of(&fourth);
    assert!(fourth.status.success(), "v4: {said}");
    for host in ["run1", "run2"] {
        let built = said.find(&format!(
            "{host}: building its new virtualenv before the drain"
        ));
        let drained = said.find(&format!("{host}: draining blog before its restart"));
        assert!(
            built.is_some() && drained.is_some() && built < drained,
            "{host} builds its virtualenv, then is drained: {said}"
        );
    }
    page_turns(lb, "Release two", true)?;
    let listed = releases_of(fleet);
    let (v4, venv4) = (live_on(&listed, "run1"), venv_on(&listed, "run1"));
    assert_eq!(
        (live_on(&listed, "run2"), venv_on(&listed, "run2")),
        (v4.clone(), venv4.clone())
    );
    assert_ne!(venv4, venv1, "a virtualenv of its own: {listed:#}");
    let name = |venv: &str| venv.rsplit('/').next().unwrap_or_default().to_string();
    let mut both = [name(venv1), name(&venv4)];
    both.sort();
    let venvs = || text_of(&fleet.ssh("run1", "ls /srv/sitec/apps/blog/venvs"));
    assert_eq!(
        venvs(),
        format!("{}\n", both.join("\n")),
        "v1's stays beside it"
    );
    let owners = fleet.ssh(
        "run1",
        "find /srv/sitec/apps/blog/venvs ! -user root; \
         runuser -u app-blog -- touch /srv/sitec/apps/blog/current/venv/x 2>/dev/null && echo writable",
    );
    assert_eq!(
        text_of(&owners),
        "",
        "the virtualenvs are root's, read-only to the app"
    );
    for host in ["run1", "run2"] {
        assert!(imports(fleet, host, "toml"), "{host} runs v4's virtualenv");
        // What the deploys uploaded (v1's to v4's releases, two
        // wheelhouses) is pruned: what v4 names stays, its release's blob
        // and its wheelhouse's, and that wheelhouse unpacked.
        let left = fleet.ssh(
            host,
            "ls /var/lib/sitec/blobs | wc -l; ls /var/lib/sitec/wheelhouse | wc -l",
        );
        assert_eq!(
            text_of(&left),
            "2\n1\n",
            "{host}: blobs and wheelhouses kept"
        );
    }

    // A requirement the wheelhouse lacks. The operator's pip download puts
    // every requirement in, so the test takes iniconfig's wheel out of the
    // cached wheelhouse the plan builds: the leader's pip fails, the deploy
    // stops there, and v4 serves on both with its virtualenv.
    edit(
        fleet,
        "requirements.txt",
        "toml==0.10.2\n",
        "toml==0.10.2\niniconfig==2.0.0\n",
    )?;
    let _ = fleet.plan();
    let broken = without_wheel("iniconfig-2.0.0-", "toml-0.10.2-")?;
    let fifth = under_load(lb, "a deploy whose pip install fails", || fleet.apply());
    for dir in &broken {
        std::fs::remove_dir_all(dir)?;
    }
    let said = text_of(&fifth);
    assert!(!fifth.status.success(), "a failed pip applied: {said}");
    assert!(
        said.contains("No matching distribution found for iniconfig"),
        "{said}"
    );
    assert!(
        said.contains("the rolling deploy of blog stopped at run1"),
        "{said}"
    );
    assert!(
        !said.contains("run1: draining blog"),
        "a failed build drains nothing: {said}"
    );
    let listed = releases_of(fleet);
    for host in ["run1", "run2"] {
        assert_eq!(
            (live_on(&listed, host), venv_on(&listed, host)),
            (v4.clone(), venv4.clone()),
            "{host}: {listed:#}"
        );
        assert!(imports(fleet, host, "toml"), "{host} runs v4's virtualenv");
    }
    assert_eq!(
        venvs(),
        format!("{}\n", both.join("\n")),
        "the failed build is gone"
    );
    page_turns(lb, "Release two", true)?;
    edit(fleet, "requirements.txt", "iniconfig==2.0.0\n", "")?;

    // Back to the release before v4: its virtualenv again, nothing built.
    let back = under_load(lb, "a rollback across a requirements change", || {
        fleet.sitec_with(&["rollback"], &["blog"])
    });
    assert!(back.status.success(), "rollback: {}", text_of(&back));
    let listed = releases_of(fleet);
    for host in ["run1", "run2"] {
        assert_eq!(venv_on(&listed, host), venv1, "{host}: {listed:#}");
        assert!(
            !imports(fleet, host, "toml"),
            "{host} runs the old virtualenv"
        );
    }
    page_turns(lb, "Release two", true)?;
    Ok(())
}

/// Takes the wheel whose name starts with `wheel` out of every cached
/// wheelhouse that also holds one starting with `beside` (the test's own
/// requirements); returns those wheelhouses, for the test to remove.
fn without_wheel(wheel: &str, beside: &str) -> Result<Vec<PathBuf>, Box<dyn std::error::Error>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(repo().join("target/sitec-test-cache/wheelhouse"))? {
        let dir = entry?.path();
        let Ok(names) = std::fs::read_dir(&dir) else {
            continue;
        };
        let names: Vec<String> = names
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if !names.iter().any(|n| n.starts_with(beside)) {
            continue;
        }
        for name in names.iter().filter(|n| n.starts_with(wheel)) {
            std::fs::remove_file(dir.join(name))?;
            found.push(dir.clone());
        }
    }
    // None when a run cut off here left it without the wheel: it fails the same.
    Ok(found)
}
