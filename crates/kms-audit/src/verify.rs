//! `kmsd audit verify` and `kmsd audit query`.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use base64::Engine as _;
use kms_crypto::asymmetric::{self, AsymmetricSpec, SignInput, SigningAlgorithm};
use serde_json::Value;

use crate::chain::{digest_message, list_files, GENESIS};

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Files checked.
    pub files: usize,
    /// Records checked.
    pub records: u64,
    /// Sequence number of the last record.
    pub last_seq: u64,
    /// SHA-256 of the last record line (compare with an anchor kept elsewhere).
    pub last_hash: String,
    /// Whether the newest file is still open (no digest yet: its records are chained but not signed).
    pub open_file: Option<String>,
}

/// Verifies every audit file in `dir`: the hash chain and sequence across all files, each
/// closed file's signed digest (with `public_key`, the SPKI DER of the audit signing key; if
/// `None`, the key in the first digest is trusted and every later digest must use the same).
/// The error names the first file and line that do not fit.
pub fn verify_dir(dir: &Path, public_key: Option<&[u8]>) -> Result<VerifyReport, String> {
    let files = list_files(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut pinned: Option<Vec<u8>> = public_key.map(<[u8]>::to_vec);
    let mut prev = GENESIS.to_owned();
    let mut next_seq = 1u64;
    let mut records = 0u64;
    let mut open_file = None;
    for (i, path) in files.iter().enumerate() {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let f = File::open(path).map_err(|e| format!("{name}: {e}"))?;
        let mut hasher = kms_crypto::Sha256Context::new();
        let mut file_records = 0u64;
        let mut first_seq = next_seq;
        let mut digest_seen = false;
        for (n, line) in BufReader::new(f).split(b'\n').enumerate() {
            let lineno = n + 1;
            let line = line.map_err(|e| format!("{name}:{lineno}: {e}"))?;
            if digest_seen {
                return Err(format!(
                    "{name}:{lineno}: data after the file's signed digest"
                ));
            }
            let v: Value = serde_json::from_slice(&line).map_err(|_| {
                format!("{name}:{lineno}: not a JSON record (altered or truncated)")
            })?;
            if let Some(d) = v.get("kmsdDigest") {
                check_digest(
                    d,
                    &name,
                    lineno,
                    &hasher,
                    file_records,
                    first_seq,
                    next_seq - 1,
                    &prev,
                    &mut pinned,
                )?;
                digest_seen = true;
                continue;
            }
            let seq = v["kmsdChain"]["seq"]
                .as_u64()
                .ok_or_else(|| format!("{name}:{lineno}: record without kmsdChain.seq"))?;
            if seq != next_seq {
                return Err(format!("{name}:{lineno}: sequence {seq} where {next_seq} was expected (records removed or reordered)"));
            }
            if v["kmsdChain"]["prev"].as_str() != Some(prev.as_str()) {
                return Err(format!("{name}:{lineno}: record {seq} does not chain to the previous record (a record before it was altered, removed or reordered)"));
            }
            if file_records == 0 {
                first_seq = seq;
            }
            prev = hex::encode(kms_crypto::sha256(&line));
            hasher.update(&line);
            hasher.update(b"\n");
            next_seq += 1;
            file_records += 1;
            records += 1;
        }
        if !digest_seen {
            if i + 1 == files.len() {
                open_file = Some(name);
            } else {
                return Err(format!(
                    "{name}: closed file without a signed digest (truncated or altered)"
                ));
            }
        }
    }
    Ok(VerifyReport {
        files: files.len(),
        records,
        last_seq: next_seq - 1,
        last_hash: prev,
        open_file,
    })
}

#[allow(clippy::too_many_arguments)]
fn check_digest(
    d: &Value,
    name: &str,
    lineno: usize,
    hasher: &kms_crypto::Sha256Context,
    file_records: u64,
    first_seq: u64,
    last_seq: u64,
    last_hash: &str,
    pinned: &mut Option<Vec<u8>>,
) -> Result<(), String> {
    let at = format!("{name}:{lineno}");
    let file_sha = hex::encode(hasher.clone().finish());
    if d["file"].as_str() != Some(name) {
        return Err(format!(
            "{at}: the digest belongs to file {} (files renamed or swapped)",
            d["file"]
        ));
    }
    if d["fileSha256"].as_str() != Some(file_sha.as_str()) {
        return Err(format!(
            "{at}: the file's contents do not match its signed digest"
        ));
    }
    if d["records"].as_u64() != Some(file_records)
        || (file_records > 0 && d["firstSeq"].as_u64() != Some(first_seq))
        || d["lastSeq"].as_u64() != Some(last_seq)
    {
        return Err(format!(
            "{at}: record count or sequence range differs from the signed digest"
        ));
    }
    if d["lastRecordSha256"].as_str() != Some(last_hash) {
        return Err(format!(
            "{at}: last record hash differs from the signed digest"
        ));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64
        .decode(d["publicKey"].as_str().unwrap_or_default())
        .map_err(|_| format!("{at}: bad publicKey"))?;
    match pinned {
        Some(p) if *p != key => {
            return Err(format!(
                "{at}: digest signed by a different key than the audit signing key"
            ))
        }
        Some(_) => {}
        None => *pinned = Some(key.clone()),
    }
    let sig = b64
        .decode(d["signature"].as_str().unwrap_or_default())
        .map_err(|_| format!("{at}: bad signature encoding"))?;
    let ok = asymmetric::verify(
        AsymmetricSpec::EccNistP256,
        &key,
        SigningAlgorithm::EcdsaSha256,
        SignInput::Raw(digest_message(d).as_bytes()),
        &sig,
    )
    .map_err(|e| format!("{at}: {e}"))?;
    if !ok {
        return Err(format!("{at}: the digest signature is not valid"));
    }
    Ok(())
}

/// Filters for [`query`]; every given filter must match.
#[derive(Debug, Clone, Default)]
pub struct QueryFilter {
    /// `eventTime` >= this (ISO-8601, compared as text, which orders correctly).
    pub since: Option<String>,
    /// `eventTime` < this.
    pub until: Option<String>,
    /// A resource ARN ending with this (key id or full ARN).
    pub key: Option<String>,
    /// `userIdentity.arn` equal to this.
    pub principal: Option<String>,
    /// `eventName` equal to this.
    pub event_name: Option<String>,
}

fn matches(v: &Value, f: &QueryFilter) -> bool {
    let time = v["eventTime"].as_str().unwrap_or_default();
    f.since.as_deref().is_none_or(|s| time >= s)
        && f.until.as_deref().is_none_or(|u| time < u)
        && f.event_name
            .as_deref()
            .is_none_or(|e| v["eventName"].as_str() == Some(e))
        && f.principal
            .as_deref()
            .is_none_or(|p| v["userIdentity"]["arn"].as_str() == Some(p))
        && f.key.as_deref().is_none_or(|k| {
            v["resources"].as_array().is_some_and(|rs| {
                rs.iter()
                    .any(|r| r["ARN"].as_str().is_some_and(|a| a.ends_with(k)))
            })
        })
}

/// Records in `dir` matching `filter`, in order.
pub fn query(dir: &Path, filter: &QueryFilter) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for path in list_files(dir).map_err(|e| e.to_string())? {
        let f = File::open(&path).map_err(|e| e.to_string())?;
        for line in BufReader::new(f).lines() {
            let line = line.map_err(|e| e.to_string())?;
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if v.get("kmsdDigest").is_none() && matches(&v, filter) {
                out.push(v);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{AuditFileSet, SigningKey};
    use serde_json::json;

    fn key_copy(k: &SigningKey) -> SigningKey {
        SigningKey {
            pkcs8: k.pkcs8.clone(),
            spki: k.spki.clone(),
        }
    }

    /// Five records: three in a closed file, two in the open one. Returns the signing key.
    fn write_sample(dir: &Path) -> SigningKey {
        let key = SigningKey::generate().unwrap();
        let mut set = AuditFileSet::open(dir, key_copy(&key), 0).unwrap();
        for i in 0..5 {
            set.append(&mut [json!({"eventName": "Encrypt", "eventTime": format!("2026-01-01T00:00:0{i}Z"), "resources": [{"ARN": "arn:aws:kms:us-east-1:111122223333:key/k1"}]})], 0).unwrap();
            if i == 2 {
                set.close_current(1).unwrap();
            }
        }
        set.sync().unwrap();
        key
    }

    #[test]
    fn intact_trail_verifies_and_open_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let key = write_sample(dir.path());
        let r = verify_dir(dir.path(), Some(&key.spki)).unwrap();
        assert_eq!((r.files, r.records, r.last_seq), (2, 5, 5));
        assert_eq!(r.open_file.as_deref(), Some("audit-00000002.jsonl"));
        let q = query(
            dir.path(),
            &QueryFilter {
                since: Some("2026-01-01T00:00:03Z".into()),
                key: Some("k1".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn reopening_closes_a_crashed_file_and_continues_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let key = write_sample(dir.path());
        let mut set = AuditFileSet::open(dir.path(), key_copy(&key), 5).unwrap();
        assert_eq!(set.next_seq(), 6);
        set.append(&mut [json!({"eventName": "Decrypt"})], 6)
            .unwrap();
        set.close_current(7).unwrap();
        let r = verify_dir(dir.path(), Some(&key.spki)).unwrap();
        assert_eq!((r.files, r.records, r.open_file), (3, 6, None));
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn tampering_is_located() {
        let dir = tempfile::tempdir().unwrap();
        let spki = write_sample(dir.path()).spki;
        let first = dir.path().join("audit-00000001.jsonl");
        let original = lines(&first);

        // Altered record.
        let mut l = original.clone();
        l[1] = l[1].replace("Encrypt", "Decrypt");
        std::fs::write(&first, l.join("\n") + "\n").unwrap();
        let e = verify_dir(dir.path(), Some(&spki)).unwrap_err();
        assert!(e.starts_with("audit-00000001.jsonl:3:"), "{e}");

        // Removed record.
        let mut l = original.clone();
        l.remove(1);
        std::fs::write(&first, l.join("\n") + "\n").unwrap();
        let e = verify_dir(dir.path(), Some(&spki)).unwrap_err();
        assert!(
            e.starts_with("audit-00000001.jsonl:2: sequence 3 where 2"),
            "{e}"
        );

        // Reordered records.
        let mut l = original.clone();
        l.swap(0, 1);
        std::fs::write(&first, l.join("\n") + "\n").unwrap();
        let e = verify_dir(dir.path(), Some(&spki)).unwrap_err();
        assert!(e.starts_with("audit-00000001.jsonl:1:"), "{e}");

        // Re-chained forgery: the chain fits but the signed digest does not.
        std::fs::write(&first, original.join("\n") + "\n").unwrap();
        verify_dir(dir.path(), Some(&spki)).unwrap();
        let other = SigningKey::generate().unwrap();
        let e = verify_dir(dir.path(), Some(&other.spki)).unwrap_err();
        assert!(e.contains("different key"), "{e}");

        // Whole closed file removed.
        std::fs::remove_file(&first).unwrap();
        let e = verify_dir(dir.path(), Some(&spki)).unwrap_err();
        assert!(
            e.starts_with("audit-00000002.jsonl:1: sequence 4 where 1"),
            "{e}"
        );
    }
}
