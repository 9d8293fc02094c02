//! TLS termination with rustls (ring provider): loads each `[[tls.cert]]`'s
//! chain and key from PEM files and picks the certificate by SNI, exact
//! names before `*.` wildcards; a client without SNI gets the first
//! certificate. It builds the acceptor only (and says when each certificate
//! expires, for `/metrics`): the handshake runs in `server`.

use super::config::{domain_matches, CertConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::sync::Arc;
use std::time::SystemTime;

#[derive(Debug)]
struct BySni {
    certs: Vec<(Vec<String>, Arc<CertifiedKey>)>,
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = hello.server_name() else {
            return self.certs.first().map(|(_, k)| k.clone());
        };
        let exact = self
            .certs
            .iter()
            .find(|(d, _)| d.iter().any(|d| d.eq_ignore_ascii_case(name)));
        exact
            .or_else(|| {
                self.certs
                    .iter()
                    .find(|(d, _)| d.iter().any(|d| domain_matches(d, name)))
            })
            .map(|(_, k)| k.clone())
    }
}

/// Why PEM text is not a certificate chain with the key of its first
/// certificate.
#[derive(Debug)]
pub enum PairProblem {
    /// The chain's text cannot be read as PEM.
    Certificates(String),
    /// It holds no certificate.
    NoCertificate,
    /// The key's text holds no private key.
    Key(String),
    /// Both were read, but they make no pair.
    Unfit(Unfit),
}

/// Why a key and a chain that were read make no pair. Said in sitec's own
/// words, never rustls's (which name its internals, and change with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unfit {
    /// A key rustls cannot sign with (not RSA, ECDSA P-256 or P-384, or Ed25519).
    KeyKind,
    /// The first certificate cannot be parsed.
    Leaf,
    /// The key is not the first certificate's.
    KeyMismatch,
}

impl std::fmt::Display for Unfit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unfit::KeyKind => {
                "the key is of a kind the balancer cannot use: RSA, ECDSA (P-256, P-384) or Ed25519 only"
            }
            Unfit::Leaf => "its first certificate cannot be parsed",
            Unfit::KeyMismatch => {
                "the key is not the first certificate's (their public keys differ): a key of another certificate, or a chain that does not start with its own"
            }
        })
    }
}

/// The chain in `cert` and the private key in `key` (PEM text), checked to
/// belong together: what a `[[tls.cert]]` loads, and what `sitec check`
/// asks of an app's `tls` files (`local_files`).
pub fn certified_key(
    cert: &[u8],
    key: &[u8],
    provider: &rustls::crypto::CryptoProvider,
) -> Result<CertifiedKey, PairProblem> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<_, _>>()
        .map_err(|e| PairProblem::Certificates(e.to_string()))?;
    if chain.is_empty() {
        return Err(PairProblem::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| PairProblem::Key(e.to_string()))?;
    let key = (provider.key_provider)
        .load_private_key(key)
        .map_err(|_| PairProblem::Unfit(Unfit::KeyKind))?;
    let pair = CertifiedKey::new(chain, key);
    // As `CertifiedKey::from_der` judges: a key that cannot tell its
    // public half is taken on trust.
    match pair.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(pair)
        }
        Err(rustls::Error::InconsistentKeys(_)) => Err(PairProblem::Unfit(Unfit::KeyMismatch)),
        Err(_) => Err(PairProblem::Unfit(Unfit::Leaf)),
    }
}

/// A log line when a certificate being loaded has expired or expires within
/// `EXPIRY_WARNING`: it is served all the same (refusing it would stop the
/// balancer, or keep an older one that is no better).
fn warn_of_expiry(i: usize, c: &CertConfig, not_before: SystemTime, not_after: SystemTime) {
    use super::cert_dates::{date, standing, Standing};
    let (cert, on) = (c.cert.display(), date(not_after));
    match standing(not_before, not_after, SystemTime::now()) {
        Standing::Expired => tracing::warn!(
            "tls.cert[{i}] ({cert}) expired on {on}: clients refuse it; renew it and reload"
        ),
        Standing::ExpiresSoon(left) => tracing::warn!(
            "tls.cert[{i}] ({cert}) expires on {on}, in {} days: renew it and reload",
            left.as_secs() / 86_400
        ),
        Standing::NotYet | Standing::Valid => {}
    }
}

/// When a served certificate expires, for `/metrics`.
#[derive(Debug, Clone)]
pub struct Expiry {
    pub cert: std::path::PathBuf,
    /// Its first domain.
    pub domain: String,
    pub not_after: SystemTime,
}

/// The acceptor for every https listener, from the configured certificates,
/// and when each of those expires.
pub fn acceptor(certs: &[CertConfig]) -> Result<(tokio_rustls::TlsAcceptor, Vec<Expiry>), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut loaded = Vec::new();
    let mut expiry = Vec::new();
    for (i, c) in certs.iter().enumerate() {
        let cert_unread = |e: &dyn std::fmt::Display| {
            format!(
                "tls.cert[{i}].cert: cannot read certificates from {}: {e}",
                c.cert.display()
            )
        };
        let key_unread = |e: &dyn std::fmt::Display| {
            format!(
                "tls.cert[{i}].key: cannot read a private key from {}: {e}",
                c.key.display()
            )
        };
        let cert = std::fs::read(&c.cert).map_err(|e| cert_unread(&e))?;
        let key = std::fs::read(&c.key).map_err(|e| key_unread(&e))?;
        let key = certified_key(&cert, &key, &provider).map_err(|problem| match problem {
            PairProblem::Certificates(e) => cert_unread(&e),
            PairProblem::NoCertificate => format!(
                "tls.cert[{i}].cert: {} holds no PEM certificate",
                c.cert.display()
            ),
            PairProblem::Key(e) => key_unread(&e),
            PairProblem::Unfit(why) => format!(
                "tls.cert[{i}] ({} and {}): {why}",
                c.cert.display(),
                c.key.display()
            ),
        })?;
        if let Some((not_before, not_after)) = super::cert_dates::validity(&key.cert[0]) {
            warn_of_expiry(i, c, not_before, not_after);
            expiry.push(Expiry {
                cert: c.cert.clone(),
                domain: c.domains.first().cloned().unwrap_or_default(),
                not_after,
            });
        }
        loaded.push((c.domains.clone(), Arc::new(key)));
    }
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(BySni { certs: loaded }));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((tokio_rustls::TlsAcceptor::from(Arc::new(config)), expiry))
}
