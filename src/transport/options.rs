//! How to reach hosts: user, key, pinned known_hosts, timeouts and key
//! exchange, rendered as one self-contained `ssh_config` (the machine's own
//! `/etc/ssh/ssh_config` and `~/.ssh` are never read).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

/// Which key exchange to offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kex {
    /// `curve25519-sha256` only: about ten times less client CPU per new
    /// connection than OpenSSH 9.2's post-quantum default (see the bench).
    #[default]
    Curve25519,
    /// Whatever the system ssh offers by default.
    SystemDefault,
}

/// Seconds between keepalives on an idle connection, and how many may go
/// unanswered before ssh declares the host gone.
const KEEPALIVE_INTERVAL_SECS: u32 = 5;
const KEEPALIVE_COUNT: u32 = 3;

/// Everything ssh needs to reach a set of hosts.
#[derive(Debug, Clone)]
pub struct SshOptions {
    /// The remote user (`root` on local fleets).
    pub user: String,
    /// The private key to offer; `None` uses ssh's default identities.
    pub identity: Option<PathBuf>,
    /// The known_hosts file every host key must be in (strict checking).
    pub known_hosts: PathBuf,
    /// How long to wait for a TCP connection and the SSH handshake.
    pub connect_timeout: Duration,
    pub kex: Kex,
}

impl SshOptions {
    /// Options for `user` with strict checking against `known_hosts`.
    #[must_use]
    pub fn new(user: impl Into<String>, known_hosts: impl Into<PathBuf>) -> Self {
        Self {
            user: user.into(),
            identity: None,
            known_hosts: known_hosts.into(),
            connect_timeout: Duration::from_secs(10),
            kex: Kex::default(),
        }
    }

    /// The `ssh_config` text for these options, applying to every host
    /// (`Host *`). Paths are quoted, so spaces in them are fine.
    #[must_use]
    pub fn config_text(&self) -> String {
        let mut s =
            String::from("# Written by sitec; every connection to the fleet uses it.\nHost *\n");
        let mut line = |k: &str, v: &str| {
            let _ = writeln!(s, "  {k} {v}");
        };
        line("User", &self.user);
        line("BatchMode", "yes");
        line("StrictHostKeyChecking", "yes");
        line(
            "UserKnownHostsFile",
            &quote(&self.known_hosts.to_string_lossy()),
        );
        line("GlobalKnownHostsFile", "/dev/null");
        line("UpdateHostKeys", "no");
        line("CheckHostIP", "no");
        line("LogLevel", "ERROR");
        line(
            "ConnectTimeout",
            &self.connect_timeout.as_secs().max(1).to_string(),
        );
        // A host that vanishes mid-apply (frozen, its network cut) sends no
        // reset: without keepalives its commands would wait for TCP to give
        // up, a quarter of an hour. With these its master gives up after
        // about 15-20 s, so the host fails alone and the apply goes on. A
        // long command (pip, a migration) still answers them: they are
        // pings of the connection, not of the command.
        line("ServerAliveInterval", &KEEPALIVE_INTERVAL_SECS.to_string());
        line("ServerAliveCountMax", &KEEPALIVE_COUNT.to_string());
        if let Some(identity) = &self.identity {
            line("IdentityFile", &quote(&identity.to_string_lossy()));
            line("IdentitiesOnly", "yes");
        }
        if self.kex == Kex::Curve25519 {
            line(
                "KexAlgorithms",
                "curve25519-sha256,curve25519-sha256@libssh.org",
            );
        }
        s
    }
}

fn quote(path: &str) -> String {
    format!("\"{}\"", path.replace('"', ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_pins_known_hosts_and_kex() {
        let mut o = SshOptions::new("root", "/s/known hosts");
        o.identity = Some("/s/id_ed25519".into());
        let text = o.config_text();
        assert!(text.contains("StrictHostKeyChecking yes"));
        assert!(text.contains("UserKnownHostsFile \"/s/known hosts\""));
        assert!(text.contains("GlobalKnownHostsFile /dev/null"));
        assert!(text.contains("IdentitiesOnly yes"));
        assert!(text.contains("KexAlgorithms curve25519-sha256"));
        assert!(text.contains("ServerAliveInterval 5\n  ServerAliveCountMax 3"));
        o.kex = Kex::SystemDefault;
        assert!(!o.config_text().contains("KexAlgorithms"));
    }
}
