//! `sitec failover SPEC DATABASE [--to HOST]`: the database's follower
//! (Postgres standby, Redis replica) becomes its primary, the old primary
//! is fenced when it can be reached, and the spec is edited to say so
//! (`primary` and `standby`/`replica` swapped), so the `apply` that follows
//! (the CLI runs it) repoints every app and the next `plan` agrees.
//!
//! The unit is the server, as for `restore`: every database of a shared
//! Postgres cluster moves together. Order matters and is fixed:
//!
//! 1. Fence the old primary, if it answers: Postgres is stopped (a clean
//!    shutdown sends the standby every WAL record first, so nothing
//!    committed is lost) and `standby.signal` is put in its data folder,
//!    so that if anything starts it again (a reboot) it is read-only; Redis
//!    is stopped. Either way its `sitec-standby` mark goes, so the `apply`
//!    that makes it a follower copies it afresh from the new primary (its
//!    history has forked). An old primary that cannot be reached is not
//!    fenced: the report says so; apps are moved off it all the same.
//! 2. Promote the follower (`pg_ctlcluster promote`, `REPLICAOF NO ONE`)
//!    and wait until it takes writes.
//!
//! Around the two steps the CLI holds every runner of the apps that use
//! it out of rotation ([`Failover::app_runners`], drained: the balancers
//! hold their new requests instead of failing them), and returns each once
//! it answers again: an app's Postgres connections name the primary and
//! then the standby with `target_session_attrs=read-write`, so libpq finds
//! the new primary by itself. The CLI then applies the edited spec to the
//! apps' hosts alone ([`Failover::app_hosts`]: their settings name the new
//! primary first, and a Redis client names the primary alone), then to
//! the whole fleet (the database hosts' configs, the new follower's copy).
//!
//! Writes lost: with the old primary reachable, none; with it dead, what
//! it had committed and not yet streamed (asynchronous replication).

use super::reach::Hosts;
use super::restore::Server;
use crate::model::clusters::POSTGRES_VERSION;
use crate::model::{DatabaseId, Engine, Fleet, HostId};
use std::ops::Range;
use std::time::{Duration, Instant};

/// What a failover moves, from where to where.
pub struct Failover {
    /// Every database of the server (a shared cluster holds several).
    pub databases: Vec<DatabaseId>,
    pub server: Server,
    pub old: HostId,
    pub new: HostId,
}

/// What happened, for the operator.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Whether the old primary was reached and stopped.
    pub fenced: bool,
    /// From the start of the promotion to the first write it took.
    pub promote_seconds: f64,
}

impl Failover {
    /// The failover of `database`: to its follower (`to`, when given, must
    /// be that follower).
    pub fn choose(fleet: &Fleet, database: DatabaseId, to: Option<HostId>) -> Result<Self, String> {
        let db = &fleet.databases[database];
        let word = follower_word(db.engine);
        let Some(new) = db.follower else {
            return Err(format!(
                "database {} has no {word} to promote: add `{word} = HOST` to it and apply, \
                 or put a backup back with `sitec restore`",
                db.name
            ));
        };
        if let Some(to) = to.filter(|to| *to != new) {
            return Err(format!(
                "database {}'s {word} is {}, not {}: only a {word} can take over \
                 (it holds the data); `--to {}`, or no `--to`",
                db.name, fleet.hosts[new].name, fleet.hosts[to].name, fleet.hosts[new].name
            ));
        }
        let server = Server::of(fleet, database)?;
        let databases = match &server {
            Server::Postgres(cluster) => cluster.databases.clone(),
            Server::Redis { .. } => vec![database],
        };
        Ok(Failover {
            databases,
            server,
            old: db.primary,
            new,
        })
    }

    /// Fences the old primary (when reachable), promotes the follower.
    pub async fn run(
        &self,
        fleet: &Fleet<'_>,
        hosts: &impl Hosts,
        say: &mut dyn FnMut(String),
    ) -> Result<Report, String> {
        let (old, new) = (&fleet.hosts[self.old].name, &fleet.hosts[self.new].name);
        if !hosts.reachable(new) {
            return Err(format!(
                "{new} cannot be reached: it cannot be promoted; nothing was changed"
            ));
        }
        let mut report = Report::default();
        if hosts.reachable(old) {
            hosts
                .sh(old, &self.fence_script())
                .await?
                .or_fail(old, "fencing")?;
            report.fenced = true;
            say(format!(
                "fenced {old}: {} stopped{}",
                self.unit(),
                if self.is_postgres() {
                    ", and it stays read-only if it starts again (standby.signal)"
                } else {
                    ""
                }
            ));
        } else {
            say(format!(
                "{old} cannot be reached: not fenced. Apps are moved off it; once it is back, \
                 `sitec apply` makes it the {} (copied afresh from {new})",
                follower_word(self.engine())
            ));
        }
        let started = Instant::now();
        hosts
            .sh(new, &self.promote_script())
            .await?
            .or_fail(new, "promoting")?;
        self.wait_writable(hosts, new).await?;
        report.promote_seconds = started.elapsed().as_secs_f64();
        say(format!(
            "promoted {new}: it took a write {:.1} s after it was told to",
            report.promote_seconds
        ));
        Ok(report)
    }

    /// The hosts of the apps that use any of its databases, by name:
    /// their settings name the primary, so they are repointed first.
    pub fn app_hosts(&self, fleet: &Fleet) -> Vec<String> {
        let mut hosts: Vec<String> = (0..fleet.apps.len())
            .filter(|a| {
                (fleet.apps[*a].bindings.iter()).any(|b| self.databases.contains(&b.database))
            })
            .flat_map(|a| {
                fleet.placement[a]
                    .iter()
                    .map(|h| fleet.hosts[*h].name.clone())
            })
            .collect();
        hosts.sort();
        hosts.dedup();
        hosts
    }

    /// Each runner of each app that uses any of its databases, as
    /// `(host, app)` names: what is held out of rotation while it moves.
    pub fn app_runners(&self, fleet: &Fleet) -> Vec<(String, String)> {
        (0..fleet.apps.len())
            .filter(|a| {
                (fleet.apps[*a].bindings.iter()).any(|b| self.databases.contains(&b.database))
            })
            .flat_map(|a| {
                (fleet.placement[a].iter())
                    .map(move |h| (fleet.hosts[*h].name.clone(), fleet.apps[a].name.clone()))
            })
            .collect()
    }

    /// The databases it moves, by name: `main` or `main, notes`.
    pub fn names(&self, fleet: &Fleet) -> String {
        (self.databases.iter())
            .map(|d| fleet.databases[*d].name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn engine(&self) -> Engine {
        if self.is_postgres() {
            Engine::Postgres
        } else {
            Engine::Redis
        }
    }

    fn is_postgres(&self) -> bool {
        matches!(self.server, Server::Postgres(_))
    }

    fn unit(&self) -> String {
        match &self.server {
            Server::Postgres(c) => format!("postgresql@{POSTGRES_VERSION}-{}", c.name),
            Server::Redis { name, .. } => format!("redis-server@{name}"),
        }
    }

    /// Stops the old primary for good: it must never take a write again.
    /// Inside the data folder (postgres's) every step is postgres's own.
    fn fence_script(&self) -> String {
        match &self.server {
            Server::Postgres(c) => format!(
                "set -e; cd /; data={data}; systemctl stop {unit}; \
                 if runuser -u postgres -- test -d \"$data\"; then runuser -u postgres -- install -m 0600 /dev/null \"$data/standby.signal\"; \
                 runuser -u postgres -- rm -f \"$data/sitec-standby\"; fi",
                data = c.data_directory(),
                unit = self.unit()
            ),
            Server::Redis { .. } => format!("set -e; systemctl stop {}", self.unit()),
        }
    }

    /// Makes the follower a primary; its `sitec-standby` mark goes (it is
    /// no copy any more: if it is ever made a standby again, it is copied).
    fn promote_script(&self) -> String {
        match &self.server {
            Server::Postgres(c) => format!(
                "set -e; cd /; if [ \"$(runuser -u postgres -- psql -XAt -p {port} -c 'select pg_is_in_recovery()')\" = t ]; \
                 then pg_ctlcluster {POSTGRES_VERSION} {name} promote; fi; runuser -u postgres -- rm -f {data}/sitec-standby",
                port = c.port,
                name = c.name,
                data = c.data_directory()
            ),
            Server::Redis { name, port } => {
                format!("set -e; {} replicaof no one", super::redis_cli(name, *port))
            }
        }
    }

    /// Polls until the new primary takes a write (one minute at most).
    async fn wait_writable(&self, hosts: &impl Hosts, new: &str) -> Result<(), String> {
        let probe = match &self.server {
            Server::Postgres(c) => format!(
                "cd / && runuser -u postgres -- psql -XAt -p {} -c 'select not pg_is_in_recovery()'",
                c.port
            ),
            Server::Redis { name, port } => format!(
                "{} role | head -1 | sed 's/master/t/'",
                super::redis_cli(name, *port)
            ),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ran = hosts.sh(new, &probe).await?;
            if ran.ok && ran.stdout.trim() == "t" {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{new}: {} did not take writes within a minute after its promotion: {}",
                    self.unit(),
                    ran.stderr.trim()
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// `standby` for Postgres, `replica` for Redis: the spec's word.
pub fn follower_word(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgres => "standby",
        Engine::Redis => "replica",
    }
}

/// One edit of the spec's text: the bytes at `at`, which must read
/// `was`, become `now`.
#[derive(Debug, Clone, PartialEq)]
pub struct Edit {
    pub at: Range<usize>,
    pub was: String,
    pub now: String,
}

/// `text` with `edits` made, or which one no longer fits (the spec was
/// changed since it was read, or the value is not written as a host's
/// name). Edits do not overlap.
pub fn edited(text: &str, edits: &[Edit]) -> Result<String, String> {
    let mut sorted: Vec<&Edit> = edits.iter().collect();
    sorted.sort_by_key(|e| std::cmp::Reverse(e.at.start));
    let mut out = text.to_string();
    for edit in sorted {
        let found = out.get(edit.at.clone()).unwrap_or_default();
        if found != edit.was {
            return Err(format!(
                "expected `{}` at byte {}, found `{found}`",
                edit.was, edit.at.start
            ));
        }
        out.replace_range(edit.at.clone(), &edit.now);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = "database main { engine = postgres  primary = db1  standby = db2 }\n";

    fn at(word: &str, nth: usize) -> Range<usize> {
        let start = SPEC.match_indices(word).nth(nth).expect("in the spec").0;
        start..start + word.len()
    }

    #[test]
    fn the_edit_swaps_primary_and_standby() {
        let edits = [
            Edit {
                at: at("db1", 0),
                was: "db1".into(),
                now: "db2".into(),
            },
            Edit {
                at: at("db2", 0),
                was: "db2".into(),
                now: "db1".into(),
            },
        ];
        assert_eq!(
            edited(SPEC, &edits).expect("fits"),
            "database main { engine = postgres  primary = db2  standby = db1 }\n"
        );
    }

    /// What `choose` says about database `name` of a fleet with a
    /// standby for `main` and none for `solo`.
    fn chosen(name: &str, to: Option<&str>) -> Result<(Vec<String>, String, String), String> {
        let spec = "use std/platform\n\
            provider p { kind = local }\n\
            host db1 { provider = p  address = \"10.0.0.1\"  roles = [postgres, redis] }\n\
            host db2 { provider = p  address = \"10.0.0.2\"  roles = [postgres, redis] }\n\
            host run { provider = p  address = \"10.0.0.3\"  roles = [runner] }\n\
            checks { balancer_redundancy = off  replica_spread = off  database_redundancy = off }\n\
            database main { engine = postgres  primary = db1  standby = db2 }\n\
            database other { engine = postgres  primary = db1  standby = db2 }\n\
            database solo { engine = redis  primary = db1 }\n";
        let mut sources = crate::source::SourceMap::new();
        let (got, diagnostics) =
            crate::compile::with_fleet_text(&mut sources, "t.site", spec, |fleet, _| {
                let d = (fleet.databases.iter())
                    .position(|d| d.name == name)
                    .expect("a database");
                let to = to.map(|h| fleet.host_named(h).expect("a host"));
                Failover::choose(fleet, d, to).map(|f| {
                    (
                        f.names(fleet).split(", ").map(String::from).collect(),
                        fleet.hosts[f.old].name.clone(),
                        fleet.hosts[f.new].name.clone(),
                    )
                })
            });
        got.unwrap_or_else(|| panic!("the spec compiles: {diagnostics:#?}"))
    }

    #[test]
    fn a_shared_cluster_moves_whole_to_its_standby() {
        let (names, old, new) = chosen("main", None).expect("chosen");
        assert_eq!(names, ["main", "other"]);
        assert_eq!((old.as_str(), new.as_str()), ("db1", "db2"));
        assert!(chosen("main", Some("db2")).is_ok());
    }

    #[test]
    fn only_a_follower_can_take_over() {
        let said = chosen("main", Some("run")).expect_err("refused");
        assert!(said.contains("standby is db2, not run"), "{said}");
        let said = chosen("solo", None).expect_err("refused");
        assert!(said.contains("has no replica to promote"), "{said}");
        assert!(said.contains("sitec restore"), "{said}");
    }

    #[test]
    fn an_edit_that_no_longer_fits_changes_nothing() {
        let edits = [Edit {
            at: at("db1", 0),
            was: "db3".into(),
            now: "db2".into(),
        }];
        let said = edited(SPEC, &edits).expect_err("does not fit");
        assert!(said.contains("expected `db3`"), "{said}");
    }
}
