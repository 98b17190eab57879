//! `kmsd audit query`: the records matching some filters; [`query_newest`]: the newest of them,
//! bounded, for kmsd's audit read API.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde_json::Value;

use crate::chain::list_files;
use crate::signed::SignedKind;

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
    /// `errorCode` equal to this; [`ANY_ERROR`] matches every failed call.
    pub error_code: Option<String>,
    /// Records of this account only: the caller's (`userIdentity.accountId`) or the owner of
    /// the resource (`recipientAccountId`).
    pub account: Option<String>,
    /// Records whose `eventName` is none of these.
    pub exclude_event_names: Vec<String>,
}

/// The [`QueryFilter::error_code`] that matches any failed call.
pub const ANY_ERROR: &str = "*";

fn matches(v: &Value, f: &QueryFilter) -> bool {
    let time = v["eventTime"].as_str().unwrap_or_default();
    f.since.as_deref().is_none_or(|s| time >= s)
        && f.until.as_deref().is_none_or(|u| time < u)
        && f.event_name
            .as_deref()
            .is_none_or(|e| v["eventName"].as_str() == Some(e))
        && !f
            .exclude_event_names
            .iter()
            .any(|e| v["eventName"].as_str() == Some(e))
        && f.principal
            .as_deref()
            .is_none_or(|p| v["userIdentity"]["arn"].as_str() == Some(p))
        && f.error_code
            .as_deref()
            .is_none_or(|e| match v["errorCode"].as_str() {
                Some(code) => e == ANY_ERROR || e == code,
                None => false,
            })
        && f.account.as_deref().is_none_or(|a| {
            v["userIdentity"]["accountId"].as_str() == Some(a)
                || v["recipientAccountId"].as_str() == Some(a)
        })
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
            if SignedKind::of_line(&v).is_none() && matches(&v, filter) {
                out.push(v);
            }
        }
    }
    Ok(out)
}

/// Longest line [`query_newest`] parses: well above the largest record kmsd writes
/// ([`crate::bound`]); longer lines can only come from a damaged file and are skipped.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// What [`query_newest`] found.
#[derive(Debug, Clone, Default)]
pub struct NewestRecords {
    /// The matching records, newest first, at most the limit asked for.
    pub records: Vec<Value>,
    /// Older files were left unread because the scan budget ran out: older matches may exist.
    pub scan_budget_exhausted: bool,
}

/// The newest `limit` records in `dir` matching `filter`, newest first.
///
/// Memory stays bounded whatever the trail's size: files are read newest first, one line (at
/// most [`MAX_LINE_BYTES`]) at a time, keeping at most `limit` matches; reading stops once
/// `limit` matches are found or `max_scan_bytes` of files were read (then
/// [`NewestRecords::scan_budget_exhausted`] is set). Lines that are not records (damaged,
/// half-written, too long) are skipped.
pub fn query_newest(
    dir: &Path,
    filter: &QueryFilter,
    limit: usize,
    max_scan_bytes: u64,
) -> Result<NewestRecords, String> {
    let mut out = NewestRecords::default();
    if limit == 0 {
        return Ok(out);
    }
    let mut scanned: u64 = 0;
    for path in list_files(dir).map_err(|e| e.to_string())?.iter().rev() {
        if scanned >= max_scan_bytes {
            out.scan_budget_exhausted = true;
            break;
        }
        let f = match File::open(path) {
            Ok(f) => f,
            // Removed by retention since it was listed: it holds only older records.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.to_string()),
        };
        // The newest matches of this file (its lines are in time order): at most the number
        // still wanted.
        let wanted = limit - out.records.len();
        let mut newest: VecDeque<Value> = VecDeque::with_capacity(wanted.min(1024));
        let mut reader = BufReader::new(f);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = (&mut reader)
                .take(MAX_LINE_BYTES as u64 + 1)
                .read_until(b'\n', &mut line)
                .map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            scanned = scanned.saturating_add(n as u64);
            if line.len() > MAX_LINE_BYTES {
                // Longer than any record kmsd writes (a damaged file): skipped, unread.
                let rest = reader.skip_until(b'\n').map_err(|e| e.to_string())?;
                scanned = scanned.saturating_add(rest as u64);
                continue;
            }
            // A line being written as we read, or not UTF-8 JSON: skipped (`verify` reports
            // damaged files; a read shows what it can).
            let Ok(v) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            if SignedKind::of_line(&v).is_none() && matches(&v, filter) {
                if newest.len() == wanted {
                    newest.pop_front();
                }
                newest.push_back(v);
            }
        }
        out.records.extend(newest.into_iter().rev());
        if out.records.len() >= limit {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn write_file(dir: &Path, n: u32, records: &[Value]) {
        let text: String = records.iter().map(|r| format!("{r}\n")).collect();
        std::fs::write(dir.join(format!("audit-{n:08}.jsonl")), text).unwrap();
    }

    fn record(i: u32, name: &str, error: Option<&str>, account: &str) -> Value {
        let mut v = json!({
            "eventTime": format!("2026-12-04T10:00:{i:02}Z"),
            "eventName": name,
            "userIdentity": {"arn": format!("arn:aws:iam::{account}:user/u"), "accountId": account},
            "recipientAccountId": account,
            "resources": [],
            "i": i,
        });
        if let Some(e) = error {
            v["errorCode"] = json!(e);
        }
        v
    }

    fn ids(r: &NewestRecords) -> Vec<u64> {
        r.records.iter().map(|v| v["i"].as_u64().unwrap()).collect()
    }

    #[test]
    fn newest_first_across_files_and_bounded_by_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let a = "111122223333";
        write_file(
            tmp.path(),
            1,
            &(0..5)
                .map(|i| record(i, "Encrypt", None, a))
                .collect::<Vec<_>>(),
        );
        write_file(
            tmp.path(),
            2,
            &(5..8)
                .map(|i| record(i, "Decrypt", None, a))
                .collect::<Vec<_>>(),
        );
        let all = QueryFilter::default();
        assert_eq!(
            ids(&query_newest(tmp.path(), &all, 4, u64::MAX).unwrap()),
            vec![7, 6, 5, 4]
        );
        assert_eq!(
            ids(&query_newest(tmp.path(), &all, 2, u64::MAX).unwrap()),
            vec![7, 6]
        );
        assert_eq!(
            ids(&query_newest(tmp.path(), &all, 100, u64::MAX).unwrap()).len(),
            8
        );
        let encrypts = QueryFilter {
            event_name: Some("Encrypt".into()),
            ..Default::default()
        };
        assert_eq!(
            ids(&query_newest(tmp.path(), &encrypts, 3, u64::MAX).unwrap()),
            vec![4, 3, 2]
        );
        assert!(query_newest(tmp.path(), &all, 0, u64::MAX)
            .unwrap()
            .records
            .is_empty());
    }

    #[test]
    fn filters_by_error_and_account() {
        let tmp = tempfile::tempdir().unwrap();
        write_file(
            tmp.path(),
            1,
            &[
                record(1, "Encrypt", None, "111122223333"),
                record(2, "Encrypt", Some("AccessDeniedException"), "111122223333"),
                record(
                    3,
                    "Decrypt",
                    Some("InvalidCiphertextException"),
                    "444455556666",
                ),
            ],
        );
        let any = QueryFilter {
            error_code: Some(ANY_ERROR.into()),
            ..Default::default()
        };
        assert_eq!(
            ids(&query_newest(tmp.path(), &any, 10, u64::MAX).unwrap()),
            vec![3, 2]
        );
        let denied = QueryFilter {
            error_code: Some("AccessDeniedException".into()),
            ..Default::default()
        };
        assert_eq!(
            ids(&query_newest(tmp.path(), &denied, 10, u64::MAX).unwrap()),
            vec![2]
        );
        let mine = QueryFilter {
            account: Some("111122223333".into()),
            ..Default::default()
        };
        assert_eq!(
            ids(&query_newest(tmp.path(), &mine, 10, u64::MAX).unwrap()),
            vec![2, 1]
        );
    }

    #[test]
    fn damaged_and_oversized_lines_are_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let a = "111122223333";
        let mut bytes = format!("{}\n", record(1, "Encrypt", None, a)).into_bytes();
        bytes.extend_from_slice(b"\xff\xfe not utf-8\n");
        bytes.extend_from_slice(&vec![b'x'; MAX_LINE_BYTES + 10]);
        bytes.push(b'\n');
        bytes.extend_from_slice(format!("{}\n", record(2, "Decrypt", None, a)).as_bytes());
        bytes.extend_from_slice(b"{\"eventTime\": \"2026-12-04T10:00:0"); // being written
        std::fs::write(tmp.path().join("audit-00000001.jsonl"), bytes).unwrap();
        let r = query_newest(tmp.path(), &QueryFilter::default(), 10, u64::MAX).unwrap();
        assert_eq!(ids(&r), vec![2, 1]);
    }

    #[test]
    fn scan_budget_stops_at_older_files() {
        let tmp = tempfile::tempdir().unwrap();
        let a = "111122223333";
        write_file(tmp.path(), 1, &[record(1, "Encrypt", None, a)]);
        write_file(tmp.path(), 2, &[record(2, "Decrypt", None, a)]);
        let encrypts = QueryFilter {
            event_name: Some("Encrypt".into()),
            ..Default::default()
        };
        let r = query_newest(tmp.path(), &encrypts, 10, 1).unwrap();
        assert!(r.records.is_empty());
        assert!(r.scan_budget_exhausted);
        let r = query_newest(tmp.path(), &encrypts, 10, u64::MAX).unwrap();
        assert_eq!(ids(&r), vec![1]);
        assert!(!r.scan_budget_exhausted);
    }
}
