//! The proxy's own audit trail: one JSON record per request in kms-audit's hash-chained,
//! signed JSON-lines files (`kms_audit::verify_dir` checks them).
//!
//! Records carry requestMetadata as received, the outcome and the latency, never plaintext,
//! ciphertext, AAD or any secret.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kms_audit::{AuditWriter, Durability, SigningKey};
use kms_crypto::asymmetric::{public_key_spki, AsymmetricSpec};
use serde_json::Value;

/// Files roll at this size.
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// Files roll at this age.
const MAX_FILE_AGE_SECS: u64 = 3600;

/// Where the public key of the audit signing key is written: beside the key, `.pub.der`.
pub fn public_key_path(signing_key: &Path) -> PathBuf {
    signing_key.with_extension("pub.der")
}

/// Loads the audit signing key (PKCS#8 DER, ECDSA P-256), creating it (mode 0600) if missing,
/// and writes its public key (SPKI DER) to [`public_key_path`].
pub fn load_or_create_signing_key(path: &Path) -> Result<SigningKey, String> {
    let key = match std::fs::read(path) {
        Ok(pkcs8) => {
            let pkcs8 = zeroize::Zeroizing::new(pkcs8);
            let spki = public_key_spki(AsymmetricSpec::EccNistP256, &pkcs8)
                .map_err(|e| format!("{}: not an ECDSA P-256 PKCS#8 key: {e}", path.display()))?;
            SigningKey { pkcs8, spki }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("creating {}: {e}", dir.display()))?;
            }
            let key = SigningKey::generate()?;
            kms_crypto::write_private_file(path, &key.pkcs8)
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
            tracing::info!(path = %path.display(), "created the audit signing key");
            key
        }
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    let public = public_key_path(path);
    std::fs::write(&public, &key.spki).map_err(|e| format!("writing {}: {e}", public.display()))?;
    tracing::info!(
        public_key_sha256 = %hex::encode(kms_crypto::sha256(&key.spki)),
        "audit signing key loaded"
    );
    Ok(key)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Starts the audit writer over `dir`.
pub fn start(dir: &Path, key: SigningKey) -> Result<AuditWriter, String> {
    AuditWriter::start(
        dir,
        key,
        Durability::Buffered,
        MAX_FILE_BYTES,
        MAX_FILE_AGE_SECS,
        Arc::new(now_ms),
    )
}

/// One request as the audit trail records it.
#[derive(Debug, Default, Clone)]
pub struct RequestRecord {
    /// Start time (ms).
    pub time_ms: i64,
    /// Proxy-assigned request id.
    pub request_id: String,
    /// `GetHealthStatus`, `GetKeyMetadata`, `Encrypt`, `Decrypt`, or `Unknown`.
    pub operation: String,
    /// HTTP method and path.
    pub method: String,
    /// Path.
    pub path: String,
    /// Key store name, if the path matched one.
    pub key_store: Option<String>,
    /// External key id, for key operations.
    pub external_key_id: Option<String>,
    /// Access key id claimed in the Authorization header.
    pub access_key_id: Option<String>,
    /// Whether the SigV4 signature verified.
    pub authenticated: bool,
    /// Client address.
    pub source_ip: String,
    /// Client certificate subject CN (mutual TLS).
    pub client_cn: Option<String>,
    /// requestMetadata as received.
    pub request_metadata: Value,
    /// Non-secret request parameters (algorithms, sizes).
    pub parameters: Value,
    /// Authorisation rule that decided, if any.
    pub rule: Option<String>,
    /// HTTP status.
    pub status: u16,
    /// errorName on failure.
    pub error_name: Option<String>,
    /// errorMessage on failure.
    pub error_message: Option<String>,
    /// Latency (microseconds).
    pub latency_us: u64,
}

/// The JSON form of a [`RequestRecord`] (serialised straight into the audit line).
#[derive(serde::Serialize)]
struct RecordJson<'a> {
    #[serde(rename = "eventVersion")]
    event_version: &'static str,
    #[serde(rename = "eventTime")]
    event_time: String,
    #[serde(rename = "eventTimeMs")]
    event_time_ms: i64,
    #[serde(rename = "eventSource")]
    event_source: &'static str,
    #[serde(rename = "eventName")]
    event_name: &'a str,
    #[serde(rename = "requestID")]
    request_id: &'a str,
    #[serde(rename = "kmsRequestId")]
    kms_request_id: Option<&'a Value>,
    #[serde(rename = "httpMethod")]
    http_method: &'a str,
    path: &'a str,
    #[serde(rename = "keyStore")]
    key_store: &'a Option<String>,
    #[serde(rename = "externalKeyId")]
    external_key_id: &'a Option<String>,
    #[serde(rename = "accessKeyId")]
    access_key_id: &'a Option<String>,
    authenticated: bool,
    #[serde(rename = "sourceIPAddress")]
    source_ip: &'a str,
    #[serde(rename = "clientCertificateCN")]
    client_cn: &'a Option<String>,
    #[serde(rename = "requestMetadata")]
    request_metadata: &'a Value,
    #[serde(rename = "requestParameters")]
    parameters: &'a Value,
    #[serde(rename = "authorizationRule")]
    rule: &'a Option<String>,
    #[serde(rename = "httpStatus")]
    status: u16,
    #[serde(rename = "errorName")]
    error_name: &'a Option<String>,
    #[serde(rename = "errorMessage")]
    error_message: &'a Option<String>,
    #[serde(rename = "latencyMicros")]
    latency_us: u64,
}

impl RequestRecord {
    fn json_form(&self) -> RecordJson<'_> {
        RecordJson {
            event_version: "xks-proxy-1",
            event_time: kms_audit::event_time(self.time_ms),
            event_time_ms: self.time_ms,
            event_source: "xks-proxy",
            event_name: &self.operation,
            request_id: &self.request_id,
            kms_request_id: self.request_metadata.get("kmsRequestId"),
            http_method: &self.method,
            path: &self.path,
            key_store: &self.key_store,
            external_key_id: &self.external_key_id,
            access_key_id: &self.access_key_id,
            authenticated: self.authenticated,
            source_ip: &self.source_ip,
            client_cn: &self.client_cn,
            request_metadata: &self.request_metadata,
            parameters: &self.parameters,
            rule: &self.rule,
            status: self.status,
            error_name: &self.error_name,
            error_message: &self.error_message,
            latency_us: self.latency_us,
        }
    }

    /// The JSON record.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.json_form()).unwrap_or(Value::Null)
    }

    /// The record as its audit line, serialised once (no intermediate [`Value`]).
    pub fn to_line(&self) -> kms_audit::AuditLine {
        kms_audit::AuditLine::from_serialize(&self.json_form())
            .unwrap_or_else(|_| kms_audit::AuditLine::from_value(self.to_json()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The line written is the record's JSON, member for member.
    #[test]
    fn line_matches_the_json_form() {
        let rec = RequestRecord {
            time_ms: 1_700_000_000_000,
            request_id: "r".into(),
            operation: "Encrypt".into(),
            method: "POST".into(),
            path: "/kms/xks/v1/keys/k/encrypt".into(),
            key_store: Some("ks".into()),
            request_metadata: json!({"kmsRequestId": "kr", "kmsOperation": "Encrypt"}),
            parameters: json!({"encryptionAlgorithm": "AES_GCM"}),
            status: 200,
            latency_us: 7,
            ..Default::default()
        };
        let v: Value = serde_json::from_slice(rec.to_line().as_bytes()).unwrap();
        assert_eq!(v, rec.to_json());
        assert_eq!(v["kmsRequestId"], "kr");
        assert_eq!(v["eventTime"], "2023-11-14T22:13:20Z");
        assert_eq!(v["errorName"], Value::Null);
        assert_eq!(v["keyStore"], "ks");
    }
}
