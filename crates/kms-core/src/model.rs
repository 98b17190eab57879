//! The records kmsd keeps: keys (metadata, policy, tags, sealed material), aliases, principals.

use serde::{Deserialize, Serialize};

/// One version of a key's material, sealed under the root key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaterialRecord {
    /// 16-byte id written into every ciphertext made with this material (hex).
    pub material_id: String,
    /// The 64-hex `KeyMaterialId` the API reports.
    pub key_material_id: String,
    /// When the material was created (ms since epoch).
    pub created_ms: i64,
    /// Material sealed by the root key, AAD = `sealing_aad(key_arn, material_id)` (hex).
    pub sealed_hex: String,
    /// `AUTOMATIC` or `ON_DEMAND` for material a rotation made; None for the key's first.
    #[serde(default)]
    pub rotation_type: Option<String>,
    /// Imported material (keys of origin `EXTERNAL`): its import settings and state.
    #[serde(default)]
    pub imported: Option<ImportedMaterial>,
}

/// What kmsd keeps about one imported key material besides the sealed bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportedMaterial {
    /// `KEY_MATERIAL_EXPIRES` or `KEY_MATERIAL_DOES_NOT_EXPIRE`, as last imported.
    pub expiration_model: String,
    /// When the material expires (ms), for `KEY_MATERIAL_EXPIRES`.
    pub valid_to_ms: Option<i64>,
    /// `KeyMaterialDescription`, as last given.
    pub description: Option<String>,
    /// Whether the bytes are here (`IMPORTED`); after deletion or expiry the record stays,
    /// without its sealed bytes, so the same material can be imported again (`PENDING_IMPORT`).
    pub present: bool,
    /// Imported with `NEW_KEY_MATERIAL` and not yet made current by RotateKeyOnDemand.
    pub pending_rotation: bool,
}

impl MaterialRecord {
    /// Whether this material can be used now: not deleted or expired, not waiting for rotation.
    pub fn usable(&self) -> bool {
        self.imported
            .as_ref()
            .is_none_or(|i| i.present && !i.pending_rotation)
    }

    /// Whether this material could encrypt if it were current (its bytes are here).
    pub fn usable_when_current(&self) -> bool {
        self.imported.as_ref().is_none_or(|i| i.present)
    }

    /// Whether this material waits for RotateKeyOnDemand to become current.
    pub fn pending_rotation(&self) -> bool {
        self.imported.as_ref().is_some_and(|i| i.pending_rotation)
    }
}

/// A KMS key. Identity is (`region`, `key_id`); key ids are random UUIDs, unique everywhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Owning account (12 digits).
    pub account: String,
    /// Region the key lives in.
    pub region: String,
    /// Key id (UUID, or `mrk-` + 32 hex for multi-Region keys).
    pub key_id: String,
    /// Creation time (ms).
    pub created_ms: i64,
    /// Description (0..8192 chars).
    pub description: String,
    /// `KeySpec` wire value.
    pub key_spec: String,
    /// `KeyUsage` wire value.
    pub key_usage: String,
    /// `Origin` wire value.
    pub origin: String,
    /// `KeyState` wire value.
    pub state: String,
    /// When a PendingDeletion key is deleted (ms).
    pub deletion_date_ms: Option<i64>,
    /// The waiting period chosen by ScheduleKeyDeletion.
    pub pending_window_days: Option<i32>,
    /// The key policy document, exactly as given (or the default).
    pub policy: String,
    /// Tags, kept sorted by key.
    pub tags: std::collections::BTreeMap<String, String>,
    /// Material versions; the last one is current (encrypts), all decrypt.
    pub materials: Vec<MaterialRecord>,
    /// Multi-Region key.
    pub multi_region: bool,
    /// DER SubjectPublicKeyInfo of an asymmetric key (hex); not secret.
    #[serde(default)]
    pub public_key_hex: Option<String>,
    /// Custom key store holding the key's material (origin AWS_CLOUDHSM / EXTERNAL_KEY_STORE).
    #[serde(default)]
    pub custom_key_store_id: Option<String>,
    /// CloudHSM cluster of the key store, for AWS_CLOUDHSM keys.
    #[serde(default)]
    pub cloud_hsm_cluster_id: Option<String>,
    /// The proxy's identifier of the external key, for EXTERNAL_KEY_STORE keys.
    #[serde(default)]
    pub xks_key_id: Option<String>,
    /// Automatic rotation, when enabled.
    #[serde(default)]
    pub rotation: Option<RotationSchedule>,
    /// Multi-Region keys: the Region of the primary key, kept on every related key.
    #[serde(default)]
    pub primary_region: Option<String>,
    /// Multi-Region keys: the Regions of the replicas, kept on every related key.
    #[serde(default)]
    pub replica_regions: Vec<String>,
}

/// A key's automatic rotation schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationSchedule {
    /// RotationPeriodInDays (90..2560).
    pub period_days: i32,
    /// When the next automatic rotation is due (ms).
    pub next_ms: i64,
}

impl KeyRecord {
    /// `arn:aws:kms:<region>:<account>:key/<key-id>`.
    pub fn arn(&self) -> String {
        key_arn(&self.region, &self.account, &self.key_id)
    }
    /// Whether this is the primary key of a multi-Region key.
    pub fn is_primary(&self) -> bool {
        self.multi_region && self.primary_region.as_deref() == Some(self.region.as_str())
    }

    /// The other Regions holding this multi-Region key (primary first, then replicas).
    pub fn related_regions(&self) -> Vec<String> {
        self.primary_region
            .iter()
            .chain(self.replica_regions.iter())
            .filter(|r| **r != self.region)
            .cloned()
            .collect()
    }

    /// When the first imported material still present expires (ms), if any expires.
    pub fn material_expiry_ms(&self) -> Option<i64> {
        self.materials
            .iter()
            .filter_map(|m| m.imported.as_ref())
            .filter(|i| i.present)
            .filter_map(|i| i.valid_to_ms)
            .min()
    }

    /// The material that encrypts: the newest one not waiting for rotation.
    pub fn current_material(&self) -> Option<&MaterialRecord> {
        self.materials.iter().rev().find(|m| !m.pending_rotation())
    }
}

/// An alias: a friendly name pointing at a key in the same account and Region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasRecord {
    /// Owning account.
    pub account: String,
    /// Region.
    pub region: String,
    /// `alias/...`.
    pub name: String,
    /// Key id of the target.
    pub target_key_id: String,
    /// Creation time (ms).
    pub created_ms: i64,
    /// Last update time (ms).
    pub updated_ms: i64,
}

impl AliasRecord {
    /// `arn:aws:kms:<region>:<account>:alias/<name-without-prefix>`.
    pub fn arn(&self) -> String {
        format!("arn:aws:kms:{}:{}:{}", self.region, self.account, self.name)
    }
}

/// An access key of a principal: what SigV4 verification looks up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKeyRecord {
    /// `AKIA...` id.
    pub access_key_id: String,
    /// Account of the principal.
    pub account: String,
    /// Principal ARN (`arn:aws:iam::<acct>:user/<name>`).
    pub principal_arn: String,
    /// Unique principal id (`AIDA...`).
    pub user_id: String,
    /// Secret sealed under the root key, AAD = `access-key|<id>` (hex).
    pub sealed_secret_hex: String,
    /// Creation time (ms).
    pub created_ms: i64,
    /// Temporary credentials (assumed role): when they expire (ms).
    #[serde(default)]
    pub expires_ms: Option<i64>,
    /// Temporary credentials: SHA-256 of the session token (hex).
    #[serde(default)]
    pub session_token_sha256: Option<String>,
    /// Temporary credentials: the role assumed.
    #[serde(default)]
    pub role_arn: Option<String>,
}

/// `arn:aws:kms:<region>:<account>:key/<key-id>`.
pub fn key_arn(region: &str, account: &str, key_id: &str) -> String {
    format!("arn:aws:kms:{region}:{account}:key/{key_id}")
}

/// AAD binding sealed material to its key and material version.
pub fn sealing_aad(key_arn: &str, material_id: &str) -> Vec<u8> {
    format!("kmsd-key-material|{key_arn}|{material_id}").into_bytes()
}
