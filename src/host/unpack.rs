//! Unpacks a tar (an app's release, a wheelhouse) into a folder through
//! open handles ([`super::nofollow`]): each entry's folders are walked from
//! the top without following a link, so an entry can never write through a
//! link an earlier entry made (`app -> /etc`, then `app/passwd`); `..` and
//! absolute names are refused, and so are hard links, devices and FIFOs.
//! Links are made as links, pointing wherever they point: nothing here
//! follows them. Modes keep only the permission bits (never setuid).

use super::nofollow::{Dir, Ownership};
use std::ffi::OsStr;
use std::io::Read;
use std::path::{Component, Path};

/// Unpacks `archive` into `into`, everything owned by `uid`:`gid`.
pub fn unpack(archive: impl Read, into: &Dir, uid: u32, gid: u32) -> Result<(), String> {
    let mut archive = tar::Archive::new(archive);
    let entries = archive
        .entries()
        .map_err(|e| format!("cannot read the archive: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("cannot read the archive: {e}"))?;
        let name = entry
            .path()
            .map_err(|e| format!("an archive entry has an unreadable name: {e}"))?
            .into_owned();
        let (folders, last) = plain_names(&name)?;
        let Some(last) = last else { continue };
        let mut dir = into.try_clone()?;
        for folder in folders {
            dir = dir.make_sub(folder, 0o755)?;
        }
        let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
        let own = Ownership { uid, gid, mode };
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            dir.make_sub(last, 0o700)?.set_ownership(own)?;
        } else if kind.is_file() {
            // A name given twice: the later entry wins, as with tar.
            if dir.meta(last)?.is_some() {
                dir.remove_file(last)?;
            }
            let mut file = dir.create_file(last, Some(own))?;
            std::io::copy(&mut entry, &mut file)
                .map_err(|e| format!("cannot unpack {}: {e}", name.display()))?;
        } else if kind.is_symlink() {
            let target = entry
                .link_name()
                .map_err(|e| format!("cannot read the link {}: {e}", name.display()))?
                .ok_or_else(|| format!("the link {} has no target", name.display()))?
                .into_owned();
            dir.symlink(last, &target)?;
            dir.chown_entry(last, uid, gid)?;
        } else {
            return Err(format!(
                "the archive entry {} is a {kind:?}; only files, folders and symbolic links are unpacked",
                name.display()
            ));
        }
    }
    Ok(())
}

/// An entry's folders and last name: plain names only.
fn plain_names(name: &Path) -> Result<(Vec<&OsStr>, Option<&OsStr>), String> {
    let mut names = Vec::new();
    for part in name.components() {
        match part {
            Component::Normal(n) => names.push(n),
            Component::CurDir => {}
            _ => {
                return Err(format!(
                    "the archive entry {} reaches outside its folder (`..` or an absolute name); it is not unpacked",
                    name.display()
                ))
            }
        }
    }
    let last = names.pop();
    Ok((names, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().expect("tar")
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, name: &str, text: &str) {
        let mut h = header(tar::EntryType::Regular, 0o4755, text.len() as u64);
        b.append_data(&mut h, name, text.as_bytes()).expect("file");
    }

    fn link(b: &mut tar::Builder<Vec<u8>>, name: &str, target: &str) {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        b.append_link(&mut h, name, target).expect("link");
    }

    fn me() -> (u32, u32) {
        (
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        )
    }

    fn unpacked(bytes: &[u8]) -> (tempfile::TempDir, Result<(), String>) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = Dir::existing(tmp.path()).expect("open");
        let (uid, gid) = me();
        let result = unpack(bytes, &dir, uid, gid);
        (tmp, result)
    }

    #[test]
    fn files_folders_and_links_are_unpacked_without_setuid() {
        let bytes = archive(|b| {
            let mut h = header(tar::EntryType::Directory, 0o755, 0);
            b.append_data(&mut h, "app", std::io::empty()).expect("dir");
            file(b, "app/run.py", "print(1)\n");
            link(b, "app/latest", "run.py");
        });
        let (tmp, result) = unpacked(&bytes);
        result.expect("unpacked");
        let run = tmp.path().join("app/run.py");
        assert_eq!(std::fs::read_to_string(&run).expect("read"), "print(1)\n");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&run).expect("meta").permissions(),
        );
        assert_eq!(mode & 0o7777, 0o755, "no setuid bit");
        assert_eq!(
            std::fs::read_link(tmp.path().join("app/latest")).expect("link"),
            Path::new("run.py")
        );
    }

    /// An entry that would write through a link made by an earlier one.
    #[test]
    fn an_entry_under_a_link_is_refused_and_nothing_is_written_through_it() {
        let outside = tempfile::tempdir().expect("tempdir");
        let target = outside.path().to_string_lossy().into_owned();
        let bytes = archive(|b| {
            link(b, "escape", &target);
            file(b, "escape/planted", "owned\n");
        });
        let (_tmp, result) = unpacked(&bytes);
        let error = result.expect_err("refused");
        assert!(error.contains("symbolic link"), "{error}");
        assert!(!outside.path().join("planted").exists());
    }

    #[test]
    fn dot_dot_and_absolute_names_are_refused() {
        for name in ["../outside", "a/../../outside", "/outside-absolute"] {
            // tar::Builder refuses `..` itself: the name goes into the header.
            let bytes = archive(|b| {
                let mut h = header(tar::EntryType::Regular, 0o644, 1);
                h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
                h.set_cksum();
                b.append(&h, "y".as_bytes()).expect("raw entry");
            });
            let (tmp, result) = unpacked(&bytes);
            let error = result.expect_err("refused");
            assert!(error.contains("reaches outside"), "{name}: {error}");
            assert!(!tmp
                .path()
                .parent()
                .expect("parent")
                .join("outside")
                .exists());
        }
    }

    #[test]
    fn hard_links_and_devices_are_refused() {
        let bytes = archive(|b| {
            file(b, "a", "x");
            let mut h = header(tar::EntryType::Link, 0o644, 0);
            b.append_link(&mut h, "b", "a").expect("hard link");
        });
        let (_tmp, result) = unpacked(&bytes);
        assert!(result.expect_err("refused").contains("Link"));
    }
}
