//! `sitec apply`: carries a plan out, host by host in the order that keeps
//! the fleet serving. Hosts go in steps: a host waits for the hosts it comes
//! after (database primaries before standbys and before the runners of
//! their apps, runners before balancers); within a step, runners go in two
//! batches (so each app keeps runners serving) and balancers one at a time
//! (never all at once); the rest in parallel, at most `--parallel` at once.
//! A host that fails or can't be reached stops only the hosts after it.
//! Each host reports progress as it goes, shown per host.
//!
//! Through the bus (`Around`, when the fleet's agents answer): every host
//! records the fleet lock its operator holds before it changes anything
//! (`ops::lock`), no step starts once that lock is lost, and a runner whose
//! plan restarts an app's web service is drained out of every balancer's
//! rotation first and returned once the app answers (`ops::drain`).

use crate::host::wire::Event;
use crate::plan::desired::HostDesired;
use crate::plan::remote::Connections;
use crate::plan::Plan;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// How one host's apply ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Converged; how many resources and services changed.
    Done(usize),
    Failed(String),
    /// Not attempted because a host it comes after did not converge.
    Skipped(String),
    /// The plan had nothing for it.
    Unchanged,
}

/// Orders hosts into steps (see the module comment). `order` holds
/// `(before, after, why)` pairs.
#[must_use]
pub fn steps(hosts: &[HostDesired], order: &[(String, String, String)]) -> Vec<Vec<String>> {
    let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
    let mut level: BTreeMap<&str, usize> = names.iter().map(|n| (*n, 0)).collect();
    // Longest path from a host with no predecessor; the pairs form a DAG
    // (graph::host_order), and a pass per host settles it.
    for _ in 0..names.len() {
        for (before, after, _) in order {
            let next = level.get(before.as_str()).map_or(0, |l| l + 1);
            if let Some(l) = level.get_mut(after.as_str()) {
                *l = (*l).max(next);
            }
        }
    }
    let depth = level.values().copied().max().unwrap_or(0);
    let mut steps = Vec::new();
    for d in 0..=depth {
        let here: Vec<&HostDesired> = hosts
            .iter()
            .filter(|h| level[h.name.as_str()] == d)
            .collect();
        let plays = |h: &HostDesired, role: &str| h.roles.iter().any(|r| r == role);
        let runners: Vec<String> = here
            .iter()
            .filter(|h| plays(h, "runner") && !plays(h, "balancer"))
            .map(|h| h.name.clone())
            .collect();
        let balancers: Vec<String> = here
            .iter()
            .filter(|h| plays(h, "balancer"))
            .map(|h| h.name.clone())
            .collect();
        let mut first: Vec<String> = here
            .iter()
            .filter(|h| !runners.contains(&h.name) && !balancers.contains(&h.name))
            .map(|h| h.name.clone())
            .collect();
        let (a, b): (Vec<_>, Vec<_>) = runners
            .into_iter()
            .enumerate()
            .partition(|(i, _)| i % 2 == 0);
        first.extend(a.into_iter().map(|(_, n)| n));
        steps.push(first);
        steps.push(b.into_iter().map(|(_, n)| n).collect());
        steps.extend(balancers.into_iter().map(|b| vec![b]));
    }
    steps.retain(|s| !s.is_empty());
    steps
}

/// Shows each host's progress: a line per event when not on a terminal,
/// a live line per host (indicatif) when on one.
pub struct Progress {
    bars: Option<(
        indicatif::MultiProgress,
        BTreeMap<String, indicatif::ProgressBar>,
    )>,
}

impl Progress {
    #[must_use]
    pub fn new(plan: &Plan, terminal: bool) -> Self {
        if !terminal {
            return Self { bars: None };
        }
        let multi = indicatif::MultiProgress::new();
        let style = indicatif::ProgressStyle::with_template(
            "{prefix:>12} [{bar:24}] {pos}/{len} {wide_msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
        let mut bars = BTreeMap::new();
        for h in plan
            .hosts
            .iter()
            .filter(|h| !h.changes.is_empty() || !h.services.is_empty())
        {
            let bar = multi.add(indicatif::ProgressBar::new(
                (h.changes.len() + h.services.len()) as u64,
            ));
            bar.set_style(style.clone());
            bar.set_prefix(h.host.clone());
            bar.set_message("waiting");
            bars.insert(h.host.clone(), bar);
        }
        Self {
            bars: Some((multi, bars)),
        }
    }

    fn event(&self, host: &str, event: &Event) {
        let text = describe(event);
        match &self.bars {
            Some((_, bars)) => {
                if let Some(bar) = bars.get(host) {
                    if matches!(
                        event,
                        Event::Changed { .. }
                            | Event::Service { .. }
                            | Event::Failed { .. }
                            | Event::Skipped { .. }
                    ) {
                        bar.inc(1);
                    }
                    bar.set_message(text);
                }
            }
            None => crate::outln!("{host}: {text}"),
        }
    }

    /// A line about `host` that is not one of its own events.
    fn note(&self, host: &str, text: &str) {
        match &self.bars {
            Some((multi, _)) => {
                let _ = multi.println(format!("{host}: {text}"));
            }
            None => crate::outln!("{host}: {text}"),
        }
    }

    fn finish(&self, host: &str, outcome: &Outcome) {
        let text = match outcome {
            Outcome::Done(n) => format!("done ({n} changed)"),
            Outcome::Failed(e) => format!("FAILED: {}", e.lines().next().unwrap_or("")),
            Outcome::Skipped(why) => format!("skipped: {why}"),
            Outcome::Unchanged => return,
        };
        match &self.bars {
            Some((_, bars)) => {
                if let Some(bar) = bars.get(host) {
                    bar.finish_with_message(text);
                }
            }
            None => crate::outln!("{host}: {text}"),
        }
    }
}

fn describe(event: &Event) -> String {
    match event {
        Event::Changed { id, action } => format!("{id}: {action}"),
        Event::Service { id, action, why } => format!("{id}: {action} ({why})"),
        Event::Failed { id, error } => format!("{id}: FAILED: {error}"),
        Event::Skipped { id, because } => format!("{id}: skipped (needs {because}, which failed)"),
        Event::Done {
            changed, failed, ..
        } => format!("finished: {changed} changed, {failed} failed"),
        Event::Refused { error } => format!("refused: {error}"),
    }
}

/// What apply does through the bus around each host: the fleet lock it
/// holds, and the drains of runners whose app it restarts.
pub struct Around {
    pub lock: crate::ops::lock::Lock,
    pub drainer: crate::ops::drain::Drainer,
    /// Each host's apps.
    pub apps_on: BTreeMap<String, Vec<String>>,
}

/// How long a drained app's requests in flight get to finish, and how long
/// it gets to answer after its restart.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(40);
const BACK: std::time::Duration = std::time::Duration::from_secs(90);

/// The apps whose web service `host`'s plan restarts.
fn restarted_apps(around: &Around, host: &str, plan: &crate::plan::HostPlan) -> Vec<String> {
    let apps = around.apps_on.get(host).cloned().unwrap_or_default();
    apps.into_iter()
        .filter(|app| {
            let id = format!("service:sitec-app-{app}");
            plan.services
                .iter()
                .any(|s| s.id == id && s.action == "restart")
        })
        .collect()
}

/// Applies the plan's hosts in steps. Returns each host's outcome.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    plan: &Plan,
    hosts: &[HostDesired],
    order: &[(String, String, String)],
    connections: Arc<Connections>,
    parallel: usize,
    saved: bool,
    progress: Arc<Progress>,
    around: Option<Arc<Around>>,
) -> BTreeMap<String, Outcome> {
    let mut outcomes: BTreeMap<String, Outcome> = BTreeMap::new();
    for u in &plan.unreachable {
        outcomes.insert(
            u.host.clone(),
            Outcome::Failed(format!("unreachable: {}", u.error)),
        );
    }
    let limit = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    for step in steps(hosts, order) {
        let mut tasks = tokio::task::JoinSet::new();
        let lost = around.as_ref().and_then(|a| a.lock.lost());
        for name in step {
            if outcomes.contains_key(&name) {
                continue;
            }
            if let Some(why) = &lost {
                let outcome = Outcome::Skipped(format!("the fleet lock was lost: {why}"));
                progress.finish(&name, &outcome);
                outcomes.insert(name, outcome);
                continue;
            }
            if let Some(why) = blocked(&name, order, &outcomes) {
                let outcome = Outcome::Skipped(why);
                progress.finish(&name, &outcome);
                outcomes.insert(name, outcome);
                continue;
            }
            let (Some(host), Some(host_plan)) = (
                hosts.iter().find(|h| h.name == name),
                plan.hosts.iter().find(|h| h.host == name),
            ) else {
                continue;
            };
            if host_plan.changes.is_empty() && host_plan.services.is_empty() {
                outcomes.insert(name, Outcome::Unchanged);
                continue;
            }
            let mut desired = host.desired.clone();
            desired.expect = saved.then(|| host_plan.fingerprint.clone());
            desired.lease = around.as_ref().map(|a| a.lock.claim());
            let blobs = host_plan.missing_blobs.clone();
            let drained = around
                .as_ref()
                .map(|a| restarted_apps(a, &name, host_plan))
                .unwrap_or_default();
            let (connections, progress, limit, around) = (
                connections.clone(),
                progress.clone(),
                limit.clone(),
                around.clone(),
            );
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                let drained = match &around {
                    Some(a) => drain(a, &name, drained, &progress).await,
                    None => Vec::new(),
                };
                let mut outcome =
                    apply_host(&connections, &name, &desired, &blobs, &progress).await;
                if let Some(a) = &around {
                    if let Err(e) = restore(a, &name, drained, &progress).await {
                        if matches!(outcome, Outcome::Done(_)) {
                            outcome = Outcome::Failed(e);
                        }
                    }
                }
                progress.finish(&name, &outcome);
                (name, outcome)
            });
        }
        while let Some(joined) = tasks.join_next().await {
            if let Ok((name, outcome)) = joined {
                outcomes.insert(name, outcome);
            }
        }
    }
    outcomes
}

/// Drains each of `apps` on `host` before its apply restarts them; the ones
/// drained. An app that cannot be drained (its agent is not up yet, on a
/// new host) is applied all the same, and said so.
async fn drain(
    around: &Arc<Around>,
    host: &str,
    apps: Vec<String>,
    progress: &Progress,
) -> Vec<String> {
    let mut drained = Vec::new();
    for app in apps {
        progress.note(host, &format!("draining {app} before its restart"));
        let (a, h, name) = (around.clone(), host.to_string(), app.clone());
        let result = tokio::task::spawn_blocking(move || {
            let mut warnings = Vec::new();
            let r = a.drainer.drain(&h, &name, DRAIN, &mut |w| warnings.push(w));
            (r, warnings)
        })
        .await;
        match result {
            Ok((Ok(()), warnings)) => {
                warnings.iter().for_each(|w| progress.note(host, w));
                drained.push(app);
            }
            Ok((Err(e), _)) => progress.note(
                host,
                &format!("{app} not drained ({e}); restarting it without a drain"),
            ),
            Err(e) => progress.note(host, &format!("{app} not drained ({e})")),
        }
    }
    drained
}

/// Returns the drained `apps` on `host` once each answers.
async fn restore(
    around: &Arc<Around>,
    host: &str,
    apps: Vec<String>,
    progress: &Progress,
) -> Result<(), String> {
    let mut errors = Vec::new();
    for app in apps {
        let (a, h, name) = (around.clone(), host.to_string(), app.clone());
        let result = tokio::task::spawn_blocking(move || a.drainer.restore(&h, &name, BACK)).await;
        match result {
            Ok(Ok(())) => progress.note(host, &format!("{app} answers; back in rotation")),
            Ok(Err(e)) => {
                // Not left out: it goes back whatever it answers.
                let (a, h, name) = (around.clone(), host.to_string(), app.clone());
                let _ = tokio::task::spawn_blocking(move || a.drainer.end(&h, &name)).await;
                errors.push(e);
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}

/// Why `host` must wait: a host it comes after did not converge.
fn blocked(
    host: &str,
    order: &[(String, String, String)],
    outcomes: &BTreeMap<String, Outcome>,
) -> Option<String> {
    order
        .iter()
        .filter(|(_, after, _)| after == host)
        .find_map(|(before, _, why)| match outcomes.get(before) {
            Some(Outcome::Failed(_) | Outcome::Skipped(_)) => {
                Some(format!("{before} did not converge ({why})"))
            }
            _ => None,
        })
}

async fn apply_host(
    connections: &Connections,
    host: &str,
    desired: &crate::host::wire::Desired,
    blobs: &[String],
    progress: &Progress,
) -> Outcome {
    if let Err(e) = connections.upload_blobs(host, blobs).await {
        return Outcome::Failed(e);
    }
    let mut changed = 0;
    let mut errors = Vec::new();
    let result = connections
        .apply(host, desired, |event| {
            match &event {
                Event::Changed { .. } | Event::Service { .. } => changed += 1,
                Event::Failed { id, error } => errors.push(format!("{id}: {error}")),
                Event::Refused { error } => errors.push(error.clone()),
                _ => {}
            }
            progress.event(host, &event);
        })
        .await;
    match result {
        Ok(true) if errors.is_empty() => Outcome::Done(changed),
        Ok(_) => Outcome::Failed(if errors.is_empty() {
            "the host's apply failed".into()
        } else {
            errors.join("\n")
        }),
        Err(e) => Outcome::Failed(e),
    }
}

/// The closing report: what changed, what failed and why.
#[must_use]
pub fn report(outcomes: &BTreeMap<String, Outcome>) -> (String, bool) {
    let mut out = String::new();
    let done: Vec<(&String, usize)> = outcomes
        .iter()
        .filter_map(|(h, o)| match o {
            Outcome::Done(n) => Some((h, *n)),
            _ => None,
        })
        .collect();
    let bad: BTreeSet<&String> = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Failed(_) | Outcome::Skipped(_)))
        .map(|(h, _)| h)
        .collect();
    let changed: usize = done.iter().map(|(_, n)| n).sum();
    out.push_str(&format!(
        "Applied: {changed} change{} on {} host{}",
        if changed == 1 { "" } else { "s" },
        done.len(),
        if done.len() == 1 { "" } else { "s" }
    ));
    if bad.is_empty() {
        out.push_str(".\n");
        return (out, true);
    }
    out.push_str(&format!(
        "; {} host{} did not converge:\n",
        bad.len(),
        if bad.len() == 1 { "" } else { "s" }
    ));
    for (host, outcome) in outcomes {
        match outcome {
            Outcome::Failed(e) => {
                out.push_str(&format!("  {host}: failed:\n"));
                for line in e.lines() {
                    out.push_str(&format!("    {line}\n"));
                }
            }
            Outcome::Skipped(why) => out.push_str(&format!("  {host}: skipped: {why}\n")),
            _ => {}
        }
    }
    out.push_str("Run `sitec apply` again once the cause is fixed: hosts that converged report no changes.\n");
    (out, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::wire::Desired;
    use crate::plan::desired::Reach;

    fn host(name: &str, roles: &[&str]) -> HostDesired {
        HostDesired {
            name: name.into(),
            address: String::new(),
            roles: roles.iter().map(|r| (*r).to_string()).collect(),
            reach: Reach {
                provider: "p".into(),
                local: true,
                user: "root".into(),
                port: 22,
                known_hosts: None,
                identity: None,
            },
            desired: Desired {
                host: name.into(),
                generation: String::new(),
                spec: String::new(),
                items: Vec::new(),
                expect: None,
                lease: None,
            },
        }
    }

    #[test]
    fn databases_then_runner_batches_then_one_balancer_at_a_time() {
        let hosts = [
            host("lb1", &["balancer"]),
            host("lb2", &["balancer"]),
            host("run1", &["runner"]),
            host("run2", &["runner"]),
            host("db1", &["postgres"]),
            host("db2", &["postgres"]),
        ];
        let order: Vec<(String, String, String)> = [
            ("db1", "db2"),
            ("db1", "run1"),
            ("db1", "run2"),
            ("run1", "lb1"),
            ("run2", "lb1"),
            ("run1", "lb2"),
            ("run2", "lb2"),
        ]
        .iter()
        .map(|(a, b)| ((*a).to_string(), (*b).to_string(), String::new()))
        .collect();
        assert_eq!(
            steps(&hosts, &order),
            vec![
                vec!["db1".to_string()],
                vec!["db2".into(), "run1".into()],
                vec!["run2".into()],
                vec!["lb1".into()],
                vec!["lb2".into()]
            ]
        );
    }

    #[test]
    fn a_failed_host_stops_the_hosts_after_it() {
        let order = vec![(
            "run1".to_string(),
            "lb1".to_string(),
            "runners first".to_string(),
        )];
        let mut outcomes = BTreeMap::new();
        outcomes.insert("run1".to_string(), Outcome::Failed("x".into()));
        assert!(blocked("lb1", &order, &outcomes).is_some_and(|w| w.contains("run1")));
        assert_eq!(blocked("run1", &order, &outcomes), None);
    }
}
