//! Failover on real hosts, under a continuous writer and page loads
//! through the balancer: the database host cut off the network (Postgres
//! and Redis primaries both on it) and `sitec failover` moves both; the
//! host comes back and one `apply` makes it the follower of both; then a
//! planned failover back, with the old primary reachable and fenced,
//! loses no write.

use crate::harness::{self, wait_for, DataFleet};
use std::collections::BTreeSet;
use std::time::Duration;

/// The failover prints where its time goes (`[+12.345s] what` on stderr).
const TRACED: &[(&str, &str)] = &[("SITEC_TRACE", "1")];

/// Where the writer and the page loader log on dxrun.
const WRITES: &str = "/root/failover-writes.log";
const PAGES: &str = "/root/failover-pages.log";

/// A writer on dxrun: one insert every 50 ms into `ticks` through the
/// blog's own DATABASE_URL (read again each time, so it follows the app
/// to the new primary; TLS, verify-full), logging `N EPOCH` for each
/// acknowledged insert; and a page loader through the balancer logging
/// `STATUS EPOCH` (the front page reads Postgres and writes Redis).
fn start_load(fleet: &DataFleet) {
    fleet.psql(
        "dxdb1",
        "blog",
        "create table ticks (n int primary key); grant select, insert on ticks to blog",
    );
    let writer = format!(
        "i=0; while :; do i=$((i+1)); \
         url=$(sed -n 's/^DATABASE_URL=\"\\(.*\\)\"$/\\1/p' /etc/sitec/apps/blog/environment); \
         if PGCONNECT_TIMEOUT=2 psql -XAtq -v ON_ERROR_STOP=1 \"$url\" -c \"insert into ticks values ($i)\" >/dev/null 2>&1; \
         then echo \"$i $(date +%s.%N)\"; fi; sleep 0.05; done >> {WRITES}"
    );
    let pages = format!(
        "while :; do code=$(curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 -H 'Host: blog.test' http://10.77.210.10/); \
         echo \"$code $(date +%s.%N)\"; sleep 0.1; done >> {PAGES}"
    );
    for (unit, script) in [("failover-writer", writer), ("failover-pages", pages)] {
        fleet.sh(
            "dxrun",
            &format!(
                "systemd-run --unit={unit} --collect sh -c {}",
                harness::quote(&script)
            ),
        );
    }
    let writing = wait_for(Duration::from_secs(30), || {
        (acknowledged(fleet).len() > 20).then_some(())
    });
    assert!(writing.is_some(), "the writer never wrote");
}

fn stop_load(fleet: &DataFleet) {
    fleet.sh(
        "dxrun",
        "systemctl stop failover-writer failover-pages; true",
    );
}

/// `(N, epoch seconds)` of every insert the writer saw acknowledged.
fn acknowledged(fleet: &DataFleet) -> Vec<(i64, f64)> {
    parse_log(&fleet.sh("dxrun", &format!("cat {WRITES} 2>/dev/null || true")))
        .into_iter()
        .filter_map(|(n, at)| Some((n.parse().ok()?, at)))
        .collect()
}

fn parse_log(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter_map(|l| {
            let (word, at) = l.split_once(' ')?;
            Some((word.to_string(), at.parse().ok()?))
        })
        .collect()
}

/// The longest time between two acknowledged writes that ends after
/// `since` (the one that spans it included).
fn longest_gap(writes: &[(i64, f64)], since: f64) -> f64 {
    let times: Vec<f64> = writes.iter().map(|w| w.1).collect();
    (times.windows(2))
        .filter(|w| w[1] >= since)
        .map(|w| w[1] - w[0])
        .fold(0.0, f64::max)
}

/// Acknowledged writes the primary on `host` does not hold.
fn lost(fleet: &DataFleet, host: &str, writes: &[(i64, f64)]) -> Vec<i64> {
    let held: BTreeSet<i64> = fleet
        .psql(host, "blog", "select n from ticks")
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    writes
        .iter()
        .map(|w| w.0)
        .filter(|n| !held.contains(n))
        .collect()
}

/// Pages that did not answer 200 after `since`, of how many.
fn failed_pages(fleet: &DataFleet, since: f64) -> (usize, usize) {
    let pages = parse_log(&fleet.sh("dxrun", &format!("cat {PAGES}")));
    let after: Vec<_> = pages.iter().filter(|p| p.1 >= since).collect();
    (after.iter().filter(|p| p.0 != "200").count(), after.len())
}

fn now(fleet: &DataFleet) -> f64 {
    fleet.sh("dxrun", "date +%s.%N").parse().expect("a time")
}

/// The spec's `database NAME { ... }` line.
fn database_line(fleet: &DataFleet, name: &str) -> String {
    let spec = std::fs::read_to_string(&fleet.spec).expect("the spec");
    spec.lines()
        .find(|l| l.starts_with(&format!("database {name} ")))
        .unwrap_or_default()
        .to_string()
}

fn redis_role(fleet: &DataFleet, host: &str) -> String {
    crate::redis(fleet, host, "role")
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// dxdb1 (primary of `main` and `cache`) is cut off the network;
/// `sitec failover SPEC main cache` promotes dxdb2 for both, says dxdb1
/// could not be fenced, edits the spec and applies it: the page serves
/// from dxdb2 and the writer writes there. Then dxdb1 comes back and one
/// `apply` makes it the standby and the replica of dxdb2.
pub fn a_dead_primary_host_fails_over_and_rejoins(fleet: &DataFleet) {
    start_load(fleet);
    let link = fleet.outer_link("dxdb1");
    let cut_at = now(fleet);
    harness::set_link(&link, false);
    let out = fleet.run_with(&["failover"], &["main", "cache", "--yes"], TRACED);
    let said = harness::text(&out);
    harness::set_link(&link, true);
    eprintln!("sitec failover with dxdb1 cut off:\n{said}");
    assert!(
        said.contains("dxdb1 cannot be reached: not fenced"),
        "{said}"
    );
    assert!(said.contains("promoted dxdb2"), "{said}");
    // The apply that follows does not wait for dxdb1 a second time, and
    // repoints the apps' host before the others.
    assert!(said.contains("did not answer the failover"), "{said}");
    // Held requests would wait on the dead host all the same.
    assert!(said.contains("the apps are not held"), "{said}");
    assert!(said.contains("apps repointed"), "{said}");
    assert!(
        database_line(fleet, "main").contains("primary = dxdb2  standby = dxdb1"),
        "{}",
        database_line(fleet, "main")
    );
    assert!(database_line(fleet, "cache").contains("primary = dxdb2  replica = dxdb1"));
    // The writer writes on dxdb2 again (through the app's new DATABASE_URL).
    let before = acknowledged(fleet).len();
    let resumed = wait_for(Duration::from_secs(60), || {
        (acknowledged(fleet).len() > before + 20).then_some(())
    });
    assert!(resumed.is_some(), "the writer never wrote on dxdb2");
    let page = fleet.sh(
        "dxrun",
        "curl -fsS --max-time 10 -H 'Host: blog.test' http://10.77.210.10/",
    );
    assert!(page.contains("Data on hosts"), "{page}");
    let writes = acknowledged(fleet);
    let downtime = longest_gap(&writes, cut_at);
    let lost_writes = lost(fleet, "dxdb2", &writes);
    let (failed, loaded) = failed_pages(fleet, cut_at);
    eprintln!(
        "dead host: writes stopped for {downtime:.1} s; {} acknowledged writes lost ({lost_writes:?}); \
         {failed} of {loaded} page loads failed",
        lost_writes.len()
    );
    // dxdb1 is back: one apply makes it dxdb2's standby and replica.
    fleet.apply();
    let caught_up = wait_for(Duration::from_secs(60), || {
        let n = fleet.psql("dxdb2", "blog", "select max(n) from ticks");
        let out = fleet.ssh(
            "dxdb1",
            &format!(
                "cd / && runuser -u postgres -- psql -XAt -d blog -c \
                 'select pg_is_in_recovery(), count(*) >= 1 from ticks where n = {n}'"
            ),
        );
        (harness::text(&out).trim() == "t|t").then_some(())
    });
    assert!(caught_up.is_some(), "dxdb1 never followed dxdb2");
    assert_eq!(redis_role(fleet, "dxdb2"), "master");
    crate::redis(fleet, "dxdb2", "set after-failover yes");
    let followed = wait_for(Duration::from_secs(30), || {
        (redis_role(fleet, "dxdb1") == "slave"
            && crate::redis(fleet, "dxdb1", "get after-failover") == "yes")
            .then_some(())
    });
    assert!(followed.is_some(), "dxdb1's Redis never followed dxdb2");
    let again = harness::text(&fleet.run(&["plan"], &[]));
    assert!(
        again.contains("No changes"),
        "plan after the rejoin: {again}"
    );
}

/// With both hosts up, `sitec failover SPEC main` fences dxdb2 (stopped
/// cleanly, so it streams every write first), promotes dxdb1 and makes
/// dxdb2 its standby in the same run: no acknowledged write is lost, and
/// page loads through the balancer do not fail (the apps are held out of
/// rotation while it moves, and libpq finds the new primary).
pub fn a_planned_failover_loses_no_write(fleet: &DataFleet) {
    let started = now(fleet);
    let out = fleet.run_with(&["failover"], &["main", "--yes"], TRACED);
    let said = harness::text(&out);
    eprintln!("sitec failover with both hosts up:\n{said}");
    assert!(out.status.success(), "{said}");
    assert!(said.contains("fenced dxdb2"), "{said}");
    assert!(database_line(fleet, "main").contains("primary = dxdb1  standby = dxdb2"));
    let before = acknowledged(fleet).len();
    let resumed = wait_for(Duration::from_secs(60), || {
        (acknowledged(fleet).len() > before + 20).then_some(())
    });
    assert!(resumed.is_some(), "the writer never wrote on dxdb1");
    stop_load(fleet);
    let writes = acknowledged(fleet);
    // Writes lost when dxdb1 was cut off are not this failover's.
    let since: Vec<_> = writes.iter().copied().filter(|w| w.1 >= started).collect();
    let lost_writes = lost(fleet, "dxdb1", &since);
    let (failed, loaded) = failed_pages(fleet, started);
    eprintln!(
        "planned failover: writes stopped for {:.1} s; {} acknowledged writes lost; \
         {failed} of {loaded} page loads failed",
        longest_gap(&writes, started),
        lost_writes.len()
    );
    assert!(lost_writes.is_empty(), "lost: {lost_writes:?}");
    // The apps were held out of rotation while the database moved (the
    // balancers held their requests), found the new primary by themselves,
    // and the repoint reloads gunicorn, whose old workers serve until the
    // new ones are ready: no page load fails. (It was 18 of 110 and 33 of
    // 186 when every page that read the database between the fence and the
    // repoint failed, then 2 of 184 when the repoint restarted gunicorn
    // and the balancer held the pages asked meanwhile past curl's 5 s.)
    assert!(said.contains("held blog on dxrun"), "{said}");
    assert!(
        said.contains("service:sitec-app-blog: reloaded"),
        "the repoint reloads gunicorn: {said}"
    );
    assert_eq!(
        failed, 0,
        "{failed} of {loaded} page loads failed during a planned failover"
    );
    let standby = wait_for(Duration::from_secs(60), || {
        let out = fleet.ssh(
            "dxdb2",
            "cd / && runuser -u postgres -- psql -XAt -d blog -c 'select pg_is_in_recovery()'",
        );
        (harness::text(&out).trim() == "t").then_some(())
    });
    assert!(standby.is_some(), "dxdb2 is not dxdb1's standby");
}
