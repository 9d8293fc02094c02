//! The data layer on real hosts: a local fleet with a Postgres primary and
//! standby, a Redis primary and replica, and a backup host, applied from a
//! spec and then broken on purpose. One fleet serves every scenario in
//! turn (booting and applying it is most of the time), so the scenarios run
//! in one test, in order, each a function of `tests/data/`. Needs root,
//! systemd-container and btrfs-progs (CI has them; elsewhere the test
//! fails unless the run sets `SITEC_SKIP_ROOT_TESTS=1`).

mod common;

#[path = "data/harness.rs"]
mod harness;

#[path = "data/backups.rs"]
mod backups;

#[path = "data/failover.rs"]
mod failover;

#[path = "data/media.rs"]
mod media;

use harness::{can_boot, wait_for, DataFleet, TestResult};
use std::time::Duration;

/// The fleet: every database host and the backup host get a btrfs file
/// system of their own from `sitec fleet up`.
const SPEC: &str = r#"use std/platform

provider local { kind = local }

host dxlb { provider = local  address = "10.77.210.10"  roles = [balancer] }
# The runner has the engines but no database: restore drills (`--to`) go there.
host dxrun { provider = local  address = "10.77.210.11"  roles = [runner, postgres, redis] }
host dxdb1 { provider = local  address = "10.77.210.21"  roles = [postgres, redis] }
host dxdb2 { provider = local  address = "10.77.210.22"  roles = [postgres, redis] }
host dxvault { provider = local  address = "10.77.210.30"  roles = [backup] }

# Containers on one machine: one provider only.
checks { balancer_redundancy = off  replica_spread = off }

database main { engine = postgres  primary = dxdb1  standby = dxdb2 }
database cache { engine = redis  tier = dedicated  primary = dxdb1  replica = dxdb2 }

app blog {
  source = "apps/blog"
  python = "3.11"
  wsgi = "blog.wsgi:application"
  domains = ["blog.test", "*"]
  databases { default = main  cache = cache }
  static "/static/" = "collected_static"
  # Uploads: on dxrun, a runner the backup pulls from, a subvolume.
  media "/media/" = "uploads"
  settings { SITE_TITLE = "Data on hosts"  SECRET_KEY = secret("blog.secret_key") }
}

# A second app on the same shared cluster: its own role and database.
app notes {
  source = "apps/blog"
  python = "3.11"
  wsgi = "blog.wsgi:application"
  domains = ["notes.test"]
  databases { default = main }
  settings { SITE_TITLE = "Notes"  SECRET_KEY = secret("notes.secret_key") }
}

backup often {
  from = [dxdb1, dxdb2, dxrun]
  to = dxvault
  every = 30s
  keep { hourly = 4  daily = 3  weekly = 2  monthly = 2 }
}
"#;

#[test]
fn the_data_layer_survives_what_breaks_it() -> TestResult {
    if !can_boot() {
        return Ok(());
    }
    let _lock = common::exclusive("dx")?;
    let fleet = DataFleet::boot("dx", SPEC)?;
    first_apply_puts_the_data_on_subvolumes(&fleet);
    rows_written_on_the_primary_appear_on_the_standby(&fleet);
    a_lost_standby_signal_is_made_again_by_postgres(&fleet);
    the_redis_replica_follows(&fleet);
    apps_on_a_shared_cluster_cannot_read_each_other(&fleet);
    the_apps_serve_and_plaintext_is_refused(&fleet);
    backups::a_backup_cycle_runs_on_its_timer(&fleet);
    backups::the_database_host_cannot_reach_a_backup(&fleet);
    backups::the_backup_key_only_lists_and_sends(&fleet);
    backups::restore_brings_back_every_committed_row(&fleet);
    backups::redis_restore_brings_back_the_old_value(&fleet);
    media::media_is_snapshotted_pulled_and_restored(&fleet);
    backups::retention_keeps_what_keep_says_over_a_month(&fleet);
    failover::a_dead_primary_host_fails_over_and_rejoins(&fleet);
    failover::a_planned_failover_loses_no_write(&fleet);
    let state_root = fleet.dir.path().join(".fleet");
    let left = fleet.down();
    assert!(left.is_empty(), "after fleet down: {left:#?}");
    assert!(harness::leftovers(&state_root).is_empty());
    Ok(())
}

/// The first apply of a fleet with backups converges: every data folder
/// is a subvolume made before the packages and servers that write there,
/// and a second apply changes nothing.
fn first_apply_puts_the_data_on_subvolumes(fleet: &DataFleet) {
    fleet.apply();
    for (host, paths) in [
        (
            "dxdb1",
            &[
                "/var/lib/postgresql",
                "/var/lib/redis",
                "/var/lib/sitec/snapshots",
            ][..],
        ),
        ("dxdb2", &["/var/lib/postgresql", "/var/lib/redis"][..]),
        ("dxrun", &["/srv/sitec/apps/blog/media/uploads"][..]),
        ("dxvault", &["/srv/sitec/backups"][..]),
    ] {
        for path in paths {
            fleet.sh(host, &format!("btrfs subvolume show {path} >/dev/null"));
        }
    }
    let again = fleet.run(&["plan"], &[]);
    let said = harness::text(&again);
    assert!(said.contains("No changes"), "second plan: {said}");
}

/// A table made and filled on dxdb1 is on dxdb2 moments later, and dxdb2
/// is read-only (in recovery).
fn rows_written_on_the_primary_appear_on_the_standby(fleet: &DataFleet) {
    fleet.psql(
        "dxdb1",
        "blog",
        "create table streamed (n int primary key); insert into streamed select generate_series(1, 1000)",
    );
    assert!(
        the_standby_streams(fleet, 1000),
        "the standby never had the 1000 rows"
    );
}

/// Whether dxdb2 comes to hold `rows` rows of `streamed` within 30 s, in recovery.
fn the_standby_streams(fleet: &DataFleet, rows: usize) -> bool {
    let want = format!("t|{rows}");
    let seen = wait_for(Duration::from_secs(30), || {
        let out = fleet.ssh(
            "dxdb2",
            "cd / && runuser -u postgres -- psql -XAt -d blog -c 'select pg_is_in_recovery(), count(*) from streamed'",
        );
        (String::from_utf8_lossy(&out.stdout).trim() == want).then_some(())
    });
    seen.is_some()
}

/// The standby's `standby.signal` is postgres's own, made by postgres
/// (root never opens a path in its data folder). Removed, the next apply
/// has postgres make it again, so the server stays a standby when it next
/// starts; a restart now finds it a standby, still streaming.
fn a_lost_standby_signal_is_made_again_by_postgres(fleet: &DataFleet) {
    let signal = "/var/lib/postgresql/15/main/standby.signal";
    let stat = format!("stat -c '%U:%G %a %s' {signal}");
    assert_eq!(fleet.sh("dxdb2", &stat), "postgres:postgres 600 0");
    fleet.sh("dxdb2", &format!("runuser -u postgres -- rm {signal}"));
    let applied = fleet.apply();
    assert!(
        applied.contains("standby-signal-main"),
        "the apply did not make the signal again: {applied}"
    );
    assert_eq!(fleet.sh("dxdb2", &stat), "postgres:postgres 600 0");
    fleet.sh("dxdb2", "systemctl restart postgresql@15-main");
    fleet.psql("dxdb1", "blog", "insert into streamed values (1001)");
    assert!(
        the_standby_streams(fleet, 1001),
        "after the restart, dxdb2 is not a streaming standby"
    );
}

/// `redis-cli` on `host` against the cache's server there, authenticated
/// with the password its config holds.
fn redis(fleet: &DataFleet, host: &str, command: &str) -> String {
    fleet.sh(
        host,
        &format!(
            "conf=/etc/sitec/redis/cache.conf; \
             REDISCLI_AUTH=$(awk '/^requirepass/ {{ gsub(/\"/, \"\", $2); print $2 }}' $conf) \
             redis-cli --tls --cacert /etc/sitec/fleet-ca.pem \
             -p $(awk '/^tls-port/ {{ print $2 }}' $conf) {command}"
        ),
    )
}

/// The Redis replica on dxdb2 follows dxdb1 with the shared password: a
/// key set on the primary is read on the replica, which refuses writes.
fn the_redis_replica_follows(fleet: &DataFleet) {
    assert_eq!(redis(fleet, "dxdb1", "set followed yes"), "OK");
    let seen = wait_for(Duration::from_secs(30), || {
        (redis(fleet, "dxdb2", "get followed") == "yes").then_some(())
    });
    assert!(
        seen.is_some(),
        "the replica never had the key: {}",
        redis(fleet, "dxdb2", "info replication")
    );
    let refused = redis(fleet, "dxdb2", "set written no");
    assert!(
        refused.contains("READONLY"),
        "a write on the replica: {refused}"
    );
}

/// `psql` from the runner, as `user` with `password`, into `database`
/// on the shared cluster: whether it got in, and what it said.
fn connect_as(fleet: &DataFleet, user: &str, password: &str, database: &str) -> (bool, String) {
    let out = fleet.ssh(
        "dxrun",
        &format!(
            "PGPASSWORD={} psql -XAt -c 'select current_user' \
             'host=10.77.210.21 user={user} dbname={database} sslmode=verify-full sslrootcert=/etc/sitec/fleet-ca.pem'",
            harness::quote(password)
        ),
    );
    (out.status.success(), harness::text(&out))
}

/// blog and notes each have a role and a database in the one shared
/// cluster: each gets into its own, neither into the other's.
fn apps_on_a_shared_cluster_cannot_read_each_other(fleet: &DataFleet) {
    let blog = fleet.secret("db.main.blog.password");
    let notes = fleet.secret("db.main.notes.password");
    assert_eq!(
        connect_as(fleet, "blog", &blog, "blog"),
        (true, "blog\n".into())
    );
    assert_eq!(
        connect_as(fleet, "notes", &notes, "notes"),
        (true, "notes\n".into())
    );
    for (user, password, other) in [("notes", &notes, "blog"), ("blog", &blog, "notes")] {
        let (got_in, said) = connect_as(fleet, user, password, other);
        assert!(!got_in, "{user} got into {other}: {said}");
    }
}

/// The blog answers through the balancer (its Postgres and Redis over
/// TLS, verified); from its runner, a plaintext connection to either
/// database is refused, and a client that names the server otherwise than
/// its certificate does is refused too.
fn the_apps_serve_and_plaintext_is_refused(fleet: &DataFleet) {
    let page = fleet.sh(
        "dxrun",
        "curl -fsS --max-time 10 -H 'Host: blog.test' http://10.77.210.10/",
    );
    assert!(page.contains("Data on hosts"), "{page}");
    let blog = fleet.secret("db.main.blog.password");
    let psql = |conninfo: &str| {
        let out = fleet.ssh(
            "dxrun",
            &format!(
                "PGPASSWORD={} psql -XAt -c 'select 1' {}",
                harness::quote(&blog),
                harness::quote(conninfo)
            ),
        );
        (out.status.success(), harness::text(&out))
    };
    let (plain, said) = psql("host=10.77.210.21 user=blog dbname=blog sslmode=disable");
    assert!(!plain, "plaintext Postgres got in: {said}");
    assert!(said.contains("no encryption"), "{said}");
    let (misnamed, said) = psql(
        "hostaddr=10.77.210.21 host=db.example.com user=blog dbname=blog \
         sslmode=verify-full sslrootcert=/etc/sitec/fleet-ca.pem",
    );
    assert!(!misnamed, "a certificate for another name passed: {said}");
    assert!(said.contains("does not match host name"), "{said}");
    let port = fleet.sh(
        "dxdb1",
        "awk '/^tls-port/ { print $2 }' /etc/sitec/redis/cache.conf",
    );
    let plain = harness::text(&fleet.ssh(
        "dxrun",
        &format!("redis-cli -h 10.77.210.21 -p {port} ping"),
    ));
    assert!(
        !plain.contains("PONG") && !plain.contains("NOAUTH"),
        "plaintext Redis answered: {plain}"
    );
    let tls = harness::text(&fleet.ssh(
        "dxrun",
        &format!("redis-cli --tls --cacert /etc/sitec/fleet-ca.pem -h 10.77.210.21 -p {port} ping"),
    ));
    assert!(tls.contains("NOAUTH"), "Redis over TLS: {tls}");
}
