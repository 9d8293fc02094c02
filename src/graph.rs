//! The resource graph: in what order each host's resources are applied, and
//! which hosts wait for which.
//!
//! Edges inside a host: a resource requires what it names in `requires`, the
//! directory it sits in, the user that owns it, a service its unit file, and
//! a notified service comes after what notifies it. Edges across hosts: a
//! database primary before its standby, runners before the balancers that
//! route to them. Order is deterministic: among resources that are ready,
//! the one declared first goes first. A cycle is an error naming every
//! resource on it. Built with petgraph; pure.

use crate::diagnostic::Diagnostic;
use crate::expand::HostResources;
use crate::model::{Fleet, HostId};
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
        if let Some(owner) = owner_of(&r.kind).and_then(|o| users.get(o)) {
            if *owner != i {
                edges.insert((*owner, i, 0));
            }
        }
    }
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

fn path_of(kind: &Kind) -> Option<&str> {
    match kind {
        Kind::Directory { path, .. }
        | Kind::File { path, .. }
        | Kind::Symlink { path, .. }
        | Kind::Virtualenv { path, .. }
        | Kind::Tree { path, .. }
        | Kind::Subvolume { path } => Some(path),
        _ => None,
    }
}

fn owner_of(kind: &Kind) -> Option<&str> {
    match kind {
        Kind::Directory { owner, .. }
        | Kind::File { owner, .. }
        | Kind::Virtualenv { owner, .. }
        | Kind::Tree { owner, .. } => Some(owner),
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
    // What is left holds a cycle; walk it from any leftover node.
    let left: BTreeSet<usize> = (0..indegree.len()).filter(|i| indegree[*i] > 0).collect();
    let mut cycle = Vec::new();
    let mut at = left.first().copied().unwrap_or(0);
    while !cycle.contains(&at) {
        cycle.push(at);
        at = graph
            .neighbors_directed(NodeIndex::new(at), petgraph::Direction::Outgoing)
            .map(|n| n.index())
            .find(|n| left.contains(n))
            .unwrap_or(at);
    }
    let start = cycle.iter().position(|n| *n == at).unwrap_or(0);
    Err(cycle[start..].to_vec())
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
    for db in &fleet.databases {
        if let Some(follower) = db.follower {
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

/// Graphviz dot of every host's graph (and the cross-host order).
pub fn to_dot(fleet: &Fleet, hosts: &[HostResources], graphs: &[HostGraph]) -> String {
    let mut out = String::from("digraph sitec {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\", fontsize=10];\n");
    for (h, g) in hosts.iter().zip(graphs) {
        let host = &fleet.hosts[h.host].name;
        out.push_str(&format!(
            "  subgraph \"cluster_{host}\" {{\n    label=\"{host}\";\n"
        ));
        for i in &g.order {
            out.push_str(&format!(
                "    \"{host}/{}\" [label=\"{}\"];\n",
                h.resources[*i].id, h.resources[*i].id
            ));
        }
        for e in g.graph.edge_indices() {
            let Some((a, b)) = g.graph.edge_endpoints(e) else {
                continue;
            };
            let style = if g.graph[e] == Edge::Notifies {
                " [style=dashed, label=\"notifies\"]"
            } else {
                ""
            };
            out.push_str(&format!(
                "    \"{host}/{}\" -> \"{host}/{}\"{style};\n",
                h.resources[a.index()].id,
                h.resources[b.index()].id
            ));
        }
        out.push_str("  }\n");
    }
    for (before, after, why) in host_order(fleet) {
        let (b, a) = (&fleet.hosts[before].name, &fleet.hosts[after].name);
        let (Some(first_b), Some(first_a)) = (first_id(hosts, before), first_id(hosts, after))
        else {
            continue;
        };
        out.push_str(&format!(
            "  \"{b}/{first_b}\" -> \"{a}/{first_a}\" [color=blue, ltail=\"cluster_{b}\", lhead=\"cluster_{a}\", label=\"{why}\"];\n"
        ));
    }
    out.push_str("}\n");
    out
}

fn first_id(hosts: &[HostResources], host: HostId) -> Option<&str> {
    hosts
        .iter()
        .find(|h| h.host == host)?
        .resources
        .first()
        .map(|r| r.id.as_str())
}
