//! The state of the host's app services, from systemd: one
//! `systemctl show -p ActiveState,SubState -- UNIT...` for every unit of
//! every app, so a heartbeat costs one process however many apps run here.
//! systemctl answers over D-Bus, which the unit's hardening leaves open. A
//! systemctl that fails or hangs makes every state `unknown`, with the
//! reason, rather than stopping the heartbeat.

use super::config::App;
use crate::host::assess::{show_blocks, show_value};
use serde::Serialize;
use std::time::Duration;

/// How long one query may take: less than the heartbeat's second.
const QUERY_TIMEOUT: Duration = Duration::from_millis(900);

/// One unit as systemd sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnitState {
    pub unit: String,
    /// `active`, `inactive`, `failed`, `activating`... or `unknown`.
    pub active: String,
    /// `running`, `dead`, `exited`... or `unknown`.
    pub sub: String,
}

/// One app: healthy when every unit of it is active; serving when its web
/// service (gunicorn) is, whatever its workers do (the balancers go by this).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppState {
    pub name: String,
    pub healthy: bool,
    pub serving: bool,
    pub units: Vec<UnitState>,
    /// Why the states are unknown, when they are.
    pub error: Option<String>,
    /// Set while the app is drained here (`drain`): why. The balancers
    /// hold it out of rotation while it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain: Option<String>,
}

/// Asks systemd about every unit of `apps`.
pub async fn query(apps: &[App]) -> Vec<AppState> {
    let units: Vec<&str> = apps.iter().flat_map(App::units).collect();
    if units.is_empty() {
        return Vec::new();
    }
    let run = tokio::process::Command::new("systemctl")
        .args(["show", "-p", "ActiveState,SubState", "--"])
        .args(&units)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let states = match tokio::time::timeout(QUERY_TIMEOUT, run).await {
        Err(_) => Err(format!("systemctl did not answer within {QUERY_TIMEOUT:?}")),
        Ok(Err(e)) => Err(format!("cannot run systemctl: {e}")),
        Ok(Ok(out)) if !out.status.success() => Err(format!(
            "systemctl failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(Ok(out)) => parse(&String::from_utf8_lossy(&out.stdout), units.len()),
    };
    assemble(apps, states)
}

/// `systemctl show` prints one block of `Key=value` lines per unit, in the
/// order asked, blocks apart by a blank line: `(ActiveState, SubState)` each.
pub fn parse(out: &str, count: usize) -> Result<Vec<(String, String)>, String> {
    let blocks: Vec<(String, String)> = show_blocks(out)
        .map(|block| {
            let get = |key: &str| show_value(block, key).unwrap_or("unknown").to_owned();
            (get("ActiveState"), get("SubState"))
        })
        .collect();
    if blocks.len() == count {
        Ok(blocks)
    } else {
        Err(format!(
            "systemctl show answered for {} units, {count} were asked",
            blocks.len()
        ))
    }
}

/// Whether a unit in systemd's `ActiveState` runs: `active`, or
/// `reloading` (its `ExecReload` running: gunicorn keeps its socket and
/// its workers serve through a SIGHUP, so a heartbeat that catches that
/// instant must not take it out of rotation).
fn is_up(active: &str) -> bool {
    matches!(active, "active" | "reloading")
}

/// Pairs each app's units with their states (or the error, for all).
fn assemble(apps: &[App], states: Result<Vec<(String, String)>, String>) -> Vec<AppState> {
    let (mut found, error) = match states {
        Ok(s) => (s.into_iter(), None),
        Err(e) => (Vec::new().into_iter(), Some(e)),
    };
    apps.iter()
        .map(|app| {
            let units: Vec<UnitState> = app
                .units()
                .map(|unit| {
                    let (active, sub) = found
                        .next()
                        .unwrap_or_else(|| ("unknown".into(), "unknown".into()));
                    UnitState {
                        unit: unit.to_owned(),
                        active,
                        sub,
                    }
                })
                .collect();
            AppState {
                name: app.name.clone(),
                healthy: units.iter().all(|u| is_up(&u.active)),
                // `App::units` lists the web service first.
                serving: units.first().is_some_and(|u| is_up(&u.active)),
                units,
                error: error.clone(),
                drain: None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blog() -> Vec<App> {
        vec![App {
            name: "blog".into(),
            service: "sitec-app-blog.service".into(),
            workers: vec!["sitec-app-blog-worker-celery.service".into()],
            socket: None,
            domain: None,
            run_socket: None,
        }]
    }

    #[test]
    fn one_block_per_unit_in_order() {
        let out = "ActiveState=active\nSubState=running\n\nSubState=dead\nActiveState=inactive\n";
        let states = parse(out, 2).expect("two blocks");
        assert_eq!(states[1], ("inactive".to_owned(), "dead".to_owned()));
        let apps = assemble(&blog(), Ok(states));
        assert!(!apps[0].healthy, "its worker is inactive");
        assert!(apps[0].serving, "its web service runs");
        assert_eq!(apps[0].units[0].sub, "running");
        assert_eq!(
            apps[0].units[1].unit,
            "sitec-app-blog-worker-celery.service"
        );
        assert!(parse(out, 3).is_err());
    }

    #[test]
    fn a_reloading_web_service_still_serves() {
        let out =
            "ActiveState=reloading\nSubState=reload\n\nActiveState=active\nSubState=running\n";
        let apps = assemble(&blog(), Ok(parse(out, 2).expect("two blocks")));
        assert!(apps[0].serving && apps[0].healthy);
        let out =
            "ActiveState=activating\nSubState=start\n\nActiveState=active\nSubState=running\n";
        let apps = assemble(&blog(), Ok(parse(out, 2).expect("two blocks")));
        assert!(!apps[0].serving, "a starting one does not serve yet");
    }

    #[test]
    fn a_failed_query_makes_every_state_unknown() {
        let apps = assemble(&blog(), Err("systemctl failed".into()));
        assert!(!apps[0].healthy);
        assert!(!apps[0].serving);
        assert!(apps[0].units.iter().all(|u| u.active == "unknown"));
        assert_eq!(apps[0].error.as_deref(), Some("systemctl failed"));
    }
}
