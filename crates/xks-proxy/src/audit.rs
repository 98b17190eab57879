//! The proxy's own audit trail: one JSON record per request in kms-audit's hash-chained,
//! signed JSON-lines files (`kms_audit::verify_dir` checks them).
//!
//! Records carry requestMetadata as received, the outcome and the latency, never plaintext,
//! ciphertext, AAD or any secret.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kms_audit::{AuditWriter, Durability, SigningKey};
use kms_crypto::asymmetric::{public_key_spki, AsymmetricSpec};
use serde_json::{json, Value};

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

impl RequestRecord {
    /// The JSON record.
    pub fn to_json(&self) -> Value {
        json!({
            "eventVersion": "xks-proxy-1",
            "eventTime": kms_audit::event_time(self.time_ms),
            "eventTimeMs": self.time_ms,
            "eventSource": "xks-proxy",
            "eventName": self.operation,
            "requestID": self.request_id,
            "kmsRequestId": self.request_metadata.get("kmsRequestId"),
            "httpMethod": self.method,
            "path": self.path,
            "keyStore": self.key_store,
            "externalKeyId": self.external_key_id,
            "accessKeyId": self.access_key_id,
            "authenticated": self.authenticated,
            "sourceIPAddress": self.source_ip,
            "clientCertificateCN": self.client_cn,
            "requestMetadata": self.request_metadata,
            "requestParameters": self.parameters,
            "authorizationRule": self.rule,
            "httpStatus": self.status,
            "errorName": self.error_name,
            "errorMessage": self.error_message,
            "latencyMicros": self.latency_us,
        })
    }
}
