//! The bus's topology, derived from the spec: every ZeroMQ socket of every
//! host, which ones bind and which connect, and to what.
//!
//! - every host's agent binds a ROUTER for control (`:7701`) and a PUB for
//!   heartbeats (`:7702`);
//! - every balancer's SUB connects to every runner agent's PUB (the
//!   balancer learns which runners are alive);
//! - every agent's DEALER connects to each `logs` host's ROUTER (`:7703`),
//!   shipping log lines the collector acknowledges;
//! - the operator's DEALER (the `sitec` CLI) connects to every agent's
//!   ROUTER.
//!
//! Every socket speaks CURVE (`bus`): a bound socket admits only the keys
//! its config lists, a connecting one checks the bound one's key.
//!
//! `sitec graph --bus` draws it (dot) or prints it (JSON). Pure: no sockets
//! are opened here.

use crate::context::{BUS_CONTROL_PORT, BUS_HEARTBEAT_PORT, BUS_LOGS_PORT};
use crate::model::Fleet;
use serde::Serialize;

/// The host name the operator's machine goes by.
pub const OPERATOR: &str = "operator";

/// A ZeroMQ socket type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SocketType {
    Router,
    Dealer,
    Pub,
    Sub,
}

/// Whether a socket binds an endpoint or connects to others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Bind,
    Connect,
}

/// One socket of one process on one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Socket {
    /// `run1/agent/heartbeats`
    pub id: String,
    /// A fleet host, or `operator`.
    pub host: String,
    /// `agent`, `balancer`, `collector` or `cli`.
    pub process: &'static str,
    /// `control`, `heartbeats` or `logs`.
    pub purpose: &'static str,
    #[serde(rename = "type")]
    pub socket_type: SocketType,
    pub mode: Mode,
    /// What a bound socket binds; for a connecting socket, every endpoint
    /// it connects to.
    pub endpoints: Vec<String>,
}

/// A connection: the connecting socket `from` reaches the bound socket `to`
/// at `endpoint`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    pub from: String,
    pub to: String,
    pub endpoint: String,
    pub purpose: &'static str,
}

/// The whole bus.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Topology {
    pub sockets: Vec<Socket>,
    pub links: Vec<Link>,
}

/// Where peers reach the socket `host` binds at `port` (the agents' and
/// the balancers' configs name the same endpoints as the topology).
pub fn endpoint(fleet: &Fleet, host: usize, port: u16) -> String {
    format!("tcp://{}:{port}", fleet.address(host))
}

/// Derives the bus from the fleet.
pub fn derive(fleet: &Fleet) -> Topology {
    let endpoint = |host: usize, port: u16| endpoint(fleet, host, port);
    let id = |host: &str, process: &str, purpose: &str| format!("{host}/{process}/{purpose}");
    let hosts = 0..fleet.hosts.len();
    let name = |h: usize| fleet.hosts[h].name.clone();
    let mut bus = Topology::default();
    let bind = |bus: &mut Topology, host: usize, process, purpose, socket_type, port| {
        bus.sockets.push(Socket {
            id: id(&fleet.hosts[host].name, process, purpose),
            host: name(host),
            process,
            purpose,
            socket_type,
            mode: Mode::Bind,
            endpoints: vec![endpoint(host, port)],
        });
    };
    // What each host binds.
    for h in hosts.clone() {
        bind(
            &mut bus,
            h,
            "agent",
            "control",
            SocketType::Router,
            BUS_CONTROL_PORT,
        );
        bind(
            &mut bus,
            h,
            "agent",
            "heartbeats",
            SocketType::Pub,
            BUS_HEARTBEAT_PORT,
        );
        if fleet.has_role(h, "logs") {
            bind(
                &mut bus,
                h,
                "collector",
                "logs",
                SocketType::Router,
                BUS_LOGS_PORT,
            );
        }
    }
    // Who connects to what: (host, process, purpose, type, peers, port, peer process).
    let runners: Vec<usize> = fleet.hosts_with_role("runner").collect();
    let collectors: Vec<usize> = fleet.hosts_with_role("logs").collect();
    let all: Vec<usize> = hosts.clone().collect();
    let connect = |bus: &mut Topology,
                   host: String,
                   process: &'static str,
                   purpose: &'static str,
                   socket_type,
                   peers: &[usize],
                   port: u16,
                   peer_process: &str| {
        let from = id(&host, process, purpose);
        let endpoints: Vec<String> = peers.iter().map(|p| endpoint(*p, port)).collect();
        for (peer, endpoint) in peers.iter().zip(&endpoints) {
            bus.links.push(Link {
                from: from.clone(),
                to: id(&fleet.hosts[*peer].name, peer_process, purpose),
                endpoint: endpoint.clone(),
                purpose,
            });
        }
        bus.sockets.push(Socket {
            id: from,
            host,
            process,
            purpose,
            socket_type,
            mode: Mode::Connect,
            endpoints,
        });
    };
    for h in hosts {
        if fleet.has_role(h, "balancer") && !runners.is_empty() {
            let port = BUS_HEARTBEAT_PORT;
            connect(
                &mut bus,
                name(h),
                "balancer",
                "heartbeats",
                SocketType::Sub,
                &runners,
                port,
                "agent",
            );
        }
        if !collectors.is_empty() {
            let port = BUS_LOGS_PORT;
            connect(
                &mut bus,
                name(h),
                "agent",
                "logs",
                SocketType::Dealer,
                &collectors,
                port,
                "collector",
            );
        }
    }
    if !all.is_empty() {
        let port = BUS_CONTROL_PORT;
        connect(
            &mut bus,
            OPERATOR.to_string(),
            "cli",
            "control",
            SocketType::Dealer,
            &all,
            port,
            "agent",
        );
    }
    bus
}

/// Graphviz dot: one cluster per host, edges labelled with the socket types
/// and the endpoint.
pub fn to_dot(bus: &Topology) -> String {
    let mut out = String::from(
        "digraph bus {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\", fontsize=10];\n  edge [fontname=\"monospace\", fontsize=9];\n",
    );
    let mut hosts: Vec<&str> = Vec::new();
    for socket in &bus.sockets {
        if !hosts.contains(&socket.host.as_str()) {
            hosts.push(&socket.host);
        }
    }
    for host in hosts {
        out.push_str(&format!(
            "  subgraph \"cluster_{host}\" {{\n    label=\"{host}\";\n"
        ));
        for s in bus.sockets.iter().filter(|s| s.host == host) {
            let mode = match s.mode {
                Mode::Bind => format!("bind {}", s.endpoints.join(" ")),
                Mode::Connect => "connect".to_string(),
            };
            out.push_str(&format!(
                "    \"{}\" [label=\"{} {} {}\\n{mode}\"];\n",
                s.id,
                s.process,
                s.socket_type.name(),
                s.purpose
            ));
        }
        out.push_str("  }\n");
    }
    let type_of = |id: &str| {
        bus.sockets
            .iter()
            .find(|s| s.id == id)
            .map_or("?", |s| s.socket_type.name())
    };
    for link in &bus.links {
        out.push_str(&format!(
            "  \"{}\" -> \"{}\" [label=\"{}->{} {}\"];\n",
            link.from,
            link.to,
            type_of(&link.from),
            type_of(&link.to),
            link.endpoint
        ));
    }
    out.push_str("}\n");
    out
}

impl SocketType {
    /// As ZeroMQ spells it: `ROUTER`.
    pub fn name(self) -> &'static str {
        match self {
            SocketType::Router => "ROUTER",
            SocketType::Dealer => "DEALER",
            SocketType::Pub => "PUB",
            SocketType::Sub => "SUB",
        }
    }
}

/// The documented JSON form: `{"sockets": [...], "links": [...]}`.
pub fn to_json(bus: &Topology) -> String {
    serde_json::to_string_pretty(bus).unwrap_or_else(|_| "{}".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceMap;

    const SPEC: &str = "use std/platform\n\
        provider colo { user = \"root\" }\n\
        provider ec2 { user = \"admin\" }\n\
        host lb1 { provider = colo  address = \"10.0.0.1\"  roles = [balancer, logs] }\n\
        host lb2 { provider = ec2  address = \"10.0.0.2\"  roles = [balancer] }\n\
        host run1 { provider = colo  address = \"10.0.0.3\"  roles = [runner] }\n\
        app blog { source = \"apps/blog\"  wsgi = \"blog.wsgi:application\"  domains = [\"blog.example.com\"] }\n";

    fn bus() -> Topology {
        let mut sources = SourceMap::new();
        let (bus, diagnostics) =
            crate::compile::with_fleet_text(&mut sources, "t.site", SPEC, |fleet, _| derive(fleet));
        bus.unwrap_or_else(|| panic!("spec has errors: {diagnostics:?}"))
    }

    #[test]
    fn every_agent_binds_control_and_heartbeats_and_collectors_bind_logs() {
        let bus = bus();
        let bound: Vec<(&str, &str)> = bus
            .sockets
            .iter()
            .filter(|s| s.mode == Mode::Bind)
            .map(|s| (s.id.as_str(), s.endpoints[0].as_str()))
            .collect();
        assert_eq!(
            bound,
            [
                ("lb1/agent/control", "tcp://10.0.0.1:7701"),
                ("lb1/agent/heartbeats", "tcp://10.0.0.1:7702"),
                ("lb1/collector/logs", "tcp://10.0.0.1:7703"),
                ("lb2/agent/control", "tcp://10.0.0.2:7701"),
                ("lb2/agent/heartbeats", "tcp://10.0.0.2:7702"),
                ("run1/agent/control", "tcp://10.0.0.3:7701"),
                ("run1/agent/heartbeats", "tcp://10.0.0.3:7702"),
            ]
        );
    }

    #[test]
    fn balancers_hear_runners_agents_ship_logs_and_the_operator_reaches_every_agent() {
        let bus = bus();
        let links: Vec<String> = bus
            .links
            .iter()
            .map(|l| format!("{} -> {} {}", l.from, l.to, l.endpoint))
            .collect();
        assert_eq!(
            links,
            [
                "lb1/balancer/heartbeats -> run1/agent/heartbeats tcp://10.0.0.3:7702",
                "lb1/agent/logs -> lb1/collector/logs tcp://10.0.0.1:7703",
                "lb2/balancer/heartbeats -> run1/agent/heartbeats tcp://10.0.0.3:7702",
                "lb2/agent/logs -> lb1/collector/logs tcp://10.0.0.1:7703",
                "run1/agent/logs -> lb1/collector/logs tcp://10.0.0.1:7703",
                "operator/cli/control -> lb1/agent/control tcp://10.0.0.1:7701",
                "operator/cli/control -> lb2/agent/control tcp://10.0.0.2:7701",
                "operator/cli/control -> run1/agent/control tcp://10.0.0.3:7701",
            ]
        );
        // Every link joins a connecting socket to a bound one.
        for link in &bus.links {
            let mode = |id: &str| bus.sockets.iter().find(|s| s.id == id).map(|s| s.mode);
            assert_eq!(
                (mode(&link.from), mode(&link.to)),
                (Some(Mode::Connect), Some(Mode::Bind))
            );
        }
        let req = bus
            .sockets
            .iter()
            .find(|s| s.socket_type == SocketType::Dealer && s.host == "operator");
        assert_eq!(
            req.map(|s| (s.host.as_str(), s.endpoints.len())),
            Some(("operator", 3))
        );
    }

    #[test]
    fn dot_has_a_cluster_per_host_and_labelled_edges() {
        let dot = to_dot(&bus());
        for cluster in [
            "cluster_lb1",
            "cluster_lb2",
            "cluster_run1",
            "cluster_operator",
        ] {
            assert!(dot.contains(cluster), "{dot}");
        }
        assert!(
            dot.contains("\"lb1/balancer/heartbeats\" -> \"run1/agent/heartbeats\" [label=\"SUB->PUB tcp://10.0.0.3:7702\"];"),
            "{dot}"
        );
    }
}
