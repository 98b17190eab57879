//! The audit signing key and the two kinds of signed line: checkpoints (the running chain head,
//! written every few seconds while records arrive) and digests (the end of a closed file).

use base64::Engine as _;
use kms_crypto::asymmetric::{self, AsymmetricSpec, SignInput, SigningAlgorithm};
use serde_json::{json, Value};

/// The audit signing key (ECDSA P-256): PKCS#8 private key and SPKI public key.
pub struct SigningKey {
    /// PKCS#8 DER (secret; zeroized on drop).
    pub pkcs8: kms_crypto::SecretBytes,
    /// SubjectPublicKeyInfo DER.
    pub spki: Vec<u8>,
}

impl SigningKey {
    /// A new random key.
    pub fn generate() -> Result<Self, String> {
        let pkcs8 = asymmetric::generate_private_key(AsymmetricSpec::EccNistP256)
            .map_err(|e| e.to_string())?;
        let spki = asymmetric::public_key_spki(AsymmetricSpec::EccNistP256, &pkcs8)
            .map_err(|e| e.to_string())?;
        Ok(SigningKey { pkcs8, spki })
    }

    /// A second handle on the same key (for the per-cluster logs).
    pub fn duplicate(&self) -> Self {
        SigningKey {
            pkcs8: self.pkcs8.clone(),
            spki: self.spki.clone(),
        }
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        asymmetric::sign(
            AsymmetricSpec::EccNistP256,
            &self.pkcs8,
            SigningAlgorithm::EcdsaSha256,
            SignInput::Raw(message),
        )
        .map_err(|e| e.to_string())
    }
}

/// Which kind of signed line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedKind {
    /// `kmsdCheckpoint`: the chain head at some point in a file still being written.
    Checkpoint,
    /// `kmsdDigest`: the last line of a closed file.
    Digest,
}

impl SignedKind {
    /// The JSON member holding the signed object on its line.
    pub fn member(self) -> &'static str {
        match self {
            SignedKind::Checkpoint => "kmsdCheckpoint",
            SignedKind::Digest => "kmsdDigest",
        }
    }

    /// The kind of a line, if it is a signed line.
    pub fn of_line(v: &Value) -> Option<(SignedKind, &Value)> {
        [SignedKind::Checkpoint, SignedKind::Digest]
            .into_iter()
            .find_map(|k| v.get(k.member()).map(|d| (k, d)))
    }

    /// Name used in anchors and messages.
    pub fn name(self) -> &'static str {
        match self {
            SignedKind::Checkpoint => "checkpoint",
            SignedKind::Digest => "digest",
        }
    }

    /// The kind named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "checkpoint" => Some(SignedKind::Checkpoint),
            "digest" => Some(SignedKind::Digest),
            _ => None,
        }
    }
}

/// What a signed line signs: its kind (domain separation), the file, the sequence range and
/// record count so far, the hash of the last record line, the hash of every byte of the file
/// before the line, and the time.
pub(crate) fn signed_message(kind: SignedKind, d: &Value) -> String {
    let (prefix, time) = match kind {
        SignedKind::Digest => ("kmsd-audit-digest-v1", "closedAt"),
        SignedKind::Checkpoint => ("kmsd-audit-checkpoint-v1", "time"),
    };
    format!(
        "{prefix}\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
        d["file"].as_str().unwrap_or_default(),
        d["firstSeq"],
        d["lastSeq"],
        d["records"],
        d["lastRecordSha256"].as_str().unwrap_or_default(),
        d["fileSha256"].as_str().unwrap_or_default(),
        d[time].as_str().unwrap_or_default(),
    )
}

/// The state of a file that a signed line covers.
pub(crate) struct Covered<'a> {
    /// File name.
    pub file: &'a str,
    /// First record's sequence number in the file.
    pub first_seq: u64,
    /// Last record's sequence number so far.
    pub last_seq: u64,
    /// Records in the file so far.
    pub records: u64,
    /// SHA-256 (hex) of the last record line.
    pub last_hash: &'a str,
    /// SHA-256 (hex) of every byte of the file before the signed line.
    pub file_sha256: String,
}

/// A complete signed line (with its trailing newline) for `covered`.
pub(crate) fn signed_line(
    key: &SigningKey,
    kind: SignedKind,
    covered: &Covered<'_>,
    time: &str,
) -> Result<Vec<u8>, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let time_member = match kind {
        SignedKind::Digest => "closedAt",
        SignedKind::Checkpoint => "time",
    };
    let mut d = json!({
        "version": 1,
        "file": covered.file,
        "firstSeq": covered.first_seq,
        "lastSeq": covered.last_seq,
        "records": covered.records,
        "lastRecordSha256": covered.last_hash,
        "fileSha256": covered.file_sha256,
        time_member: time,
        "publicKey": b64.encode(&key.spki),
    });
    let sig = key.sign(signed_message(kind, &d).as_bytes())?;
    d["signature"] = json!(b64.encode(sig));
    let mut line = serde_json::to_vec(&json!({ kind.member(): d })).map_err(|e| e.to_string())?;
    line.push(b'\n');
    Ok(line)
}

/// The public key a signed object names (SPKI DER).
pub(crate) fn embedded_key(d: &Value) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(d["publicKey"].as_str().unwrap_or_default())
        .map_err(|_| "bad publicKey".to_owned())
}

/// Checks the signature of a signed object with `spki`.
pub(crate) fn check_signature(kind: SignedKind, d: &Value, spki: &[u8]) -> Result<(), String> {
    let sig = base64::engine::general_purpose::STANDARD
        .decode(d["signature"].as_str().unwrap_or_default())
        .map_err(|_| "bad signature encoding".to_owned())?;
    let ok = asymmetric::verify(
        AsymmetricSpec::EccNistP256,
        spki,
        SigningAlgorithm::EcdsaSha256,
        SignInput::Raw(signed_message(kind, d).as_bytes()),
        &sig,
    )
    .map_err(|e| e.to_string())?;
    if ok {
        Ok(())
    } else {
        Err(format!("the {} signature is not valid", kind.name()))
    }
}
