//! Cryptography for kmsd, only through AWS-LC (aws-lc-rs, and aws-lc-sys for the few functions
//! aws-lc-rs lacks): AES-256-GCM, the root key that seals key
//! material at rest, HMAC/SHA-256 for SigV4, and the random number generator.
//!
//! Secrets live in zeroize-on-drop types and have no `Debug` that prints them.

mod aes_gcm;
pub mod asymmetric;
mod aws_lc_ffi;
pub mod import_wrap;
pub mod kem;
mod root_key;
mod root_key_provider;
pub mod x509;

pub use aes_gcm::{AesGcmKey, GCM_IV_LEN, GCM_TAG_LEN};
pub use root_key::{write_private_file, RootKey};
pub use root_key_provider::{
    load_or_create as load_or_create_root_key, overwrite_and_unlink, rewrap as rewrap_root_key,
    FileRootKey, RootKeyError, RootKeyMaterial, RootKeyProvider, ROOT_KEY_LEN,
};

use aws_lc_rs::{constant_time, digest, hmac, rand};
use zeroize::Zeroizing;

/// Secret bytes (key material, plaintext data keys): zeroized when dropped.
pub type SecretBytes = Zeroizing<Vec<u8>>;

/// Failure of a cryptographic operation. Deliberately carries no detail: a failed open of a
/// ciphertext must not say why.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// Authentication failed or the input is malformed.
    #[error("decryption failed: the ciphertext, its context or the key does not match")]
    Decrypt,
    /// The random number generator or a primitive failed.
    #[error("cryptographic primitive failed")]
    Primitive,
    /// A key of the wrong length was supplied.
    #[error("key has the wrong length")]
    KeyLength,
    /// I/O error while loading or creating the root key.
    #[error("root key file: {0}")]
    Io(String),
    /// A private or public key is malformed or does not match the key spec.
    #[error("key is malformed or does not match the key spec")]
    InvalidKey,
    /// The peer public key for key agreement is malformed or not on the key's curve.
    #[error("peer public key is invalid or not on the key's curve")]
    InvalidPeerKey,
    /// The request is not valid for this key spec or algorithm.
    #[error("invalid input: {0}")]
    InvalidInput(&'static str),
    /// The operation is not available with the cryptographic library in use.
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
}

/// Fills a new buffer with `n` bytes from the system CSPRNG.
pub fn random_bytes(n: usize) -> Result<SecretBytes, CryptoError> {
    let mut buf = Zeroizing::new(vec![0u8; n]);
    rand::fill(&mut buf).map_err(|_| CryptoError::Primitive)?;
    Ok(buf)
}

/// Random fixed-size array (ids, IVs).
pub fn random_array<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut buf = [0u8; N];
    rand::fill(&mut buf).map_err(|_| CryptoError::Primitive)?;
    Ok(buf)
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Incremental SHA-256.
#[derive(Clone)]
pub struct Sha256Context(digest::Context);

impl Default for Sha256Context {
    fn default() -> Self {
        Self::new()
    }
}

impl Sha256Context {
    /// A fresh context.
    pub fn new() -> Self {
        Sha256Context(digest::Context::new(&digest::SHA256))
    }
    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    /// The digest.
    pub fn finish(self) -> [u8; 32] {
        let d = self.0.finish();
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        out
    }
}

/// HMAC-SHA256 of `data` under `key`.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let k = hmac::Key::new(hmac::HMAC_SHA256, key);
    let tag = hmac::sign(&k, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Constant-time equality of two byte strings.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    constant_time::verify_slices_are_equal(a, b).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 2 (HMAC-SHA256) and FIPS 180-2 "abc" (SHA-256).
    #[test]
    fn known_answers() {
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex::encode(sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn random_bytes_differ() {
        assert_ne!(random_bytes(32).unwrap(), random_bytes(32).unwrap());
        assert!(constant_time_eq(b"ab", b"ab"));
        assert!(!constant_time_eq(b"ab", b"ac"));
    }
}
