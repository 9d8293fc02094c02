//! `assess` and `converge` against a real temporary folder: desired
//! resources in, the file system's state out. Every check of what is on
//! disk reads it with std or a system program (`id`, `sha256sum`), never
//! with the host module's own helpers, so a wrong judgement in `assess`
//! cannot vouch for itself. They say nothing of how the host module opens
//! paths, only of what it leaves there, and run as any user: files are
//! owned by whoever runs the tests, and another owner is asked of
//! `nobody` (converged only as root, which CI is).

use super::assess::{assess, TREE_MARKER};
use super::converge::{converge, remove};
use super::state::{Managed, State};
use super::wire::{Assessment, Item, Status};
use crate::resources::Kind;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What a system program prints, trimmed; it must succeed.
fn said(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?} failed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The user and group running the tests, by name (`id`).
fn me() -> (String, String) {
    (said("id", &["-un"]), said("id", &["-gn"]))
}

fn running_as_root() -> bool {
    said("id", &["-u"]) == "0"
}

/// A fresh folder of the test's own, gone when dropped.
fn folder() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn at(dir: &tempfile::TempDir, name: &str) -> String {
    dir.path().join(name).to_string_lossy().into_owned()
}

fn item(kind: Kind, content: Option<&str>) -> Item {
    Item {
        id: format!("{}:{}", kind.word(), kind.key()),
        digest: format!("digest of {}", kind.key()),
        kind,
        requires: Vec::new(),
        notifies: Vec::new(),
        content: content.map(str::to_string),
        blob: None,
        pinned: None,
        venv_digest: None,
    }
}

fn directory(path: &str, owner: &str, group: &str, mode: &str) -> Item {
    let kind = Kind::Directory {
        path: path.into(),
        owner: owner.into(),
        group: group.into(),
        mode: mode.into(),
    };
    item(kind, None)
}

fn file(path: &str, content: &str, owner: &str, group: &str, mode: &str) -> Item {
    let kind = Kind::File {
        path: path.into(),
        owner: owner.into(),
        group: group.into(),
        mode: mode.into(),
        template: None,
        sha256: crate::resources::sha256_hex(content.as_bytes()),
        secret: false,
        absent: false,
        content: String::new(),
    };
    item(kind, Some(content))
}

fn absent_file(path: &str) -> Item {
    let kind = Kind::File {
        path: path.into(),
        owner: "root".into(),
        group: "root".into(),
        mode: "0644".into(),
        template: None,
        sha256: String::new(),
        secret: false,
        absent: true,
        content: String::new(),
    };
    item(kind, None)
}

fn symlink(path: &str, target: &str) -> Item {
    let kind = Kind::Symlink {
        path: path.into(),
        target: target.into(),
    };
    item(kind, None)
}

fn judged(item: &Item) -> Assessment {
    assess(item, &State::default())
}

/// The permission bits on disk, as `stat` has them.
fn mode_of(path: &str) -> u32 {
    fs::symlink_metadata(path)
        .expect("stat")
        .permissions()
        .mode()
        & 0o7777
}

fn chmod(path: &str, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The folder's entries, sorted: what converge left beside its target.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn managed(item: &Item) -> Managed {
    Managed {
        id: item.id.clone(),
        digest: item.digest.clone(),
        notifies: Vec::new(),
        kind: item.kind.clone(),
    }
}

#[test]
fn a_missing_directory_is_added_with_its_mode_and_owner_then_judged_ok() {
    let dir = folder();
    let (user, group) = me();
    let path = at(&dir, "releases/blog");
    let wanted = directory(&path, &user, &group, "0750");
    let before = judged(&wanted);
    assert_eq!(
        (before.status, before.differences),
        (Status::Add, vec!["missing".to_string()])
    );
    converge(&wanted, true).expect("converge");
    let on_disk = fs::symlink_metadata(&path).expect("created");
    assert!(on_disk.is_dir());
    assert_eq!(mode_of(&path), 0o750);
    assert_eq!(on_disk.uid().to_string(), said("id", &["-u"]));
    assert_eq!(on_disk.gid().to_string(), said("id", &["-g"]));
    assert_eq!(judged(&wanted).status, Status::Ok);
}

#[test]
fn a_directory_with_another_mode_is_a_change_that_converge_undoes() {
    let dir = folder();
    let (user, group) = me();
    let path = at(&dir, "static");
    let wanted = directory(&path, &user, &group, "0755");
    converge(&wanted, true).expect("converge");
    chmod(&path, 0o700);
    let found = judged(&wanted);
    assert_eq!(found.status, Status::Change);
    assert_eq!(found.differences, vec!["mode 0700 -> 0755".to_string()]);
    converge(&wanted, false).expect("converge");
    assert_eq!(mode_of(&path), 0o755);
    assert_eq!(judged(&wanted).status, Status::Ok);
}

#[test]
fn a_file_is_written_whole_with_its_mode_and_nothing_left_beside_it() {
    let dir = folder();
    let (user, group) = me();
    let path = at(&dir, "app.env");
    let text = "DJANGO_SETTINGS_MODULE=blog.settings\nSECRET=s3cr3t\n";
    let wanted = file(&path, text, &user, &group, "0640");
    assert_eq!(judged(&wanted).status, Status::Add);
    converge(&wanted, true).expect("converge");
    assert_eq!(fs::read_to_string(&path).expect("written"), text);
    // sha256sum, not sitec's hash, vouches for the bytes.
    let sum = said("sha256sum", &[&path]);
    let Kind::File { sha256, .. } = &wanted.kind else {
        unreachable!()
    };
    assert_eq!(sum.split_whitespace().next(), Some(sha256.as_str()));
    assert_eq!(mode_of(&path), 0o640);
    assert_eq!(entries(dir.path()), vec!["app.env".to_string()]);
    assert_eq!(judged(&wanted).status, Status::Ok);
}

#[test]
fn each_way_a_file_can_differ_is_named_and_converged_away() {
    let dir = folder();
    let (user, group) = me();
    let path = at(&dir, "gunicorn.conf.py");
    let text = "workers = 3\n";
    let wanted = file(&path, text, &user, &group, "0644");
    converge(&wanted, true).expect("converge");

    // The mode alone.
    chmod(&path, 0o600);
    let found = judged(&wanted);
    assert_eq!(found.status, Status::Change);
    assert_eq!(found.differences, vec!["mode 0600 -> 0644".to_string()]);
    converge(&wanted, false).expect("converge");
    assert_eq!(mode_of(&path), 0o644);

    // The content alone: the old text comes along for the plan's diff.
    fs::write(&path, "workers = 9\n").expect("edit by hand");
    let found = judged(&wanted);
    assert_eq!(found.differences, vec!["content".to_string()]);
    assert_eq!(found.old_content.as_deref(), Some("workers = 9\n"));
    converge(&wanted, false).expect("converge");
    assert_eq!(fs::read_to_string(&path).expect("read"), text);

    // Both, and a mode with the setgid bit, which counts too.
    fs::write(&path, "").expect("truncate");
    chmod(&path, 0o2644);
    let found = judged(&wanted);
    assert_eq!(
        found.differences,
        vec!["content".to_string(), "mode 2644 -> 0644".to_string()]
    );
    converge(&wanted, false).expect("converge");
    assert_eq!(
        (fs::read_to_string(&path).expect("read"), mode_of(&path)),
        (text.to_string(), 0o644)
    );
    assert_eq!(judged(&wanted).status, Status::Ok);
}

#[test]
fn another_owner_is_a_difference_and_root_converges_to_it() {
    let dir = folder();
    let (user, group) = me();
    let path = at(&dir, "owned");
    let mine = file(&path, "x\n", &user, &group, "0644");
    converge(&mine, true).expect("converge");
    let theirs = file(&path, "x\n", "nobody", &group, "0644");
    let found = judged(&theirs);
    assert_eq!(found.status, Status::Change);
    assert_eq!(found.differences, vec![format!("owner {user} -> nobody")]);
    let converged = converge(&theirs, false);
    if running_as_root() {
        converged.expect("root may give a file away");
        let uid = fs::symlink_metadata(&path).expect("stat").uid();
        assert_eq!(uid.to_string(), said("id", &["-u", "nobody"]));
        assert_eq!(judged(&theirs).status, Status::Ok);
    } else {
        // Anyone else may not: the error says so, the file stays as it was.
        let error = converged.expect_err("only root gives files away");
        assert!(error.contains("owned"), "{error}");
        assert_eq!(judged(&mine).status, Status::Ok);
    }
}

#[test]
fn what_stands_in_a_resources_place_is_named() {
    let dir = folder();
    let (user, group) = me();
    let a_file = at(&dir, "a-file");
    let a_dir = at(&dir, "a-dir");
    fs::write(&a_file, "x").expect("write");
    fs::create_dir(&a_dir).expect("mkdir");
    let cases = [
        (directory(&a_file, &user, &group, "0755"), "not a directory"),
        (
            file(&a_dir, "x", &user, &group, "0644"),
            "not a regular file",
        ),
        (symlink(&a_file, "/etc/hostname"), "not a symlink"),
    ];
    for (wanted, said) in cases {
        let found = judged(&wanted);
        assert_eq!(found.status, Status::Change, "{}", wanted.id);
        assert_eq!(found.differences, vec![said.to_string()], "{}", wanted.id);
    }
}

#[test]
fn a_file_marked_absent_is_removed_and_then_ok() {
    let dir = folder();
    let path = at(&dir, "default-site");
    fs::write(&path, "server {}\n").expect("write");
    let gone = absent_file(&path);
    let found = judged(&gone);
    assert_eq!(
        (found.status, found.differences),
        (Status::Change, vec!["present".to_string()])
    );
    converge(&gone, false).expect("converge");
    assert!(fs::symlink_metadata(&path).is_err(), "still there");
    assert_eq!(judged(&gone).status, Status::Ok);
}

#[test]
fn a_symlink_is_made_then_repointed() {
    let dir = folder();
    let path = at(&dir, "current");
    let wanted = symlink(&path, "releases/2");
    assert_eq!(judged(&wanted).status, Status::Add);
    converge(&wanted, true).expect("converge");
    assert_eq!(
        fs::read_link(&path).expect("a link"),
        PathBuf::from("releases/2")
    );
    assert_eq!(judged(&wanted).status, Status::Ok);
    fs::remove_file(&path).expect("rm");
    std::os::unix::fs::symlink("releases/1", &path).expect("ln");
    let found = judged(&wanted);
    assert_eq!(
        found.differences,
        vec!["target releases/1 -> releases/2".to_string()]
    );
    converge(&wanted, false).expect("converge");
    assert_eq!(
        fs::read_link(&path).expect("a link"),
        PathBuf::from("releases/2")
    );
    assert_eq!(entries(dir.path()), vec!["current".to_string()]);
}

#[test]
fn a_release_is_judged_by_the_live_ones_marker() {
    let dir = folder();
    let path = at(&dir, "current");
    let kind = Kind::Tree {
        path: path.clone(),
        source: "apps/blog".into(),
        owner: "root".into(),
        keep: 5,
        check: None,
        user: None,
        output: None,
        migrate: None,
        venv: None,
    };
    let mut wanted = item(kind, None);
    wanted.blob = Some("0123456789abcdef".into());
    assert_eq!(judged(&wanted).status, Status::Add);
    let release = dir.path().join("releases/2026-12-06T120000Z-0123456789ab");
    fs::create_dir_all(&release).expect("mkdir");
    std::os::unix::fs::symlink("releases/2026-12-06T120000Z-0123456789ab", &path).expect("ln");
    fs::write(release.join(TREE_MARKER), "0123456789abcdef").expect("marker");
    assert_eq!(judged(&wanted).status, Status::Ok);
    fs::write(release.join(TREE_MARKER), "an older release").expect("marker");
    assert_eq!(judged(&wanted).status, Status::Change);
    // Pinned by a rollback: the live release's content is what counts.
    fs::write(release.join(TREE_MARKER), "0123456789abcdef").expect("marker");
    wanted.blob = None;
    wanted.pinned = Some("0123456789ab".into());
    assert_eq!(judged(&wanted).status, Status::Ok);
    wanted.pinned = Some("ffffffffffff".into());
    assert_eq!(judged(&wanted).status, Status::Change);
    // A link that leaves the releases folder is no release.
    fs::remove_file(&path).expect("rm");
    std::os::unix::fs::symlink("/etc", &path).expect("ln");
    let found = judged(&wanted);
    assert!(
        found.differences[0].contains("not at a release"),
        "{found:?}"
    );
}

#[test]
fn a_command_runs_until_what_it_creates_exists() {
    let dir = folder();
    let made = at(&dir, "made");
    let kind = Kind::Command {
        name: "make".into(),
        run: format!("echo done > '{made}'"),
        unless: None,
        creates: Some(made.clone()),
        user: None,
    };
    let wanted = item(kind, None);
    let found = judged(&wanted);
    assert_eq!(found.differences, vec![format!("{made} does not exist")]);
    converge(&wanted, false).expect("converge");
    assert_eq!(fs::read_to_string(&made).expect("created"), "done\n");
    assert_eq!(judged(&wanted).status, Status::Ok);
}

#[test]
fn a_change_to_what_sitec_applied_before_is_drift() {
    let dir = folder();
    let (user, group) = me();
    let path = at(&dir, "settings.py");
    let wanted = file(&path, "DEBUG = False\n", &user, &group, "0644");
    converge(&wanted, true).expect("converge");
    let applied = State {
        managed: vec![managed(&wanted)],
        ..State::default()
    };
    assert!(!assess(&wanted, &applied).drifted, "unchanged is no drift");
    fs::write(&path, "DEBUG = True\n").expect("edit by hand");
    assert!(assess(&wanted, &applied).drifted);
    // A spec change (another digest) to the same file is no drift.
    let mut changed = wanted.clone();
    changed.digest = "a newer spec".into();
    assert!(!assess(&changed, &applied).drifted);
}

#[test]
fn removing_what_the_spec_dropped() {
    let dir = folder();
    let (user, group) = me();
    let kept = at(&dir, "kept");
    let emptied = at(&dir, "emptied");
    let a_file = at(&dir, "kept/file");
    for path in [&kept, &emptied] {
        converge(&directory(path, &user, &group, "0755"), true).expect("mkdir");
    }
    let written = file(&a_file, "x\n", &user, &group, "0644");
    converge(&written, true).expect("write");

    assert_eq!(remove(&managed(&written)).as_deref(), Ok("removed"));
    assert!(fs::symlink_metadata(&a_file).is_err());
    assert_eq!(
        remove(&managed(&written)).as_deref(),
        Ok("forgotten (already gone)")
    );
    fs::write(Path::new(&kept).join("data"), "theirs").expect("write");
    let kept_dir = directory(&kept, &user, &group, "0755");
    assert_eq!(
        remove(&managed(&kept_dir)).as_deref(),
        Ok("left in place (not empty)")
    );
    assert_eq!(
        fs::read_to_string(Path::new(&kept).join("data")).expect("kept"),
        "theirs"
    );
    let emptied_dir = directory(&emptied, &user, &group, "0755");
    assert_eq!(remove(&managed(&emptied_dir)).as_deref(), Ok("removed"));
    assert_eq!(entries(dir.path()), vec!["kept".to_string()]);
}

#[test]
fn a_file_whose_folder_is_missing_fails_and_says_where() {
    let dir = folder();
    let (user, group) = me();
    let path = at(&dir, "no-such-folder/file");
    let error = converge(&file(&path, "x", &user, &group, "0644"), true)
        .expect_err("no folder to write in");
    assert!(error.contains("no-such-folder"), "{error}");
    assert_eq!(entries(dir.path()), Vec::<String>::new());
}
