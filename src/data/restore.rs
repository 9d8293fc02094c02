//! `sitec restore SPEC DATABASE [--snapshot HOST/STAMP] [--to HOST]`: puts
//! a snapshot of a database back, starts its server on it, proves it reads,
//! and says what time it holds.
//!
//! The unit of a restore is the server: a Postgres cluster (every database
//! of a shared cluster goes back together) or a Redis server. The snapshot
//! comes from the target host itself when it holds one, else from wherever
//! `sitec backups` lists it, streamed through the operator's machine: the
//! backup host and the database host never get a key to each other. The
//! server's current data is moved aside (`DATA.sitec-before-restore`, the
//! previous one of those removed), never deleted, and the copy is swapped
//! in whole.
//!
//! Root never opens a path inside the server's folders (postgres and redis
//! can write there, and a link planted there would lead root anywhere):
//! root reads the snapshot (read-only, in root's folder) as a `tar` stream
//! and stops and starts the unit; unpacking the stream into a new folder,
//! moving the old data aside and the copy into place are the server
//! user's own steps (`runuser`), so the files come out that user's without
//! a `chown`, and a planted link leads only where that user may go. Even
//! from the target's own snapshot the copy is therefore a full one, not a
//! reflink; it is made before the server stops, so it costs no downtime.
//! Root checks that no folder on the way inside the snapshot is a link
//! before it reads. A drill on another host (`--to`) does not make a
//! Debian cluster (`pg_createcluster` works as root in folders postgres
//! may write): root writes the drill's config into its own
//! `/etc/sitec/postgres` and systemd runs the server as its user.
//!
//! Postgres starts from the snapshot as after a power cut: it replays its
//! WAL to the instant the snapshot was taken, so it holds every transaction
//! committed before that instant; `pg_dumpall` then reads every row of
//! every database. A standby of a restored primary is cloned again from it
//! (its own data is now of another history).

use super::backups::{self, Row};
use super::bytes_words;
use super::reach::Hosts;
use super::stamp::Stamp;
use crate::model::clusters::{self, Cluster, POSTGRES_VERSION};
use crate::model::{DatabaseId, Engine, Fleet, HostId};
use crate::transport::shell_quote as q;
use std::time::{Duration, Instant};

/// What is being restored, on which host, from which snapshot.
pub struct Restore<'f> {
    pub database: DatabaseId,
    pub server: Server,
    pub site: Site,
    /// Where the server runs after the restore.
    pub target: HostId,
    /// The snapshot, as `sitec backups` lists it, and where it is fetched from.
    pub snapshot: Row,
    fleet: &'f Fleet<'f>,
}

/// The server a database lives in.
#[derive(Debug, Clone)]
pub enum Server {
    Postgres(Cluster),
    Redis { name: String, port: u16 },
}

impl Server {
    pub fn of(fleet: &Fleet, database: DatabaseId) -> Result<Server, String> {
        let db = &fleet.databases[database];
        Ok(match db.engine {
            Engine::Postgres => Server::Postgres(
                clusters::clusters(fleet)
                    .into_iter()
                    .find(|c| c.databases.contains(&database))
                    .ok_or_else(|| format!("database {} is in no cluster", db.name))?,
            ),
            Engine::Redis => Server::Redis {
                name: db.name.clone(),
                port: db.port,
            },
        })
    }

    /// Its folder inside a snapshot (relative to `STAMP/`).
    fn in_snapshot(&self) -> String {
        match self {
            Server::Postgres(c) => format!("postgresql/{POSTGRES_VERSION}/{}", c.name),
            Server::Redis { name, .. } => format!("redis/{name}"),
        }
    }

    fn is_postgres(&self) -> bool {
        matches!(self, Server::Postgres(_))
    }
}

/// Where the restored server runs. On the database's primary: its own
/// server. On another host: a copy beside whatever runs there, named
/// `NAME_restored`, on its port + 10000 and listening on 127.0.0.1 only,
/// so a restore drill can never take a serving database's place. A drill
/// runs as a transient unit (`sitec-restore-postgres-NAME_restored`,
/// `sitec-restore-redis-NAME_restored`) as the server's user, with no
/// config in the server's folders: it ends with the host's next boot.
#[derive(Debug, Clone)]
pub struct Site {
    pub name: String,
    pub port: u16,
    pub data_dir: String,
    pub unit: String,
    /// The system user owning the data.
    owner: &'static str,
    /// The database's own server (on its primary).
    home: bool,
}

impl Site {
    fn of(server: &Server, home: bool) -> Site {
        let (base, port) = match server {
            Server::Postgres(c) => (c.name.clone(), c.port),
            Server::Redis { name, port } => (name.clone(), *port),
        };
        let (name, port) = if home {
            (base, port)
        } else {
            // `_`: systemd reads a `-` in `postgresql@15-NAME` as a `/`.
            (format!("{base}_restored"), port.saturating_add(10_000))
        };
        match server {
            Server::Postgres(_) => Site {
                data_dir: format!("/var/lib/postgresql/{POSTGRES_VERSION}/{name}"),
                unit: if home {
                    format!("postgresql@{POSTGRES_VERSION}-{name}")
                } else {
                    format!("sitec-restore-postgres-{name}")
                },
                owner: "postgres",
                name,
                port,
                home,
            },
            Server::Redis { .. } => Site {
                data_dir: format!("/var/lib/redis/{name}"),
                unit: if home {
                    format!("redis-server@{name}")
                } else {
                    format!("sitec-restore-redis-{name}")
                },
                owner: "redis",
                name,
                port,
                home,
            },
        }
    }

    /// `cluster main` / `redis server cache`.
    fn words(&self, server: &Server) -> String {
        if server.is_postgres() {
            format!("cluster {}", self.name)
        } else {
            format!("redis server {}", self.name)
        }
    }
}

/// Picks what to restore: the snapshot named (`HOST/STAMP`, or a `STAMP`
/// only one host's data has), else the newest; fetched from the target
/// itself when it holds that snapshot, else from a backup host, else from
/// wherever it is.
pub fn choose<'f>(
    fleet: &'f Fleet<'f>,
    database: DatabaseId,
    rows: &[Row],
    snapshot: Option<&str>,
    to: Option<HostId>,
) -> Result<Restore<'f>, String> {
    let db = &fleet.databases[database];
    let server = Server::of(fleet, database)?;
    let target = to.unwrap_or(db.primary);
    if db.follower == Some(target) {
        return Err(format!(
            "`{}` is the {} of {}: a restore there would end its replication",
            fleet.hosts[target].name,
            if db.engine == Engine::Postgres { "standby" } else { "replica" },
            db.name
        ) + "; restore to the primary, or to a host that holds no copy of it (`sitec failover` makes a follower the primary)");
    }
    // The newest; of two taken in the same second, the primary's (its
    // follower may lag behind it).
    let primary = &fleet.hosts[db.primary].name;
    let wanted = wanted(rows, &db.name, snapshot, Some(primary))?;
    let from = nearest(fleet, &wanted, &fleet.hosts[target].name)?;
    let site = Site::of(&server, target == db.primary);
    Ok(Restore {
        database,
        server,
        site,
        target,
        snapshot: from,
        fleet,
    })
}

/// The copies of the snapshot to restore of the data set `name`: the one
/// named (`HOST/STAMP`, or a `STAMP` only one host's data has), else the
/// newest (of two taken in the same second, `prefer`'s).
pub fn wanted<'r>(
    rows: &'r [Row],
    name: &str,
    snapshot: Option<&str>,
    prefer: Option<&str>,
) -> Result<Vec<&'r Row>, String> {
    let mine: Vec<&Row> = rows.iter().filter(|r| r.data == name).collect();
    if mine.is_empty() {
        return Err(format!(
            "no snapshot of {name} was found (`sitec backups` lists them; a backup must pull from {name}'s hosts)"
        ));
    }
    let found: Vec<&Row> = match snapshot {
        Some(id) => {
            let found: Vec<&Row> = mine
                .iter()
                .copied()
                .filter(|r| r.snapshot == id || r.stamp == id)
                .collect();
            let whose: std::collections::BTreeSet<&str> =
                found.iter().map(|r| r.of.as_str()).collect();
            if whose.len() > 1 {
                return Err(format!(
                    "{id} names snapshots of {}: write HOST/{id}",
                    whose.into_iter().collect::<Vec<_>>().join(" and ")
                ));
            }
            found
        }
        None => {
            let key = |r: &Row| (r.stamp.clone(), Some(r.of.as_str()) == prefer);
            let newest = mine.iter().map(|r| key(r)).max();
            mine.iter()
                .copied()
                .filter(|r| Some(key(r)) == newest)
                .collect()
        }
    };
    if found.is_empty() {
        return Err(format!(
            "no snapshot {} of {name} (`sitec backups SPEC {name}` lists them)",
            snapshot.unwrap_or("?"),
        ));
    }
    Ok(found)
}

/// Where to fetch one snapshot from, of the places that hold it: the
/// target itself, else a backup host, else wherever it is.
pub fn nearest(fleet: &Fleet, wanted: &[&Row], target: &str) -> Result<Row, String> {
    let backup_hosts: Vec<&str> = fleet
        .backups
        .iter()
        .map(|b| fleet.hosts[b.to].name.as_str())
        .collect();
    wanted
        .iter()
        .find(|r| r.on == target)
        .or_else(|| {
            wanted
                .iter()
                .find(|r| backup_hosts.contains(&r.on.as_str()))
        })
        .or_else(|| wanted.first())
        .map(|r| (*r).clone())
        .ok_or_else(|| "no snapshot to restore".to_string())
}

/// What a restore did and found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub lines: Vec<String>,
    /// Seconds: fetching the snapshot, from stopping the server to its
    /// answering on the snapshot, the check.
    pub fetch_seconds: f64,
    pub start_seconds: f64,
    pub check_seconds: f64,
}

impl Restore<'_> {
    fn target_name(&self) -> &str {
        &self.fleet.hosts[self.target].name
    }

    /// Where the copy is assembled on the target, beside the data folder.
    fn staging(&self) -> String {
        let data = &self.site.data_dir;
        match data.rsplit_once('/') {
            Some((parent, name)) => format!("{parent}/.{name}.sitec-restore"),
            None => format!("{data}.sitec-restore"),
        }
    }

    /// Runs the restore, saying each step as it goes.
    pub async fn run(
        &self,
        hosts: &impl Hosts,
        say: &mut dyn FnMut(String),
    ) -> Result<Report, String> {
        let mut report = Report::default();
        let t = self.target_name();
        if !hosts.reachable(t) {
            return Err(format!("{t} cannot be reached"));
        }
        let db = &self.fleet.databases[self.database];
        say(format!(
            "restoring {} ({} on {t}, port {}) from snapshot {}, taken {}",
            db.name,
            self.site.words(&self.server),
            self.site.port,
            self.snapshot.snapshot,
            when(&self.snapshot.stamp)
        ));
        if !self.site.home {
            self.prepare_elsewhere(hosts).await?;
        }
        let started = Instant::now();
        let bytes = self.fetch(hosts).await?;
        report.fetch_seconds = started.elapsed().as_secs_f64();
        let how = if self.snapshot.on == t {
            format!("copied from {t}'s own snapshot")
        } else {
            format!("streamed from {}", self.snapshot.on)
        };
        say(format!(
            "  fetched {} ({how}) in {:.1} s",
            bytes_words(bytes),
            report.fetch_seconds
        ));
        let started = Instant::now();
        let aside = self.swap_and_start(hosts).await?;
        say(match aside {
            Some(aside) => format!(
                "  stopped {}; the data it held is kept in {aside} (remove it when satisfied)",
                self.site.unit
            ),
            None => format!("  stopped {}; it held no data", self.site.unit),
        });
        self.wait_ready(hosts).await?;
        report.start_seconds = started.elapsed().as_secs_f64();
        say(format!(
            "  started {} on the snapshot; it answered {:.1} s after it was stopped{}",
            self.site.unit,
            report.start_seconds,
            if self.server.is_postgres() {
                " (WAL replayed to the snapshot's instant)"
            } else {
                ""
            }
        ));
        let started = Instant::now();
        let checked = self.check(hosts).await?;
        report.check_seconds = started.elapsed().as_secs_f64();
        say(format!(
            "  consistent: {checked} in {:.1} s",
            report.check_seconds
        ));
        say(format!(
            "  holds every write committed before {} (the snapshot's instant), none after",
            when(&self.snapshot.stamp)
        ));
        if self.site.home {
            if let Some(line) = self.follower(hosts).await {
                say(line);
            }
        } else {
            say(format!(
                "  it listens on 127.0.0.1:{} only; `systemctl stop {}` on {t} when done",
                self.site.port, self.site.unit
            ));
        }
        Ok(report)
    }

    /// Where a drill's Postgres config goes: `/etc/sitec/postgres`, root's
    /// (the postgres role makes it, readable by postgres), never a folder
    /// postgres can write (Debian's `/etc/postgresql/15` may be its).
    fn drill_config(&self) -> (String, String) {
        let dir = "/etc/sitec/postgres";
        let name = &self.site.name;
        (
            format!("{dir}/{name}.conf"),
            format!("{dir}/{name}-hba.conf"),
        )
    }

    /// Another host than the primary: the engine must be installed. For
    /// Postgres, root writes the drill's config (its data folder, and a
    /// `pg_hba.conf` for local connections) into its own folder: no
    /// `pg_createcluster`, which works as root in `/etc/postgresql/15` and
    /// `/var/lib/postgresql/15`, folders postgres may write.
    async fn prepare_elsewhere(&self, hosts: &impl Hosts) -> Result<(), String> {
        let t = self.target_name();
        let script = if self.server.is_postgres() {
            let (conf, hba) = self.drill_config();
            let dir = "/etc/sitec/postgres";
            let conf_lines = [
                format!(
                    "# Written by sitec restore: the drill {} ({}).",
                    self.site.name, self.site.unit
                ),
                format!("data_directory = '{}'", self.site.data_dir),
                format!("hba_file = '{hba}'"),
                "# No user name maps.".to_string(),
                "ident_file = '/dev/null'".to_string(),
            ];
            let hba_lines = [
                "# Written by sitec restore: a drill takes local connections only.",
                "local all all peer",
                "host all all 127.0.0.1/32 scram-sha-256",
            ];
            let words = |lines: &[&str]| lines.iter().map(|l| q(l)).collect::<Vec<_>>().join(" ");
            format!(
                "set -e\n\
                 [ -x /usr/lib/postgresql/{v}/bin/postgres ] || {{ echo 'PostgreSQL {v} is not installed here: give the host the postgres role and apply' >&2; exit 3; }}\n\
                 if [ -L {dir} ] || [ ! -d {dir} ]; then echo '{dir} is missing: give the host the postgres role and apply' >&2; exit 3; fi\n\
                 case \"$(stat -c '%U %A' {dir})\" in root\\ d????-??-?) ;; *) echo '{dir} may be written by others than root: apply makes it root-only' >&2; exit 3;; esac\n\
                 umask 027\n\
                 printf '%s\\n' {conf_text} > {conf}\n\
                 printf '%s\\n' {hba_text} > {hba}\n\
                 chgrp postgres {conf} {hba}",
                v = POSTGRES_VERSION,
                conf = q(&conf),
                hba = q(&hba),
                conf_text = words(&conf_lines.iter().map(String::as_str).collect::<Vec<_>>()),
                hba_text = words(&hba_lines),
            )
        } else {
            "command -v redis-server >/dev/null || { echo 'Redis is not installed here: give the host the redis role and apply' >&2; exit 3; }".to_string()
        };
        hosts
            .sh(t, &script)
            .await?
            .or_fail(t, "preparing the server")?;
        Ok(())
    }

    /// `script` as the server's own user (from `/`, which it can enter):
    /// one simple command, so it can end a pipe.
    fn as_owner(&self, script: &str) -> String {
        let script = format!("cd /; {script}");
        format!("runuser -u {} -- sh -c {}", self.site.owner, q(&script))
    }

    /// Brings the snapshot's data folder to the staging folder on the
    /// target; the bytes it holds there. Root only reads the snapshot; the
    /// server's user makes the staging folder and unpacks into it.
    async fn fetch(&self, hosts: &impl Hosts) -> Result<u64, String> {
        let t = self.target_name();
        let taken = format!("{}/{}", self.snapshot.dir, self.snapshot.stamp);
        let send = tar_out(&taken, &self.server.in_snapshot(), &[]);
        let staging = self.staging();
        let above = staging.rsplit_once('/').map_or("/", |(p, _)| p);
        let receive = self.as_owner(&format!(
            "set -e; rm -rf {s}; mkdir -p {above}; mkdir -m 0700 {s}; tar -C {s} --strip-components=1 -xpf -; du -s -b {s} | cut -f1",
            s = q(&staging),
            above = q(above),
        ));
        stream_copy(hosts, (&self.snapshot.on, &send), (t, &receive)).await
    }

    /// Stops the server, moves its data aside, puts the copy in its
    /// place, starts it. Returns where the old data went, if there was any.
    async fn swap_and_start(&self, hosts: &impl Hosts) -> Result<Option<String>, String> {
        let t = self.target_name();
        let site = &self.site;
        let data = &site.data_dir;
        let aside = format!("{data}.sitec-before-restore");
        // A Postgres snapshot of a running server holds its pid file, and
        // one of a standby its signal files: this copy starts as a primary.
        let leftovers = if self.server.is_postgres() {
            "postmaster.pid standby.signal recovery.signal sitec-standby"
        } else {
            ""
        };
        let start = if site.home {
            format!("systemctl start {}", site.unit)
        } else if self.server.is_postgres() {
            // On the command line what the copy's postgresql.auto.conf
            // must not change: where it listens, and no archiving into
            // the serving cluster's archive.
            let (conf, _) = self.drill_config();
            format!(
                "systemctl reset-failed {unit} 2>/dev/null || true\n\
                 systemd-run --quiet --unit {unit} -p User=postgres -p KillSignal=SIGINT -p KillMode=mixed \
                 /usr/lib/postgresql/{v}/bin/postgres -c config_file={conf} -c port={port} \
                 -c listen_addresses=127.0.0.1 -c unix_socket_directories=/var/run/postgresql \
                 -c ssl=off -c archive_mode=off -c cluster_name={name}",
                unit = site.unit,
                v = POSTGRES_VERSION,
                conf = q(&conf),
                port = site.port,
                name = site.name,
            )
        } else {
            format!(
                "systemctl reset-failed {unit} 2>/dev/null || true\n\
                 systemd-run --quiet --unit {unit} -p User=redis redis-server --bind 127.0.0.1 \
                 --port {} --dir {} --appendonly yes",
                site.port,
                q(data),
                unit = site.unit,
            )
        };
        // The swap is the server user's: `mv -T` renames, never moves
        // into what a name points to.
        let swap = format!(
            "set -e; rm -rf {aside}; if [ -e {data} ] || [ -L {data} ]; then mv -T {data} {aside}; echo kept; fi; \
             mv -T {staging} {data}; cd {data}; rm -f {leftovers}; chmod 0700 .",
            aside = q(&aside),
            data = q(data),
            staging = q(&self.staging()),
        );
        let script = format!(
            "set -e\n\
             systemctl stop {unit} 2>/dev/null || true\n\
             {swap}\n\
             {start}",
            unit = site.unit,
            swap = self.as_owner(&swap),
        );
        let out = hosts
            .sh(t, &script)
            .await?
            .or_fail(t, "putting the snapshot in place")?;
        Ok(out.lines().any(|l| l == "kept").then_some(aside))
    }

    /// Waits (up to five minutes: Postgres replays the WAL first) until
    /// the server takes queries as a primary.
    async fn wait_ready(&self, hosts: &impl Hosts) -> Result<(), String> {
        let t = self.target_name();
        let probe = if self.server.is_postgres() {
            format!(
                "cd / && runuser -u postgres -- psql -p {} -XAtc 'select pg_is_in_recovery()' 2>/dev/null | grep -qx f",
                self.site.port
            )
        } else {
            format!("{} ping 2>/dev/null | grep -qx PONG", self.redis_cli())
        };
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if hosts.sh(t, &probe).await?.ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = hosts
                    .sh(
                        t,
                        &format!("journalctl -u {} -n 15 --no-pager", self.site.unit),
                    )
                    .await
                    .map(|r| r.stdout)
                    .unwrap_or_default();
                return Err(format!(
                    "{t}: {} did not come up on the snapshot within 5 minutes:\n{log}",
                    self.site.unit
                ));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// `redis-cli` against the restored server: the database's own takes
    /// TLS and its config's password; a drill's copy is plain, on the
    /// loopback only.
    fn redis_cli(&self) -> String {
        if self.site.home {
            super::redis_cli(&self.site.name, self.site.port)
        } else {
            format!("redis-cli -p {}", self.site.port)
        }
    }

    /// Reads everything back: what it proved, in words.
    async fn check(&self, hosts: &impl Hosts) -> Result<String, String> {
        let t = self.target_name();
        if self.server.is_postgres() {
            let script = format!(
                "set -e; cd /; runuser -u postgres -- pg_dumpall -p {p} > /dev/null; \
                 runuser -u postgres -- psql -p {p} -XAtc \"select count(*) from pg_database where datallowconn\"",
                p = self.site.port
            );
            let out = hosts
                .sh(t, &script)
                .await?
                .or_fail(t, "pg_dumpall (reading every row back)")?;
            Ok(format!(
                "pg_dumpall read every row of its {} databases",
                out.trim()
            ))
        } else {
            let cli = self.redis_cli();
            let script =
                format!("set -e; {cli} info persistence | grep -q '^loading:0'; {cli} dbsize");
            let out = hosts.sh(t, &script).await?.or_fail(t, "asking redis")?;
            Ok(format!("loaded its AOF whole, {} keys", out.trim()))
        }
    }

    /// After a primary's restore: its follower's data is of another
    /// history now. A Postgres standby is cloned again (its clone script,
    /// as apply would); a Redis replica resyncs by itself.
    async fn follower(&self, hosts: &impl Hosts) -> Option<String> {
        let db = &self.fleet.databases[self.database];
        let follower = &self.fleet.hosts[db.follower?].name;
        let Server::Postgres(c) = &self.server else {
            return Some(format!(
                "  replica {follower} resyncs from the restored primary by itself"
            ));
        };
        // The snapshot may predate the standby's slot, or be the standby's
        // own (slots live on primaries): the roles file apply runs makes it.
        let slot = format!(
            "cd / && runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p {} -f /etc/sitec/postgres/{}-roles.sql",
            c.port, c.name
        );
        // Stopped first: a standby of the old history may have taken the
        // slot already, and the copy needs it.
        let clone = format!(
            "systemctl stop postgresql@{v}-{name} && cd / && runuser -u postgres -- rm -f {data}/sitec-standby && \
             /etc/sitec/postgres/{name}-clone-standby.sh",
            v = POSTGRES_VERSION,
            data = q(&c.data_directory()),
            name = c.name
        );
        let ran = match hosts.sh(self.target_name(), &slot).await {
            Ok(r) if !r.ok => Ok(r),
            Err(e) => Err(e),
            Ok(_) if hosts.reachable(follower) => hosts.sh(follower, &clone).await,
            Ok(_) => Err(format!("{follower} cannot be reached")),
        };
        Some(match ran {
            Ok(r) if r.ok => {
                format!("  standby {follower}: cloned again from the restored primary")
            }
            Ok(r) => format!(
                "  standby {follower}: cloning it again failed ({}); the next `sitec apply` tries again",
                r.stderr.trim()
            ),
            Err(e) => format!("  standby {follower}: {e}; the next `sitec apply` clones it again"),
        })
    }
}

/// Runs `send` on one host into `receive` on another (or both on one host,
/// in one pipe under pipefail, so a failed read fails the copy), and
/// returns the number `receive` prints last: the bytes it unpacked.
pub async fn stream_copy(
    hosts: &impl Hosts,
    (from, send): (&str, &str),
    (to, receive): (&str, &str),
) -> Result<u64, String> {
    let got = if from == to {
        let both = format!("set -eo pipefail; {send} | {receive}");
        hosts.sh(to, &format!("bash -c {}", q(&both))).await?
    } else {
        hosts.pipe((from, send), (to, receive)).await?.1
    };
    let out = got.or_fail(to, "unpacking the snapshot")?;
    Ok(out.trim().parse().unwrap_or(0))
}

/// Root's script that writes the folder `inside` of the snapshot `taken`
/// (a folder of root's) to stdout as a `tar` stream, leaving out
/// `excluded` names. Inside the snapshot the folders are a less privileged
/// user's (read-only now, but as it left them): it refuses to start when
/// one on the way is a link, so `tar -C` follows none; tar itself archives
/// links as links.
pub fn tar_out(taken: &str, inside: &str, excluded: &[&str]) -> String {
    let (parent, name) = inside.rsplit_once('/').unwrap_or((".", inside));
    let mut folders = Vec::new();
    for part in inside.split('/') {
        let previous = folders.last().map_or(String::new(), |f| format!("{f}/"));
        folders.push(format!("{previous}{part}"));
    }
    let excludes: String = (excluded.iter())
        .map(|e| format!(" --exclude={}", q(e)))
        .collect();
    let send = format!(
        "set -e; cd {taken}; for f in {folders}; do if [ -L \"$f\" ] || [ ! -d \"$f\" ]; then echo \"$f in the snapshot is not a folder\" >&2; exit 1; fi; done; tar -C {parent}{excludes} -cf - {name}",
        taken = q(taken),
        folders = folders.iter().map(|f| q(f)).collect::<Vec<_>>().join(" "),
        parent = q(parent),
        name = q(name),
    );
    format!("sh -c {}", q(&send))
}

/// `2026-12-07T101500Z` as `2026-12-07 10:15:00 UTC`.
pub(super) fn when(stamp: &str) -> String {
    match Stamp::parse(stamp) {
        Some(_) => format!(
            "{} {}:{}:{} UTC",
            &stamp[..10],
            &stamp[11..13],
            &stamp[13..15],
            &stamp[15..17]
        ),
        None => stamp.to_string(),
    }
}

/// Every host a restore may need: the database's hosts and every place
/// that holds its snapshots, and the target.
pub fn hosts_involved(fleet: &Fleet, database: DatabaseId, to: Option<HostId>) -> Vec<HostId> {
    let db = &fleet.databases[database];
    let mut hosts: Vec<HostId> = std::iter::once(db.primary)
        .chain(db.follower)
        .chain(to)
        .collect();
    let places = backups::places(fleet, backups::DataSet::Database(database));
    hosts.extend(places.into_iter().map(|p| p.on));
    hosts.sort_unstable();
    hosts.dedup();
    hosts
}
