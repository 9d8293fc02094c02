//! `Metrics`: counters the request path bumps with relaxed atomics (no lock,
//! no allocation per request) and their rendering as Prometheus text for the
//! admin listener. Per-app counters outlive config reloads (they are kept
//! by app name). It never serves HTTP itself.

use super::backend::Backend;
use super::tls::Expiry;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

pub struct AppMetrics {
    name: String,
    /// Responses by status, index `status - 100`.
    statuses: Vec<AtomicU64>,
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl AppMetrics {
    pub fn new(name: &str) -> Self {
        AppMetrics {
            name: name.to_owned(),
            statuses: (100..600).map(|_| AtomicU64::new(0)).collect(),
            buckets: Default::default(),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, status: u16, elapsed: Duration) {
        if let Some(c) = self.statuses.get(usize::from(status).wrapping_sub(100)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let secs = elapsed.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

#[derive(Default)]
pub struct Metrics {
    pub client_connections: AtomicI64,
    pub backend_connects: AtomicU64,
    pub refused: AtomicU64,
    pub retries: AtomicU64,
    pub reloads: AtomicU64,
    pub reload_failures: AtomicU64,
    pub log_dropped: AtomicU64,
    apps: Mutex<BTreeMap<String, Arc<AppMetrics>>>,
}

impl Metrics {
    /// The counters for an app, created on first use, kept across reloads.
    pub fn app(&self, name: &str) -> Arc<AppMetrics> {
        let mut apps = self
            .apps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        apps.entry(name.to_owned())
            .or_insert_with(|| Arc::new(AppMetrics::new(name)))
            .clone()
    }

    /// Everything, as Prometheus text exposition format 0.0.4.
    pub fn render(&self, backends: &[Arc<Backend>], certs: &[Expiry]) -> String {
        let mut out = String::with_capacity(4096);
        let apps: Vec<_> = self
            .apps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        out.push_str("# HELP sitec_requests_total Requests answered, by app and status.\n# TYPE sitec_requests_total counter\n");
        for a in &apps {
            for (i, c) in a.statuses.iter().enumerate() {
                let n = c.load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "sitec_requests_total{{app=\"{}\",code=\"{}\"}} {n}",
                        a.name,
                        i + 100
                    );
                }
            }
        }
        out.push_str("# HELP sitec_request_duration_seconds Time from request head to end of response.\n# TYPE sitec_request_duration_seconds histogram\n");
        for a in &apps {
            let mut cumulative = 0;
            for (i, c) in a.buckets.iter().enumerate() {
                cumulative += c.load(Ordering::Relaxed);
                let le = BUCKETS.get(i).map_or("+Inf".to_owned(), f64::to_string);
                let _ = writeln!(
                    out,
                    "sitec_request_duration_seconds_bucket{{app=\"{}\",le=\"{le}\"}} {cumulative}",
                    a.name
                );
            }
            let sum = a.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(
                out,
                "sitec_request_duration_seconds_sum{{app=\"{}\"}} {sum}",
                a.name
            );
            let _ = writeln!(
                out,
                "sitec_request_duration_seconds_count{{app=\"{}\"}} {cumulative}",
                a.name
            );
        }
        out.push_str("# HELP sitec_backend_up Whether a backend is in rotation.\n# TYPE sitec_backend_up gauge\n");
        for b in backends {
            let _ = writeln!(
                out,
                "sitec_backend_up{{backend=\"{}\"}} {}",
                b.addr,
                u8::from(b.is_up())
            );
        }
        out.push_str("# HELP sitec_backend_active Requests in flight per backend.\n# TYPE sitec_backend_active gauge\n");
        for b in backends {
            let _ = writeln!(
                out,
                "sitec_backend_active{{backend=\"{}\"}} {}",
                b.addr,
                b.active.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP sitec_tls_certificate_expiry_seconds When each served certificate expires (its notAfter), in seconds since 1970: alert on it minus time().\n# TYPE sitec_tls_certificate_expiry_seconds gauge\n");
        for c in certs {
            let seconds = c
                .not_after
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let _ = writeln!(
                out,
                "sitec_tls_certificate_expiry_seconds{{cert=\"{}\",domain=\"{}\"}} {seconds}",
                label(&c.cert.display().to_string()),
                label(&c.domain)
            );
        }
        out.push_str("# HELP sitec_backend_failures_total Refused, reset or failed backend connections.\n# TYPE sitec_backend_failures_total counter\n");
        for b in backends {
            let _ = writeln!(
                out,
                "sitec_backend_failures_total{{backend=\"{}\"}} {}",
                b.addr,
                b.failures.load(Ordering::Relaxed)
            );
        }
        for (name, kind, help, value) in [
            (
                "sitec_open_connections",
                "gauge",
                "Open client connections.",
                self.client_connections.load(Ordering::Relaxed),
            ),
            (
                "sitec_backend_connects_total",
                "counter",
                "New connections opened to backends.",
                load(&self.backend_connects),
            ),
            (
                "sitec_refused_total",
                "counter",
                "Requests refused as malformed, ambiguous or over a limit.",
                load(&self.refused),
            ),
            (
                "sitec_retries_total",
                "counter",
                "Requests sent again to another backend.",
                load(&self.retries),
            ),
            (
                "sitec_reloads_total",
                "counter",
                "Configs reloaded.",
                load(&self.reloads),
            ),
            (
                "sitec_reload_failures_total",
                "counter",
                "Configs refused on reload.",
                load(&self.reload_failures),
            ),
            (
                "sitec_access_log_dropped_total",
                "counter",
                "Access log lines dropped because the writer fell behind.",
                load(&self.log_dropped),
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        out
    }
}

fn load(c: &AtomicU64) -> i64 {
    i64::try_from(c.load(Ordering::Relaxed)).unwrap_or(i64::MAX)
}

/// A label value as the Prometheus text format writes it: backslash,
/// double quote and line feed escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_histogram() {
        let m = Metrics::default();
        m.app("blog").observe(200, Duration::from_millis(3));
        m.app("blog").observe(502, Duration::from_secs(20));
        let text = m.render(&[], &[]);
        assert!(text.contains("sitec_requests_total{app=\"blog\",code=\"200\"} 1\n"));
        assert!(text.contains("sitec_requests_total{app=\"blog\",code=\"502\"} 1\n"));
        assert!(
            text.contains("sitec_request_duration_seconds_bucket{app=\"blog\",le=\"0.005\"} 1\n")
        );
        assert!(
            text.contains("sitec_request_duration_seconds_bucket{app=\"blog\",le=\"+Inf\"} 2\n")
        );
        assert!(text.contains("sitec_request_duration_seconds_count{app=\"blog\"} 2\n"));
    }

    #[test]
    fn certificate_expiry_with_its_labels_escaped() {
        let cert = Expiry {
            cert: "/etc/sitec/tls/a \"b\".pem".into(),
            domain: "blog.example.com".into(),
            not_after: UNIX_EPOCH + Duration::from_secs(2_000_000_000),
        };
        let text = Metrics::default().render(&[], &[cert]);
        assert!(text.contains("# TYPE sitec_tls_certificate_expiry_seconds gauge\n"));
        assert!(text.contains(
            "sitec_tls_certificate_expiry_seconds{cert=\"/etc/sitec/tls/a \\\"b\\\".pem\",domain=\"blog.example.com\"} 2000000000\n"
        ), "{text}");
    }
}
