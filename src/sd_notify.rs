//! Tells systemd how a daemon of sitec's is doing (`sd_notify(3)`): the
//! balancer and the agent run as `Type=notify` units and say `READY=1` once
//! they listen, so `systemctl start` returns when they really serve (and a
//! start that fails, a port in use say, fails the start itself), and
//! `STOPPING=1` when they begin to drain. Outside systemd (no
//! `NOTIFY_SOCKET`) every call does nothing.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The daemon is up: its sockets listen.
pub fn ready() {
    send("READY=1");
}

/// The daemon is shutting down (draining).
pub fn stopping() {
    send("STOPPING=1");
}

/// Sends `state` to `$NOTIFY_SOCKET`. A failure is logged, never fatal: the
/// unit then times out starting, which names the problem in its journal.
fn send(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = address(&path.to_string_lossy()).and_then(|addr| {
        let socket = UnixDatagram::unbound()?;
        socket.send_to_addr(state.as_bytes(), &addr)
    });
    if let Err(e) = sent {
        tracing::warn!("cannot tell systemd {state}: {e}");
    }
}

/// A path, or an abstract name when it starts with `@`.
fn address(socket: &str) -> std::io::Result<SocketAddr> {
    match socket.strip_prefix('@') {
        Some(name) => <SocketAddr as SocketAddrExt>::from_abstract_name(name.as_bytes()),
        None => SocketAddr::from_pathname(socket),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `ready()` sends arrives on the socket `NOTIFY_SOCKET` names, both
    /// for a path and for an abstract name (what systemd uses).
    #[test]
    fn ready_reaches_the_notify_socket() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notify");
        let by_path = UnixDatagram::bind(&path).expect("bind path");
        let name = format!("sitec-test-notify-{}", std::process::id());
        let abstract_addr = address(&format!("@{name}")).expect("abstract address");
        let by_name = UnixDatagram::bind_addr(&abstract_addr).expect("bind abstract");
        for (socket, value) in [
            (&by_path, path.display().to_string()),
            (&by_name, format!("@{name}")),
        ] {
            // One test sets the variable at a time: this is the only test
            // that reads or writes it.
            std::env::set_var("NOTIFY_SOCKET", &value);
            ready();
            std::env::remove_var("NOTIFY_SOCKET");
            let mut buf = [0u8; 64];
            socket
                .set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .expect("timeout");
            let n = socket.recv(&mut buf).expect("a datagram arrives");
            assert_eq!(&buf[..n], b"READY=1", "via {value}");
        }
    }
}
