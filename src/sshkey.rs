//! SSH keys derived from secrets: an Ed25519 key pair made from a generated
//! secret, so the compile stays pure and the same secret always gives the
//! same key. The backup host logs in to the database hosts with it; the
//! private key is rendered into the backup host's files (marked secret) and
//! the public key into the database hosts' `authorized_keys`.

use sha2::Digest;

/// An Ed25519 key pair in OpenSSH's formats.
pub struct KeyPair {
    /// `-----BEGIN OPENSSH PRIVATE KEY-----` ... (unencrypted), ending in a new line.
    pub private_pem: String,
    /// `ssh-ed25519 AAAA...`, without a comment.
    pub public: String,
}

/// The key pair derived from `secret` (its SHA-256 is the Ed25519 seed).
/// The private key's comment is empty: the secret alone gives both texts.
pub fn derive(secret: &str) -> Result<KeyPair, String> {
    let seed: [u8; 32] = sha2::Sha256::digest(secret.as_bytes()).into();
    let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed)
        .map_err(|_| "can't make an Ed25519 key from a secret".to_string())?;
    let public_key = ring::signature::KeyPair::public_key(&pair)
        .as_ref()
        .to_vec();
    let mut public_blob = Vec::new();
    put_string(&mut public_blob, b"ssh-ed25519");
    put_string(&mut public_blob, &public_key);

    // The private section: a check number twice, the key, its comment, padding.
    let check = u32::from_be_bytes([seed[0], seed[1], seed[2], seed[3]]);
    let mut private = Vec::new();
    private.extend_from_slice(&check.to_be_bytes());
    private.extend_from_slice(&check.to_be_bytes());
    put_string(&mut private, b"ssh-ed25519");
    put_string(&mut private, &public_key);
    let mut both = seed.to_vec();
    both.extend_from_slice(&public_key);
    put_string(&mut private, &both);
    put_string(&mut private, b"");
    let mut pad = 1u8;
    while private.len() % 8 != 0 {
        private.push(pad);
        pad += 1;
    }

    let mut blob = b"openssh-key-v1\0".to_vec();
    put_string(&mut blob, b"none");
    put_string(&mut blob, b"none");
    put_string(&mut blob, b"");
    blob.extend_from_slice(&1u32.to_be_bytes());
    put_string(&mut blob, &public_blob);
    put_string(&mut blob, &private);

    let encoded = base64(&blob);
    let mut private_pem = String::from("-----BEGIN OPENSSH PRIVATE KEY-----\n");
    for chunk in encoded.as_bytes().chunks(70) {
        private_pem.push_str(&String::from_utf8_lossy(chunk));
        private_pem.push('\n');
    }
    private_pem.push_str("-----END OPENSSH PRIVATE KEY-----\n");
    Ok(KeyPair {
        private_pem,
        public: format!("ssh-ed25519 {}", base64(&public_blob)),
    })
}

/// SSH's `string`: a big-endian u32 length, then the bytes.
fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_examples() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn the_same_secret_gives_the_same_key() {
        let a = derive("abc").expect("a key");
        let b = derive("abc").expect("a key");
        let c = derive("abd").expect("a key");
        assert_eq!(a.public, b.public);
        assert_ne!(a.public, c.public);
        assert!(a
            .public
            .starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI"));
    }

    /// What a program prints; it must be installed (`bash .ci/setup`) and
    /// succeed.
    fn output_of(program: &str, args: &[&str]) -> String {
        let out = std::process::Command::new(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("`{program}` does not run ({e}): run `bash .ci/setup`"));
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Checked by programs that share no code with `derive`: ssh-keygen
    /// reads the private key and prints its public key, which is the one
    /// `derive` gives, and the key it holds is the one OpenSSL makes of the
    /// seed SHA-256(secret) (Python's hashlib for the hash and the PKCS#8
    /// wrapping, `openssl pkey` for the Ed25519 public key).
    #[test]
    fn openssh_and_openssl_agree_with_the_derived_key() {
        for secret in ["PLACEHOLDERsecret", "abc", "a secret with spaces"] {
            let pair = derive(secret).expect("a key");
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join("key");
            std::fs::write(&path, &pair.private_pem).expect("write the key");
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .expect("chmod");
            let keygen = output_of("ssh-keygen", &["-y", "-f", &path.to_string_lossy()]);
            let words: Vec<&str> = keygen.split_whitespace().collect();
            assert_eq!(words[..2].join(" "), pair.public, "{secret}");
            let from_keygen = output_of(
                "python3",
                &[
                    "-c",
                    "import base64, sys; print(base64.b64decode(sys.argv[1])[-32:].hex())",
                    words[1],
                ],
            );
            let from_openssl = output_of(
                "sh",
                &[
                    "-c",
                    "python3 -c 'import hashlib, sys; sys.stdout.buffer.write(bytes.fromhex(\"302e020100300506032b657004220420\") + hashlib.sha256(sys.argv[1].encode()).digest())' \"$1\" \
                     | openssl pkey -inform DER -pubout -outform DER | tail -c 32 | od -An -v -tx1 | tr -d ' \\n'",
                    "sh",
                    secret,
                ],
            );
            assert_eq!(from_keygen, from_openssl, "{secret}");
            assert_eq!(from_openssl.len(), 64, "{from_openssl}");
        }
    }
}
