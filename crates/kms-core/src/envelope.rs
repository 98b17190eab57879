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

/// Version byte of double-encrypted (external key store) envelopes.
pub const XKS_ENVELOPE_VERSION: u8 = 2;

/// A double-encrypted envelope of an external key store key:
///
/// ```text
/// 0x02 | key id (16) | material id (16) | inner iv (12) | xks iv len (1) | xks iv (12|16)
///      | xks tag (16) | xks metadata len (1) | xks metadata (<= 20) | xks ciphertext
/// ```
/// The inner layer is AES-256-GCM under kmsd's own material for the key (AAD = the 33 header
/// bytes || canonical context); its ciphertext-and-tag is the plaintext the external key
/// encrypts through the proxy, with AAD = the 33 header bytes only (the proxy never sees the
/// encryption context).
#[derive(Debug, PartialEq, Eq)]
pub struct XksEnvelope<'a> {
    /// The 33 header bytes.
    pub header: &'a [u8],
    /// Key id bytes.
    pub key_id: [u8; 16],
    /// Material id bytes.
    pub material_id: [u8; 16],
    /// IV of the inner layer.
    pub inner_iv: &'a [u8],
    /// IV the proxy returned.
    pub xks_iv: &'a [u8],
    /// Tag the proxy returned.
    pub xks_tag: &'a [u8],
    /// Ciphertext metadata the proxy returned.
    pub xks_metadata: &'a [u8],
    /// Ciphertext the proxy returned.
    pub xks_ciphertext: &'a [u8],
}

/// Parses a double-encrypted envelope.
pub fn parse_xks(blob: &[u8]) -> Option<XksEnvelope<'_>> {
    if blob.first() != Some(&XKS_ENVELOPE_VERSION) || blob.len() < HEADER_LEN + GCM_IV_LEN + 1 {
        return None;
    }
    let key_id: [u8; 16] = blob[1..17].try_into().ok()?;
    let material_id: [u8; 16] = blob[17..33].try_into().ok()?;
    let mut rest = &blob[HEADER_LEN..];
    let inner_iv = rest.get(..GCM_IV_LEN)?;
    rest = &rest[GCM_IV_LEN..];
    let iv_len = *rest.first()? as usize;
    if iv_len != 12 && iv_len != 16 {
        return None;
    }
    let xks_iv = rest.get(1..1 + iv_len)?;
    rest = &rest[1 + iv_len..];
    let xks_tag = rest.get(..GCM_TAG_LEN)?;
    rest = &rest[GCM_TAG_LEN..];
    let meta_len = *rest.first()? as usize;
    if meta_len > 20 {
        return None;
    }
    let xks_metadata = rest.get(1..1 + meta_len)?;
    let xks_ciphertext = &rest[1 + meta_len..];
    if xks_ciphertext.len() < GCM_TAG_LEN {
        return None;
    }
    Some(XksEnvelope {
        header: &blob[..HEADER_LEN],
        key_id,
        material_id,
        inner_iv,
        xks_iv,
        xks_tag,
        xks_metadata,
        xks_ciphertext,
    })
}

/// Assembles a double-encrypted envelope.
pub fn assemble_xks(
    header: &[u8],
    inner_iv: &[u8],
    xks_iv: &[u8],
    xks_tag: &[u8],
    xks_metadata: &[u8],
    xks_ciphertext: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        header.len()
            + inner_iv.len()
            + xks_iv.len()
            + xks_tag.len()
            + xks_metadata.len()
            + xks_ciphertext.len()
            + 2,
    );
    out.extend_from_slice(header);
    out.extend_from_slice(inner_iv);
    out.push(xks_iv.len() as u8);
    out.extend_from_slice(xks_iv);
    out.extend_from_slice(xks_tag);
    out.push(xks_metadata.len() as u8);
    out.extend_from_slice(xks_metadata);
    out.extend_from_slice(xks_ciphertext);
    out
}

/// The header bytes of a double-encrypted envelope.
pub fn xks_header(key_id: &[u8; 16], material_id: &[u8; 16]) -> [u8; HEADER_LEN] {
    let mut h = header(key_id, material_id);
    h[0] = XKS_ENVELOPE_VERSION;
    h
}

#[cfg(test)]
mod xks_tests {
    use super::*;

    #[test]
    fn xks_envelope_round_trip_and_rejects_garbage() {
        let h = xks_header(&[1; 16], &[2; 16]);
        let blob = assemble_xks(&h, &[3; 12], &[4; 16], &[5; 16], b"v1", &[6; 40]);
        let e = parse_xks(&blob).unwrap();
        assert_eq!(
            (e.inner_iv, e.xks_iv, e.xks_tag, e.xks_metadata),
            (&[3u8; 12][..], &[4u8; 16][..], &[5u8; 16][..], &b"v1"[..])
        );
        assert_eq!(e.xks_ciphertext, &[6u8; 40][..]);
        assert!(parse(&blob).is_none(), "a v2 envelope is not a v1 envelope");
        for cut in 0..blob.len() - 40 {
            assert!(parse_xks(&blob[..cut]).is_none(), "cut at {cut}");
        }
    }
}
