//! `Shared` and `State`: what every connection reads. `State` is one
//! validated config turned into a router, limits and a TLS acceptor; it is
//! immutable, and a reload builds a new one and swaps it in atomically
//! (`ArcSwap`), so a request keeps the generation it started with and
//! nothing in flight notices. `Shared` lives for the whole process: the
//! current state, the backends (kept by address across reloads, with their
//! health and pools), metrics, the access log and the drain signal. It never
//! reads sockets.

use super::access_log::AccessLog;
use super::backend::Backend;
use super::config::{Health, Limits, Timeouts, Valid};
use super::metrics::Metrics;
use super::router::{App, Router};
use super::scanner::HeadLimits;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

pub struct State {
    pub router: Router,
    pub head_limits: HeadLimits,
    pub limits: Limits,
    pub timeouts: Timeouts,
    pub health: Health,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// When each certificate `tls` serves expires.
    pub certs: Vec<super::tls::Expiry>,
    /// (host, app) as heartbeats name them: that app's backends on that
    /// host (routes that list their backends' `hosts`).
    pub runners: HashMap<(String, String), Vec<Arc<Backend>>>,
    pub valid: Valid,
}

pub struct Shared {
    state: ArcSwap<State>,
    backends: Mutex<HashMap<SocketAddr, Arc<Backend>>>,
    pub metrics: Metrics,
    log: ArcSwap<Option<AccessLog>>,
    /// Set once, when a drain starts; `drain_started` waiters are woken then.
    draining: AtomicBool,
    drain_started: Notify,
    pub config_path: Option<PathBuf>,
    /// When each runner's agent was last heard (a heartbeat that spoke for it).
    heard: Mutex<HashMap<String, std::time::Instant>>,
}

impl Shared {
    pub fn new(valid: Valid, config_path: Option<PathBuf>) -> Result<Arc<Shared>, String> {
        let shared = Arc::new(Shared {
            state: ArcSwap::from_pointee(placeholder(valid.clone())),
            backends: Mutex::new(HashMap::new()),
            metrics: Metrics::default(),
            log: ArcSwap::from_pointee(None),
            draining: AtomicBool::new(false),
            drain_started: Notify::new(),
            config_path,
            heard: Mutex::new(HashMap::new()),
        });
        shared.install(valid)?;
        Ok(shared)
    }

    pub fn state(&self) -> Arc<State> {
        self.state.load_full()
    }

    pub fn log(&self) -> arc_swap::Guard<Arc<Option<AccessLog>>> {
        self.log.load()
    }

    /// Builds the running state for a validated config and swaps it in; on
    /// error nothing changes.
    pub fn install(&self, valid: Valid) -> Result<(), String> {
        let c = &valid.config;
        let (tls, certs) = if c.tls.certs.is_empty() {
            (None, Vec::new())
        } else {
            let (acceptor, certs) = super::tls::acceptor(&c.tls.certs)?;
            (Some(acceptor), certs)
        };
        let log = match &c.access_log.path {
            Some(p) if self.log().as_ref().as_ref().is_some_and(|l| l.path() == p) => None,
            Some(p) => Some(Some(AccessLog::open(p)?)),
            None => Some(None),
        };
        let mut router = Router::default();
        let mut runners: HashMap<(String, String), Vec<Arc<Backend>>> = HashMap::new();
        for (route, addrs) in c.routes.iter().zip(&valid.backends) {
            let name = route
                .name
                .clone()
                .unwrap_or_else(|| route.domains[0].clone());
            let backends: Vec<Arc<Backend>> = addrs.iter().map(|a| self.backend(*a)).collect();
            for (host, backend) in route.hosts.iter().zip(&backends) {
                runners
                    .entry((host.clone(), name.clone()))
                    .or_default()
                    .push(backend.clone());
            }
            let app = Arc::new(App::new(
                name.clone(),
                backends,
                route.policy,
                route.max_body.unwrap_or(c.limits.max_body),
                route.redirect_https,
                self.metrics.app(&name),
            ));
            for d in &route.domains {
                router.add(d, &app);
            }
        }
        let state = State {
            router,
            tls,
            certs,
            runners,
            ..placeholder(valid)
        };
        if let Some(log) = log {
            self.log.store(Arc::new(log));
        }
        self.state.store(Arc::new(state));
        Ok(())
    }

    /// The backend at an address, shared across routes and generations.
    fn backend(&self, addr: SocketAddr) -> Arc<Backend> {
        self.lock_backends()
            .entry(addr)
            .or_insert_with(|| Arc::new(Backend::new(addr)))
            .clone()
    }

    fn lock_backends(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Arc<Backend>>> {
        self.backends
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Backends the current config names (health checks, metrics); the
    /// others are forgotten.
    pub fn live_backends(&self) -> Vec<Arc<Backend>> {
        let state = self.state();
        let wanted: std::collections::HashSet<_> = state.valid.backends.iter().flatten().collect();
        let mut all = self.lock_backends();
        all.retain(|a, _| wanted.contains(a));
        let mut list: Vec<_> = all.values().cloned().collect();
        list.sort_by_key(|b| b.addr);
        list
    }

    /// Notes a heartbeat from `host`'s agent.
    pub fn heard(&self, host: &str) {
        let mut heard = self
            .heard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match heard.get_mut(host) {
            Some(at) => *at = std::time::Instant::now(),
            None => {
                heard.insert(host.to_string(), std::time::Instant::now());
            }
        }
    }

    /// When each runner's agent was last heard.
    pub fn heard_at(&self) -> Vec<(String, std::time::Instant)> {
        let heard = self
            .heard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        heard.iter().map(|(h, at)| (h.clone(), *at)).collect()
    }

    /// The backends on `host` (of every app there), as heartbeats name it.
    pub fn backends_on(&self, host: &str) -> Vec<Arc<Backend>> {
        let state = self.state();
        let mut found: Vec<Arc<Backend>> = (state.runners.iter())
            .filter(|((h, _), _)| h == host)
            .flat_map(|(_, backends)| backends.iter().cloned())
            .collect();
        found.sort_by_key(|b| b.addr);
        found.dedup_by_key(|b| b.addr);
        found
    }

    /// Seconds since each runner's agent was last heard.
    pub fn heard_ago(&self) -> Vec<(String, f64)> {
        let heard = self
            .heard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut ago: Vec<(String, f64)> = (heard.iter())
            .map(|(h, at)| (h.clone(), at.elapsed().as_secs_f64()))
            .collect();
        ago.sort_by(|a, b| a.0.cmp(&b.0));
        ago
    }

    /// Every route's backends: in rotation or why not, requests in flight
    /// (`GET /rotation` on the admin listener; `sitec status` and
    /// `sitec restart` read it through the host's agent).
    pub fn rotation(&self) -> serde_json::Value {
        let state = self.state();
        let mut hosts: HashMap<SocketAddr, &str> = HashMap::new();
        for ((host, _), backends) in &state.runners {
            for b in backends {
                hosts.insert(b.addr, host.as_str());
            }
        }
        let routes: Vec<serde_json::Value> = (state.valid.config.routes.iter())
            .zip(&state.valid.backends)
            .map(|(route, addrs)| {
                let backends: Vec<serde_json::Value> = addrs
                    .iter()
                    .map(|addr| {
                        let b = self.backend(*addr);
                        serde_json::json!({
                            "addr": addr.to_string(),
                            "host": hosts.get(addr),
                            "in_rotation": b.is_up(),
                            "out": b.out(),
                            "in_flight": b.in_flight(),
                            "tunnels": b.tunnels(),
                        })
                    })
                    .collect();
                serde_json::json!({
                    "app": route.name.clone().unwrap_or_else(|| route.domains[0].clone()),
                    "backends": backends,
                })
            })
            .collect();
        let heard: serde_json::Map<String, serde_json::Value> = (self.heard_ago().into_iter())
            .map(|(h, s)| (h, serde_json::json!(s)))
            .collect();
        serde_json::json!({ "routes": routes, "heard_seconds_ago": heard })
    }

    pub fn start_drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.drain_started.notify_waiters();
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Resolves once a drain has started. Every idle connection holds one
    /// of these for its whole life: a queued `Notified` (96 bytes waiting) where a
    /// `watch` receiver's wait was 160.
    pub async fn drain_started(&self) {
        let mut notified = std::pin::pin!(self.drain_started.notified());
        // Queued before the flag is read: a drain that starts in between
        // still wakes it.
        notified.as_mut().enable();
        if !self.draining() {
            notified.await;
        }
    }
}

/// A state with no routes and no TLS, for the limits of a config.
fn placeholder(valid: Valid) -> State {
    let c = &valid.config;
    State {
        router: Router::default(),
        head_limits: HeadLimits {
            max_line: c.limits.max_request_line,
            max_bytes: c.limits.max_header_bytes,
            max_fields: c.limits.max_headers,
        },
        limits: c.limits,
        timeouts: c.timeouts,
        health: c.health.clone(),
        tls: None,
        certs: Vec::new(),
        runners: HashMap::new(),
        valid,
    }
}
