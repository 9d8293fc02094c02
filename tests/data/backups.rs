//! Backups on the data fleet: the timers pull, the database host cannot
//! touch a backup, the backup host's key only lists and sends, restore
//! brings back every committed row (and a drill on another host the same
//! rows) and a Redis key's old value, retention keeps what `keep` says.

use crate::harness::{quote, text, wait_for, DataFleet};
use sitec::data::retention;
use sitec::data::stamp::Stamp;
use sitec::model::Keep;
use std::time::Duration;

/// A snapshot of dxdb1's Postgres data is taken and pulled to dxvault by
/// the timers alone (every 30 s), and `sitec backups` lists both.
pub fn a_backup_cycle_runs_on_its_timer(fleet: &DataFleet) {
    let pulled = wait_for(Duration::from_secs(150), || {
        let rows = fleet.backups("main");
        let copy = rows
            .iter()
            .find(|r| r["on"] == "dxvault" && r["of"] == "dxdb1")?;
        let stamp = copy["stamp"].as_str()?.to_string();
        let local = rows
            .iter()
            .any(|r| r["on"] == "dxdb1" && r["stamp"] == stamp.as_str());
        local.then_some(copy.clone())
    });
    let copy = pulled.unwrap_or_else(|| {
        panic!(
            "no copy of dxdb1's data reached dxvault: {}",
            fleet.sh(
                "dxvault",
                "journalctl -u sitec-backup-often --no-pager | tail -20"
            )
        )
    });
    assert!(copy["bytes"].as_u64().unwrap_or(0) > 1_000_000, "{copy}");
    assert!(copy["pulled_bytes"].as_u64().is_some(), "{copy}");
    let table = text(&fleet.run(&["backups"], &["main"]));
    assert!(
        table.contains("dxvault:/srv/sitec/backups/often/dxdb1"),
        "{table}"
    );
}

/// Every private key on the database host (root's, sshd's, any other a
/// file holds) fails to log in to the backup host: nothing there can read,
/// change or delete a backup.
pub fn the_database_host_cannot_reach_a_backup(fleet: &DataFleet) {
    let keys = fleet.sh(
        "dxdb1",
        "grep -rlI -e 'PRIVATE KEY-----' /etc /root /home /srv /usr/local /var/lib/sitec \
         /var/lib/postgresql /var/lib/redis 2>/dev/null | grep -v '^/var/lib/sitec/snapshots/' || true",
    );
    let keys: Vec<&str> = keys.lines().collect();
    assert!(
        keys.iter().any(|k| k.contains("ssh_host_ed25519_key")),
        "the host's own key is found: {keys:?}"
    );
    for key in keys {
        let tried = fleet.ssh(
            "dxdb1",
            &format!(
                "ssh -i {} -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=no \
                 -o UserKnownHostsFile=/dev/null -o ConnectTimeout=5 root@10.77.210.30 \
                 'ls /srv/sitec/backups; rm -rf /srv/sitec/backups/often' 2>&1",
                quote(key)
            ),
        );
        let said = text(&tried);
        assert!(
            !tried.status.success() && !said.contains("often"),
            "{key} on dxdb1 reached dxvault: {said}"
        );
    }
    let copies = fleet.sh("dxvault", "ls /srv/sitec/backups/often");
    assert!(copies.contains("dxdb1"), "the copies are still there");
}

/// The backup host's key, used by hand on dxvault: `list` answers, a shell
/// or any other command is refused by the database host's forced command.
pub fn the_backup_key_only_lists_and_sends(fleet: &DataFleet) {
    let as_backup = |request: &str| {
        fleet.ssh(
            "dxvault",
            &format!(
                "grep -v '^#' /etc/sitec/backup/often.key > /tmp/k && chmod 600 /tmp/k && \
                 ssh -i /tmp/k -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=no \
                 -o UserKnownHostsFile=/dev/null root@10.77.210.21 {}",
                quote(request)
            ),
        )
    };
    let listed = as_backup("list");
    assert!(listed.status.success(), "list: {}", text(&listed));
    assert!(text(&listed).contains("postgresql"), "{}", text(&listed));
    for refused in [
        "rm -rf /var/lib/sitec/snapshots/often",
        "cat /etc/shadow",
        "send ../../../etc postgresql",
        "bash",
    ] {
        let out = as_backup(refused);
        assert!(!out.status.success(), "{refused} ran: {}", text(&out));
        assert!(
            text(&out).contains("refused") || text(&out).contains("is not"),
            "{refused}: {}",
            text(&out)
        );
    }
    let still = fleet.sh("dxdb1", "ls /var/lib/sitec/snapshots/often | wc -l");
    assert_ne!(still, "0", "the snapshots are still there");
}

/// The epoch second a stamp names.
fn epoch(stamp: &str) -> f64 {
    Stamp::parse(stamp).map_or(0.0, |s| s.0 as f64)
}

/// A writer commits rows on dxdb1 one by one, logging when each commit
/// returned, while the timer takes a snapshot; the data folder is then
/// destroyed, and `sitec restore` brings back every row whose commit
/// returned before the snapshot's instant, and none written well after.
pub fn restore_brings_back_every_committed_row(fleet: &DataFleet) {
    fleet.psql("dxdb1", "blog", "create table written (n int primary key)");
    fleet.sh(
        "dxdb1",
        "touch /run/writer.on; rm -f /run/writer.log; cd /; nohup runuser -u postgres -- bash -c \
         'i=0; while [ -e /run/writer.on ]; do i=$((i+1)); \
          psql -XAtq -d blog -c \"insert into written values ($i)\" && echo \"$i $(date +%s.%N)\" >> /tmp/writer.log; \
          done' >/dev/null 2>&1 &",
    );
    let began = Stamp::now();
    let snapshot = wait_for(Duration::from_secs(90), || {
        let rows = fleet.backups("main");
        rows.iter()
            .filter(|r| r["on"] == "dxdb1" && r["of"] == "dxdb1")
            .filter_map(|r| r["stamp"].as_str().map(str::to_string))
            .filter(|s| Stamp::parse(s).is_some_and(|s| s.0 > began.0 + 2))
            .max()
    })
    .expect("a snapshot while the writer writes");
    // Keep that snapshot from being rotated away while the test uses it.
    fleet.sh("dxdb1", "systemctl stop sitec-snapshot-often.timer");
    // Writes well after the snapshot, which the restore must not have:
    // the writer goes on until ten rows were committed 4 s after it.
    let at = epoch(&snapshot);
    let later = wait_for(Duration::from_secs(90), || {
        let log = fleet.sh("dxdb1", "cat /tmp/writer.log");
        let late = log
            .lines()
            .filter_map(|l| l.split_once(' ')?.1.parse::<f64>().ok())
            .filter(|t| *t > at + 4.0)
            .count();
        (late >= 10).then_some(())
    });
    assert!(
        later.is_some(),
        "the writer committed rows after the snapshot"
    );
    // The writer stops (its last insert done) before its log is read.
    fleet.sh(
        "dxdb1",
        "rm -f /run/writer.on; for i in $(seq 200); do pgrep -u postgres -f writer.on >/dev/null || break; sleep 0.05; done; \
         ! pgrep -u postgres -f writer.on && cp /tmp/writer.log /run/writer.log",
    );
    let log = fleet.sh("dxdb1", "cat /run/writer.log");
    let acked: Vec<(u64, f64)> = log
        .lines()
        .filter_map(|l| {
            let (n, t) = l.split_once(' ')?;
            Some((n.parse().ok()?, t.parse().ok()?))
        })
        .collect();
    let before: Vec<u64> = acked
        .iter()
        .filter(|(_, t)| *t < at)
        .map(|(n, _)| *n)
        .collect();
    let well_after: Vec<u64> = acked
        .iter()
        .filter(|(_, t)| *t > at + 4.0)
        .map(|(n, _)| *n)
        .collect();
    assert!(
        before.len() > 20,
        "rows committed before the snapshot: {}",
        before.len()
    );
    assert!(!well_after.is_empty(), "rows committed after it");

    // The primary's data folder is destroyed.
    fleet.sh(
        "dxdb1",
        "systemctl kill -s KILL postgresql@15-main; \
         for i in $(seq 200); do systemctl is-active -q postgresql@15-main || break; sleep 0.05; done; \
         ! systemctl is-active -q postgresql@15-main && rm -rf /var/lib/postgresql/15/main",
    );
    let snapshot_id = format!("dxdb1/{snapshot}");
    a_planted_link_does_not_lead_the_restore(fleet, &snapshot_id);
    let restored = fleet.run(&["restore"], &["main", "--snapshot", &snapshot_id, "--yes"]);
    let said = text(&restored);
    assert!(restored.status.success(), "restore: {said}");
    eprintln!("{said}");
    assert!(said.contains("pg_dumpall read every row"), "{said}");
    assert!(said.contains("standby dxdb2: cloned again"), "{said}");
    let present: std::collections::BTreeSet<u64> = fleet
        .psql("dxdb1", "blog", "select n from written")
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect();
    let lost: Vec<&u64> = before.iter().filter(|n| !present.contains(n)).collect();
    assert!(
        lost.is_empty(),
        "committed before the snapshot, missing: {lost:?}"
    );
    let came_back: Vec<&u64> = well_after.iter().filter(|n| present.contains(n)).collect();
    assert!(
        came_back.is_empty(),
        "written after the snapshot, present: {came_back:?}"
    );
    // The standby follows the restored primary again.
    let seen = wait_for(Duration::from_secs(60), || {
        let out = fleet.ssh(
            "dxdb1",
            "cd / && runuser -u postgres -- psql -XAt -c 'select state from pg_stat_replication'",
        );
        text(&out).contains("streaming").then_some(())
    });
    assert!(seen.is_some(), "dxdb2 streams from the restored primary");
    a_drill_on_another_host_holds_the_same_rows(fleet, &snapshot_id, &present);
    fleet.sh("dxdb1", "systemctl start sitec-snapshot-often.timer");
}

/// The same snapshot restored as a drill on dxrun (`--to`), a host with
/// the engines and no database, holds exactly the rows the restored
/// primary holds, in a server run by postgres on 127.0.0.1 only. First
/// postgres there replaces the drill's data folder by a link to a
/// root-only folder: root must not follow it (it did: Debian's
/// pg_createcluster, run as root, gave that folder to postgres), and the
/// drill moves the link aside as postgres and goes on.
fn a_drill_on_another_host_holds_the_same_rows(
    fleet: &DataFleet,
    snapshot: &str,
    present: &std::collections::BTreeSet<u64>,
) {
    let data = "/var/lib/postgresql/15/main_restored";
    let unit = "sitec-restore-postgres-main_restored";
    fleet.sh(
        "dxrun",
        &format!(
            "mkdir -m 0700 /etc/sitec-canary && echo canary > /etc/sitec-canary/shadow-canary && \
             chmod 0600 /etc/sitec-canary/shadow-canary && cd / && runuser -u postgres -- sh -c \
             'mkdir -p /var/lib/postgresql/15 && ln -s /etc/sitec-canary {data}'"
        ),
    );
    let before = fleet.sh("dxrun", CANARY);
    let drill = fleet.run(
        &["restore"],
        &["main", "--snapshot", snapshot, "--to", "dxrun", "--yes"],
    );
    let said = text(&drill);
    let after = fleet.sh("dxrun", CANARY);
    assert_eq!(
        after, before,
        "the drill wrote through postgres's link: {said}"
    );
    assert!(drill.status.success(), "restore --to dxrun: {said}");
    eprintln!("{said}");
    // The main cluster's port, 5432, + 10000.
    assert!(said.contains("listens on 127.0.0.1:15432 only"), "{said}");
    assert!(said.contains("pg_dumpall read every row"), "{said}");
    let aside = fleet.sh("dxrun", &format!("readlink {data}.sitec-before-restore"));
    assert_eq!(
        aside, "/etc/sitec-canary",
        "the link is moved aside, as it was"
    );

    let rows: std::collections::BTreeSet<u64> = fleet
        .sh(
            "dxrun",
            "cd / && runuser -u postgres -- psql -p 15432 -XAt -d blog -c 'select n from written'",
        )
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect();
    assert_eq!(
        &rows, present,
        "the drill holds what the restored primary holds"
    );
    let owner = fleet.sh(
        "dxrun",
        &format!("ps -o user= -p $(systemctl show -p MainPID --value {unit})"),
    );
    assert_eq!(owner, "postgres", "the drill's server runs as postgres");
    let not_postgres = fleet.sh("dxrun", &format!("find {data} ! -user postgres | head -3"));
    assert_eq!(not_postgres, "", "every file of the drill is postgres's");
    let listening = fleet.sh("dxrun", "ss -Hltn 'sport = :15432' | awk '{print $4}'");
    assert!(
        !listening.is_empty() && listening.lines().all(|l| l == "127.0.0.1:15432"),
        "the drill listens on 127.0.0.1 only: {listening}"
    );
    fleet.sh(
        "dxrun",
        &format!(
            "systemctl stop {unit} && rm -r /etc/sitec-canary && cd / && \
             runuser -u postgres -- rm -rf {data} {data}.sitec-before-restore"
        ),
    );
}

/// Everything under the canary folder, with owner, mode, size and content.
const CANARY: &str = "find /etc/sitec-canary -printf '%p %u:%g %m %s\\n' | sort; cat /etc/sitec-canary/shadow-canary";

/// The postgres user is hostile: it replaces the folder that holds the
/// cluster's data folder (its own, `/var/lib/postgresql/15`) by a link to
/// a root-only folder holding a root-only file. A restore then must not
/// write there (it did, as root: the snapshot's copy was unpacked into
/// it, moved and `chown`ed there): it fails, and the folder and the file
/// are as they were. The link is then taken away again.
fn a_planted_link_does_not_lead_the_restore(fleet: &DataFleet, snapshot: &str) {
    fleet.sh(
        "dxdb1",
        "mkdir -m 0700 /etc/sitec-canary && echo canary > /etc/sitec-canary/shadow-canary && \
         chmod 0600 /etc/sitec-canary/shadow-canary",
    );
    let before = fleet.sh("dxdb1", CANARY);
    fleet.sh(
        "dxdb1",
        "cd / && runuser -u postgres -- sh -c 'mv /var/lib/postgresql/15 /var/lib/postgresql/15.hidden && \
         ln -s /etc/sitec-canary /var/lib/postgresql/15'",
    );
    let restored = fleet.run(&["restore"], &["main", "--snapshot", snapshot, "--yes"]);
    let said = text(&restored);
    let after = fleet.sh("dxdb1", CANARY);
    fleet.sh(
        "dxdb1",
        "rm /var/lib/postgresql/15 && mv /var/lib/postgresql/15.hidden /var/lib/postgresql/15 && rm -r /etc/sitec-canary",
    );
    if after != before {
        let first: Vec<&str> = after.lines().take(4).collect();
        panic!(
            "the restore wrote through postgres's link: {} entries under it now, was {}, first {first:#?}; restore said: {said}",
            after.lines().count(),
            before.lines().count()
        );
    }
    assert!(
        !restored.status.success(),
        "restored through the link: {said}"
    );
    assert!(said.contains("Permission denied"), "{said}");
}

/// A month of copies, one every two hours, planted among dxdb1's real
/// copies on the backup host (subvolumes, as received), then the backup's
/// own pull unit runs (`sitec-backup-often.service`, what its timer
/// starts): it pulls what is new and prunes by the spec's `keep { hourly =
/// 4  daily = 3  weekly = 2  monthly = 2 }`, read from the pull.toml apply
/// wrote. What is left is exactly what that `keep` keeps of the month and
/// the real copies (pulled ones included).
pub fn retention_keeps_what_keep_says_over_a_month(fleet: &DataFleet) {
    let dir = "/srv/sitec/backups/often/dxdb1";
    // No pull of the timer's beside the one started here.
    fleet.sh("dxvault", "systemctl stop sitec-backup-often.timer");
    let real = stamps_in(fleet, dir);
    assert!(!real.is_empty(), "no real copy of dxdb1 on dxvault");
    let start = Stamp::parse("2026-11-01T000000Z").expect("a stamp").0;
    let month: Vec<Stamp> = (0..32 * 12).map(|i| Stamp(start + i * 7200)).collect();
    assert!(
        month.iter().all(|m| real.iter().all(|r| m < r)),
        "real copies are newer than the month"
    );
    let names: Vec<String> = month.iter().map(ToString::to_string).collect();
    fleet.sh(
        "dxvault",
        &format!(
            "set -e; cd {dir}; for s in {}; do mkdir $s; btrfs subvolume create $s/postgresql >/dev/null; done",
            names.join(" ")
        ),
    );
    let before: Vec<Stamp> = stamps_in(fleet, dir);
    assert_eq!(before.len(), real.len() + month.len());
    let ran = fleet.ssh("dxvault", "systemctl start sitec-backup-often.service");
    let log = fleet.sh(
        "dxvault",
        "journalctl -u sitec-backup-often.service --no-pager | tail -5",
    );
    assert!(ran.status.success(), "the pull unit: {}\n{log}", text(&ran));
    let left = stamps_in(fleet, dir);
    // Copies it pulled now are newer than all before; of those it pruned
    // again, none was the newest of any period, so they change nothing.
    let mut all = before.clone();
    all.extend(left.iter().filter(|s| !before.contains(s)));
    let keep = Keep {
        hourly: 4,
        daily: 3,
        weekly: 2,
        monthly: 2,
    };
    let expected: Vec<Stamp> = retention::kept(&all, &keep).into_iter().collect();
    assert_eq!(left, expected, "pull unit's log: {log}");
    let month_left: Vec<&Stamp> = left.iter().filter(|s| month.contains(s)).collect();
    assert!(
        !month_left.is_empty() && month_left.len() < month.len(),
        "the month is pruned, not all of it: {month_left:?}"
    );
    let subvolumes = fleet.sh("dxvault", "btrfs subvolume list -o /srv/sitec/backups");
    let planted_subvolumes = (subvolumes.lines())
        .filter(|l| {
            names
                .iter()
                .any(|n| l.contains(&format!("often/dxdb1/{n}/")))
        })
        .count();
    assert_eq!(
        planted_subvolumes,
        month_left.len(),
        "the removed copies' subvolumes are gone"
    );
    // The planted copies go; the real ones stay, and the timer runs again.
    let planted: Vec<String> = month_left.iter().map(ToString::to_string).collect();
    if !planted.is_empty() {
        fleet.sh(
            "dxvault",
            &format!(
                "cd {dir} && for s in {}; do btrfs subvolume delete -c $s/postgresql >/dev/null; rm -rf $s; done",
                planted.join(" ")
            ),
        );
    }
    fleet.sh("dxvault", "systemctl start sitec-backup-often.timer");
}

/// The copies in a backup folder on dxvault, oldest first.
fn stamps_in(fleet: &DataFleet, dir: &str) -> Vec<Stamp> {
    let mut stamps: Vec<Stamp> = fleet
        .sh("dxvault", &format!("ls {dir}"))
        .lines()
        .filter_map(|l| Stamp::parse(l.trim()))
        .collect();
    stamps.sort_unstable();
    stamps
}

/// A key of the cache written, snapshotted and pulled to dxvault, then
/// changed, and dxdb1's own snapshot of that instant removed (a disk
/// lost): `sitec restore` of dxvault's copy brings the old value back on
/// the primary, the replica resyncs to it, and a drill of the same copy on
/// dxrun (`--to`) holds it too, in a server run by redis.
pub fn redis_restore_brings_back_the_old_value(fleet: &DataFleet) {
    // No snapshot rotated or copy pruned away while the test uses it.
    fleet.sh("dxdb1", "systemctl stop sitec-snapshot-often.timer");
    fleet.sh("dxvault", "systemctl stop sitec-backup-often.timer");
    assert_eq!(crate::redis(fleet, "dxdb1", "set restored before"), "OK");
    let written = Stamp::now();
    let copy = wait_for(Duration::from_secs(120), || {
        let took = fleet.run(&["backups"], &["cache", "--now"]);
        assert!(took.status.success(), "backups --now: {}", text(&took));
        fleet
            .backups("cache")
            .iter()
            .filter(|r| r["on"] == "dxvault" && r["of"] == "dxdb1")
            .filter_map(|r| r["stamp"].as_str().map(str::to_string))
            .filter(|s| Stamp::parse(s).is_some_and(|s| s.0 > written.0))
            .max()
    })
    .expect("a copy of the cache on dxvault taken after the write");
    fleet.sh(
        "dxdb1",
        &format!(
            "cd /var/lib/sitec/snapshots/often && btrfs subvolume delete -c {copy}/* >/dev/null && rmdir {copy}"
        ),
    );
    assert_eq!(crate::redis(fleet, "dxdb1", "set restored after"), "OK");
    let snapshot = format!("dxdb1/{copy}");
    let restored = fleet.run(&["restore"], &["cache", "--snapshot", &snapshot, "--yes"]);
    let said = text(&restored);
    assert!(restored.status.success(), "restore cache: {said}");
    eprintln!("{said}");
    assert!(said.contains("streamed from dxvault"), "{said}");
    assert!(said.contains("loaded its AOF whole"), "{said}");
    assert_eq!(crate::redis(fleet, "dxdb1", "get restored"), "before");
    let role = crate::redis(fleet, "dxdb1", "role");
    assert!(role.starts_with("master"), "dxdb1 is the primary: {role}");
    let followed = wait_for(Duration::from_secs(60), || {
        let info = crate::redis(fleet, "dxdb2", "info replication");
        (info.contains("master_link_status:up")
            && crate::redis(fleet, "dxdb2", "get restored") == "before")
            .then_some(())
    });
    assert!(
        followed.is_some(),
        "the replica resyncs to the restored primary: {}",
        crate::redis(fleet, "dxdb2", "info replication")
    );
    let replicas = crate::redis(fleet, "dxdb1", "info replication");
    assert!(replicas.contains("connected_slaves:1"), "{replicas}");

    let drill = fleet.run(
        &["restore"],
        &["cache", "--snapshot", &snapshot, "--to", "dxrun", "--yes"],
    );
    let said = text(&drill);
    assert!(drill.status.success(), "restore cache --to dxrun: {said}");
    eprintln!("{said}");
    let port = said
        .split("listens on 127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("the drill's port: {said}"))
        .to_string();
    let got = fleet.sh("dxrun", &format!("redis-cli -p {port} get restored"));
    assert_eq!(got, "before", "the drill holds the old value");
    let unit = "sitec-restore-redis-cache_restored";
    let owner = fleet.sh(
        "dxrun",
        &format!("ps -o user= -p $(systemctl show -p MainPID --value {unit})"),
    );
    assert_eq!(owner, "redis", "the drill's server runs as redis");
    fleet.sh(
        "dxrun",
        &format!(
            "systemctl stop {unit} && cd / && runuser -u redis -- rm -rf /var/lib/redis/cache_restored"
        ),
    );
    fleet.sh("dxdb1", "systemctl start sitec-snapshot-often.timer");
    fleet.sh("dxvault", "systemctl start sitec-backup-often.timer");
}
