//! The symmetric ciphertext envelope: self-describing, so Decrypt needs no `KeyId`.
//!
//! ```text
//! version (1) = 0x01 | key id (16) | material id (16) | iv (12) | ciphertext | tag (16)
//! AAD = the 33 header bytes (version, key id, material id) || canonical(encryption context)
//! canonical(ctx) = u32be(pair count) || for each pair sorted by key (bytewise UTF-8):
//!                  u32be(len key) || key || u32be(len value) || value
//! ```
//! The key id is the 16 bytes of the key's UUID (or of the 32 hex digits of an `mrk-` id).
//! Changing any byte, or decrypting with another encryption context, fails authentication.
//! Test vectors: `tests/vectors/envelope.json` of this crate.

use std::collections::BTreeMap;

use kms_crypto::{GCM_IV_LEN, GCM_TAG_LEN};

/// The only envelope version so far.
pub const ENVELOPE_VERSION: u8 = 1;
/// Bytes before the ciphertext.
pub const HEADER_LEN: usize = 1 + 16 + 16;
/// Smallest possible envelope (empty plaintext is not allowed, but the parser does not care).
pub const MIN_LEN: usize = HEADER_LEN + GCM_IV_LEN + GCM_TAG_LEN;

/// A parsed envelope (borrowing the blob).
#[derive(Debug, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The header bytes (part of the AAD).
    pub header: &'a [u8],
    /// Key id bytes.
    pub key_id: [u8; 16],
    /// Material id bytes.
    pub material_id: [u8; 16],
    /// IV.
    pub iv: &'a [u8],
    /// Ciphertext followed by the tag.
    pub ciphertext_and_tag: &'a [u8],
}

/// Parses an envelope; `None` if it is not one of ours.
pub fn parse(blob: &[u8]) -> Option<Envelope<'_>> {
    if blob.len() < MIN_LEN || blob[0] != ENVELOPE_VERSION {
        return None;
    }
    let key_id: [u8; 16] = blob[1..17].try_into().ok()?;
    let material_id: [u8; 16] = blob[17..33].try_into().ok()?;
    Some(Envelope {
        header: &blob[..HEADER_LEN],
        key_id,
        material_id,
        iv: &blob[HEADER_LEN..HEADER_LEN + GCM_IV_LEN],
        ciphertext_and_tag: &blob[HEADER_LEN + GCM_IV_LEN..],
    })
}

/// The header bytes for a key id and material id.
pub fn header(key_id: &[u8; 16], material_id: &[u8; 16]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0] = ENVELOPE_VERSION;
    h[1..17].copy_from_slice(key_id);
    h[17..33].copy_from_slice(material_id);
    h
}

/// The AAD: header || canonical(encryption context).
pub fn aad(header: &[u8], context: Option<&BTreeMap<String, String>>) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len() + 4 + context.map_or(0, |c| c.len() * 24));
    out.extend_from_slice(header);
    let pairs = context.map_or(0, BTreeMap::len) as u32;
    out.extend_from_slice(&pairs.to_be_bytes());
    // BTreeMap iterates in bytewise key order, which makes the encoding order-insensitive.
    for (k, v) in context.into_iter().flatten() {
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// Assembles header || iv || ciphertext-and-tag.
pub fn assemble(header: &[u8], iv: &[u8], ciphertext_and_tag: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len() + iv.len() + ciphertext_and_tag.len());
    out.extend_from_slice(header);
    out.extend_from_slice(iv);
    out.extend_from_slice(ciphertext_and_tag);
    out
}

/// The 16 bytes of a key id (`uuid` with dashes, or `mrk-` + 32 hex).
pub fn key_id_bytes(key_id: &str) -> Option<[u8; 16]> {
    let hex_part: String = key_id
        .strip_prefix("mrk-")
        .unwrap_or(key_id)
        .chars()
        .filter(|c| *c != '-')
        .collect();
    let v = hex::decode(hex_part).ok()?;
    v.try_into().ok()
}

/// The key id text for envelope bytes: `mrk-` form when `multi_region`, else a dashed UUID.
pub fn key_id_string(bytes: &[u8; 16], multi_region: bool) -> String {
    let h = hex::encode(bytes);
    if multi_region {
        format!("mrk-{h}")
    } else {
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kms_crypto::AesGcmKey;

    #[derive(serde::Deserialize)]
    struct Vector {
        description: String,
        key_hex: String,
        key_id: String,
        material_id_hex: String,
        context: BTreeMap<String, String>,
        plaintext_hex: String,
        envelope_hex: String,
    }

    /// Checks the checked-in vectors: each envelope opens to its plaintext under its key and
    /// context, its AAD is what the format above says, and one flipped bit anywhere fails.
    #[test]
    fn envelope_test_vectors() {
        let text = include_str!("../tests/vectors/envelope.json");
        let vectors: Vec<Vector> = serde_json::from_str(text).unwrap();
        assert!(!vectors.is_empty());
        for v in vectors {
            let key = AesGcmKey::new(&hex::decode(&v.key_hex).unwrap()).unwrap();
            let blob = hex::decode(&v.envelope_hex).unwrap();
            let env = parse(&blob).expect(&v.description);
            assert_eq!(
                env.key_id,
                key_id_bytes(&v.key_id).unwrap(),
                "{}",
                v.description
            );
            assert_eq!(hex::encode(env.material_id), v.material_id_hex);
            let aad = aad(env.header, Some(&v.context));
            let pt = key
                .open(env.iv, &aad, env.ciphertext_and_tag)
                .expect(&v.description);
            assert_eq!(hex::encode(&pt[..]), v.plaintext_hex, "{}", v.description);
            for i in 0..blob.len() {
                let mut bad = blob.clone();
                bad[i] ^= 0x01;
                let ok = parse(&bad).and_then(|e| {
                    key.open(
                        e.iv,
                        &super::aad(e.header, Some(&v.context)),
                        e.ciphertext_and_tag,
                    )
                    .ok()
                });
                assert!(
                    ok.is_none(),
                    "{}: flipping byte {i} still decrypted",
                    v.description
                );
            }
        }
    }

    #[test]
    fn context_is_order_insensitive_and_exact() {
        let h = header(&[1; 16], &[2; 16]);
        let a: BTreeMap<String, String> =
            [("a".into(), "1".into()), ("b".into(), "2".into())].into();
        let b: BTreeMap<String, String> =
            [("b".into(), "2".into()), ("a".into(), "1".into())].into();
        assert_eq!(aad(&h, Some(&a)), aad(&h, Some(&b)));
        let c: BTreeMap<String, String> = [("a".into(), "12".into())].into();
        let d: BTreeMap<String, String> = [("a1".into(), "2".into())].into();
        assert_ne!(aad(&h, Some(&c)), aad(&h, Some(&d)));
        assert_eq!(aad(&h, None), aad(&h, Some(&BTreeMap::new())));
    }

    #[test]
    fn key_id_round_trip() {
        let id = "1234abcd-12ab-34cd-56ef-1234567890ab";
        assert_eq!(key_id_string(&key_id_bytes(id).unwrap(), false), id);
        let mrk = "mrk-1234abcd12ab34cd56ef1234567890ab";
        assert_eq!(key_id_string(&key_id_bytes(mrk).unwrap(), true), mrk);
        assert!(key_id_bytes("nope").is_none());
    }
}
