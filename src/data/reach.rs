//! How the data commands reach hosts. Their core (`backups`, `restore`,
//! `failover`) says what to run where through [`Hosts`] and never opens a
//! connection; [`Ssh`] carries it over plan's connections (one SSH master
//! per host, this very sitec shipped by hash when a host lacks it). The
//! fleet's authenticated bus can carry the same calls later.

use crate::model::{Fleet, HostId};
use crate::plan::desired::HostDesired;
use crate::plan::remote::Connections;
use crate::transport::{CommandOutput, Kex};
use std::path::Path;

/// What a command gave back.
#[derive(Debug, Clone, Default)]
pub struct Ran {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// Its stdout, or an error naming `what` and quoting stderr.
    pub fn or_fail(self, host: &str, what: &str) -> Result<String, String> {
        if self.ok {
            Ok(self.stdout)
        } else {
            Err(format!("{host}: {what} failed: {}", self.stderr.trim()))
        }
    }
}

impl From<CommandOutput> for Ran {
    fn from(out: CommandOutput) -> Ran {
        Ran {
            ok: out.success(),
            stdout: out.stdout_text(),
            stderr: out.stderr_text(),
        }
    }
}

/// What the data commands need from the hosts.
#[allow(async_fn_in_trait)]
pub trait Hosts {
    /// `sitec ARGS` (this very version) on `host`.
    async fn sitec(&self, host: &str, args: &str) -> Result<Ran, String>;
    /// A shell script on `host`, as root.
    async fn sh(&self, host: &str, script: &str) -> Result<Ran, String>;
    /// `from`'s script's stdout streamed into `to`'s script's stdin (the
    /// two hosts never talk to each other); the bytes that passed, and
    /// the second's output.
    async fn pipe(&self, from: (&str, &str), to: (&str, &str)) -> Result<(u64, Ran), String>;
    /// Whether `host` answered when the connections were opened.
    fn reachable(&self, host: &str) -> bool;
}

/// [`Hosts`] over SSH.
pub struct Ssh {
    connections: Connections,
    /// Hosts that could not be reached, and why.
    pub unreachable: Vec<(String, String)>,
}

impl Ssh {
    /// Connects to `hosts` of the spec at `spec`, all at once. A host that
    /// does not answer is listed in `unreachable`, not an error.
    pub async fn open(
        fleet: &Fleet<'_>,
        hosts: &[HostId],
        spec: &Path,
        kex: Kex,
    ) -> Result<Ssh, String> {
        let mut ids = hosts.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let reach: Vec<HostDesired> = (ids.iter())
            .map(|h| HostDesired::reach_only(fleet, *h))
            .collect();
        let (connections, unreachable) = Connections::open(&reach, spec, kex).await?;
        Ok(Ssh {
            connections,
            unreachable,
        })
    }

    pub async fn close(self) {
        self.connections.close().await;
    }
}

impl Hosts for Ssh {
    async fn sitec(&self, host: &str, args: &str) -> Result<Ran, String> {
        self.connections.sitec(host, args, b"").await.map(Ran::from)
    }

    async fn sh(&self, host: &str, script: &str) -> Result<Ran, String> {
        self.connections.run(host, script, b"").await.map(Ran::from)
    }

    async fn pipe(&self, from: (&str, &str), to: (&str, &str)) -> Result<(u64, Ran), String> {
        let (bytes, sent, got) = self.connections.pipe(from, to).await?;
        if !sent.success() {
            return Err(format!(
                "{}: `{}` failed: {}",
                from.0,
                from.1,
                sent.stderr_text().trim()
            ));
        }
        Ok((bytes, got.into()))
    }

    fn reachable(&self, host: &str) -> bool {
        self.connections.is_open(host)
    }
}
