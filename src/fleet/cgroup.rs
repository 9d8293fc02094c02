//! Each host's own cgroup (`sitec/<fleet>/<host>`), in every hierarchy
//! systemd uses on this machine: `unified` and `systemd` on a hybrid layout,
//! the root on a pure cgroup-v2 one. Without it every nspawn shares its
//! parent shell's cgroup and stops hang for 20–90 s (see FLEET.md). Creates,
//! kills what is left inside, and removes; never touches other cgroups.

use super::error::{Error, Result};
use rustix::process::{kill_process, Pid, Signal};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const ROOT: &str = "/sys/fs/cgroup";

/// The hierarchies to place a host in.
fn hierarchies() -> Vec<PathBuf> {
    let root = Path::new(ROOT);
    if root.join("cgroup.controllers").exists() {
        return vec![root.to_owned()];
    }
    ["unified", "systemd"]
        .iter()
        .map(|h| root.join(h))
        .filter(|p| p.join("cgroup.procs").exists())
        .collect()
}

/// One host's cgroup, by its path relative to each hierarchy.
#[derive(Debug, Clone)]
pub struct HostCgroup {
    pub relative: String,
}

impl HostCgroup {
    #[must_use]
    pub fn new(fleet: &str, host: &str) -> Self {
        Self {
            relative: format!("sitec/{fleet}/{host}"),
        }
    }

    /// The relative paths of every host cgroup of `fleet` that exists.
    #[must_use]
    pub fn existing(fleet: &str) -> Vec<String> {
        let mut names = Vec::new();
        for h in hierarchies() {
            if let Ok(d) = std::fs::read_dir(h.join("sitec").join(fleet)) {
                for e in d.filter_map(std::result::Result::ok) {
                    if e.path().is_dir() {
                        names.push(format!("sitec/{fleet}/{}", e.file_name().to_string_lossy()));
                    }
                }
            }
        }
        names.sort();
        names.dedup();
        names
    }

    /// The cgroup's directory in each hierarchy.
    #[must_use]
    pub fn dirs(&self) -> Vec<PathBuf> {
        hierarchies()
            .into_iter()
            .map(|h| h.join(&self.relative))
            .collect()
    }

    /// Creates the cgroup in every hierarchy; returns the `cgroup.procs`
    /// files a process writes its pid into to join it.
    pub fn create(&self) -> Result<Vec<PathBuf>> {
        let dirs = self.dirs();
        if dirs.is_empty() {
            return Err(
                Error::new(format!("no cgroup hierarchy found under {ROOT}"))
                    .help("mount cgroup2 on /sys/fs/cgroup (or the hybrid layout systemd uses)"),
            );
        }
        dirs.into_iter()
            .map(|d| {
                std::fs::create_dir_all(&d)
                    .map_err(|e| Error::io(format!("cannot create cgroup {}", d.display()), &e))?;
                Ok(d.join("cgroup.procs"))
            })
            .collect()
    }

    /// Kills every process left in the cgroup (and below), waits for them
    /// to go, then removes its directories bottom-up, and the fleet's and
    /// `sitec` directories above it when they are empty.
    pub fn remove(&self) -> Result<()> {
        for dir in self.dirs() {
            if !dir.exists() {
                continue;
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let pids = pids_below(&dir);
                if pids.is_empty() {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(Error::new(format!(
                        "processes {pids:?} in {} will not die",
                        dir.display()
                    )));
                }
                let _ = std::fs::write(dir.join("cgroup.kill"), "1");
                for pid in pids {
                    if let Some(pid) = Pid::from_raw(pid) {
                        let _ = kill_process(pid, Signal::KILL);
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            remove_tree(&dir)?;
            // The fleet's and sitec's directories go once empty; another
            // host or fleet still in them keeps them (that rmdir fails).
            if let Some(fleet_dir) = dir.parent() {
                let _ = std::fs::remove_dir(fleet_dir);
                if let Some(sitec) = fleet_dir.parent() {
                    let _ = std::fs::remove_dir(sitec);
                }
            }
        }
        Ok(())
    }
}

/// Pids in `dir`'s `cgroup.procs` and every child cgroup's.
fn pids_below(dir: &Path) -> Vec<i32> {
    let mut pids: Vec<i32> = std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    if let Ok(d) = std::fs::read_dir(dir) {
        for e in d.filter_map(std::result::Result::ok) {
            if e.path().is_dir() {
                pids.extend(pids_below(&e.path()));
            }
        }
    }
    pids
}

/// Removes a cgroup directory and its children, deepest first (cgroup
/// directories go with `rmdir`; their files cannot be deleted).
fn remove_tree(dir: &Path) -> Result<()> {
    if let Ok(d) = std::fs::read_dir(dir) {
        for e in d.filter_map(std::result::Result::ok) {
            if e.path().is_dir() {
                remove_tree(&e.path())?;
            }
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(
            format!("cannot remove cgroup {}", dir.display()),
            &e,
        )),
    }
}
