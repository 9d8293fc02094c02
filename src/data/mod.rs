//! The data layer's own commands: backups that run, are listed and are
//! restored (a database's server, `restore`; an app's media store,
//! `media_restore`), and database failover.
//!
//! On the hosts (`sitec data ...`, hidden; run by the units and keys the
//! `snapshots` and `backup` roles install): a database host's or runner's
//! timer takes read-only btrfs snapshots of its data folders and media
//! stores (`snapshots`); the backup
//! host's key may only list and send them (`serve`, its forced command);
//! the backup host's timer pulls them incrementally and keeps what `keep`
//! says (`pull`, `retention`). Snapshots are named by the second they were
//! taken (`stamp`).
//!
//! This module never holds a credential of another host, and its host
//! side never connects anywhere but from the backup host to the database
//! hosts it pulls from.

pub mod backups;
pub mod failover;
pub mod media_restore;
pub mod pull;
pub mod reach;
pub mod restore;
pub mod retention;
pub mod serve;
pub mod snapshots;
pub mod stamp;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `sitec data`: what runs on the hosts for backups.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(clap::Subcommand, Debug)]
pub enum Action {
    /// Take one read-only snapshot of each data subvolume (a database host's timer)
    Snapshot(ConfigArgs),
    /// Answer the request in SSH_ORIGINAL_COMMAND about DIR's snapshots (the
    /// backup key's forced command): `list`, or `send STAMP NAME [PARENT]`
    Serve {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Pull new snapshots from every database host, then prune (a backup host's timer)
    Pull(ConfigArgs),
    /// The snapshots in DIR (with --hosts, in DIR/HOST/ for each HOST) as JSON
    List {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        #[arg(long)]
        hosts: bool,
    },
    /// Remove the snapshots in DIR that the retention rules do not keep
    Prune {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        #[arg(long, default_value_t = 0)]
        hourly: u32,
        #[arg(long, default_value_t = 0)]
        daily: u32,
        #[arg(long, default_value_t = 0)]
        weekly: u32,
        #[arg(long, default_value_t = 0)]
        monthly: u32,
    },
}

#[derive(clap::Args, Debug)]
pub struct ConfigArgs {
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Only check the file
    #[arg(long)]
    pub check: bool,
}

/// One snapshot in a listing (`sitec data list`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Listed {
    /// Whose data it is, for a backup host's copies (`DIR/HOST/STAMP`).
    pub host: Option<String>,
    /// The folder holding it.
    pub dir: String,
    #[serde(flatten)]
    pub snapshot: snapshots::Snapshot,
    /// What each subvolume holds, in bytes.
    pub sizes: std::collections::BTreeMap<String, u64>,
    /// For a copy: what its pull cost.
    pub pulled: Option<pull::Pulled>,
}

/// Runs `sitec data ACTION`.
#[must_use]
pub fn run(args: &Args) -> ExitCode {
    let done = match &args.action {
        Action::Snapshot(a) => snapshots::SnapshotConfig::load(&a.config).and_then(|config| {
            if a.check {
                crate::outln!("{} is valid", a.config.display());
                return Ok(());
            }
            let stamp = snapshots::take(&config)?;
            crate::outln!("snapshot {stamp} in {}", config.dir.display());
            Ok(())
        }),
        Action::Serve { dir } => {
            let asked = std::env::var("SSH_ORIGINAL_COMMAND").unwrap_or_default();
            serve::Request::parse(&asked).and_then(|request| serve::serve(dir, &request))
        }
        Action::Pull(a) => pull::PullConfig::load(&a.config).and_then(|config| {
            if a.check {
                crate::outln!("{} is valid", a.config.display());
                return Ok(());
            }
            for line in pull::pull(&config)? {
                crate::outln!("{line}");
            }
            Ok(())
        }),
        Action::List { dir, hosts } => list(dir, *hosts).map(|listed| {
            crate::outln!("{}", serde_json::to_string(&listed).unwrap_or_default());
        }),
        Action::Prune {
            dir,
            hourly,
            daily,
            weekly,
            monthly,
        } => {
            let keep = crate::model::Keep {
                hourly: *hourly,
                daily: *daily,
                weekly: *weekly,
                monthly: *monthly,
            };
            pull::prune(dir, &keep).map(|removed| {
                for stamp in removed {
                    crate::outln!("removed {stamp}");
                }
            })
        }
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            crate::errln!("sitec data: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Every snapshot in `dir`, or in each `dir/HOST/` with `hosts`.
fn list(dir: &Path, hosts: bool) -> Result<Vec<Listed>, String> {
    let folders: Vec<(Option<String>, PathBuf)> = if hosts {
        let mut found: Vec<(Option<String>, PathBuf)> = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| (Some(e.file_name().to_string_lossy().into_owned()), e.path()))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(format!("cannot read {}: {e}", dir.display())),
        };
        found.sort();
        found
    } else {
        vec![(None, dir.to_path_buf())]
    };
    let mut listed = Vec::new();
    for (host, folder) in folders {
        for snapshot in snapshots::list(&folder)? {
            let path = folder.join(&snapshot.stamp);
            let pulled = std::fs::read_to_string(path.join("pulled.json"))
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok());
            let sizes = (snapshot.subvolumes.iter())
                .filter_map(|name| Some((name.clone(), snapshots::size(&path.join(name))?)))
                .collect();
            listed.push(Listed {
                host: host.clone(),
                dir: folder.display().to_string(),
                sizes,
                pulled,
                snapshot,
            });
        }
    }
    Ok(listed)
}

/// `redis-cli` on a database host against its Redis server `name`: over
/// TLS, checked against the fleet CA, with the password its config holds
/// (read there, never sent from here).
pub fn redis_cli(name: &str, port: u16) -> String {
    format!(
        "REDISCLI_AUTH=$(awk '/^requirepass/ {{ gsub(/\"/, \"\", $2); print $2 }}' /etc/sitec/redis/{name}.conf) \
         redis-cli --tls --cacert {} -p {port}",
        crate::fleet_ca::CA_FILE
    )
}

/// A TOML file sitec rendered, read into `T` (unknown keys refused by `T`).
pub fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Rows under a head, in columns as wide as their widest cell.
pub fn aligned(head: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let rows: Vec<Vec<String>> = std::iter::once(head.iter().map(|h| h.to_string()).collect())
        .chain(rows)
        .collect();
    let mut widths = vec![0; head.len()];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', width + 2 - cell.chars().count()));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `41.2 MB`: a size for people (powers of 1000, as `du --si`).
#[must_use]
pub fn bytes_words(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < units.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_align_on_their_widest_cell() {
        let rows = vec![
            vec!["a".to_string(), "long cell".into()],
            vec!["bbb".into(), "x".into()],
        ];
        assert_eq!(
            super::aligned(&["H1", "H2"], rows),
            "H1   H2\na    long cell\nbbb  x\n"
        );
    }

    #[test]
    fn sizes_read_short() {
        assert_eq!(super::bytes_words(999), "999 B");
        assert_eq!(super::bytes_words(41_200_000), "41.2 MB");
        assert_eq!(super::bytes_words(1_073_741_824), "1.1 GB");
    }
}
