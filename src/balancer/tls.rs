//! TLS termination with rustls (ring provider): loads each `[[tls.cert]]`'s
//! chain and key from PEM files and picks the certificate by SNI, exact
//! names before `*.` wildcards; a client without SNI gets the first
//! certificate. It builds the acceptor only: the handshake runs in `server`.

use super::config::{domain_matches, CertConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::sync::Arc;

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

/// The acceptor for every https listener, from the configured certificates.
pub fn acceptor(certs: &[CertConfig]) -> Result<tokio_rustls::TlsAcceptor, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut loaded = Vec::new();
    for (i, c) in certs.iter().enumerate() {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&c.cert)
            .and_then(Iterator::collect)
            .map_err(|e| {
                format!(
                    "tls.cert[{i}].cert: cannot read certificates from {}: {e}",
                    c.cert.display()
                )
            })?;
        if chain.is_empty() {
            return Err(format!(
                "tls.cert[{i}].cert: {} holds no PEM certificate",
                c.cert.display()
            ));
        }
        let key = PrivateKeyDer::from_pem_file(&c.key).map_err(|e| {
            format!(
                "tls.cert[{i}].key: cannot read a private key from {}: {e}",
                c.key.display()
            )
        })?;
        let key = CertifiedKey::from_der(chain, key, &provider)
            .map_err(|e| format!("tls.cert[{i}]: the key does not fit the certificate: {e}"))?;
        loaded.push((c.domains.clone(), Arc::new(key)));
    }
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(BySni { certs: loaded }));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
