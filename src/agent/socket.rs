//! ZeroMQ plumbing the agent and the balancer share: what counts as a bus
//! endpoint, and a connecting socket that waits for its peer to listen.

use std::time::Duration;
use zeromq::{Socket, SocketOptions};

/// `tcp://HOST:PORT`, as zmq.rs parses it.
pub fn is_tcp_endpoint(v: &str) -> bool {
    matches!(v.parse::<zeromq::Endpoint>(), Ok(zeromq::Endpoint::Tcp(..)))
}

/// A socket connected to `endpoint`, once its peer listens: zmq.rs retries
/// the connection with backoff, and a connect that still fails is logged
/// (`{what} {endpoint}: error`) and tried again a second later.
pub async fn connect_when_up<S: Socket>(endpoint: &str, what: &str) -> S {
    loop {
        let mut options = SocketOptions::default();
        options.no_connect_timeout();
        let mut socket = S::with_options(options);
        match socket.connect(endpoint).await {
            Ok(()) => return socket,
            Err(e) => {
                tracing::warn!("{what} {endpoint}: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
