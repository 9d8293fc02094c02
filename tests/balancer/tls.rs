//! TLS termination: the certificate is picked by SNI (exact and wildcard),
//! the backend hears `X-Forwarded-Proto: https`, and a route with
//! `redirect_https` sends plain-HTTP clients to https; an idle TLS client
//! gets the idle timeout and is closed by a drain, like a plain one.
//! Certificates are fixtures under `tests/balancer/tls/` (a test CA and
//! two leaves).

use crate::support::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/balancer/tls")
        .join(name)
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>;

fn tls_connect(addr: std::net::SocketAddr, sni: &str) -> TlsStream {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(fixture("ca.pem")).expect("ca.pem"))
        .expect("add CA");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = ServerName::try_from(sni.to_owned()).expect("name");
    let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
    let tcp = std::net::TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(WAIT)).expect("timeout");
    rustls::StreamOwned::new(conn, tcp)
}

fn https_get(addr: std::net::SocketAddr, sni: &str, path: &str) -> String {
    let mut tls = tls_connect(addr, sni);
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .expect("TLS handshake and request (certificate must verify for the SNI name)");
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn terminates_tls_by_sni_and_redirects_plain_http() {
    let b = TestBackend::start("b");
    let (a_pem, a_key, w_pem, w_key) = (
        fixture("a.pem"),
        fixture("a.key"),
        fixture("wild.pem"),
        fixture("wild.key"),
    );
    let lb = Balancer::with_config(&format!(
        "[listen]\nhttp = [\"127.0.0.1:0\"]\nhttps = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\
         [[tls.cert]]\ndomains = [\"a.example.com\"]\ncert = \"{}\"\nkey = \"{}\"\n\
         [[tls.cert]]\ndomains = [\"*.b.example.com\"]\ncert = \"{}\"\nkey = \"{}\"\n\
         [[route]]\ndomains = [\"a.example.com\"]\nbackends = [\"{}\"]\n\
         [[route]]\ndomains = [\"*.b.example.com\"]\nbackends = [\"{}\"]\nredirect_https = true\n",
        a_pem.display(),
        a_key.display(),
        w_pem.display(),
        w_key.display(),
        b.addr,
        b.addr
    ));
    let https = lb.https.expect("https listener");
    let page = https_get(https, "a.example.com", "/headers");
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(page.contains("X-Forwarded-Proto: https\r\n"), "{page}");
    let page = https_get(https, "shop.b.example.com", "/w");
    assert!(page.ends_with("b GET /w 0"), "{page}");
    let r = get(lb.http, "shop.b.example.com", "/cart?id=1").expect("redirect");
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location").as_deref(),
        Some("https://shop.b.example.com/cart?id=1")
    );
    assert_eq!(
        get(lb.http, "a.example.com", "/plain")
            .expect("plain")
            .text(),
        "b GET /plain 0"
    ); // Plain HTTP to the HTTPS port: a 400 that says so, not a TLS alert.
    let r = get(https, "a.example.com", "/").expect("an HTTP answer");
    assert_eq!(r.status, 400);
    assert!(r.text().contains("use an https:// address"), "{}", r.text());
    // When each certificate expires, for alerts: their notAfter, as
    // `openssl x509 -noout -enddate` shows it (2126-11-03 22:18:20 UTC).
    let metrics = get(lb.admin.expect("admin"), "admin", "/metrics").expect("metrics");
    for (pem, domain) in [(&a_pem, "a.example.com"), (&w_pem, "*.b.example.com")] {
        let line = format!(
            "sitec_tls_certificate_expiry_seconds{{cert=\"{}\",domain=\"{domain}\"}} 4949417900\n",
            pem.display()
        );
        assert!(
            metrics.text().contains(&line),
            "{line} in\n{}",
            metrics.text()
        );
    }
}

#[test]
fn a_missing_certificate_is_refused_at_start() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sitec"))
        .args(["balancer", "--config"])
        .arg({
            let dir = test_dir();
            let path = dir.join("bad.toml");
            std::fs::write(
                &path,
                "[listen]\nhttps = [\"127.0.0.1:0\"]\n[[tls.cert]]\ndomains = [\"a\"]\ncert = \"/nonexistent.pem\"\nkey = \"/nonexistent.key\"\n\
                 [[route]]\ndomains = [\"a\"]\nbackends = [\"127.0.0.1:9\"]\n",
            )
            .expect("write");
            path
        })
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tls.cert[0].cert") && err.contains("/nonexistent.pem"),
        "{err}"
    );
}

/// A key of another certificate is refused by `--check` (2) and at start
/// (1), in sitec's words (rustls's own say `KeyMismatch`), naming both files.
#[test]
fn a_key_of_another_certificate_is_refused_in_sitecs_words() {
    let dir = test_dir();
    let path = dir.join("mismatch.toml");
    std::fs::write(
        &path,
        format!(
            "[listen]\nhttps = [\"127.0.0.1:0\"]\n[[tls.cert]]\ndomains = [\"a.example.com\"]\ncert = \"{}\"\nkey = \"{}\"\n\
             [[route]]\ndomains = [\"a.example.com\"]\nbackends = [\"127.0.0.1:9\"]\n",
            fixture("a.pem").display(),
            fixture("wild.key").display()
        ),
    )
    .expect("write");
    let said = format!(
        "sitec balancer: tls.cert[0] ({} and {}): the key is not the first certificate's (their public keys differ): \
         a key of another certificate, or a chain that does not start with its own\n",
        fixture("a.pem").display(),
        fixture("wild.key").display()
    );
    for (check, code) in [(true, 2), (false, 1)] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sitec"))
            .args(["balancer", "--config"])
            .arg(&path)
            .args(check.then_some("--check"))
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(code), "--check {check}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            said,
            "--check {check}"
        );
    }
}

/// A certificate past its date is loaded all the same (refusing it would
/// stop the balancer and serve nobody), and the log says so.
#[test]
fn an_expired_certificate_is_logged_and_served() {
    let b = TestBackend::start("b");
    let lb = Balancer::with_config(&format!(
        "[listen]\nhttp = [\"127.0.0.1:0\"]\nhttps = [\"127.0.0.1:0\"]\n\
         [[tls.cert]]\ndomains = [\"expired.localhost\"]\ncert = \"{}\"\nkey = \"{}\"\n\
         [[route]]\ndomains = [\"expired.localhost\"]\nbackends = [\"{}\"]\n",
        fixture("expired.pem").display(),
        fixture("expired.key").display(),
        b.addr
    ));
    assert!(lb.https.is_some(), "no https listener");
    let line = format!(
        "tls.cert[0] ({}) expired on 2020-02-01",
        fixture("expired.pem").display()
    );
    assert!(lb.wait_log(&line, 1), "{}", lb.stderr());
}

/// A balancer serving `a.example.com` from `backend` over TLS (and plain
/// HTTP), with `extra` config sections (such as `[timeouts]`).
fn serving_a_over_tls(backend: &TestBackend, extra: &str) -> Balancer {
    Balancer::with_config(&format!(
        "[listen]\nhttp = [\"127.0.0.1:0\"]\nhttps = [\"127.0.0.1:0\"]\n{extra}\
         [[tls.cert]]\ndomains = [\"a.example.com\"]\ncert = \"{}\"\nkey = \"{}\"\n\
         [[route]]\ndomains = [\"a.example.com\"]\nbackends = [\"{}\"]\n",
        fixture("a.pem").display(),
        fixture("a.key").display(),
        backend.addr
    ))
}

/// An idle TLS keep-alive connection waits for its next request as long as
/// a plain one does (`idle_ms`, not the shorter head deadline) and is then
/// closed without a word: no 408 for a request never begun.
#[test]
fn an_idle_tls_connection_gets_the_idle_timeout() {
    let b = TestBackend::start("b");
    let lb = serving_a_over_tls(&b, "[timeouts]\nheader_ms = 500\nidle_ms = 4000\n");
    let https = lb.https.expect("https listener");
    let mut c = Client::over(tls_connect(https, "a.example.com"));
    let ask = b"GET /one HTTP/1.1\r\nHost: a.example.com\r\n\r\n";
    c.send(ask);
    assert_eq!(c.response().expect("first").status, 200);
    // Idle for three head deadlines, well within the idle timeout: the
    // sleep is what is tested (a time in which a head deadline wrongly
    // applied would have closed the connection), not a wait for an event.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    c.send(ask);
    let again = c
        .response()
        .expect("the connection still open after 1.5 s idle");
    assert_eq!(again.status, 200);
    let idle_from = std::time::Instant::now();
    assert!(c.closed(), "idle TLS connection not closed");
    let waited = idle_from.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(3500),
        "closed after {waited:?}, before idle_ms"
    );
}

/// SIGTERM closes an idle TLS keep-alive connection at once, as it does a
/// plain one, instead of leaving it until the head deadline.
#[test]
fn a_drain_closes_an_idle_tls_connection() {
    let b = TestBackend::start("b");
    // Deadlines (60 s) far past the client's wait (10 s): only the drain
    // can close it in time.
    let mut lb = serving_a_over_tls(
        &b,
        "[timeouts]\nheader_ms = 60000\nidle_ms = 60000\ndrain_ms = 60000\n",
    );
    let https = lb.https.expect("https listener");
    let mut c = Client::over(tls_connect(https, "a.example.com"));
    c.send(b"GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n");
    assert_eq!(c.response().expect("response").status, 200);
    lb.signal("TERM");
    assert!(c.closed(), "idle TLS connection not closed on drain");
    let status = lb.wait_exit(WAIT).expect("did not exit after draining");
    assert!(status.success());
}

/// SIGHUP opens the listeners a config adds (an HTTPS one with its
/// certificate here) and closes those it drops, while a connection accepted
/// by a closed listener keeps being served; a config with a listener that
/// cannot listen is refused whole.
#[test]
fn a_reload_opens_and_closes_listeners() {
    let b = TestBackend::start("b");
    let lb = Balancer::with_config(&format!(
        "[listen]\nhttp = [\"127.0.0.1:0\"]\n[[route]]\ndomains = [\"*\"]\nbackends = [\"{}\"]\n",
        b.addr
    ));
    let mut kept = Client::connect(lb.http);
    kept.send(b"GET /before HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(kept.response().expect("response").status, 200);
    let (http, https) = (crate::common::free_port(), crate::common::free_port());
    let config = |http: &str| {
        format!(
            "[listen]\nhttp = [{http}]\nhttps = [\"127.0.0.1:{https}\"]\n\
             [[tls.cert]]\ndomains = [\"a.example.com\"]\ncert = \"{}\"\nkey = \"{}\"\n\
             [[route]]\ndomains = [\"*\"]\nbackends = [\"{}\"]\n",
            fixture("a.pem").display(),
            fixture("a.key").display(),
            b.addr
        )
    };
    let path = lb.dir.join("balancer.toml");
    std::fs::write(&path, config(&format!("\"127.0.0.1:{http}\""))).expect("write");
    lb.signal("HUP");
    assert!(lb.wait_log("reloaded", 1), "{}", lb.stderr());
    let new_http = std::net::SocketAddr::from(([127, 0, 0, 1], http));
    assert_eq!(
        get(new_http, "a", "/new").expect("new listener").text(),
        "b GET /new 0"
    );
    let page = https_get(
        std::net::SocketAddr::from(([127, 0, 0, 1], https)),
        "a.example.com",
        "/tls",
    );
    assert!(page.ends_with("b GET /tls 0"), "{page}");
    assert!(
        std::net::TcpStream::connect(lb.http).is_err(),
        "the dropped listener still accepts"
    );
    kept.send(b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(
        kept.response().expect("still served").text(),
        "b GET /after 0"
    );
    // A port something else holds: the whole config is refused.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = taken.local_addr().expect("addr");
    std::fs::write(&path, config(&format!("\"127.0.0.1:{http}\", \"{taken}\""))).expect("write");
    lb.signal("HUP");
    assert!(lb.wait_log("refused the new config", 1), "{}", lb.stderr());
    assert!(
        lb.stderr().contains(&format!("cannot listen on {taken}")),
        "{}",
        lb.stderr()
    );
    assert_eq!(
        get(new_http, "a", "/still").expect("still").text(),
        "b GET /still 0"
    );
}
