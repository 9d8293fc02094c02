//! `sitec restore SPEC APP/STORE [--snapshot HOST/STAMP] [--to HOST]`: puts
//! a snapshot of an app's `media` store back into its folder on a runner
//! (`/srv/sitec/apps/APP/media/STORE`), and says what it holds.
//!
//! The snapshot is the runner's own (`media.APP.STORE` in each snapshot of
//! a runner a backup pulls from), fetched as a database's is: from the
//! target itself when it holds it, else from a backup host, streamed
//! through the operator's machine. By default it goes back to the runner
//! whose data it is; `--to` names another runner of the app.
//!
//! The folder is the app's (`app-APP:www-data 2750`) and the app writes in
//! it while it serves, so root never opens a path inside it: root only
//! reads the snapshot (read-only, in root's folder) as a `tar` stream,
//! and checks the folder's own entry (in root's `media/`). Everything
//! inside is the app user's own work (`runuser`): unpacking into a new
//! folder inside the store, then moving what was there into
//! `.sitec-before-restore` (kept, the app's alone, 0700: nginx cannot serve
//! it) and the copy's entries into their place. Its umask 0027 and the
//! folder's setgid bit make every file and folder app-APP:www-data,
//! 0640/2750, as the app's own uploads are. The folder itself stays the
//! same one, a subvolume or a mount point as it was: the app's running
//! services keep it open and writable, nothing restarts. Between the two
//! moves (renames, milliseconds) a request may find a file missing.

use super::backups::{self, DataSet, Row};
use super::bytes_words;
use super::reach::Hosts;
use super::restore::{nearest, stream_copy, tar_out, wanted};
use crate::context::{app_user, media_dir};
use crate::model::{AppId, Fleet, HostId};
use crate::transport::shell_quote as q;
use std::time::Instant;

/// Where the copy is unpacked, inside the store, before it takes its place.
const STAGING: &str = ".sitec-restore";
/// Where what the store held before the restore is kept, inside the store.
const BEFORE: &str = ".sitec-before-restore";
/// What a shared store's snapshot (its first GlusterFS brick) holds that is
/// GlusterFS's own, not the app's, as tar and find patterns: the brick's
/// file index (`.glusterfs`, hard links and links by file id), the folder
/// of open-but-unlinked files (`.glusterfs-anonymous-inode-UUID`, which the
/// mount shows too, and refuses to move) and the trash translator's
/// folder. Left out, and left in place: the rest is written back through
/// the volume's mount.
const GLUSTER_OWN: [&str; 2] = [".glusterfs*", ".trashcan"];

/// What is being restored, on which runner, from which snapshot.
pub struct MediaRestore<'f> {
    app: AppId,
    store: usize,
    pub target: HostId,
    pub snapshot: Row,
    fleet: &'f Fleet<'f>,
}

/// Picks the snapshot (the one named, else the newest; with `--to`, of two
/// taken in the same second the target's own) and the runner: `to`, else
/// the one whose data the snapshot is.
pub fn choose<'f>(
    fleet: &'f Fleet<'f>,
    (app, store): (AppId, usize),
    rows: &[Row],
    snapshot: Option<&str>,
    to: Option<HostId>,
) -> Result<MediaRestore<'f>, String> {
    let set = DataSet::Media(app, store);
    let name = set.name(fleet);
    let runners = &fleet.placement[app];
    let runner_names = || {
        (runners.iter())
            .map(|h| fleet.hosts[*h].name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(to) = to.filter(|h| !runners.contains(h)) {
        return Err(format!(
            "`{}` runs no replica of app {}: restore {name} to one of its runners ({})",
            fleet.hosts[to].name,
            fleet.apps[app].name,
            runner_names()
        ));
    }
    let prefer = to.map(|h| fleet.hosts[h].name.as_str());
    let wanted = wanted(rows, &name, snapshot, prefer)?;
    let of = wanted.first().map(|r| r.of.clone()).unwrap_or_default();
    let target = match to {
        Some(to) => to,
        None => fleet
            .host_named(&of)
            .filter(|h| runners.contains(h))
            .ok_or_else(|| {
                format!(
                    "the snapshot is {of}'s, which runs app {} no more: name a runner with --to ({})",
                    fleet.apps[app].name,
                    runner_names()
                )
            })?,
    };
    let from = nearest(fleet, &wanted, &fleet.hosts[target].name)?;
    Ok(MediaRestore {
        app,
        store,
        target,
        snapshot: from,
        fleet,
    })
}

/// Every host a media restore may need: the app's runners, every place
/// that holds the store's snapshots, and the target.
pub fn hosts_involved(fleet: &Fleet, set: DataSet, to: Option<HostId>) -> Vec<HostId> {
    let mut hosts = set.holders(fleet);
    hosts.extend(to);
    hosts.extend(backups::places(fleet, set).into_iter().map(|p| p.on));
    hosts.sort_unstable();
    hosts.dedup();
    hosts
}

impl MediaRestore<'_> {
    fn target_name(&self) -> &str {
        &self.fleet.hosts[self.target].name
    }

    fn user(&self) -> String {
        app_user(&self.fleet.apps[self.app].name)
    }

    /// The store's folder on the target.
    fn folder(&self) -> String {
        let app = &self.fleet.apps[self.app];
        media_dir(&app.name, &app.media[self.store].name)
    }

    /// `script` as the app's user, inside the store's folder, umask 0027.
    fn as_app(&self, script: &str) -> String {
        let script = format!("set -e; cd {}; umask 027; {script}", q(&self.folder()));
        format!("runuser -u {} -- sh -c {}", self.user(), q(&script))
    }

    /// Runs the restore, saying each step as it goes.
    pub async fn run(&self, hosts: &impl Hosts, say: &mut dyn FnMut(String)) -> Result<(), String> {
        let t = self.target_name();
        if !hosts.reachable(t) {
            return Err(format!("{t} cannot be reached"));
        }
        let name = DataSet::Media(self.app, self.store).name(self.fleet);
        say(format!(
            "restoring {name} ({} on {t}) from snapshot {}, taken {}",
            self.folder(),
            self.snapshot.snapshot,
            super::restore::when(&self.snapshot.stamp)
        ));
        self.check_folder(hosts).await?;
        let started = Instant::now();
        let bytes = self.fetch(hosts).await?;
        let how = if self.snapshot.on == t {
            format!("copied from {t}'s own snapshot")
        } else {
            format!("streamed from {}", self.snapshot.on)
        };
        say(format!(
            "  fetched {} ({how}) in {:.1} s",
            bytes_words(bytes),
            started.elapsed().as_secs_f64()
        ));
        self.swap(hosts).await?;
        say(format!(
            "  in place; what the folder held is kept in {}/{BEFORE} (the app's alone; remove it when satisfied)",
            self.folder()
        ));
        say(format!("  holds {}", self.check(hosts).await?));
        Ok(())
    }

    /// The folder's own entry, in root's `media/`: a folder (not a link),
    /// the app's, as apply made it. The folders above it are root's.
    async fn check_folder(&self, hosts: &impl Hosts) -> Result<(), String> {
        let t = self.target_name();
        let folder = self.folder();
        let mut above = Vec::new();
        let mut path = folder.as_str();
        while let Some((parent, _)) = path.rsplit_once('/').filter(|(p, _)| !p.is_empty()) {
            above.push(parent.to_string());
            path = parent;
        }
        let script = format!(
            "for f in {above}; do if [ -L \"$f\" ] || [ ! -d \"$f\" ]; then echo \"$f is not a folder\" >&2; exit 3; fi; \
             case \"$(stat -c '%U %A' \"$f\")\" in root\\ d????-??-?) ;; *) echo \"$f may be written by others than root: apply makes it root's\" >&2; exit 3;; esac; done\n\
             if [ -L {f} ] || [ ! -d {f} ]; then echo '{f} is missing: apply makes it' >&2; exit 3; fi\n\
             [ \"$(stat -c %U {f})\" = {user} ] || {{ echo '{f} is not {user}'\"'\"'s: apply makes it so' >&2; exit 3; }}",
            above = above.iter().map(|f| q(f)).collect::<Vec<_>>().join(" "),
            f = q(&folder),
            user = self.user(),
        );
        hosts
            .sh(t, &script)
            .await?
            .or_fail(t, "checking the media folder")?;
        Ok(())
    }

    /// Brings the snapshot's store into `STAGING` inside the folder; the
    /// bytes it holds there. Root only reads the snapshot; the app's user
    /// unpacks, its umask and the setgid folder giving every entry the
    /// owner, group and mode of an upload (not the archive's: `-p` would
    /// drop the setgid bit of the folders, since app-APP is not in www-data).
    async fn fetch(&self, hosts: &impl Hosts) -> Result<u64, String> {
        let t = self.target_name();
        let taken = format!("{}/{}", self.snapshot.dir, self.snapshot.stamp);
        let inside = DataSet::Media(self.app, self.store).subvolume(self.fleet);
        let [index, trash] = GLUSTER_OWN;
        let send = tar_out(&taken, &inside, &[STAGING, BEFORE, index, trash]);
        let receive = self.as_app(&format!(
            "rm -rf {STAGING}; mkdir -m 0700 {STAGING}; \
             tar -C {STAGING} --strip-components=1 --no-same-owner --no-same-permissions -xf -; \
             du -s -b {STAGING} | cut -f1"
        ));
        stream_copy(hosts, (&self.snapshot.on, &send), (t, &receive)).await
    }

    /// Moves what the folder holds into `BEFORE` (the previous one
    /// removed) and the copy's entries into the folder, as the app.
    async fn swap(&self, hosts: &impl Hosts) -> Result<(), String> {
        let t = self.target_name();
        // A volume's own folders at its root stay (GlusterFS's, not the app's).
        let [index, trash] = GLUSTER_OWN;
        let script = self.as_app(&format!(
            "rm -rf {BEFORE}; mkdir -m 0700 {BEFORE}; \
             find . -mindepth 1 -maxdepth 1 ! -name {STAGING} ! -name {BEFORE} ! -name '{index}' ! -name {trash} -exec mv -t {BEFORE} -- {{}} +; \
             find {STAGING} -mindepth 1 -maxdepth 1 -exec mv -t . -- {{}} +; \
             rmdir {STAGING}"
        ));
        hosts
            .sh(t, &script)
            .await?
            .or_fail(t, "putting the snapshot in place")?;
        Ok(())
    }

    /// What the folder holds now, counted by the app's user, and the
    /// folder's own owner and mode.
    async fn check(&self, hosts: &impl Hosts) -> Result<String, String> {
        let t = self.target_name();
        let count = self.as_app(&format!(
            "find . -path ./{BEFORE} -prune -o -type f -print | wc -l"
        ));
        let script = format!("{count}; stat -c '%U:%G %a' {}", q(&self.folder()));
        let out = hosts
            .sh(t, &script)
            .await?
            .or_fail(t, "counting the restored files")?;
        let mut lines = out.lines();
        let files = lines.next().unwrap_or("?").trim().to_string();
        let owner = lines.next().unwrap_or("?").trim().to_string();
        let files = match files.as_str() {
            "1" => "1 file".to_string(),
            n => format!("{n} files"),
        };
        Ok(format!("{files}; the folder is {owner}"))
    }
}
