//! What the spec leaves to sitec: on which runners each app's replicas run,
//! which port each app listens on, its user's uid, and the addresses of
//! local hosts.
//!
//! Every choice is deterministic and stable: adding an app or a host moves
//! as little as possible of what was already placed (ports, uids and local
//! addresses come from a hash of the name, not from declaration order).

use super::{App, Fleet, HostId, ProviderId};
use crate::diagnostic::Diagnostic;
use std::collections::{BTreeMap, BTreeSet};

/// Ports apps listen on, on runners (nginx, towards the balancers).
const APP_PORTS: std::ops::Range<u16> = 8100..9000;
/// Where probing stops when more apps than `APP_PORTS` holds need a port.
const APP_PORTS_OVERFLOW_END: u16 = 18100;

/// FNV-1a: a tiny, stable hash (the standard library's is randomized).
pub fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Gives each app a port from its name's hash, probing past collisions in
/// name order, so an app keeps its port when others come and go. The hash
/// picks a port in 8100..9000; probing runs on past 9000 (up to 18100) when
/// that range is full, so a fleet of more than 900 apps still gets a port
/// for each (it used to probe forever).
pub fn assign_ports(apps: &mut [App]) {
    let span = usize::from(APP_PORTS.end - APP_PORTS.start);
    let limit = usize::from(APP_PORTS_OVERFLOW_END - APP_PORTS.start);
    for (id, slot) in hashed_slots(apps, span, limit) {
        apps[id].port = APP_PORTS.start + u16::try_from(slot).unwrap_or(0);
    }
}

/// The uids of the apps' users (`app-APP`): every host gives an app's user
/// the same one, so files on a volume the runners share (media) keep their
/// owner. Outside the ranges Debian allocates (system users count down from
/// 999, people's up from 1000), below Debian's reserved 60000.
pub const APP_UIDS: std::ops::Range<u32> = 40000..60000;

/// Gives each app a uid from its name's hash, probing past collisions in
/// name order like the ports: an app keeps its uid when others come and go
/// (a newcomer that sorts first and hashes to a taken uid moves the other:
/// one pair in 20000; the moved app's hosts then say so at plan).
pub fn assign_uids(apps: &mut [App]) {
    let span = (APP_UIDS.end - APP_UIDS.start) as usize;
    for (id, slot) in hashed_slots(apps, span, span) {
        apps[id].uid = APP_UIDS.start + u32::try_from(slot).unwrap_or(0);
    }
}

/// A slot in `0..limit` for each app, `(app, slot)`: the first free one from
/// its name's hash in `0..span` on, else the first free one from 0, taken
/// in name order. Bounded, so no loop runs forever even if every slot is
/// taken (then slots repeat).
fn hashed_slots(apps: &[App], span: usize, limit: usize) -> Vec<(usize, usize)> {
    let mut free = FreeSlots::new(limit);
    let mut order: Vec<usize> = (0..apps.len()).collect();
    order.sort_by(|a, b| apps[*a].name.cmp(&apps[*b].name));
    let mut slots = Vec::with_capacity(apps.len());
    for id in order {
        let start = usize::try_from(stable_hash(&apps[id].name) % span as u64).unwrap_or(0);
        let slot = free
            .first_from(start)
            .or_else(|| free.first_from(0))
            .unwrap_or(start);
        free.take(slot);
        slots.push((id, slot));
    }
    slots
}

/// Slots `0..limit`, finding the first free one at or after a slot in
/// near-constant time: each taken slot points further on, and a lookup
/// shortens the paths it walks. Probing one slot at a time made port
/// assignment quadratic once the hashed range was full (past 900 apps).
struct FreeSlots {
    /// For a free slot itself; for a taken one a later slot to look at
    /// (`limit` when none is free).
    next: Vec<usize>,
}

impl FreeSlots {
    fn new(limit: usize) -> FreeSlots {
        FreeSlots {
            next: (0..=limit).collect(),
        }
    }

    fn first_from(&mut self, slot: usize) -> Option<usize> {
        let limit = self.next.len() - 1;
        let mut root = slot.min(limit);
        while self.next[root] != root {
            root = self.next[root];
        }
        let mut at = slot.min(limit);
        while self.next[at] != root {
            let next = self.next[at];
            self.next[at] = root;
            at = next;
        }
        (root < limit).then_some(root)
    }

    fn take(&mut self, slot: usize) {
        if slot + 1 < self.next.len() {
            self.next[slot] = slot + 1;
        }
    }
}

/// Places every app's replicas on runners: pinned runners as given, others
/// spread over providers first, then over the least loaded runners.
pub fn place_apps(fleet: &Fleet, diagnostics: &mut Vec<Diagnostic>) -> Vec<Vec<HostId>> {
    let runners: Vec<HostId> = fleet.hosts_with_role("runner").collect();
    let mut load = vec![0usize; fleet.hosts.len()];
    // The runners of each provider as `(load, host)`, least loaded first, so
    // a choice looks at one runner per provider instead of at every runner
    // (a scan of every runner for every replica made placement quadratic).
    let mut pools: BTreeMap<ProviderId, BTreeSet<(usize, HostId)>> = BTreeMap::new();
    for &host in &runners {
        pools
            .entry(fleet.hosts[host].provider)
            .or_default()
            .insert((0, host));
    }
    let mut placement = Vec::with_capacity(fleet.apps.len());
    for app in &fleet.apps {
        let chosen = if app.pinned.is_empty() {
            choose(fleet, app, runners.len(), &pools, diagnostics)
        } else {
            pinned(fleet, app, diagnostics)
        };
        for &host in &chosen {
            if let Some(pool) = pools.get_mut(&fleet.hosts[host].provider) {
                if pool.remove(&(load[host], host)) {
                    pool.insert((load[host] + 1, host));
                }
            }
            load[host] += 1;
        }
        placement.push(chosen);
    }
    placement
}

fn pinned(fleet: &Fleet, app: &App, diagnostics: &mut Vec<Diagnostic>) -> Vec<HostId> {
    for (n, host) in app.pinned.iter().enumerate() {
        if !fleet.has_role(*host, "runner") {
            let written = app.pinned_spans.get(n).copied().unwrap_or(app.span);
            diagnostics.push(
                Diagnostic::error(
                    "E201",
                    format!(
                        "app `{}` is pinned to `{}`, which is not a runner",
                        app.name, fleet.hosts[*host].name
                    ),
                )
                .primary(written, format!("runs on {}", fleet.hosts[*host].name))
                .secondary(fleet.hosts[*host].span, "this host has no `runner` role")
                .help("add `runner` to the host's roles, or pin the app elsewhere"),
            );
        }
    }
    if app.replicas as usize > app.pinned.len() {
        diagnostics.push(
            Diagnostic::error(
                "E200",
                format!(
                    "app `{}` wants {} replicas but is pinned to {} runners",
                    app.name,
                    app.replicas,
                    app.pinned.len()
                ),
            )
            .primary(app.replicas_span, "too many replicas")
            .help("pin it to more runners, or lower `replicas`"),
        );
    }
    // A set, like the runners `choose` picks: `[run3, run2]` places as `[run2, run3]`.
    let mut hosts = app.pinned.clone();
    hosts.sort_unstable();
    hosts.dedup();
    hosts
}

/// Picks `app.replicas` runners one at a time: the one with the fewest
/// replicas of this app at its provider, then the least loaded, then the
/// lowest `HostId` (hosts are numbered in name order). Within one provider
/// the first of its pool not yet chosen is that provider's best, so only
/// those are compared.
fn choose(
    fleet: &Fleet,
    app: &App,
    runners: usize,
    pools: &BTreeMap<ProviderId, BTreeSet<(usize, HostId)>>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<HostId> {
    let wanted = app.replicas as usize;
    if wanted > runners {
        let message = if runners == 0 {
            format!("app `{}` has no runner to run on", app.name)
        } else {
            format!(
                "app `{}` wants {wanted} replicas but the fleet has {runners} runners",
                app.name,
            )
        };
        diagnostics.push(
            Diagnostic::error("E200", message)
                .primary(app.replicas_span, "replicas are placed on distinct runners")
                .help("give more hosts the `runner` role, or lower `replicas`"),
        );
    }
    let mut chosen: Vec<HostId> = Vec::new();
    // How many of `chosen` each provider holds.
    let mut same_provider: BTreeMap<ProviderId, usize> = BTreeMap::new();
    while chosen.len() < wanted.min(runners) {
        let best = pools
            .iter()
            .filter_map(|(provider, pool)| {
                let (load, host) = pool.iter().find(|(_, h)| !chosen.contains(h))?;
                let same = same_provider.get(provider).copied().unwrap_or(0);
                Some((same, *load, *host))
            })
            .min();
        match best {
            Some((_, _, host)) => {
                chosen.push(host);
                *same_provider.entry(fleet.hosts[host].provider).or_default() += 1;
            }
            None => break,
        }
    }
    chosen.sort_unstable();
    chosen
}

/// How many local hosts `10.77.0.0/24` holds: `.10` to `.250`.
pub const LOCAL_SLOTS: usize = 241;

/// Addresses for hosts of local providers that have none: `10.77.0.N`,
/// N from the name's hash in 10..=250, probing past collisions. More such
/// hosts than the subnet holds is an error (E202) on the first one left
/// over, in declaration order; only the first `LOCAL_SLOTS` by name get one.
pub fn local_addresses(
    fleet: &Fleet,
    diagnostics: &mut Vec<Diagnostic>,
) -> std::collections::BTreeMap<HostId, String> {
    let mut taken: BTreeSet<u64> = BTreeSet::new();
    let mut addresses = std::collections::BTreeMap::new();
    let mut local: Vec<HostId> = (0..fleet.hosts.len())
        .filter(|h| {
            fleet.hosts[*h].address.is_none()
                && fleet.provider_of(*h).kind == super::ProviderKind::Local
        })
        .collect();
    if let Some(&over) = local.get(LOCAL_SLOTS) {
        diagnostics.push(
            Diagnostic::error(
                "E202",
                format!(
                    "{} hosts of `local` providers have no `address`, but {}.0/24 has room for {LOCAL_SLOTS}",
                    local.len(),
                    super::LOCAL_SUBNET
                ),
            )
            .primary(fleet.hosts[over].span, "no local address is left for this host")
            .help("give some of these hosts an `address`, or fewer hosts a `local` provider"),
        );
    }
    local.sort_by(|a, b| fleet.hosts[*a].name.cmp(&fleet.hosts[*b].name));
    for host in local.into_iter().take(LOCAL_SLOTS) {
        let mut n = stable_hash(&fleet.hosts[host].name) % LOCAL_SLOTS as u64;
        while taken.contains(&n) {
            n = (n + 1) % LOCAL_SLOTS as u64;
        }
        taken.insert(n);
        addresses.insert(host, format!("{}.{}", super::LOCAL_SUBNET, n + 10));
    }
    addresses
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `FreeSlots` picks what probing slot by slot picks, full range included.
    #[test]
    fn free_slots_find_what_probing_finds() {
        let limit = 50;
        let mut free = FreeSlots::new(limit);
        let mut taken = vec![false; limit];
        for n in 0..80u64 {
            let start = usize::try_from(stable_hash(&format!("app{n}")) % 20).unwrap_or(0);
            let probed = (start..limit)
                .chain(0..start)
                .find(|s| !taken[*s])
                .unwrap_or(start);
            let found = free
                .first_from(start)
                .or_else(|| free.first_from(0))
                .unwrap_or(start);
            assert_eq!(found, probed, "app{n}");
            taken[probed] = true;
            free.take(found);
        }
    }

    use crate::source::SourceMap;

    fn local_fleet(hosts: usize) -> String {
        let mut text = String::from("provider here { kind = local }\n");
        for n in 0..hosts {
            text.push_str(&format!("host h{n} {{ provider = here }}\n"));
        }
        text
    }

    /// The apps' uids: in `APP_UIDS`, one per app, and the same whatever
    /// order the spec declares the apps in.
    #[test]
    fn app_uids_are_distinct_and_ignore_declaration_order() {
        let app = |name: &str| {
            format!(
                "app {name} {{ source = \"apps/{name}\"  wsgi = \"{name}.wsgi:application\"  domains = [\"{name}.example.com\"] }}\n"
            )
        };
        let names: Vec<String> = (0..40).map(|n| format!("app{n}")).collect();
        let uids = |order: &mut dyn Iterator<Item = &String>| {
            let mut text = String::from(
                "use std/platform\nprovider p { kind = local }\nhost h { provider = p  roles = [runner, balancer] }\n",
            );
            text.extend(order.map(|n| app(n)));
            let mut sources = SourceMap::new();
            let (uids, diagnostics) =
                crate::compile::with_fleet_text(&mut sources, "uids.site", &text, |fleet, _| {
                    let mut uids: Vec<(String, u32)> =
                        fleet.apps.iter().map(|a| (a.name.clone(), a.uid)).collect();
                    uids.sort();
                    uids
                });
            uids.unwrap_or_else(|| panic!("{diagnostics:?}"))
        };
        let forward = uids(&mut names.iter());
        assert_eq!(forward, uids(&mut names.iter().rev()));
        let mut distinct: Vec<u32> = forward.iter().map(|(_, uid)| *uid).collect();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), names.len());
        assert!(
            distinct.iter().all(|uid| APP_UIDS.contains(uid)),
            "{distinct:?}"
        );
    }

    #[test]
    fn a_full_local_subnet_is_a_spec_error() {
        let mut sources = SourceMap::new();
        let report = crate::compile::check_text(&mut sources, "full.site", &local_fleet(241));
        assert!(!report.diagnostics.iter().any(|d| d.code == "E202"));
        let mut sources = SourceMap::new();
        let report = crate::compile::check_text(&mut sources, "full.site", &local_fleet(243));
        let full: Vec<_> = report
            .diagnostics
            .iter()
            .filter(|d| d.code == "E202")
            .collect();
        assert_eq!(full.len(), 1, "{:?}", report.diagnostics);
        assert!(full[0].message.contains("243 hosts"), "{}", full[0].message);
    }
}
