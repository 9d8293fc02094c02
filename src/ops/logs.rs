//! `sitec logs`' operator end: asks the fleet's collectors (the agents of
//! the hosts with the `logs` role, each of which holds every line) for the
//! lines they filed (`agent::logs`), chosen by app (its tags), host, time
//! and a regular expression, and prints them in time order across runners,
//! from the first collector that answers. With `follow` it asks that
//! collector again from the cursor its last answer gave, every
//! `FOLLOW_EVERY` (at once while it says there is more), until Ctrl-C
//! (which ends it between two lines, exit 0) or standard output goes.
//!
//! What it can be made to hold is bounded: each answer is at most the
//! bus's `Kind::Ask` message (4 MiB, refused by libzmq before it is read),
//! and it is printed before the next is asked for.

use super::{Agents, Fleet};
use crate::agent::logs::time_text;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a collector may take to answer.
const ANSWER: Duration = Duration::from_secs(15);
/// How often `-f` asks again.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);
/// How soon `-f` notices Ctrl-C while it waits.
const NOTICE: Duration = Duration::from_millis(50);

/// Ctrl-C pressed while following.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// What to show.
pub struct Query<'a> {
    /// Apps and hosts, as the operator named them; none: every line.
    pub names: &'a [String],
    /// Only lines this long ago or later.
    pub since: Option<Duration>,
    /// Only lines this regular expression matches.
    pub grep: Option<&'a str>,
    /// The newest this many lines (at most `agent::logs::LINES_MAX`).
    pub lines: usize,
    pub follow: bool,
    /// One JSON object a line.
    pub json: bool,
}

/// A `sitec logs` request: the apps and hosts `names` stands for.
fn request(fleet: &Fleet, query: &Query) -> Result<Value, String> {
    let (mut apps, mut hosts) = (Vec::new(), Vec::new());
    for name in query.names {
        if fleet.apps.iter().any(|a| &a.name == name) {
            apps.push(name.clone());
        } else if fleet.host(name).is_some() {
            hosts.push(name.clone());
        } else {
            let list = |names: Vec<&str>| {
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            };
            return Err(format!(
                "`{name}` is neither an app nor a host of {}; name one of its apps ({}) or hosts ({}), or none for every line",
                fleet.spec,
                list(fleet.apps.iter().map(|a| a.name.as_str()).collect()),
                list(fleet.hosts.iter().map(|h| h.name.as_str()).collect()),
            ));
        }
    }
    if let Some(pattern) = query.grep {
        crate::agent::logs::grep(pattern)?;
    }
    let since = (query.since).map(|d| time_text(crate::agent::unix_time() - d.as_secs_f64()));
    Ok(json!({
        "op": "logs",
        "apps": apps,
        "hosts": hosts,
        "since": since,
        "grep": query.grep,
        "limit": query.lines.clamp(1, crate::agent::logs::LINES_MAX),
    }))
}

/// The hosts that collect the fleet's logs, or an error naming the fix.
fn collectors(fleet: &Fleet) -> Result<Vec<String>, String> {
    let names: Vec<String> = (fleet.hosts.iter())
        .filter(|h| h.roles.iter().any(|r| r == "logs"))
        .map(|h| h.name.clone())
        .collect();
    if names.is_empty() {
        return Err(format!(
            "{} has no host with the `logs` role, so no agent collects the fleet's logs: add `logs` to a host's roles (the balancer's, say) and run `sitec apply {}`",
            fleet.spec, fleet.spec
        ));
    }
    Ok(names)
}

/// Prints the lines asked for (and, following, every new one until
/// Ctrl-C or standard output goes); the number of lines printed.
pub fn show(fleet: &Fleet, agents: &Agents, query: &Query) -> Result<u64, String> {
    let mut request = request(fleet, query)?;
    let collectors = collectors(fleet)?;
    if query.follow {
        super::catch_interrupts(&INTERRUPTED);
    }
    let (collector, mut answer) = first_answer(agents, &collectors, &request)?;
    let mut printed = 0;
    loop {
        let lines = answer
            .get("lines")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        for line in lines {
            print(line, query.json);
            printed += 1;
        }
        if !query.follow {
            if answer.get("more") == Some(&Value::Bool(true)) {
                crate::errln!(
                    "note: older lines were left out (at most {} a request); narrow it with --since or --grep, or ask for more with --lines",
                    query.lines.min(crate::agent::logs::LINES_MAX)
                );
            }
            return Ok(printed);
        }
        if crate::stdio::stdout_gone() {
            return Ok(printed);
        }
        let more = answer.get("more") == Some(&Value::Bool(true));
        if interrupted_within(if more { Duration::ZERO } else { FOLLOW_EVERY }) {
            return Ok(printed);
        }
        request["cursor"] = answer.get("cursor").cloned().unwrap_or_else(|| json!({}));
        request["since"] = Value::Null;
        match ask_until_answered(agents, &collector, &request) {
            Some(next) => answer = next,
            None => return Ok(printed),
        }
    }
}

/// Waits `span`, or less if Ctrl-C comes: whether it came.
fn interrupted_within(span: Duration) -> bool {
    let until = Instant::now() + span;
    loop {
        if INTERRUPTED.load(Ordering::Relaxed) {
            return true;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        std::thread::sleep(left.min(NOTICE));
    }
}

/// The first collector (in the spec's order) that answers, and its answer;
/// asked all at once.
fn first_answer(
    agents: &Agents,
    collectors: &[String],
    request: &Value,
) -> Result<(String, Value), String> {
    let mut errors = Vec::new();
    for (host, answer) in agents.ask_all(collectors, request, ANSWER) {
        match answer {
            Ok(answer) => return Ok((host, answer)),
            Err(e) => errors.push(e),
        }
    }
    Err(format!("no collector answered: {}", errors.join("; ")))
}

/// `-f`: asks until the collector answers, saying once why it does not;
/// None once Ctrl-C comes.
fn ask_until_answered(agents: &Agents, collector: &str, request: &Value) -> Option<Value> {
    let mut said = None;
    loop {
        let asked = Instant::now();
        match agents.ask(collector, request, ANSWER) {
            Ok(answer) => {
                if said.is_some() {
                    crate::errln!("note: {collector} answers again");
                }
                return Some(answer);
            }
            Err(e) => {
                if said.as_ref() != Some(&e) {
                    crate::errln!("note: {e}; asking again");
                    said = Some(e);
                }
                let pause = Duration::from_secs(1).saturating_sub(asked.elapsed());
                if interrupted_within(pause) {
                    return None;
                }
            }
        }
    }
}

/// `TIME HOST TAG LINE`, or the entry as JSON.
fn print(line: &Value, json: bool) {
    if json {
        crate::outln!("{line}");
        return;
    }
    let field = |name: &str| line.get(name).and_then(Value::as_str).unwrap_or("");
    crate::outln!(
        "{} {} {} {}",
        field("time"),
        field("host"),
        field("tag"),
        field("line")
    );
}

/// `10m`, `90s`, `2h`, `1d`, `1h30m`: a span back from now.
pub fn parse_since(text: &str) -> Result<Duration, String> {
    let wrong =
        || format!("--since `{text}` is not a span of time; write e.g. 30s, 10m, 2h, 1d or 1h30m");
    let mut total = 0u64;
    let mut digits = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(wrong()),
        };
        let n: u64 = digits.parse().map_err(|_| wrong())?;
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(wrong)?;
        digits.clear();
    }
    if !digits.is_empty() || total == 0 {
        return Err(wrong());
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::keys::derive;

    fn fleet(roles: &[&str]) -> Fleet {
        let host = |name: &str, roles: &[&str]| super::super::Host {
            name: name.into(),
            address: "10.0.0.1".into(),
            roles: roles.iter().map(|r| (*r).to_string()).collect(),
            control: "tcp://10.0.0.1:7701".into(),
            key: derive(name).public,
        };
        Fleet {
            spec: "fleet.site".into(),
            hosts: vec![host("lb1", roles), host("run1", &["runner"])],
            apps: vec![super::super::App {
                name: "blog".into(),
                runners: vec!["run1".into()],
            }],
            databases: Vec::new(),
            backups: Vec::new(),
            operator: derive("operator"),
        }
    }

    fn query<'a>(names: &'a [String], grep: Option<&'a str>) -> Query<'a> {
        Query {
            names,
            since: Some(Duration::from_secs(600)),
            grep,
            lines: 1_000_000,
            follow: false,
            json: false,
        }
    }

    #[test]
    fn names_are_apps_or_hosts_and_the_rest_is_refused() {
        let f = fleet(&["balancer", "logs"]);
        let names = ["blog".to_string(), "lb1".to_string()];
        let r = request(&f, &query(&names, Some("GET|POST"))).expect("request");
        assert_eq!(
            (r["apps"].clone(), r["hosts"].clone()),
            (json!(["blog"]), json!(["lb1"]))
        );
        assert_eq!(r["limit"], crate::agent::logs::LINES_MAX);
        let since = r["since"].as_str().expect("since");
        assert_eq!(since.len(), 24);
        assert!(*since < *time_text(crate::agent::unix_time() - 590.0));
        let wrong = ["blgo".to_string()];
        let e = request(&f, &query(&wrong, None)).expect_err("unknown");
        assert_eq!(e, "`blgo` is neither an app nor a host of fleet.site; name one of its apps (blog) or hosts (lb1, run1), or none for every line");
        let e = request(&f, &query(&[], Some("(unclosed"))).expect_err("grep");
        assert!(
            e.starts_with("--grep `(unclosed` is not a regular expression"),
            "{e}"
        );
        assert_eq!(collectors(&f), Ok(vec!["lb1".to_string()]));
        let e = collectors(&fleet(&["balancer"])).expect_err("no collector");
        assert!(e.contains("add `logs` to a host's roles"), "{e}");
    }

    #[test]
    fn spans_back_from_now() {
        assert_eq!(parse_since("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_since("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_since("2d"), Ok(Duration::from_secs(172_800)));
        for wrong in ["", "10", "m", "5x", "0s", "99999999999999999999d"] {
            let e = parse_since(wrong).expect_err(wrong);
            assert!(e.contains("e.g. 30s, 10m"), "{e}");
        }
    }
}
