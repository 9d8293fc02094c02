//! Whether the services an apply started or reloaded came up and stayed up.
//!
//! `systemctl start` of a `Type=simple` or `exec` unit succeeds as soon as
//! its program runs, so a service that dies at once (a bad config, a missing
//! module) would pass for started. Each such unit is watched until it has
//! been up for [`STILL_UP_FOR_US`] since it was asked, then checked once
//! more: still active, and the same run (its `ActiveEnterTimestamp`
//! unchanged, no automatic restart counted: a crash loop with a short
//! `RestartSec` looks active at most instants). A unit that tells systemd
//! itself when it is ready (`Type=notify`, `forking`, `oneshot`, `dbus`) is
//! believed once active after a start: its start failures come before its
//! readiness. After a reload every unit is watched.
//!
//! All the units of one host are watched over the same moment, and a unit
//! that came up early has served its time while a slower one was starting.

use super::assess::{show_blocks, show_value};
use super::system::program;

/// How long a started (or reloaded) service must stay up to count as up.
const STILL_UP_FOR_US: u64 = 200_000;

/// How long a start may take before the apply calls it failed.
const START_TIMEOUT_US: u64 = 90_000_000;

/// A unit the apply asked to start (or restart) or to reload, and when.
#[derive(Clone, Debug)]
pub struct Asked {
    pub unit: String,
    /// CLOCK_MONOTONIC in µs, the clock of systemd's `*TimestampMonotonic`.
    pub since_us: u64,
    /// A new run: a start or restart (`false`: a reload).
    pub started: bool,
    /// `systemctl` started it, so systemd counts `NRestarts` from zero.
    pub counted_from_zero: bool,
}

impl Asked {
    /// A `systemctl start` or `restart` about to be asked.
    pub fn start(unit: &str) -> Self {
        Self {
            unit: unit.to_string(),
            since_us: now_us(),
            started: true,
            counted_from_zero: true,
        }
    }

    /// A reload or restart by a command (the spec's, or `systemctl
    /// reload`) about to run; `restarts`: it makes a new run. A `systemctl
    /// restart` counts automatic restarts from zero, as a start does.
    pub fn command(unit: &str, restarts: bool, command: &str) -> Self {
        Self {
            unit: unit.to_string(),
            since_us: now_us(),
            started: restarts,
            counted_from_zero: restarts && command.starts_with("systemctl restart "),
        }
    }

    fn verb(&self) -> &'static str {
        if self.started {
            "started"
        } else {
            "reloaded"
        }
    }
}

/// What systemd says of a unit's current run.
#[derive(Clone, Debug, PartialEq, Eq)]
struct RunState {
    /// `ActiveState`: active, activating, failed, ...
    active: String,
    /// `Type`: simple, exec, notify, ...
    kind: String,
    /// `ActiveEnterTimestampMonotonic`: when this run became active.
    active_since_us: u64,
    /// `NRestarts`: automatic restarts since the last manual start.
    restarts: u64,
    /// `InactiveEnterTimestampMonotonic`: when it last stopped.
    inactive_since_us: u64,
}

/// What systemd says of each unit, asked in one `systemctl show` (each
/// call is a process and a D-Bus round trip: on a first apply, with many
/// hosts sharing a machine, polling one unit per call cost a large share
/// of all the CPU).
fn run_states(units: &[&str]) -> Vec<RunState> {
    if units.is_empty() {
        // `systemctl show` of nothing shows the manager itself.
        return Vec::new();
    }
    let mut args = vec![
        "show",
        "-p",
        "ActiveState,Type,ActiveEnterTimestampMonotonic,NRestarts,InactiveEnterTimestampMonotonic",
    ];
    args.extend(units);
    parse_run_states(&program("systemctl", &args).output, units.len())
}

/// `count` units' blocks of `systemctl show` (separated by blank lines, in
/// the order asked); a missing block reads as a unit systemd knows nothing of.
fn parse_run_states(show: &str, count: usize) -> Vec<RunState> {
    let mut blocks = show_blocks(show).map(parse_run_state);
    (0..count)
        .map(|_| blocks.next().unwrap_or_else(|| parse_run_state("")))
        .collect()
}

fn parse_run_state(show: &str) -> RunState {
    let value = |key: &str| show_value(show, key).unwrap_or("").to_string();
    RunState {
        active: value("ActiveState"),
        kind: value("Type"),
        active_since_us: value("ActiveEnterTimestampMonotonic").parse().unwrap_or(0),
        restarts: value("NRestarts").parse().unwrap_or(0),
        inactive_since_us: value("InactiveEnterTimestampMonotonic")
            .parse()
            .unwrap_or(0),
    }
}

/// CLOCK_MONOTONIC in µs (what systemd's monotonic timestamps count).
fn now_us() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000 + u64::try_from(t.tv_nsec).unwrap_or(0) / 1_000
}

/// Waits (up to 90 s) until each unit is active, then until each has
/// stayed up (see the module's text). One outcome per unit, in order: an
/// error says what went wrong.
pub fn came_up(asked: &[Asked]) -> Vec<Result<(), String>> {
    let mut first: Vec<Option<Result<RunState, String>>> = vec![None; asked.len()];
    // Short waits first (most units are up at once), then longer ones.
    let mut pause_ms = 25;
    loop {
        let pending: Vec<usize> = (0..asked.len()).filter(|&i| first[i].is_none()).collect();
        if pending.is_empty() {
            break;
        }
        let units: Vec<&str> = pending.iter().map(|&i| asked[i].unit.as_str()).collect();
        let now = now_us();
        for (i, state) in pending.iter().zip(run_states(&units)) {
            first[*i] = became_active(&asked[*i], state, now);
        }
        if first.iter().any(Option::is_none) {
            std::thread::sleep(std::time::Duration::from_millis(pause_ms));
            pause_ms = (pause_ms * 2).min(100);
        }
    }
    let first: Vec<Result<RunState, String>> = first.into_iter().flatten().collect();
    // The units to watch, each from when it was asked or became active,
    // whichever came later.
    let watched: Vec<(&str, u64)> = asked
        .iter()
        .zip(&first)
        .filter_map(|(a, f)| {
            let f = f.as_ref().ok().filter(|f| needs_watch(a, f))?;
            Some((a.unit.as_str(), a.since_us.max(f.active_since_us)))
        })
        .collect();
    if let Some(since) = watched.iter().map(|(_, since)| *since).max() {
        let (deadline, now) = (since + STILL_UP_FOR_US, now_us());
        if deadline > now {
            std::thread::sleep(std::time::Duration::from_micros(deadline - now));
        }
    }
    let units: Vec<&str> = watched.iter().map(|(unit, _)| *unit).collect();
    let mut later = run_states(&units).into_iter();
    asked
        .iter()
        .zip(first)
        .map(|(a, f)| {
            let f = f?;
            if needs_watch(a, &f) {
                let now = later.next().unwrap_or_else(|| parse_run_state(""));
                stayed_up(a, &f, &now)
            } else {
                Ok(())
            }
        })
        .collect()
}

/// `None` while the unit is still on its way up (`now_us`: the clock).
fn became_active(asked: &Asked, now: RunState, now_us: u64) -> Option<Result<RunState, String>> {
    let unit = &asked.unit;
    match now.active.as_str() {
        "active" | "reloading" => Some(Ok(now)),
        "failed" => Some(Err(format!("{unit} failed to start"))),
        // A reload of a unit that is not running: nothing will change.
        "inactive" if !asked.started => Some(Err(format!("{unit} is not running"))),
        // It ran and stopped since the start was asked (exit status 0,
        // so not "failed").
        "inactive" if now.inactive_since_us > asked.since_us => {
            Some(Err(format!("{unit} exited right after it started")))
        }
        // Its run ended before it was ready (a program that cannot exec,
        // a crash while importing the app) and systemd is starting it
        // again (`Restart=`): it would go on so until the timeout.
        "activating" if asked.counted_from_zero && now.restarts > 0 => Some(Err(format!(
            "{unit} died before it was ready, and systemd is starting it again \
             ({} automatic restarts)",
            now.restarts
        ))),
        state if now_us > asked.since_us + START_TIMEOUT_US => Some(Err(format!(
            "{unit} is still {state} after {} s",
            START_TIMEOUT_US / 1_000_000
        ))),
        _ => None,
    }
}

/// Units that say when they are ready need no watch after a start.
fn needs_watch(asked: &Asked, first: &RunState) -> bool {
    !(asked.started
        && matches!(
            first.kind.as_str(),
            "notify" | "forking" | "oneshot" | "dbus"
        ))
}

/// The unit, `first` seen active, is `now` still in the same run.
fn stayed_up(asked: &Asked, first: &RunState, now: &RunState) -> Result<(), String> {
    let unit = &asked.unit;
    let verb = asked.verb();
    if now.active != "active" && now.active != "reloading" {
        return Err(format!("{unit} is {} right after it {verb}", now.active));
    }
    // `systemctl start` resets NRestarts, so after one any count is a crash.
    let restarted = now.active_since_us != first.active_since_us
        || now.restarts > first.restarts
        || (asked.counted_from_zero && now.restarts > 0);
    if restarted {
        return Err(format!(
            "{unit} died right after it {verb} and systemd started it again \
             ({} automatic restarts)",
            now.restarts
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(active: &str, kind: &str, since: u64, restarts: u64) -> RunState {
        RunState {
            active: active.into(),
            kind: kind.into(),
            active_since_us: since,
            restarts,
            inactive_since_us: 0,
        }
    }

    fn asked(started: bool) -> Asked {
        Asked {
            unit: "web.service".into(),
            since_us: 1_000,
            started,
            counted_from_zero: started,
        }
    }

    #[test]
    fn systemctl_show_output_is_read() {
        let show = "Type=exec\nNRestarts=3\nActiveState=active\n\
                    ActiveEnterTimestampMonotonic=13561444769\nInactiveEnterTimestampMonotonic=7\n";
        let mut expected = state("active", "exec", 13_561_444_769, 3);
        expected.inactive_since_us = 7;
        assert_eq!(parse_run_state(show), expected);
        assert_eq!(parse_run_state(""), state("", "", 0, 0));
    }

    #[test]
    fn one_show_of_several_units_is_read_in_order() {
        let show = "Type=exec\nActiveState=active\n\nType=\nActiveState=inactive\n\n\
                    Type=notify\nActiveState=activating\n";
        let states = parse_run_states(show, 4);
        let kinds: Vec<(&str, &str)> = states
            .iter()
            .map(|s| (s.kind.as_str(), s.active.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("exec", "active"),
                ("", "inactive"),
                ("notify", "activating"),
                ("", "")
            ]
        );
    }

    #[test]
    fn a_unit_that_says_it_is_ready_needs_no_watch_after_a_start_only() {
        assert!(!needs_watch(&asked(true), &state("active", "notify", 5, 0)));
        assert!(!needs_watch(
            &asked(true),
            &state("active", "forking", 5, 0)
        ));
        assert!(needs_watch(&asked(true), &state("active", "exec", 5, 0)));
        assert!(needs_watch(&asked(true), &state("active", "simple", 5, 0)));
        assert!(needs_watch(&asked(false), &state("active", "notify", 5, 0)));
    }

    #[test]
    fn the_same_run_still_active_stayed_up() {
        let first = state("active", "exec", 5_000, 0);
        assert_eq!(stayed_up(&asked(true), &first, &first.clone()), Ok(()));
        let after_reload = state("reloading", "exec", 5_000, 0);
        assert_eq!(stayed_up(&asked(false), &first, &after_reload), Ok(()));
    }

    #[test]
    fn a_unit_that_died_or_restarted_did_not_stay_up() {
        let first = state("active", "exec", 5_000, 0);
        let died = stayed_up(&asked(true), &first, &state("failed", "exec", 5_000, 0));
        assert_eq!(
            died,
            Err("web.service is failed right after it started".into())
        );
        // A crash loop caught while it looks active: a new run, a restart counted.
        let new_run = stayed_up(&asked(true), &first, &state("active", "exec", 9_000, 1));
        assert!(new_run.is_err_and(|e| e.contains("died right after it started")));
        let counted = stayed_up(&asked(true), &first, &state("active", "exec", 5_000, 1));
        assert!(counted.is_err());
        // Seen active only after a restart already happened.
        let late = state("active", "exec", 5_000, 2);
        assert!(stayed_up(&asked(true), &late, &late.clone()).is_err());
        // After a reload, older restarts are not this apply's doing.
        assert_eq!(stayed_up(&asked(false), &late, &late.clone()), Ok(()));
    }

    #[test]
    fn a_start_that_failed_exited_or_hangs_is_reported() {
        let a = asked(true);
        let soon = a.since_us + 500_000;
        let failed = became_active(&a, state("failed", "exec", 0, 0), soon);
        assert_eq!(failed, Some(Err("web.service failed to start".into())));
        let on_its_way = state("activating", "notify", 0, 0);
        assert_eq!(became_active(&a, on_its_way.clone(), soon), None);
        let late = a.since_us + START_TIMEOUT_US + 1;
        assert_eq!(
            became_active(&a, on_its_way, late),
            Some(Err("web.service is still activating after 90 s".into()))
        );
        // Inactive: not started yet (the job is queued), or ran and exited.
        let queued = state("inactive", "exec", 0, 0);
        assert_eq!(became_active(&a, queued.clone(), soon), None);
        let mut exited = queued;
        exited.inactive_since_us = a.since_us + 1;
        assert_eq!(
            became_active(&a, exited, soon),
            Some(Err("web.service exited right after it started".into()))
        );
        let up = state("active", "exec", 2_000, 0);
        assert_eq!(became_active(&a, up.clone(), soon), Some(Ok(up)));
        // A notify unit whose program cannot exec (203/EXEC) under Restart=.
        let looping = state("activating", "notify", 0, 1);
        assert_eq!(
            became_active(&a, looping.clone(), soon),
            Some(Err("web.service died before it was ready, and systemd is starting it again (1 automatic restarts)".into()))
        );
        // After a reload by a command, the count is not this apply's.
        assert_eq!(became_active(&asked(false), looping, soon), None);
    }
}
