//! The admin listener: `GET /metrics` (Prometheus text), `GET /healthz` and
//! `GET /rotation` (JSON: every route's backends, in rotation or why not,
//! and their requests in flight; the host's agent reads it for `sitec
//! status` and `sitec restart`) on a separate address so it is never
//! exposed with the public listeners.
//! One request per connection, parsed by the same strict parser. It never
//! proxies.

use super::buf::Buf;
use super::io::within;
use super::request::RequestHead;
use super::scanner::HeadScanner;
use super::state::Shared;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _ = within(Duration::from_secs(10), answer(stream, &shared)).await;
        });
    }
}

async fn answer(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let limits = shared.state().head_limits;
    let mut buf = Buf::default();
    let mut scanner = HeadScanner::default();
    let span = loop {
        match scanner.scan(buf.filled(), &limits) {
            Ok(Some(span)) => break span,
            Ok(None) if buf.read_from(&mut stream).await? > 0 => {}
            _ => return Ok(()),
        }
    };
    const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
    let (status, kind, body) =
        match RequestHead::parse(&buf.filled()[span.start..span.end], &limits) {
            Ok(req) if req.path() == "/metrics" => {
                let state = shared.state();
                (
                    "200 OK",
                    TEXT,
                    shared.metrics.render(&shared.live_backends(), &state.certs),
                )
            }
            Ok(req) if req.path() == "/healthz" => ("200 OK", TEXT, "ok\n".to_owned()),
            Ok(req) if req.path() == "/rotation" => (
                "200 OK",
                "application/json",
                shared.rotation().to_string() + "\n",
            ),
            Ok(_) => (
                "404 Not Found",
                TEXT,
                "try /metrics, /healthz or /rotation\n".to_owned(),
            ),
            Err(r) => ("400 Bad Request", TEXT, format!("{}\n", r.reason)),
        };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
