//! One host's `systemd-nspawn -b`: started detached (its own process group,
//! so a Ctrl-C at the terminal does not reach it) inside the host's cgroup,
//! found again later by pid and machine name, and stopped with SIGTERM
//! (nspawn then powers the container off cleanly), SIGKILL if it hangs.
//! Each container gets the machine's `/dev/fuse`, so a host can mount a
//! FUSE file system (the GlusterFS client of shared media).

use super::error::{Error, Result};
use super::layout::HostLayout;
use rustix::process::{kill_process, Pid, Signal};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A host's container, by machine name.
#[derive(Debug, Clone)]
pub struct Container {
    /// The machine name (`<fleet>-<host>`), unique on this machine.
    pub machine: String,
}

/// How to start a container.
#[derive(Debug, Clone)]
pub struct Boot<'a> {
    pub layout: &'a HostLayout,
    pub hostname: &'a str,
    pub bridge: &'a str,
    /// The `cgroup.procs` files the container joins before nspawn runs.
    pub cgroup_procs: &'a [PathBuf],
    /// `--bind=` arguments: the host's btrfs subvolumes at their paths.
    pub binds: &'a [String],
}

/// FUSE for the container, when the machine has it: nspawn's `/dev` holds
/// only the basic devices, and glusterfs's client mounts through
/// `/dev/fuse`. Binding the node is enough here: with `--keep-unit` and
/// `--register=no` nspawn runs in sitec's own cgroup, which has no device
/// policy (a registered machine's scope would need `DeviceAllow=`), and
/// nspawn keeps CAP_SYS_ADMIN, which the mount needs.
fn fuse_bind() -> Option<&'static str> {
    Path::new("/dev/fuse")
        .exists()
        .then_some("--bind=/dev/fuse")
}

impl Container {
    #[must_use]
    pub fn new(fleet: &str, host: &str) -> Self {
        Self {
            machine: format!("{fleet}-{host}"),
        }
    }

    /// Starts `systemd-nspawn -b` on the host's root and returns its pid
    /// (also written to `nspawn.pid`). The console goes to `console.log`.
    pub fn start(&self, boot: &Boot<'_>) -> Result<u32> {
        let log_path = boot.layout.console_log();
        let log =
            std::fs::File::create(&log_path).map_err(|e| Error::io(log_path.display(), &e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| Error::io(log_path.display(), &e))?;
        // The shell joins the cgroups, then becomes nspawn (same pid).
        let mut script = String::new();
        for procs in boot.cgroup_procs {
            script.push_str(&format!("echo $$ > '{}' || exit 97; ", procs.display()));
        }
        script.push_str("exec \"$@\"");
        let root = boot.layout.root();
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .arg("sitec-boot")
            .arg("systemd-nspawn")
            .arg("--boot")
            .arg("--quiet")
            .arg(format!("--directory={}", root.display()))
            .arg(format!("--machine={}", self.machine))
            .arg(format!("--hostname={}", boot.hostname))
            .arg("--register=no")
            .arg("--keep-unit")
            .arg(format!("--network-bridge={}", boot.bridge))
            .arg("--link-journal=no")
            .arg("--console=read-only")
            .args(boot.binds)
            .args(fuse_bind())
            .env("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0);
        let child = cmd.spawn().map_err(|e| {
            Error::new(format!(
                "cannot start systemd-nspawn for {}: {e}",
                self.machine
            ))
            .help("apt-get install systemd-container")
        })?;
        let pid = child.id();
        // The child is not waited for: it outlives this process. Its exit
        // is noticed through /proc (see `is_running`).
        drop(child);
        let pid_file = boot.layout.pid_file();
        std::fs::write(&pid_file, format!("{pid}\n"))
            .map_err(|e| Error::io(pid_file.display(), &e))?;
        Ok(pid)
    }

    /// True when `pid` is a live (not zombie) `systemd-nspawn` of this
    /// machine.
    #[must_use]
    pub fn is_running(&self, pid: u32) -> bool {
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        let Ok(stat) = std::fs::read_to_string(proc_dir.join("stat")) else {
            return false;
        };
        // The state follows the `(comm)` field, which may hold spaces.
        let state = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next());
        if matches!(state, Some('Z' | 'X') | None) {
            return false;
        }
        let Ok(cmdline) = std::fs::read(proc_dir.join("cmdline")) else {
            return false;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let machine = format!("--machine={}", self.machine);
        args.iter().any(|a| a.ends_with(b"systemd-nspawn")) && args.contains(&machine.as_bytes())
    }

    /// Waits (up to 5 s) until the host side of a previous run's veth
    /// (`vb-<machine>`) is gone: it goes with the old network namespace, a
    /// moment after the old container's last process, and the new container
    /// needs the name. nspawn shortens longer names with a hash that is not
    /// predicted here; those do not wait.
    pub fn wait_link_gone(&self) {
        let link = Path::new("/sys/class/net").join(format!("vb-{}", self.machine));
        let deadline = Instant::now() + Duration::from_secs(5);
        while link.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The pid recorded in `nspawn.pid`, if any.
    #[must_use]
    pub fn recorded_pid(layout: &HostLayout) -> Option<u32> {
        std::fs::read_to_string(layout.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Asks nspawn to power the container off (SIGTERM), without waiting.
    pub fn request_stop(&self, pid: u32) {
        if self.is_running(pid) {
            if let Some(p) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
                let _ = kill_process(p, Signal::TERM);
            }
        }
    }

    /// Waits up to `grace` for the container to stop, then kills nspawn.
    pub fn wait_stopped(&self, pid: u32, grace: Duration) {
        let deadline = Instant::now() + grace;
        while self.is_running(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(25));
        }
        if self.is_running(pid) {
            if let Some(p) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
                let _ = kill_process(p, Signal::KILL);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.is_running(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(25));
            }
        }
    }
}
