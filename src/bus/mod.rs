//! The fleet's bus: ZeroMQ (libzmq, built into the binary with libsodium)
//! with every socket on CURVE, shared by the agent, the balancer and the
//! operator's commands. What this module decides, and nothing else does:
//!
//! - **Who may speak** (`keys`, `zap`): every socket is CURVE. A bound
//!   socket admits only the public keys it is given, through the ZAP
//!   handler every `Bus` runs, which also names the peer: a message
//!   carries its sender's name as libzmq's `User-Id` (`Incoming::peer`),
//!   never a name the sender wrote. A connecting socket checks the bound
//!   one's public key, so it knows whom it hears. CURVE's per-connection
//!   keys and nonces make a captured message useless on any other
//!   connection (replay) and hide the traffic.
//! - **What a peer can cost** (`Kind`): each socket's largest message
//!   (`ZMQ_MAXMSGSIZE`, checked against a frame's declared size before
//!   anything is allocated, handshake frames included), its queues
//!   (high-water marks), the handshake's deadline, ZMTP heartbeats that
//!   drop a silent peer, no linger at exit.
//! - **Threads** (`pump`): libzmq sockets are neither thread-safe nor
//!   async. Each socket (or group of receiving sockets) lives on a thread
//!   of its own, polled with `zmq::poll`; it hands what arrives to a
//!   bounded tokio channel (reading no more while it is full, so libzmq's
//!   per-peer queues hold the rest and fair queuing gives every peer its
//!   turn) and sends what an `Outbox` queues without ever blocking: what a
//!   peer does not read is dropped (and counted), so a peer that never
//!   reads holds up no one else.
//! - **Control** (`control`): the request/response protocol the operator's
//!   commands speak to agents, both ends.
//!
//! It never reads a spec or a config file (callers hand it endpoints and
//! keys), and it never interprets a message's body beyond `control`'s
//! envelope.

pub mod control;
pub mod keys;
pub mod pump;
mod zap;

pub use keys::{KeyPair, PublicKey};
pub use pump::{Incoming, Outbox};

use std::sync::{Arc, Mutex, PoisonError};

/// Every kind of socket the bus has, with its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// ROUTER, bound by every agent: the operator's control requests.
    Control,
    /// PUB, bound by every agent: its heartbeats.
    Heartbeats,
    /// ROUTER, bound by a `logs` host's agent: the fleet's log lines, in
    /// batches it acknowledges.
    Logs,
    /// DEALER, connected by every agent to each collector.
    Ship,
    /// SUB, connected by a balancer to each runner agent's heartbeats.
    Follow,
    /// DEALER, connected by the operator's commands to an agent's control.
    Ask,
}

/// A peer a bound socket admits: its name (what its messages are tied to)
/// and its public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub key: PublicKey,
}

/// How long a connection may take to finish its CURVE handshake.
const HANDSHAKE_MS: i32 = 5_000;
/// ZMTP heartbeats: a PING every second; a peer silent for 6 s is dropped.
const PING_MS: i32 = 1_000;
const PING_TIMEOUT_MS: i32 = 6_000;

impl Kind {
    fn socket_type(self) -> zmq::SocketType {
        match self {
            Kind::Control => zmq::ROUTER,
            Kind::Heartbeats => zmq::PUB,
            Kind::Logs => zmq::ROUTER,
            Kind::Ship => zmq::DEALER,
            Kind::Follow => zmq::SUB,
            Kind::Ask => zmq::DEALER,
        }
    }

    /// The largest message this socket accepts from a peer, in bytes. A
    /// frame that declares more closes its connection before anything is
    /// allocated for it; handshake frames are held to it too.
    pub fn max_message(self) -> i64 {
        match self {
            // Subscriptions (one empty topic), a collector's acknowledgements.
            Kind::Heartbeats | Kind::Ship => 1024,
            // A request; `run`'s input comes in pieces smaller than this.
            Kind::Control => 256 * 1024,
            // A batch of lines (`agent::ship::BATCH_BYTES`, 256 KiB of JSON).
            Kind::Logs => 512 * 1024,
            // A heartbeat names every app on its host.
            Kind::Follow => 256 * 1024,
            // A status answer.
            Kind::Ask => 4 * 1024 * 1024,
        }
    }

    /// Messages queued per peer each way: past it, a PUB or a ROUTER drops
    /// what it would send to that peer, and a shipper's DEALER its batch
    /// (sent again until acknowledged).
    fn high_water_mark(self) -> i32 {
        match self {
            Kind::Heartbeats => 16,
            Kind::Follow => 64,
            Kind::Control | Kind::Ask => 256,
            // Batches: a shipper has at most 8 unacknowledged, and sends
            // one again only after 2 s.
            Kind::Logs | Kind::Ship => 16,
        }
    }

    /// The ZAP domain of a bound socket: which list of keys admits a peer.
    fn domain(self) -> &'static str {
        match self {
            Kind::Control => "control",
            Kind::Heartbeats => "heartbeats",
            Kind::Logs => "logs",
            Kind::Ship | Kind::Follow | Kind::Ask => "",
        }
    }
}

/// One process's bus: libzmq's context, this process's key pair and, once
/// it binds a socket, the ZAP handler that admits peers to its bound
/// sockets (a bus that only connects has none, and its context ends with
/// its last socket).
#[derive(Clone)]
pub struct Bus {
    context: zmq::Context,
    keys: KeyPair,
    admitted: Arc<Mutex<Option<Arc<zap::Admitted>>>>,
}

impl Bus {
    /// A bus speaking with `keys`.
    pub fn new(keys: KeyPair) -> Result<Bus, String> {
        if zmq::has("curve") != Some(true) {
            return Err(
                "this sitec was built without CURVE in libzmq; the bus cannot be authenticated"
                    .into(),
            );
        }
        Ok(Bus {
            context: zmq::Context::new(),
            keys,
            admitted: Arc::default(),
        })
    }

    /// The ZAP handler's table, the handler started on first use (before
    /// any socket binds: without it libzmq admits every key).
    fn admitted(&self) -> Result<Arc<zap::Admitted>, String> {
        let mut admitted = self.admitted.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(a) = &*admitted {
            return Ok(a.clone());
        }
        let started = zap::start(&self.context)?;
        *admitted = Some(started.clone());
        Ok(started)
    }

    pub fn public_key(&self) -> PublicKey {
        self.keys.public
    }

    /// A socket of `kind` bound at `endpoint` (a CURVE server) that admits
    /// only `peers`, each message tied to the name of the peer that sent it.
    pub fn bind(&self, kind: Kind, endpoint: &str, peers: &[Peer]) -> Result<zmq::Socket, String> {
        let socket = self.socket(kind)?;
        let what = |e: zmq::Error| format!("cannot bind {endpoint}: {e}");
        self.admitted()?.set(kind.domain(), peers);
        socket.set_zap_domain(kind.domain()).map_err(what)?;
        socket.set_curve_server(true).map_err(what)?;
        socket
            .set_curve_secretkey(self.keys.secret_bytes())
            .map_err(what)?;
        if kind == Kind::Control {
            // A reply to a peer that is gone or full fails at once (and is
            // dropped) instead of being dropped silently.
            socket.set_router_mandatory(true).map_err(what)?;
        }
        socket.bind(endpoint).map_err(what)?;
        Ok(socket)
    }

    /// A socket of `kind` connected to `endpoint`, whose bound socket must
    /// prove it holds `server`'s secret key. libzmq connects in the
    /// background and again whenever the connection drops.
    pub fn connect(
        &self,
        kind: Kind,
        endpoint: &str,
        server: &PublicKey,
    ) -> Result<zmq::Socket, String> {
        let socket = self.socket(kind)?;
        let what = |e: zmq::Error| format!("cannot connect to {endpoint}: {e}");
        socket
            .set_curve_serverkey(server.as_bytes())
            .map_err(what)?;
        socket
            .set_curve_publickey(self.keys.public.as_bytes())
            .map_err(what)?;
        socket
            .set_curve_secretkey(self.keys.secret_bytes())
            .map_err(what)?;
        if kind == Kind::Follow {
            socket.set_subscribe(b"").map_err(what)?;
        }
        socket.connect(endpoint).map_err(what)?;
        Ok(socket)
    }

    /// A socket of `kind` with the limits every bus socket has.
    fn socket(&self, kind: Kind) -> Result<zmq::Socket, String> {
        let socket = (self.context.socket(kind.socket_type()))
            .map_err(|e| format!("cannot make a {kind:?} socket: {e}"))?;
        let set =
            |r: zmq::Result<()>| r.map_err(|e| format!("cannot set up a {kind:?} socket: {e}"));
        set(socket.set_maxmsgsize(kind.max_message()))?;
        set(socket.set_sndhwm(kind.high_water_mark()))?;
        set(socket.set_rcvhwm(kind.high_water_mark()))?;
        set(socket.set_linger(0))?;
        set(socket.set_handshake_ivl(HANDSHAKE_MS))?;
        set(socket.set_heartbeat_ivl(PING_MS))?;
        set(socket.set_heartbeat_timeout(PING_TIMEOUT_MS))?;
        set(socket.set_heartbeat_ttl(PING_TIMEOUT_MS))?;
        set(socket.set_reconnect_ivl(100))?;
        set(socket.set_reconnect_ivl_max(2_000))?;
        set(socket.set_tcp_keepalive(1))?;
        Ok(socket)
    }
}

/// `tcp://HOST:PORT`: what the bus connects and binds (a name or an IPv4
/// or bracketed IPv6 address, and a port).
pub fn is_tcp_endpoint(v: &str) -> bool {
    let Some((host, port)) = v.strip_prefix("tcp://").and_then(|r| r.rsplit_once(':')) else {
        return false;
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.[]:*".contains(&b));
    host_ok && port.parse::<u16>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        for good in ["tcp://10.0.0.5:7701", "tcp://[::1]:7702", "tcp://run1:7703"] {
            assert!(is_tcp_endpoint(good), "{good}");
        }
        for bad in [
            "10.0.0.5:7701",
            "tcp://:1",
            "tcp://a:b",
            "udp://a:1",
            "tcp://a b:1",
        ] {
            assert!(!is_tcp_endpoint(bad), "{bad}");
        }
    }

    #[test]
    fn this_build_has_curve() {
        assert_eq!(zmq::has("curve"), Some(true));
    }
}
