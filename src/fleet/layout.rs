//! Where each file of a fleet's state directory lives. Knows paths only;
//! never creates or reads them.

use std::path::{Path, PathBuf};

/// The paths of one fleet's state directory (`<state_root>/<name>/`):
///
/// ```text
/// keys/id_ed25519{,.pub}        the fleet's root key        (kept by down)
/// keys/host-<h>_ed25519{,.pub}  each host's sshd key        (kept by down)
/// known_hosts, ssh_config       how to reach the hosts (`ssh -F ssh_config lb1`)
/// fleet.json                    what is up
/// hosts/<h>/layer/{upper,work}  the host's tmpfs: its writable layer
/// hosts/<h>/root                the host's root: overlay of `/` and the layer
/// hosts/<h>/nspawn.pid, console.log
/// hosts/<h>/btrfs.img, btrfs/   a database or backup host's btrfs image, mounted
/// lock                          held by up and down
/// ```
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    #[must_use]
    pub fn new(state_root: &Path, fleet: &str) -> Self {
        Self {
            dir: state_root.join(fleet),
        }
    }

    #[must_use]
    pub fn keys(&self) -> PathBuf {
        self.dir.join("keys")
    }

    #[must_use]
    pub fn client_key(&self) -> PathBuf {
        self.keys().join("id_ed25519")
    }

    #[must_use]
    pub fn host_key(&self, host: &str) -> PathBuf {
        self.keys().join(format!("host-{host}_ed25519"))
    }

    #[must_use]
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    #[must_use]
    pub fn ssh_config(&self) -> PathBuf {
        self.dir.join("ssh_config")
    }

    #[must_use]
    pub fn fleet_json(&self) -> PathBuf {
        self.dir.join("fleet.json")
    }

    #[must_use]
    pub fn lock(&self) -> PathBuf {
        self.dir.join("lock")
    }

    #[must_use]
    pub fn hosts(&self) -> PathBuf {
        self.dir.join("hosts")
    }

    #[must_use]
    pub fn host(&self, host: &str) -> HostLayout {
        HostLayout {
            dir: self.hosts().join(host),
        }
    }
}

/// The paths of one host inside its fleet's state directory.
#[derive(Debug, Clone)]
pub struct HostLayout {
    pub dir: PathBuf,
}

impl HostLayout {
    #[must_use]
    pub fn layer(&self) -> PathBuf {
        self.dir.join("layer")
    }

    #[must_use]
    pub fn upper(&self) -> PathBuf {
        self.layer().join("upper")
    }

    #[must_use]
    pub fn work(&self) -> PathBuf {
        self.layer().join("work")
    }

    #[must_use]
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    #[must_use]
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("nspawn.pid")
    }

    #[must_use]
    pub fn console_log(&self) -> PathBuf {
        self.dir.join("console.log")
    }

    /// The host's btrfs image (on this machine's disk: the host's folder
    /// is, its `layer` tmpfs is not).
    #[must_use]
    pub fn btrfs_image(&self) -> PathBuf {
        self.dir.join("btrfs.img")
    }

    /// Where the image is mounted on this machine.
    #[must_use]
    pub fn btrfs_mount(&self) -> PathBuf {
        self.dir.join("btrfs")
    }
}
