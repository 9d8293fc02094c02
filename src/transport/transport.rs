//! [`Transport`]: one open SSH master per host, and what sitec does over them
//! (run a command, upload a file atomically, ship its own binary).

use super::{interrupt, CommandOutput, Error, HostTarget, SshOptions};
use openssh::{KnownHosts, Session, SessionBuilder, Stdio};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// Open SSH masters to a set of hosts. Dropping it (or [`Transport::close`])
/// shuts every master down and removes the control directory.
pub struct Transport {
    hosts: Vec<(HostTarget, Arc<Session>)>,
    control_dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field(
                "hosts",
                &self.hosts.iter().map(|(t, _)| &t.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// Opens a master to every host at once. Fails (closing whatever did
    /// open) unless every host answered; the error names each host that did
    /// not and why.
    pub async fn connect(targets: &[HostTarget], options: &SshOptions) -> Result<Self, Error> {
        let (transport, errors) = Self::connect_each(targets, options).await?;
        if errors.is_empty() {
            return Ok(transport);
        }
        transport.close().await;
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        Err(Error::new(
            None,
            format!(
                "could not reach {} of {} hosts:\n{}",
                errors.len(),
                targets.len(),
                lines.join("\n")
            ),
        ))
    }

    /// Opens a master to every host at once and keeps the ones that
    /// answered; the second value says why each other host did not. Fails
    /// only when nothing could be set up locally.
    pub async fn connect_each(
        targets: &[HostTarget],
        options: &SshOptions,
    ) -> Result<(Self, Vec<Error>), Error> {
        interrupt::install();
        let control_dir = short_control_dir()?;
        let config = control_dir.path().join("config");
        std::fs::write(&config, options.config_text())
            .map_err(|e| Error::new(None, format!("cannot write {}: {e}", config.display())))?;
        interrupt::remember(control_dir.path());

        let mut builder = SessionBuilder::default();
        builder
            .config_file(&config)
            .known_hosts_check(KnownHosts::Strict)
            .user_known_hosts_file(&options.known_hosts)
            .connect_timeout(options.connect_timeout)
            .control_directory(control_dir.path())
            .user(options.user.clone());
        if let Some(identity) = &options.identity {
            builder.keyfile(identity);
        }

        let mut tasks = tokio::task::JoinSet::new();
        for (i, target) in targets.iter().enumerate() {
            let builder = builder.clone();
            let target = target.clone();
            tasks.spawn(async move {
                let mut b = builder;
                b.port(target.port);
                let result = b.connect_mux(&target.address).await;
                (i, target, result)
            });
        }
        let mut opened = Vec::new();
        let mut errors = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let Ok((i, target, result)) = joined else {
                errors.push(Error::new(None, "a connection task panicked"));
                continue;
            };
            match result {
                Ok(session) => opened.push((i, target, Arc::new(session))),
                Err(e) => errors.push(connect_error(&target, options, &e)),
            }
        }
        opened.sort_by_key(|(i, _, _)| *i);
        let transport = Self {
            hosts: opened.into_iter().map(|(_, t, s)| (t, s)).collect(),
            control_dir: Some(control_dir),
        };
        Ok((transport, errors))
    }

    /// The hosts with an open master, in the order they were given.
    pub fn hosts(&self) -> impl Iterator<Item = &HostTarget> {
        self.hosts.iter().map(|(t, _)| t)
    }

    fn session(&self, host: &str) -> Result<&Session, Error> {
        self.hosts
            .iter()
            .find(|(t, _)| t.name == host)
            .map(|(_, s)| s.as_ref())
            .ok_or_else(|| Error::new(Some(host), "no open connection to this host"))
    }

    /// Runs `command` through the remote user's shell, feeding it `stdin`,
    /// and collects its exit status, stdout and stderr.
    pub async fn run(
        &self,
        host: &str,
        command: &str,
        stdin: &[u8],
    ) -> Result<CommandOutput, Error> {
        self.run_lines(host, command, stdin, |_| {}).await
    }

    /// Runs `command` like [`Transport::run`], but hands each line of its
    /// stdout to `on_line` as it arrives (a host's progress events).
    /// Returns the exit status and the whole stderr.
    pub async fn run_lines(
        &self,
        host: &str,
        command: &str,
        stdin: &[u8],
        mut on_line: impl FnMut(&str),
    ) -> Result<CommandOutput, Error> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
        let session = self.session(host)?;
        let mut child = session
            .raw_command(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .await
            .map_err(|e| command_error(host, command, "cannot start", &e))?;
        let input = child.stdin().take();
        let stdout = child.stdout().take();
        let stderr = child.stderr().take();
        let feed = async move {
            if let Some(mut input) = input {
                // A command that does not read its input closes the pipe
                // early; that is its business, not an error of ours.
                let _ = input.write_all(stdin).await;
                let _ = input.shutdown().await;
            }
        };
        let read_err = async move {
            let mut text = Vec::new();
            if let Some(mut err) = stderr {
                let _ = err.read_to_end(&mut text).await;
            }
            text
        };
        let read_out = async {
            let mut collected = Vec::new();
            if let Some(out) = stdout {
                let mut reader = BufReader::new(out);
                let mut line = Vec::new();
                while matches!(reader.read_until(b'\n', &mut line).await, Ok(n) if n > 0) {
                    on_line(String::from_utf8_lossy(&line).trim_end_matches('\n'));
                    collected.append(&mut line);
                }
            }
            collected
        };
        let ((), stdout, stderr) = tokio::join!(feed, read_out, read_err);
        let status = child
            .wait()
            .await
            .map_err(|e| command_error(host, command, "did not finish", &e))?;
        Ok(CommandOutput {
            status: status.code(),
            stdout,
            stderr,
        })
    }

    /// Runs `from_command` on `from_host` and `to_command` on `to_host`
    /// (a host of `to`, which may be this transport) with the first's
    /// stdout streamed into the second's stdin through this machine, in
    /// bounded memory: a snapshot sent from one host to another whose keys
    /// never meet. Returns the bytes that passed and both commands' outputs
    /// (their stdout empty for the first).
    pub async fn pipe(
        &self,
        (from_host, from_command): (&str, &str),
        to: &Transport,
        (to_host, to_command): (&str, &str),
    ) -> Result<(u64, CommandOutput, CommandOutput), Error> {
        let mut sender = self
            .session(from_host)?
            .raw_command(from_command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .await
            .map_err(|e| command_error(from_host, from_command, "cannot start", &e))?;
        let mut receiver = to
            .session(to_host)?
            .raw_command(to_command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .await
            .map_err(|e| command_error(to_host, to_command, "cannot start", &e))?;
        let (source, sink) = (sender.stdout().take(), receiver.stdin().take());
        let copy = async move {
            let (Some(mut source), Some(mut sink)) = (source, sink) else {
                return Ok(0);
            };
            let copied = tokio::io::copy(&mut source, &mut sink).await;
            let _ = sink.shutdown().await;
            copied
        };
        let (copied, sent_err, got_out, got_err) = tokio::join!(
            copy,
            read_all(sender.stderr().take()),
            read_all(receiver.stdout().take()),
            read_all(receiver.stderr().take())
        );
        let sent = sender
            .wait()
            .await
            .map_err(|e| command_error(from_host, from_command, "did not finish", &e))?;
        let got = receiver
            .wait()
            .await
            .map_err(|e| command_error(to_host, to_command, "did not finish", &e))?;
        let outputs = (
            CommandOutput {
                status: sent.code(),
                stdout: Vec::new(),
                stderr: sent_err,
            },
            CommandOutput {
                status: got.code(),
                stdout: got_out,
                stderr: got_err,
            },
        );
        let bytes = copied.map_err(|e| {
            Error::new(
                Some(to_host),
                format!("streaming from {from_host} failed: {e}"),
            )
        })?;
        Ok((bytes, outputs.0, outputs.1))
    }

    /// Writes `contents` to `remote_path` with `mode`, atomically: a
    /// temporary name in the same directory (made if missing), then a
    /// rename over the target.
    pub async fn upload(
        &self,
        host: &str,
        contents: &[u8],
        remote_path: &str,
        mode: u32,
    ) -> Result<(), Error> {
        self.write_remote(host, contents, remote_path, mode, "cat")
            .await
    }

    /// One round trip: `reader` turns stdin into the file's bytes.
    async fn write_remote(
        &self,
        host: &str,
        stdin: &[u8],
        remote_path: &str,
        mode: u32,
        reader: &str,
    ) -> Result<(), Error> {
        let script = write_file_script(remote_path, mode, reader);
        let out = self.run(host, &script, stdin).await?;
        if out.success() {
            Ok(())
        } else {
            Err(Error::new(
                Some(host),
                format!("cannot write {remote_path}: {}", out.stderr_text().trim()),
            ))
        }
    }

    /// Copies the local file at `local_path` (sitec's own binary, usually) to
    /// `remote_path` with mode 0755 (making its directory if needed) unless
    /// the host already has a file there with the same sha256. Returns
    /// whether it copied.
    pub async fn ensure_binary(
        &self,
        host: &str,
        local_path: &Path,
        remote_path: &str,
    ) -> Result<bool, Error> {
        let bytes = tokio::fs::read(local_path).await.map_err(|e| {
            Error::new(
                Some(host),
                format!("cannot read {}: {e}", local_path.display()),
            )
        })?;
        let local = crate::resources::sha256_hex(&bytes);
        let q = shell_quote(remote_path);
        let probe = format!("sha256sum {q} 2>/dev/null || true");
        let out = self.run(host, &probe, b"").await?;
        let remote = out.stdout_text();
        if remote.split_whitespace().next() == Some(local.as_str()) {
            return Ok(false);
        }
        self.upload(host, &bytes, remote_path, 0o755).await?;
        Ok(true)
    }

    /// Closes every master and removes the control directory. Errors are
    /// not interesting here: a master that is already gone is closed.
    pub async fn close(mut self) {
        let hosts = std::mem::take(&mut self.hosts);
        let mut tasks = tokio::task::JoinSet::new();
        for (_, session) in hosts {
            if let Ok(session) = Arc::try_unwrap(session) {
                tasks.spawn(async move {
                    let _ = session.close().await;
                });
            }
        }
        while tasks.join_next().await.is_some() {}
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        // Sessions drop first (each asks its master to exit), then the
        // control directory goes.
        self.hosts.clear();
        if let Some(dir) = self.control_dir.take() {
            interrupt::forget(dir.path());
            let _ = dir.close();
        }
    }
}

/// Everything `stream` gives until it ends (nothing when there is none).
async fn read_all(stream: Option<impl tokio::io::AsyncRead + Unpin>) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut bytes = Vec::new();
    if let Some(mut stream) = stream {
        let _ = stream.read_to_end(&mut bytes).await;
    }
    bytes
}

/// A control directory short enough for a unix socket path (108 bytes,
/// and ssh appends a 17-byte suffix while it binds): `/tmp/sitec-XXXXXX`
/// unless `$TMPDIR` is itself short.
fn short_control_dir() -> Result<tempfile::TempDir, Error> {
    let tmp = std::env::temp_dir();
    let base: PathBuf = if tmp.as_os_str().len() <= 20 {
        tmp
    } else {
        "/tmp".into()
    };
    tempfile::Builder::new()
        .prefix("sitec-")
        .tempdir_in(&base)
        .map_err(|e| {
            Error::new(
                None,
                format!(
                    "cannot create an ssh control directory in {}: {e}",
                    base.display()
                ),
            )
        })
}

fn connect_error(target: &HostTarget, options: &SshOptions, e: &openssh::Error) -> Error {
    let text = e.to_string();
    let detail = std::error::Error::source(e)
        .map(ToString::to_string)
        .unwrap_or_default();
    let all = format!("{text} {detail}");
    let err = Error::new(
        Some(&target.name),
        format!(
            "cannot connect to {}:{}: {}",
            target.address,
            target.port,
            all.trim()
        ),
    );
    if all.contains("Host key verification failed") || all.contains("REMOTE HOST IDENTIFICATION") {
        err.help(format!(
            "the host's key is not the one pinned in {}; if the host was rebuilt, update that file",
            options.known_hosts.display()
        ))
    } else if all.contains("Permission denied") {
        err.help(
            "the host does not accept the key offered; check the identity file and authorized_keys",
        )
    } else {
        err.help(
            "check that the host is up and sshd listens (for a local fleet: `sitec fleet status`)",
        )
    }
}

/// Quotes `s` for a POSIX shell.
/// Why a command could not run or finish. A lost connection says so in
/// words (the master is gone: the host stopped answering keepalives, or
/// went down) rather than quoting a long script and the mux's error.
fn command_error(host: &str, command: &str, what: &str, e: &openssh::Error) -> Error {
    let lost = matches!(
        e,
        openssh::Error::SshMux(_)
            | openssh::Error::Disconnected
            | openssh::Error::Master(_)
            | openssh::Error::RemoteProcessTerminated
    );
    if lost {
        return Error::new(
            Some(host),
            "lost the connection: the host stopped answering (ssh gave up after \
             three unanswered keepalives, 5 s apart) or closed it; it may have \
             applied part of its changes, and the next apply finishes them",
        );
    }
    let shown: String = command.chars().take(120).collect();
    let more = if shown.len() < command.len() {
        "…"
    } else {
        ""
    };
    Error::new(Some(host), format!("`{shown}{more}` {what}: {e}"))
}

/// A shell script that writes the file at `remote_path` with `mode`,
/// atomically: `reader` turns stdin into its bytes, under a temporary name
/// in the same directory (made if missing), then renamed over the target.
/// It stops at the first error (`set -e`) and leaves nothing half-written.
///
/// The folder must be the connecting user's own and not a link (root's
/// `/usr/local/lib/sitec` and `/var/lib/sitec/blobs`): a folder someone else
/// can write is refused, since they could swap names in it. The temporary
/// name is `mktemp`'s (created with `O_EXCL`), and `mv -T` renames it over
/// the file, never into a folder of that name.
pub(crate) fn write_file_script(remote_path: &str, mode: u32, reader: &str) -> String {
    let dest = shell_quote(remote_path);
    format!(
        "set -e; d={dest}; f=\"$(dirname \"$d\")\"; mkdir -p \"$f\"; umask 077; \
         if [ -L \"$f\" ] || [ \"$(stat -c %u \"$f\")\" != \"$(id -u)\" ]; then \
         echo \"$f is a link or not $(id -un)'s own folder; sitec writes nothing there\" >&2; exit 1; fi; \
         t=\"$(mktemp \"$f/.$(basename \"$d\").sitec-tmp.XXXXXXXX\")\"; \
         trap 'rm -f \"$t\"' EXIT; {reader} > \"$t\"; chmod {mode:o} \"$t\"; \
         mv -fT \"$t\" \"$d\"; trap - EXIT"
    )
}

pub(crate) fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the write script locally with `input` on stdin.
    fn write_here(path: &std::path::Path, input: &str) -> std::process::Output {
        use std::io::Write as _;
        let script = write_file_script(&path.to_string_lossy(), 0o640, "cat");
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", &script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("sh runs");
        let mut stdin = child.stdin.take().expect("stdin");
        // A script that refuses exits before it reads: its input pipe is
        // closed then (EPIPE), which is not this test's business.
        match stdin.write_all(input.as_bytes()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("input: {e}"),
            _ => drop(stdin),
        }
        child.wait_with_output().expect("sh ends")
    }

    #[test]
    fn the_write_script_writes_whole_files_in_own_folders_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("bin/sitec-1");
        assert!(write_here(&file, "one").status.success());
        assert_eq!(std::fs::read_to_string(&file).expect("written"), "one");
        let mode = std::fs::metadata(&file).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        let folder = std::fs::metadata(tmp.path().join("bin")).expect("meta");
        assert_eq!(
            folder.permissions().mode() & 0o777,
            0o755,
            "the folder others run from"
        );
        // A folder that is a link is refused, and nothing lands where it points.
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).expect("elsewhere");
        std::os::unix::fs::symlink(&elsewhere, tmp.path().join("linked")).expect("link");
        let out = write_here(&tmp.path().join("linked/sitec-1"), "two");
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("is a link"));
        assert_eq!(std::fs::read_dir(&elsewhere).expect("list").count(), 0);
        let names: Vec<_> = std::fs::read_dir(tmp.path().join("bin"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["sitec-1"], "no temporary left");
        // Root refuses a folder someone else owns.
        if rustix::process::geteuid().is_root() {
            let theirs = tmp.path().join("theirs");
            std::fs::create_dir(&theirs).expect("theirs");
            std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).expect("chown");
            let out = write_here(&theirs.join("x"), "three");
            assert!(!out.status.success());
            assert!(!theirs.join("x").exists());
        }
    }

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
