//! The proxy's ciphertext format choices: GCM AAD construction with `ciphertextMetadata`, and
//! the ciphertext data integrity value (CDIV).
//!
//! Every Encrypt returns `ciphertextMetadata` = the single byte [`METADATA_V1`], and the AAD
//! fed to AES-GCM is the spec's length-prefixed form
//! `uint16_be(len(aad)) || aad || uint8(len(metadata)) || metadata`, so the tag also
//! authenticates the metadata. Decrypt accepts exactly that metadata (anything else is
//! `InvalidCiphertextException`); without metadata the request AAD is used as given.

use kms_crypto::Sha256Context;

/// `ciphertextMetadata` of every ciphertext this proxy produces: scheme version 1 (12-byte
/// random IV, 16-byte tag, length-prefixed AAD including this metadata).
pub const METADATA_V1: [u8; 1] = [0x01];

/// Longest `ciphertextMetadata` the spec allows (bytes).
pub const MAX_METADATA_LEN: usize = 20;

/// The AAD fed to AES-GCM for `aad` and `metadata`: `uint16_be(len(aad)) || aad ||
/// uint8(len(metadata)) || metadata`. `None` if `aad` is longer than 65535 bytes or
/// `metadata` longer than 255 bytes.
pub fn gcm_aad(aad: &[u8], metadata: &[u8]) -> Option<Vec<u8>> {
    let a = u16::try_from(aad.len()).ok()?;
    let m = u8::try_from(metadata.len()).ok()?;
    let mut out = Vec::with_capacity(3 + aad.len() + metadata.len());
    out.extend_from_slice(&a.to_be_bytes());
    out.extend_from_slice(aad);
    out.push(m);
    out.extend_from_slice(metadata);
    Some(out)
}

/// The ciphertext data integrity value: `SHA-256(aad || metadata || iv || ciphertext || tag)`
/// over the decoded values (absent = empty), without length prefixes.
pub fn cdiv(aad: &[u8], metadata: &[u8], iv: &[u8], ciphertext: &[u8], tag: &[u8]) -> [u8; 32] {
    let mut h = Sha256Context::new();
    for part in [aad, metadata, iv, ciphertext, tag] {
        h.update(part);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine as _;

    /// The test vector of the XKS Proxy API specification (v1.0.3).
    #[test]
    fn spec_cdiv_vector() {
        let aad = b"project=nile,department=marketing";
        let meta = b"key_version=1";
        assert_eq!((aad.len(), meta.len()), (33, 13));
        let iv = B64.decode("HMrlRw85cAJUd5Ax").unwrap();
        let ct = B64.decode("ghxkK1txeDNn3q8Y").unwrap();
        let tag = B64.decode("vBxN2ncH1oEkR8WVXpmyYQ==").unwrap();
        // The spec's response carries the metadata base64-encoded.
        assert_eq!(B64.decode("a2V5X3ZlcnNpb249MQ==").unwrap(), meta);
        let v = cdiv(aad, meta, &iv, &ct, &tag);
        assert_eq!(
            B64.encode(v),
            "qHA/ImC9h5HsLRXqCyPmWgYx7tzyoTplzILbP0fPXsc="
        );
        // Absent fields are empty, not skipped differently: no metadata changes the value.
        assert_ne!(B64.encode(cdiv(aad, b"", &iv, &ct, &tag)), B64.encode(v));
    }

    #[test]
    fn aad_construction() {
        assert_eq!(gcm_aad(b"", b"").unwrap(), vec![0, 0, 0]);
        assert_eq!(
            gcm_aad(b"ab", &METADATA_V1).unwrap(),
            vec![0, 2, b'a', b'b', 1, 1]
        );
        let big = vec![7u8; 8192];
        let a = gcm_aad(&big, &METADATA_V1).unwrap();
        assert_eq!(&a[..2], &[0x20, 0x00]);
        assert_eq!(a.len(), 2 + 8192 + 2);
        assert!(gcm_aad(&vec![0u8; 65536], b"").is_none());
    }
}
