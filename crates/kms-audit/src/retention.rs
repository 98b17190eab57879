//! Retention: which old audit files may go, and the record that says they went.
//!
//! Only whole closed files are removed, oldest first, and only files that verify (chain and
//! signed digest, with the node's own key). Before removing them the writer appends a
//! `kmsdRetention` record listing each file's sequence range and last record hash and signs it
//! with a checkpoint; `verify` accepts a trail that starts after record 1 only if such a signed
//! record removed the file that ended just before its first record.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::verify::{check_file, ChainPoint, KeyState};

/// Most files one retention record lists (so that it stays far below the record size bound);
/// the writer repeats the removal until nothing more is due.
pub(crate) const MAX_FILES_PER_REMOVAL: usize = 64;

/// How long audit files are kept. Both limits may be set; a file goes when either selects it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Remove closed files whose digest is older than this many days.
    pub max_age_days: Option<u64>,
    /// Remove the oldest closed files while all audit files together exceed this many bytes.
    pub max_total_bytes: Option<u64>,
}

impl Retention {
    /// Whether nothing is ever removed.
    pub fn is_unlimited(&self) -> bool {
        self.max_age_days.is_none() && self.max_total_bytes.is_none()
    }
}

/// A closed file selected for removal, as verified.
pub(crate) struct Removable {
    /// Its path.
    pub path: PathBuf,
    /// Its name.
    pub name: String,
    /// Its size.
    pub bytes: u64,
    /// (first sequence, prev hash of the first record), if it has records.
    pub first: Option<ChainPoint>,
    /// Last sequence number and last record hash.
    pub last: ChainPoint,
    /// Its digest's `closedAt`.
    pub closed_at: String,
}

fn closed_at_ms(text: &str) -> Option<i64> {
    let t =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

fn size(path: &Path) -> Result<u64, String> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The oldest closed files `policy` removes (never `open`, the file being written, nor any
/// file after one that stays). Each is verified first; a file that does not verify stops the
/// selection with an error.
pub(crate) fn select(
    files: &[PathBuf],
    open: Option<&str>,
    policy: &Retention,
    now_ms: i64,
    keys: &mut KeyState,
) -> Result<Vec<Removable>, String> {
    let mut total: u64 = 0;
    for f in files {
        total = total.saturating_add(size(f)?);
    }
    let age_limit_ms = policy.max_age_days.map(|d| {
        now_ms.saturating_sub(i64::try_from(d.saturating_mul(86_400_000)).unwrap_or(i64::MAX))
    });
    let mut out = Vec::new();
    let mut point: Option<ChainPoint> = None;
    for path in files {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if Some(name.as_str()) == open || out.len() == MAX_FILES_PER_REMOVAL {
            break;
        }
        let over_size = policy.max_total_bytes.is_some_and(|max| total > max);
        let check = check_file(path, point.clone(), keys, None)
            .map_err(|e| format!("retention stopped: {e}"))?;
        let Some((_, digest)) = check.last_signed.filter(|_| check.closed) else {
            return Err(format!("retention stopped: {name} has no signed digest"));
        };
        let closed_at = digest["closedAt"].as_str().unwrap_or_default().to_owned();
        let too_old = match (age_limit_ms, closed_at_ms(&closed_at)) {
            (Some(limit), Some(t)) => t < limit,
            _ => false,
        };
        if !(over_size || too_old) {
            break;
        }
        let bytes = size(path)?;
        total = total.saturating_sub(bytes);
        if check.records > 0 {
            point = Some((check.last_seq + 1, check.last_hash.clone()));
        }
        out.push(Removable {
            path: path.clone(),
            name,
            bytes,
            first: check.first,
            last: (check.last_seq, check.last_hash),
            closed_at,
        });
    }
    Ok(out)
}

/// The `kmsdRetention` member describing a removal.
pub(crate) fn details(policy: &Retention, removed: &[Removable]) -> Value {
    json!({
        "policy": {"maxAgeDays": policy.max_age_days, "maxTotalBytes": policy.max_total_bytes},
        "removedFiles": removed.iter().map(|f| json!({
            "file": f.name,
            "bytes": f.bytes,
            "firstSeq": f.first.as_ref().map(|(s, _)| *s),
            "firstPrev": f.first.as_ref().map(|(_, p)| p.clone()),
            "lastSeq": f.last.0,
            "lastRecordSha256": f.last.1,
            "closedAt": f.closed_at,
        })).collect::<Vec<_>>(),
    })
}

/// The audit record of a removal (an `AwsServiceEvent` by kmsd itself).
pub(crate) fn record(details: &Value, now_ms: i64) -> Value {
    let event_id = kms_crypto::random_array::<16>()
        .map(hex::encode)
        .unwrap_or_default();
    json!({
        "eventVersion": "1.08",
        "userIdentity": {"type": "AWSService", "invokedBy": "kmsd"},
        "eventTime": crate::event_time(now_ms),
        "eventSource": "kmsd",
        "eventName": "AuditFilesRemoved",
        "awsRegion": "",
        "sourceIPAddress": "kmsd",
        "userAgent": "kmsd",
        "requestParameters": null,
        "responseElements": null,
        "eventID": event_id,
        "readOnly": false,
        "resources": [],
        "eventType": "AwsServiceEvent",
        "managementEvent": true,
        "eventCategory": "Management",
        "kmsdRetention": details,
    })
}
