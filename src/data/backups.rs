//! `sitec backups SPEC [DATABASE]`: every snapshot that holds a database's
//! data, where it is, how old and how large. A database's data lives on its
//! primary and its follower; each host a backup pulls from keeps its newest
//! snapshots itself (`/var/lib/sitec/snapshots/BACKUP`), and the backup host
//! keeps the history (`/srv/sitec/backups/BACKUP/HOST`). Each is asked with
//! `sitec data list`; a snapshot is named `HOST/STAMP` (whose data, when),
//! the name `sitec restore --snapshot` takes.

use super::reach::Hosts;
use super::stamp::{age_words, Stamp};
use super::{bytes_words, Listed};
use crate::context::{BACKUPS_ROOT, SNAPSHOTS_ROOT};
use crate::model::{DatabaseId, Engine, Fleet, HostId};
use std::collections::HashMap;

/// The subvolume that holds an engine's data on a database host.
#[must_use]
pub fn subvolume(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgres => "postgresql",
        Engine::Redis => "redis",
    }
}

/// A folder that may hold snapshots of a database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub backup: String,
    /// The host whose data the snapshots are.
    pub of: HostId,
    /// The host that holds them.
    pub on: HostId,
    pub dir: String,
    /// A backup host's copies (`DIR` holds a folder per source host).
    pub copies: bool,
}

/// Every place a snapshot of `database` may be, by backup then host.
#[must_use]
pub fn places(fleet: &Fleet, database: DatabaseId) -> Vec<Place> {
    let db = &fleet.databases[database];
    let holders: Vec<HostId> = std::iter::once(db.primary).chain(db.follower).collect();
    let mut out = Vec::new();
    for b in &fleet.backups {
        for (of, _) in b.from.iter().filter(|(h, _)| holders.contains(h)) {
            out.push(Place {
                backup: b.name.clone(),
                of: *of,
                on: *of,
                dir: format!("{SNAPSHOTS_ROOT}/{}", b.name),
                copies: false,
            });
            out.push(Place {
                backup: b.name.clone(),
                of: *of,
                on: b.to,
                dir: format!("{BACKUPS_ROOT}/{}", b.name),
                copies: true,
            });
        }
    }
    out
}

/// Takes a backup of `databases` now, as the timers would: a snapshot on
/// each of their hosts a backup pulls from, then the pull on each backup
/// host (`systemctl start` of the units the timers start; both wait until
/// done). Says what it ran.
pub async fn take_now(
    fleet: &Fleet<'_>,
    databases: &[DatabaseId],
    hosts: &impl Hosts,
    say: &mut dyn FnMut(String),
) -> Result<(), String> {
    let mut snapshots: Vec<(HostId, String)> = Vec::new();
    let mut pulls: Vec<(HostId, String)> = Vec::new();
    for &database in databases {
        for place in places(fleet, database) {
            let (list, host) = if place.copies {
                (&mut pulls, place.on)
            } else {
                (&mut snapshots, place.of)
            };
            if !list.contains(&(host, place.backup.clone())) {
                list.push((host, place.backup));
            }
        }
    }
    for (side, list) in [("snapshot", &snapshots), ("backup", &pulls)] {
        for (host, backup) in list {
            let name = &fleet.hosts[*host].name;
            let unit = format!("sitec-{side}-{backup}.service");
            let started = std::time::Instant::now();
            hosts
                .sh(name, &format!("systemctl start {unit}"))
                .await?
                .or_fail(name, &format!("systemctl start {unit}"))?;
            say(format!(
                "{name}: {unit} ran in {:.1} s",
                started.elapsed().as_secs_f64()
            ));
        }
    }
    Ok(())
}

/// One snapshot of one database, where it is.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub database: String,
    /// `HOST/STAMP`: whose data, taken when.
    pub snapshot: String,
    pub of: String,
    pub stamp: String,
    /// The host holding it, and the folder.
    pub on: String,
    pub dir: String,
    /// What the database's subvolume holds, in bytes.
    pub bytes: Option<u64>,
    /// A copy's pull: bytes that travelled and seconds.
    pub pulled_bytes: Option<u64>,
    pub pull_seconds: Option<f64>,
}

/// A folder of snapshots: on which host, where, a backup host's copies.
type Folder = (HostId, String, bool);
/// What `sitec data list` said of a folder, or why it could not be asked.
type Listing = Result<Vec<Listed>, String>;

/// Asks every place of `databases` for its snapshots. Returns the rows
/// (by database, then snapshot, then where) and a line per place that
/// could not be asked.
pub async fn gather(
    fleet: &Fleet<'_>,
    databases: &[DatabaseId],
    hosts: &impl Hosts,
) -> (Vec<Row>, Vec<String>) {
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    // One listing per folder, whichever databases it holds.
    let mut asked: HashMap<Folder, Listing> = HashMap::new();
    for &database in databases {
        let db = &fleet.databases[database];
        for place in places(fleet, database) {
            let key = (place.on, place.dir.clone(), place.copies);
            if !asked.contains_key(&key) {
                let listed = list(fleet, hosts, &place).await;
                asked.insert(key.clone(), listed);
            }
            let Some(listed) = asked.get(&key) else {
                continue;
            };
            let on = &fleet.hosts[place.on].name;
            let listed = match listed {
                Ok(listed) => listed,
                Err(e) => {
                    if !problems.contains(e) {
                        problems.push(e.clone());
                    }
                    continue;
                }
            };
            let of = &fleet.hosts[place.of].name;
            let name = subvolume(db.engine);
            for l in listed.iter().filter(|l| {
                l.snapshot.subvolumes.iter().any(|s| s == name)
                    && (!place.copies || l.host.as_deref() == Some(of.as_str()))
            }) {
                rows.push(Row {
                    database: db.name.clone(),
                    snapshot: format!("{of}/{}", l.snapshot.stamp),
                    of: of.clone(),
                    stamp: l.snapshot.stamp.clone(),
                    on: on.clone(),
                    dir: if place.copies {
                        format!("{}/{of}", place.dir)
                    } else {
                        place.dir.clone()
                    },
                    bytes: l.sizes.get(name).copied(),
                    pulled_bytes: l.pulled.as_ref().map(|p| p.bytes),
                    pull_seconds: l.pulled.as_ref().map(|p| p.seconds),
                });
            }
        }
    }
    rows.sort_by(|a, b| {
        (a.database.as_str(), &a.stamp, &a.of, &a.on).cmp(&(
            b.database.as_str(),
            &b.stamp,
            &b.of,
            &b.on,
        ))
    });
    (rows, problems)
}

async fn list(fleet: &Fleet<'_>, hosts: &impl Hosts, place: &Place) -> Result<Vec<Listed>, String> {
    let on = &fleet.hosts[place.on].name;
    if !hosts.reachable(on) {
        return Err(format!("{on}: not reachable, its snapshots are not listed"));
    }
    let mut args = format!("data list {}", place.dir);
    if place.copies {
        args.push_str(" --hosts");
    }
    let out = hosts
        .sitec(on, &args)
        .await?
        .or_fail(on, "listing snapshots")?;
    serde_json::from_str(out.trim()).map_err(|e| format!("{on}: unreadable listing ({e})"))
}

/// The rows as a table, ages counted to `now`.
#[must_use]
pub fn table(rows: &[Row], now: Stamp) -> String {
    let cells = rows.iter().map(|r| {
        let age = Stamp::parse(&r.stamp).map_or("?".into(), |s| age_words(s.age_at(now)));
        let pulled = match (r.pulled_bytes, r.pull_seconds) {
            (Some(b), Some(s)) => format!("{} in {s:.1} s", bytes_words(b)),
            _ => "-".into(),
        };
        vec![
            r.database.clone(),
            r.snapshot.clone(),
            format!("{}:{}", r.on, r.dir),
            age,
            r.bytes.map_or("?".into(), bytes_words),
            pulled,
        ]
    });
    super::aligned(
        &["DATABASE", "SNAPSHOT", "WHERE", "AGE", "SIZE", "PULLED"],
        cells,
    )
}
