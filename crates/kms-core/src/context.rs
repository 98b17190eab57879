//! Who is calling, and what time it is.

use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};

/// The authenticated caller of one request, as SigV4 verification established it.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// Caller's account (12 digits).
    pub account: String,
    /// Region from the SigV4 credential scope.
    pub region: String,
    /// Principal ARN.
    pub principal_arn: String,
    /// Unique principal id.
    pub user_id: String,
    /// Access key id used to sign.
    pub access_key_id: String,
    /// Client address.
    pub source_ip: Option<IpAddr>,
    /// This request's id (`x-amzn-RequestId`).
    pub request_id: String,
    /// Whether the request came over TLS (`aws:SecureTransport`).
    pub secure_transport: bool,
    /// The request parameters (set by dispatch), for condition keys such as
    /// `kms:EncryptionContext:*` and `aws:RequestTag/*`.
    pub request: Option<std::sync::Arc<serde_json::Value>>,
    /// Internal callers (tests of other layers, operator tools) that bypass authorisation.
    pub skip_authorization: bool,
    /// The operation being served (set by dispatch; the XKS requestMetadata carries it).
    pub operation: String,
    /// ARNs of the keys this request touched (for the audit record's `resources`).
    pub resources: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Caller {
    /// Notes that this request touched the key `arn`.
    pub fn touch(&self, arn: String) {
        if let Ok(mut r) = self.resources.lock() {
            if !r.contains(&arn) {
                r.push(arn);
            }
        }
    }

    /// The key ARNs this request touched.
    pub fn touched(&self) -> Vec<String> {
        self.resources.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// A source of the current time, so tests can move time forward.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// The system clock plus an offset that tests (and `--dev` mode) can advance.
#[derive(Debug, Default)]
pub struct ManualClock {
    offset_ms: AtomicI64,
}

impl ManualClock {
    /// Moves this clock forward by `ms`.
    pub fn advance_ms(&self, ms: i64) {
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        SystemClock.now_ms() + self.offset_ms.load(Ordering::SeqCst)
    }
}

/// Receives lifecycle events kmsd performs on its own (not in answer to a request), for the
/// audit trail.
pub trait EventSink: Send + Sync {
    /// A key was deleted at the end of its waiting period.
    fn key_deleted(&self, key_arn: &str, account: &str, region: &str, time_ms: i64);
    /// A key's material was rotated automatically on its schedule.
    fn key_rotated(&self, key_arn: &str, account: &str, region: &str, time_ms: i64);
    /// Imported key material reached its `ValidTo` and was deleted.
    fn key_material_expired(&self, key_arn: &str, account: &str, region: &str, time_ms: i64);
}

/// Receives each HSM cluster's own audit events (an audit path independent of kmsd's).
pub trait HsmAuditSink: Send + Sync {
    /// One event of cluster `cluster_id`.
    fn hsm_event(&self, cluster_id: &str, event: &str, details: serde_json::Value);
}
