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

/// Every host's systemd (and its services) takes inotify instances counted
/// against this machine's root, since the containers share its user
/// namespace; Debian's default of 128 runs out at about six hosts, and a
/// host then fails to boot with "Too many open files". Raised to
/// `INOTIFY_INSTANCES` when lower, as LXD's docs advise for containers.
pub const INOTIFY_INSTANCES: u64 = 1024;
const INOTIFY_SYSCTL: &str = "/proc/sys/fs/inotify/max_user_instances";

/// Raises `fs.inotify.max_user_instances` when it is below what a fleet
/// needs, saying so on stderr; a machine that cannot be changed (a read-only
/// /proc/sys) is left as it is, and the boot says why a host failed.
pub fn raise_inotify_limit() {
    let Ok(text) = std::fs::read_to_string(INOTIFY_SYSCTL) else {
        return;
    };
    let Some(wanted) = inotify_instances_wanted(&text) else {
        return;
    };
    if std::fs::write(INOTIFY_SYSCTL, wanted.to_string()).is_ok() {
        crate::errln!(
            "sitec fleet: raised fs.inotify.max_user_instances from {} to {wanted} (every host's systemd takes some of root's); to keep it across reboots: echo fs.inotify.max_user_instances={wanted} > /etc/sysctl.d/60-sitec-fleet.conf",
            text.trim()
        );
    }
}

/// The value to set, given the current one, or `None` to leave it.
fn inotify_instances_wanted(current: &str) -> Option<u64> {
    match current.trim().parse::<u64>() {
        Ok(n) if n >= INOTIFY_INSTANCES => None,
        Ok(_) => Some(INOTIFY_INSTANCES),
        Err(_) => None,
    }
}

fn on_path(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|d| d.join(program).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inotify_limit_is_raised_only_when_low() {
        assert_eq!(inotify_instances_wanted("128\n"), Some(INOTIFY_INSTANCES));
        assert_eq!(inotify_instances_wanted("1024\n"), None);
        assert_eq!(inotify_instances_wanted("65536"), None);
        assert_eq!(inotify_instances_wanted("garbage"), None);
    }
}
