//! A host's root file system: a tmpfs of its own holding the upper layer,
//! overlaid on this machine's `/`. Before the overlay is mounted the upper
//! layer gets what makes the host itself: a fresh machine-id, its hostname
//! and `/etc/hosts`, a static address for systemd-networkd, its own sshd host
//! key, a clean root account (an opaque `/root` holding only skeleton
//! dotfiles and the fleet's authorized key) and every unit it must not run
//! masked. Never writes to the machine's own `/`.

use super::error::{Error, Result};
use super::keys::{self, set_mode};
use super::layout::HostLayout;
use super::masks::units_to_mask;
use super::mounts;
use rustix::fs::{setxattr, XattrFlags};
use rustix::mount::{mount, MountFlags};
use std::ffi::CString;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// What one host's root is made of.
#[derive(Debug, Clone)]
pub struct HostRoot<'a> {
    pub layout: &'a HostLayout,
    pub hostname: &'a str,
    pub address: Ipv4Addr,
    pub prefix: u8,
    /// Every host of the fleet, for `/etc/hosts`.
    pub peers: &'a [(String, Ipv4Addr)],
    /// The host's sshd key (private; `.pub` beside it).
    pub host_key: &'a Path,
    /// The fleet's public key line for root's `authorized_keys`.
    pub authorized_key: &'a str,
}

impl HostRoot<'_> {
    /// Mounts the tmpfs, fills the upper layer, mounts the overlay. Anything
    /// already mounted there is taken down first (a crashed `up`).
    pub fn mount(&self) -> Result<()> {
        let (layer, root) = (self.layout.layer(), self.layout.root());
        mounts::unmount_below(&self.layout.dir)?;
        for d in [&layer, &root] {
            std::fs::create_dir_all(d).map_err(|e| Error::io(d.display(), &e))?;
        }
        mount(
            "tmpfs",
            &layer,
            "tmpfs",
            MountFlags::empty(),
            Some(cstr("mode=0755")?.as_c_str()),
        )
        .map_err(|e| {
            Error::new(format!("cannot mount a tmpfs on {}: {e}", layer.display()))
                .help("run as root")
        })?;
        self.fill_upper()?;
        let (upper, work) = (self.layout.upper(), self.layout.work());
        std::fs::create_dir_all(&work).map_err(|e| Error::io(work.display(), &e))?;
        for p in [&upper, &work] {
            let s = p.to_string_lossy();
            if s.contains(',') || s.contains(':') {
                return Err(Error::new(format!(
                    "{s} contains `,` or `:`, which overlayfs cannot take"
                ))
                .help("put the fleet's state in a directory whose path has neither"));
            }
        }
        let data = format!(
            "lowerdir=/,upperdir={},workdir={}",
            upper.display(),
            work.display()
        );
        mount(
            "overlay",
            &root,
            "overlay",
            MountFlags::empty(),
            Some(cstr(&data)?.as_c_str()),
        )
        .map_err(|e| {
            Error::new(format!(
                "cannot mount the overlay on {}: {e}",
                root.display()
            ))
        })?;
        Ok(())
    }

    fn fill_upper(&self) -> Result<()> {
        let up = self.layout.upper();
        let etc = up.join("etc");
        write(&etc.join("machine-id"), &(machine_id()? + "\n"), 0o444)?;
        write(
            &etc.join("hostname"),
            &format!("{}\n", self.hostname),
            0o644,
        )?;
        // Every host (itself included) by its fleet address; no 127.0.1.1 line.
        let mut hosts =
            String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
        for (name, addr) in self.peers {
            let _ = writeln!(hosts, "{addr}\t{name}");
        }
        write(&etc.join("hosts"), &hosts, 0o644)?;
        let network = format!(
            "# Written by sitec fleet: the host's fixed address on the fleet's bridge.\n\
             [Match]\nName=host0\n\n[Network]\nAddress={}/{}\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n",
            self.address, self.prefix
        );
        write(
            &etc.join("systemd/network/10-host0.network"),
            &network,
            0o644,
        )?;

        let system = etc.join("systemd/system");
        for unit in units_to_mask(Path::new("/")) {
            symlink(Path::new("/dev/null"), &system.join(unit))?;
        }
        let lib = Path::new("/lib/systemd/system");
        for (wants, unit) in [
            ("multi-user.target.wants", "systemd-networkd.service"),
            ("sockets.target.wants", "systemd-networkd.socket"),
            ("multi-user.target.wants", "ssh.service"),
        ] {
            symlink(&lib.join(unit), &system.join(wants).join(unit))?;
        }

        let ssh = etc.join("ssh");
        let key = std::fs::read_to_string(self.host_key)
            .map_err(|e| Error::io(self.host_key.display(), &e))?;
        let public = keys::public_key(self.host_key)?;
        write(&ssh.join("ssh_host_ed25519_key"), &key, 0o600)?;
        write(
            &ssh.join("ssh_host_ed25519_key.pub"),
            &(public + "\n"),
            0o644,
        )?;
        write(
            &ssh.join("sshd_config.d/10-sitec.conf"),
            "# Written by sitec fleet: this host's own key only; keys, never passwords.\n\
             HostKey /etc/ssh/ssh_host_ed25519_key\nPasswordAuthentication no\nPermitRootLogin prohibit-password\n",
            0o644,
        )?;

        let root = up.join("root");
        mkdir(&root, 0o700)?;
        setxattr(&root, "trusted.overlay.opaque", b"y", XattrFlags::empty())
            .map_err(|e| Error::new(format!("cannot mark {} opaque: {e}", root.display())))?;
        for dotfile in [".bashrc", ".profile"] {
            let skel = Path::new("/etc/skel").join(dotfile);
            if let Ok(text) = std::fs::read_to_string(&skel) {
                write(&root.join(dotfile), &text, 0o644)?;
            }
        }
        mkdir(&root.join(".ssh"), 0o700)?;
        write(
            &root.join(".ssh/authorized_keys"),
            &format!("{}\n", self.authorized_key),
            0o600,
        )
    }
}

fn cstr(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::new(format!("`{s}` contains a NUL byte")))
}

fn mkdir(path: &Path, mode: u32) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| Error::io(path.display(), &e))?;
    set_mode(path, mode)
}

fn write(path: &Path, text: &str, mode: u32) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), &e))?;
    }
    std::fs::write(path, text).map_err(|e| Error::io(path.display(), &e))?;
    set_mode(path, mode)
}

fn symlink(target: &Path, link: &Path) -> Result<()> {
    if let Some(dir) = link.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), &e))?;
    }
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(target, link).map_err(|e| Error::io(link.display(), &e))
}

/// A fresh machine-id: 32 lowercase hex digits from the kernel's random UUID.
fn machine_id() -> Result<String> {
    let path: PathBuf = "/proc/sys/kernel/random/uuid".into();
    let uuid = std::fs::read_to_string(&path).map_err(|e| Error::io(path.display(), &e))?;
    Ok(uuid.trim().replace('-', ""))
}
