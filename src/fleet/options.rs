//! How to run a fleet on this machine: where its state lives, which bridge
//! and subnet it uses, how long a boot may take, which SSH key exchange.

use super::subnet::Subnet;
use crate::transport::Kex;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Machine-side settings of `up`, `down` and `status` (the spec says *what*
/// hosts; these say *where* and *how*).
#[derive(Debug, Clone)]
pub struct Options {
    /// The directory holding one state directory per fleet
    /// (`<state_root>/<name>/`); `.fleet` beside the spec by default.
    pub state_root: PathBuf,
    /// The bridge every host's `host0` is attached to; created by `up`,
    /// removed by `down` once no fleet uses it. At most 15 bytes.
    pub bridge: String,
    /// The bridge's subnet; the bridge holds its first address.
    pub subnet: Subnet,
    /// How long a host may take from start to "ssh answers and systemd says
    /// running".
    pub boot_timeout: Duration,
    /// The key exchange offered to the hosts' sshd.
    pub kex: Kex,
}

impl Default for Options {
    fn default() -> Self {
        Self::beside(Path::new("."))
    }
}

impl Options {
    /// Defaults with the state in `<dir>/.fleet/` (pass the spec's folder).
    #[must_use]
    pub fn beside(dir: &Path) -> Self {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
        Self {
            state_root: dir.join(".fleet"),
            bridge: "sitec0".into(),
            subnet: Subnet::default(),
            boot_timeout: Duration::from_secs(60),
            kex: Kex::default(),
        }
    }
}
