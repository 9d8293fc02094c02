//! The bus's CURVE keys: X25519 key pairs, each derived from a generated
//! secret in the spec's secrets file (as `sshkey` derives the backup keys),
//! so the compile stays pure and the same secret always gives the same key.
//! Every host has one (`bus.host.NAME`), every balancer one
//! (`bus.balancer.NAME`), the operator one (`bus.operator`). A secret key
//! travels only in a key file (Z85, 40 characters, one line) that only its
//! daemon can read; public keys are written into the daemons' configs.
//! Nothing here prints a secret key: `KeyPair`'s `Debug` shows the public
//! half only.

use sha2::Digest;
use std::fmt;
use std::io::Read;
use std::path::Path;

/// A CURVE public key (32 bytes; written in Z85).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

/// A CURVE key pair.
#[derive(Clone)]
pub struct KeyPair {
    pub public: PublicKey,
    secret: [u8; 32],
}

/// The secrets-file name of host `host`'s key.
pub fn host_secret(host: &str) -> String {
    format!("bus.host.{host}")
}

/// The secrets-file name of the key of the balancer on `host`.
pub fn balancer_secret(host: &str) -> String {
    format!("bus.balancer.{host}")
}

/// The secrets-file name of the operator's key (control requests).
pub const OPERATOR_SECRET: &str = "bus.operator";

impl PublicKey {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// From its 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<PublicKey> {
        Some(PublicKey(bytes.try_into().ok()?))
    }

    /// Its Z85 text, as configs hold it.
    pub fn z85(&self) -> String {
        z85(&self.0)
    }

    /// Reads a Z85 public key (40 characters).
    pub fn parse(text: &str) -> Result<PublicKey, String> {
        decode_key(text).map(PublicKey)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.z85())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.z85())
    }
}

/// Never print the secret half.
impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPair(public {})", self.public.z85())
    }
}

impl KeyPair {
    /// The pair whose secret key is `secret` (32 bytes).
    pub fn from_secret(secret: [u8; 32]) -> KeyPair {
        let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(secret));
        KeyPair {
            public: PublicKey(public.to_bytes()),
            secret,
        }
    }

    /// The secret key's 32 bytes, for libzmq's `ZMQ_CURVE_SECRETKEY`.
    pub(crate) fn secret_bytes(&self) -> &[u8; 32] {
        &self.secret
    }

    /// The text of this pair's key file: the secret key in Z85 and a newline.
    pub fn key_file_text(&self) -> String {
        format!("{}\n", z85(&self.secret))
    }

    /// Reads a key file as `key_file_text` writes it (after any `#` comment
    /// lines, as the templates write it). It must be a regular
    /// file (a link is not followed) that no one but its owner and group
    /// can read; the error names the file and the fix, never its content.
    pub fn load(path: &Path) -> Result<KeyPair, String> {
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        let shown = path.display();
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(path)
            .map_err(|e| format!("cannot open the bus key {shown}: {e}"))?;
        let meta = file
            .metadata()
            .map_err(|e| format!("cannot read the bus key {shown}: {e}"))?;
        if !meta.is_file() {
            return Err(format!("the bus key {shown} is not a regular file"));
        }
        if meta.mode() & 0o007 != 0 {
            return Err(format!(
                "the bus key {shown} is readable by every user; `chmod 600 {shown}` (sitec apply writes it so)"
            ));
        }
        let mut text = String::new();
        file.by_ref()
            .take(4096)
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read the bus key {shown}: {e}"))?;
        // The first line that is not a `#` comment.
        let line = (text.lines().map(str::trim)).find(|l| !l.is_empty() && !l.starts_with('#'));
        let secret = decode_key(line.unwrap_or_default()).map_err(|_| {
            format!(
                "the bus key {shown} is not a Z85 CURVE key; apply the spec again to rewrite it"
            )
        })?;
        Ok(KeyPair::from_secret(secret))
    }
}

/// The key pair derived from a generated secret's value: its SHA-256 (after
/// a label, so the same value never makes another kind of key) is the
/// X25519 secret key.
pub fn derive(secret_value: &str) -> KeyPair {
    let mut hash = sha2::Sha256::new();
    hash.update(b"sitec bus CURVE key\0");
    hash.update(secret_value.as_bytes());
    KeyPair::from_secret(hash.finalize().into())
}

fn z85(bytes: &[u8; 32]) -> String {
    // 32 bytes are a multiple of 4: Z85 always encodes them.
    zmq::z85_encode(bytes).unwrap_or_default()
}

/// 32 bytes from 40 Z85 characters.
fn decode_key(text: &str) -> Result<[u8; 32], String> {
    if text.len() != 40 {
        return Err(format!(
            "a CURVE key is 40 Z85 characters, this is {}",
            text.len()
        ));
    }
    let bytes = zmq::z85_decode(text).map_err(|e| format!("not Z85: {e}"))?;
    bytes
        .try_into()
        .map_err(|_| "not a 32-byte key".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_half_is_libzmqs() {
        // libzmq's own pair: the public key we derive from its secret key
        // is the one libzmq (libsodium) made.
        let pair = zmq::CurveKeyPair::new().expect("libzmq has CURVE");
        let ours = KeyPair::from_secret(pair.secret_key);
        assert_eq!(ours.public.as_bytes(), &pair.public_key);
    }

    #[test]
    fn derived_keys_are_stable_and_distinct() {
        let a = derive("abc");
        assert_eq!(a.public, derive("abc").public);
        assert_ne!(a.public, derive("abd").public);
        assert_eq!(PublicKey::parse(&a.public.z85()), Ok(a.public));
        assert!(!format!("{a:?}").contains(&z85(&a.secret)));
        assert!(PublicKey::parse("short").is_err());
    }

    #[test]
    fn key_files_are_read_back_and_loose_ones_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("host.key");
        let pair = derive("x");
        std::fs::write(&path, pair.key_file_text()).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(KeyPair::load(&path).expect("loads").public, pair.public);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = KeyPair::load(&path).expect_err("loose");
        assert!(err.contains("chmod 600"), "{err}");
        let link = dir.path().join("link.key");
        std::os::unix::fs::symlink(&path, &link).expect("symlink");
        assert!(KeyPair::load(&link).is_err(), "a link is not followed");
        std::fs::write(&path, "not a key\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let err = KeyPair::load(&path).expect_err("garbage");
        assert!(!err.contains("not a key"), "never echoes the file: {err}");
    }
}
