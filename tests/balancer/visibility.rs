//! The admin listener's Prometheus metrics and the access log.

use crate::support::*;
use std::time::{Duration, Instant};

#[test]
fn metrics_and_access_log() {
    let b = TestBackend::start("b");
    let log = test_dir().join("access.log");
    let log_arg = log.display().to_string();
    let lb = Balancer::ad_hoc(
        &[("blog.example.com", vec![b.addr])],
        &["--admin", "127.0.0.1:0", "--access-log", &log_arg],
    );
    for _ in 0..3 {
        assert_eq!(
            get(lb.http, "blog.example.com", "/x")
                .expect("response")
                .status,
            200
        );
    }
    assert_eq!(
        request(lb.http, "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
            .expect("refusal")
            .status,
        400
    );
    let admin = lb.admin.expect("admin listener");
    let metrics = get(admin, "admin", "/metrics").expect("metrics");
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    for line in [
        "sitec_requests_total{app=\"blog.example.com\",code=\"200\"} 3\n",
        "sitec_requests_total{app=\"-\",code=\"400\"} 1\n",
        "sitec_request_duration_seconds_count{app=\"blog.example.com\"} 3\n",
        &format!("sitec_backend_up{{backend=\"{}\"}} 1\n", b.addr),
        "sitec_refused_total 1\n",
        "# TYPE sitec_open_connections gauge\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert_eq!(get(admin, "admin", "/nope").expect("404").status, 404);
    // The log writer flushes within a fraction of a second.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut lines = Vec::new();
    while Instant::now() < deadline {
        lines = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        if lines.len() >= 4 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(lines.len(), 4, "{lines:?}");
    let first: Vec<&str> = lines[0].split(' ').collect();
    assert!(
        first[0].ends_with('Z') && first[0].contains('T'),
        "{}",
        lines[0]
    );
    assert!(first[1].starts_with("127.0.0.1:"));
    assert_eq!(first[2], "blog.example.com");
    assert_eq!(&first[3..6], ["\"GET", "/x", "HTTP/1.1\""]);
    assert_eq!(first[6], "200");
    assert!(first[8].parse::<f64>().is_ok());
    assert_eq!(first[9], b.addr.to_string());
    assert!(lines[3].contains(" - \"-\" 400 "), "{}", lines[3]);
}
