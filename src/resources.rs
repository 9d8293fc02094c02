//! Resources: the units of desired state on one host.
//!
//! A role expands, per host, into resources of a few built-in kinds. Each
//! resource has a stable id (`file:/etc/nginx/...`), the spec line that
//! produced it, and the ids it requires and notifies. Files carry their
//! rendered content. Plain data: plan compares it with a host, apply makes
//! the host match it.

use crate::source::Span;
use serde::{Deserialize, Serialize};

/// The unit a `service` resource names, as systemd calls it and as its
/// file under /etc/systemd/system is named: `nginx` is `nginx.service`,
/// `postgresql@15-main` is `postgresql@15-main.service`; a name that ends
/// in a unit type's suffix (`backup.timer`, `srv-media.mount`) stays.
pub fn unit_name(name: &str) -> String {
    const SUFFIXES: [&str; 6] = [
        ".service", ".timer", ".socket", ".target", ".path", ".mount",
    ];
    if SUFFIXES.iter().any(|s| name.ends_with(s)) {
        name.to_string()
    } else {
        format!("{name}.service")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Kind {
    Package {
        name: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        version: Option<String>,
    },
    User {
        name: String,
        home: Option<String>,
        shell: Option<String>,
        system: bool,
        groups: Vec<String>,
        /// A fixed uid, and the gid of the user's own group (the same
        /// number); `None`: whatever useradd picks.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uid: Option<u32>,
    },
    Directory {
        path: String,
        owner: String,
        group: String,
        mode: String,
    },
    File {
        path: String,
        owner: String,
        group: String,
        mode: String,
        /// The template it was rendered from, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        template: Option<String>,
        /// sha256 of the content, hex.
        sha256: String,
        /// The content holds a secret's value: never shown in a plan.
        secret: bool,
        /// Remove the file instead of writing it.
        absent: bool,
        #[serde(skip)]
        content: String,
    },
    Symlink {
        path: String,
        target: String,
    },
    Service {
        name: String,
        enabled: bool,
        running: bool,
        reload: Option<String>,
        restart: Option<String>,
        /// Run before reloading or restarting; a failure keeps the old config.
        validate: Option<String>,
    },
    /// A folder of virtualenvs, one per content (`PATH/DIGEST`: the
    /// Python, the requirements and the wheels), each built beside the
    /// others and complete before a release links to it (a tree's `venv`).
    Virtualenv {
        path: String,
        python: String,
        /// The requirements file on the operator's machine.
        requirements: String,
        owner: String,
        /// Packages installed beside the requirements unless they name
        /// them: the database drivers sitec's settings use.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        packages: Vec<String>,
        /// Debian packages the build host installs to build a package
        /// that has no wheel (`plan::build`): the app's `build_packages`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        build_packages: Vec<String>,
    },
    /// An app's releases: `path` is a link to the live one, each a folder
    /// copied from the operator's machine under `releases/` beside it.
    Tree {
        path: String,
        source: String,
        owner: String,
        /// How many releases stay on the host (the live one among them).
        keep: u32,
        /// Run as `owner` in a new release before it goes live (its folder
        /// in `SITEC_RELEASE`); a failure leaves the live release as it was.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        check: Option<String>,
        /// Who runs `check` (default root). The release stays `owner`'s,
        /// read-only to them: they may write only `output`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
        /// A path in each release that `check` may write (collectstatic's
        /// folder): a link to `output/ID` beside the releases, `user`'s.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<String>,
        /// Run as `user` in the release after `check`, before it goes
        /// live (not for a rollback's pinned one): the database migrations,
        /// on the app's leader only. A failure leaves the live release.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        migrate: Option<String>,
        /// The virtualenv resource (its path, a folder of virtualenvs) each
        /// release runs: a new release holds a link `venv` to the one built
        /// for the spec's requirements, so the switch of the link to the
        /// live release switches code and virtualenv together.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        venv: Option<String>,
    },
    Command {
        name: String,
        run: String,
        unless: Option<String>,
        creates: Option<String>,
        /// Run as this user (default root).
        user: Option<String>,
    },
    Subvolume {
        path: String,
    },
    /// A Python the host's OS does not ship, built by sitec
    /// (`plan::python`) and unpacked from its blob into `path`
    /// (`/opt/sitec/python/3.13`) after `packages` (the libraries it links
    /// against) are installed. Made by the plan, never by a spec, for a
    /// host that lacks its virtualenvs' `python`.
    Python {
        path: String,
        python: String,
        /// Its `sys.version`.
        version: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        packages: Vec<String>,
    },
    Timer {
        name: String,
        every_seconds: u64,
        command: String,
        /// Who the command runs as. A state file written before timers
        /// had a user holds timers that ran as root.
        #[serde(default = "root")]
        user: String,
    },
}

fn root() -> String {
    "root".to_string()
}

impl Kind {
    /// The word before the colon in an id.
    pub fn word(&self) -> &'static str {
        match self {
            Kind::Package { .. } => "package",
            Kind::User { .. } => "user",
            Kind::Directory { .. } => "directory",
            Kind::File { .. } => "file",
            Kind::Symlink { .. } => "symlink",
            Kind::Service { .. } => "service",
            Kind::Virtualenv { .. } => "virtualenv",
            Kind::Tree { .. } => "tree",
            Kind::Command { .. } => "command",
            Kind::Subvolume { .. } => "subvolume",
            Kind::Python { .. } => "python",
            Kind::Timer { .. } => "timer",
        }
    }

    /// The name or path that identifies it on its host.
    pub fn key(&self) -> &str {
        match self {
            Kind::Package { name, .. }
            | Kind::User { name, .. }
            | Kind::Service { name, .. }
            | Kind::Command { name, .. }
            | Kind::Timer { name, .. } => name,
            Kind::Directory { path, .. }
            | Kind::File { path, .. }
            | Kind::Symlink { path, .. }
            | Kind::Virtualenv { path, .. }
            | Kind::Tree { path, .. }
            | Kind::Subvolume { path }
            | Kind::Python { path, .. } => path,
        }
    }
}

/// One resource on one host.
#[derive(Debug, Clone, Serialize)]
pub struct Resource {
    /// `kind:name-or-path`, unique on its host.
    pub id: String,
    #[serde(flatten)]
    pub kind: Kind,
    /// The role that asked for it.
    pub role: String,
    /// `file:line` of the role line that declares it.
    pub origin: String,
    /// `file:line` of the spec line that brought it to this host (the host's
    /// `roles`, the app, the database).
    pub because: String,
    /// Ids on the same host that must be in place first.
    pub requires: Vec<String>,
    /// Services (or commands) to reload or run when this one changes.
    pub notifies: Vec<String>,
    #[serde(skip)]
    pub span: Span,
}

pub fn id(kind: &Kind) -> String {
    format!("{}:{}", kind.word(), kind.key())
}

/// Hex sha256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}

/// Lowercase hex, by table: `format!` per byte cost as much as hashing a
/// small file (every rendered file's hash goes through here).
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names_get_a_suffix_once() {
        assert_eq!(unit_name("nginx"), "nginx.service");
        assert_eq!(
            unit_name("postgresql@15-main"),
            "postgresql@15-main.service"
        );
        assert_eq!(unit_name("backup.timer"), "backup.timer");
        assert_eq!(unit_name("srv-media.mount"), "srv-media.mount");
        assert_eq!(unit_name("sitec@.service"), "sitec@.service");
    }

    #[test]
    fn hex_is_lowercase() {
        assert_eq!(hex(&[0, 0xab, 0x10, 0xff]), "00ab10ff");
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
