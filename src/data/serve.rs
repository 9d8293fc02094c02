//! `sitec data serve DIR`: all a backup host's key may do on a database
//! host. sshd runs it as the key's forced command (`command=` in
//! `authorized_keys`, with `restrict` and `from=`), whatever the backup host
//! asked for; the request it asked for arrives in `SSH_ORIGINAL_COMMAND`
//! and is one of two, checked word by word before anything runs:
//!
//! - `list`: one line per whole snapshot of this backup, `STAMP NAME...`;
//! - `send STAMP NAME [PARENT]`: `btrfs send` of that snapshot's subvolume
//!   `NAME` on stdout, as the difference from snapshot `PARENT` when given.
//!
//! Both only read. Paths are made here from a stamp and a name that must
//! exist in `DIR`: a request cannot name another path, write, delete, or
//! run anything else.

use super::snapshots::{self, is_subvolume_name};
use super::stamp::Stamp;
use std::path::Path;

/// A request, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    List,
    Send {
        stamp: Stamp,
        name: String,
        parent: Option<Stamp>,
    },
}

impl Request {
    /// Reads `list` or `send STAMP NAME [PARENT]`; anything else is refused.
    pub fn parse(text: &str) -> Result<Request, String> {
        let words: Vec<&str> = text.split(' ').collect();
        let stamp = |word: &str| {
            Stamp::parse(word).ok_or_else(|| format!("`{word}` is not a snapshot's name"))
        };
        match words.as_slice() {
            ["list"] => Ok(Request::List),
            ["send", s, name, rest @ ..] if rest.len() <= 1 => {
                if !is_subvolume_name(name) {
                    return Err(format!("`{name}` is not a subvolume's name"));
                }
                Ok(Request::Send {
                    stamp: stamp(s)?,
                    name: (*name).to_string(),
                    parent: rest.first().map(|p| stamp(p)).transpose()?,
                })
            }
            _ => Err(format!(
                "refused `{}`: this key may only `list` and `send STAMP NAME [PARENT]`",
                text.chars().take(200).collect::<String>()
            )),
        }
    }
}

/// Answers one request about the snapshots in `dir` on stdout. `Send`
/// becomes `btrfs send` (this process waits for it and passes on its exit).
pub fn serve(dir: &Path, request: &Request) -> Result<(), String> {
    let all = snapshots::list(dir)?;
    match request {
        Request::List => {
            for s in &all {
                crate::outln!("{} {}", s.stamp, s.subvolumes.join(" "));
            }
            Ok(())
        }
        Request::Send {
            stamp,
            name,
            parent,
        } => {
            let has = |stamp: &Stamp| {
                all.iter()
                    .any(|s| s.stamp == stamp.to_string() && s.subvolumes.contains(name))
            };
            if !has(stamp) {
                return Err(format!("there is no snapshot {stamp} of {name}"));
            }
            let path = |stamp: &Stamp| dir.join(stamp.to_string()).join(name);
            let mut command = std::process::Command::new("btrfs");
            command.args(["send", "-q"]);
            if let Some(parent) = parent {
                if !has(parent) {
                    return Err(format!(
                        "there is no snapshot {parent} of {name} to send from"
                    ));
                }
                command.arg("-p").arg(path(parent));
            }
            command.arg(path(stamp));
            let status = command
                .status()
                .map_err(|e| format!("cannot run btrfs send: {e}"))?;
            if status.success() {
                Ok(())
            } else {
                Err(format!("btrfs send failed ({status})"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listing_and_sending_a_named_snapshot_pass() {
        assert_eq!(Request::parse("list"), Ok(Request::List));
        let stamp = Stamp::parse("2026-12-07T101500Z");
        assert_eq!(
            Request::parse("send 2026-12-07T101500Z postgresql"),
            Ok(Request::Send {
                stamp: stamp.expect("a stamp"),
                name: "postgresql".into(),
                parent: None,
            })
        );
        assert!(matches!(
            Request::parse("send 2026-12-07T101500Z media.blog.uploads"),
            Ok(Request::Send { name, .. }) if name == "media.blog.uploads"
        ));
        assert!(matches!(
            Request::parse("send 2026-12-07T101500Z redis 2026-12-07T091500Z"),
            Ok(Request::Send {
                parent: Some(_),
                ..
            })
        ));
        for refused in [
            "",
            "list ",
            "list /",
            "rm -rf /",
            "send 2026-12-07T101500Z ../../etc",
            "send 2026-12-07T101500Z postgresql/../x",
            "send ../2026-12-07T101500Z postgresql",
            "send 2026-12-07T101500Z postgresql 2026-12-07T091500Z extra",
            "send 2026-12-07T101500Z Postgresql",
            "send 2026-12-07T101500Z media.blog.../../etc",
            "send 2026-12-07T101500Z media.blog",
            "send latest postgresql",
            "send  2026-12-07T101500Z postgresql",
            "receive 2026-12-07T101500Z postgresql",
            "list; rm -rf /",
        ] {
            assert!(Request::parse(refused).is_err(), "{refused:?} passed");
        }
    }
}
