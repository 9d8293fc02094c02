//! The fleet's keys, made with `ssh-keygen`: one ed25519 key for root on
//! every host, one sshd host key per host (kept across `down`, so a host
//! keeps its identity), and the `known_hosts` that pins them.

use super::command::run;
use super::error::{Error, Result};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// Makes an ed25519 key pair at `path` (and `path.pub`) unless one exists.
pub(crate) fn ensure_key(path: &Path, comment: &str) -> Result<()> {
    if path.exists() && pub_path(path).exists() {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), &e))?;
        set_mode(dir, 0o700)?;
    }
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(pub_path(path));
    let p = path.to_string_lossy();
    run(
        "ssh-keygen",
        &["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", &p],
    )
    .map_err(|e| e.help("apt-get install openssh-client"))?;
    Ok(())
}

/// `key.pub` beside `key`.
pub(crate) fn pub_path(key: &Path) -> PathBuf {
    let mut s = key.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

/// The `type base64` part of a public key file.
pub(crate) fn public_key(key: &Path) -> Result<String> {
    let path = pub_path(key);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(path.display(), &e))?;
    let mut words = text.split_whitespace();
    match (words.next(), words.next()) {
        (Some(kind), Some(b64)) => Ok(format!("{kind} {b64}")),
        _ => Err(Error::new(format!(
            "{} is not a public key",
            path.display()
        ))),
    }
}

/// `known_hosts` lines: `name,address type key` for each host.
pub(crate) fn known_hosts(entries: &[(String, Ipv4Addr, String)]) -> String {
    entries
        .iter()
        .fold(String::new(), |mut s, (name, addr, key)| {
            let _ = writeln!(s, "{name},{addr} {key}");
            s
        })
}

pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(path.display(), &e))
}
