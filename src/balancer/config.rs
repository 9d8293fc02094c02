//! `Config`: the balancer's TOML file (rendered by the compiler's templates,
//! or built from `--listen`/`--route` for ad hoc use) and its validation.
//! Every error names the key and says how to fix it. It reads files (the
//! config, and checks that certificate files exist) but opens no socket; the
//! validated config is turned into running state by `state`.

use serde::Deserialize;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole file. Unknown keys are errors, so a typo never silently
/// falls back to a default.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub listen: Listen,
    #[serde(default)]
    pub server: Server,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub health: Health,
    #[serde(default)]
    pub access_log: AccessLogConfig,
    #[serde(default)]
    pub tls: Tls,
    #[serde(default, rename = "route")]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub bus: Bus,
}

/// The balancer's end of the bus: the runner agents' heartbeats it
/// listens to (see `bus`), with its own key. A reload that changes it
/// connects again.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Bus {
    /// This balancer's bus key (secret; readable by its user only).
    pub key_file: Option<PathBuf>,
    pub heartbeats: Vec<Heartbeats>,
    /// A runner whose agent has sent no heartbeat for this long (agents
    /// send ten a second: two and a half missed) is probed at once
    /// (`silence`). A late pulse costs one probe, nothing more.
    pub silent_ms: u64,
    /// That probe's connect timeout: past it the runner is found dead. A
    /// connect on the fleet's own network takes well under a millisecond.
    pub probe_ms: u64,
}

impl Default for Bus {
    fn default() -> Self {
        Bus {
            key_file: None,
            heartbeats: Vec::new(),
            silent_ms: 250,
            probe_ms: 100,
        }
    }
}

/// One runner agent's heartbeats: the host they speak for, its PUB
/// endpoint `tcp://ADDR:PORT`, and the public key that PUB must prove.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Heartbeats {
    pub host: String,
    pub endpoint: String,
    pub key: String,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    #[serde(default)]
    pub http: Vec<String>,
    #[serde(default)]
    pub https: Vec<String>,
    pub admin: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Worker threads; 0 means one per core.
    #[serde(default)]
    pub workers: usize,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_request_line: usize,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_body: u64,
    pub request_buffer: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line: 8192,
            max_header_bytes: 32768,
            max_headers: 100,
            max_body: 10 * 1024 * 1024,
            request_buffer: 64 * 1024,
        }
    }
}

/// Every timeout in milliseconds.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    pub header_ms: u64,
    pub idle_ms: u64,
    pub body_ms: u64,
    pub connect_ms: u64,
    pub response_ms: u64,
    pub backend_idle_ms: u64,
    pub drain_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            header_ms: 10_000,
            idle_ms: 60_000,
            body_ms: 30_000,
            connect_ms: 3_000,
            response_ms: 60_000,
            backend_idle_ms: 1_000,
            drain_ms: 30_000,
        }
    }
}

impl Timeouts {
    pub fn get(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Health {
    pub fail_timeout_ms: u64,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// Empty: a TCP connect is the check. Otherwise `GET path` must answer
    /// with a status below 500.
    pub path: String,
    pub backend_keepalive: usize,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            fail_timeout_ms: 10_000,
            interval_ms: 2_000,
            timeout_ms: 1_000,
            path: String::new(),
            backend_keepalive: 64,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConfig {
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    #[serde(default, rename = "cert")]
    pub certs: Vec<CertConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertConfig {
    pub domains: Vec<String>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    #[default]
    RoundRobin,
    LeastConnections,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub name: Option<String>,
    pub domains: Vec<String>,
    pub backends: Vec<String>,
    /// The host each backend runs on, in the same order, as its agent
    /// names itself in heartbeats; empty: heartbeats do not apply.
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub policy: Policy,
    pub max_body: Option<u64>,
    #[serde(default)]
    pub redirect_https: bool,
}

/// A config that passed validation, with addresses resolved.
#[derive(Debug, Clone)]
pub struct Valid {
    pub config: Config,
    pub http: Vec<SocketAddr>,
    pub https: Vec<SocketAddr>,
    pub admin: Option<SocketAddr>,
    /// Per route, its backends' addresses.
    pub backends: Vec<Vec<SocketAddr>>,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Valid, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let config: Config =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        config
            .validate()
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The config `--listen ADDR --route DOMAIN=ADDR,ADDR ...` stands for.
    pub fn ad_hoc(
        listen: &str,
        routes: &[String],
        admin: Option<&str>,
        log: Option<PathBuf>,
    ) -> Result<Valid, String> {
        let mut config = Config {
            listen: Listen {
                http: vec![listen.to_owned()],
                https: Vec::new(),
                admin: admin.map(str::to_owned),
            },
            access_log: AccessLogConfig { path: log },
            ..Config::default()
        };
        for r in routes {
            let (domain, backends) = r
                .split_once('=')
                .ok_or(format!("--route `{r}`: write DOMAIN=HOST:PORT[,HOST:PORT...], e.g. blog.example.com=127.0.0.1:9001"))?;
            config.routes.push(Route {
                name: Some(domain.to_owned()),
                domains: vec![domain.to_owned()],
                backends: backends.split(',').map(str::to_owned).collect(),
                hosts: Vec::new(),
                policy: Policy::RoundRobin,
                max_body: None,
                redirect_https: false,
            });
        }
        if routes.is_empty() {
            return Err("no --route given; add --route DOMAIN=HOST:PORT[,HOST:PORT...], e.g. --route '*=127.0.0.1:9001'".into());
        }
        config.validate().map_err(|e| in_flag_terms(e, routes))
    }

    /// Checks everything a running balancer relies on.
    pub fn validate(self) -> Result<Valid, String> {
        let http = addrs("listen.http", &self.listen.http)?;
        let https = addrs("listen.https", &self.listen.https)?;
        if http.is_empty() && https.is_empty() {
            return Err(
                "listen: no listener; add e.g. `http = [\"0.0.0.0:80\"]` under [listen]".into(),
            );
        }
        let admin = match &self.listen.admin {
            Some(a) => Some(addr("listen.admin", a)?),
            None => None,
        };
        if !https.is_empty() && self.tls.certs.is_empty() {
            return Err("listen.https: an https listener needs at least one [[tls.cert]] with domains, cert and key".into());
        }
        for (i, c) in self.tls.certs.iter().enumerate() {
            for (key, file) in [("cert", &c.cert), ("key", &c.key)] {
                if !file.is_file() {
                    return Err(format!(
                        "tls.cert[{i}].{key}: `{}` is not a readable file",
                        file.display()
                    ));
                }
            }
            for d in &c.domains {
                check_domain(&format!("tls.cert[{i}].domains"), d)?;
            }
        }
        // No route is a fleet with no app yet: every Host gets the 404 page.
        self.check_numbers()?;
        self.check_bus()?;
        let mut seen = std::collections::HashMap::new();
        let mut backends = Vec::new();
        for (i, r) in self.routes.iter().enumerate() {
            if r.domains.is_empty() {
                return Err(format!("route[{i}].domains: empty; list the host names this app answers, e.g. [\"blog.example.com\"]"));
            }
            for d in &r.domains {
                check_domain(&format!("route[{i}].domains"), d)?;
                if let Some(j) = seen.insert(d.to_ascii_lowercase(), i) {
                    return Err(format!("route[{i}].domains: `{d}` is already claimed by route[{j}]; a domain belongs to one route"));
                }
                if r.redirect_https
                    && (https.is_empty() || !self.tls.certs.iter().any(|c| covers(&c.domains, d)))
                {
                    return Err(format!("route[{i}].redirect_https: `{d}` has no https listener or no [[tls.cert]] covering it; add both or set redirect_https = false"));
                }
            }
            if r.backends.is_empty() {
                return Err(format!(
                    "route[{i}].backends: empty; list at least one HOST:PORT"
                ));
            }
            backends.push(addrs(&format!("route[{i}].backends"), &r.backends)?);
            if !r.hosts.is_empty() && r.hosts.len() != r.backends.len() {
                return Err(format!("route[{i}].hosts: {} hosts for {} backends; name the host of each backend, in the same order, or leave hosts out", r.hosts.len(), r.backends.len()));
            }
            if r.max_body == Some(0) {
                return Err(format!("route[{i}].max_body: must be at least 1 byte; leave it out to use limits.max_body"));
            }
        }
        Ok(Valid {
            config: self,
            http,
            https,
            admin,
            backends,
        })
    }

    fn check_bus(&self) -> Result<(), String> {
        for (i, h) in self.bus.heartbeats.iter().enumerate() {
            if !crate::bus::is_tcp_endpoint(&h.endpoint) {
                return Err(format!("bus.heartbeats[{i}].endpoint: `{}` is not an endpoint; write tcp://ADDRESS:PORT, e.g. tcp://10.0.0.21:7702", h.endpoint));
            }
            if let Err(e) = crate::bus::PublicKey::parse(&h.key) {
                return Err(format!("bus.heartbeats[{i}].key: {e}; render the config again from the spec (`sitec apply`)"));
            }
            if h.host.is_empty() {
                return Err(format!("bus.heartbeats[{i}].host: empty; write the runner's host name, as routes' `hosts` do"));
            }
        }
        match &self.bus.key_file {
            None if !self.bus.heartbeats.is_empty() => Err("bus.key_file: missing; heartbeats are heard only with the balancer's key, e.g. key_file = \"/etc/sitec/bus/balancer.key\"".into()),
            Some(f) if !f.is_absolute() => Err(format!("bus.key_file: `{}` is not an absolute path", f.display())),
            _ => Ok(()),
        }
    }

    fn check_numbers(&self) -> Result<(), String> {
        let l = &self.limits;
        let t = &self.timeouts;
        let h = &self.health;
        for (key, value, min) in [
            ("limits.max_request_line", l.max_request_line as u64, 16),
            ("limits.max_header_bytes", l.max_header_bytes as u64, 64),
            ("limits.max_headers", l.max_headers as u64, 1),
            ("limits.max_body", l.max_body, 1),
            ("timeouts.header_ms", t.header_ms, 1),
            ("timeouts.idle_ms", t.idle_ms, 1),
            ("timeouts.body_ms", t.body_ms, 1),
            ("timeouts.connect_ms", t.connect_ms, 1),
            ("timeouts.response_ms", t.response_ms, 1),
            ("timeouts.backend_idle_ms", t.backend_idle_ms, 1),
            ("health.fail_timeout_ms", h.fail_timeout_ms, 1),
            ("health.interval_ms", h.interval_ms, 10),
            ("health.timeout_ms", h.timeout_ms, 1),
            ("bus.silent_ms", self.bus.silent_ms, 10),
            ("bus.probe_ms", self.bus.probe_ms, 1),
        ] {
            if value < min {
                return Err(format!("{key}: {value} is too small; use at least {min}"));
            }
        }
        if l.max_request_line > l.max_header_bytes {
            return Err("limits.max_request_line: larger than limits.max_header_bytes; the request line is part of the head".into());
        }
        if !h.path.is_empty() && !h.path.starts_with('/') {
            return Err(format!(
                "health.path: `{}` must start with `/`, or be empty for a TCP check",
                h.path
            ));
        }
        Ok(())
    }
}

/// Whether a certificate's domain list covers a host name.
pub fn covers(domains: &[String], host: &str) -> bool {
    domains.iter().any(|d| domain_matches(d, host))
}

/// `*` matches everything; `*.example.com` any name below example.com.
pub fn domain_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some("") => true,
        Some(suffix) => {
            host.len() > suffix.len()
                && host
                    .to_ascii_lowercase()
                    .ends_with(&suffix.to_ascii_lowercase())
        }
        None => pattern.eq_ignore_ascii_case(host),
    }
}

/// An ad hoc config's error in the words of the flags it came from: the
/// user wrote `--route`, not `route[0].backends[1]`.
fn in_flag_terms(error: String, routes: &[String]) -> String {
    let flag = |key: &str| match key {
        k if k.starts_with("listen.http") => Some("--listen".to_string()),
        "listen.admin" => Some("--admin".to_string()),
        k => k
            .strip_prefix("route[")
            .and_then(|rest| rest.split_once(']'))
            .and_then(|(i, _)| routes.get(i.parse::<usize>().ok()?))
            .map(|r| format!("--route {r}")),
    };
    let Some((key, message)) = error.split_once(": ") else {
        return error;
    };
    let Some(flag) = flag(key) else {
        return error;
    };
    // "already claimed by route[0]" names another flag.
    let message = routes
        .iter()
        .enumerate()
        .fold(message.to_string(), |m, (i, r)| {
            m.replace(&format!("route[{i}]"), &format!("--route {r}"))
        });
    format!("{flag}: {message}")
}

fn check_domain(key: &str, d: &str) -> Result<(), String> {
    crate::names::domain_problem(d).map_or(Ok(()), |p| Err(p.at(key)))
}

fn addrs(key: &str, list: &[String]) -> Result<Vec<SocketAddr>, String> {
    list.iter()
        .enumerate()
        .map(|(i, a)| addr(&format!("{key}[{i}]"), a))
        .collect()
}

fn addr(key: &str, a: &str) -> Result<SocketAddr, String> {
    if let Ok(parsed) = a.parse() {
        return Ok(parsed);
    }
    a.to_socket_addrs()
        .ok()
        .and_then(|mut it| it.next())
        .ok_or(format!(
            "{key}: `{a}` is not an address; write HOST:PORT, e.g. 127.0.0.1:8000"
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Valid, String> {
        toml::from_str::<Config>(text)
            .map_err(|e| e.to_string())?
            .validate()
    }

    #[test]
    fn minimal_file() {
        let v = check("[listen]\nhttp=[\"127.0.0.1:0\"]\n[[route]]\ndomains=[\"*\"]\nbackends=[\"127.0.0.1:9\"]\n")
            .expect("valid");
        assert_eq!(v.backends[0].len(), 1);
        assert_eq!(v.config.routes[0].policy, Policy::RoundRobin);
    }

    /// A fleet's balancers before its first app: they listen and answer
    /// every Host with the 404 page (`sitec check` accepts such a fleet).
    #[test]
    fn a_file_without_routes() {
        let v = check("[listen]\nhttp=[\"127.0.0.1:0\"]\n").expect("valid");
        assert!(v.config.routes.is_empty());
    }

    #[test]
    fn errors_name_the_key() {
        for (text, key) in [
            ("[[route]]\ndomains=[\"a\"]\nbackends=[\"127.0.0.1:9\"]\n", "listen:"),
            ("[listen]\nhttp=[\"nope\"]\n", "listen.http[0]"),
            ("[listen]\nhttp=[\"127.0.0.1:0\"]\n[[route]]\ndomains=[\"a b\"]\nbackends=[\"127.0.0.1:9\"]\n", "route[0].domains"),
            ("[listen]\nhttp=[\"127.0.0.1:0\"]\n[[route]]\ndomains=[\"a\"]\nbackends=[]\n", "route[0].backends"),
            ("[listen]\nhttp=[\"127.0.0.1:0\"]\n[[route]]\ndomains=[\"a\"]\nbackends=[\"x\"]\n", "route[0].backends[0]"),
            ("[listen]\nhttp=[\"127.0.0.1:0\"]\n[[route]]\ndomains=[\"a\"]\nbackends=[\"127.0.0.1:9\"]\n[[route]]\ndomains=[\"A\"]\nbackends=[\"127.0.0.1:9\"]\n", "route[1].domains"),
            ("[listen]\nhttp=[\"127.0.0.1:0\"]\n[[route]]\ndomains=[\"a\"]\nbackends=[\"127.0.0.1:9\"]\nredirect_https=true\n", "route[0].redirect_https"),
            ("[listen]\nhttp=[\"127.0.0.1:0\"]\n[timeouts]\nheader_ms=0\n", "timeouts.header_ms"),
            ("[listen]\nhttp=[\"127.0.0.1:0\"]\n[limits]\nmax_bodyy=1\n", "max_bodyy"),
            ("[listen]\nhttp=[\"127.0.0.1:0\"]\n[[route]]\ndomains=[\"a\"]\nbackends=[\"127.0.0.1:9\"]\nhosts=[\"run1\", \"run2\"]\n", "route[0].hosts"),
            ("[listen]\nhttp=[\"127.0.0.1:0\"]\n[bus]\nheartbeats=[\"10.0.0.1:7702\"]\n[[route]]\ndomains=[\"a\"]\nbackends=[\"127.0.0.1:9\"]\n", "heartbeats"),
            ("[listen]\nhttp=[\"127.0.0.1:0\"]\n[bus]\nkey_file=\"/k\"\nheartbeats=[{host=\"run1\", endpoint=\"10.0.0.1:7702\", key=\"\"}]\n[[route]]\ndomains=[\"a\"]\nbackends=[\"127.0.0.1:9\"]\n", "bus.heartbeats[0].endpoint"),
            ("[listen]\nhttp=[\"127.0.0.1:0\"]\n[bus]\nkey_file=\"/k\"\nheartbeats=[{host=\"run1\", endpoint=\"tcp://10.0.0.1:7702\", key=\"short\"}]\n[[route]]\ndomains=[\"a\"]\nbackends=[\"127.0.0.1:9\"]\n", "bus.heartbeats[0].key: a CURVE key is 40"),
            ("[listen]\nhttp=[\"127.0.0.1:0\"]\n[bus]\nheartbeat=[]\n[[route]]\ndomains=[\"a\"]\nbackends=[\"127.0.0.1:9\"]\n", "heartbeat"),
        ] {
            let err = check(text).expect_err(text);
            assert!(err.contains(key), "{err} should name {key}");
        }
    }

    #[test]
    fn ad_hoc_errors_name_the_flag() {
        let routes = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for (listen, given, admin, said) in [
            (
                "127.0.0.1",
                vec!["*=127.0.0.1:9"],
                None,
                "--listen: `127.0.0.1`",
            ),
            (
                "127.0.0.1:0",
                vec![],
                None,
                "no --route given; add --route DOMAIN=",
            ),
            (
                "127.0.0.1:0",
                vec!["*=127.0.0.1:9"],
                Some("x"),
                "--admin: `x`",
            ),
            (
                "127.0.0.1:0",
                vec!["a=127.0.0.1:9,x"],
                None,
                "--route a=127.0.0.1:9,x: `x` is not an address",
            ),
            (
                "127.0.0.1:0",
                vec!["https://a=127.0.0.1:9"],
                None,
                "--route https://a=127.0.0.1:9: `https://a` is a URL",
            ),
            (
                "127.0.0.1:0",
                vec!["a=127.0.0.1:9", "A=127.0.0.1:8"],
                None,
                "--route A=127.0.0.1:8: `A` is already claimed by --route a=127.0.0.1:9",
            ),
            (
                "127.0.0.1:0",
                vec!["a"],
                None,
                "--route `a`: write DOMAIN=HOST:PORT",
            ),
        ] {
            let err = Config::ad_hoc(listen, &routes(&given), admin, None)
                .err()
                .unwrap_or_else(|| panic!("{given:?} accepted"));
            assert!(err.starts_with(said), "{err} should start with {said}");
        }
    }

    #[test]
    fn wildcards() {
        assert!(domain_matches("*.example.com", "a.example.com"));
        assert!(domain_matches("*.example.com", "a.b.example.com"));
        assert!(!domain_matches("*.example.com", "example.com"));
        assert!(domain_matches("*", "anything"));
    }
}
