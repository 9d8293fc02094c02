//! The fleet checks: what must hold before anything touches a host.
//!
//! Each rule is one small function over the typed [`Fleet`]: redundancy
//! (balancers, app replicas, database standbys, backups), conflicts (a domain
//! or a port claimed twice) and requirements (a host that lacks the role what
//! it runs needs). A rule reports at its default severity unless the spec's
//! `checks { rule = error|warning|off }` block says otherwise; every
//! diagnostic names its rule in a note. Pure: it reads the model, never
//! changes it, and never decides anything the later stages rely on.

mod inline_secrets;
mod layers;

use crate::diagnostic::{Diagnostic, Severity};
use crate::model::clusters;
use crate::model::{AppId, Engine, Fleet, HostId};
use crate::source::Span;
use std::collections::{BTreeMap, HashMap};

/// A rule's check: every place the fleet breaks it.
type Rule = fn(&Fleet) -> Vec<Diagnostic>;

/// Every rule, its default severity, and the function that checks it. The
/// functions build their diagnostics as errors; `check` sets the severity.
pub const RULES: [(&str, Severity, Rule); 15] = [
    (
        "balancer_redundancy",
        Severity::Warning,
        balancer_redundancy,
    ),
    ("replica_spread", Severity::Warning, replica_spread),
    ("standby_host", Severity::Error, standby_host),
    ("standby_provider", Severity::Warning, standby_provider),
    (
        "database_redundancy",
        Severity::Warning,
        database_redundancy,
    ),
    ("backup_target", Severity::Error, backup_target),
    ("domain_conflict", Severity::Error, domain_conflict),
    ("port_conflict", Severity::Error, port_conflict),
    ("address_conflict", Severity::Error, address_conflict),
    ("role_requirements", Severity::Error, role_requirements),
    (
        "unused_settings",
        Severity::Warning,
        layers::unused_settings,
    ),
    (
        "inline_secret",
        Severity::Warning,
        inline_secrets::inline_secret,
    ),
    ("media_shared", Severity::Error, media_shared),
    ("media_backup", Severity::Warning, media_backup),
    ("scheduler_once", Severity::Error, scheduler_once),
];

/// Rules that guard what the hosts refuse, not a choice of the operator's:
/// a spec breaking one can't be applied, so they stay errors (E267 when a
/// `checks` block lowers one).
const REFUSED_BY_THE_HOSTS: [(&str, &str); 2] = [
    (
        "domain_conflict",
        "the balancer refuses a config that routes one domain to two apps",
    ),
    (
        "port_conflict",
        "two services can't both listen on one port; the second fails to start",
    ),
];

/// Runs every rule that is not `off`, at the severity the spec sets.
pub fn check(fleet: &Fleet) -> Vec<Diagnostic> {
    let mut diagnostics = levels_set_twice(fleet);
    diagnostics.extend(levels_the_hosts_refuse(fleet));
    diagnostics.extend(redirect_of_catch_all(fleet));
    diagnostics.extend(layers::set_twice_in_a_layer(fleet));
    diagnostics.extend(shared_clusters_disagree(fleet));
    diagnostics.extend(clusters_named_alike(fleet));
    diagnostics.extend(media_paths_collide(fleet));
    for (rule, default, run) in RULES {
        let level = fleet
            .check_levels
            .iter()
            .rev()
            .find(|(name, _, _)| name == rule)
            .map(|(_, level, _)| level.as_str());
        let hard = REFUSED_BY_THE_HOSTS.iter().any(|(r, _)| *r == rule);
        let severity = match level {
            _ if hard => Severity::Error,
            Some("off") => continue,
            Some("error") => Severity::Error,
            Some("warning") => Severity::Warning,
            _ => default,
        };
        diagnostics.extend(run(fleet).into_iter().map(|mut d| {
            d.severity = severity;
            if hard {
                d.note(format!(
                    "rule `{rule}`: the hosts refuse this, so it stays an error"
                ))
            } else {
                d.note(format!(
                    "rule `{rule}`; set `checks {{ {rule} = off }}` to silence it"
                ))
            }
        }));
    }
    diagnostics
}

/// E262: an app that redirects plain HTTP to https and claims `*`: no
/// certificate can serve every name, so the balancer would refuse the
/// config at apply (not a rule: nothing could run it).
fn redirect_of_catch_all(fleet: &Fleet) -> Vec<Diagnostic> {
    (fleet.apps.iter())
        .filter(|app| app.tls.as_ref().is_some_and(|t| t.redirect))
        .filter_map(|app| {
            let (_, star) = app.domains.iter().find(|(d, _)| d == "*")?;
            let tls = app.tls.as_ref()?;
            Some(
                Diagnostic::error(
                    "E262",
                    format!(
                        "app `{}` redirects plain HTTP to https, and claims `*`",
                        app.name
                    ),
                )
                .primary(*star, "no certificate serves every name")
                .secondary(tls.redirect_span, "plain HTTP redirected here")
                .help("drop `*` from `domains`, or the `redirect`"),
            )
        })
        .collect()
}

/// E269: an app's `media` whose URL is, holds or sits in another of its
/// `static` or `media` URLs (nginx would serve one folder's files in
/// place of the other's, or refuse two locations of one path), or whose
/// store another of its `media` already names (one folder for two URLs).
/// Not a rule: nginx or the app would be wrong either way.
fn media_paths_collide(fleet: &Fleet) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    for app in &fleet.apps {
        let statics = (app.statics.iter()).map(|s| ("static", s.url.as_str(), s.span));
        for (i, media) in app.media.iter().enumerate() {
            let earlier = (app.media[..i].iter()).map(|m| ("media", m.url.as_str(), m.span));
            let nested = |url: &str| url.starts_with(&media.url) || media.url.starts_with(url);
            let clash = (statics.clone().chain(earlier)).find(|(_, url, _)| nested(url));
            if let Some((kind, url, span)) = clash {
                let what = if url == media.url {
                    format!("`{url}` is also the app's `{kind}` URL")
                } else {
                    format!("`{}` and its `{kind}` `{url}` nest", media.url)
                };
                diagnostics.push(
                    Diagnostic::error("E269", format!("app `{}`: media {what}", app.name))
                        .primary(media.span, "this media's URL")
                        .secondary(span, format!("the {kind} mapping"))
                        .help("give the media a URL prefix of its own, such as \"/media/\""),
                );
            } else if let Some(first) = app.media[..i].iter().find(|m| m.name == media.name) {
                diagnostics.push(
                    Diagnostic::error(
                        "E269",
                        format!(
                            "app `{}`: media store `{}` is named twice",
                            app.name, media.name
                        ),
                    )
                    .primary(media.span, "named again here")
                    .secondary(first.span, "first named here")
                    .help("serve one store at one URL: drop one, or name another store"),
                );
            }
        }
    }
    diagnostics
}

/// E281: an app with `media` placed on two runners or more for which no
/// GlusterFS volume can be made (`model::volumes`): with two runners the
/// volume needs a third host for its arbiter brick, and the fleet has none
/// (a host that neither runs the app nor balances). Each runner would keep
/// its own folder, so an upload would be served only by the runner that
/// took it. A rule, so a fleet that shares the folder by its own means can
/// turn it off.
fn media_shared(fleet: &Fleet) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    for (id, app) in fleet.apps.iter().enumerate() {
        let runners = &fleet.placement[id];
        let Some(media) = app.media.first() else {
            continue;
        };
        if runners.len() < 2 || crate::model::volumes::shared(fleet, id) {
            continue;
        }
        let names: Vec<String> = (runners.iter())
            .map(|h| format!("`{}`", host_name(fleet, *h)))
            .collect();
        diagnostics.push(
            Diagnostic::error(
                "E281",
                format!(
                    "app `{}` keeps media on {} runners, and its shared volume has no host for its arbiter brick",
                    app.name,
                    runners.len()
                ),
            )
            .primary(
                media.span,
                format!("{} would each keep their own uploads", names.join(" and ")),
            )
            .secondary(app.replicas_span, "two runners: a third host holds the volume's arbiter brick")
            .help("add a host that neither runs the app nor balances (its database host is the usual one), or a third runner (`replicas = 3`), or run the app on one runner"),
        );
    }
    diagnostics
}

/// E283: a shared media store (a GlusterFS volume, `model::volumes`) is
/// in no backup: no backup pulls from the app's leader, whose brick is the
/// store's subvolume in its snapshots (its mount hides each runner's own
/// folder). Replicas survive a lost host, not a deleted file or a
/// mistaken script: as `database_redundancy` says of a database.
fn media_backup(fleet: &Fleet) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    for (id, app) in fleet.apps.iter().enumerate() {
        let Some(&leader) = fleet.placement[id].first() else {
            continue;
        };
        let backed_up = (fleet.backups.iter()).any(|b| b.from.iter().any(|(f, _)| *f == leader));
        if !crate::model::volumes::shared(fleet, id) || backed_up {
            continue;
        }
        let leader = host_name(fleet, leader);
        for media in &app.media {
            diagnostics.push(
                Diagnostic::error(
                    "E283",
                    format!(
                        "app `{}`'s media store `{}` is a GlusterFS volume that no backup holds: none pulls from `{leader}`",
                        app.name, media.name
                    ),
                )
                .primary(
                    media.span,
                    "its replicas outlive a lost host, not a deleted upload",
                )
                .help(format!(
                    "add the app's leader to a backup's hosts, `backup {{ from = [{leader}]  to = HOST ... }}`: its brick of the volume is snapshotted and pulled"
                )),
            );
        }
    }
    diagnostics
}

/// Whether a worker's command starts a scheduler, which sends each periodic
/// task once per process that runs it: `celery ... beat`, a celery worker
/// with an embedded beat (`-B`, `--beat`), `rqscheduler`.
fn starts_a_scheduler(command: &str) -> bool {
    let words: Vec<&str> = command.split_whitespace().collect();
    let program = |w: &&str| w.rsplit('/').next().unwrap_or(w).to_string();
    let celery = words.iter().any(|w| program(w) == "celery");
    let rq = words.iter().any(|w| program(w) == "rqscheduler");
    rq || (celery && words.iter().any(|w| matches!(*w, "beat" | "-B" | "--beat")))
}

/// E282: a worker that starts a scheduler (celery beat) on each of two
/// runners or more: every periodic task would be sent once per runner.
/// `once = true` runs it on the app's leader alone.
fn scheduler_once(fleet: &Fleet) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    for (id, app) in fleet.apps.iter().enumerate() {
        let runners = fleet.placement[id].len();
        if runners < 2 {
            continue;
        }
        for worker in (app.workers.iter()).filter(|w| !w.once && starts_a_scheduler(&w.command)) {
            diagnostics.push(
                Diagnostic::error(
                    "E282",
                    format!(
                        "worker `{}` of app `{}` starts a scheduler on each of its {runners} runners",
                        worker.name, app.name
                    ),
                )
                .primary(
                    worker.span,
                    format!("every periodic task would be sent {runners} times"),
                )
                .help("run it on the app's leader alone: `once = true` in the worker"),
            );
        }
    }
    diagnostics
}

/// E268: two Postgres clusters of one name on one host (a dedicated
/// database named `main` beside the shared cluster, or two primaries'
/// shared clusters on one standby host): one data folder and config for two.
fn clusters_named_alike(fleet: &Fleet) -> Vec<Diagnostic> {
    let clusters = clusters::clusters(fleet);
    let mut diagnostics = Vec::new();
    for host in 0..fleet.hosts.len() {
        let mut here: Vec<&clusters::Cluster> = (clusters.iter())
            .filter(|c| c.primary == host || c.standby == Some(host))
            .collect();
        let first_db = |c: &clusters::Cluster| &fleet.databases[c.databases[0]];
        here.sort_by_key(|c| (first_db(c).span.file, first_db(c).span.start));
        for (i, later) in here.iter().enumerate() {
            let Some(first) = here[..i].iter().find(|c| c.name == later.name) else {
                continue;
            };
            let (db, other) = (first_db(later), first_db(first));
            let help = if db.tier == crate::model::Tier::Dedicated {
                format!(
                    "a dedicated database's cluster is named after it: rename `{}`",
                    db.name
                )
            } else {
                format!(
                    "one host holds one shared cluster: move the standby of `{}` to another host",
                    db.name
                )
            };
            diagnostics.push(
                Diagnostic::error(
                    "E268",
                    format!(
                        "two Postgres clusters named `{}` on `{}`",
                        later.name,
                        host_name(fleet, host)
                    ),
                )
                .primary(db.span, format!("the cluster of `{}`", db.name))
                .secondary(other.span, format!("the cluster of `{}`", other.name))
                .help(help),
            );
        }
    }
    diagnostics
}

/// E267: a `checks` block that lowers a rule the hosts would enforce anyway.
fn levels_the_hosts_refuse(fleet: &Fleet) -> Vec<Diagnostic> {
    (fleet.check_levels.iter())
        .filter(|(_, level, _)| level != "error")
        .filter_map(|(rule, level, span)| {
            let (_, why) = REFUSED_BY_THE_HOSTS.iter().find(|(r, _)| r == rule)?;
            Some(
                Diagnostic::error("E267", format!("rule `{rule}` can't be `{level}`"))
                    .primary(*span, "the hosts enforce it anyway")
                    .help(format!(
                        "{why}: remove `{rule} = {level}` and fix what it reports"
                    )),
            )
        })
        .collect()
}

/// E265: shared Postgres databases of one primary are one cluster, with one
/// port and one standby; a database that sets another would be ignored.
fn shared_clusters_disagree(fleet: &Fleet) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    for cluster in clusters::clusters(fleet) {
        let mut dbs: Vec<&crate::model::Database> = cluster
            .databases
            .iter()
            .map(|d| &fleet.databases[*d])
            .collect();
        dbs.sort_by_key(|d| (d.span.file, d.span.start));
        let mut disagree = |what: &str,
                            first: &crate::model::Database,
                            first_span: Span,
                            later: &crate::model::Database,
                            span: Span| {
            diagnostics.push(
                Diagnostic::error(
                    "E265",
                    format!(
                        "shared databases `{}` and `{}` are one cluster on `{}`, with another {what}",
                        first.name,
                        later.name,
                        host_name(fleet, first.primary)
                    ),
                )
                .primary(span, format!("`{}` would be ignored here", later.name))
                .secondary(first_span, format!("the cluster's {what} comes from here"))
                .help(format!(
                    "one cluster has one {what}: make them agree, or give `{}` a cluster of its own with `tier = dedicated`",
                    later.name
                )),
            );
        };
        for (i, later) in dbs.iter().enumerate().skip(1) {
            let port_set = dbs[..i]
                .iter()
                .find(|d| d.port_span.is_some())
                .or(dbs.first());
            if let (Some(first), Some(span)) = (port_set, later.port_span) {
                if first.port != later.port {
                    disagree(
                        "port",
                        first,
                        first.port_span.unwrap_or(first.span),
                        later,
                        span,
                    );
                }
            }
            let standby = dbs[..i].iter().find(|d| d.follower.is_some());
            if let (Some(first), Some(span)) = (standby, later.follower_span) {
                if first.follower != later.follower {
                    let first_span = first.follower_span.unwrap_or(first.span);
                    disagree("standby", first, first_span, later, span);
                }
            }
        }
    }
    diagnostics
}

/// Two places that claim one thing, the later one in file order first:
/// that is the one to change (the first was there before).
fn later_first(a: Span, b: Span) -> (Span, Span) {
    if (a.file, a.start) > (b.file, b.start) {
        (a, b)
    } else {
        (b, a)
    }
}

/// A rule given two different levels by two `checks` blocks (in one file
/// or across modules): which one holds would depend on the order of `use`.
fn levels_set_twice(fleet: &Fleet) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    for (i, (rule, level, span)) in fleet.check_levels.iter().enumerate() {
        let earlier = fleet.check_levels[..i]
            .iter()
            .find(|(r, l, _)| r == rule && l != level);
        if let Some((_, first, first_span)) = earlier {
            diagnostics.push(
                Diagnostic::error(
                    "E260",
                    format!("rule `{rule}` is set to both `{first}` and `{level}`"),
                )
                .primary(*span, format!("set to `{level}` here"))
                .secondary(*first_span, format!("set to `{first}` here"))
                .help("keep one of them"),
            );
        }
    }
    diagnostics
}

fn host_name<'f>(fleet: &'f Fleet, host: HostId) -> &'f str {
    &fleet.hosts[host].name
}

fn provider_name<'f>(fleet: &'f Fleet, host: HostId) -> &'f str {
    &fleet.provider_of(host).name
}

/// Providers that have at least one host.
fn providers_in_use(fleet: &Fleet) -> usize {
    let mut used: Vec<usize> = fleet.hosts.iter().map(|h| h.provider).collect();
    used.sort_unstable();
    used.dedup();
    used.len()
}

/// At least two balancers, at different providers when the fleet has more than one.
fn balancer_redundancy(fleet: &Fleet) -> Vec<Diagnostic> {
    let balancers: Vec<HostId> = fleet.hosts_with_role("balancer").collect();
    match balancers.as_slice() {
        [] => Vec::new(),
        [only] => vec![Diagnostic::error(
            "E250",
            format!("`{}` is the only balancer", host_name(fleet, *only)),
        )
        .primary(
            fleet.hosts[*only].span,
            "every app is down while this host is",
        )
        .help("give a second host, at another provider, the `balancer` role")],
        [first, rest @ ..] => {
            let provider = fleet.hosts[*first].provider;
            if providers_in_use(fleet) < 2
                || rest.iter().any(|h| fleet.hosts[*h].provider != provider)
            {
                return Vec::new();
            }
            let mut d = Diagnostic::error(
                "E250",
                format!(
                    "every balancer is at provider `{}`",
                    provider_name(fleet, *first)
                ),
            )
            .primary(
                fleet.hosts[*first].span,
                "every app is down while this provider is",
            );
            for h in rest {
                d = d.secondary(fleet.hosts[*h].span, "at the same provider");
            }
            vec![d.help("move one balancer to a host at another provider")]
        }
    }
}

/// An app's replicas on distinct runners, and on distinct providers while
/// enough providers have runners.
fn replica_spread(fleet: &Fleet) -> Vec<Diagnostic> {
    let mut runner_providers: Vec<usize> = fleet
        .hosts_with_role("runner")
        .map(|h| fleet.hosts[h].provider)
        .collect();
    runner_providers.sort_unstable();
    runner_providers.dedup();
    let mut diagnostics = Vec::new();
    for (id, app) in fleet.apps.iter().enumerate() {
        let mut seen: Vec<HostId> = Vec::new();
        for host in &app.pinned {
            if seen.contains(host) {
                diagnostics.push(
                    Diagnostic::error(
                        "E251",
                        format!(
                            "app `{}` lists runner `{}` twice",
                            app.name,
                            host_name(fleet, *host)
                        ),
                    )
                    .primary(app.span, "replicas run on distinct runners")
                    .help("name each runner once in `runners`"),
                );
            }
            seen.push(*host);
        }
        let placed = &fleet.placement[id];
        let mut providers: Vec<usize> = placed.iter().map(|h| fleet.hosts[*h].provider).collect();
        providers.sort_unstable();
        providers.dedup();
        let possible = placed.len().min(runner_providers.len());
        if providers.len() < possible {
            let names: Vec<String> = placed
                .iter()
                .map(|h| format!("`{}` ({})", host_name(fleet, *h), provider_name(fleet, *h)))
                .collect();
            let mut d = Diagnostic::error(
                "E251",
                format!(
                    "app `{}` runs on {} provider{} although {possible} have runners",
                    app.name,
                    providers.len(),
                    if providers.len() == 1 { "" } else { "s" }
                ),
            )
            .primary(app.span, format!("runs on {}", names.join(", ")));
            let unused = fleet
                .hosts_with_role("runner")
                .find(|h| !providers.contains(&fleet.hosts[*h].provider));
            if let Some(runner) = unused {
                d = d.secondary(
                    fleet.hosts[runner].span,
                    format!("a runner at `{}`", provider_name(fleet, runner)),
                );
            }
            diagnostics.push(d.help(
                "pin the app to runners at different providers, or drop `runners` and let sitec spread it",
            ));
        }
    }
    diagnostics
}

/// The standby (or replica) of each database, and its span.
fn followers<'f>(
    fleet: &'f Fleet,
) -> impl Iterator<Item = (&'f crate::model::Database, HostId, Span)> + 'f {
    fleet
        .databases
        .iter()
        .filter_map(|db| Some((db, db.follower?, db.follower_span.unwrap_or(db.span))))
}

fn follower_word(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgres => "standby",
        Engine::Redis => "replica",
    }
}

fn engine_role(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgres => "postgres",
        Engine::Redis => "redis",
    }
}

/// A standby on its primary's own host is no standby.
fn standby_host(fleet: &Fleet) -> Vec<Diagnostic> {
    followers(fleet)
        .filter(|(db, follower, _)| *follower == db.primary)
        .map(|(db, follower, span)| {
            let word = follower_word(db.engine);
            Diagnostic::error(
                "E252",
                format!("the {word} of `{}` is on its primary's host", db.name),
            )
            .primary(
                span,
                format!("`{}` is also the primary", host_name(fleet, follower)),
            )
            .secondary(db.span, "declared here")
            .help(format!(
                "put the {word} on another host with the `{}` role",
                engine_role(db.engine)
            ))
        })
        .collect()
}

/// A standby at its primary's provider, when another provider has a host for it.
fn standby_provider(fleet: &Fleet) -> Vec<Diagnostic> {
    followers(fleet)
        .filter(|(db, follower, _)| {
            // A follower without the engine's role is `role_requirements`' to report.
            *follower != db.primary
                && fleet.has_role(*follower, engine_role(db.engine))
                && fleet.hosts[*follower].provider == fleet.hosts[db.primary].provider
        })
        .filter_map(|(db, follower, span)| {
            let role = engine_role(db.engine);
            let elsewhere = fleet
                .hosts_with_role(role)
                .find(|h| fleet.hosts[*h].provider != fleet.hosts[db.primary].provider)?;
            let word = follower_word(db.engine);
            Some(
                Diagnostic::error(
                    "E253",
                    format!(
                        "the {word} of `{}` is at its primary's provider `{}`",
                        db.name,
                        provider_name(fleet, follower)
                    ),
                )
                .primary(span, "both copies are lost when this provider is")
                .secondary(
                    fleet.hosts[elsewhere].span,
                    format!("a `{role}` host at `{}`", provider_name(fleet, elsewhere)),
                )
                .help(format!("set `{word} = {}`", host_name(fleet, elsewhere))),
            )
        })
        .collect()
}

/// A database with one copy only: no standby (or replica), and no backup
/// pulls from its host. One disk, one mistake or one provider's outage
/// loses it for good.
fn database_redundancy(fleet: &Fleet) -> Vec<Diagnostic> {
    let backed_up = |h: HostId| (fleet.backups.iter()).any(|b| b.from.iter().any(|(f, _)| *f == h));
    (fleet.databases.iter())
        .filter(|db| db.follower.is_none() && !backed_up(db.primary))
        .map(|db| {
            let word = follower_word(db.engine);
            let host = host_name(fleet, db.primary);
            Diagnostic::error(
                "E266",
                format!(
                    "database `{}` has one copy only: no {word}, and no backup pulls from `{host}`",
                    db.name
                ),
            )
            .primary(db.span, format!("lost for good with `{host}`'s disk"))
            .help(format!(
                "give it `{word} = HOST` on another host with the `{}` role, or a `backup {{ from = [{host}]  to = HOST ... }}`",
                engine_role(db.engine)
            ))
        })
        .collect()
}

/// Backups land on a `backup` host that holds no copy of what it backs up.
fn backup_target(fleet: &Fleet) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    for backup in &fleet.backups {
        let to = host_name(fleet, backup.to);
        if let Some((_, span)) = backup.from.iter().find(|(h, _)| *h == backup.to) {
            diagnostics.push(
                Diagnostic::error(
                    "E254",
                    format!(
                        "backup `{}` is pulled to `{to}`, one of the hosts it backs up",
                        backup.name
                    ),
                )
                .primary(backup.to_span, "the backups land here")
                .secondary(*span, "and this host is backed up")
                .help("pull the backups to a host that is not in `from`"),
            );
        } else if let Some((db, role, span)) = fleet.databases.iter().find_map(|db| {
            // `to` and a host of `from` are primary and follower of one database.
            let primary = (db.primary, "primary", db.span);
            let follower = (db.follower?, follower_word(db.engine), db.follower_span?);
            let backed_up = |h: HostId| backup.from.iter().any(|(f, _)| *f == h);
            [(primary, follower), (follower, primary)]
                .into_iter()
                .find(|((to, _, _), (other, _, _))| *to == backup.to && backed_up(*other))
                .map(|((_, role, span), _)| (db, role, span))
        }) {
            diagnostics.push(
                Diagnostic::error(
                    "E254",
                    format!(
                        "backup `{}` is pulled to `{to}`, which holds a copy of `{}`",
                        backup.name, db.name
                    ),
                )
                .primary(backup.to_span, "the backups land here")
                .secondary(span, format!("`{to}` is the {role} of `{}`", db.name))
                .help("pull the backups to a host that holds no copy of the data"),
            );
        }
        if !fleet.has_role(backup.to, "backup") {
            diagnostics.push(
                Diagnostic::error(
                    "E255",
                    format!(
                        "backup `{}` is pulled to `{to}`, which has no `backup` role",
                        backup.name
                    ),
                )
                .primary(backup.to_span, "nothing pulls the snapshots here")
                .secondary(fleet.hosts[backup.to].span, "declared here")
                .help(format!("add `backup` to the roles of `{to}`")),
            );
        }
    }
    diagnostics
}

/// A domain belongs to one app.
fn domain_conflict(fleet: &Fleet) -> Vec<Diagnostic> {
    // Only looked up, never walked: a hash map's order does not show.
    let mut claimed: HashMap<String, (&str, Span)> = HashMap::with_capacity(fleet.apps.len() * 2);
    let mut diagnostics = Vec::new();
    for app in &fleet.apps {
        for (domain, span) in &app.domains {
            // Hosts are matched without case or a final dot, by the
            // balancer too.
            let key = domain.trim_end_matches('.').to_ascii_lowercase();
            match claimed.get(key.as_str()) {
                Some((first, first_span)) => {
                    let (again, before) = later_first(*span, *first_span);
                    let (again_app, before_app) = if again == *span {
                        (app.name.as_str(), *first)
                    } else {
                        (*first, app.name.as_str())
                    };
                    diagnostics.push(
                        Diagnostic::error("E256", format!("domain `{domain}` is claimed twice"))
                            .primary(again, format!("claimed again by `{again_app}`"))
                            .secondary(before, format!("first claimed by `{before_app}`"))
                            .help("a domain routes to one app; remove it from one of them"),
                    );
                }
                None => {
                    claimed.insert(key, (&app.name, *span));
                }
            }
        }
    }
    diagnostics
}

/// A written address belongs to one host: two hosts at one address are one
/// machine applied twice, each apply undoing the other's files.
fn address_conflict(fleet: &Fleet) -> Vec<Diagnostic> {
    let mut first_at: HashMap<String, usize> = HashMap::with_capacity(fleet.hosts.len());
    let mut diagnostics = Vec::new();
    for (id, host) in fleet.hosts.iter().enumerate() {
        let Some(address) = &host.address else {
            continue;
        };
        // One address however it is written (`2001:DB8:0::1` is `2001:db8::1`).
        let key = address
            .parse::<std::net::IpAddr>()
            .map_or_else(|_| address.to_ascii_lowercase(), |ip| ip.to_string());
        match first_at.get(&key) {
            Some(&first) => {
                let place = |h: &crate::model::Host| h.address_span.unwrap_or(h.span);
                let other = &fleet.hosts[first];
                let (again, before) = later_first(place(host), place(other));
                let (again_host, before_host) = if again == place(host) {
                    (host, other)
                } else {
                    (other, host)
                };
                diagnostics.push(
                    Diagnostic::error(
                        "E261",
                        format!(
                            "hosts `{}` and `{}` have the same address, {address}",
                            before_host.name, again_host.name
                        ),
                    )
                    .primary(again, format!("at the address of `{}`", before_host.name))
                    .secondary(before, "first here")
                    .help(format!(
                        "a host is one machine: fix the address of one, or give `{}` both hosts' roles",
                        before_host.name
                    )),
                );
            }
            None => {
                first_at.insert(key, id);
            }
        }
    }
    diagnostics
}

/// What listens on a port, put in words only when a conflict is reported
/// (a fleet has thousands of listeners and rarely a conflict).
#[derive(Clone, Copy)]
enum Listener<'f> {
    Platform(&'static str),
    App(&'f str),
    Cluster(&'f str),
    Redis(&'f str),
}

impl std::fmt::Display for Listener<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listener::Platform(what) => f.write_str(what),
            Listener::App(name) => write!(f, "app `{name}`"),
            Listener::Cluster(name) => write!(f, "Postgres cluster `{name}`"),
            Listener::Redis(name) => write!(f, "Redis `{name}`"),
        }
    }
}

/// Every port a host listens on: `(port, what, where in the spec)`, the
/// platform's own first so that the spec's choices are the ones blamed.
/// `apps` are the apps placed on the host and `clusters` every Postgres
/// cluster of the fleet, both worked out once for all hosts.
fn listeners<'f>(
    fleet: &'f Fleet,
    host: HostId,
    apps: &[AppId],
    clusters: &'f [clusters::Cluster],
) -> Vec<(u16, Listener<'f>, Span)> {
    use crate::context::{BUS_CONTROL_PORT, BUS_HEARTBEAT_PORT, BUS_LOGS_PORT};
    let span = fleet.hosts[host].span;
    let mut ports = vec![
        (
            BUS_CONTROL_PORT,
            Listener::Platform("the agent's control bus"),
            span,
        ),
        (
            BUS_HEARTBEAT_PORT,
            Listener::Platform("the agent's heartbeats"),
            span,
        ),
    ];
    if fleet.has_role(host, "logs") {
        ports.push((BUS_LOGS_PORT, Listener::Platform("the log collector"), span));
    }
    if fleet.has_role(host, "balancer") {
        ports.push((80, Listener::Platform("the balancer"), span));
        ports.push((
            9100,
            Listener::Platform("the balancer's admin listener"),
            span,
        ));
    }
    for &app in apps {
        let app = &fleet.apps[app];
        ports.push((app.port, Listener::App(&app.name), app.span));
    }
    for cluster in clusters
        .iter()
        .filter(|c| c.primary == host || c.standby == Some(host))
    {
        let db = &fleet.databases[cluster.databases[0]];
        let span = db.port_span.unwrap_or(db.span);
        ports.push((cluster.port, Listener::Cluster(&cluster.name), span));
    }
    for db in clusters::redis_on(fleet, host) {
        let db = &fleet.databases[db];
        ports.push((
            db.port,
            Listener::Redis(&db.name),
            db.port_span.unwrap_or(db.span),
        ));
    }
    ports
}

/// Two services on one port of one host.
fn port_conflict(fleet: &Fleet) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    // The apps on each host in app order, as `Fleet::apps_on` gives them, in
    // one pass over the placement rather than one per host.
    let mut apps_on: Vec<Vec<AppId>> = vec![Vec::new(); fleet.hosts.len()];
    for (app, hosts) in fleet.placement.iter().enumerate() {
        for &host in hosts {
            if apps_on[host].last() != Some(&app) {
                apps_on[host].push(app);
            }
        }
    }
    let clusters = clusters::clusters(fleet);
    for (host, apps) in apps_on.iter().enumerate() {
        let mut taken: BTreeMap<u16, (Listener, Span)> = BTreeMap::new();
        for (port, what, span) in listeners(fleet, host, apps, &clusters) {
            match taken.get(&port) {
                Some((first, first_span)) => {
                    // The platform's own ports stand at the host: the
                    // spec's choice is the one to change.
                    let platform = matches!(first, Listener::Platform(_));
                    let (again, before) = if platform {
                        (span, *first_span)
                    } else {
                        later_first(span, *first_span)
                    };
                    let (wants, has) = if again == span {
                        (what, *first)
                    } else {
                        (*first, what)
                    };
                    diagnostics.push(
                        Diagnostic::error(
                            "E257",
                            format!(
                                "{wants} and {has} both listen on port {port} of `{}`",
                                host_name(fleet, host)
                            ),
                        )
                        .primary(again, format!("{wants} wants port {port}"))
                        .secondary(before, format!("{has} has it"))
                        .help(
                            "set another `port` on the database, or move one of them to another host",
                        ),
                    );
                }
                None => {
                    taken.insert(port, (what, span));
                }
            }
        }
    }
    diagnostics
}

/// Hosts play the roles what runs on them needs, and the apps have runners
/// and balancers.
fn role_requirements(fleet: &Fleet) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    for db in &fleet.databases {
        let role = engine_role(db.engine);
        let mut places = vec![(db.primary, db.span, "primary")];
        if let Some((_, follower, span)) = followers(fleet).find(|(d, _, _)| d.name == db.name) {
            places.push((follower, span, follower_word(db.engine)));
        }
        for (host, span, what) in places {
            if !fleet.has_role(host, role) {
                let name = host_name(fleet, host);
                diagnostics.push(
                    Diagnostic::error(
                        "E258",
                        format!(
                            "`{name}`, the {what} of `{}`, has no `{role}` role",
                            db.name
                        ),
                    )
                    .primary(span, format!("a {role} database on `{name}`"))
                    .secondary(fleet.hosts[host].span, format!("`{name}` lacks `{role}`"))
                    .help(format!("add `{role}` to the roles of `{name}`")),
                );
            }
        }
    }
    if let Some(app) = fleet.apps.first() {
        for (role, why) in [
            ("runner", "no host would run it"),
            ("balancer", "no host would route its domains"),
        ] {
            if fleet.hosts_with_role(role).next().is_none() {
                diagnostics.push(
                    Diagnostic::error("E258", format!("no host has the `{role}` role"))
                        .primary(app.span, why)
                        .help(format!("add `{role}` to the roles of a host")),
                );
            }
        }
    }
    for app in &fleet.apps {
        for binding in &app.bindings {
            let db = &fleet.databases[binding.database];
            if binding.alias == "default" && db.engine == Engine::Redis {
                diagnostics.push(
                    Diagnostic::error(
                        "E259",
                        format!("app `{}` uses Redis `{}` as its `default` database", app.name, db.name),
                    )
                    .primary(binding.span, "a Redis database")
                    .secondary(db.span, "declared here")
                    .help("Django's `default` database must be Postgres; bind Redis under another name, such as `cache`"),
                );
            }
        }
    }
    diagnostics
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::schema::CHECKS;

    #[test]
    fn the_schema_names_every_rule_with_its_default() {
        let fields: Vec<&str> = CHECKS.fields.iter().map(|f| f.name).collect();
        let rules: Vec<&str> = RULES.iter().map(|(name, _, _)| *name).collect();
        assert_eq!(fields, rules);
        for (name, default, _) in RULES {
            let word = match default {
                Severity::Error => "(default error)",
                Severity::Warning => "(default warning)",
            };
            let doc = CHECKS.field(name).map(|f| f.doc).unwrap_or_default();
            assert!(
                doc.ends_with(word),
                "schema doc of `{name}` should end with {word}"
            );
        }
    }
}
