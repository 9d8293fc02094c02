//! The fleet's own certificate authority, for database traffic across
//! hosts (Postgres and Redis over TLS, verified by name) and between the
//! GlusterFS peers of shared media (`peer`: a certificate per host, server
//! and client, whose common name the volume allows).
//!
//! Everything is derived from one generated secret, `fleet.ca_key`, in the
//! spec's secrets file: the CA's ECDSA P-256 key (the SHA-256 of the secret
//! is its scalar), its self-signed certificate, and for each database server
//! of each host (its Postgres, its Redis) a key of its own and a certificate
//! naming the host (its name, `address`, `private_address`, `localhost` and
//! 127.0.0.1), signed by the CA: one key per server, so the redis user,
//! which reads Redis's key, cannot pose as the host's Postgres.
//! Signatures are deterministic (RFC 6979) and every field is fixed (validity
//! 2025-01-01 to 2125-01-01, serials from a hash), so the same secret
//! always renders the same files: the compile stays pure, a plan shows no
//! change, and rotating the secret rotates every certificate. Clients trust
//! only this CA (`/etc/sitec/fleet-ca.pem`). Pure: no IO.

use p256::ecdsa::signature::Signer;
use p256::pkcs8::{EncodePrivateKey, LineEnding};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyUsagePurpose, SanType, SerialNumber, SignatureAlgorithm,
};
use sha2::Digest;

/// The generated secret the CA and every server key derive from.
pub const CA_SECRET: &str = "fleet.ca_key";
/// Where every host that connects to a database finds the CA's certificate.
pub const CA_FILE: &str = "/etc/sitec/fleet-ca.pem";

/// A database host's certificate and private key, PEM.
#[derive(Clone)]
pub struct Server {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Never print the key.
impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Server { .. }")
    }
}

/// An ECDSA P-256 key that signs deterministically (RFC 6979, the
/// RustCrypto `p256` crate): ring's ECDSA draws a random nonce, which would
/// give a new certificate on every compile. P-256 and not Ed25519, which
/// would be deterministic too: libpq's channel binding (SCRAM-SHA-256-PLUS)
/// cannot hash an Ed25519 certificate and refuses the connection.
struct Key {
    signing: p256::ecdsa::SigningKey,
    /// The public point, uncompressed (SEC1), as X.509 holds it.
    public: Vec<u8>,
}

impl Key {
    /// The key whose secret scalar is the SHA-256 of `parts` joined by
    /// NULs (hashed again in the rare case that is no valid scalar).
    fn derive(parts: &[&str]) -> Result<Key, String> {
        let mut seed: [u8; 32] = sha2::Sha256::digest(parts.join("\0").as_bytes()).into();
        for _ in 0..8 {
            if let Ok(signing) = p256::ecdsa::SigningKey::from_slice(&seed) {
                let public = signing
                    .verifying_key()
                    .to_encoded_point(false)
                    .as_bytes()
                    .to_vec();
                return Ok(Key { signing, public });
            }
            seed = sha2::Sha256::digest(seed).into();
        }
        Err("cannot derive a key for the fleet CA".to_string())
    }

    fn pem(&self) -> Result<String, String> {
        self.signing
            .to_pkcs8_pem(LineEnding::LF)
            .map(|pem| pem.to_string())
            .map_err(|e| format!("cannot write a key: {e}"))
    }
}

impl rcgen::PublicKeyData for Key {
    fn der_bytes(&self) -> &[u8] {
        &self.public
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl rcgen::SigningKey for Key {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let signature: p256::ecdsa::Signature = self.signing.sign(message);
        Ok(signature.to_der().as_bytes().to_vec())
    }
}

/// Parameters both certificates share: fixed dates, a serial from `id`.
fn params(common_name: &str, id: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.not_before = rcgen::date_time_ymd(2025, 1, 1);
    p.not_after = rcgen::date_time_ymd(2125, 1, 1);
    let mut serial: [u8; 16] = sha2::Sha256::digest(id.as_bytes())[..16]
        .try_into()
        .unwrap_or([1; 16]);
    serial[0] &= 0x7f; // positive
    serial[0] |= 0x01; // and no leading zero byte
    p.serial_number = Some(SerialNumber::from_slice(&serial));
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, common_name);
    p
}

fn ca_params() -> CertificateParams {
    let mut p = params("sitec fleet CA", "sitec fleet CA");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

/// The CA's certificate, PEM.
pub fn ca_pem(secret: &str) -> Result<String, String> {
    let key = Key::derive(&["sitec fleet CA", secret])?;
    let cert = ca_params()
        .self_signed(&key)
        .map_err(|e| format!("cannot make the fleet CA's certificate: {e}"))?;
    Ok(cert.pem())
}

/// The private key of database server `server` (`postgres`, `redis`) on
/// host `host`, PEM (it depends on those two names only, not on the names
/// its certificate carries).
pub fn server_key_pem(secret: &str, host: &str, server: &str) -> Result<String, String> {
    server_key(secret, host, server)?.pem()
}

fn server_key(secret: &str, host: &str, server: &str) -> Result<Key, String> {
    Key::derive(&["sitec database server", server, host, secret])
}

/// The key and certificate of database server `server` (`postgres`,
/// `redis`) on host `host`, valid for `names` (host names and IP
/// addresses), signed by the CA.
pub fn server(secret: &str, host: &str, server: &str, names: &[String]) -> Result<Server, String> {
    leaf(
        secret,
        host,
        server,
        names,
        &[ExtendedKeyUsagePurpose::ServerAuth],
    )
}

/// What GlusterFS's peers are named by (`PEER`'s key and certificate):
/// each brick host and each client of a media volume is both a TLS server
/// and a TLS client of the others, with one certificate.
pub const PEER: &str = "glusterfs";

/// The key and certificate host `host` speaks GlusterFS with (`PEER`):
/// its common name is the host's name, which the volumes' `auth.ssl-allow`
/// lists, and it serves as server and client alike.
pub fn peer(secret: &str, host: &str, names: &[String]) -> Result<Server, String> {
    use ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    leaf(secret, host, PEER, names, &[ServerAuth, ClientAuth])
}

fn leaf(
    secret: &str,
    host: &str,
    server: &str,
    names: &[String],
    usages: &[ExtendedKeyUsagePurpose],
) -> Result<Server, String> {
    let ca_key = Key::derive(&["sitec fleet CA", secret])?;
    let issuer = Issuer::new(ca_params(), ca_key);
    let host_key = server_key(secret, host, server)?;
    let mut p = params(
        host,
        &format!("{server} on host {host} {}", names.join(" ")),
    );
    p.subject_alt_names = names
        .iter()
        .map(|n| match n.parse() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => n
                .clone()
                .try_into()
                .map(SanType::DnsName)
                .map_err(|e| format!("`{n}` cannot be named in a certificate: {e}")),
        })
        .collect::<Result<_, _>>()?;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = usages.to_vec();
    p.use_authority_key_identifier_extension = true;
    let cert = p
        .signed_by(&host_key, &issuer)
        .map_err(|e| format!("cannot sign {host}'s certificate: {e}"))?;
    Ok(Server {
        cert_pem: cert.pem(),
        key_pem: host_key.pem()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn names() -> Vec<String> {
        ["db1", "localhost", "203.0.113.31", "127.0.0.1"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn the_same_secret_gives_the_same_certificates() {
        let a = server("s3cret", "db1", "postgres", &names()).expect("signs");
        let b = server("s3cret", "db1", "postgres", &names()).expect("signs");
        assert_eq!(a.cert_pem, b.cert_pem);
        assert_eq!(a.key_pem, b.key_pem);
        assert_eq!(ca_pem("s3cret"), ca_pem("s3cret"));
        let other = server("rotated", "db1", "postgres", &names()).expect("signs");
        assert_ne!(a.key_pem, other.key_pem);
        assert_ne!(ca_pem("s3cret"), ca_pem("rotated"));
        let db2 = server("s3cret", "db2", "postgres", &names()).expect("signs");
        assert_ne!(a.key_pem, db2.key_pem, "each host has a key of its own");
        let redis = server("s3cret", "db1", "redis", &names()).expect("signs");
        assert_ne!(a.key_pem, redis.key_pem, "and each server on it");
    }

    /// A scratch folder for openssl's files; `None` (outside CI) without
    /// openssl.
    fn openssl_scratch() -> Option<tempfile::TempDir> {
        if Command::new("openssl").arg("version").output().is_err() {
            assert!(std::env::var_os("CI").is_none(), "CI has openssl");
            return None;
        }
        Some(tempfile::tempdir().expect("temp dir"))
    }

    fn write_in(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("written");
        path
    }

    /// openssl verifies the host's certificate against the CA, for the
    /// host's address and name, as libpq's verify-full does; not for
    /// another name, and not against another fleet's CA.
    #[test]
    fn openssl_verifies_a_host_by_its_address_and_name() {
        let Some(dir) = openssl_scratch() else {
            return;
        };
        let write = |name: &str, text: &str| write_in(&dir, name, text);
        let ca = write("ca.pem", &ca_pem("s3cret").expect("ca"));
        let other_ca = write("other.pem", &ca_pem("another fleet").expect("ca"));
        let leaf = server("s3cret", "db1", "postgres", &names()).expect("signs");
        let cert = write("db1.pem", &leaf.cert_pem);
        let key = write("db1.key", &leaf.key_pem);
        let verify = |ca: &std::path::Path, check: &[&str]| {
            Command::new("openssl")
                .arg("verify")
                .arg("-CAfile")
                .arg(ca)
                .args(check)
                .arg(&cert)
                .output()
                .expect("openssl runs")
                .status
                .success()
        };
        assert!(verify(&ca, &["-verify_ip", "203.0.113.31"]));
        assert!(verify(&ca, &["-verify_hostname", "db1"]));
        assert!(!verify(&ca, &["-verify_ip", "203.0.113.99"]));
        assert!(!verify(&ca, &["-verify_hostname", "db2"]));
        assert!(!verify(&other_ca, &["-verify_ip", "203.0.113.31"]));
        let public = |args: &[&str], file: &std::path::Path| {
            Command::new("openssl")
                .args(args)
                .arg(file)
                .output()
                .expect("openssl runs")
                .stdout
        };
        assert_eq!(
            public(&["x509", "-noout", "-pubkey", "-in"], &cert),
            public(&["pkey", "-pubout", "-in"], &key),
            "the key is the certificate's"
        );
    }

    /// A GlusterFS peer's certificate is a client's as well as a server's
    /// (each brick host connects to the others), a database server's only
    /// a server's; both name the host in their subject, as
    /// `auth.ssl-allow` reads it.
    #[test]
    fn a_peer_certificate_serves_and_connects() {
        let Some(dir) = openssl_scratch() else {
            return;
        };
        let write = |name: &str, text: &str| write_in(&dir, name, text);
        let ca = write("ca.pem", &ca_pem("s3cret").expect("ca"));
        let peer = write(
            "peer.pem",
            &peer("s3cret", "run1", &names()).expect("signs").cert_pem,
        );
        let db = write(
            "db.pem",
            &server("s3cret", "run1", "postgres", &names())
                .expect("signs")
                .cert_pem,
        );
        let verify = |purpose: &str, cert: &std::path::Path| {
            Command::new("openssl")
                .args(["verify", "-purpose", purpose, "-CAfile"])
                .arg(&ca)
                .arg(cert)
                .output()
                .expect("openssl runs")
                .status
                .success()
        };
        assert!(verify("sslserver", &peer) && verify("sslclient", &peer));
        assert!(verify("sslserver", &db) && !verify("sslclient", &db));
        let subject = Command::new("openssl")
            .args(["x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in"])
            .arg(&peer)
            .output()
            .expect("openssl runs");
        assert_eq!(
            String::from_utf8_lossy(&subject.stdout),
            "subject=CN=run1\n"
        );
        let keys = (
            server_key_pem("s3cret", "run1", PEER),
            server_key_pem("s3cret", "run1", "postgres"),
        );
        assert_ne!(
            keys.0.expect("key"),
            keys.1.expect("key"),
            "a key of its own"
        );
    }
}
