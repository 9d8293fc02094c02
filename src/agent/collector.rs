//! The collector, on a `logs` host: a PULL socket every agent's PUSH
//! connects to, and each line `{host, tag, line, time}` appended to
//! `DIR/HOST/TAG`. Host and tag come from the network, so they are made
//! into safe relative paths first: no `..`, no absolute path, nothing
//! outside `[A-Za-z0-9._-]` in a name; a tag may keep its `/` folders.
//! Each line opens its file in append mode, so logrotate needs no signal.

use serde::Deserialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use zeromq::PullSocket;

#[derive(Debug, Deserialize)]
struct Line {
    host: String,
    tag: String,
    line: String,
}

/// Files every line that arrives on `socket` under `dir`, forever.
pub async fn run(mut socket: PullSocket, dir: PathBuf) {
    let mut last_error = None;
    loop {
        let message = super::next_message(&mut socket, "log collector").await;
        for frame in message.iter() {
            let result = file_line(&dir, frame);
            if let Err(e) = &result {
                if last_error.as_ref() != Some(e) {
                    tracing::warn!("log collector: {e}");
                }
            }
            last_error = result.err();
        }
    }
}

/// Appends one JSON line message to its file under `dir`.
pub fn file_line(dir: &Path, frame: &[u8]) -> Result<(), String> {
    let l: Line = serde_json::from_slice(frame)
        .map_err(|e| format!("a log message is not {{host, tag, line}} JSON: {e}"))?;
    let path = dir.join(safe_name(&l.host)).join(safe_tag(&l.tag));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut text = l.line.replace('\n', " ");
    text.push('\n');
    file.write_all(text.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// One path component: the characters outside `[A-Za-z0-9._-]` become `_`,
/// and `.`, `..` or nothing become `_`.
pub fn safe_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .take(128)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() || cleaned.chars().all(|c| c == '.') {
        "_".into()
    } else {
        cleaned
    }
}

/// A tag as a relative path: its non-empty `/` parts, each a safe name
/// (at most 8 of them).
pub fn safe_tag(tag: &str) -> PathBuf {
    let parts: Vec<String> = tag
        .split('/')
        .filter(|p| !p.is_empty())
        .take(8)
        .map(safe_name)
        .collect();
    if parts.is_empty() {
        PathBuf::from("untagged")
    } else {
        parts.iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_cannot_leave_the_folder() {
        for (tag, path) in [
            ("blog/gunicorn-error.log", "blog/gunicorn-error.log"),
            ("../../etc/passwd", "_/_/etc/passwd"),
            ("/etc/shadow", "etc/shadow"),
            ("a/./b", "a/_/b"),
            ("", "untagged"),
            ("we ird\0tag", "we_ird_tag"),
        ] {
            assert_eq!(safe_tag(tag), Path::new(path), "{tag:?}");
        }
        assert_eq!(safe_name(".."), "_");
        assert_eq!(safe_name("run/1"), "run_1");
    }

    #[test]
    fn lines_are_appended_under_host_and_tag() {
        let dir = tempfile::tempdir().expect("tempdir");
        let msg = |line: &str| {
            serde_json::json!({"host": "run1", "tag": "blog/error.log", "line": line, "time": 1.5})
                .to_string()
        };
        file_line(dir.path(), msg("one").as_bytes()).expect("first");
        file_line(dir.path(), msg("two\nthree").as_bytes()).expect("second");
        let text = std::fs::read_to_string(dir.path().join("run1/blog/error.log")).expect("filed");
        assert_eq!(text, "one\ntwo three\n");
        assert!(file_line(dir.path(), b"not json").is_err());
    }
}
