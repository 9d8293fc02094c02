//! Operating a running fleet from the operator's machine, over the bus:
//! `sitec status` (`status`), `sitec restart` (`restart`, with `drain`),
//! `sitec run` (`run`), `sitec logs` (`logs`),
//! `sitec unlock` and the fleet lock every changing command takes
//! (`lock`). Every command reaches the hosts' agents through
//! `bus::control` with the operator's key (`bus.operator` in the spec's
//! secrets file), each agent proving its host's key; none of them logs in
//! to a host.
//!
//! `Fleet` is what these commands need of a spec: the hosts and where their
//! agents listen, the apps and their runners, the balancers, the databases
//! and backups, and the keys. It is read from the spec's model and secrets
//! file; it never renders, plans or changes anything.

pub mod drain;
pub mod lock;
pub mod logs;
pub mod restart;
pub mod run;
pub mod status;

use crate::bus::control::{self, Client};
use crate::bus::{Bus, KeyPair, PublicKey};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// A host as the operator's commands see it.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub address: String,
    pub roles: Vec<String>,
    /// Its agent's control endpoint.
    pub control: String,
    /// Its agent's public key.
    pub key: PublicKey,
}

/// An app and where it runs.
#[derive(Debug, Clone)]
pub struct App {
    pub name: String,
    /// Its runners, the leader (where migrations run) first.
    pub runners: Vec<String>,
}

/// A database as the spec places it.
#[derive(Debug, Clone)]
pub struct Database {
    pub name: String,
    /// `postgres` or `redis`.
    pub engine: String,
    pub primary: String,
    pub standby: Option<String>,
    /// The Postgres cluster it lives in, on both hosts.
    pub cluster: Option<String>,
    pub port: u16,
}

/// A backup: which hosts it pulls from, which host keeps the copies.
#[derive(Debug, Clone)]
pub struct Backup {
    pub name: String,
    pub from: Vec<String>,
    pub to: String,
    /// How often it pulls.
    pub every_seconds: u64,
}

/// What the operator's commands need of a spec.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// The spec, as the operator named it.
    pub spec: String,
    pub hosts: Vec<Host>,
    pub apps: Vec<App>,
    pub databases: Vec<Database>,
    pub backups: Vec<Backup>,
    operator: KeyPair,
}

impl Fleet {
    /// The fleet of a checked spec, with the keys from its secrets.
    pub fn new(
        spec: &str,
        model: &crate::model::Fleet,
        secrets: &crate::secrets::Secrets,
    ) -> Result<Fleet, String> {
        use crate::bus::keys;
        let missing = |name: &str| {
            format!(
                "the secrets file beside {spec} has no `{name}`: the fleet's bus keys are made by the first apply (`sitec apply {spec}`), on the machine that keeps that file"
            )
        };
        let operator = secrets
            .get(keys::OPERATOR_SECRET)
            .map(|v| keys::derive(&v))
            .ok_or_else(|| missing(keys::OPERATOR_SECRET))?;
        let mut hosts = Vec::new();
        for (id, h) in model.hosts.iter().enumerate() {
            let secret = keys::host_secret(&h.name);
            let key = secrets
                .get(&secret)
                .map(|v| keys::derive(&v).public)
                .ok_or_else(|| missing(&secret))?;
            hosts.push(Host {
                name: h.name.clone(),
                address: model.address(id),
                roles: h.roles.clone(),
                control: crate::bus_topology::endpoint(model, id, crate::context::BUS_CONTROL_PORT),
                key,
            });
        }
        let name = |id: usize| model.hosts[id].name.clone();
        let apps = (model.apps.iter().zip(&model.placement))
            .map(|(a, runners)| App {
                name: a.name.clone(),
                runners: runners.iter().map(|h| name(*h)).collect(),
            })
            .collect();
        let clusters = crate::model::clusters::clusters(model);
        let databases = (model.databases.iter().enumerate())
            .map(|(id, d)| Database {
                name: d.name.clone(),
                engine: match d.engine {
                    crate::model::Engine::Postgres => "postgres".into(),
                    crate::model::Engine::Redis => "redis".into(),
                },
                primary: name(d.primary),
                standby: d.follower.map(name),
                cluster: (clusters.iter())
                    .find(|c| c.databases.contains(&id))
                    .map(|c| c.name.clone()),
                port: d.port,
            })
            .collect();
        let backups = (model.backups.iter())
            .map(|b| Backup {
                name: b.name.clone(),
                from: b.from.iter().map(|(h, _)| name(*h)).collect(),
                to: name(b.to),
                every_seconds: (b.every_ms / 1000).max(1),
            })
            .collect();
        Ok(Fleet {
            spec: spec.to_string(),
            hosts,
            apps,
            databases,
            backups,
            operator,
        })
    }

    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// The app named `name`, or an error naming the apps there are.
    pub fn app(&self, name: &str) -> Result<&App, String> {
        self.apps.iter().find(|a| a.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.apps.iter().map(|a| a.name.as_str()).collect();
            format!(
                "{} has no app `{name}`; its apps: {}",
                self.spec,
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            )
        })
    }

    /// The hosts that run a balancer.
    pub fn balancers(&self) -> Vec<&Host> {
        (self.hosts.iter())
            .filter(|h| h.roles.iter().any(|r| r == "balancer"))
            .collect()
    }

    /// A bus speaking with the operator's key, for the agents' clients.
    pub fn agents(&self) -> Result<Agents, String> {
        Ok(Agents {
            bus: Bus::new(self.operator.clone())?,
            hosts: (self.hosts.iter())
                .map(|h| (h.name.clone(), (h.control.clone(), h.key)))
                .collect(),
        })
    }
}

/// The agents of a fleet, reached over one bus (one libzmq context).
/// Cheap to clone; each thread makes its own clients.
#[derive(Clone)]
pub struct Agents {
    bus: Bus,
    hosts: BTreeMap<String, (String, PublicKey)>,
}

impl Agents {
    /// A client of `host`'s agent (connecting in the background).
    pub fn client(&self, host: &str) -> Result<Client, String> {
        let (endpoint, key) = self
            .hosts
            .get(host)
            .ok_or_else(|| format!("no host `{host}` in the spec"))?;
        Client::connect_on(&self.bus, endpoint, key)
    }

    /// Asks `host`'s agent once; an answer that says `ok: false` is an error.
    pub fn ask(&self, host: &str, request: &Value, timeout: Duration) -> Result<Value, String> {
        let answer = self.client(host)?.ask(request, timeout)?;
        checked(host, answer)
    }

    /// Asks every one of `hosts` at once: each host's answer (or why there is none).
    pub fn ask_all(
        &self,
        hosts: &[String],
        request: &Value,
        timeout: Duration,
    ) -> Vec<(String, Result<Value, String>)> {
        self.ask_all_until(hosts, request, timeout, |_| false)
    }

    /// `ask_all`, waiting no longer once `settled` says the answers so far
    /// (by host; a host yet to answer, or that refused, is left out) are
    /// enough.
    pub fn ask_all_until(
        &self,
        hosts: &[String],
        request: &Value,
        timeout: Duration,
        settled: impl Fn(&BTreeMap<&str, &Value>) -> bool,
    ) -> Vec<(String, Result<Value, String>)> {
        let mut clients = Vec::new();
        let mut failed = Vec::new();
        for h in hosts {
            match self.client(h) {
                Ok(c) => clients.push((h.clone(), c)),
                Err(e) => failed.push((h.clone(), Err(e))),
            }
        }
        let (names, mut sockets): (Vec<String>, Vec<Client>) = clients.into_iter().unzip();
        let answers = control::ask_all_until(&mut sockets, request, timeout, |so_far| {
            let by_host = (names.iter().zip(so_far))
                .filter_map(|(h, a)| Some((h.as_str(), (*a)?)))
                .collect();
            settled(&by_host)
        });
        let mut all: Vec<(String, Result<Value, String>)> = (names.into_iter().zip(answers))
            .map(|(h, a)| {
                let a = a.and_then(|a| checked(&h, a));
                (h, a)
            })
            .collect();
        all.extend(failed);
        all
    }
}

/// An answer, or its `error` as one naming the host.
fn checked(host: &str, answer: Value) -> Result<Value, String> {
    if answer.get("ok") == Some(&Value::Bool(true)) {
        Ok(answer)
    } else {
        let error = answer
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("refused without a reason");
        Err(format!("{host}'s agent: {error}"))
    }
}

/// From now on Ctrl-C here sets `flag` instead of ending sitec. The
/// handler is in place when this returns (it is registered here, on the
/// caller's thread), so a Ctrl-C at any later moment is caught; the
/// callers' loops are blocking and poll the flag. (It used to be a tokio
/// signal stream on a thread of its own, which returned after at most 5 s
/// whether or not the handler was in yet.) Returns false when the handler
/// could not be registered; Ctrl-C then ends sitec as before.
#[allow(unsafe_code)]
pub fn catch_interrupts(flag: &'static std::sync::atomic::AtomicBool) -> bool {
    // SAFETY: the action only stores to an atomic, which is
    // async-signal-safe; it allocates, locks and prints nothing.
    let registered = unsafe {
        signal_hook_registry::register(libc::SIGINT, move || {
            flag.store(true, std::sync::atomic::Ordering::Relaxed);
        })
    };
    registered.is_ok()
}

/// Who runs this command, from where: for the fleet lock and drains.
pub fn operator_identity() -> (String, String) {
    let who = ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| format!("uid {}", rustix::process::getuid().as_raw()));
    let from = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "this machine".into());
    (who, from)
}

/// `1h02m`, `3m12s`, `45s`: a span of seconds for tables.
pub fn span(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, s / 60 % 60),
        _ => format!("{}d{:02}h", s / 86_400, s / 3600 % 24),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_at_a_glance() {
        assert_eq!(span(5.4), "5s");
        assert_eq!(span(192.0), "3m12s");
        assert_eq!(span(3720.0), "1h02m");
        assert_eq!(span(90_000.0), "1d01h");
        assert_eq!(span(-3.0), "0s");
    }

    /// A SIGINT after `catch_interrupts` returns sets the flag and leaves
    /// the process running (this test binary would die otherwise).
    #[test]
    fn a_ctrl_c_after_catch_interrupts_only_sets_the_flag() {
        static CAUGHT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        assert!(catch_interrupts(&CAUGHT));
        rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::INT)
            .expect("kill");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !CAUGHT.load(std::sync::atomic::Ordering::Relaxed) {
            assert!(
                std::time::Instant::now() < deadline,
                "the flag was never set"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
