//! kmsd's audit trail: one CloudTrail-format record per API call (and per lifecycle event kmsd
//! performs itself), written as JSON lines.
//!
//! Tamper evidence: every record carries `kmsdChain: {seq, prev}` where `prev` is the SHA-256
//! of the previous record line (across files). While records arrive, the writer signs the chain
//! head every second or so (a checkpoint line) and every closed file ends with a signed digest
//! line (ECDSA P-256, the audit signing key), each covering the file's bytes so far, record
//! count and last record hash. [`verify`] checks all of it against a pinned public key and
//! names the first file and line that do not fit; an [`Anchor`] kept elsewhere pins history up
//! to it even against someone holding the signing key. Records are bounded in size
//! ([`bound`]), files are private (0600 in a 0700 directory) and [`Retention`] removes old
//! files only with a signed record of the removal.

pub mod bound;
mod chain;
mod line;
mod private_fs;
mod query;
mod record;
mod retention;
mod signed;
mod trails;
mod verify;
mod writer;

pub use chain::AuditFileSet;
pub use line::AuditLine;
pub use query::{query, query_newest, NewestRecords, QueryFilter, ANY_ERROR, MAX_LINE_BYTES};
pub use record::{event_time, redact_request, ApiCallRecord, ServiceEventRecord};
pub use retention::Retention;
pub use signed::{SignedKind, SigningKey};
pub use trails::{node_trails, query_trails};
pub use verify::{anchor, verify, verify_dir, Anchor, TrustedKey, VerifyOptions, VerifyReport};
pub use writer::{
    AuditWriter, Durability, WriterConfig, BUFFERED_BATCH_MS, DEFAULT_CHECKPOINT_INTERVAL_MS,
};

/// Name prefix of audit files: `audit-<sequence>.jsonl`.
pub const FILE_PREFIX: &str = "audit-";
