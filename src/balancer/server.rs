//! `run`: binds the listeners, accepts connections (each on a task of its
//! own, TLS handshakes bounded by the header timeout; plain HTTP sent to an
//! HTTPS listener gets a 400 that says so), starts the health
//! checker, the heartbeat followers (`bus`) and the admin listener, and
//! handles signals: SIGHUP re-reads and validates the config and swaps it
//! in (a bad one is refused with a log line and the old one keeps serving;
//! the access log is reopened either way), SIGTERM/SIGINT stop accepting,
//! let open connections finish their current request and close idle ones,
//! and exit when all are gone or `timeouts.drain_ms` runs out. A reload
//! also opens the HTTP and HTTPS listeners the new config adds (all of them
//! before it is swapped in: one that cannot listen refuses the config) and
//! closes those it drops, leaving their open connections be, and follows
//! the heartbeats anew when `[bus]` changed (a rotated key, a runner added);
//! the admin listener is fixed at start.

use super::config::Config;
use super::conn::Conn;
use super::state::Shared;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio_rustls::server::TlsStream;

/// The HTTP and HTTPS listeners accepting now: each one's accept loop, by
/// address and whether it speaks TLS.
type Listeners = std::collections::HashMap<(SocketAddr, bool), tokio::task::AbortHandle>;

pub async fn run(shared: Arc<Shared>) -> Result<(), String> {
    // Handled before the first listener is announced: whoever read that
    // line may signal at once, and a SIGHUP that came before its handler
    // killed the process (the default action) instead of reloading.
    let mut hup = signal(SignalKind::hangup()).map_err(|e| format!("cannot handle SIGHUP: {e}"))?;
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle SIGINT: {e}"))?;
    let valid = shared.state().valid.clone();
    let mut listeners = Listeners::new();
    for (addr, tls) in wanted(&valid) {
        let listener = bind(addr)?;
        listeners.insert((addr, tls), start(listener, tls, &shared));
    }
    // Shared with each reload's thread; a reload that panicked leaves the
    // handles as they were (the lock's poison is ignored), so the next one
    // still knows which listeners are open.
    let listeners = Arc::new(std::sync::Mutex::new(listeners));
    if let Some(addr) = valid.admin {
        let listener = bind(addr)?;
        announce("admin", &listener);
        tokio::spawn(super::admin::serve(listener, shared.clone()));
    }
    tokio::spawn(super::health::run(shared.clone()));
    let following = Arc::new(std::sync::Mutex::new(super::bus::start(
        &shared,
        &valid.config.bus,
    )?));
    crate::sd_notify::ready();
    loop {
        tokio::select! {
            _ = hup.recv() => {
                let (shared, listeners, following) = (shared.clone(), listeners.clone(), following.clone());
                let handle = tokio::runtime::Handle::current();
                let _ = tokio::task::spawn_blocking(move || {
                    let mut open = listeners.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    reload(&shared, &mut open);
                    let _entered = handle.enter();
                    let mut following = following.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    super::bus::refresh(&mut following, &shared, &shared.state().valid.config.bus);
                })
                .await;
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    crate::sd_notify::stopping();
    drain(&shared).await;
    Ok(())
}

fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    };
    let socket = socket.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    socket
        .set_reuseaddr(true)
        .and_then(|()| socket.bind(addr))
        .and_then(|()| socket.listen(4096))
        .map_err(|e| format!("cannot listen on {addr}: {e}"))
}

/// The HTTP and HTTPS listeners a config asks for.
fn wanted(valid: &super::config::Valid) -> Vec<(SocketAddr, bool)> {
    let http = valid.http.iter().map(|a| (*a, false));
    http.chain(valid.https.iter().map(|a| (*a, true))).collect()
}

/// Announces a bound listener and starts accepting on it.
fn start(listener: TcpListener, tls: bool, shared: &Arc<Shared>) -> tokio::task::AbortHandle {
    announce(if tls { "https" } else { "http" }, &listener);
    tokio::spawn(accept_loop(listener, tls, shared.clone())).abort_handle()
}

/// One stdout line per listener with the port it really got (tests and
/// scripts listen on port 0 and read it here). Whoever started the
/// balancer may have stopped reading: a closed stdout is no reason to fail
/// (`println!` would panic, in the middle of a reload).
fn announce(kind: &str, listener: &TcpListener) {
    use std::io::Write;
    if let Ok(addr) = listener.local_addr() {
        let _ = writeln!(std::io::stdout(), "sitec balancer: {kind} on {addr}");
        tracing::info!("{kind} listener on {addr}");
    }
}

async fn accept_loop(listener: TcpListener, tls: bool, shared: Arc<Shared>) {
    let mut last_warned: Option<std::time::Instant> = None;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(found) => found,
                Err(e) => {
                    // Out of file descriptors and the like: wait, go on;
                    // say so at most once a second (it recurs every wait).
                    if last_warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                        tracing::warn!("accept failed: {e}");
                        last_warned = Some(std::time::Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = shared.drain_started() => return,
        };
        let _ = stream.set_nodelay(true);
        // Two task types: a plain connection's holds no TLS state at all.
        if tls {
            tokio::spawn(serve_tls(stream, peer, shared.clone()));
        } else {
            tokio::spawn(serve_plain(stream, peer, shared.clone()));
        }
    }
}

/// Counts an open client connection while it lives.
struct Open(Arc<Shared>);

impl Open {
    fn new(shared: &Arc<Shared>) -> Self {
        shared
            .metrics
            .client_connections
            .fetch_add(1, Ordering::Relaxed);
        Open(shared.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0
            .metrics
            .client_connections
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Not an `async fn`: its arguments would stay in the task beside the
/// `Conn` made of them (rustc keeps an async fn's arguments for its whole
/// life), 72 bytes for every idle connection.
fn serve_plain(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
) -> impl std::future::Future<Output = ()> {
    let open = Open::new(&shared);
    let mut conn = Conn::new(stream, peer, false, shared);
    async move {
        let _open = open;
        conn.serve().await;
    }
}

/// A TLS client: the handshake, then its requests. A rustls connection is
/// a kilobyte, mid-handshake and after: both are boxed, so the task (what
/// an idle client costs beside it) is as small as a plain one's; inline,
/// the two made it 2,776 bytes.
fn serve_tls(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
) -> impl std::future::Future<Output = ()> {
    let open = Open::new(&shared);
    async move {
        let _open = open;
        if let Some(mut conn) = Box::pin(handshake(stream, peer, shared)).await {
            conn.serve().await;
        }
    }
}

/// The TLS handshake, under the head deadline from the first byte, and the
/// connection it opens, ready to serve; `None` when it fails or times out,
/// or the client spoke plain HTTP (answered with a 400 here).
async fn handshake(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
) -> Option<Box<Conn<TlsStream<TcpStream>>>> {
    let state = shared.state();
    let timeout = Duration::from_millis(state.timeouts.header_ms);
    let acceptor = state.tls.clone()?;
    drop(state);
    // One deadline for the first byte and the handshake together.
    let deadline = tokio::time::Instant::now() + timeout;
    let mut first = [0u8; 1];
    match tokio::time::timeout_at(deadline, stream.peek(&mut first)).await {
        // A TLS connection starts with a handshake record (0x16); an
        // uppercase letter is a method: plain HTTP sent to the HTTPS port.
        Ok(Ok(1..)) if first[0].is_ascii_uppercase() => {
            shared.metrics.refused.fetch_add(1, Ordering::Relaxed);
            refuse_plain_http(stream).await;
            return None;
        }
        Ok(Ok(1..)) => {}
        _ => return None,
    }
    let tls = tokio::time::timeout_at(deadline, acceptor.accept(stream))
        .await
        .ok()?
        .ok()?;
    Some(Box::new(Conn::new(tls, peer, true, shared)))
}

/// Answers a plain HTTP request on the HTTPS port with a 400 that says so,
/// as nginx does, instead of a TLS alert that a browser or curl shows as an
/// empty or garbled reply.
async fn refuse_plain_http(mut stream: TcpStream) {
    use tokio::io::AsyncWriteExt;
    // Take in what came: closing on unread bytes would reset the
    // connection, and the client could lose the answer to the reset.
    let mut head = [0u8; 8192];
    let _ = stream.try_read(&mut head);
    let page = super::pages::page(
        400,
        "This port speaks HTTPS: use an https:// address.",
        true,
    );
    let _ = super::io::within(Duration::from_secs(5), stream.write_all(&page)).await;
    let _ = stream.shutdown().await;
}

/// SIGHUP: reopen the access log, then re-read, validate and swap the
/// config, opening the listeners it adds first and closing those it drops
/// after.
fn reload(shared: &Arc<Shared>, listeners: &mut Listeners) {
    if let Some(log) = shared.log().as_ref() {
        log.reopen();
    }
    let Some(path) = &shared.config_path else {
        tracing::info!("SIGHUP: no config file (ad hoc mode); access log reopened");
        return;
    };
    let old = shared.state().valid.clone();
    let result = Config::load(path).and_then(|valid| {
        if valid.admin != old.admin {
            tracing::warn!(
                "{}: the admin listener's address changed; it applies after a restart",
                path.display()
            );
        }
        let wanted = wanted(&valid);
        let added = (wanted.iter())
            .filter(|key| !listeners.contains_key(key))
            .map(|(addr, tls)| bind(*addr).map(|listener| (*addr, *tls, listener)))
            .collect::<Result<Vec<_>, String>>()?;
        let routes = valid.config.routes.len();
        shared.install(valid)?;
        for (addr, tls, listener) in added {
            listeners.insert((addr, tls), start(listener, tls, shared));
        }
        listeners.retain(|key, accepting| {
            let keep = wanted.contains(key);
            if !keep {
                accepting.abort();
                tracing::info!("closed the listener on {}", key.0);
            }
            keep
        });
        Ok(routes)
    });
    match result {
        Ok(routes) => {
            shared.metrics.reloads.fetch_add(1, Ordering::Relaxed);
            tracing::info!("reloaded {} ({routes} routes)", path.display());
        }
        Err(e) => {
            shared
                .metrics
                .reload_failures
                .fetch_add(1, Ordering::Relaxed);
            tracing::error!("refused the new config: {e}; still serving the previous one");
        }
    }
}

/// Stops accepting and waits for open connections to finish.
async fn drain(shared: &Shared) {
    let limit = Duration::from_millis(shared.state().timeouts.drain_ms);
    tracing::info!("draining: no new connections; waiting up to {limit:?} for open ones");
    shared.start_drain();
    let deadline = tokio::time::Instant::now() + limit;
    while shared.metrics.client_connections.load(Ordering::Relaxed) > 0
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::info!(
        "drained; exiting with {} connections left",
        shared.metrics.client_connections.load(Ordering::Relaxed)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an idle keep-alive client costs is mostly its task, and its task
    /// is mostly this future: 10,000 idle clients must fit in 30 MB. It was
    /// 1,224 bytes while reading a head and proxying were inline in it (a
    /// TLS one's 2,776 with its handshake's state); the runtime rounds a
    /// task up to 128 bytes, so every few dozen bytes count.
    #[test]
    fn an_idle_connections_task_stays_small() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            let stream = TcpStream::connect(addr).await.expect("connect");
            let routes = ["*=127.0.0.1:1".to_owned()];
            let valid = Config::ad_hoc("127.0.0.1:0", &routes, None, None).expect("config");
            let shared = Shared::new(valid, None).expect("state");
            let tls = TcpStream::connect(addr).await.expect("connect");
            let task = serve_plain(stream, addr, shared.clone());
            let size = std::mem::size_of_val(&task);
            assert!(size <= 600, "a plain connection's future is {size} bytes");
            // A TLS one also holds its rustls connection (boxed: 1.3 KB).
            let task = serve_tls(tls, addr, shared);
            let size = std::mem::size_of_val(&task);
            assert!(size <= 600, "a TLS connection's future is {size} bytes");
        });
    }
}
