//! `kmsd audit verify`: the hash chain, every signed checkpoint and digest, retention gaps and
//! anchors.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde_json::{json, Value};

use crate::chain::{list_files, GENESIS};
use crate::signed::{check_signature, embedded_key, SignedKind};

/// Which public key signed lines must verify with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustedKey {
    /// The audit signing public key (SPKI DER), obtained from the node out of band.
    Pinned(Vec<u8>),
    /// Whatever key the first signed line names (every later one must use the same). This only
    /// shows that the trail is self-consistent: anyone able to write the audit directory can
    /// replace the whole trail with one signed by their own key.
    Embedded,
}

/// What to check.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// The key signed lines must verify with.
    pub key: TrustedKey,
    /// An anchor kept elsewhere (see [`Anchor`]): the trail must still hold its record.
    pub anchor: Option<Anchor>,
    /// Fail if the newest file has records not covered by any signed line whose `eventTime` is
    /// older than this (ms) at `now_ms`. A running kmsd signs records within its checkpoint
    /// interval and a restart signs what a crash left, so old unsigned records mean that signed
    /// lines were removed (or that kmsd crashed and has not been restarted).
    pub max_unsigned_age_ms: Option<u64>,
    /// The time to judge `max_unsigned_age_ms` at (ms since the epoch).
    pub now_ms: i64,
}

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyReport {
    /// Files checked.
    pub files: usize,
    /// Records checked.
    pub records: u64,
    /// Sequence number of the first record present (above 1 once retention removed files).
    pub first_seq: u64,
    /// Sequence number of the last record.
    pub last_seq: u64,
    /// SHA-256 of the last record line (compare with an anchor kept elsewhere).
    pub last_hash: String,
    /// The newest file, if it is still open (no digest yet).
    pub open_file: Option<String>,
    /// Records after the last signed checkpoint or digest: chained but signed by nothing yet,
    /// so whoever can write the files can rewrite them undetected.
    pub unprotected_records: u64,
    /// The newest signed line (kind, signed object): what `kmsd audit anchor` prints.
    pub last_signed: Option<(SignedKind, Value)>,
    /// The public key the signed lines verified with (SPKI DER).
    pub public_key: Option<Vec<u8>>,
}

/// A signed checkpoint or digest taken out of the trail and kept elsewhere: it pins the record
/// with sequence number `lastSeq` to the hash `lastRecordSha256`, and with it (through the hash
/// chain) every record before it.
#[derive(Debug, Clone, PartialEq)]
pub struct Anchor {
    /// Checkpoint or digest.
    pub kind: SignedKind,
    /// The signed object, as in the trail.
    pub signed: Value,
}

impl Anchor {
    /// The one-line JSON form: `{"kmsdAnchor":{"kind":"checkpoint","seq":N,"sha256":H,"signed":{...}}}`.
    pub fn to_line(&self) -> String {
        json!({"kmsdAnchor": {
            "kind": self.kind.name(),
            "seq": self.signed["lastSeq"],
            "sha256": self.signed["lastRecordSha256"],
            "signed": self.signed,
        }})
        .to_string()
    }

    /// Parses [`Anchor::to_line`]'s output.
    pub fn parse(text: &str) -> Result<Self, String> {
        let v: Value =
            serde_json::from_str(text.trim()).map_err(|e| format!("not an anchor: {e}"))?;
        let a = &v["kmsdAnchor"];
        let kind = a["kind"]
            .as_str()
            .and_then(SignedKind::from_name)
            .ok_or("not an anchor: no kmsdAnchor.kind")?;
        let signed = a["signed"].clone();
        if signed["lastSeq"].as_u64().is_none() || signed["lastRecordSha256"].as_str().is_none() {
            return Err("not an anchor: no signed sequence and hash".into());
        }
        Ok(Anchor { kind, signed })
    }

    /// Sequence number of the pinned record.
    pub fn seq(&self) -> u64 {
        self.signed["lastSeq"].as_u64().unwrap_or_default()
    }

    /// SHA-256 (hex) of the pinned record line.
    pub fn sha256(&self) -> &str {
        self.signed["lastRecordSha256"].as_str().unwrap_or_default()
    }
}

/// The key signed lines are checked with, learned from the first one in embedded mode.
pub(crate) struct KeyState {
    key: Option<Vec<u8>>,
    trust_embedded: bool,
}

impl KeyState {
    /// Signed lines must verify with `key`.
    pub(crate) fn new(key: &TrustedKey) -> Self {
        match key {
            TrustedKey::Pinned(k) => KeyState {
                key: Some(k.clone()),
                trust_embedded: false,
            },
            TrustedKey::Embedded => KeyState {
                key: None,
                trust_embedded: true,
            },
        }
    }

    fn check(&mut self, kind: SignedKind, d: &Value) -> Result<(), String> {
        let named = embedded_key(d)?;
        let key = match &self.key {
            Some(k) if *k != named => {
                return Err(format!(
                    "{} signed by a different key than the audit signing key",
                    kind.name()
                ))
            }
            Some(k) => k.clone(),
            None if self.trust_embedded => {
                self.key = Some(named.clone());
                named
            }
            None => return Err("no public key to check signatures with".into()),
        };
        check_signature(kind, d, &key)
    }
}

/// One file, checked.
pub(crate) struct FileCheck {
    /// Sequence number and `prev` of its first record.
    pub first: Option<(u64, String)>,
    /// Sequence number of its last record (or of the record before it, if it has none).
    pub last_seq: u64,
    /// Hash of its last record line (or of the record before it).
    pub last_hash: String,
    /// Records in it.
    pub records: u64,
    /// Whether it ends with its signed digest.
    pub closed: bool,
    /// Its newest signed line.
    pub last_signed: Option<(SignedKind, Value)>,
    /// Records after its newest signed line.
    pub unprotected: u64,
    /// The first of those: (line number, sequence number, `eventTime`).
    pub first_unprotected: Option<(usize, u64, Option<String>)>,
    /// Retention records in it: (sequence number, `kmsdRetention` member).
    pub retention: Vec<(u64, Value)>,
    /// The hash of the record with the watched sequence number, if it is in this file.
    pub watched_hash: Option<String>,
}

/// Where the previous file left the chain: next sequence number and last record hash.
pub(crate) type ChainPoint = (u64, String);

/// Checks one file: records follow `start` (or, if `None`, whatever the first record says),
/// each record chains to the one before, every signed line matches the file so far and verifies
/// with `keys`, and nothing follows a digest. `watch` names a sequence number whose record
/// hash to return.
pub(crate) fn check_file(
    path: &Path,
    start: Option<ChainPoint>,
    keys: &mut KeyState,
    watch: Option<u64>,
) -> Result<FileCheck, String> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    let f = File::open(path).map_err(|e| format!("{name}: {e}"))?;
    let mut hasher = kms_crypto::Sha256Context::new();
    let mut expect = start;
    let mut check = FileCheck {
        first: None,
        last_seq: expect.as_ref().map_or(0, |(n, _)| n.saturating_sub(1)),
        last_hash: expect
            .as_ref()
            .map_or_else(|| GENESIS.to_owned(), |(_, h)| h.clone()),
        records: 0,
        closed: false,
        last_signed: None,
        unprotected: 0,
        first_unprotected: None,
        retention: Vec::new(),
        watched_hash: None,
    };
    for (n, line) in BufReader::new(f).split(b'\n').enumerate() {
        let at = format!("{name}:{}", n + 1);
        let line = line.map_err(|e| format!("{at}: {e}"))?;
        if check.closed {
            return Err(format!("{at}: data after the file's signed digest"));
        }
        let v: Value = serde_json::from_slice(&line)
            .map_err(|_| format!("{at}: not a JSON record (altered or truncated)"))?;
        if let Some((kind, d)) = SignedKind::of_line(&v) {
            let file_sha = hex::encode(hasher.clone().finish());
            check_signed(kind, d, &name, &file_sha, &check)
                .and_then(|()| keys.check(kind, d))
                .map_err(|e| format!("{at}: {e}"))?;
            check.closed = kind == SignedKind::Digest;
            check.last_signed = Some((kind, d.clone()));
            check.unprotected = 0;
            check.first_unprotected = None;
            hasher.update(&line);
            hasher.update(b"\n");
            continue;
        }
        let seq = v["kmsdChain"]["seq"]
            .as_u64()
            .ok_or_else(|| format!("{at}: record without kmsdChain.seq"))?;
        let prev = v["kmsdChain"]["prev"].as_str().unwrap_or_default();
        if let Some((next_seq, expected_prev)) = &expect {
            if seq != *next_seq {
                return Err(format!("{at}: sequence {seq} where {next_seq} was expected (records removed or reordered)"));
            }
            if prev != expected_prev {
                return Err(format!("{at}: record {seq} does not chain to the previous record (a record before it was altered, removed or reordered)"));
            }
        }
        if check.first.is_none() {
            check.first = Some((seq, prev.to_owned()));
        }
        let hash = hex::encode(kms_crypto::sha256(&line));
        if watch == Some(seq) {
            check.watched_hash = Some(hash.clone());
        }
        if let Some(r) = v.get("kmsdRetention") {
            check.retention.push((seq, r.clone()));
        }
        hasher.update(&line);
        hasher.update(b"\n");
        check.last_seq = seq;
        check.last_hash = hash.clone();
        check.records += 1;
        check.unprotected += 1;
        if check.first_unprotected.is_none() {
            let time = v["eventTime"].as_str().map(str::to_owned);
            check.first_unprotected = Some((n + 1, seq, time));
        }
        expect = Some((seq + 1, hash));
    }
    Ok(check)
}

/// Whether a signed line describes the file as read so far.
fn check_signed(
    kind: SignedKind,
    d: &Value,
    name: &str,
    file_sha: &str,
    so_far: &FileCheck,
) -> Result<(), String> {
    let what = kind.name();
    if d["file"].as_str() != Some(name) {
        return Err(format!(
            "the {what} belongs to file {} (files renamed or swapped)",
            d["file"]
        ));
    }
    if d["fileSha256"].as_str() != Some(file_sha) {
        return Err(format!(
            "the file's contents do not match its signed {what}"
        ));
    }
    let first_seq = so_far.first.as_ref().map(|(s, _)| *s);
    if d["records"].as_u64() != Some(so_far.records)
        || (so_far.records > 0 && d["firstSeq"].as_u64() != first_seq)
        || d["lastSeq"].as_u64() != Some(so_far.last_seq)
    {
        return Err(format!(
            "record count or sequence range differs from the signed {what}"
        ));
    }
    if d["lastRecordSha256"].as_str() != Some(so_far.last_hash.as_str()) {
        return Err(format!("last record hash differs from the signed {what}"));
    }
    Ok(())
}

/// Verifies every audit file in `dir` (see [`verify`]); `public_key` is the SPKI DER of the
/// audit signing key, or `None` to trust the key the first signed line names.
pub fn verify_dir(dir: &Path, public_key: Option<&[u8]>) -> Result<VerifyReport, String> {
    verify(
        dir,
        &VerifyOptions {
            key: public_key.map_or(TrustedKey::Embedded, |k| TrustedKey::Pinned(k.to_vec())),
            anchor: None,
            max_unsigned_age_ms: None,
            now_ms: 0,
        },
    )
}

/// Verifies every audit file in `dir`: the hash chain and sequence across all files, every
/// signed checkpoint and digest against the file and the trusted key, a digest at the end of
/// every file but the newest, a start after record 1 only where a signed retention record
/// removed the files before, and the anchor's record if one is given. The error names the
/// first file and line that do not fit.
pub fn verify(dir: &Path, options: &VerifyOptions) -> Result<VerifyReport, String> {
    let files = list_files(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut keys = KeyState::new(&options.key);
    let watch = options.anchor.as_ref().map(Anchor::seq);
    let mut point: Option<ChainPoint> = None;
    let mut first: Option<(u64, String)> = None;
    let mut first_file = String::new();
    let mut report = VerifyReport {
        files: files.len(),
        records: 0,
        first_seq: 0,
        last_seq: 0,
        last_hash: GENESIS.to_owned(),
        open_file: None,
        unprotected_records: 0,
        last_signed: None,
        public_key: None,
    };
    let mut retention = Vec::new();
    let mut watched_hash = None;
    for (i, path) in files.iter().enumerate() {
        let c = check_file(path, point.clone(), &mut keys, watch)?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if first.is_none() {
            first = c.first.clone();
            first_file.clone_from(&name);
        }
        if c.records > 0 {
            point = Some((c.last_seq + 1, c.last_hash.clone()));
            report.last_seq = c.last_seq;
            report.last_hash = c.last_hash.clone();
        }
        report.records += c.records;
        retention.extend(c.retention);
        watched_hash = watched_hash.or(c.watched_hash);
        if c.last_signed.is_some() {
            report.last_signed = c.last_signed;
        }
        if !c.closed {
            if i + 1 == files.len() {
                if let (Some(max), Some(first)) =
                    (options.max_unsigned_age_ms, &c.first_unprotected)
                {
                    check_unsigned_age(&name, first, max, options.now_ms)?;
                }
                report.open_file = Some(name);
                report.unprotected_records = c.unprotected;
            } else {
                return Err(format!(
                    "{name}: closed file without a signed digest (truncated or altered)"
                ));
            }
        }
    }
    let signed_through = report
        .last_signed
        .as_ref()
        .and_then(|(_, d)| d["lastSeq"].as_u64())
        .unwrap_or(0);
    if let Some((first_seq, first_prev)) = &first {
        report.first_seq = *first_seq;
        if *first_seq != 1 || first_prev != GENESIS {
            check_retention_gap(*first_seq, first_prev, &retention, signed_through)
                .map_err(|e| format!("{first_file}:1: {e}"))?;
        }
    }
    report.public_key = keys.key.clone();
    if let Some(anchor) = &options.anchor {
        check_anchor(anchor, &mut keys, &report, watched_hash.as_deref())?;
    }
    Ok(report)
}

/// Unsigned records must be recent: kmsd signs them within its checkpoint interval.
fn check_unsigned_age(
    name: &str,
    (lineno, seq, time): &(usize, u64, Option<String>),
    max_ms: u64,
    now_ms: i64,
) -> Result<(), String> {
    let at = time.as_deref().and_then(|t| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
    });
    let age_ms = at.map(|t| now_ms.saturating_sub((t.unix_timestamp_nanos() / 1_000_000) as i64));
    match age_ms {
        Some(age) if age <= i64::try_from(max_ms).unwrap_or(i64::MAX) => Ok(()),
        _ => Err(format!(
            "{name}:{lineno}: record {seq} (eventTime {}) and every record after it are covered by no signed checkpoint, and kmsd signs records within seconds: signed lines were removed, or kmsd stopped without closing the file (a crash; starting kmsd again signs it)",
            time.as_deref().unwrap_or("missing")
        )),
    }
}

/// A trail starting at record `first_seq` is whole only if a retention record, itself covered
/// by a signed line, removed the file that ended just before it.
fn check_retention_gap(
    first_seq: u64,
    first_prev: &str,
    retention: &[(u64, Value)],
    signed_through: u64,
) -> Result<(), String> {
    let accounted = retention
        .iter()
        .filter(|(seq, _)| *seq <= signed_through)
        .flat_map(|(_, r)| r["removedFiles"].as_array().into_iter().flatten())
        .any(|f| {
            f["lastSeq"].as_u64() == Some(first_seq - 1)
                && f["lastRecordSha256"].as_str() == Some(first_prev)
        });
    if accounted {
        Ok(())
    } else {
        Err(format!(
            "the trail starts at record {first_seq}: records 1..{} are missing and no signed retention record removed them",
            first_seq - 1
        ))
    }
}

fn check_anchor(
    anchor: &Anchor,
    keys: &mut KeyState,
    report: &VerifyReport,
    watched_hash: Option<&str>,
) -> Result<(), String> {
    keys.check(anchor.kind, &anchor.signed)
        .map_err(|e| format!("anchor: {e}"))?;
    let seq = anchor.seq();
    match watched_hash {
        Some(h) if h == anchor.sha256() => Ok(()),
        Some(_) => Err(format!(
            "anchor: record {seq} differs from the anchored one (history rewritten)"
        )),
        None if report.records == 0 || seq > report.last_seq => Err(format!(
            "anchor: the trail ends at record {} but the anchor pins record {seq} (records cut off the end, or files removed)",
            report.last_seq
        )),
        None => Err(format!(
            "anchor: record {seq} was removed by retention (the trail starts at {}); check a newer anchor",
            report.first_seq
        )),
    }
}

/// Verifies the trail and returns its newest signed line as an anchor to keep elsewhere.
pub fn anchor(dir: &Path, key: &TrustedKey) -> Result<Anchor, String> {
    let report = verify(
        dir,
        &VerifyOptions {
            key: key.clone(),
            anchor: None,
            max_unsigned_age_ms: None,
            now_ms: 0,
        },
    )?;
    let (kind, signed) = report
        .last_signed
        .ok_or("the trail has no signed checkpoint or digest yet (kmsd signs new records within a second or so)")?;
    Ok(Anchor { kind, signed })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::AuditFileSet;
    use crate::query::{query, QueryFilter};
    use crate::signed::SigningKey;
    use serde_json::json;

    fn key_copy(k: &SigningKey) -> SigningKey {
        k.duplicate()
    }

    /// Five records: three in a closed file, two in the open one. Returns the signing key.
    fn write_sample(dir: &Path) -> SigningKey {
        let key = SigningKey::generate().unwrap();
        let mut set = AuditFileSet::open(dir, key_copy(&key), 0).unwrap();
        for i in 0..5 {
            set.append(&[json!({"eventName": "Encrypt", "eventTime": format!("2026-01-01T00:00:0{i}Z"), "resources": [{"ARN": "arn:aws:kms:us-east-1:111122223333:key/k1"}]}).into()], 0).unwrap();
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
        set.append(&[json!({"eventName": "Decrypt"}).into()], 6)
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
        assert!(
            e.starts_with("audit-00000001.jsonl:2: sequence 1 where 3"),
            "{e}"
        );

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
            e.starts_with("audit-00000002.jsonl:1: the trail starts at record 4"),
            "{e}"
        );
    }
}
