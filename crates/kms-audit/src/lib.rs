//! kmsd's audit trail: one CloudTrail-format record per API call (and per lifecycle event kmsd
//! performs itself), written as JSON lines.
//!
//! Tamper evidence: every record carries `kmsdChain: {seq, prev}` where `prev` is the SHA-256
//! of the previous record line (across files), and every closed file ends with a digest line
//! signed (ECDSA P-256) by the audit signing key, covering the file's bytes, record count and
//! last record hash. [`verify_dir`] checks all of it and names the first file and line that
//! do not fit.

mod chain;
mod record;
mod verify;
mod writer;

pub use chain::{AuditFileSet, SigningKey};
pub use record::{event_time, redact_request, ApiCallRecord, ServiceEventRecord};
pub use verify::{query, verify_dir, QueryFilter, VerifyReport};
pub use writer::{AuditWriter, Durability};

/// Name prefix of audit files: `audit-<sequence>.jsonl`.
pub const FILE_PREFIX: &str = "audit-";
