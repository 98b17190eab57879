//! `kmsd audit query`: the records matching some filters.

use std::fs::File;
use std::io::{BufRead, BufReader};
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
            if SignedKind::of_line(&v).is_none() && matches(&v, filter) {
                out.push(v);
            }
        }
    }
    Ok(out)
}
