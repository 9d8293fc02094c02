//! A host's btrfs file system: what a real database or backup host has on
//! its disk, made from an image file. The image (sparse, `btrfs.img` in the
//! host's state folder, on this machine's disk) is loop-mounted beside the
//! host's root; each data path the spec puts on btrfs (`subvolume`
//! resources: `/var/lib/postgresql`, `/srv/sitec/backups`...) becomes a
//! subvolume of it, holding what this machine has at that path (so the host
//! looks as if its packages were installed after the subvolume was made),
//! and is bound into the container there ([`Volume::binds`]). Every path of
//! one host is on the one file system, so snapshots and `btrfs send` work
//! across them as on a real host. `down` unmounts it (the loop device goes
//! with the last mount) and removes the image with the host's folder.

use super::command::run;
use super::error::{Error, Result};
use super::layout::HostLayout;
use super::mounts;
use std::path::{Path, PathBuf};

/// The image's size. Sparse: only what the host writes takes disk space,
/// and a 1 GB database with its snapshots fits.
const IMAGE_BYTES: u64 = 16 << 30;

/// One host's btrfs file system and the data paths bound from it.
#[derive(Debug, Clone)]
pub struct Volume<'a> {
    pub layout: &'a HostLayout,
    /// Absolute paths inside the host, each a subvolume.
    pub paths: &'a [String],
}

impl Volume<'_> {
    /// Makes a fresh image, mounts it and fills one subvolume per path
    /// (a host's data lives and dies with its container, like its
    /// writable layer). Anything mounted there before is taken down first.
    pub fn make(&self) -> Result<()> {
        let (image, mount) = (self.layout.btrfs_image(), self.layout.btrfs_mount());
        mounts::unmount_below(&mount)?;
        let _ = std::fs::remove_file(&image);
        std::fs::create_dir_all(&mount).map_err(|e| Error::io(mount.display(), &e))?;
        let file = std::fs::File::create(&image).map_err(|e| Error::io(image.display(), &e))?;
        file.set_len(IMAGE_BYTES)
            .map_err(|e| Error::io(image.display(), &e))?;
        drop(file);
        let (image_text, mount_text) = (image.to_string_lossy(), mount.to_string_lossy());
        run("mkfs.btrfs", &["-q", &image_text])
            .map_err(|e| e.help("apt-get install btrfs-progs"))?;
        // `-o loop`: mount sets the loop device up to go away with the mount.
        run(
            "mount",
            &["-t", "btrfs", "-o", "loop", &image_text, &mount_text],
        )?;
        for path in self.paths {
            let sub = self.subvolume(path)?;
            let sub_text = sub.to_string_lossy();
            run("btrfs", &["subvolume", "create", &sub_text])?;
            copy_machine_folder(Path::new(path), &sub)?;
        }
        Ok(())
    }

    /// The subvolume holding `path`: `var-lib-postgresql` for `/var/lib/postgresql`.
    fn subvolume(&self, path: &str) -> Result<PathBuf> {
        let name = path.trim_matches('/').replace('/', "-");
        let usable = path.starts_with('/')
            && !name.is_empty()
            && !path.split('/').any(|p| p == "." || p == "..")
            && (name.bytes()).all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !usable {
            return Err(
                Error::new(format!("`{path}` cannot be a data path of a local host")).help(
                    "write subvolume paths as absolute paths of letters, digits, `-`, `_` and `.`",
                ),
            );
        }
        Ok(self.layout.btrfs_mount().join(name))
    }

    /// `systemd-nspawn` arguments binding each subvolume at its path.
    pub fn binds(&self) -> Result<Vec<String>> {
        self.paths
            .iter()
            .map(|p| Ok(format!("--bind={}:{p}", self.subvolume(p)?.display())))
            .collect()
    }
}

/// Copies what this machine has at `path` (its packages' files, owners and
/// modes) into the fresh subvolume `into`, the folder's own owner and mode
/// included. Nothing there: the subvolume stays empty (root, 0755).
fn copy_machine_folder(path: &Path, into: &Path) -> Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.is_dir() {
        return Ok(());
    }
    let from = format!("{}/.", path.display());
    let to = into.to_string_lossy();
    run("cp", &["-a", "--reflink=auto", &from, &to])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_subvolumes_and_odd_ones_are_refused() {
        let layout = HostLayout {
            dir: PathBuf::from("/s/hosts/db1"),
        };
        let paths = [
            "/var/lib/postgresql".to_string(),
            "/srv/sitec/backups".into(),
        ];
        let volume = Volume {
            layout: &layout,
            paths: &paths,
        };
        assert_eq!(
            volume.binds().expect("usable paths"),
            [
                "--bind=/s/hosts/db1/btrfs/var-lib-postgresql:/var/lib/postgresql",
                "--bind=/s/hosts/db1/btrfs/srv-sitec-backups:/srv/sitec/backups"
            ]
        );
        for odd in ["relative", "/", "/a/../b", "/with space", "/a:b"] {
            assert!(volume.subvolume(odd).is_err(), "{odd}");
        }
    }
}
