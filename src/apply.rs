//! `sitec apply`: carries a plan out, host by host in the order that keeps
//! the fleet serving. Hosts go in steps: a host waits for the hosts it comes
//! after (database primaries before standbys and before the runners of
//! their apps, runners before balancers); within a step, runners roll
//! (`rolling`): each app's leader first (the one whose new release runs
//! the database migrations before it goes live), then the rest in batches
//! of at most `--batch` runners of each app (1 by default), so each app
//! keeps runners serving; balancers go one at a time (never all at once);
//! the rest in parallel, at most `--parallel` at once. A host that fails or
//! can't be reached stops only the hosts after it, and a runner that fails
//! stops its apps' rolling deploy: their runners after it are skipped and
//! keep the live release (so a failed migration leaves every runner on it).
//! A host that leaves an app (its plan removes the app's service or media
//! brick, and the spec places the app elsewhere) comes after that app's
//! runners (`with_leavers`): the app is served by its new runners, and its
//! leader has moved the host's brick, before the host stops either.
//! Each host reports progress as it goes, shown per host.
//!
//! Through the bus (`Around`, when the fleet's agents answer): every host
//! records the fleet lock its operator holds before it changes anything
//! (`ops::lock`), no step starts once that lock is lost, and a runner whose
//! plan restarts an app's web service is drained out of every balancer's
//! rotation first and returned once the app answers (`ops::drain`), before
//! the next batch starts (a host leaving an app is drained of it before
//! the first step, since the databases' step ends its access, and not
//! returned); a new virtualenv its release needs is built
//! before the drain (`prepare_host`), while the runner still serves. Before it reports, apply waits (30 s at most)
//! until the balancers have each app it started or restarted in rotation
//! (`wait_serving`), so the fleet serves what it says it applied.

use crate::host::wire::Event;
use crate::plan::desired::HostDesired;
use crate::plan::remote::Connections;
use crate::plan::Plan;
use crate::resources::Kind;
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

/// How runners roll: each app's runners, its leader first, and how many
/// of an app's runners may change at once.
#[derive(Debug, Clone, Default)]
pub struct Rolling {
    pub apps: BTreeMap<String, Vec<String>>,
    pub batch: usize,
}

impl Rolling {
    /// The apps `host` runs.
    fn apps_on<'a>(&'a self, host: &'a str) -> impl Iterator<Item = (&'a String, &'a Vec<String>)> {
        (self.apps.iter()).filter(move |(_, runners)| runners.iter().any(|r| r == host))
    }

    /// `runners` in batches: each runner in the first batch after its apps'
    /// leaders that holds fewer than `batch` runners of each of its apps,
    /// the runners placed once their apps' leaders are. (Runners that lead
    /// each other's apps are placed as they come: no order serves both.)
    fn batches(&self, runners: Vec<String>) -> Vec<Vec<String>> {
        let mut batch_of: BTreeMap<String, usize> = BTreeMap::new();
        let mut pending = runners.clone();
        while !pending.is_empty() {
            let ready = pending.iter().position(|host| {
                self.apps_on(host).all(|(_, runners)| {
                    runners
                        .first()
                        .is_none_or(|l| l == host || !pending.contains(l))
                })
            });
            let host = pending.remove(ready.unwrap_or(0));
            let fits = |b: usize| {
                self.apps_on(&host).all(|(_, runners)| {
                    let leader = runners.first().filter(|l| **l != host);
                    let after_leader = leader.and_then(|l| batch_of.get(l)).is_none_or(|l| *l < b);
                    let beside = (runners.iter())
                        .filter(|r| batch_of.get(*r) == Some(&b))
                        .count();
                    after_leader && beside < self.batch.max(1)
                })
            };
            let b = (0..).find(|b| fits(*b)).unwrap_or(0);
            batch_of.insert(host, b);
        }
        let mut batches: Vec<Vec<String>> = Vec::new();
        for host in runners {
            let b = batch_of[&host];
            if batches.len() <= b {
                batches.resize(b + 1, Vec::new());
            }
            batches[b].push(host);
        }
        batches
    }

    /// Why `host` must not change: a runner of one of its apps did not
    /// converge (before it in this apply, or its leader at all).
    fn stopped(
        &self,
        host: &str,
        outcomes: &BTreeMap<String, Outcome>,
        unreachable: &BTreeSet<&str>,
    ) -> Option<String> {
        self.apps_on(host).find_map(|(app, runners)| {
            let leader = runners.first();
            runners.iter().filter(|r| *r != host).find_map(|r| {
                let counts = leader == Some(r) || !unreachable.contains(r.as_str());
                match outcomes.get(r) {
                    Some(Outcome::Failed(_) | Outcome::Skipped(_)) if counts => Some(format!(
                        "the rolling deploy of {app} stopped at {r}, which did not converge; {host} keeps its live release"
                    )),
                    _ => None,
                }
            })
        })
    }
}

/// Orders hosts into steps (see the module comment). `order` holds
/// `(before, after, why)` pairs.
#[must_use]
pub fn steps(
    hosts: &[HostDesired],
    order: &[(String, String, String)],
    rolling: &Rolling,
) -> Vec<Vec<String>> {
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
        let mut batches = rolling.batches(runners).into_iter();
        first.extend(batches.next().unwrap_or_default());
        steps.push(first);
        steps.extend(batches);
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
}

/// How long a drained app's requests in flight get to finish, and how long
/// it gets to answer after its restart (`sitec rollback`'s too).
pub const DRAIN: std::time::Duration = std::time::Duration::from_secs(40);
pub const BACK: std::time::Duration = std::time::Duration::from_secs(90);

/// The apps whose web service `host`'s plan restarts.
fn restarted_apps(rolling: &Rolling, host: &str, plan: &crate::plan::HostPlan) -> Vec<String> {
    (rolling.apps_on(host))
        .map(|(app, _)| app.clone())
        .filter(|app| {
            let id = format!("service:sitec-app-{app}");
            plan.services
                .iter()
                .any(|s| s.id == id && s.action == "restart")
        })
        .collect()
}

/// The apps each host leaves in this plan, `(host, app)`: the spec places
/// the app on other runners, and the host's plan removes the app's web
/// service or one of its media bricks.
fn leaving(plans: &[crate::plan::HostPlan], rolling: &Rolling) -> Vec<(String, String)> {
    let mut left = Vec::new();
    for host_plan in plans {
        for (app, runners) in &rolling.apps {
            if runners.contains(&host_plan.host) {
                continue;
            }
            let service = format!("service:sitec-app-{app}");
            let brick = format!("directory:{}/{app}.", crate::model::volumes::BRICKS_DIR);
            let removes = (host_plan.changes.iter())
                .filter(|c| c.action == crate::plan::Action::Remove)
                .any(|c| c.id == service || c.id.starts_with(&brick));
            if removes {
                left.push((host_plan.host.clone(), app.clone()));
            }
        }
    }
    left
}

/// `order` with each host that leaves an app after that app's runners
/// (`leaving`), unless that would make a cycle (the host is the app's
/// database primary, which comes before them): it then keeps its place.
fn with_leavers(
    order: &[(String, String, String)],
    leaving: &[(String, String)],
    rolling: &Rolling,
) -> Vec<(String, String, String)> {
    let mut order = order.to_vec();
    for (host, app) in leaving {
        for runner in rolling.apps.get(app).into_iter().flatten() {
            if !reaches(&order, host, runner) {
                order.push((
                    runner.clone(),
                    host.clone(),
                    format!("{host} leaves app {app}: after the runners that serve it now"),
                ));
            }
        }
    }
    order
}

/// Whether `to` comes after `from` in `order`, directly or not.
fn reaches(order: &[(String, String, String)], from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::from([from]);
    let mut frontier = vec![from];
    while let Some(at) = frontier.pop() {
        if at == to {
            return true;
        }
        for (before, after, _) in order {
            if before == at && seen.insert(after.as_str()) {
                frontier.push(after.as_str());
            }
        }
    }
    false
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
    rolling: &Rolling,
    around: Option<Arc<Around>>,
) -> BTreeMap<String, Outcome> {
    let mut outcomes: BTreeMap<String, Outcome> = BTreeMap::new();
    for u in &plan.unreachable {
        outcomes.insert(
            u.host.clone(),
            Outcome::Failed(format!("unreachable: {}", u.error)),
        );
    }
    let unreachable: BTreeSet<&str> = plan.unreachable.iter().map(|u| u.host.as_str()).collect();
    let leaving = leaving(&plan.hosts, rolling);
    let order = &with_leavers(order, &leaving, rolling);
    let first = first_phase(plan, hosts, &connections, saved, &progress, around.as_ref()).await;
    for (name, outcome) in &first {
        if let Some(outcome) = outcome {
            progress.finish(name, outcome);
            outcomes.insert(name.clone(), outcome.clone());
        }
    }
    // A host leaving an app loses the app's database access in the
    // databases' step, the first, and stops the app only after the app's
    // runners: it is out of rotation from the start while a runner that
    // served the app before serves it. An app moving to new runners alone
    // has no such runner: it is drained in its own step, which comes after
    // them (and its balancers hold requests while none serves).
    let (early, late): (Vec<_>, Vec<_>) =
        (leaving.iter().cloned()).partition(|(_, app)| keeps_a_runner(&plan.hosts, rolling, app));
    if let Some(a) = &around {
        for (host, app) in early {
            drain(a, &host, vec![app], LEAVES, &progress).await;
        }
    }
    let limit = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    for step in steps(hosts, order, rolling) {
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
            if let Some(why) = (blocked(&name, order, &outcomes))
                .or_else(|| rolling.stopped(&name, &outcomes, &unreachable))
            {
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
            // A host the first phase changed was checked against the saved
            // plan by that phase; its facts differ from the plan's now.
            let phased = first.contains_key(&name);
            desired.expect = (saved && !phased).then(|| host_plan.fingerprint.clone());
            desired.lease = around.as_ref().map(|a| a.lock.claim());
            let blobs = host_plan.missing_blobs.clone();
            let (drained, leaves) = if around.is_some() {
                let leaves = (late.iter())
                    .filter(|(h, _)| *h == name)
                    .map(|(_, app)| app.clone())
                    .collect();
                (restarted_apps(rolling, &name, host_plan), leaves)
            } else {
                (Vec::new(), Vec::new())
            };
            // A saved plan's apply leaves the host as the plan saw it
            // until its own apply (its facts are checked then).
            let prepare = !drained.is_empty() && !saved && builds_virtualenv(host_plan);
            let (connections, progress, limit, around) = (
                connections.clone(),
                progress.clone(),
                limit.clone(),
                around.clone(),
            );
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                let mut blobs = blobs;
                if prepare {
                    // With the Python sitec builds for them, if any: it
                    // comes first, and a virtualenv is built with it.
                    let virtualenvs: Vec<String> = (desired.items.iter())
                        .filter(|i| matches!(i.kind, Kind::Virtualenv { .. } | Kind::Python { .. }))
                        .map(|i| i.id.clone())
                        .collect();
                    let note = "building its new virtualenv before the drain";
                    let built = prepare_host(
                        &connections,
                        &name,
                        &progress,
                        &desired,
                        virtualenvs,
                        &blobs,
                        note,
                    );
                    if let Err(e) = built.await {
                        let outcome = Outcome::Failed(e);
                        progress.finish(&name, &outcome);
                        return (name, outcome);
                    }
                    blobs.clear();
                }
                let drained = match &around {
                    Some(a) => {
                        drain(a, &name, leaves, LEAVES, &progress).await;
                        drain(a, &name, drained, "before its restart", &progress).await
                    }
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
    // Gone from each host that left it, or (its apply failed or was
    // skipped) still served there: either way held out no longer.
    if let Some(a) = &around {
        for (host, app) in leaving {
            end_drains(a, &host, vec![app]).await;
        }
    }
    outcomes
}

/// How long, after the last host, apply waits for the balancers to take
/// each runner it started or restarted into rotation.
pub const SERVING: std::time::Duration = std::time::Duration::from_secs(30);

/// After the apply: waits until every balancer has each app this apply
/// started or restarted on a runner that converged in rotation (a new
/// fleet's balancers hear a runner's agent only after the runners' and
/// their own apply; without this a first `apply` could return while the
/// balancers still answer 503). Returns what is still out after `SERVING`,
/// in words: the apply itself converged, so it is said, not failed.
pub async fn wait_serving(
    around: &Arc<Around>,
    rolling: &Rolling,
    plan: &crate::plan::Plan,
    outcomes: &BTreeMap<String, Outcome>,
) -> Vec<String> {
    let mut started = Vec::new();
    for host_plan in &plan.hosts {
        if !matches!(outcomes.get(&host_plan.host), Some(Outcome::Done(_))) {
            continue;
        }
        for (app, _) in rolling.apps_on(&host_plan.host) {
            let id = format!("service:sitec-app-{app}");
            let starts = (host_plan.services.iter()).any(|s| s.id == id && s.action != "reload")
                || host_plan.changes.iter().any(|c| c.id == id);
            if starts {
                started.push((host_plan.host.clone(), app.clone()));
            }
        }
    }
    let around = around.clone();
    let waited = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + SERVING;
        (started.into_iter())
            .filter_map(|(host, app)| {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                around.drainer.serving(&host, &app, left).err()
            })
            .collect()
    })
    .await;
    waited.unwrap_or_else(|e| vec![e.to_string()])
}

/// Drains each of `apps` on `host` before its apply restarts or removes
/// them (`when` says which); the ones drained. An app that cannot be
/// drained (its agent is not up yet, on a new host) is applied all the
/// same, and said so.
async fn drain(
    around: &Arc<Around>,
    host: &str,
    apps: Vec<String>,
    when: &str,
    progress: &Progress,
) -> Vec<String> {
    let mut drained = Vec::new();
    for app in apps {
        progress.note(host, &format!("draining {app} {when}"));
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
            Ok((Err(e), _)) => progress.note(host, &format!("{app} not drained ({e}); going on")),
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

/// How a drain of a host leaving an app is said.
const LEAVES: &str = "before it leaves this host";

/// Whether `app` keeps a runner that served it before this apply: one the
/// spec places it on whose plan does not add the app's unit file.
fn keeps_a_runner(plans: &[crate::plan::HostPlan], rolling: &Rolling, app: &str) -> bool {
    let unit = format!("file:/etc/systemd/system/sitec-app-{app}.service");
    let adds_unit = |p: &crate::plan::HostPlan| {
        (p.changes.iter()).any(|c| c.id == unit && c.action == crate::plan::Action::Add)
    };
    (rolling.apps.get(app).into_iter().flatten())
        .any(|runner| plans.iter().any(|p| p.host == *runner && !adds_unit(p)))
}

/// Ends the drains of `apps` on `host` without waiting for them to answer:
/// a host that left them stops renewing a drain its agent no longer knows.
async fn end_drains(around: &Arc<Around>, host: &str, apps: Vec<String>) {
    for app in apps {
        let (a, h) = (around.clone(), host.to_string());
        let _ = tokio::task::spawn_blocking(move || a.drainer.end(&h, &app)).await;
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

/// Whether `plan` builds a virtualenv beside one the host has.
fn builds_virtualenv(plan: &crate::plan::HostPlan) -> bool {
    (plan.changes.iter())
        .any(|c| c.id.starts_with("virtualenv:") && c.action == crate::plan::Action::Change)
}

/// Apply's first phase, before any step: on every host whose plan changes
/// one of its `first` resources (the `gluster` role's: glusterfs-server,
/// glusterd, the bricks' folder), those alone, on all such hosts at once.
/// An app's leader, applied before its other runners (and a balancer
/// after them), makes its media volume, and `gluster volume create` needs
/// every brick host's glusterd in the leader's pool already: so they all
/// run glusterd first. Nothing here serves or stops serving, so a failure
/// leaves each host as it was; the host fails, and the hosts after it wait,
/// as for any failure. The hosts it ran on: `None`, or how one failed.
async fn first_phase(
    plan: &Plan,
    hosts: &[HostDesired],
    connections: &Arc<Connections>,
    saved: bool,
    progress: &Arc<Progress>,
    around: Option<&Arc<Around>>,
) -> BTreeMap<String, Option<Outcome>> {
    let mut tasks = tokio::task::JoinSet::new();
    for host in hosts {
        let Some(host_plan) = plan.hosts.iter().find(|h| h.host == host.name) else {
            continue;
        };
        let changes = (host_plan.changes.iter().map(|c| &c.id))
            .chain(host_plan.services.iter().map(|s| &s.id));
        if !changes.into_iter().any(|id| host.first.contains(id)) {
            continue;
        }
        let mut desired = host.desired.clone();
        desired.expect = saved.then(|| host_plan.fingerprint.clone());
        desired.lease = around.map(|a| a.lock.claim());
        let (connections, progress) = (connections.clone(), progress.clone());
        let (name, ids) = (host.name.clone(), host.first.clone());
        tasks.spawn(async move {
            let note = "starting its GlusterFS server before the rolling deploy";
            let first = desired.items.iter().map(|i| i.id.clone());
            let first = first.filter(|id| ids.contains(id)).collect();
            let result =
                prepare_host(&connections, &name, &progress, &desired, first, &[], note).await;
            (name, result.err().map(Outcome::Failed))
        });
    }
    let mut ran = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        if let Ok((name, outcome)) = joined {
            ran.insert(name, outcome);
        }
    }
    ran
}

/// Converges `desired`'s items alone on `host`, before its own step
/// (`Desired::prepare`): its new virtualenvs (and the Python sitec builds
/// for them, `plan::python`) before its runner is drained
/// (pip runs while the app serves from the live one, and a failed build
/// fails the host with nothing drained, switched or restarted; the apply
/// that follows finds them built), or the first phase's resources.
async fn prepare_host(
    connections: &Connections,
    host: &str,
    progress: &Progress,
    desired: &crate::host::wire::Desired,
    items: Vec<String>,
    blobs: &[String],
    note: &str,
) -> Result<(), String> {
    connections.upload_blobs(host, blobs).await?;
    progress.note(host, note);
    let mut prepared = desired.clone();
    prepared.prepare = items;
    let mut errors = Vec::new();
    let result = connections
        .apply(host, &prepared, |event| match &event {
            Event::Failed { id, error } => {
                errors.push(format!("{id}: {error}"));
                progress.event(host, &event);
            }
            Event::Refused { error } => {
                errors.push(error.clone());
                progress.event(host, &event);
            }
            Event::Changed { .. } => progress.event(host, &event),
            _ => {}
        })
        .await;
    match result {
        Ok(true) if errors.is_empty() => Ok(()),
        Ok(_) if errors.is_empty() => Err(format!("{note}: failed")),
        Ok(_) => Err(errors.join("\n")),
        Err(e) => Err(e),
    }
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
            desired: Desired::nothing(name),
            first: Vec::new(),
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
        let rolling = Rolling {
            apps: BTreeMap::from([("blog".to_string(), vec!["run1".into(), "run2".into()])]),
            batch: 1,
        };
        assert_eq!(
            steps(&hosts, &order, &rolling),
            vec![
                vec!["db1".to_string()],
                vec!["db2".into(), "run1".into()],
                vec!["run2".into()],
                vec!["lb1".into()],
                vec!["lb2".into()]
            ]
        );
    }

    fn rolling(apps: &[(&str, &[&str])], batch: usize) -> Rolling {
        Rolling {
            apps: (apps.iter())
                .map(|(a, r)| {
                    (
                        (*a).to_string(),
                        r.iter().map(|h| (*h).to_string()).collect(),
                    )
                })
                .collect(),
            batch,
        }
    }

    fn names(hosts: &[&str]) -> Vec<String> {
        hosts.iter().map(|h| (*h).to_string()).collect()
    }

    #[test]
    fn runners_roll_leaders_first_then_in_batches_of_each_app() {
        // blog's leader is r3; shop's is r1, which also runs blog.
        let apps: &[(&str, &[&str])] =
            &[("blog", &["r3", "r1", "r2", "r4"]), ("shop", &["r1", "r2"])];
        let all = names(&["r1", "r2", "r3", "r4", "r5"]);
        assert_eq!(
            rolling(apps, 1).batches(all.clone()),
            vec![
                names(&["r3", "r5"]),
                names(&["r1"]),
                names(&["r2"]),
                names(&["r4"])
            ],
            "one runner of each app at a time, each app's leader first; r5 runs nothing"
        );
        assert_eq!(
            rolling(apps, 2).batches(all),
            vec![names(&["r3", "r5"]), names(&["r1", "r4"]), names(&["r2"])]
        );
        let alone: &[(&str, &[&str])] = &[("blog", &["a", "b", "c"])];
        assert_eq!(
            rolling(alone, 2).batches(names(&["c", "b", "a"])),
            vec![names(&["a"]), names(&["c", "b"])],
            "the leader alone first: its migrations before any other runner serves"
        );
    }

    #[test]
    fn a_runner_that_fails_stops_its_apps_rolling_deploy() {
        let roll = rolling(&[("blog", &["r1", "r2"]), ("shop", &["r3", "r2"])], 1);
        let mut outcomes = BTreeMap::new();
        let none = BTreeSet::new();
        outcomes.insert("r3".to_string(), Outcome::Done(1));
        assert_eq!(roll.stopped("r2", &outcomes, &none), None);
        outcomes.insert("r1".to_string(), Outcome::Failed("migrate".into()));
        let why = roll.stopped("r2", &outcomes, &none).unwrap_or_default();
        assert!(why.contains("blog stopped at r1"), "{why}");
        assert_eq!(roll.stopped("r1", &outcomes, &none), None);
        // A follower that could not be reached stops no one; a leader does.
        let mut outcomes = BTreeMap::new();
        outcomes.insert("r2".to_string(), Outcome::Failed("unreachable".into()));
        outcomes.insert("r3".to_string(), Outcome::Failed("unreachable".into()));
        let unreachable = BTreeSet::from(["r2", "r3"]);
        assert_eq!(roll.stopped("r1", &outcomes, &unreachable), None);
        assert!(roll.stopped("r2", &outcomes, &unreachable).is_some());
    }

    fn removing(host: &str, ids: &[&str]) -> crate::plan::HostPlan {
        crate::plan::HostPlan {
            host: host.into(),
            address: String::new(),
            applied_generation: None,
            changes: (ids.iter())
                .map(|id| crate::plan::Change {
                    id: (*id).to_string(),
                    action: crate::plan::Action::Remove,
                    details: Vec::new(),
                    diff: None,
                    drifted: false,
                    origin: None,
                })
                .collect(),
            services: Vec::new(),
            fingerprint: String::new(),
            missing_blobs: Vec::new(),
        }
    }

    /// blog moves from [r1, r2] to [r1, r3]: r2 goes after both, so r1 has
    /// moved its brick and r3 serves before r2 stops; a host that was
    /// blog's runner and is its database primary keeps its place.
    #[test]
    fn a_host_leaving_an_app_goes_after_the_apps_runners() {
        let roll = rolling(&[("blog", &["r1", "r3"])], 1);
        let plans = [
            removing("r2", &["service:sitec-app-blog", "file:/etc/x"]),
            removing("db", &["directory:/srv/sitec/media-bricks/blog.uploads"]),
            removing("r4", &["service:sitec-app-blogs"]),
            removing("r1", &["service:sitec-app-blog-worker-celery"]),
        ];
        let left = leaving(&plans, &roll);
        assert_eq!(
            left,
            vec![("r2".into(), "blog".into()), ("db".into(), "blog".into())],
            "r4 left another app; r1 still runs blog"
        );
        let order = vec![
            ("db".to_string(), "r1".to_string(), String::new()),
            ("db".to_string(), "r3".to_string(), String::new()),
        ];
        let ordered = with_leavers(&order, &left, &roll);
        let pairs: Vec<(&str, &str)> = (ordered.iter())
            .map(|(b, a, _)| (b.as_str(), a.as_str()))
            .collect();
        assert_eq!(
            pairs,
            vec![("db", "r1"), ("db", "r3"), ("r1", "r2"), ("r3", "r2")]
        );
        // r1 served blog before: r2 is drained from the start. Moved to
        // new runners alone, it would be drained in its own step.
        assert!(keeps_a_runner(&plans, &roll, "blog"));
        let moved = rolling(&[("blog", &["r3"])], 1);
        let mut added = removing("r3", &["file:/etc/systemd/system/sitec-app-blog.service"]);
        added.changes[0].action = crate::plan::Action::Add;
        assert!(!keeps_a_runner(&[added.clone()], &moved, "blog"));
        added.changes[0].id = "file:/etc/systemd/system/sitec-app-blogs.service".into();
        assert!(keeps_a_runner(&[added], &moved, "blog"));
        let hosts = [
            host("r1", &["runner"]),
            host("r2", &["runner"]),
            host("r3", &["runner"]),
            host("db", &["postgres"]),
        ];
        assert_eq!(
            steps(&hosts, &ordered, &roll),
            vec![
                names(&["db"]),
                names(&["r1"]),
                names(&["r3"]),
                names(&["r2"])
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
