//! GetKeyLastUsage: the last successful cryptographic use of each key.
//!
//! Tracking adds no database write to a request: uses are recorded in memory
//! ([`KeyUsageTracker::record`]) and written to the store in batches
//! ([`Service::flush_key_usage`], every few seconds and at shutdown). A crash loses at most the
//! uses since the last flush: GetKeyLastUsage may then name an earlier use, never a later one.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use kms_types::*;

use super::{internal, ts, Service};
use crate::context::Caller;
use crate::store::WriteOp;

/// Store document kind of a key's last use (id `<region>/<key id>`); not logged as a change.
const DOC_KIND: &str = crate::store::KEY_LAST_USAGE_DOC;
/// Store meta value: when this store started tracking key use (ms).
const TRACKING_START: &str = "key_last_usage_tracking_start_ms";

/// One key's last successful cryptographic use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastUsage {
    /// The operation.
    pub operation: String,
    /// When (ms).
    pub time_ms: i64,
    /// The request id the caller saw.
    pub request_id: String,
    /// The audit record's eventID.
    pub event_id: String,
}

/// Last uses not yet written to the store, by (region, key id).
#[derive(Default)]
pub struct KeyUsageTracker {
    pending: Mutex<HashMap<(String, String), LastUsage>>,
}

impl KeyUsageTracker {
    /// Records a use (in memory only).
    pub fn record(&self, region: &str, key_id: &str, usage: LastUsage) {
        if let Ok(mut p) = self.pending.lock() {
            p.insert((region.to_owned(), key_id.to_owned()), usage);
        }
    }

    fn get(&self, region: &str, key_id: &str) -> Option<LastUsage> {
        self.pending
            .lock()
            .ok()
            .and_then(|p| p.get(&(region.to_owned(), key_id.to_owned())).cloned())
    }

    fn take(&self) -> HashMap<(String, String), LastUsage> {
        self.pending
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default()
    }

    fn put_back(&self, batch: HashMap<(String, String), LastUsage>) {
        if let Ok(mut p) = self.pending.lock() {
            for (k, v) in batch {
                // A newer use recorded meanwhile wins.
                p.entry(k).or_insert(v);
            }
        }
    }
}

fn doc_id(region: &str, key_id: &str) -> String {
    format!("{region}/{key_id}")
}

impl Service {
    /// Records a successful cryptographic use of the key `key_arn` by `operation` (only the
    /// model's KeyLastUsageTrackingOperation values; others are ignored).
    pub fn record_key_usage(&self, key_arn: &str, operation: &str, usage: (i64, &str, &str)) {
        if !KeyLastUsageTrackingOperation::VALUES.contains(&operation) {
            return;
        }
        // arn:aws:kms:<region>:<account>:key/<id>
        let mut parts = key_arn.splitn(6, ':');
        let (Some(region), Some(resource)) = (parts.nth(3), parts.nth(1)) else {
            return;
        };
        let Some(key_id) = resource.strip_prefix("key/") else {
            return;
        };
        let (time_ms, request_id, event_id) = usage;
        self.usage.record(
            region,
            key_id,
            LastUsage {
                operation: operation.to_owned(),
                time_ms,
                request_id: request_id.to_owned(),
                event_id: event_id.to_owned(),
            },
        );
    }

    /// Writes the recorded uses to the store in one transaction; returns how many. On failure
    /// they are kept for the next flush.
    pub async fn flush_key_usage(&self) -> Result<usize, KmsError> {
        let batch = self.usage.take();
        if batch.is_empty() {
            return Ok(0);
        }
        let mut ops = Vec::with_capacity(batch.len());
        for ((region, key_id), usage) in &batch {
            ops.push(WriteOp::PutDoc {
                kind: DOC_KIND.into(),
                id: doc_id(region, key_id),
                body: serde_json::to_string(usage).map_err(internal)?,
            });
        }
        let n = ops.len();
        match self.commit(ops).await {
            Ok(()) => Ok(n),
            Err(e) => {
                self.usage.put_back(batch);
                Err(e)
            }
        }
    }

    /// When this store started tracking key use: set once, the first time it is asked.
    pub(super) async fn tracking_start_ms(&self) -> Result<i64, KmsError> {
        if let Some(v) = self.store.get_meta(TRACKING_START).map_err(internal)? {
            return v.parse().map_err(internal);
        }
        let now = self.now_ms();
        // Through `commit`: the write runs off the async workers, like every other write.
        self.commit(vec![WriteOp::PutMeta {
            name: TRACKING_START.into(),
            value: now.to_string(),
        }])
        .await?;
        Ok(now)
    }

    /// The write that forgets a deleted key's last use.
    pub(crate) fn forget_key_usage(&self, region: &str, key_id: &str) -> WriteOp {
        WriteOp::DeleteDoc {
            kind: DOC_KIND.into(),
            id: doc_id(region, key_id),
        }
    }

    /// GetKeyLastUsage.
    pub async fn get_key_last_usage(
        &self,
        caller: &Caller,
        r: GetKeyLastUsageRequest,
    ) -> Result<GetKeyLastUsageResponse, KmsError> {
        let k = self.resolve_cached(caller, r.key_id.as_deref().unwrap_or_default(), false)?;
        let k = &k.record;
        let last = match self.usage.get(&k.region, &k.key_id) {
            Some(u) => Some(u),
            None => self
                .store
                .get_doc(DOC_KIND, &doc_id(&k.region, &k.key_id))
                .map_err(internal)?
                .map(|body| serde_json::from_str::<LastUsage>(&body))
                .transpose()
                .map_err(internal)?,
        };
        let start = self.tracking_start_ms().await?.max(k.created_ms);
        Ok(GetKeyLastUsageResponse {
            key_id: Some(k.arn()),
            key_creation_date: Some(ts(k.created_ms)),
            tracking_start_date: Some(ts(start)),
            key_last_usage: Some(
                last.map(|u| KeyLastUsageData {
                    operation: Some(u.operation),
                    timestamp: Some(ts(u.time_ms)),
                    kms_request_id: Some(u.request_id),
                    cloud_trail_event_id: Some(u.event_id),
                })
                .unwrap_or_default(),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_use_wins_and_a_failed_flush_keeps_newer_uses() {
        let t = KeyUsageTracker::default();
        let u = |op: &str, time_ms| LastUsage {
            operation: op.into(),
            time_ms,
            request_id: "r".into(),
            event_id: "e".into(),
        };
        t.record("us-east-1", "k", u("Encrypt", 1));
        t.record("us-east-1", "k", u("Decrypt", 2));
        assert_eq!(t.get("us-east-1", "k").unwrap().operation, "Decrypt");
        let batch = t.take();
        assert!(t.get("us-east-1", "k").is_none());
        t.record("us-east-1", "k", u("Sign", 3));
        t.put_back(batch);
        assert_eq!(t.get("us-east-1", "k").unwrap().operation, "Sign");
    }
}
