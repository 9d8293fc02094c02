//! Waits for a booting host: first its port 22 (cheap TCP probes), then one
//! `ssh` that runs `systemctl is-system-running --wait`, through the
//! fleet's `ssh_config` (strict host-key checking). Reports `running` or
//! `degraded` with the failed units; gives up at the deadline or as soon as
//! the container dies, quoting the end of its console.

use super::error::{Error, Result};
use super::layout::HostLayout;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// What systemd said once the host had booted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// `running` or `degraded` (or whatever else `--wait` ended with).
    pub system_state: String,
    /// Failed units, when degraded.
    pub failed_units: Vec<String>,
}

/// Waits until `host` answers over ssh and has finished booting.
/// `alive` says whether its container still runs.
pub fn wait_ready(
    host: &str,
    address: Ipv4Addr,
    ssh_config: &Path,
    layout: &HostLayout,
    deadline: Instant,
    alive: &dyn Fn() -> bool,
) -> Result<Readiness> {
    let sock = SocketAddr::from((address, 22));
    loop {
        if TcpStream::connect_timeout(&sock, Duration::from_millis(250)).is_ok() {
            break;
        }
        check(host, layout, deadline, alive, "sshd to listen")?;
        std::thread::sleep(Duration::from_millis(50));
    }
    loop {
        let last_error = match ssh(
            ssh_config,
            host,
            "systemctl is-system-running --wait",
            deadline,
        ) {
            Ok(out) if out.status.code() == Some(255) => {
                String::from_utf8_lossy(&out.stderr).trim().to_owned()
            }
            Ok(out) => {
                let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                let failed_units = if state == "running" {
                    Vec::new()
                } else {
                    ssh(
                        ssh_config,
                        host,
                        "systemctl --failed --plain --no-legend",
                        deadline,
                    )
                    .map(|o| {
                        String::from_utf8_lossy(&o.stdout)
                            .lines()
                            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default()
                };
                return Ok(Readiness {
                    system_state: state,
                    failed_units,
                });
            }
            Err(e) => e.message,
        };
        check(
            host,
            layout,
            deadline,
            alive,
            &format!("ssh to answer ({last_error})"),
        )?;
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn check(
    host: &str,
    layout: &HostLayout,
    deadline: Instant,
    alive: &dyn Fn() -> bool,
    what: &str,
) -> Result<()> {
    if !alive() {
        return Err(Error::new(format!(
            "host `{host}`: its container stopped while booting; the end of {}:\n{}",
            layout.console_log().display(),
            tail(&layout.console_log(), 15)
        )));
    }
    if Instant::now() > deadline {
        return Err(Error::new(format!(
            "host `{host}` did not boot in time: still waiting for {what}"
        ))
        .help(format!(
            "see {} (and raise the boot timeout on a slow machine)",
            layout.console_log().display()
        )));
    }
    Ok(())
}

/// Runs `ssh -F config host command`, killed at `deadline`.
pub fn ssh(config: &Path, host: &str, command: &str, deadline: Instant) -> Result<Output> {
    let mut child = Command::new("ssh")
        .arg("-F")
        .arg(config)
        .arg(host)
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Error::new(format!("cannot run ssh: {e}")).help("apt-get install openssh-client")
        })?;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::new(format!("`ssh {host} {command}` timed out")));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(Error::new(format!("waiting for ssh: {e}"))),
        }
    }
    child
        .wait_with_output()
        .map_err(|e| Error::new(format!("reading ssh's output: {e}")))
}

/// The last `n` lines of a file, for error messages.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
