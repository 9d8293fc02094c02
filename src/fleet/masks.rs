//! Which units a host must not run. Each host's root is this machine's `/`,
//! so it would boot every service the machine has enabled (nginx, Postgres,
//! HAProxy, Redis, timers…). Everything enabled here is masked, and so is a
//! list of well-known services, except what a host needs: sshd and
//! systemd-networkd (and systemd's own core units, which are never listed).

use std::path::Path;

/// Services masked whether or not the machine enabled them.
const ALWAYS: &[&str] = &[
    "nginx.service",
    "apache2.service",
    "haproxy.service",
    "postgresql.service",
    "mariadb.service",
    "mysql.service",
    "redis.service",
    "redis-server.service",
    "memcached.service",
    "docker.service",
    "containerd.service",
    "cron.service",
    "rsyslog.service",
    "exim4.service",
    "postfix.service",
    "unattended-upgrades.service",
    "networking.service",
    "NetworkManager.service",
    "ModemManager.service",
    "systemd-timesyncd.service",
    "systemd-pstore.service",
    "e2scrub_reap.service",
    "getty@tty1.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
    "man-db.timer",
    "logrotate.timer",
];

/// Units a host keeps even when listed above or enabled here.
const KEEP: &[&str] = &[
    "ssh.service",
    "sshd.service",
    "ssh.socket",
    "systemd-networkd.service",
    "systemd-networkd.socket",
    "dbus.service",
    "dbus.socket",
];

/// The units to mask: [`ALWAYS`] plus every service, socket, timer or path
/// unit enabled under `etc/systemd/system/*.wants/` of `root`, minus
/// [`KEEP`]. Sorted, no duplicates.
#[must_use]
pub fn units_to_mask(root: &Path) -> Vec<String> {
    let mut units: Vec<String> = ALWAYS.iter().map(|s| (*s).to_owned()).collect();
    let system = root.join("etc/systemd/system");
    if let Ok(dirs) = std::fs::read_dir(&system) {
        for dir in dirs.filter_map(std::result::Result::ok) {
            if !dir.file_name().to_string_lossy().ends_with(".wants") {
                continue;
            }
            let Ok(entries) = std::fs::read_dir(dir.path()) else {
                continue;
            };
            for e in entries.filter_map(std::result::Result::ok) {
                let name = e.file_name().to_string_lossy().into_owned();
                let kinds = [".service", ".socket", ".timer", ".path"];
                if kinds.iter().any(|k| name.ends_with(k)) {
                    units.push(name);
                }
            }
        }
    }
    units.retain(|u| !KEEP.contains(&u.as_str()));
    units.sort();
    units.dedup();
    units
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_enabled_units_but_keeps_sshd() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let wants = dir
            .path()
            .join("etc/systemd/system/multi-user.target.wants");
        std::fs::create_dir_all(&wants)?;
        for u in ["ssh.service", "foo.service", "bar.target", "nginx.service"] {
            std::fs::write(wants.join(u), "")?;
        }
        let units = units_to_mask(dir.path());
        assert!(units.contains(&"foo.service".to_owned()));
        assert!(units.contains(&"nginx.service".to_owned()));
        assert!(units.contains(&"haproxy.service".to_owned()));
        assert!(!units.contains(&"ssh.service".to_owned()));
        assert!(!units.iter().any(|u| u.ends_with(".target")));
        Ok(())
    }
}
