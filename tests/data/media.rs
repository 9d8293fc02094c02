//! An app's media store on the data fleet: the blog's uploads on dxrun (a
//! runner a backup pulls from, so its store is a subvolume) are in its
//! snapshots, pulled to dxvault, listed by `sitec backups`, and `sitec
//! restore blog/uploads` brings a deleted upload back from dxvault's copy
//! with the same bytes, owner, group and mode, served again, the folder
//! still writable by the app's sandboxed processes.

use crate::harness::{quote, text, wait_for, DataFleet};
use sitec::data::stamp::Stamp;
use std::time::Duration;

const FOLDER: &str = "/srv/sitec/apps/blog/media/uploads";

/// `sh -c SCRIPT` in a `sitec run` session of the blog on its runner: as
/// app-blog, sandboxed as gunicorn is (the store its one writable folder).
fn as_the_app(fleet: &DataFleet, script: &str) -> String {
    let out = fleet.run(&["run"], &["blog", "-T", "--", "sh", "-c", script]);
    assert!(out.status.success(), "sitec run `{script}`: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The sha256 of what the balancer serves at `path` for blog.test.
fn served(fleet: &DataFleet, path: &str) -> String {
    fleet.sh(
        "dxrun",
        &format!(
            "curl -fsS --max-time 10 -H 'Host: blog.test' http://10.77.210.10{path} | sha256sum | cut -d' ' -f1"
        ),
    )
}

pub fn media_is_snapshotted_pulled_and_restored(fleet: &DataFleet) {
    // No snapshot rotated or copy pruned away while the test uses it.
    fleet.sh("dxrun", "systemctl stop sitec-snapshot-often.timer");
    fleet.sh("dxvault", "systemctl stop sitec-backup-often.timer");
    fleet.sh(
        "dxrun",
        &format!("btrfs subvolume show {FOLDER} >/dev/null"),
    );
    let sum = as_the_app(
        fleet,
        &format!(
            "cd {FOLDER} && mkdir photos && head -c 300000 /dev/urandom > photos/kept.bin && \
             sha256sum photos/kept.bin | cut -d' ' -f1"
        ),
    );
    assert_eq!(sum.len(), 64, "{sum}");
    assert_eq!(served(fleet, "/media/photos/kept.bin"), sum);
    let written = Stamp::now();
    let copy = wait_for(Duration::from_secs(120), || {
        let took = fleet.run(&["backups"], &["blog/uploads", "--now"]);
        assert!(took.status.success(), "backups --now: {}", text(&took));
        fleet
            .backups("blog/uploads")
            .iter()
            .filter(|r| r["on"] == "dxvault" && r["of"] == "dxrun")
            .filter_map(|r| r["stamp"].as_str().map(str::to_string))
            .filter(|s| Stamp::parse(s).is_some_and(|s| s.0 > written.0))
            .max()
    })
    .expect("a copy of blog/uploads on dxvault taken after the upload");
    let table = text(&fleet.run(&["backups"], &["blog/uploads"]));
    assert!(
        table.contains(&format!("dxrun/{copy}"))
            && table.contains("dxvault:/srv/sitec/backups/often/dxrun"),
        "{table}"
    );
    // The copy on dxvault holds the file, as the app wrote it.
    let pulled = fleet.sh(
        "dxvault",
        &format!("sha256sum /srv/sitec/backups/often/dxrun/{copy}/media.blog.uploads/photos/kept.bin | cut -d' ' -f1"),
    );
    assert_eq!(pulled, sum, "dxvault's copy holds the upload");

    // The upload is lost, and a file written after the snapshot appears;
    // dxrun's own snapshot is lost too (a disk), so the copy comes from
    // dxvault.
    as_the_app(
        fleet,
        &format!("cd {FOLDER} && rm -r photos && echo later > after.txt"),
    );
    fleet.sh(
        "dxrun",
        &format!(
            "cd /var/lib/sitec/snapshots/often && btrfs subvolume delete -c {copy}/* >/dev/null && rmdir {copy}"
        ),
    );
    let snapshot = format!("dxrun/{copy}");
    let restored = fleet.run(
        &["restore"],
        &["blog/uploads", "--snapshot", &snapshot, "--yes"],
    );
    let said = text(&restored);
    assert!(restored.status.success(), "restore blog/uploads: {said}");
    eprintln!("{said}");
    assert!(said.contains("streamed from dxvault"), "{said}");

    let back = fleet.sh(
        "dxrun",
        &format!(
            "cd {FOLDER} && sha256sum photos/kept.bin | cut -d' ' -f1 && \
             stat -c '%U:%G %a' . photos photos/kept.bin && ls -A"
        ),
    );
    let lines: Vec<&str> = back.lines().collect();
    assert_eq!(
        lines,
        [
            sum.as_str(),
            "app-blog:www-data 2750",
            "app-blog:www-data 2750",
            "app-blog:www-data 640",
            ".sitec-before-restore",
            "photos",
        ],
        "the restored store: {back}"
    );
    assert_eq!(served(fleet, "/media/photos/kept.bin"), sum);
    // What the store held before is kept, the app's alone: not served.
    let before = fleet.sh(
        "dxrun",
        &format!("cd {FOLDER} && stat -c '%U %a' .sitec-before-restore && cat .sitec-before-restore/after.txt"),
    );
    assert_eq!(before, "app-blog 2700\nlater");
    let status = fleet.sh(
        "dxrun",
        "curl -sS -o /dev/null -w '%{http_code}' -H 'Host: blog.test' \
         http://10.77.210.10/media/.sitec-before-restore/after.txt",
    );
    assert_ne!(status, "200", "the kept data is served");
    // The app's sandboxed processes still write there (the folder is the
    // same one their ReadWritePaths= named).
    let again = as_the_app(
        fleet,
        &format!("cd {FOLDER} && echo new > photos/new.txt && stat -c '%G %a' photos/new.txt"),
    );
    assert_eq!(again, "www-data 640");
    fleet.sh(
        "dxrun",
        &format!(
            "cd / && runuser -u app-blog -- rm -rf {}",
            quote(&format!("{FOLDER}/.sitec-before-restore"))
        ),
    );
    fleet.sh("dxrun", "systemctl start sitec-snapshot-often.timer");
    fleet.sh("dxvault", "systemctl start sitec-backup-often.timer");
}
