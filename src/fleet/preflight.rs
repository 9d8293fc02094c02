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

/// What a fleet's folder must have free when `up` begins: each host's
/// writable layer and its btrfs image (sparse) grow on this machine's disk
/// as the host runs, and a btrfs image that cannot grow turns its file
/// system read-only (the kernel says "critical space allocation error"),
/// which shows up later as a database that fails in strange ways.
pub const MIN_FREE_BYTES: u64 = 2 << 30;

/// Fails when the file system holding `dir` has less than
/// [`MIN_FREE_BYTES`] available (without the blocks reserved for root: a
/// machine seen here had 160 GB free and 1.9 GB available, and its loop
/// images failed at the second figure). A machine that cannot say is let be.
pub fn require_space(dir: &Path) -> Result<()> {
    let Ok(stats) = rustix::fs::statvfs(dir) else {
        return Ok(());
    };
    space_error(stats.f_bavail.saturating_mul(stats.f_frsize), dir).map_or(Ok(()), Err)
}

fn space_error(available: u64, dir: &Path) -> Option<Error> {
    (available < MIN_FREE_BYTES).then(|| {
        Error::new(format!(
            "only {} MiB free on the file system of {}: a fleet's hosts need at least {} MiB there, and more as they run (their disks are files on it)",
            available >> 20,
            dir.display(),
            MIN_FREE_BYTES >> 20
        ))
        .help("free some space there (`sitec fleet down` of a fleet you no longer need removes its hosts' disks), or give `--state-root` a folder on a larger disk")
    })
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
    fn up_needs_room_for_its_hosts_disks() {
        let dir = Path::new("/srv/fleets");
        assert!(space_error(MIN_FREE_BYTES, dir).is_none());
        let e = space_error(300 << 20, dir)
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("only 300 MiB free on the file system of /srv/fleets"),
            "{e}"
        );
    }

    #[test]
    fn the_inotify_limit_is_raised_only_when_low() {
        assert_eq!(inotify_instances_wanted("128\n"), Some(INOTIFY_INSTANCES));
        assert_eq!(inotify_instances_wanted("1024\n"), None);
        assert_eq!(inotify_instances_wanted("65536"), None);
        assert_eq!(inotify_instances_wanted("garbage"), None);
    }
}
