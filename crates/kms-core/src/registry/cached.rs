//! A key as the data plane needs it, and how it is built from its stored record.

use std::collections::HashMap;
use std::sync::Arc;

use kms_crypto::{AesGcmKey, RootKey};
use kms_types::KmsError;

use crate::backends::{self, KeyBackend};
use crate::error::internal;
use crate::model::{sealing_aad, KeyRecord};

/// A key as the data plane needs it: its record and its unsealed, prepared material.
pub(crate) struct CachedKey {
    pub(crate) record: KeyRecord,
    /// Where the key's symmetric material lives: chosen once, here.
    pub(crate) backend: &'static dyn KeyBackend,
    /// Symmetric keys: prepared AES keys by 16-byte material id.
    pub(crate) ciphers: HashMap<[u8; 16], Arc<AesGcmKey>>,
    /// Asymmetric keys: the PKCS#8 private key; HMAC keys: the HMAC key.
    pub(crate) secret: Option<kms_crypto::SecretBytes>,
    /// Asymmetric keys: DER SubjectPublicKeyInfo.
    pub(crate) public_key: Option<Vec<u8>>,
    /// Signing keys: the private key parsed at its first Sign (an RSA parse costs as much as a
    /// signature).
    pub(crate) signing_key: std::sync::OnceLock<kms_crypto::asymmetric::SigningKey>,
}

impl CachedKey {
    /// Unseals the material of `record` under `root` and prepares it for use.
    pub(crate) fn load(record: KeyRecord, root: &RootKey) -> Result<CachedKey, KmsError> {
        let arn = record.arn();
        let mut ciphers = HashMap::new();
        let mut secret = None;
        let symmetric = record.key_spec == "SYMMETRIC_DEFAULT";
        let backend = backends::for_record(&record);
        // Material of keys in CloudHSM key stores stays in the HSMs.
        let materials = if backend.holds_material() {
            &record.materials[..]
        } else {
            &[][..]
        };
        // Imported material that was deleted or expired has no bytes to unseal.
        for m in materials
            .iter()
            .filter(|m| m.imported.as_ref().is_none_or(|i| i.present))
        {
            let id: [u8; 16] = hex::decode(&m.material_id)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| internal("bad material id in store"))?;
            let sealed = hex::decode(&m.sealed_hex).map_err(internal)?;
            let material = root
                .open(&sealing_aad(&arn, &m.material_id), &sealed)
                .map_err(internal)?;
            if symmetric {
                ciphers.insert(id, Arc::new(AesGcmKey::new(&material).map_err(internal)?));
            } else {
                secret = Some(material);
            }
        }
        tracing::debug!(key = %arn, backend = backend.name(), "key loaded into the registry");
        let public_key = record
            .public_key_hex
            .as_deref()
            .map(hex::decode)
            .transpose()
            .map_err(internal)?;
        Ok(CachedKey {
            record,
            backend,
            ciphers,
            secret,
            public_key,
            signing_key: std::sync::OnceLock::new(),
        })
    }
}
