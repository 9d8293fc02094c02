//! The resource graph: in what order each host's resources are applied, and
//! which hosts wait for which.
//!
//! Edges inside a host: a resource requires what it names in `requires`, the
//! directory it sits in, the user that owns it, a service its unit file, and
//! a notified service comes after what notifies it; and, for every role,
//! subvolumes before packages, files of the packages' users after the
//! packages, folders before services (`class_edges`). Edges across hosts: a
//! database primary before its standby, runners before the balancers that
//! route to them. Order is deterministic: among resources that are ready,
//! the one declared first goes first. A cycle is an error naming every
//! resource on it. Built with petgraph; pure.

use crate::diagnostic::Diagnostic;
use crate::expand::HostResources;
use crate::model::{Engine, Fleet, HostId};
use crate::resources::{Kind, Resource};
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::{BTreeMap, BTreeSet};

/// Why one resource comes before another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Edge {
    Requires,
    Notifies,
}

/// One host's resources as a graph, and the order to apply them in.
pub struct HostGraph {
    pub host: HostId,
    pub graph: DiGraph<usize, Edge>,
    /// Indices into the host's resources, in apply order.
    pub order: Vec<usize>,
}

/// Builds every host's graph; reports cycles.
pub fn build(hosts: &[HostResources]) -> (Vec<HostGraph>, Vec<Diagnostic>) {
    let mut diagnostics = Vec::new();
    let graphs = hosts
        .iter()
        .map(|h| {
            let graph = host_graph(&h.resources);
            let order = match order(&graph) {
                Ok(order) => order,
                Err(cycle) => {
                    diagnostics.push(cycle_error(&h.resources, &cycle));
                    (0..h.resources.len()).collect()
                }
            };
            HostGraph {
                host: h.host,
                graph,
                order,
            }
        })
        .collect();
    (graphs, diagnostics)
}

fn host_graph(resources: &[Resource]) -> DiGraph<usize, Edge> {
    let mut graph = DiGraph::new();
    let nodes: Vec<NodeIndex> = (0..resources.len()).map(|i| graph.add_node(i)).collect();
    let by_id: BTreeMap<&str, usize> = resources
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.as_str(), i))
        .collect();
    let users: BTreeMap<&str, usize> = resources
        .iter()
        .enumerate()
        .filter_map(|(i, r)| match &r.kind {
            Kind::User { name, .. } => Some((name.as_str(), i)),
            _ => None,
        })
        .collect();
    let folders: BTreeMap<&str, usize> = resources
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            matches!(
                r.kind,
                Kind::Directory { .. } | Kind::Tree { .. } | Kind::Subvolume { .. }
            )
        })
        .filter_map(|(i, r)| Some((path_of(&r.kind)?, i)))
        .collect();
    let mut edges: BTreeSet<(usize, usize, u8)> = BTreeSet::new();
    for (i, r) in resources.iter().enumerate() {
        for required in &r.requires {
            if let Some(&j) = by_id.get(required.as_str()) {
                edges.insert((j, i, 0));
            }
        }
        for notified in &r.notifies {
            if let Some(&j) = by_id.get(notified.as_str()) {
                edges.insert((i, j, 1));
            }
        }
        // The closest managed folder above a path comes first.
        if let Some(parent) = containing(&folders, resources, i) {
            edges.insert((parent, i, 0));
        }
        // The user (or the group a user of that name has) comes first.
        for owner in owners_of(&r.kind).into_iter().filter_map(|o| users.get(o)) {
            if *owner != i {
                edges.insert((*owner, i, 0));
            }
        }
    }
    class_edges(resources, &users, &mut edges);
    for (from, to, kind) in edges {
        let edge = if kind == 0 {
            Edge::Requires
        } else {
            Edge::Notifies
        };
        graph.add_edge(nodes[from], nodes[to], edge);
    }
    graph
}

/// Orders kinds of resources as a class, whatever a role declares:
///
/// - data before software: a subvolume comes before every package, command
///   and service of its host but those it requires itself (btrfs-progs). A
///   package fills the folders it owns as it installs (postgresql makes
///   `/var/lib/postgresql/15/main`), and `btrfs subvolume create` fails on
///   a folder that exists, so a data folder made after its package can
///   never be one;
/// - system users' files after packages: a path owned by a user (or group)
///   that no resource of the host declares comes after every package, as
///   the packages make those users (`postgres`, `redis`);
/// - folders before daemons: every service starts after every directory
///   and subvolume of its host, so none starts before the folder it
///   writes in exists (a Redis server before its data folder).
fn class_edges(
    resources: &[Resource],
    users: &BTreeMap<&str, usize>,
    edges: &mut BTreeSet<(usize, usize, u8)>,
) {
    let of = |f: fn(&Kind) -> bool| -> Vec<usize> {
        (0..resources.len())
            .filter(|i| f(&resources[*i].kind))
            .collect()
    };
    let packages = of(|k| matches!(k, Kind::Package { .. }));
    let software = of(|k| {
        matches!(
            k,
            Kind::Package { .. } | Kind::Command { .. } | Kind::Service { .. }
        )
    });
    let folders = of(|k| matches!(k, Kind::Directory { .. } | Kind::Subvolume { .. }));
    let services = of(|k| matches!(k, Kind::Service { .. }));
    for (i, r) in resources.iter().enumerate() {
        if matches!(r.kind, Kind::Subvolume { .. }) {
            for &s in &software {
                if !r.requires.contains(&resources[s].id) {
                    edges.insert((i, s, 0));
                }
            }
        }
        let system_owned = owners_of(&r.kind)
            .iter()
            .any(|o| *o != "root" && !users.contains_key(o));
        if system_owned {
            for &p in &packages {
                edges.insert((p, i, 0));
            }
        }
    }
    for &s in &services {
        for &f in &folders {
            edges.insert((f, s, 0));
        }
    }
}

/// The owner and group of a path resource.
fn owners_of(kind: &Kind) -> Vec<&str> {
    match kind {
        Kind::Directory { owner, group, .. } | Kind::File { owner, group, .. } => {
            vec![owner, group]
        }
        Kind::Virtualenv { owner, .. } | Kind::Tree { owner, .. } => vec![owner],
        _ => Vec::new(),
    }
}

fn path_of(kind: &Kind) -> Option<&str> {
    match kind {
        Kind::Directory { path, .. }
        | Kind::File { path, .. }
        | Kind::Symlink { path, .. }
        | Kind::Virtualenv { path, .. }
        | Kind::Tree { path, .. }
        | Kind::Subvolume { path }
        | Kind::Python { path, .. } => Some(path),
        _ => None,
    }
}

/// The resource whose path is the longest proper prefix folder of `i`'s:
/// the first managed folder walking up from it (`folders`: path to index).
fn containing(folders: &BTreeMap<&str, usize>, resources: &[Resource], i: usize) -> Option<usize> {
    let mut path = path_of(&resources[i].kind)?;
    while let Some(slash) = path.rfind('/') {
        path = &path[..slash];
        if let Some(&j) = folders.get(path).filter(|j| **j != i) {
            return Some(j);
        }
    }
    None
}

/// Kahn's algorithm, taking the earliest-declared ready resource each time.
/// On a cycle, returns the resources on it.
fn order(graph: &DiGraph<usize, Edge>) -> Result<Vec<usize>, Vec<usize>> {
    let mut indegree: Vec<usize> = graph
        .node_indices()
        .map(|n| {
            graph
                .neighbors_directed(n, petgraph::Direction::Incoming)
                .count()
        })
        .collect();
    let mut ready: BTreeSet<usize> = (0..indegree.len()).filter(|i| indegree[*i] == 0).collect();
    let mut order = Vec::with_capacity(indegree.len());
    while let Some(next) = ready.pop_first() {
        order.push(next);
        for succ in graph.neighbors_directed(NodeIndex::new(next), petgraph::Direction::Outgoing) {
            let s = succ.index();
            indegree[s] -= 1;
            if indegree[s] == 0 {
                ready.insert(s);
            }
        }
    }
    if order.len() == indegree.len() {
        return Ok(order);
    }
    // What is left holds a cycle, and what waits on it. Every node left
    // still waits for one left (its indegree counts only those), so walking
    // back along those edges from any of them must come round: a cycle.
    let left: BTreeSet<usize> = (0..indegree.len()).filter(|i| indegree[*i] > 0).collect();
    let mut walked = Vec::new();
    let mut at = left.first().copied().unwrap_or(0);
    while !walked.contains(&at) {
        walked.push(at);
        at = graph
            .neighbors_directed(NodeIndex::new(at), petgraph::Direction::Incoming)
            .map(|n| n.index())
            .find(|n| left.contains(n))
            .unwrap_or(at);
    }
    let start = walked.iter().position(|n| *n == at).unwrap_or(0);
    let mut cycle = walked[start..].to_vec();
    // Walked backwards; the circle reads forwards from its first declared.
    cycle.reverse();
    let first = (0..cycle.len()).min_by_key(|i| cycle[*i]).unwrap_or(0);
    cycle.rotate_left(first);
    Err(cycle)
}

fn cycle_error(resources: &[Resource], cycle: &[usize]) -> Diagnostic {
    let mut names: Vec<&str> = cycle.iter().map(|i| resources[*i].id.as_str()).collect();
    if let Some(first) = names.first().copied() {
        names.push(first);
    }
    let mut diagnostic = Diagnostic::error(
        "E230",
        format!(
            "resources depend on each other in a circle: {}",
            names.join(" -> ")
        ),
    )
    .help("remove one of the `requires` or `notify` that close the circle");
    for (n, i) in cycle.iter().enumerate() {
        let label = if n == 0 {
            "this one waits for the last"
        } else {
            "on the circle"
        };
        diagnostic = if n == 0 {
            diagnostic.primary(resources[*i].span, label)
        } else {
            diagnostic.secondary(resources[*i].span, label)
        };
    }
    diagnostic
}

/// Hosts that must be changed before others: `(before, after, why)`.
pub fn host_order(fleet: &Fleet) -> Vec<(HostId, HostId, String)> {
    let mut edges = Vec::new();
    // A Postgres standby is cloned from its primary at its first apply; a
    // Redis replica only keeps asking its primary until it answers, so it
    // needs no order (and a host that is Postgres primary of one and Redis
    // replica of another, as after a failover of one of them, is no cycle).
    for db in &fleet.databases {
        if let (Some(follower), Engine::Postgres) = (db.follower, db.engine) {
            if follower != db.primary {
                edges.push((
                    db.primary,
                    follower,
                    format!("database {}: primary before its follower", db.name),
                ));
            }
        }
    }
    // Migrations need the database before the app's first release starts.
    for (app, a) in fleet.apps.iter().enumerate() {
        for binding in &a.bindings {
            let primary = fleet.databases[binding.database].primary;
            for runner in &fleet.placement[app] {
                if *runner != primary {
                    edges.push((
                        primary,
                        *runner,
                        format!(
                            "database {}: before the runners of app {}",
                            fleet.databases[binding.database].name, a.name
                        ),
                    ));
                }
            }
        }
    }
    for balancer in fleet.hosts_with_role("balancer") {
        for runner in fleet.hosts_with_role("runner") {
            if runner != balancer && fleet.apps_on(runner).next().is_some() {
                edges.push((
                    runner,
                    balancer,
                    "runners before the balancers that route to them".to_string(),
                ));
            }
        }
    }
    edges.sort();
    edges.dedup();
    edges
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(kind: Kind, requires: &[&str]) -> Resource {
        Resource {
            id: crate::resources::id(&kind),
            kind,
            role: "r".into(),
            origin: String::new(),
            because: String::new(),
            requires: requires.iter().map(|r| r.to_string()).collect(),
            notifies: Vec::new(),
            span: crate::source::Span::default(),
        }
    }

    fn package(name: &str) -> Kind {
        Kind::Package {
            name: name.into(),
            version: None,
        }
    }

    fn directory(path: &str, owner: &str) -> Kind {
        Kind::Directory {
            path: path.into(),
            owner: owner.into(),
            group: owner.into(),
            mode: "0750".into(),
        }
    }

    /// Declared in the order that broke a first apply (the package that
    /// fills the data folder, the server, then its folder and the
    /// subvolume under it), applied in the order that works.
    #[test]
    fn data_folders_come_before_the_software_that_writes_in_them() {
        let resources = vec![
            resource(package("redis-server"), &[]),
            resource(
                Kind::Service {
                    name: "redis-server@cache".into(),
                    enabled: true,
                    running: true,
                    reload: None,
                    restart: None,
                    validate: None,
                },
                &["package:redis-server"],
            ),
            resource(directory("/var/lib/redis/cache", "redis"), &[]),
            resource(package("btrfs-progs"), &[]),
            resource(
                Kind::Subvolume {
                    path: "/var/lib/redis".into(),
                },
                &["package:btrfs-progs"],
            ),
        ];
        let graph = host_graph(&resources);
        let order: Vec<&str> = order(&graph)
            .expect("no cycle")
            .into_iter()
            .map(|i| resources[i].id.as_str())
            .collect();
        assert_eq!(
            order,
            [
                "package:btrfs-progs",
                "subvolume:/var/lib/redis",
                "package:redis-server",
                "directory:/var/lib/redis/cache",
                "service:redis-server@cache",
            ]
        );
    }
}
