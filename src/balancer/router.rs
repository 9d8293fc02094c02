//! `Router`: from a request's host name to the app that serves it. Exact
//! names first, then the longest `*.suffix` wildcard that matches, then the
//! `*` catch-all. An `App` picks a backend by round-robin or
//! least-connections among those that are up. It never opens a connection.

use super::backend::Backend;
use super::config::Policy;
use super::metrics::AppMetrics;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub struct App {
    pub name: String,
    pub backends: Vec<Arc<Backend>>,
    pub policy: Policy,
    pub max_body: u64,
    pub redirect_https: bool,
    pub metrics: Arc<AppMetrics>,
    next: AtomicUsize,
}

impl App {
    pub fn new(
        name: String,
        backends: Vec<Arc<Backend>>,
        policy: Policy,
        max_body: u64,
        redirect_https: bool,
        metrics: Arc<AppMetrics>,
    ) -> Self {
        App {
            name,
            backends,
            policy,
            max_body,
            redirect_https,
            metrics,
            next: AtomicUsize::new(0),
        }
    }

    /// Whether a backend is out only because its agent drains it: it will
    /// be back shortly.
    pub fn drained(&self) -> bool {
        self.backends.iter().any(|b| b.drained())
    }

    /// A backend that is up and not in `tried`, by the app's policy.
    pub fn pick(&self, tried: &[usize]) -> Option<usize> {
        let n = self.backends.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let candidates = (0..n)
            .map(|i| (start + i) % n)
            .filter(|i| !tried.contains(i) && self.backends[*i].is_up());
        match self.policy {
            Policy::RoundRobin => candidates.into_iter().next(),
            Policy::LeastConnections => candidates.min_by_key(|i| self.backends[*i].load()),
        }
    }
}

#[derive(Default)]
pub struct Router {
    exact: HashMap<String, Arc<App>>,
    /// (".example.com", app), longest suffix first.
    wildcards: Vec<(String, Arc<App>)>,
    catch_all: Option<Arc<App>>,
}

impl Router {
    pub fn add(&mut self, domain: &str, app: &Arc<App>) {
        let domain = domain.to_ascii_lowercase();
        if domain == "*" {
            self.catch_all = Some(app.clone());
        } else if let Some(suffix) = domain.strip_prefix('*') {
            self.wildcards.push((suffix.to_owned(), app.clone()));
            self.wildcards
                .sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        } else {
            self.exact.insert(domain, app.clone());
        }
    }

    /// `host` is already lowercase, without port.
    pub fn find(&self, host: &str) -> Option<&Arc<App>> {
        self.exact
            .get(host)
            .or_else(|| {
                self.wildcards
                    .iter()
                    .find(|(suffix, _)| {
                        host.len() > suffix.len() && host.ends_with(suffix.as_str())
                    })
                    .map(|(_, app)| app)
            })
            .or(self.catch_all.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(name: &str, backends: usize, policy: Policy) -> Arc<App> {
        let backends = (0..backends)
            .map(|i| {
                Arc::new(Backend::new(
                    format!("127.0.0.1:{}", 9000 + i).parse().expect("addr"),
                ))
            })
            .collect();
        Arc::new(App::new(
            name.into(),
            backends,
            policy,
            1,
            false,
            Arc::new(AppMetrics::new(name)),
        ))
    }

    #[test]
    fn finds_by_host() {
        let mut r = Router::default();
        r.add("blog.example.com", &app("exact", 1, Policy::RoundRobin));
        r.add("*.example.com", &app("wild", 1, Policy::RoundRobin));
        r.add("*.shop.example.com", &app("deeper", 1, Policy::RoundRobin));
        fn name(r: &Router, h: &str) -> Option<String> {
            r.find(h).map(|a| a.name.clone())
        }
        assert_eq!(name(&r, "blog.example.com").as_deref(), Some("exact"));
        assert_eq!(name(&r, "x.blog.example.com").as_deref(), Some("wild"));
        assert_eq!(name(&r, "a.shop.example.com").as_deref(), Some("deeper"));
        assert_eq!(name(&r, "example.com"), None);
        r.add("*", &app("any", 1, Policy::RoundRobin));
        assert_eq!(name(&r, "example.com").as_deref(), Some("any"));
    }

    #[test]
    fn policies() {
        let a = app("rr", 3, Policy::RoundRobin);
        let picks: Vec<_> = (0..6).filter_map(|_| a.pick(&[])).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(a.pick(&[0, 1, 2]), None);
        a.backends[1].mark_down(std::time::Duration::from_secs(60), "test");
        assert!((0..6).filter_map(|_| a.pick(&[])).all(|i| i != 1));
        let l = app("lc", 2, Policy::LeastConnections);
        let _busy = super::super::backend::InFlight::new(&l.backends[0]);
        assert!((0..4).filter_map(|_| l.pick(&[])).all(|i| i == 1));
    }
}
