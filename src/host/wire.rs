//! What the operator's `sitec` and a host's `sitec host` say to each other:
//! one JSON document in (the host's desired state), one JSON document out
//! (`facts`) or one JSON line per event (`apply`). Both ends are the same
//! binary (plan ships it first), so the two sides never disagree on a field.

use crate::resources::Kind;
use serde::{Deserialize, Serialize};

/// Where sitec keeps its own things on a host.
pub const STATE_DIR: &str = "/var/lib/sitec";
/// The binary every host runs (a symlink to the content-addressed copy).
pub const BINARY_DIR: &str = "/usr/local/lib/sitec";

/// Everything one host should hold, in apply order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Desired {
    pub host: String,
    /// Names this compile of the spec: a hash of every host's desired state.
    pub generation: String,
    /// The spec it came from, for the state file and messages.
    pub spec: String,
    pub items: Vec<Item>,
    /// `apply` of a saved plan: the facts fingerprint the plan saw. The host
    /// refuses when its facts no longer match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
    /// `apply`: the fleet lock its operator holds, which the host records
    /// before it changes anything (and refuses if another holds it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<crate::ops::lock::Claim>,
    /// `apply` of these items alone, changing nothing else (not the
    /// applied generation, nothing removed): the operator's apply sends a
    /// runner's new virtualenvs before it drains it, so pip runs while the
    /// runner serves, and every brick host's GlusterFS server before the
    /// rolling deploy (`apply::first_phase`).
    /// The ids to converge; empty: a complete apply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prepare: Vec<String>,
}

impl Desired {
    /// `host`'s desired state with nothing in it (a host to reach and run
    /// commands on); the other fields as a plan's before it is applied.
    #[must_use]
    pub fn nothing(host: &str) -> Self {
        Self {
            host: host.to_string(),
            generation: String::new(),
            spec: String::new(),
            items: Vec::new(),
            expect: None,
            lease: None,
            prepare: Vec::new(),
        }
    }
}

/// One resource as the host needs it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Item {
    pub id: String,
    #[serde(flatten)]
    pub kind: Kind,
    #[serde(default)]
    pub requires: Vec<String>,
    #[serde(default)]
    pub notifies: Vec<String>,
    /// A file's content; a virtualenv's requirements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// The blob (under `/var/lib/sitec/blobs/`) a tree is unpacked from, or
    /// the wheelhouse a virtualenv installs from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob: Option<String>,
    /// A tree's release pinned by `sitec rollback`: it goes live instead
    /// of the blob's content (which need not be sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<String>,
    /// A tree's virtualenv: the digest of the one (in the folder its `venv`
    /// names) a new release runs, the virtualenv item's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub venv_digest: Option<String>,
    /// A hash of everything above that matters on the host: the state file
    /// records it, so a later plan can tell drift from a spec change.
    pub digest: String,
}

impl Item {
    /// The digest of the release a tree wants (its source's blob, and the
    /// virtualenv it runs): `None` when no blob was sent (a pinned one).
    #[must_use]
    pub fn release(&self) -> Option<String> {
        let source = self.blob.as_deref()?;
        Some(super::release::digest(source, self.venv_digest.as_deref()))
    }
}

/// A resource's state on the host against its desired state.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Already as desired.
    Ok,
    /// Not there at all.
    Add,
    /// There, but differing (`Assessment::differences` says how).
    Change,
}

/// What `facts` found for one desired resource.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Assessment {
    pub id: String,
    pub status: Status,
    /// What differs, in words: `content`, `mode 0644 -> 0640`, `not running`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<String>,
    /// A changed file's current content, for the plan's diff (not for a
    /// large or binary one). For a file holding a secret it goes only to
    /// the operator's sitec, which has the secrets anyway and hides their
    /// values before it shows the diff (`secrets::Redactor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_content: Option<String>,
    /// sitec applied this exact desired state before, and the host no
    /// longer matches it: someone changed it by hand.
    #[serde(default)]
    pub drifted: bool,
}

/// Something sitec put on the host earlier that the spec no longer wants.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Removal {
    pub id: String,
    /// Whether it is still there (a removed file that is already gone is
    /// only forgotten).
    pub present: bool,
    /// What removal will do, or why it leaves it (`left installed`).
    pub action: String,
    /// Services that reload once it is gone.
    #[serde(default)]
    pub notifies: Vec<String>,
}

/// The answer to `sitec host facts`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Facts {
    pub host: String,
    /// One per desired item, in the same order.
    pub assessments: Vec<Assessment>,
    pub removals: Vec<Removal>,
    /// Blobs the apply will need that the host lacks: the operator uploads
    /// them first.
    pub missing_blobs: Vec<String>,
    /// The generation sitec last applied here, if any.
    pub applied_generation: Option<String>,
    /// `(service, what changed)`: reloads an interrupted apply still owes.
    #[serde(default)]
    pub owed: Vec<(String, String)>,
    /// `/usr/local/lib/sitec/sitec` is another version than this one: apply
    /// switches it and restarts the services that run it.
    #[serde(default)]
    pub binary_switch: bool,
    /// A hash of everything above: `apply PLAN` refuses when it moved.
    pub fingerprint: String,
}

/// One line of `sitec host apply`'s output.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Event {
    /// A resource was made to match (or removed).
    Changed { id: String, action: String },
    /// A service was reloaded, restarted or started.
    Service {
        id: String,
        action: String,
        why: String,
    },
    /// A resource could not be made to match.
    Failed { id: String, error: String },
    /// A resource was not touched because one it needs failed.
    Skipped { id: String, because: String },
    /// The end: how many resources changed and failed.
    Done {
        changed: usize,
        failed: usize,
        generation: String,
    },
    /// The whole apply was refused before anything changed.
    Refused { error: String },
}

impl Event {
    /// The JSON line for this event.
    #[must_use]
    pub fn line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_string())
    }
}

/// The unit file path every sitec daemon's unit names in `ExecStart`.
pub fn runs_sitec(item: &Item) -> bool {
    matches!(&item.kind, Kind::File { path, .. } if path.starts_with("/etc/systemd/system/"))
        && item
            .content
            .as_deref()
            .is_some_and(|c| c.contains(&format!("{BINARY_DIR}/sitec ")))
}

/// How a running service takes changed inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notified {
    /// Its spec's reload command.
    Reload(String),
    /// Its spec's restart command.
    Restart(String),
    /// `systemctl restart UNIT`, when the spec gives no command for it.
    SystemdRestart,
}

impl Notified {
    /// The word for the operator: "reload" or "restart".
    pub fn word(&self) -> &'static str {
        match self {
            Notified::Reload(_) => "reload",
            Notified::Restart(_) | Notified::SystemdRestart => "restart",
        }
    }

    /// The shell command that does it.
    pub fn command(&self, unit: &str) -> String {
        match self {
            Notified::Reload(c) | Notified::Restart(c) => c.clone(),
            Notified::SystemdRestart => format!("systemctl restart {unit}"),
        }
    }
}

/// The line of a unit file that says its reload reads its environment
/// files again (gunicorn's config reads the app's: `raw_env`); systemd
/// ignores `X-` keys.
pub const RELOAD_READS_ENVIRONMENT: &str = "X-Sitec-Reload-Reads-Environment=yes";

/// The ids of the files a unit reads as its environment (`EnvironmentFile=`
/// in its unit file among `items`) at start only: none when its unit file
/// says its reload reads them again ([`RELOAD_READS_ENVIRONMENT`]).
pub fn environment_files(items: &[Item], unit: &str) -> Vec<String> {
    let id = format!("file:/etc/systemd/system/{unit}");
    let Some(text) = items
        .iter()
        .find(|i| i.id == id)
        .and_then(|i| i.content.as_deref())
    else {
        return Vec::new();
    };
    if text.lines().any(|l| l.trim() == RELOAD_READS_ENVIRONMENT) {
        return Vec::new();
    }
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("EnvironmentFile="))
        .map(|path| format!("file:{}", path.trim_start_matches('-')))
        .collect()
}

/// [`notified_action`] for the service `(unit, reload, restart)` among
/// `items` (its environment files read from its unit file there).
pub fn notified_among(
    items: &[Item],
    (unit, reload, restart): (&str, Option<&str>, Option<&str>),
    why: &[String],
) -> Notified {
    notified_action(unit, reload, restart, why, &environment_files(items, unit))
}

/// How a running service takes changed inputs: a changed unit file,
/// binary, virtualenv, release (`tree`) or environment file (`environment`:
/// see [`environment_files`]) needs a restart (a reload keeps the running
/// process's program and environment and, for gunicorn, the master's
/// interpreter, the libraries it loaded and its working directory, which a
/// new release replaces: gunicorn's master exits on the HUP); otherwise its
/// reload command if it has one, else its restart command, else `systemctl
/// restart`.
pub fn notified_action(
    unit: &str,
    reload: Option<&str>,
    restart: Option<&str>,
    why: &[String],
    environment: &[String],
) -> Notified {
    let unit_changed = why.iter().any(|w| {
        *w == format!("file:/etc/systemd/system/{unit}")
            || *w == format!("file:{BINARY_DIR}/sitec")
            || w.starts_with("virtualenv:")
            || w.starts_with("tree:")
            || environment.contains(w)
    });
    match (reload, restart, unit_changed) {
        (Some(reload), _, false) => Notified::Reload(reload.to_string()),
        (_, Some(restart), _) => Notified::Restart(restart.to_string()),
        _ => Notified::SystemdRestart,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn why(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    /// A tree's `venv` (its kind's, flattened into the item) and the
    /// item's virtualenv digest travel side by side.
    #[test]
    fn a_tree_with_a_virtualenv_travels_to_the_host() {
        let item = Item {
            id: "tree:/srv/sitec/apps/blog/current".into(),
            kind: Kind::Tree {
                path: "/srv/sitec/apps/blog/current".into(),
                source: "apps/blog".into(),
                owner: "root".into(),
                keep: 5,
                check: None,
                user: None,
                output: None,
                migrate: None,
                venv: Some("/srv/sitec/apps/blog/venvs".into()),
            },
            requires: Vec::new(),
            notifies: Vec::new(),
            content: None,
            blob: Some("ab".repeat(32)),
            pinned: None,
            venv_digest: Some("cd".repeat(32)),
            digest: "ef".into(),
        };
        let text = serde_json::to_string(&item).expect("JSON");
        assert_eq!(serde_json::from_str::<Item>(&text).ok(), Some(item.clone()));
        let release = item.release().expect("a release");
        assert_ne!(release, "ab".repeat(32), "the virtualenv is part of it");
    }

    #[test]
    fn a_changed_setting_is_reloaded_when_the_spec_says_how() {
        let n = notified_action(
            "nginx.service",
            Some("systemctl reload nginx"),
            None,
            &why(&["file:/etc/nginx/sites-enabled/blog"]),
            &[],
        );
        assert_eq!(n, Notified::Reload("systemctl reload nginx".into()));
        assert_eq!(n.word(), "reload");
        assert_eq!(n.command("nginx.service"), "systemctl reload nginx");
    }

    #[test]
    fn a_new_unit_file_binary_or_virtualenv_restarts_even_with_a_reload_command() {
        for changed in [
            "file:/etc/systemd/system/sitec-balancer.service",
            "file:/usr/local/lib/sitec/sitec",
            "virtualenv:/srv/sitec/apps/blog/venvs",
            "tree:/srv/sitec/apps/blog/current",
            "file:/etc/sitec/apps/blog/environment",
        ] {
            let n = notified_action(
                "sitec-balancer.service",
                Some("kill -HUP $MAINPID"),
                None,
                &why(&[changed]),
                &why(&["file:/etc/sitec/apps/blog/environment"]),
            );
            assert_eq!(n, Notified::SystemdRestart, "{changed}");
            assert_eq!(n.word(), "restart");
            assert_eq!(
                n.command("sitec-balancer.service"),
                "systemctl restart sitec-balancer.service"
            );
        }
    }

    /// A unit file among a host's items, with `text` as its content.
    fn unit_file(unit: &str, text: &str) -> Item {
        let path = format!("/etc/systemd/system/{unit}");
        Item {
            id: format!("file:{path}"),
            kind: Kind::File {
                path,
                owner: "root".into(),
                group: "root".into(),
                mode: "0644".into(),
                template: None,
                sha256: crate::resources::sha256_hex(text.as_bytes()),
                secret: false,
                absent: false,
                content: String::new(),
            },
            requires: Vec::new(),
            notifies: Vec::new(),
            content: Some(text.into()),
            blob: None,
            pinned: None,
            venv_digest: None,
            digest: String::new(),
        }
    }

    #[test]
    fn a_changed_environment_reloads_a_unit_whose_reload_reads_it() {
        let environment = "file:/etc/sitec/apps/blog/environment";
        let reads = "[Service]\nEnvironmentFile=/etc/sitec/apps/blog/environment\n";
        let service = ("sitec-app-blog.service", Some("systemctl reload x"), None);
        let started = [unit_file("sitec-app-blog.service", reads)];
        assert_eq!(
            notified_among(&started, service, &why(&[environment])),
            Notified::SystemdRestart,
            "systemd reads it at start only"
        );
        let again = format!("{reads}{RELOAD_READS_ENVIRONMENT}\n");
        let reloads = [unit_file("sitec-app-blog.service", &again)];
        assert_eq!(
            notified_among(&reloads, service, &why(&[environment])),
            Notified::Reload("systemctl reload x".into())
        );
        // Its release or virtualenv still restarts it.
        assert_eq!(
            notified_among(
                &reloads,
                service,
                &why(&["tree:/srv/sitec/apps/blog/current"])
            ),
            Notified::SystemdRestart
        );
    }

    #[test]
    fn the_specs_restart_command_wins_over_systemctl() {
        let n = notified_action(
            "gunicorn-blog.service",
            None,
            Some("/srv/restart-blog"),
            &why(&["file:/srv/sitec/apps/blog/current/app.py"]),
            &[],
        );
        assert_eq!(n, Notified::Restart("/srv/restart-blog".into()));
        assert_eq!(n.word(), "restart");
    }
}
