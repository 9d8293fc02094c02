//! A load generator for fleet tests: clients sending `GET /` through a
//! balancer one after another, each on a connection of its own, counting
//! answers and every failure (a status other than 200, a connection error).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The status of one `GET path` for `host` (the Host header) through the
/// balancer at `address`, port 80, on a connection of its own.
pub fn status(address: &str, host: &str, path: &str) -> Result<u16, String> {
    let mut stream = TcpStream::connect((address, 80)).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|e| format!("read: {e}"))?;
    let head = String::from_utf8_lossy(&answer[..answer.len().min(12)]).into_owned();
    head.get(9..12)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an answer: {head:?}"))
}

/// Clients looping on `GET /` until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<Mutex<Vec<String>>>,
    /// How long each answered request took.
    took: Arc<Mutex<Vec<Duration>>>,
    clients: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    /// `clients` clients asking the balancer at `address` for `host`'s `/`.
    pub fn start(address: &str, host: &str, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let took = Arc::new(Mutex::new(Vec::new()));
        let clients = (0..clients)
            .map(|_| {
                let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
                let took = took.clone();
                let (address, host) = (address.to_string(), host.to_string());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        match status(&address, &host, "/") {
                            Ok(200) => {
                                took.lock().expect("lock").push(started.elapsed());
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(code) => failed.lock().expect("lock").push(format!("status {code}")),
                            Err(e) => failed.lock().expect("lock").push(e),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            took,
            clients,
        }
    }

    /// The 99th percentile of the answered requests' times so far.
    pub fn p99(&self) -> Duration {
        let mut took = self.took.lock().expect("lock").clone();
        took.sort();
        let at = (took.len() * 99 / 100).min(took.len().saturating_sub(1));
        took.get(at).copied().unwrap_or_default()
    }

    /// Waits until `n` more requests have been answered.
    pub fn wait_answered(&self, n: u64) {
        let from = self.ok.load(Ordering::Relaxed);
        assert!(
            super::eventually(Duration::from_secs(60), || self.ok.load(Ordering::Relaxed)
                >= from + n),
            "the load got no answers: {:?}",
            self.failed.lock().expect("lock")
        );
    }

    /// Stops the clients: how many answers, and the failures.
    pub fn stop(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for c in self.clients {
            let _ = c.join();
        }
        let failed = self.failed.lock().expect("lock").clone();
        (self.ok.load(Ordering::Relaxed), failed)
    }
}
