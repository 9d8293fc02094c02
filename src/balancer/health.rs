//! Active health checks: every `health.interval_ms`, each backend the
//! config names is probed (a TCP connect, or `GET health.path` answered
//! below 500) within `health.timeout_ms`; a backend out of rotation is
//! probed four times as often, so one that (re)starts is back within a
//! quarter interval. A backend that fails is taken out of rotation; one
//! that passes is put back at once, so a runner that comes back needs no
//! client request to be tried again. The same tick closes pooled
//! connections that outlived `timeouts.backend_idle_ms`. It never touches
//! client traffic.

use super::backend::Backend;
use super::io::within;
use super::state::Shared;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub async fn run(shared: Arc<Shared>) {
    for tick in 0u64.. {
        let state = shared.state();
        let h = state.health.clone();
        let idle = Duration::from_millis(state.timeouts.backend_idle_ms);
        drop(state);
        tokio::time::sleep(Duration::from_millis((h.interval_ms / 4).max(10))).await;
        let everyone = tick % 4 == 3;
        for backend in shared.live_backends() {
            backend.sweep(idle);
            if !everyone && backend.is_up() {
                continue;
            }
            let h = h.clone();
            tokio::spawn(async move {
                let timeout = Duration::from_millis(h.timeout_ms);
                match within(timeout, probe(&backend, &h.path)).await {
                    Ok(()) => backend.mark_up(),
                    Err(e) => {
                        if backend.is_up() {
                            tracing::warn!(backend = %backend.addr, "health check failed: {e}");
                        }
                        backend.mark_down(
                            Duration::from_millis(h.fail_timeout_ms),
                            &format!("health check failed: {e}"),
                        );
                    }
                }
            });
        }
    }
}

async fn probe(backend: &Backend, path: &str) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(backend.addr).await?;
    if path.is_empty() {
        return Ok(());
    }
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: sitec-balancer-health\r\nConnection: close\r\n\r\n",
        backend.addr
    );
    stream.write_all(request.as_bytes()).await?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await?;
    let ok = head.starts_with(b"HTTP/1.") && matches!(head[9], b'1'..=b'4');
    if ok {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "GET {path} answered `{}`",
            String::from_utf8_lossy(&head)
        )))
    }
}
