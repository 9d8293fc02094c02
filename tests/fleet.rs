//! Local fleets, for real: boots systemd-nspawn hosts with real sshd and
//! systemd, talks to them through the transport (and mounts a GlusterFS
//! volume through FUSE in one), runs `sitec agent` under
//! its rendered unit there, and checks that `down` leaves no mount, cgroup
//! or link behind. Needs root and systemd-container (CI has both;
//! elsewhere these tests fail unless the run sets `SITEC_SKIP_ROOT_TESTS=1`). Each test uses its own
//! fleet name, bridge and subnet, so they run side by side; the same test in
//! two processes at once waits for the other (a lock in /run/sitec).

mod common;

use sitec::fleet::{self, FleetSpec, LocalHost, Options};
use sitec::transport::{HostTarget, Transport};
use std::path::Path;
use std::time::Duration;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn options(state_root: &Path, tag: u8) -> Result<Options, fleet::Error> {
    Ok(Options {
        state_root: state_root.join(".fleet"),
        bridge: format!("sitect{tag}"),
        subnet: format!("10.77.{}.0/24", 100 + u16::from(tag)).parse()?,
        boot_timeout: Duration::from_secs(120),
        ..Options::beside(state_root)
    })
}

fn spec(name: &str, hosts: &[&str]) -> Result<FleetSpec, fleet::Error> {
    Ok(FleetSpec {
        name: name.into(),
        hosts: hosts
            .iter()
            .map(|h| LocalHost::parse(h))
            .collect::<Result<_, _>>()?,
    })
}

/// Takes the fleet down when the test ends, however it ends.
struct Down<'a>(&'a str, &'a Options);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        if let Err(e) = fleet::down(self.0, self.1) {
            eprintln!("clean-up of fleet {} failed: {e}", self.0);
        }
    }
}

/// Everything of fleet `name` still on the machine: mounts below its state
/// directory, its cgroups, its bridge and links.
fn leftovers(name: &str, options: &Options) -> Vec<String> {
    let mut found = Vec::new();
    let dir = options.state_root.join(name);
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    found.extend(
        mounts
            .lines()
            .filter(|l| l.contains(&*dir.to_string_lossy()))
            .map(|l| format!("mount: {l}")),
    );
    for h in ["", "unified", "systemd"] {
        let cg = Path::new("/sys/fs/cgroup").join(h).join("sitec").join(name);
        if cg.exists() {
            found.push(format!("cgroup: {}", cg.display()));
        }
    }
    if Path::new("/sys/class/net").join(&options.bridge).exists() {
        found.push(format!("bridge: {}", options.bridge));
    }
    let links = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    found.extend(
        links
            .lines()
            .filter(|l| l.contains(&format!("vb-{name}-")))
            .map(|l| format!("link: {l}")),
    );
    found
}

#[test]
fn three_hosts_boot_answer_over_ssh_and_leave_nothing_behind() -> TestResult {
    if !common::can_boot() {
        return Ok(());
    }
    let _exclusive = common::exclusive("ft1")?;
    common::take_down_leftover_fleet("ft1")?;
    let tmp = tempfile::tempdir()?;
    let options = options(tmp.path(), 1)?;
    let spec = spec("ft1", &["alpha", "beta=10.77.101.50", "gamma"])?;
    let guard = Down("ft1", &options);

    // Two hosts first; the second `up` adds the third and leaves them be.
    let first = fleet::up(
        &FleetSpec {
            hosts: spec.hosts[..2].to_vec(),
            ..spec.clone()
        },
        &options,
    )?;
    let state = fleet::up(&spec, &options)?;
    assert_eq!(state.hosts[0].pid, first.hosts[0].pid);
    assert_eq!(state.hosts[1].pid, first.hosts[1].pid);
    let addresses: Vec<String> = state.hosts.iter().map(|h| h.address.to_string()).collect();
    assert_eq!(addresses, ["10.77.101.10", "10.77.101.50", "10.77.101.11"]);
    for h in &state.hosts {
        let s = h.system_state.as_deref().unwrap_or("none");
        assert!(
            s == "running" || s == "degraded",
            "{}: {s} {:?}",
            h.name,
            h.failed_units
        );
    }

    // A second `up` leaves the running hosts alone.
    let again = fleet::up(&spec, &options)?;
    let pids = |s: &fleet::FleetState| s.hosts.iter().map(|h| h.pid).collect::<Vec<_>>();
    assert_eq!(pids(&again), pids(&state));
    assert_eq!(again.targets(), state.targets());

    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(talk_to_hosts(&state))?;

    interrupt_closes_every_master(&state)?;

    // A fleet of the same name in another state root is another fleet:
    // `down` there must not touch this one.
    let elsewhere = tempfile::tempdir()?;
    let err = fleet::down(
        "ft1",
        &Options {
            state_root: elsewhere.path().into(),
            ..options.clone()
        },
    );
    assert!(err.is_err_and(|e| e.to_string().contains("runs from")));

    // Another fleet on the same bridge asking for a taken address is
    // refused before it boots anything, naming the fleet that has it.
    let clash_spec = FleetSpec {
        name: "ft1b".into(),
        hosts: vec![LocalHost::parse("delta=10.77.101.50")?],
    };
    let clash = fleet::up(&clash_spec, &options)
        .err()
        .ok_or("a second fleet took beta's address")?;
    let text = clash.to_string();
    assert!(
        text.contains("10.77.101.50 is used by fleet `ft1`")
            && text.contains("give host `delta` another `address`")
            && text.contains("sitec fleet down --name ft1"),
        "{text}"
    );
    assert!(
        !options.state_root.join("ft1b/fleet.json").exists(),
        "the refused fleet recorded nothing"
    );

    let rows = fleet::status("ft1", &options)?;
    assert!(rows.iter().all(|r| r.up), "{}", fleet::table(&rows));

    let report = fleet::down("ft1", &options)?;
    assert_eq!(report.stopped.len(), 3);
    assert!(report.bridge_removed);
    assert_eq!(leftovers("ft1", &options), Vec::<String>::new());
    let dir = options.state_root.join("ft1");
    assert!(dir.join("keys/id_ed25519").exists(), "down keeps the keys");
    assert!(!dir.join("fleet.json").exists());
    assert!(!dir.join("hosts").exists());

    // A second `down` is harmless.
    let report = fleet::down("ft1", &options)?;
    assert!(report.stopped.is_empty());
    drop(guard);
    Ok(())
}

async fn talk_to_hosts(state: &fleet::FleetState) -> TestResult {
    let ssh = state.ssh_options(sitec::transport::Kex::default());
    let transport = Transport::connect(&state.targets(), &ssh).await?;
    for h in &state.hosts {
        let out = transport.run(&h.name, "hostname", b"").await?;
        assert_eq!(out.stdout_text().trim(), h.name);
        let out = transport
            .run(&h.name, "cat; echo oops >&2; exit 3", b"hello")
            .await?;
        assert_eq!(
            (out.status, out.stdout_text(), out.stderr_text()),
            (Some(3), "hello".into(), "oops\n".into())
        );
        // The hosts know each other by name.
        let out = transport.run(&h.name, "getent hosts beta", b"").await?;
        assert!(out.stdout_text().starts_with("10.77.101.50"), "{out:?}");
    }

    // FUSE works in a host: a one-brick GlusterFS volume (the client of
    // shared media) mounts, and a file written through it lands in the brick.
    let fuse = "set -e; systemctl start glusterd; mkdir -p /srv/fuse-brick /mnt/fuse; \
                gluster --mode=script volume create fusecheck alpha:/srv/fuse-brick force >/dev/null; \
                gluster --mode=script volume start fusecheck >/dev/null; \
                mount -t glusterfs alpha:/fusecheck /mnt/fuse; echo through > /mnt/fuse/f; \
                umount /mnt/fuse; cat /srv/fuse-brick/f";
    let out = transport.run("alpha", fuse, b"").await?;
    assert_eq!(out.stdout_text(), "through\n", "{out:?}");

    // Uploads are atomic and take the mode asked for.
    let body = b"line one\nline 'two'\n";
    transport
        .upload("alpha", body, "/etc/sitec test.conf", 0o640)
        .await?;
    let out = transport.run("alpha", "stat -c %a '/etc/sitec test.conf'; cat '/etc/sitec test.conf'; ls -a /etc | grep -c sitec-tmp || true", b"").await?;
    assert_eq!(out.stdout_text(), "640\nline one\nline 'two'\n0\n");
    // ... and stay in their host.
    let out = transport
        .run("beta", "test -e '/etc/sitec test.conf'", b"")
        .await?;
    assert_eq!(out.status, Some(1));

    // sitec ships itself only when the copy differs.
    let me = Path::new(env!("CARGO_BIN_EXE_sitec"));
    assert!(
        transport
            .ensure_binary("gamma", me, "/usr/local/lib/sitec/bin/sitec")
            .await?
    );
    assert!(
        !transport
            .ensure_binary("gamma", me, "/usr/local/lib/sitec/bin/sitec")
            .await?
    );
    let out = transport
        .run("gamma", "/usr/local/lib/sitec/bin/sitec --version", b"")
        .await?;
    assert!(
        out.success() && out.stdout_text().starts_with("sitec"),
        "{out:?}"
    );
    transport.close().await;

    // Host keys are pinned: a known_hosts holding another key is refused.
    let alpha = state.host("alpha").ok_or("no alpha")?;
    let beta_key = std::fs::read_to_string(state.state_dir.join("keys/host-beta_ed25519.pub"))?;
    let wrong = state.state_dir.join("wrong_known_hosts");
    let key: Vec<&str> = beta_key.split_whitespace().take(2).collect();
    std::fs::write(&wrong, format!("{} {}\n", alpha.address, key.join(" ")))?;
    let mut pinned = ssh.clone();
    pinned.known_hosts = wrong.clone();
    let target = [HostTarget::new("alpha", alpha.address.to_string())];
    let err = Transport::connect(&target, &pinned)
        .await
        .err()
        .ok_or("a wrong host key was accepted")?;
    assert!(err.to_string().contains("alpha"), "{err}");
    // ... and so is a host missing from it.
    std::fs::write(&wrong, "")?;
    assert!(
        Transport::connect(&target, &pinned).await.is_err(),
        "an unknown host was accepted"
    );
    std::fs::remove_file(&wrong)?;
    Ok(())
}

/// The ssh master processes holding connections to a fleet (found by the
/// fleet's known_hosts path on their command line).
fn masters_of(state: &fleet::FleetState) -> Vec<String> {
    let kh = format!(
        "UserKnownHostsFile={}",
        state.state_dir.join("known_hosts").display()
    );
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .filter_map(Result::ok)
        .filter_map(|p| std::fs::read(p.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.starts_with("ssh ") && c.contains(" -M ") && c.contains(&kh))
        .collect()
}

/// The `hold_masters` example (tests/helpers/hold_masters.rs): cargo
/// builds it now if this run did not (`cargo test --test fleet` builds no
/// examples), and says where it is. Without the variables cargo set for
/// this test (`CARGO_PKG_NAME`...), which build scripts such as ring's
/// watch: seen here they would rebuild those crates every time.
fn hold_masters() -> Result<std::path::PathBuf, Box<dyn std::error::Error>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = std::process::Command::new(cargo);
    let set_for_this_test = [
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_CRATE_",
        "CARGO_BIN_",
        "CARGO_PRIMARY_",
        "CARGO_TARGET_TMPDIR",
    ];
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if set_for_this_test.iter().any(|p| name.starts_with(p)) {
            build.env_remove(&*name);
        }
    }
    let out = build
        .args(["build", "--profile", "test", "--example", "hold_masters"])
        .args(["--message-format=json", "--manifest-path"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .stderr(std::process::Stdio::inherit())
        .output()?;
    assert!(out.status.success(), "cargo build --example hold_masters");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["target"]["name"] == "hold_masters")
        .find_map(|m| m["executable"].as_str().map(std::path::PathBuf::from))
        .ok_or_else(|| "cargo named no hold_masters executable".into())
}

/// Runs `hold_masters` in a child, interrupts it once connected, and
/// checks that no master outlives it.
fn interrupt_closes_every_master(state: &fleet::FleetState) -> TestResult {
    let marker = state.state_dir.join("held");
    let mut child = std::process::Command::new(hold_masters()?)
        .arg(&state.state_dir)
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let connected = common::eventually(Duration::from_secs(60), || {
        marker.exists() || child.try_wait().is_ok_and(|s| s.is_some())
    });
    assert!(
        connected && marker.exists(),
        "the child never held its masters"
    );
    assert_eq!(
        masters_of(state).len(),
        3,
        "the child did not hold 3 masters"
    );
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()?;
    let status = child.wait()?;
    assert_eq!(status.code(), Some(130), "{status}");
    assert!(
        common::eventually(Duration::from_secs(10), || masters_of(state).is_empty()),
        "masters outlived the interrupted child: {:?}",
        masters_of(state)
    );
    std::fs::remove_file(marker)?;
    Ok(())
}

#[test]
fn down_cleans_up_after_an_up_killed_mid_boot() -> TestResult {
    if !common::can_boot() {
        return Ok(());
    }
    let _exclusive = common::exclusive("ft2")?;
    common::take_down_leftover_fleet("ft2")?;
    let tmp = tempfile::tempdir()?;
    let options = options(tmp.path(), 2)?;
    let guard = Down("ft2", &options);
    let mut up = std::process::Command::new(env!("CARGO_BIN_EXE_sitec"))
        .args([
            "fleet", "up", "--name", "ft2", "--host", "solo", "--host", "duo",
        ])
        .arg("--state-root")
        .arg(&options.state_root)
        .args(["--bridge", &options.bridge, "--subnet", "10.77.102.0/24"])
        .stdout(std::process::Stdio::null())
        .spawn()?;
    // Kill it once both containers have started, before they finish booting.
    let json = options.state_root.join("ft2/fleet.json");
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        let text = std::fs::read_to_string(&json).unwrap_or_default();
        if text.matches("\"pid\": ").count() == 2 && !text.contains("\"pid\": null") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    up.kill()?;
    up.wait()?;
    assert!(
        !leftovers("ft2", &options).is_empty(),
        "the killed up left nothing to clean"
    );

    // `up` again finishes the job; a host whose container died is booted
    // anew, the other left alone.
    let spec = spec("ft2", &["solo", "duo"])?;
    let state = fleet::up(&spec, &options)?;
    let (solo, duo) = (state.hosts[0].pid.ok_or("no pid")?, state.hosts[1].pid);
    std::process::Command::new("kill")
        .args(["-KILL", &solo.to_string()])
        .status()?;
    let again = fleet::up(&spec, &options)?;
    assert_ne!(again.hosts[0].pid, Some(solo));
    assert_eq!(again.hosts[1].pid, duo);
    assert!(again.hosts[0].system_state.is_some());

    let report = fleet::down("ft2", &options)?;
    assert_eq!(report.stopped.len(), 2, "{report:?}");
    assert_eq!(leftovers("ft2", &options), Vec::<String>::new());
    drop(guard);
    Ok(())
}

#[test]
fn bad_specs_fail_before_touching_the_machine() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sitec"))
            .args(args)
            .output()
            .map(|o| {
                (
                    o.status.success(),
                    String::from_utf8_lossy(&o.stderr).into_owned(),
                )
            });
        out.unwrap_or((true, String::new()))
    };
    let (ok, err) = run(&["fleet", "up", "--name", "Demo", "--host", "a"]);
    assert!(
        !ok && err.contains("`Demo` is not a usable fleet name"),
        "{err}"
    );
    let (ok, err) = run(&["fleet", "up", "--name", "d", "--host", "a=10.77.0"]);
    assert!(!ok && err.contains("is not an IPv4 address"), "{err}");
    let (ok, err) = run(&[
        "fleet",
        "up",
        "--name",
        "d",
        "--host",
        "a",
        "--subnet",
        "8.8.8.0/24",
    ]);
    assert!(!ok && err.contains("not a private range"), "{err}");
}

/// `sitec agent` under the unit the compiler renders for it (its own
/// user, `ProtectSystem=strict`, ...) on a host whose PID 1 is systemd:
/// it starts, its heartbeats reach this machine over the bridge with the
/// real systemctl's states, it files a followed line as the host's
/// collector, and `systemctl stop` ends it at once with success.
#[test]
fn the_agent_runs_under_its_unit_and_stops_cleanly() -> TestResult {
    if !common::can_boot() {
        return Ok(());
    }
    let _exclusive = common::exclusive("ft7")?;
    common::take_down_leftover_fleet("ft7")?;
    let tmp = tempfile::tempdir()?;
    let options = options(tmp.path(), 7)?;
    let _guard = Down("ft7", &options);
    let state = fleet::up(&spec("ft7", &["solo"])?, &options)?;
    let rendered = tmp.path().join("rendered");
    // A host that collects logs: its agent's unit may write the collector's folder.
    let spec = tmp.path().join("solo.site");
    std::fs::write(
        &spec,
        "use std/platform\nprovider colo { user = \"root\" }\n\
         host web1 { provider = colo  address = \"203.0.113.10\"  roles = [logs] }\n",
    )?;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sitec"))
        .arg("render")
        .arg(&spec)
        .args(["--placeholders", "--out"])
        .arg(&rendered)
        .output()?;
    assert!(out.status.success(), "{out:?}");
    let unit = std::fs::read(rendered.join("web1/etc/systemd/system/sitec-agent.service"))?;
    tokio::runtime::Runtime::new()?.block_on(agent_under_its_unit(&state, &unit))
}

/// Runs `command` on the host `solo`; its output, or an error with all it said.
async fn sh(transport: &Transport, command: &str) -> Result<String, Box<dyn std::error::Error>> {
    let out = transport.run("solo", command, b"").await?;
    if out.success() {
        Ok(out.stdout_text())
    } else {
        Err(format!("{command}: {out:?}").into())
    }
}

async fn agent_under_its_unit(state: &fleet::FleetState, unit: &[u8]) -> TestResult {
    use sitec::bus::keys::derive;
    let address = state.host("solo").ok_or("no solo")?.address;
    let (solo, operator, lb) = (derive("solo"), derive("operator"), derive("lb1"));
    let config = format!(
        "host = \"solo\"\nstate_dir = \"/var/lib/sitec-agent\"\n[bus]\ncontrol = \"tcp://{address}:7701\"\nheartbeat = \"tcp://{address}:7702\"\n\
         key_file = \"/etc/sitec/bus/host.key\"\noperator = \"{}\"\n\
         heartbeat_readers = [{{ name = \"lb1\", key = \"{}\" }}]\n\
         log_collectors = [{{ endpoint = \"tcp://{address}:7703\", key = \"{}\" }}]\n\
         [collector]\nendpoint = \"tcp://{address}:7703\"\ndir = \"/var/log/sitec/fleet\"\n\
         senders = [{{ name = \"solo\", key = \"{}\" }}]\n\
         [[app]]\nname = \"blog\"\nservice = \"sitec-app-blog.service\"\nworkers = [\"systemd-journald.service\"]\n\
         [[log]]\npath = \"/var/log/sitec/apps/blog/app.log\"\ntag = \"blog/app.log\"\nowner = \"root\"\n",
        operator.public, lb.public, solo.public, solo.public
    );
    let ssh = state.ssh_options(sitec::transport::Kex::default());
    let transport = Transport::connect(&state.targets(), &ssh).await?;
    // What the agent role makes: the agent's user, the app's log folder it reads.
    sh(
        &transport,
        "useradd --system --user-group --no-create-home sitec-agent && \
         mkdir -p /etc/sitec/bus && install -d -g sitec-agent -m 2751 /var/log/sitec/apps/blog",
    )
    .await?;
    let me = Path::new(env!("CARGO_BIN_EXE_sitec"));
    transport
        .ensure_binary("solo", me, "/usr/local/lib/sitec/sitec")
        .await?;
    transport
        .upload("solo", config.as_bytes(), "/etc/sitec/agent.toml", 0o640)
        .await?;
    sh(&transport, "chgrp sitec-agent /etc/sitec/agent.toml").await?;
    transport
        .upload(
            "solo",
            solo.key_file_text().as_bytes(),
            "/etc/sitec/bus/host.key",
            0o640,
        )
        .await?;
    sh(&transport, "chgrp sitec-agent /etc/sitec/bus/host.key").await?;
    transport
        .upload(
            "solo",
            unit,
            "/etc/systemd/system/sitec-agent.service",
            0o644,
        )
        .await?;
    sh(
        &transport,
        "systemctl daemon-reload && systemctl start sitec-agent",
    )
    .await?;
    let wait = Duration::from_secs(15);
    let bus = sitec::bus::Bus::new(lb)?;
    let sub = bus.connect(
        sitec::bus::Kind::Follow,
        &format!("tcp://{address}:7702"),
        &solo.public,
    )?;
    sub.set_rcvtimeo(15_000)?;
    // The first heartbeat with the app states (the pulses between say only
    // that the agent lives).
    let beat = loop {
        let frames = sub.recv_multipart(0)?;
        let beat: serde_json::Value =
            serde_json::from_slice(frames.last().ok_or("an empty heartbeat")?)?;
        if beat.get("apps").is_some() {
            break beat;
        }
    };
    let units = &beat["apps"][0]["units"];
    assert_eq!(
        (units[0]["active"].as_str(), units[1]["active"].as_str()),
        (Some("inactive"), Some("active")),
        "{beat}"
    );
    let mut control = sitec::bus::control::Client::connect(
        &format!("tcp://{address}:7701"),
        &solo.public,
        &operator,
    )?;
    let pong = control.ask(&serde_json::json!({"op": "ping"}), wait)?;
    assert_eq!(pong["host"], "solo", "{pong}");
    // The log file appears after the agent started: read from its start.
    sh(
        &transport,
        "echo 'from the app' >> /var/log/sitec/apps/blog/app.log",
    )
    .await?;
    let mut filed = String::new();
    for _ in 0..50 {
        filed = sh(
            &transport,
            "cat /var/log/sitec/fleet/solo/blog/app.log 2>/dev/null || true",
        )
        .await?;
        if !filed.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // TIME<TAB>LINE, the time RFC 3339 UTC to the millisecond.
    assert!(
        filed.len() == 24 + 1 + 13 && filed.ends_with("Z\tfrom the app\n"),
        "{filed:?}"
    );
    // An agent deaf to SIGTERM would be killed after TimeoutStopSec:
    // Result=timeout, not success.
    sh(&transport, "systemctl stop sitec-agent").await?;
    let result = sh(
        &transport,
        "systemctl show -p Result,ExecMainStatus sitec-agent",
    )
    .await?;
    assert_eq!(result, "Result=success\nExecMainStatus=0\n");
    transport.close().await;
    Ok(())
}
