//! The operator's side of the wire: open one SSH master per host (grouped
//! by how each provider is reached), make sure the host runs this very
//! sitec (shipped content-addressed, so a host that has it costs nothing),
//! and run `sitec host facts` / `sitec host apply` with the host's desired
//! state on stdin. A host that can't be reached is reported, not fatal.

use super::desired::{blob_file, HostDesired};
use crate::host::wire::{Desired, Event, Facts, BINARY_DIR};
use crate::transport::{HostTarget, Kex, SshOptions, Transport};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The exit status of the host command when the binary is missing (and
/// the host has no `zstd`: it gets the binary gzipped).
const NO_BINARY: i32 = 96;
/// The binary is missing and the host has `zstd`.
const NO_BINARY_HAS_ZSTD: i32 = 97;

/// How the binary travels: which program unpacks it on the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Packing {
    /// `gzip -dc`: every Debian has it.
    Gzip,
    /// `zstd -dcq`: smaller and three times faster to unpack, where the
    /// host has the program.
    Zstd,
}

impl Packing {
    /// The cache file's extension and the host's unpacking command.
    fn extension(self) -> &'static str {
        match self {
            Self::Gzip => "gz",
            Self::Zstd => "zst",
        }
    }

    pub fn unpack_command(self) -> &'static str {
        match self {
            Self::Gzip => "gzip -dc",
            Self::Zstd => "zstd -dcq",
        }
    }

    /// Compresses `raw` (once per sitec version: the result is cached).
    fn pack(self, raw: &[u8]) -> std::io::Result<Vec<u8>> {
        match self {
            Self::Gzip => {
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                std::io::Write::write_all(&mut encoder, raw)?;
                encoder.finish()
            }
            // Level 9: 3.6 MB from 9.7 in ~0.35 s; 19 saves 0.35 MB more
            // but takes 5 s, paid on the first plan after every build.
            Self::Zstd => zstd::bulk::compress(raw, 9),
        }
    }
}

/// Open masters to every reachable host.
pub struct Connections {
    transports: Vec<Transport>,
    /// Host name -> index into `transports`.
    by_host: HashMap<String, usize>,
    binary: Binary,
    /// The binary packed each way, made (or read from the cache) by the
    /// first host that needs it.
    binary_gz: tokio::sync::OnceCell<std::sync::Arc<Vec<u8>>>,
    binary_zst: tokio::sync::OnceCell<std::sync::Arc<Vec<u8>>>,
}

/// This sitec, as hosts keep it: `/usr/local/lib/sitec/sitec-<hash>`.
#[derive(Clone)]
pub struct Binary {
    pub local: PathBuf,
    pub remote: String,
    /// Its sha256, hex.
    pub hash: String,
}

impl Binary {
    /// The running executable and its content-addressed name on hosts. The
    /// hash is cached beside the binary's size and time (hashing tens of
    /// megabytes on every plan would cost more than the round trips).
    pub fn current() -> Result<Self, String> {
        let local =
            std::env::current_exe().map_err(|e| format!("cannot find sitec's own binary: {e}"))?;
        let meta = std::fs::metadata(&local)
            .map_err(|e| format!("cannot read {}: {e}", local.display()))?;
        let stamp = format!(
            "{} {} {:?}",
            local.display(),
            meta.len(),
            meta.modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        );
        let cache = super::desired::cache_dir().join("binary-hash");
        let cached = std::fs::read_to_string(&cache).ok().and_then(|text| {
            let (s, hash) = text.rsplit_once('\n')?;
            (s == stamp).then(|| hash.to_string())
        });
        let hash = match cached {
            Some(hash) => hash,
            None => {
                let bytes = std::fs::read(&local)
                    .map_err(|e| format!("cannot read {}: {e}", local.display()))?;
                let hash = crate::resources::sha256_hex(&bytes);
                if let Some(dir) = cache.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                let _ = std::fs::write(&cache, format!("{stamp}\n{hash}"));
                hash
            }
        };
        Ok(Self {
            local,
            remote: format!("{BINARY_DIR}/sitec-{}", &hash[..16]),
            hash,
        })
    }

    /// The binary packed for the trip to hosts: gzip (a third of its size;
    /// every Debian has `gzip`) or zstd. Packed once per version, then
    /// kept in the cache beside its hash.
    pub fn packed(&self, packing: Packing) -> Result<Vec<u8>, String> {
        let dir = super::desired::cache_dir();
        let cached = dir.join(format!(
            "binary-{}.{}",
            &self.hash[..16],
            packing.extension()
        ));
        if let Ok(bytes) = std::fs::read(&cached) {
            return Ok(bytes);
        }
        let raw = std::fs::read(&self.local)
            .map_err(|e| format!("cannot read {}: {e}", self.local.display()))?;
        packing
            .pack(&raw)
            .map_err(|e| format!("cannot compress {}: {e}", self.local.display()))
            .inspect(|packed| keep_in_cache(&dir, &cached, &self.hash[..16], packed))
    }
}

/// Saves the packed binary under `cached` (atomically), dropping other
/// versions' copies (this version's other packing stays). A cache that
/// can't be written only costs time.
fn keep_in_cache(dir: &Path, cached: &Path, version: &str, packed: &[u8]) {
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let packed_copy =
                name.starts_with("binary-") && (name.ends_with(".gz") || name.ends_with(".zst"));
            if packed_copy && !name.starts_with(&format!("binary-{version}.")) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    let partial = cached.with_extension(format!("part.{}", std::process::id()));
    if std::fs::write(&partial, packed).is_ok() {
        let _ = std::fs::rename(&partial, cached);
    }
}

/// How to reach the hosts of one provider.
fn ssh_options(host: &HostDesired, spec: &Path, kex: Kex) -> Result<(SshOptions, String), String> {
    let p = &host.reach;
    if p.local {
        let root = spec.parent().unwrap_or(Path::new(".")).join(".fleet");
        let name = spec
            .file_stem()
            .map_or_else(|| "fleet".into(), |s| s.to_string_lossy().into_owned());
        let layout = crate::fleet::Layout::new(&std::path::absolute(&root).unwrap_or(root), &name);
        let state = crate::fleet::FleetState::load(&layout)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!(
                    "the local fleet of {} is not up; run `sitec fleet up {}` first",
                    spec.display(),
                    spec.display()
                )
            })?;
        return Ok((
            state.ssh_options(kex),
            format!("local:{}", layout.dir.display()),
        ));
    }
    let base = spec.parent().unwrap_or(Path::new("."));
    let known_hosts = match &p.known_hosts {
        Some(file) => base.join(file),
        None => {
            let home =
                std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
            home.join(".ssh/known_hosts")
        }
    };
    let mut o = SshOptions::new(p.user.clone(), known_hosts);
    o.identity = p.identity.as_ref().map(|i| base.join(i));
    o.kex = kex;
    Ok((o, format!("provider:{}", p.provider)))
}

/// The command that runs `sitec ARGS` (`host facts`) on a host, or exits
/// 96 or 97 when this version is not there yet (97: the host has `zstd`).
/// ssh reports 127 as an error of its own, so the wrapper picks unused codes.
fn host_command_line(binary: &str, args: &str) -> String {
    format!(
        "test -x {binary} || {{ command -v zstd >/dev/null && exit {NO_BINARY_HAS_ZSTD}; \
         exit {NO_BINARY}; }}; exec {binary} {args}"
    )
}

/// The command that installs the binary at `binary` from the first
/// `packed_len` bytes of stdin, then runs `sitec ARGS` on the rest.
fn ship_and_run_line(binary: &str, args: &str, packing: Packing, packed_len: usize) -> String {
    // GNU head reads no more than it is asked for, even from a pipe.
    let reader = format!("head -c {packed_len} | {}", packing.unpack_command());
    format!(
        "{}; exec {binary} {args}",
        crate::transport::write_file_script(binary, 0o755, &reader)
    )
}

/// From the exit status of [`host_command_line`]: the binary is missing,
/// and how to pack it for this host.
fn missing_binary(status: Option<i32>) -> Option<Packing> {
    match status {
        Some(NO_BINARY) => Some(Packing::Gzip),
        Some(NO_BINARY_HAS_ZSTD) => Some(Packing::Zstd),
        _ => None,
    }
}

impl Connections {
    /// Connects to every host at once. Returns the open connections and,
    /// per host that could not be reached, why.
    pub async fn open(
        hosts: &[HostDesired],
        spec: &Path,
        kex: Kex,
    ) -> Result<(Self, Vec<(String, String)>), String> {
        let binary = Binary::current()?;
        let mut groups: Vec<(String, SshOptions, Vec<HostTarget>)> = Vec::new();
        let mut unreachable = Vec::new();
        for host in hosts {
            let (options, key) = match ssh_options(host, spec, kex) {
                Ok(found) => found,
                Err(e) => {
                    unreachable.push((host.name.clone(), e));
                    continue;
                }
            };
            let mut target = HostTarget::new(host.name.clone(), host.address.clone());
            target.port = host.reach.port;
            match groups.iter_mut().find(|(k, _, _)| *k == key) {
                Some((_, _, targets)) => targets.push(target),
                None => groups.push((key, options, vec![target])),
            }
        }
        // Every provider's hosts at once (and each provider's hosts in parallel).
        let mut tasks = tokio::task::JoinSet::new();
        for (i, (_, options, targets)) in groups.into_iter().enumerate() {
            tasks.spawn(async move { (i, Transport::connect_each(&targets, &options).await) });
        }
        let mut opened = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            opened.push(joined.map_err(|e| format!("a connection task failed: {e}"))?);
        }
        opened.sort_by_key(|(i, _)| *i);
        crate::trace::mark(|| "connected".into());
        let mut transports = Vec::new();
        let mut by_host = HashMap::new();
        for (_, result) in opened {
            let (transport, errors) = result.map_err(|e| e.to_string())?;
            for e in errors {
                let host = e.host.clone().unwrap_or_else(|| "?".into());
                unreachable.push((host, e.to_string()));
            }
            for t in transport.hosts() {
                by_host.insert(t.name.clone(), transports.len());
            }
            transports.push(transport);
        }
        Ok((
            Self {
                transports,
                by_host,
                binary,
                binary_gz: tokio::sync::OnceCell::new(),
                binary_zst: tokio::sync::OnceCell::new(),
            },
            unreachable,
        ))
    }

    fn transport(&self, host: &str) -> Result<&Transport, String> {
        self.by_host
            .get(host)
            .map(|i| &self.transports[*i])
            .ok_or_else(|| format!("{host}: not connected"))
    }

    pub fn is_open(&self, host: &str) -> bool {
        self.by_host.contains_key(host)
    }

    /// Runs `sitec host ACTION` on `host` with `desired` on stdin, shipping
    /// the binary first when the host lacks this version. Each stdout line
    /// goes to `on_line`; returns stdout, or the error in words.
    async fn host_command(
        &self,
        host: &str,
        action: &str,
        desired: &Desired,
        on_line: impl FnMut(&str),
    ) -> Result<(bool, String), String> {
        let input = serde_json::to_vec(desired).map_err(|e| e.to_string())?;
        let (out, packing) = self
            .sitec_lines(host, &format!("host {action}"), &input, on_line)
            .await?;
        let stderr = out.stderr_text();
        let what = if packing.is_some() {
            format!(
                "installing sitec at {} or `sitec host {action}`",
                self.binary.remote
            )
        } else {
            format!("`sitec host {action}`")
        };
        match out.status {
            Some(0 | 1) => Ok((out.status == Some(0), out.stdout_text())),
            _ => Err(format!("{host}: {what} failed: {}", stderr.trim())),
        }
    }

    /// Runs `sitec ARGS` (this very version) on `host` with `input` on
    /// stdin, shipping the binary first when the host lacks it; each stdout
    /// line goes to `on_line`. Returns the output and, when it shipped the
    /// binary, how.
    async fn sitec_lines(
        &self,
        host: &str,
        args: &str,
        input: &[u8],
        mut on_line: impl FnMut(&str),
    ) -> Result<(crate::transport::CommandOutput, Option<Packing>), String> {
        let t = self.transport(host)?;
        let command = host_command_line(&self.binary.remote, args);
        let mut out = t
            .run_lines(host, &command, input, &mut on_line)
            .await
            .map_err(|e| e.to_string())?;
        crate::trace::mark(|| format!("{host}: {args} ran (exit {:?})", out.status));
        let packing = missing_binary(out.status);
        if let Some(packing) = packing {
            out = self
                .ship_and_run(host, packing, args, input, &mut on_line)
                .await?;
            crate::trace::mark(|| {
                format!("{host}: binary shipped, {args} ran (exit {:?})", out.status)
            });
        }
        Ok((out, packing))
    }

    /// `sitec ARGS` on `host` (see [`Connections::sitec_lines`]).
    pub async fn sitec(
        &self,
        host: &str,
        args: &str,
        input: &[u8],
    ) -> Result<crate::transport::CommandOutput, String> {
        Ok(self.sitec_lines(host, args, input, |_| {}).await?.0)
    }

    /// A shell command on `host`, as the provider's user (root on fleets).
    pub async fn run(
        &self,
        host: &str,
        command: &str,
        input: &[u8],
    ) -> Result<crate::transport::CommandOutput, String> {
        (self.transport(host)?.run(host, command, input).await).map_err(|e| e.to_string())
    }

    /// `from`'s command's stdout streamed into `to`'s command's stdin
    /// (see [`Transport::pipe`]).
    pub async fn pipe(
        &self,
        from: (&str, &str),
        to: (&str, &str),
    ) -> Result<
        (
            u64,
            crate::transport::CommandOutput,
            crate::transport::CommandOutput,
        ),
        String,
    > {
        let source = self.transport(from.0)?;
        let sink = self.transport(to.0)?;
        (source.pipe(from, sink, to).await).map_err(|e| e.to_string())
    }

    /// Where this sitec is on the hosts (`/usr/local/lib/sitec/sitec-HASH`).
    pub fn remote_binary(&self) -> &str {
        &self.binary.remote
    }

    /// Ships this sitec to the host and runs `sitec ARGS` there, in one
    /// round trip: stdin carries the packed binary (exactly its length is
    /// read for unpacking, then renamed into place atomically), then the
    /// command's own input.
    async fn ship_and_run(
        &self,
        host: &str,
        packing: Packing,
        args: &str,
        input: &[u8],
        on_line: impl FnMut(&str),
    ) -> Result<crate::transport::CommandOutput, String> {
        let t = self.transport(host)?;
        let cell = match packing {
            Packing::Gzip => &self.binary_gz,
            Packing::Zstd => &self.binary_zst,
        };
        let packed = cell
            .get_or_try_init(|| async {
                let binary = self.binary.clone();
                tokio::task::spawn_blocking(move || binary.packed(packing))
                    .await
                    .map_err(|e| format!("compressing sitec's binary failed: {e}"))?
                    .map(std::sync::Arc::new)
            })
            .await?;
        let command = ship_and_run_line(&self.binary.remote, args, packing, packed.len());
        let mut stdin = Vec::with_capacity(packed.len() + input.len());
        stdin.extend_from_slice(packed);
        stdin.extend_from_slice(input);
        t.run_lines(host, &command, &stdin, on_line)
            .await
            .map_err(|e| e.to_string())
    }

    /// The host's facts for its desired state.
    pub async fn facts(&self, host: &str, desired: &Desired) -> Result<Facts, String> {
        let (_, stdout) = self.host_command(host, "facts", desired, |_| {}).await?;
        serde_json::from_str(stdout.trim())
            .map_err(|e| format!("{host}: unreadable facts ({e}): {}", stdout.trim()))
    }

    /// Uploads the blobs the host said it lacks.
    pub async fn upload_blobs(&self, host: &str, digests: &[String]) -> Result<(), String> {
        let t = self.transport(host)?;
        for digest in digests {
            let local = blob_file(digest);
            let bytes = tokio::fs::read(&local)
                .await
                .map_err(|e| format!("cannot read {} ({e}); make a new plan", local.display()))?;
            let remote = crate::host::blob_path(digest);
            t.upload(host, &bytes, &remote.to_string_lossy(), 0o600)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Applies `desired` on the host, handing each event to `on_event`.
    /// `Ok(true)` when everything converged.
    pub async fn apply(
        &self,
        host: &str,
        desired: &Desired,
        mut on_event: impl FnMut(Event),
    ) -> Result<bool, String> {
        let (ok, _) = self
            .host_command(host, "apply", desired, |line| {
                crate::trace::mark(|| {
                    format!("{host}: {}", line.chars().take(90).collect::<String>())
                });
                if let Ok(event) = serde_json::from_str::<Event>(line) {
                    on_event(event);
                }
            })
            .await?;
        Ok(ok)
    }

    /// Closes every master.
    pub async fn close(self) {
        for t in self.transports {
            t.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    use std::process::{Command, Stdio};

    /// Runs `sh -c script` with `PATH` set to `path` and `input` on stdin.
    fn sh(script: &str, path: &str, input: &[u8]) -> std::process::Output {
        let mut child = Command::new("/bin/sh")
            .args(["-c", script])
            .env("PATH", path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sh runs");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input).expect("input written");
        drop(stdin);
        child.wait_with_output().expect("sh finishes")
    }

    /// What a host answers when the binary is missing, with and without
    /// `zstd` on its PATH, and that the wrapper runs the binary when present.
    #[test]
    fn the_wrapper_says_whether_the_host_can_unpack_zstd() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bin = dir.path().join("sitec-0123");
        let line = host_command_line(&bin.to_string_lossy(), "host facts");
        let no_zstd = dir.path().join("empty");
        std::fs::create_dir(&no_zstd).expect("dir");
        let without = sh(&line, &no_zstd.to_string_lossy(), b"");
        assert_eq!(missing_binary(without.status.code()), Some(Packing::Gzip));
        require_program("zstd");
        let with = sh(&line, "/usr/bin:/bin", b"");
        assert_eq!(missing_binary(with.status.code()), Some(Packing::Zstd));
        std::fs::write(&bin, "#!/bin/sh\necho \"ran $1 $2\"\n").expect("script");
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let ran = sh(&line, "/usr/bin:/bin", b"");
        assert_eq!(ran.status.code(), Some(0));
        assert_eq!(String::from_utf8_lossy(&ran.stdout), "ran host facts\n");
        assert_eq!(missing_binary(ran.status.code()), None);
    }

    /// The binary (here a script that prints its arguments and its stdin)
    /// is installed from the head of stdin and run on the rest; a stream
    /// cut short installs nothing.
    #[test]
    fn one_round_trip_installs_the_binary_and_runs_it_on_the_rest() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bin = dir.path().join("lib/sitec-0123");
        let program = b"#!/bin/sh\necho \"ran $1 $2\"; cat\n";
        let packed = Packing::Gzip.pack(program).expect("packs");
        let line = ship_and_run_line(
            &bin.to_string_lossy(),
            "host facts",
            Packing::Gzip,
            packed.len(),
        );
        let mut stdin = packed.clone();
        stdin.extend_from_slice(b"{\"desired\": true}");
        let ran = sh(&line, "/usr/bin:/bin", &stdin);
        assert!(
            ran.status.success(),
            "{}",
            String::from_utf8_lossy(&ran.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&ran.stdout),
            "ran host facts\n{\"desired\": true}"
        );
        assert_eq!(std::fs::read(&bin).expect("installed"), program);
        let mode = std::fs::metadata(&bin).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o755);

        let other = dir.path().join("lib/sitec-4567");
        let line = ship_and_run_line(
            &other.to_string_lossy(),
            "host facts",
            Packing::Gzip,
            packed.len(),
        );
        let cut = sh(&line, "/usr/bin:/bin", &packed[..packed.len() / 2]);
        assert!(!cut.status.success());
        assert!(!other.exists(), "nothing half-written");
        let leftovers = std::fs::read_dir(dir.path().join("lib"))
            .expect("dir")
            .count();
        assert_eq!(leftovers, 1, "no temporary file left");
    }

    /// The tests run the hosts' programs for real: a missing one fails
    /// them (`bash .ci/setup` installs it), never skips them.
    fn require_program(program: &str) {
        assert!(
            Command::new(program).arg("--version").output().is_ok(),
            "`{program}` is not installed: run `apt-get install -y {program}` (or `bash .ci/setup`)"
        );
    }

    /// Each packing comes back byte for byte through the program the host
    /// unpacks it with.
    #[test]
    fn packed_bytes_unpack_with_the_hosts_program() {
        let raw: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for packing in [Packing::Gzip, Packing::Zstd] {
            require_program(packing.unpack_command().split(' ').next().unwrap_or(""));
            let packed = packing.pack(&raw).expect("packs");
            assert!(packed.len() < raw.len() / 4, "{packing:?} compresses");
            let out = sh(packing.unpack_command(), "/usr/bin:/bin", &packed);
            assert!(
                out.status.success(),
                "{packing:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out.stdout == raw, "{packing:?} round trip");
        }
    }
}
