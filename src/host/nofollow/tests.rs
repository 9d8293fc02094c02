//! A temporary folder with links planted where a folder or a file is
//! wanted, each pointing at a "secret" outside it: every operation refuses
//! the link, names the path, and leaves the secret as it was.

use super::*;
use std::os::unix::fs::{symlink, PermissionsExt};

struct Scene {
    tmp: tempfile::TempDir,
}

impl Scene {
    /// `work/` to write in, `outside/secret` and `outside/folder/` to protect.
    fn new() -> Scene {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(tmp.path().join("work")).expect("work");
        std::fs::create_dir_all(tmp.path().join("outside/folder")).expect("outside");
        std::fs::write(tmp.path().join("outside/secret"), "root only\n").expect("secret");
        Scene { tmp }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    fn plant(&self, at: &str, to: &str) {
        symlink(self.path(to), self.path(at)).expect("planted link");
    }

    fn secret_untouched(&self) {
        assert_eq!(
            std::fs::read_to_string(self.path("outside/secret")).expect("secret"),
            "root only\n"
        );
        let entries: Vec<_> = std::fs::read_dir(self.path("outside/folder"))
            .expect("folder")
            .collect();
        assert!(entries.is_empty(), "nothing written outside: {entries:?}");
    }
}

fn mine(mode: u32) -> Ownership {
    Ownership {
        uid: rustix::process::geteuid().as_raw(),
        gid: rustix::process::getegid().as_raw(),
        mode,
    }
}

fn assert_refused(result: Result<impl std::fmt::Debug, String>, path: &Path) {
    let error = result.expect_err("refused");
    assert!(
        error.contains(&path.display().to_string()) && error.contains("symbolic link"),
        "the error names {} and says it is a link: {error}",
        path.display()
    );
}

#[test]
fn a_file_is_written_whole_with_its_mode_and_no_temporary_left() {
    let s = Scene::new();
    let target = s.path("work/app.conf");
    write_atomic(&target, b"one\n", mine(0o640)).expect("written");
    write_atomic(&target, b"two\n", mine(0o600)).expect("rewritten");
    assert_eq!(std::fs::read_to_string(&target).expect("read"), "two\n");
    let mode = std::fs::metadata(&target)
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o600);
    let names: Vec<String> = std::fs::read_dir(s.path("work"))
        .expect("work")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["app.conf"]);
}

#[test]
fn a_link_at_the_file_is_refused_and_its_target_kept() {
    let s = Scene::new();
    s.plant("work/app.conf", "outside/secret");
    let target = s.path("work/app.conf");
    assert_refused(write_atomic(&target, b"x", mine(0o644)), &target);
    assert_refused(read(&target, 1024), &target);
    assert_eq!(
        meta(&target).expect("meta").map(|m| m.node),
        Some(Node::Link(s.path("outside/secret")))
    );
    s.secret_untouched();
}

#[test]
fn a_link_on_the_way_is_refused_for_every_operation() {
    let s = Scene::new();
    s.plant("work/conf.d", "outside/folder");
    let through = s.path("work/conf.d/app.conf");
    let link = s.path("work/conf.d");
    assert_refused(write_atomic(&through, b"x", mine(0o644)), &link);
    assert_refused(read(&through, 1024), &link);
    assert_refused(meta(&through), &link);
    assert_refused(Dir::make(&s.path("work/conf.d/sub"), None), &link);
    assert_refused(Dir::open(&link), &link);
    assert_refused(parent(&through), &link);
    s.secret_untouched();
}

#[test]
fn a_folder_made_where_a_link_is_is_refused() {
    let s = Scene::new();
    s.plant("work/logs", "outside/folder");
    let logs = s.path("work/logs");
    assert_refused(Dir::make(&logs, Some(mine(0o750))), &logs);
    let mode = std::fs::metadata(s.path("outside/folder"))
        .expect("meta")
        .permissions()
        .mode();
    assert_ne!(mode & 0o777, 0o750, "the link's target was not chmodded");
    s.secret_untouched();
}

#[test]
fn missing_folders_are_made_and_the_last_gets_its_mode() {
    let s = Scene::new();
    let deep = s.path("work/a/b/c");
    Dir::make(&deep, Some(mine(0o710))).expect("made");
    let mode = std::fs::metadata(&deep).expect("meta").permissions().mode();
    assert_eq!(mode & 0o7777, 0o710);
    assert_eq!(meta(&s.path("work/a/missing/x")).expect("meta"), None);
}

#[test]
fn a_stale_temporary_is_removed_and_a_planted_one_is_never_written_through() {
    let s = Scene::new();
    let stale = format!("work/.app.conf{TEMP_MARK}0123456789ab");
    std::fs::write(s.path(&stale), "cut off").expect("stale");
    // The fixed name earlier versions used, planted as a link.
    s.plant("work/.app.conf.sitec-tmp", "outside/secret");
    write_atomic(&s.path("work/app.conf"), b"new\n", mine(0o644)).expect("written");
    assert!(!s.path(&stale).exists(), "the stale temporary is gone");
    s.secret_untouched();
}

#[test]
fn fifos_and_sockets_are_never_opened_as_files() {
    let s = Scene::new();
    let fifo = s.path("work/pipe");
    rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, Mode::from_raw_mode(0o644)).expect("fifo");
    let error = read(&fifo, 1024).expect_err("refused");
    assert!(error.contains("a FIFO"), "{error}");
    let error = write_atomic(&fifo, b"x", mine(0o644)).expect_err("refused");
    assert!(error.contains("a FIFO"), "{error}");
}

#[test]
fn removing_a_tree_removes_links_as_links() {
    let s = Scene::new();
    std::fs::create_dir_all(s.path("work/release/sub")).expect("tree");
    std::fs::write(s.path("work/release/sub/file"), "x").expect("file");
    s.plant("work/release/sub/to-secret", "outside/secret");
    s.plant("work/release/to-folder", "outside/folder");
    let (dir, name) = existing_parent(&s.path("work/release")).expect("parent");
    assert!(dir.remove_tree(&name).expect("removed"));
    assert!(!s.path("work/release").exists());
    s.secret_untouched();
    assert!(s.path("outside/folder").is_dir());
}

#[test]
fn a_removal_through_a_link_on_the_way_is_refused() {
    let s = Scene::new();
    s.plant("work/conf.d", "outside/folder");
    std::fs::write(s.path("outside/folder/keep"), "x").expect("file");
    let link = s.path("work/conf.d");
    assert_refused(parent(&s.path("work/conf.d/keep")), &link);
    assert!(s.path("outside/folder/keep").exists());
}

#[test]
fn a_symlink_replaces_a_file_or_link_but_never_a_folder() {
    let s = Scene::new();
    std::fs::write(s.path("work/current"), "x").expect("file");
    let (dir, name) = existing_parent(&s.path("work/current")).expect("parent");
    dir.symlink(&name, Path::new("releases/1"))
        .expect("replaced");
    assert_eq!(
        read_link(&s.path("work/current")).expect("link"),
        Some(PathBuf::from("releases/1"))
    );
    std::fs::create_dir(s.path("work/folder")).expect("folder");
    let (dir, name) = existing_parent(&s.path("work/folder")).expect("parent");
    let error = dir
        .symlink(&name, Path::new("x"))
        .expect_err("a folder stays");
    assert!(error.contains("is a folder"), "{error}");
}

#[test]
fn dot_dot_and_relative_paths_are_refused() {
    let s = Scene::new();
    let sneaky = s.path("work/../outside/secret");
    let error = read(&sneaky, 1024).expect_err("refused");
    assert!(error.contains("`..`"), "{error}");
    let error = read(Path::new("relative/file"), 1024).expect_err("refused");
    assert!(error.contains("not an absolute path"), "{error}");
}

/// Only root can give files away: the walk changes the tree's owner and
/// never what a link in it points at.
#[test]
fn chown_tree_never_follows_a_link() {
    if !rustix::process::geteuid().is_root() {
        assert!(std::env::var_os("CI").is_none(), "CI runs as root");
        return;
    }
    let s = Scene::new();
    std::fs::create_dir_all(s.path("work/tree/sub")).expect("tree");
    std::fs::write(s.path("work/tree/sub/file"), "x").expect("file");
    s.plant("work/tree/sub/to-secret", "outside/secret");
    let tree = Dir::existing(&s.path("work/tree")).expect("open");
    tree.chown_tree(65534, 65534).expect("chowned");
    let owner =
        |p: &str| std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(s.path(p)).expect("meta"));
    assert_eq!(owner("work/tree/sub/file"), 65534);
    assert_eq!(
        owner("outside/secret"),
        0,
        "the link's target kept its owner"
    );
    s.secret_untouched();
}

/// A folder under `/run` (root's, 0755) that only root can write, so a
/// link root makes in it is one only root could have made.
fn root_only_scene() -> Option<tempfile::TempDir> {
    if !rustix::process::geteuid().is_root() {
        assert!(std::env::var_os("CI").is_none(), "CI runs as root");
        return None;
    }
    let tmp = tempfile::Builder::new()
        .prefix("sitec-nofollow-")
        .tempdir_in("/run")
        .expect("a folder in /run");
    std::fs::create_dir_all(tmp.path().join("real/inner")).expect("real");
    std::fs::write(tmp.path().join("real/inner/file"), "through root's link\n").expect("file");
    Some(tmp)
}

/// Debian's merged /usr (`/lib -> usr/lib`) and links like it: a link on
/// the way is followed when it and every folder from `/` to it are root's
/// and writable by no one else, relative (`..` too) or absolute.
#[test]
fn a_link_only_root_could_make_is_followed_on_the_way() {
    let Some(tmp) = root_only_scene() else {
        return;
    };
    let at = |rel: &str| tmp.path().join(rel);
    symlink("real", at("relative")).expect("link");
    symlink(at("real"), at("absolute")).expect("link");
    std::fs::create_dir(at("side")).expect("side");
    symlink("../real/inner", at("side/up")).expect("link");
    for via in ["relative/inner/file", "absolute/inner/file", "side/up/file"] {
        assert_eq!(
            read(&at(via), 1024).expect("followed"),
            Some(b"through root's link\n".to_vec()),
            "{via}"
        );
    }
    write_atomic(&at("relative/inner/new"), b"x\n", mine(0o644)).expect("written through");
    assert_eq!(std::fs::read(at("real/inner/new")).expect("new"), b"x\n");
    // The link itself, where a file is wanted, is still refused.
    assert_refused(read(&at("relative"), 1024), &at("relative"));
    if Path::new("/usr/lib/os-release").is_file() && Path::new("/lib").is_symlink() {
        assert_eq!(
            read(Path::new("/lib/os-release"), 1 << 20).expect("/lib is root's"),
            Some(std::fs::read("/usr/lib/os-release").expect("os-release"))
        );
    }
}

/// The same link is refused when a user other than root owns it, or a
/// folder on the way, or when a folder on the way is writable by others;
/// and a circle of links ends.
#[test]
fn a_link_another_user_could_make_is_refused() {
    let Some(tmp) = root_only_scene() else {
        return;
    };
    let at = |rel: &str| tmp.path().join(rel);
    for (folder, owner, mode) in [("users", 65534, 0o755), ("open", 0, 0o777)] {
        std::fs::create_dir(at(folder)).expect("folder");
        symlink(at("real"), at(&format!("{folder}/link"))).expect("link");
        rustix::fs::chown(at(folder), Some(Uid::from_raw(owner)), None).expect("chown");
        std::fs::set_permissions(at(folder), std::fs::Permissions::from_mode(mode)).expect("chmod");
        let link = at(&format!("{folder}/link"));
        assert_refused(read(&link.join("inner/file"), 1024), &link);
    }
    symlink(at("real"), at("theirs")).expect("link");
    rustix::fs::chownat(
        rustix::fs::CWD,
        at("theirs"),
        Some(Uid::from_raw(65534)),
        None,
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .expect("lchown");
    assert_refused(read(&at("theirs/inner/file"), 1024), &at("theirs"));
    symlink("circle", at("circle")).expect("link");
    assert_refused(read(&at("circle/file"), 1024), &at("circle"));
}
