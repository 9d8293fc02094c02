//! `sitec plan`: what applying the spec would change on every host, found
//! in one round trip per host (the host's own sitec compares; see
//! [`crate::host`]). A plan lists per host the resources to add, change
//! (with a unified diff for files; never a secret) and remove, the services
//! that would reload, restart or start and why, and what drifted from what
//! sitec last applied. It is printed for people or as JSON (documented in
//! `lang/plan.md`), and can be saved for `sitec apply PLAN`.

pub mod build;
pub mod desired;
pub mod python;
pub mod release;
pub mod remote;
pub mod wheelhouse;

use crate::host::wire::{notified_among, runs_sitec, Assessment, Facts, Item, Status, BINARY_DIR};
use crate::resources::Kind;
use crate::secrets::Redactor;
use desired::HostDesired;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// The plan of the whole fleet.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// The version of this document's layout.
    pub format: u32,
    pub spec: String,
    pub generation: String,
    pub hosts: Vec<HostPlan>,
    pub unreachable: Vec<Unreachable>,
    pub summary: Summary,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Unreachable {
    pub host: String,
    pub error: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Summary {
    pub add: usize,
    pub change: usize,
    pub remove: usize,
    /// Services that would reload, restart or start, all of them.
    pub restarts: usize,
    /// Of those, the ones that would reload.
    #[serde(default)]
    pub reloads: usize,
    /// Of those, the ones that would start (not running, or new).
    #[serde(default)]
    pub starts: usize,
    /// Hosts with anything to do.
    pub hosts_changing: usize,
    pub hosts: usize,
    pub drifted: usize,
}

/// One host's part of the plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostPlan {
    pub host: String,
    pub address: String,
    /// The spec generation sitec last applied in full there.
    pub applied_generation: Option<String>,
    pub changes: Vec<Change>,
    pub services: Vec<ServiceAction>,
    /// What the host's facts were: `apply PLAN` refuses if they moved.
    pub fingerprint: String,
    /// Release and wheelhouse blobs the host still needs.
    pub missing_blobs: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Add,
    Change,
    Remove,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Change {
    pub id: String,
    pub action: Action,
    /// What differs, in words (`content`, `mode 0644 -> 0640`, `not running`).
    pub details: Vec<String>,
    /// A unified diff of a changed file (`None` for a secret or binary file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// Changed on the host since sitec applied this same desired state.
    pub drifted: bool,
    /// The role line that declared it (`std/platform.site:52`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceAction {
    pub id: String,
    /// `reload`, `restart` or `start`.
    pub action: String,
    /// The ids whose change causes it, or why it starts.
    pub because: Vec<String>,
}

impl Plan {
    /// Puts hosts' facts together into a plan.
    #[must_use]
    pub fn new(
        spec: &str,
        hosts: &[HostDesired],
        facts: &[Option<Facts>],
        unreachable: Vec<Unreachable>,
        origins: &dyn Fn(&str, &str) -> Option<String>,
        redactor: &Redactor,
    ) -> Self {
        let mut plan = Self {
            format: 1,
            spec: spec.to_string(),
            generation: hosts
                .first()
                .map(|h| h.desired.generation.clone())
                .unwrap_or_default(),
            hosts: Vec::new(),
            unreachable,
            summary: Summary::default(),
        };
        for (host, facts) in hosts.iter().zip(facts) {
            let Some(facts) = facts else { continue };
            plan.hosts.push(host_plan(host, facts, origins, redactor));
        }
        plan.summary = summarize(&plan.hosts);
        plan
    }

    /// True when no host has anything to do.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.summary.hosts_changing == 0
    }

    /// The summary line.
    #[must_use]
    pub fn summary_line(&self) -> String {
        let s = &self.summary;
        if self.is_empty() && s.hosts == 0 {
            return "No host could be reached: nothing to plan.".to_string();
        }
        if self.is_empty() {
            let also = if self.unreachable.is_empty() {
                ""
            } else {
                " (the unreachable ones unknown)"
            };
            return format!(
                "No changes: {} host{} match the spec{also}.",
                s.hosts,
                plural(s.hosts)
            );
        }
        // Each kind of service action by its name: a reload is not a
        // restart.
        let restarts = s.restarts.saturating_sub(s.reloads + s.starts);
        let counted: Vec<String> = [
            (restarts, "restart"),
            (s.reloads, "reload"),
            (s.starts, "start"),
        ]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}{}", plural(n)))
        .collect();
        let services = match counted.as_slice() {
            [] => "0 restarts".to_string(),
            [one] => one.clone(),
            [first @ .., last] => format!("{} and {last}", first.join(", ")),
        };
        format!(
            "Plan: {} to add, {} to change, {} to remove, {services} on {} host{}.",
            s.add,
            s.change,
            s.remove,
            s.hosts_changing,
            plural(s.hosts_changing)
        )
    }

    /// The plan for people: per host, then the summary.
    #[must_use]
    pub fn human(&self) -> String {
        let mut out = String::new();
        for host in self
            .hosts
            .iter()
            .filter(|h| !h.changes.is_empty() || !h.services.is_empty())
        {
            let _ = writeln!(out, "{} ({})", host.host, host.address);
            for c in &host.changes {
                let sign = match c.action {
                    Action::Add => '+',
                    Action::Change => '~',
                    Action::Remove => '-',
                };
                let mut line = format!("  {sign} {}", c.id);
                if !c.details.is_empty() && c.action != Action::Add {
                    let _ = write!(line, ": {}", c.details.join(", "));
                }
                if c.drifted {
                    line.push_str("  [drifted: changed on the host since the last apply]");
                }
                let _ = writeln!(out, "{line}");
                if let Some(diff) = &c.diff {
                    for l in diff.lines() {
                        let _ = writeln!(out, "      {l}");
                    }
                }
            }
            for s in &host.services {
                let _ = writeln!(out, "  * {}: {} ({})", s.id, s.action, s.because.join(", "));
            }
            out.push('\n');
        }
        for u in &self.unreachable {
            let _ = writeln!(out, "! {}: unreachable: {}", u.host, u.error);
        }
        if self.summary.drifted > 0 {
            let _ = writeln!(
                out,
                "{} resource{} drifted: changed on a host since sitec applied the same spec; apply puts them back.",
                self.summary.drifted,
                plural(self.summary.drifted)
            );
        }
        out.push_str(&self.summary_line());
        out.push('\n');
        out
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn summarize(hosts: &[HostPlan]) -> Summary {
    let mut s = Summary {
        hosts: hosts.len(),
        ..Summary::default()
    };
    for h in hosts {
        for c in &h.changes {
            match c.action {
                Action::Add => s.add += 1,
                Action::Change => s.change += 1,
                Action::Remove => s.remove += 1,
            }
            s.drifted += usize::from(c.drifted);
        }
        s.restarts += h.services.len();
        s.reloads += (h.services.iter()).filter(|v| v.action == "reload").count();
        s.starts += (h.services.iter()).filter(|v| v.action == "start").count();
        s.hosts_changing += usize::from(!h.changes.is_empty() || !h.services.is_empty());
    }
    s
}

fn host_plan(
    host: &HostDesired,
    facts: &Facts,
    origins: &dyn Fn(&str, &str) -> Option<String>,
    redactor: &Redactor,
) -> HostPlan {
    let items = &host.desired.items;
    let mut changes = Vec::new();
    // What an interrupted apply changed but did not reload yet.
    let mut causes: Vec<(String, String)> = facts.owed.clone();
    if facts.binary_switch {
        let id = format!("file:{BINARY_DIR}/sitec");
        changes.push(Change {
            id: id.clone(),
            action: Action::Change,
            details: vec!["this version of sitec".into()],
            diff: None,
            drifted: false,
            origin: None,
        });
        for item in items.iter().filter(|i| runs_sitec(i)) {
            causes.extend(item.notifies.iter().map(|s| (s.clone(), id.clone())));
        }
    }
    for r in &facts.removals {
        if r.present || r.action == "forget" {
            changes.push(Change {
                id: r.id.clone(),
                action: Action::Remove,
                details: vec![r.action.clone()],
                diff: None,
                drifted: false,
                origin: None,
            });
            causes.extend(r.notifies.iter().map(|s| (s.clone(), r.id.clone())));
        }
    }
    let mut starts = Vec::new();
    for (item, a) in items.iter().zip(&facts.assessments) {
        if a.status == Status::Ok {
            continue;
        }
        if let Kind::Service { running: true, .. } = item.kind {
            if a.differences
                .iter()
                .any(|d| d.starts_with("not running") || d == "masked" || d == "no unit file yet")
            {
                starts.push((item.id.clone(), a.differences.join(", ")));
            }
        }
        causes.extend(item.notifies.iter().map(|s| (s.clone(), item.id.clone())));
        changes.push(change(item, a, origins(&host.name, &item.id), redactor));
    }
    let services = services(items, &causes, &starts);
    HostPlan {
        host: host.name.clone(),
        address: host.address.clone(),
        applied_generation: facts.applied_generation.clone(),
        changes,
        services,
        fingerprint: facts.fingerprint.clone(),
        missing_blobs: facts.missing_blobs.clone(),
    }
}

fn change(item: &Item, a: &Assessment, origin: Option<String>, redactor: &Redactor) -> Change {
    let diff = match (&item.kind, &a.old_content, &item.content) {
        (
            Kind::File {
                path,
                secret: false,
                ..
            },
            Some(old),
            Some(new),
        ) => Some(unified_diff(path, old, new)),
        (
            Kind::File {
                path, secret: true, ..
            },
            old,
            Some(new),
        ) if a.differences.iter().any(|d| d == "content") => Some(
            (old.as_deref())
                .and_then(|old| redactor.redact(old, new))
                .map_or_else(
                    || "(holds a secret: the diff is not shown)".to_string(),
                    |(old, new)| unified_diff(path, &old, &new),
                ),
        ),
        (Kind::Tree { .. }, Some(old), Some(new)) => release_changes(old, new),
        _ => None,
    };
    Change {
        id: item.id.clone(),
        action: if a.status == Status::Add {
            Action::Add
        } else {
            Action::Change
        },
        details: a.differences.clone(),
        diff,
        drifted: a.drifted,
        origin,
    }
}

/// The files a new release adds and removes, from the host's file list
/// and the new one; `None` when only contents changed.
fn release_changes(old: &str, new: &str) -> Option<String> {
    /// Lines shown of each side; the rest is counted.
    const SHOWN: usize = 40;
    let (added, removed) = release::list_changes(old, new);
    if added.is_empty() && removed.is_empty() {
        return None;
    }
    let mut out = format!(
        "release files: {} added, {} removed\n",
        added.len(),
        removed.len()
    );
    for (sign, files) in [('+', &added), ('-', &removed)] {
        for file in files.iter().take(SHOWN) {
            let _ = writeln!(out, "{sign} {file}");
        }
        if files.len() > SHOWN {
            let _ = writeln!(out, "{sign} ... and {} more", files.len() - SHOWN);
        }
    }
    Some(out)
}

fn unified_diff(path: &str, old: &str, new: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(
            &format!("{path} (on the host)"),
            &format!("{path} (the spec)"),
        )
        .to_string()
}

/// Which services reload, restart or start, and why.
fn services(
    items: &[Item],
    causes: &[(String, String)],
    starts: &[(String, String)],
) -> Vec<ServiceAction> {
    let mut out = Vec::new();
    for item in items {
        let Kind::Service {
            name,
            reload,
            restart,
            running: true,
            ..
        } = &item.kind
        else {
            continue;
        };
        if let Some((_, why)) = starts.iter().find(|(id, _)| *id == item.id) {
            out.push(ServiceAction {
                id: item.id.clone(),
                action: "start".into(),
                because: vec![why.clone()],
            });
            continue;
        }
        let why: Vec<String> = causes
            .iter()
            .filter(|(s, _)| *s == item.id)
            .map(|(_, c)| c.clone())
            .collect();
        if why.is_empty() {
            continue;
        }
        let unit = crate::resources::unit_name(name);
        let notified = notified_among(items, (&unit, reload.as_deref(), restart.as_deref()), &why);
        out.push(ServiceAction {
            id: item.id.clone(),
            action: notified.word().into(),
            because: why,
        });
    }
    out
}

/// A saved plan: the plan and exactly what each host is to be sent (file
/// contents, secrets included: the file is written 0600).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedPlan {
    pub plan: Plan,
    /// The spec, as an absolute path: where its local fleet's keys live.
    pub spec_path: std::path::PathBuf,
    pub hosts: Vec<HostDesired>,
    /// `(before, after, why)`: the order between hosts.
    pub host_order: Vec<(String, String, String)>,
}

/// Connects to every host and asks each for its facts, all at once.
/// Returns the plan and the open connections (apply goes on with them).
/// `down` names hosts this run already found unreachable, with why
/// (`sitec failover`'s dead primary): they are not tried again, which
/// would cost another connect timeout, and the plan lists them unreachable.
pub async fn survey(
    spec: &str,
    hosts: &[HostDesired],
    down: &[(String, String)],
    kex: crate::transport::Kex,
    origins: &dyn Fn(&str, &str) -> Option<String>,
    redactor: &Redactor,
) -> Result<(Plan, std::sync::Arc<remote::Connections>), String> {
    let is_down = |name: &str| down.iter().any(|(h, _)| h == name);
    let tried: Vec<HostDesired> = (hosts.iter())
        .filter(|h| !is_down(&h.name))
        .cloned()
        .collect();
    let (connections, unreachable) =
        remote::Connections::open(&tried, std::path::Path::new(spec), kex).await?;
    let connections = std::sync::Arc::new(connections);
    let known = (down.iter())
        .filter(|(h, _)| hosts.iter().any(|d| d.name == *h))
        .cloned();
    let mut unreachable: Vec<Unreachable> = unreachable
        .into_iter()
        .chain(known)
        .map(|(host, error)| Unreachable { host, error })
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, host) in hosts
        .iter()
        .enumerate()
        .filter(|(_, h)| connections.is_open(&h.name))
    {
        let (connections, name, desired) =
            (connections.clone(), host.name.clone(), host.desired.clone());
        tasks.spawn(async move { (i, connections.facts(&name, &desired).await) });
    }
    let mut facts: Vec<Option<Facts>> = vec![None; hosts.len()];
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((i, Ok(f))) => facts[i] = Some(f),
            Ok((i, Err(error))) => unreachable.push(Unreachable {
                host: hosts[i].name.clone(),
                error,
            }),
            Err(e) => return Err(format!("a facts task failed: {e}")),
        }
    }
    unreachable.sort_by(|a, b| a.host.cmp(&b.host));
    Ok((
        Plan::new(spec, hosts, &facts, unreachable, origins, redactor),
        connections,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(value: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    out.insert(k.clone());
                    keys(v, out);
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| keys(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_field_of_the_plan_is_documented() {
        let plan = Plan {
            format: 1,
            spec: "s.site".into(),
            generation: "g".into(),
            hosts: vec![HostPlan {
                host: "h".into(),
                address: "a".into(),
                applied_generation: None,
                changes: vec![Change {
                    id: "file:/x".into(),
                    action: Action::Change,
                    details: vec!["content".into()],
                    diff: Some("-a\n+b\n".into()),
                    drifted: false,
                    origin: Some("o".into()),
                }],
                services: vec![ServiceAction {
                    id: "service:s".into(),
                    action: "reload".into(),
                    because: vec!["file:/x".into()],
                }],
                fingerprint: "f".into(),
                missing_blobs: Vec::new(),
            }],
            unreachable: vec![Unreachable {
                host: "u".into(),
                error: "e".into(),
            }],
            summary: Summary::default(),
        };
        let doc = include_str!("../../lang/plan.md");
        let mut found = std::collections::BTreeSet::new();
        keys(&serde_json::to_value(&plan).unwrap_or_default(), &mut found);
        let missing: Vec<&String> = found
            .iter()
            .filter(|k| {
                !doc.contains(&format!("`{k}`"))
                    && !doc.contains(&format!(".{k}`"))
                    && !doc.contains(&format!("`.{k}"))
            })
            .collect();
        assert!(missing.is_empty(), "not in lang/plan.md: {missing:?}");
    }

    #[test]
    fn the_summary_line_counts_changes_and_restarts() {
        let mut plan = Plan {
            format: 1,
            spec: String::new(),
            generation: String::new(),
            hosts: Vec::new(),
            unreachable: Vec::new(),
            summary: Summary {
                add: 12,
                change: 3,
                remove: 1,
                restarts: 2,
                reloads: 0,
                starts: 0,
                hosts_changing: 5,
                hosts: 6,
                drifted: 0,
            },
        };
        assert_eq!(
            plan.summary_line(),
            "Plan: 12 to add, 3 to change, 1 to remove, 2 restarts on 5 hosts."
        );
        // Reloads and starts by their names.
        plan.summary.restarts = 6;
        plan.summary.reloads = 1;
        plan.summary.starts = 3;
        assert_eq!(
            plan.summary_line(),
            "Plan: 12 to add, 3 to change, 1 to remove, 2 restarts, 1 reload and 3 starts on 5 hosts."
        );
        plan.summary.restarts = 1;
        plan.summary.starts = 0;
        assert_eq!(
            plan.summary_line(),
            "Plan: 12 to add, 3 to change, 1 to remove, 1 reload on 5 hosts."
        );
        plan.summary = Summary {
            hosts: 3,
            ..Summary::default()
        };
        assert_eq!(plan.summary_line(), "No changes: 3 hosts match the spec.");
    }
}
