//! `sitec backups SPEC [DATA]`: every snapshot that holds a data set (a
//! database's server, or an app's media store), where it is, how old and
//! how large. A database's data lives on its primary and its follower, a
//! media store on each of its app's runners; each host a backup pulls from
//! keeps its newest snapshots itself (`/var/lib/sitec/snapshots/BACKUP`),
//! and the backup host keeps the history (`/srv/sitec/backups/BACKUP/HOST`).
//! Each is asked with `sitec data list`; a snapshot is named `HOST/STAMP`
//! (whose data, when), the name `sitec restore --snapshot` takes.

use super::reach::Hosts;
use super::snapshots::media_subvolume;
use super::stamp::{age_words, Stamp};
use super::{bytes_words, Listed};
use crate::context::{BACKUPS_ROOT, SNAPSHOTS_ROOT};
use crate::model::{AppId, DatabaseId, Engine, Fleet, HostId};
use std::collections::HashMap;

/// The subvolume that holds an engine's data on a database host.
#[must_use]
pub fn subvolume(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgres => "postgresql",
        Engine::Redis => "redis",
    }
}

/// What a snapshot holds and a restore puts back: a database (its whole
/// server), or one `media` store of an app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataSet {
    Database(DatabaseId),
    /// The app, and its store's index in `app.media`.
    Media(AppId, usize),
}

impl DataSet {
    /// Every data set of the spec: the databases, then the media stores.
    #[must_use]
    pub fn all(fleet: &Fleet) -> Vec<DataSet> {
        let databases = (0..fleet.databases.len()).map(DataSet::Database);
        let media = (fleet.apps.iter().enumerate())
            .flat_map(|(a, app)| (0..app.media.len()).map(move |m| DataSet::Media(a, m)));
        databases.chain(media).collect()
    }

    /// The one `word` names: a database, or `APP/STORE` (`APP` alone for an
    /// app with one store).
    pub fn named(fleet: &Fleet, word: &str) -> Result<DataSet, String> {
        if let Some(d) = fleet.databases.iter().position(|d| d.name == word) {
            return Ok(DataSet::Database(d));
        }
        let (app_name, store) = match word.split_once('/') {
            Some((a, s)) => (a, Some(s)),
            None => (word, None),
        };
        let app = fleet.apps.iter().position(|a| a.name == app_name);
        let stores = |a: AppId| -> Vec<String> {
            fleet.apps[a]
                .media
                .iter()
                .map(|m| format!("{}/{}", fleet.apps[a].name, m.name))
                .collect()
        };
        match (app, store) {
            (Some(a), Some(store)) => (fleet.apps[a].media.iter())
                .position(|m| m.name == store)
                .map(|m| DataSet::Media(a, m))
                .ok_or_else(|| match stores(a).as_slice() {
                    [] => format!("app {app_name} has no `media` store"),
                    known => format!(
                        "app {app_name} has no media store `{store}`; it has {}",
                        known.join(", ")
                    ),
                }),
            (Some(a), None) if fleet.apps[a].media.len() == 1 => Ok(DataSet::Media(a, 0)),
            (Some(a), None) if !fleet.apps[a].media.is_empty() => Err(format!(
                "app {app_name} has several media stores: name one ({})",
                stores(a).join(", ")
            )),
            _ => {
                let known: Vec<String> = (DataSet::all(fleet).iter())
                    .map(|d| d.name(fleet))
                    .collect();
                Err(format!(
                    "the spec has no database or media store `{word}`; it has {}",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ))
            }
        }
    }

    /// `main`, or `blog/uploads`.
    #[must_use]
    pub fn name(&self, fleet: &Fleet) -> String {
        match *self {
            DataSet::Database(d) => fleet.databases[d].name.clone(),
            DataSet::Media(a, m) => {
                format!("{}/{}", fleet.apps[a].name, fleet.apps[a].media[m].name)
            }
        }
    }

    /// The subvolume of a snapshot that holds it.
    #[must_use]
    pub fn subvolume(&self, fleet: &Fleet) -> String {
        match *self {
            DataSet::Database(d) => subvolume(fleet.databases[d].engine).to_string(),
            DataSet::Media(a, m) => {
                media_subvolume(&fleet.apps[a].name, &fleet.apps[a].media[m].name)
            }
        }
    }

    /// The hosts that hold it: a database's primary and follower, a media
    /// store's runners (each its own folder).
    #[must_use]
    pub fn holders(&self, fleet: &Fleet) -> Vec<HostId> {
        match *self {
            DataSet::Database(d) => {
                let db = &fleet.databases[d];
                std::iter::once(db.primary).chain(db.follower).collect()
            }
            DataSet::Media(a, _) => fleet.placement[a].clone(),
        }
    }
}

/// A folder that may hold snapshots of a data set.
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

/// Every place a snapshot of `data` may be, by backup then host.
#[must_use]
pub fn places(fleet: &Fleet, data: DataSet) -> Vec<Place> {
    let holders = data.holders(fleet);
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

/// Takes a backup of `data` now, as the timers would: a snapshot on
/// each of their hosts a backup pulls from, then the pull on each backup
/// host (`systemctl start` of the units the timers start; both wait until
/// done). Says what it ran.
pub async fn take_now(
    fleet: &Fleet<'_>,
    data: &[DataSet],
    hosts: &impl Hosts,
    say: &mut dyn FnMut(String),
) -> Result<(), String> {
    let mut snapshots: Vec<(HostId, String)> = Vec::new();
    let mut pulls: Vec<(HostId, String)> = Vec::new();
    for &set in data {
        for place in places(fleet, set) {
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

/// One snapshot of one data set, where it is.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    /// The data set's name: a database, or `APP/STORE`.
    pub data: String,
    /// `HOST/STAMP`: whose data, taken when.
    pub snapshot: String,
    pub of: String,
    pub stamp: String,
    /// The host holding it, and the folder.
    pub on: String,
    pub dir: String,
    /// What the data set's subvolume holds, in bytes.
    pub bytes: Option<u64>,
    /// A copy's pull: bytes that travelled and seconds.
    pub pulled_bytes: Option<u64>,
    pub pull_seconds: Option<f64>,
}

/// A folder of snapshots: on which host, where, a backup host's copies.
type Folder = (HostId, String, bool);
/// What `sitec data list` said of a folder, or why it could not be asked.
type Listing = Result<Vec<Listed>, String>;

/// Asks every place of `data` for its snapshots. Returns the rows (by
/// data set, then snapshot, then where) and a line per place that could
/// not be asked.
pub async fn gather(
    fleet: &Fleet<'_>,
    data: &[DataSet],
    hosts: &impl Hosts,
) -> (Vec<Row>, Vec<String>) {
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    // One listing per folder, whichever data sets it holds.
    let mut asked: HashMap<Folder, Listing> = HashMap::new();
    for &set in data {
        for place in places(fleet, set) {
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
            let name = set.subvolume(fleet);
            for l in listed.iter().filter(|l| {
                l.snapshot.subvolumes.contains(&name)
                    && (!place.copies || l.host.as_deref() == Some(of.as_str()))
            }) {
                rows.push(Row {
                    data: set.name(fleet),
                    snapshot: format!("{of}/{}", l.snapshot.stamp),
                    of: of.clone(),
                    stamp: l.snapshot.stamp.clone(),
                    on: on.clone(),
                    dir: if place.copies {
                        format!("{}/{of}", place.dir)
                    } else {
                        place.dir.clone()
                    },
                    bytes: l.sizes.get(&name).copied(),
                    pulled_bytes: l.pulled.as_ref().map(|p| p.bytes),
                    pull_seconds: l.pulled.as_ref().map(|p| p.seconds),
                });
            }
        }
    }
    rows.sort_by(|a, b| {
        (a.data.as_str(), &a.stamp, &a.of, &a.on).cmp(&(b.data.as_str(), &b.stamp, &b.of, &b.on))
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
            r.data.clone(),
            r.snapshot.clone(),
            format!("{}:{}", r.on, r.dir),
            age,
            r.bytes.map_or("?".into(), bytes_words),
            pulled,
        ]
    });
    super::aligned(
        &["DATA", "SNAPSHOT", "WHERE", "AGE", "SIZE", "PULLED"],
        cells,
    )
}
