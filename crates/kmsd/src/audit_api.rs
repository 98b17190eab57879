//! `Kmsd.ReadAuditRecords`: the audit trail's newest records over the API, for the web console
//! and scripts. A JSON 1.1 call signed with SigV4 like any KMS call (`X-Amz-Target:
//! Kmsd.ReadAuditRecords`), authorised as the action `kmsd:ReadAudit` by identity policies
//! (the account admin may; others only when a policy grants it), audited like any call.
//!
//! A caller sees its own account's records only, and the read is bounded: at most
//! [`MAX_LIMIT`] records, and at most [`MAX_SCAN_BYTES`] of trail read per call.

use std::path::Path;

use kms_core::{Caller, Service};
use kms_types::{ErrorCode, KmsError};
use serde::Deserialize;

/// `X-Amz-Target` prefix of kmsd's own operations.
pub const TARGET_PREFIX: &str = "Kmsd.";
/// The one operation under [`TARGET_PREFIX`].
pub const READ_AUDIT_RECORDS: &str = "ReadAuditRecords";
/// The action identity policies name to allow it.
pub const READ_AUDIT_ACTION: &str = "kmsd:ReadAudit";
/// Records returned when the request gives no `Limit`.
pub const DEFAULT_LIMIT: usize = 50;
/// Most records one call returns.
pub const MAX_LIMIT: usize = 500;
/// Most bytes of trail one call reads (newest files first).
pub const MAX_SCAN_BYTES: u64 = 256 * 1024 * 1024;

/// The request: every filter given must match.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct ReadAuditRequest {
    /// 1..=MAX_LIMIT (default DEFAULT_LIMIT).
    limit: Option<usize>,
    /// Records about this key (key id or ARN).
    key_id: Option<String>,
    /// Records of this principal ARN.
    principal: Option<String>,
    /// Records of this operation (`eventName`).
    event_name: Option<String>,
    /// Records that failed with this error code; `*`: every failed call.
    error_code: Option<String>,
    /// Records at or after this time (ISO 8601, e.g. `2026-12-04T10:00:00Z`).
    since: Option<String>,
    /// Records before this time.
    until: Option<String>,
    /// Records of none of these operations (e.g. the lookups a console makes while browsing).
    exclude_event_names: Option<Vec<String>>,
}

/// Most names in `ExcludeEventNames`.
pub const MAX_EXCLUDED_EVENT_NAMES: usize = 100;

fn validation(message: String) -> KmsError {
    KmsError::new(ErrorCode::ValidationException, message)
}

fn non_empty(name: &str, v: Option<String>) -> Result<Option<String>, KmsError> {
    match v {
        Some(s) if s.is_empty() || s.len() > 2048 => Err(validation(format!(
            "{name} must be 1 to 2048 characters long"
        ))),
        other => Ok(other),
    }
}

/// Answers `Kmsd.<op>` for an authenticated caller: the JSON response body.
pub async fn call(
    service: &Service,
    audit_dir: &Path,
    caller: &Caller,
    op: &str,
    body: &[u8],
) -> Result<Vec<u8>, KmsError> {
    if op != READ_AUDIT_RECORDS {
        return Err(KmsError::new(
            ErrorCode::UnknownOperationException,
            format!("kmsd's own operations are {TARGET_PREFIX}{READ_AUDIT_RECORDS}, not {TARGET_PREFIX}{op}"),
        ));
    }
    let req: ReadAuditRequest = serde_json::from_slice(if body.is_empty() { b"{}" } else { body })
        .map_err(|e| KmsError::new(ErrorCode::SerializationException, format!("{e}")))?;
    let limit = req.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(validation(format!(
            "Limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    let exclude_event_names = req.exclude_event_names.unwrap_or_default();
    if exclude_event_names.len() > MAX_EXCLUDED_EVENT_NAMES
        || exclude_event_names
            .iter()
            .any(|n| n.is_empty() || n.len() > 128)
    {
        return Err(validation(format!(
            "ExcludeEventNames takes at most {MAX_EXCLUDED_EVENT_NAMES} names of 1 to 128 characters"
        )));
    }
    let filter = kms_audit::QueryFilter {
        since: non_empty("Since", req.since)?,
        until: non_empty("Until", req.until)?,
        key: non_empty("KeyId", req.key_id)?,
        principal: non_empty("Principal", req.principal)?,
        event_name: non_empty("EventName", req.event_name)?,
        error_code: non_empty("ErrorCode", req.error_code)?,
        account: Some(caller.account.clone()),
        exclude_event_names,
    };
    service.authorize_kmsd_action(caller, READ_AUDIT_ACTION)?;
    let dir = audit_dir.to_path_buf();
    let found = tokio::task::spawn_blocking(move || {
        kms_audit::query_newest(&dir, &filter, limit, MAX_SCAN_BYTES)
    })
    .await
    .map_err(|e| KmsError::internal(format!("reading the audit trail: {e}")))?
    .map_err(|e| {
        tracing::error!(error = %e, "reading the audit trail failed");
        KmsError::internal("kmsd could not read its audit trail")
    })?;
    serde_json::to_vec(&serde_json::json!({
        "Records": found.records,
        "ScanLimitReached": found.scan_budget_exhausted,
    }))
    .map_err(|e| KmsError::internal(e.to_string()))
}
