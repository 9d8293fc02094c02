//! The ZAP handler (ZeroMQ's authentication protocol, RFC 27): libzmq asks
//! it, over `inproc://zeromq.zap.01`, whether a peer that finished its
//! CURVE handshake may speak on a bound socket. The answer comes from the
//! socket's domain's list of keys (`Admitted`): a known key is admitted
//! under its name (`200`, the name becoming its messages' `User-Id`),
//! anything else refused (`400`). It runs on a thread of its own from
//! `Bus::new`, bound before any socket is, and never stops: without a
//! handler bound, libzmq would admit every CURVE client.

use super::Peer;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

const ENDPOINT: &str = "inproc://zeromq.zap.01";

/// Per domain, the admitted keys and their names.
#[derive(Default)]
pub struct Admitted {
    domains: Mutex<HashMap<String, HashMap<[u8; 32], String>>>,
}

impl Admitted {
    /// Admits exactly `peers` on `domain` from now on.
    pub fn set(&self, domain: &str, peers: &[Peer]) {
        let keys = (peers.iter())
            .map(|p| (*p.key.as_bytes(), p.name.clone()))
            .collect();
        self.lock().insert(domain.to_string(), keys);
    }

    /// The name `key` is admitted under on `domain`.
    fn name(&self, domain: &str, key: &[u8]) -> Option<String> {
        let key: [u8; 32] = key.try_into().ok()?;
        self.lock().get(domain)?.get(&key).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<[u8; 32], String>>> {
        self.domains.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Binds the handler in `context` and answers on a thread of its own.
pub fn start(context: &zmq::Context) -> Result<Arc<Admitted>, String> {
    let socket = context
        .socket(zmq::REP)
        .and_then(|s| s.bind(ENDPOINT).map(|()| s))
        .map_err(|e| format!("cannot start the bus's authentication handler: {e}"))?;
    let admitted = Arc::new(Admitted::default());
    let table = admitted.clone();
    std::thread::Builder::new()
        .name("sitec-bus-zap".into())
        .spawn(move || serve(&socket, &table))
        .map_err(|e| format!("cannot start the bus's authentication handler: {e}"))?;
    Ok(admitted)
}

fn serve(socket: &zmq::Socket, admitted: &Admitted) {
    let mut refusals = Refusals::default();
    loop {
        let request = match socket.recv_multipart(0) {
            Ok(frames) => frames,
            Err(e) => {
                tracing::warn!("bus authentication: {e}");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let reply = answer(&request, admitted, &mut refusals);
        if let Err(e) = socket.send_multipart(reply, 0) {
            tracing::warn!("bus authentication: cannot answer: {e}");
        }
    }
}

/// The reply to one ZAP request: version, request id, status code and
/// text, user id, metadata.
fn answer(request: &[Vec<u8>], admitted: &Admitted, refusals: &mut Refusals) -> Vec<Vec<u8>> {
    let frame = |i: usize| request.get(i).map_or(&[][..], Vec::as_slice);
    let (version, id, domain, address, mechanism, key) =
        (frame(0), frame(1), frame(2), frame(3), frame(5), frame(6));
    let domain = String::from_utf8_lossy(domain);
    let admitted_as = (version == b"1.0" && mechanism == b"CURVE")
        .then(|| admitted.name(&domain, key))
        .flatten();
    let (code, text, user) = match admitted_as {
        Some(name) => (&b"200"[..], &b"OK"[..], name.into_bytes()),
        None => {
            refusals.note(&domain, &String::from_utf8_lossy(address));
            (&b"400"[..], &b"not a key of this fleet"[..], Vec::new())
        }
    };
    vec![
        b"1.0".to_vec(),
        id.to_vec(),
        code.to_vec(),
        text.to_vec(),
        user,
        Vec::new(),
    ]
}

/// Logs refused peers at most once every 10 s (a flood must not fill the
/// journal), with how many there were.
#[derive(Default)]
struct Refusals {
    last: Option<Instant>,
    since: u64,
}

impl Refusals {
    fn note(&mut self, domain: &str, address: &str) {
        self.since += 1;
        if self
            .last
            .is_some_and(|t| t.elapsed() < Duration::from_secs(10))
        {
            return;
        }
        tracing::warn!(
            "bus: refused a peer from {address} on {domain} whose key is not the fleet's ({} refused since the last such line)",
            self.since
        );
        self.last = Some(Instant::now());
        self.since = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_known_keys_under_their_names_only_on_their_domain() {
        let admitted = Admitted::default();
        let key = crate::bus::keys::derive("a").public;
        admitted.set(
            "logs",
            &[Peer {
                name: "run1".into(),
                key,
            }],
        );
        let request = |domain: &str, mechanism: &str, key: &[u8]| -> Vec<Vec<u8>> {
            [
                b"1.0",
                &b"7"[..],
                domain.as_bytes(),
                b"10.0.0.9",
                b"",
                mechanism.as_bytes(),
                key,
            ]
            .iter()
            .map(|f| f.to_vec())
            .collect()
        };
        let mut refusals = Refusals::default();
        let ok = answer(
            &request("logs", "CURVE", key.as_bytes()),
            &admitted,
            &mut refusals,
        );
        assert_eq!(
            (ok[1].as_slice(), ok[2].as_slice(), ok[4].as_slice()),
            (&b"7"[..], &b"200"[..], &b"run1"[..])
        );
        for (domain, mechanism, key) in [
            ("control", "CURVE", key.as_bytes().to_vec()),
            ("logs", "NULL", key.as_bytes().to_vec()),
            ("logs", "CURVE", vec![0; 32]),
            ("logs", "CURVE", vec![1; 3]),
        ] {
            let no = answer(&request(domain, mechanism, &key), &admitted, &mut refusals);
            assert_eq!(no[2], b"400", "{domain} {mechanism}");
            assert!(no[4].is_empty());
        }
        assert_eq!(answer(&[], &admitted, &mut refusals)[2], b"400");
    }
}
