//! This machine's mount table (`/proc/mounts`), read to find what a fleet
//! mounted and to take it down deepest first. Mounting itself is in
//! `rootfs`; this only reads and unmounts.

use super::error::{Error, Result};
use rustix::mount::{unmount, UnmountFlags};
use std::path::{Path, PathBuf};

/// Every mount point at or below `dir`, deepest first. `dir` is resolved
/// first: the kernel lists mount points without symlinks.
pub fn below(dir: &Path) -> Result<Vec<PathBuf>> {
    let resolved = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    let dir = resolved.as_path();
    let text =
        std::fs::read_to_string("/proc/mounts").map_err(|e| Error::io("/proc/mounts", &e))?;
    let mut points: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .map(|p| PathBuf::from(unescape(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    Ok(points)
}

/// Unmounts every mount at or below `dir`, deepest first; a busy one is
/// detached (it goes once its last user does).
pub fn unmount_below(dir: &Path) -> Result<()> {
    // A path mounted twice shows up once per mount: repeat until clear.
    for _ in 0..8 {
        let points = below(dir)?;
        if points.is_empty() {
            return Ok(());
        }
        for p in points {
            if unmount(&p, UnmountFlags::empty()).is_err() {
                unmount(&p, UnmountFlags::DETACH)
                    .map_err(|e| Error::new(format!("cannot unmount {}: {e}", p.display())))?;
            }
        }
    }
    Err(Error::new(format!(
        "mounts below {} keep coming back",
        dir.display()
    )))
}

/// Decodes the octal escapes of `/proc/mounts` (`\040` for a space, …).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..=i + 3].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_spaces() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/end\\04"), "/end\\04");
    }
}
