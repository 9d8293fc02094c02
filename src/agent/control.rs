//! Control requests (`bus::control`: one JSON object per request, answers
//! with its `id`), taken from the operator's key only: the bus's ZAP
//! handler admits no other key on this socket, and a request that comes
//! without the operator's name is refused here too. Each request is
//! answered by a task of its own (at most `TASKS` at once; past that the
//! agent says it is busy), so a slow one (a status that asks Postgres)
//! holds up no other. The ops:
//!
//! - `ping`: host, version, uptime;
//! - `status`: what this host is doing (`status`);
//! - `lease`: the fleet lock as this host holds it (`lease`): `action`
//!   `take`, `renew`, `release`, `break` or `show`, with `holder` and
//!   `ttl_seconds`;
//! - `drain` / `undrain`: an app's drain (`drain`), announced at once in a
//!   heartbeat;
//! - `rotation`: on a balancer host, the balancer's rotation;
//! - `restart` (an app's `web` service or its `workers`) and `probe` (ask
//!   the app until it answers), `services`;
//! - `logs`: on a collector, the lines it filed (`logs`: by host, app,
//!   time and a regular expression, newest or after a cursor, bounded);
//! - `run`: a command in an app's release as its user (`run`), answered
//!   as a stream for as long as it runs, and the messages that steer it
//!   (`input`, `eof`, `resize`, `signal`, `alive`, with its `session`).
//!
//! Anything else (not JSON, no `op`, an op the agent does not know) gets
//! `{"ok": false, "error": ...}`: a peer can never stop the agent. Answers
//! go out without waiting (`Outbox`): a client that never reads its
//! answers loses them and holds up no other.

use super::lease::{Action, Holder, Outcome};
use super::Ctx;
use crate::bus::control::{Request, OPERATOR};
use crate::bus::{Incoming, Outbox};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};

/// Requests waiting to be answered; past it the pump drops new ones.
pub const QUEUE: usize = 64;
/// Requests answered at once.
const TASKS: usize = 32;
/// The longest a lease or a drain may be asked to last without renewal.
const TTL_MAX_SECONDS: f64 = 600.0;

/// Answers every request that arrives, until the pump stops.
pub async fn run(mut incoming: mpsc::Receiver<Incoming>, outbox: Outbox, ctx: Arc<Ctx>) {
    let tasks = Arc::new(Semaphore::new(TASKS));
    while let Some(message) = incoming.recv().await {
        let Some(request) = Request::from_incoming(message, &outbox) else {
            continue;
        };
        if request.peer != OPERATOR {
            request
                .responder
                .error("only the operator's key may send control requests");
            continue;
        }
        let body = match &request.body {
            Ok(body) => body.clone(),
            Err(e) => {
                request.responder.error(e);
                continue;
            }
        };
        let op = body.get("op").and_then(Value::as_str).unwrap_or("");
        if super::run::SESSION_OPS.contains(&op) {
            let responder = request.responder;
            let ack = Box::new(move |answer| {
                let _ = responder.send(answer);
            });
            super::run::message(&ctx, op, &body, ack);
            continue;
        }
        // What takes no time is answered at once, even while the tasks are full.
        if let Some(answer) = quick(&ctx, &body) {
            let _ = request.responder.send(answer);
            continue;
        }
        let Ok(permit) = tasks.clone().try_acquire_owned() else {
            request.responder.error(&format!(
                "the agent is answering {TASKS} requests already; ask again shortly"
            ));
            continue;
        };
        let ctx = ctx.clone();
        if op == "run" {
            // A session answers for as long as it runs, holding its permit.
            tokio::spawn(async move {
                super::run::serve(ctx, body, request.responder).await;
                drop(permit);
            });
            continue;
        }
        tokio::spawn(async move {
            let answer = answer(&ctx, &body).await;
            // false: the client does not read its answers (counted by the pump).
            let _ = request.responder.send(answer);
            drop(permit);
        });
    }
}

/// The answer to a request that takes no time (it waits for nothing but
/// a small file), if it is one.
fn quick(ctx: &Ctx, request: &Value) -> Option<Value> {
    Some(match request.get("op").and_then(Value::as_str)? {
        "ping" => json!({
            "ok": true,
            "op": "ping",
            "host": ctx.config.host,
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": ctx.started.elapsed().as_secs(),
        }),
        "lease" => lease_op(ctx, request).unwrap_or_else(|e| error(&e)),
        op @ ("drain" | "undrain") => drain_op(ctx, op, request).unwrap_or_else(|e| error(&e)),
        _ => return None,
    })
}

/// The answer to one request (a JSON object).
pub async fn answer(ctx: &Ctx, request: &Value) -> Value {
    if let Some(answer) = quick(ctx, request) {
        return answer;
    }
    let host = ctx.config.host.as_str();
    match request.get("op").and_then(Value::as_str) {
        Some("status") => super::status::report(ctx).await,
        Some("restart") => super::services::restart(ctx, request).await.unwrap_or_else(|e| error(&e)),
        Some("probe") => super::services::probe(ctx, request).await.unwrap_or_else(|e| error(&e)),
        Some("rotation") => json!({
            "ok": true,
            "op": "rotation",
            "host": host,
            "balancer": super::status::rotation(ctx.config.balancer_admin.as_deref()).await,
        }),
        Some("logs") => logs_op(ctx, request).await.unwrap_or_else(|e| error(&e)),
        Some(other) => error(&format!(
            "unknown op `{other}`; the agent answers ping, status, lease, drain, undrain, rotation, restart, probe, logs and run"
        )),
        None => error("the request has no `op`; send e.g. {\"op\": \"status\"}"),
    }
}

/// The collector's lines, read off the runtime (a big folder takes a while).
async fn logs_op(ctx: &Ctx, request: &Value) -> Result<Value, String> {
    let host = ctx.config.host.clone();
    let dir = (ctx.config.collector.as_ref())
        .map(|c| c.dir.clone())
        .ok_or_else(|| format!("logs: {host} collects no logs (its agent.toml has no [collector]); ask a host with the `logs` role"))?;
    let request = request.clone();
    let mut answer = tokio::task::spawn_blocking(move || super::logs::answer(&dir, &request))
        .await
        .map_err(|e| format!("logs: reading the collected lines failed: {e}"))??;
    answer["collector"] = json!(host);
    Ok(answer)
}

fn error(message: &str) -> Value {
    json!({ "ok": false, "error": message })
}

/// A request's `ttl_seconds`, within bounds.
fn ttl(request: &Value) -> Result<f64, String> {
    match request.get("ttl_seconds").and_then(Value::as_f64) {
        Some(t) if t > 0.0 && t <= TTL_MAX_SECONDS => Ok(t),
        _ => Err(format!(
            "`ttl_seconds` must be a number of seconds above 0 and at most {TTL_MAX_SECONDS}"
        )),
    }
}

fn lease_op(ctx: &Ctx, request: &Value) -> Result<Value, String> {
    let word = request.get("action").and_then(Value::as_str).unwrap_or("");
    let action = Action::parse(word).ok_or_else(|| {
        format!("lease: unknown action `{word}`; write take, renew, release, break or show")
    })?;
    let holder: Option<Holder> = match request.get("holder") {
        Some(h) => {
            Some(serde_json::from_value(h.clone()).map_err(|e| format!("lease: holder: {e}"))?)
        }
        None => None,
    };
    if matches!(action, Action::Take | Action::Renew | Action::Release) && holder.is_none() {
        return Err(format!(
            "lease: `{word}` needs the `holder` (who, from, pid, what, token)"
        ));
    }
    let ttl = match action {
        Action::Take | Action::Renew => ttl(request)?,
        _ => 0.0,
    };
    let now = super::heartbeat::unix_time();
    let outcome = ctx.leases.update(action, holder.as_ref(), ttl, now)?;
    let (word, lease) = match outcome {
        Outcome::Granted(l) => ("granted", Some(l)),
        Outcome::Held(l) => ("held", Some(l)),
        Outcome::Lost(l) => ("lost", l),
        Outcome::Cleared(l) => ("cleared", l),
        Outcome::Shown(l) => ("shown", l),
    };
    if word == "granted" || word == "cleared" {
        ctx.beat_now.notify_one();
    }
    Ok(json!({
        "ok": true,
        "op": "lease",
        "host": ctx.config.host,
        "outcome": word,
        "lease": lease,
        "time": now,
    }))
}

fn drain_op(ctx: &Ctx, op: &str, request: &Value) -> Result<Value, String> {
    let app = request.get("app").and_then(Value::as_str).unwrap_or("");
    if !ctx.config.apps.iter().any(|a| a.name == app) {
        let here: Vec<&str> = ctx.config.apps.iter().map(|a| a.name.as_str()).collect();
        return Err(format!(
            "{op}: no app `{app}` runs on {} (it runs {})",
            ctx.config.host,
            if here.is_empty() {
                "none".to_string()
            } else {
                here.join(", ")
            }
        ));
    }
    let drained = if op == "drain" {
        let why = request
            .get("why")
            .and_then(Value::as_str)
            .unwrap_or("drained by the operator");
        let why: String = why.chars().take(200).collect();
        ctx.drains
            .set(app, &why, Duration::from_secs_f64(ttl(request)?));
        true
    } else {
        ctx.drains.clear(app);
        false
    };
    ctx.beat_now.notify_one();
    Ok(json!({ "ok": true, "op": op, "host": ctx.config.host, "app": app, "drained": drained }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(ctx: &Ctx, request: Value) -> Value {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(answer(ctx, &request))
    }

    #[test]
    fn ping_and_errors() {
        let (ctx, _dir) = Ctx::for_tests();
        let ping = ask(&ctx, json!({"op": "ping"}));
        assert_eq!(ping["ok"], true);
        assert_eq!(ping["version"], env!("CARGO_PKG_VERSION"));
        for (body, says) in [
            (json!({"op": "reboot"}), "unknown op `reboot`"),
            (json!({}), "no `op`"),
            (json!({"op": "logs"}), "run1 collects no logs"),
            (json!({"op": 1}), "no `op`"),
            (
                json!({"op": "lease", "action": "steal"}),
                "unknown action `steal`",
            ),
            (
                json!({"op": "lease", "action": "take"}),
                "needs the `holder`",
            ),
            (
                json!({"op": "drain", "app": "shop", "ttl_seconds": 5}),
                "no app `shop` runs on run1 (it runs blog)",
            ),
            (
                json!({"op": "drain", "app": "blog", "ttl_seconds": 1e9}),
                "`ttl_seconds` must be",
            ),
        ] {
            let a = ask(&ctx, body);
            assert_eq!(a["ok"], false);
            assert!(a["error"].as_str().is_some_and(|e| e.contains(says)), "{a}");
        }
    }

    #[test]
    fn a_lease_is_granted_then_held_then_broken() {
        let (ctx, _dir) = Ctx::for_tests();
        let holder = |token: &str| json!({"who": "alice", "from": "laptop", "pid": 7, "what": "apply x.site", "token": token});
        let take = |token: &str| json!({"op": "lease", "action": "take", "holder": holder(token), "ttl_seconds": 30});
        assert_eq!(ask(&ctx, take("a"))["outcome"], "granted");
        let second = ask(&ctx, take("b"));
        assert_eq!(second["outcome"], "held");
        assert_eq!(second["lease"]["who"], "alice");
        let broken = ask(&ctx, json!({"op": "lease", "action": "break"}));
        assert_eq!(
            (broken["outcome"].clone(), broken["lease"]["token"].clone()),
            (json!("cleared"), json!("a"))
        );
        assert_eq!(ask(&ctx, take("b"))["outcome"], "granted");
    }

    #[test]
    fn drains_show_in_the_apps_states() {
        let (ctx, _dir) = Ctx::for_tests();
        let a = ask(
            &ctx,
            json!({"op": "drain", "app": "blog", "why": "restart", "ttl_seconds": 60}),
        );
        assert_eq!(a["drained"], true, "{a}");
        assert_eq!(ctx.drains.why("blog").as_deref(), Some("restart"));
        ask(&ctx, json!({"op": "undrain", "app": "blog"}));
        assert_eq!(ctx.drains.why("blog"), None);
    }
}
