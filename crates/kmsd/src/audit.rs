//! Wiring of the audit trail: the signing key kept like key material, the sink for service
//! events, and the record of each API call.

use std::path::Path;
use std::sync::Arc;

use kms_audit::{AuditWriter, ServiceEventRecord, SigningKey};
use kms_core::{Service, WriteOp};

const META_KEY: &str = "audit-signing-key";
const META_PUBLIC: &str = "audit-signing-public-key";
/// File in the data dir holding the audit signing public key (DER SPKI), for `kmsd audit verify`.
pub const PUBLIC_KEY_FILE: &str = "audit-signing-key.pub.der";

fn aad() -> &'static [u8] {
    b"kmsd-audit-signing-key"
}

/// Loads the audit signing key (sealed under the root key in the store), creating it on first
/// start. Also writes its public key to `DATA_DIR/audit-signing-key.pub.der`.
pub fn load_or_create_signing_key(
    service: &Service,
    data_dir: &Path,
) -> Result<SigningKey, String> {
    let store = service.store();
    // Nodes starting together on an empty shared database would each make a key: the first
    // look is outside the store's write section (the common case: the key exists), the making
    // inside it, after a second look.
    let _section = match store.get_meta(META_KEY).map_err(|e| e.to_string())? {
        Some(_) => None,
        None => Some(store.lock_writes().map_err(|e| e.to_string())?),
    };
    let key = match store.get_meta(META_KEY).map_err(|e| e.to_string())? {
        Some(sealed_hex) => {
            let sealed = hex::decode(sealed_hex).map_err(|e| e.to_string())?;
            let pkcs8 = service
                .root_key()
                .open(aad(), &sealed)
                .map_err(|e| format!("unsealing the audit signing key: {e}"))?;
            let spki = hex::decode(
                store
                    .get_meta(META_PUBLIC)
                    .map_err(|e| e.to_string())?
                    .unwrap_or_default(),
            )
            .map_err(|e| e.to_string())?;
            SigningKey { pkcs8, spki }
        }
        None => {
            let key = SigningKey::generate()?;
            let sealed = service
                .root_key()
                .seal(aad(), &key.pkcs8)
                .map_err(|e| e.to_string())?;
            store
                .apply(vec![
                    WriteOp::PutMeta {
                        name: META_KEY.into(),
                        value: hex::encode(sealed),
                    },
                    WriteOp::PutMeta {
                        name: META_PUBLIC.into(),
                        value: hex::encode(&key.spki),
                    },
                ])
                .map_err(|e| e.to_string())?;
            key
        }
    };
    std::fs::write(data_dir.join(PUBLIC_KEY_FILE), &key.spki).map_err(|e| e.to_string())?;
    tracing::info!(
        public_key_sha256 = %hex::encode(kms_crypto::sha256(&key.spki)),
        "audit signing key loaded; keep this fingerprint to check `kmsd audit verify` against"
    );
    Ok(key)
}

/// Sends kmsd's own lifecycle events to the audit trail.
pub struct AuditEventSink {
    /// The writer.
    pub writer: AuditWriter,
}

impl AuditEventSink {
    /// Records a service event (an action kmsd took by itself) about one key.
    fn service_event(
        &self,
        event_name: &str,
        key_arn: &str,
        account: &str,
        region: &str,
        time_ms: i64,
    ) {
        let record = ServiceEventRecord {
            time_ms,
            event_name: event_name.into(),
            region: region.into(),
            account: account.into(),
            key_arn: key_arn.into(),
            event_id: uuid::Uuid::new_v4().to_string(),
        };
        let writer = self.writer.clone();
        let event_name = event_name.to_owned();
        tokio::spawn(async move {
            if let Err(e) = writer.record(record.to_json()).await {
                tracing::error!(error = %e, event = %event_name, "could not audit a service event");
            }
        });
    }
}

impl kms_core::EventSink for AuditEventSink {
    fn key_deleted(&self, key_arn: &str, account: &str, region: &str, time_ms: i64) {
        self.service_event("DeleteKey", key_arn, account, region, time_ms);
    }

    fn key_rotated(&self, key_arn: &str, account: &str, region: &str, time_ms: i64) {
        self.service_event("RotateKey", key_arn, account, region, time_ms);
    }

    fn key_material_expired(&self, key_arn: &str, account: &str, region: &str, time_ms: i64) {
        self.service_event(
            "DeleteExpiredKeyMaterial",
            key_arn,
            account,
            region,
            time_ms,
        );
    }
}

/// Operations CloudTrail marks read-only (and whose responseElements it leaves null).
pub fn is_read_only(op: &str) -> bool {
    op.starts_with("Describe")
        || op.starts_with("List")
        || op == crate::audit_api::READ_AUDIT_RECORDS
        || op.starts_with("Get")
        || matches!(
            op,
            "Encrypt"
                | "Decrypt"
                | "ReEncrypt"
                | "GenerateDataKey"
                | "GenerateDataKeyWithoutPlaintext"
                | "GenerateDataKeyPair"
                | "GenerateDataKeyPairWithoutPlaintext"
                | "GenerateRandom"
                | "GenerateMac"
                | "VerifyMac"
                | "Sign"
                | "Verify"
                | "DeriveSharedSecret"
                | "Encapsulate"
                | "Decapsulate"
        )
}

/// Starts the writer in `dir`.
pub fn start_writer(
    dir: &Path,
    key: SigningKey,
    config: kms_audit::WriterConfig,
) -> Result<AuditWriter, String> {
    let clock: Arc<dyn Fn() -> i64 + Send + Sync> = Arc::new(|| {
        use kms_core::Clock as _;
        kms_core::SystemClock.now_ms()
    });
    AuditWriter::start_with(dir, key, config, clock)
}

/// Each HSM cluster's own append-only audit log (`DATA_DIR/hsm-audit/<cluster-id>/`), in the
/// same chained, signed file format as kmsd's trail, so `kmsd audit verify` checks it too.
pub struct ClusterAuditSink {
    dir: std::path::PathBuf,
    key: SigningKey,
    writers: std::sync::Mutex<std::collections::HashMap<String, AuditWriter>>,
}

impl ClusterAuditSink {
    /// Logs under `dir`, signed with `key`.
    pub fn new(dir: &Path, key: SigningKey) -> Self {
        ClusterAuditSink {
            dir: dir.to_path_buf(),
            key,
            writers: Default::default(),
        }
    }

    fn writer(&self, cluster_id: &str) -> Option<AuditWriter> {
        let mut w = self.writers.lock().ok()?;
        if let Some(existing) = w.get(cluster_id) {
            return Some(existing.clone());
        }
        match start_writer(
            &self.dir.join(cluster_id),
            self.key.duplicate(),
            kms_audit::WriterConfig::new(kms_audit::Durability::Buffered, 64 * 1024 * 1024, 3600),
        ) {
            Ok(writer) => {
                w.insert(cluster_id.to_owned(), writer.clone());
                Some(writer)
            }
            Err(e) => {
                tracing::error!(cluster = cluster_id, error = %e, "cannot open the cluster audit log");
                None
            }
        }
    }

    /// Closes every cluster log with its signed digest.
    pub async fn close(&self) {
        let writers: Vec<AuditWriter> = self
            .writers
            .lock()
            .map(|w| w.values().cloned().collect())
            .unwrap_or_default();
        for w in writers {
            w.close().await;
        }
    }
}

impl kms_core::HsmAuditSink for ClusterAuditSink {
    fn hsm_event(&self, cluster_id: &str, event: &str, details: serde_json::Value) {
        use kms_core::Clock as _;
        if let Some(w) = self.writer(cluster_id) {
            w.record_nowait(serde_json::json!({
                "eventTime": kms_audit::event_time(kms_core::SystemClock.now_ms()),
                "clusterId": cluster_id,
                "eventName": event,
                "details": details,
            }));
        }
    }
}
