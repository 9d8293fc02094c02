//! An app's services on this host, for the operator: `restart` (its web
//! service, or its workers) through `systemctl`, and `probe`, which asks
//! the app itself (`GET /` on gunicorn's socket, with one of its domains)
//! until it answers below 500. Only units the config names for an app
//! are ever restarted, so a request can name nothing else. systemctl talks
//! to systemd over D-Bus; an agent that is not root is allowed these units
//! by the polkit rule the agent role installs.

use super::config::App;
use super::Ctx;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The longest a request may ask to wait.
const WAIT_MAX: Duration = Duration::from_secs(600);
/// One probe's own limit.
const PROBE: Duration = Duration::from_secs(3);

fn app<'a>(ctx: &'a Ctx, request: &Value) -> Result<&'a App, String> {
    let name = request.get("app").and_then(Value::as_str).unwrap_or("");
    (ctx.config.apps.iter())
        .find(|a| a.name == name)
        .ok_or_else(|| format!("no app `{name}` runs on {}", ctx.config.host))
}

fn wait(request: &Value) -> Duration {
    let ms = request
        .get("timeout_ms")
        .and_then(Value::as_u64)
        .unwrap_or(60_000);
    Duration::from_millis(ms).min(WAIT_MAX)
}

/// `restart`: `units` is `web` (the app's gunicorn) or `workers`.
pub async fn restart(ctx: &Ctx, request: &Value) -> Result<Value, String> {
    let app = app(ctx, request)?;
    let units: Vec<String> = match request.get("units").and_then(Value::as_str) {
        Some("web") => vec![app.service.clone()],
        Some("workers") => app.workers.clone(),
        other => {
            return Err(format!(
                "restart: `units` is {other:?}; write \"web\" or \"workers\""
            ))
        }
    };
    let started = Instant::now();
    if !units.is_empty() {
        let run = tokio::process::Command::new("systemctl")
            .args(["restart", "--no-ask-password", "--"])
            .args(&units)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let limit = wait(request);
        match tokio::time::timeout(limit, run).await {
            Err(_) => {
                return Err(format!(
                    "systemctl restart {} did not return within {limit:?}",
                    units.join(" ")
                ))
            }
            Ok(Err(e)) => return Err(format!("cannot run systemctl: {e}")),
            Ok(Ok(out)) if !out.status.success() => {
                return Err(format!(
                    "systemctl restart {} failed: {}",
                    units.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
            Ok(Ok(_)) => {}
        }
    }
    Ok(json!({
        "ok": true,
        "op": "restart",
        "host": ctx.config.host,
        "app": app.name,
        "restarted": units,
        "seconds": started.elapsed().as_secs_f64(),
    }))
}

/// `probe`: asks the app until it answers below 500, within `timeout_ms`.
pub async fn probe(ctx: &Ctx, request: &Value) -> Result<Value, String> {
    let app = app(ctx, request)?;
    let socket = app.socket.clone().ok_or_else(|| {
        format!(
            "{}'s config names no socket for {}; apply the spec again",
            ctx.config.host, app.name
        )
    })?;
    let domain = app.domain.clone().unwrap_or_else(|| "localhost".into());
    let started = Instant::now();
    let deadline = started + wait(request);
    loop {
        let last = match tokio::time::timeout(PROBE, ask(&socket, &domain)).await {
            Ok(Ok(status)) if status < 500 => {
                return Ok(json!({
                    "ok": true,
                    "op": "probe",
                    "host": ctx.config.host,
                    "app": app.name,
                    "status": status,
                    "seconds": started.elapsed().as_secs_f64(),
                }))
            }
            Ok(Ok(status)) => format!("it answered {status}"),
            Ok(Err(e)) => e,
            Err(_) => format!("no answer within {PROBE:?}"),
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "{} on {} did not answer within {:?} (last: {last})",
                app.name,
                ctx.config.host,
                deadline - started
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `GET /` on the Unix socket at `path`: the answer's status.
async fn ask(path: &std::path::Path, domain: &str) -> Result<u16, String> {
    let mut stream = tokio::net::UnixStream::connect(path)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {domain}\r\nUser-Agent: sitec-agent\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut head = [0u8; 12];
    stream
        .read_exact(&mut head)
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    let text = String::from_utf8_lossy(&head);
    text.strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {text:?}"))
}
