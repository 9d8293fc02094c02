//! What `up` and `down` need from this machine before they touch it: root,
//! and the programs they drive. Each missing piece fails with its exact fix.

use super::error::{Error, Result};
use std::path::Path;

/// Fails unless the process runs as root.
pub fn require_root(action: &str) -> Result<()> {
    if rustix::process::geteuid().is_root() {
        Ok(())
    } else {
        Err(Error::new(format!(
            "`sitec fleet {action}` needs root: it mounts file systems, creates a bridge and cgroups and boots containers"
        ))
        .help(format!("run as root (sudo sitec fleet {action} …)")))
    }
}

/// Fails unless every program `up` runs is installed.
pub fn require_tools() -> Result<()> {
    let needs = [
        ("systemd-nspawn", "apt-get install systemd-container"),
        ("ssh", "apt-get install openssh-client"),
        ("ssh-keygen", "apt-get install openssh-client"),
        ("sshd", "apt-get install openssh-server"),
        ("ip", "apt-get install iproute2"),
    ];
    for (program, fix) in needs {
        if !on_path(program) {
            return Err(Error::new(format!("`{program}` is not installed")).help(fix));
        }
    }
    if !Path::new("/lib/systemd/systemd").exists() {
        return Err(
            Error::new("systemd is not installed: the hosts boot this machine's systemd")
                .help("apt-get install systemd"),
        );
    }
    Ok(())
}

fn on_path(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|d| d.join(program).is_file())
}
