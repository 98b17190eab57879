//! KMS keys whose material lives in a CloudHSM key store: generation inside the HSMs (present
//! on every HSM of the cluster), AES-GCM inside the HSM, random from the cluster, deletion.

use kms_types::{ErrorCode, KmsError};

use super::driver::HsmFault;
use super::keystore::KeyStoreRecord;
use crate::context::Caller;
use crate::service::Service;

fn unavailable(store_id: &str, e: &HsmFault) -> KmsError {
    match e {
        HsmFault::KeyNotFound => KmsError::new(
            ErrorCode::KMSInvalidStateException,
            format!("The key material is not in the HSMs of custom key store {store_id} (deleted from the cluster?)"),
        ),
        HsmFault::Unreachable(why) => KmsError::new(
            ErrorCode::KMSInvalidStateException,
            format!("No HSM of custom key store {store_id} could serve the request: {why}"),
        ),
        other => {
            tracing::error!(custom_key_store = store_id, error = %other, "HSM operation failed");
            KmsError::new(ErrorCode::KMSInvalidStateException, format!("The HSMs of custom key store {store_id} failed the request"))
        }
    }
}

impl Service {
    /// The key store of a CreateKey request with CustomKeyStoreId, checked for a new key.
    pub(crate) fn key_store_for_new_key(
        &self,
        caller: &Caller,
        store_id: &str,
        origin: &str,
    ) -> Result<KeyStoreRecord, KmsError> {
        let store = self
            .load_key_store(store_id)?
            .filter(|k| k.account == caller.account && k.region == caller.region)
            .ok_or_else(|| {
                KmsError::new(
                    ErrorCode::CustomKeyStoreNotFoundException,
                    format!("Custom key store '{store_id}' does not exist"),
                )
            })?;
        let wanted = if store.store_type == "AWS_CLOUDHSM" {
            "AWS_CLOUDHSM"
        } else {
            "EXTERNAL_KEY_STORE"
        };
        if origin != wanted {
            return Err(KmsError::new(
                ErrorCode::ValidationException,
                format!(
                    "A key in custom key store {store_id} ({}) needs Origin {wanted}, not {origin}",
                    store.store_type
                ),
            ));
        }
        if store.connection_state != "CONNECTED" {
            return Err(KmsError::new(
                ErrorCode::CustomKeyStoreInvalidStateException,
                format!(
                    "Custom key store {store_id} is {}, not CONNECTED",
                    store.connection_state
                ),
            ));
        }
        Ok(store)
    }

    /// Generates the AES-256 key `material_id` in one HSM of the store's cluster and makes it
    /// present on all the others. Returns the cluster id.
    pub(crate) async fn generate_hsm_key(
        &self,
        store: &KeyStoreRecord,
        material_id: [u8; 16],
        label: &str,
    ) -> Result<String, KmsError> {
        let env = self
            .hsm_env()
            .ok_or_else(|| KmsError::internal("no HSMs declared"))?;
        let cluster_id = store.cluster_id.clone().unwrap_or_default();
        let cluster = self.load_cluster(&cluster_id)?.ok_or_else(|| {
            KmsError::new(
                ErrorCode::CloudHsmClusterInvalidConfigurationException,
                format!("Cluster {cluster_id} no longer exists"),
            )
        })?;
        self.check_cluster_for_new_key(&cluster)?;
        let conn = self.connections().get(&store.id).ok_or_else(|| {
            KmsError::new(
                ErrorCode::CustomKeyStoreInvalidStateException,
                format!("Custom key store {} is not connected", store.id),
            )
        })?;
        let sessions = conn.all();
        let label = label.to_owned();
        let store_id = store.id.clone();
        let result = tokio::task::spawn_blocking(move || {
            let (first, rest) = sessions
                .split_first()
                .ok_or_else(|| HsmFault::Unreachable("no HSM session".into()))?;
            first.1.generate_key(&material_id, &label)?;
            let targets: Vec<_> = rest.iter().map(|(_, s)| s.clone()).collect();
            if let Err(e) = env
                .driver
                .replicate_key(&first.1, &targets, &material_id, &label)
            {
                let _ = first.1.destroy_key(&material_id);
                return Err(e);
            }
            Ok(sessions.len())
        })
        .await
        .map_err(|e| KmsError::internal(e.to_string()))?;
        let copies = result.map_err(|e| unavailable(&store_id, &e))?;
        self.hsm_audit(&cluster_id, "GenerateKey", serde_json::json!({"keyHandle": hex::encode(material_id), "label": label_of(&store_id), "hsms": copies}));
        Ok(cluster_id)
    }

    fn check_cluster_for_new_key(&self, c: &super::cluster::ClusterRecord) -> Result<(), KmsError> {
        if c.active_zones() < 2 {
            return Err(KmsError::new(
                ErrorCode::CloudHsmClusterInvalidConfigurationException,
                format!("Cluster {} needs at least two active HSMs in different Availability Zones to create keys", c.cluster_id),
            ));
        }
        Ok(())
    }

    /// AES-GCM encryption inside the store's HSMs.
    pub(crate) fn hsm_encrypt(
        &self,
        store_id: &str,
        material_id: &[u8; 16],
        iv: &[u8; 12],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, KmsError> {
        let conn = self.key_store_connection(store_id)?;
        let ct = conn
            .with_any(|s| s.encrypt(material_id, iv, aad, plaintext))
            .map_err(|e| unavailable(store_id, &e))?;
        self.hsm_audit(
            &conn.cluster_id,
            "Encrypt",
            serde_json::json!({"keyHandle": hex::encode(material_id)}),
        );
        Ok(ct)
    }

    /// AES-GCM decryption inside the store's HSMs; authentication failure is InvalidCiphertext.
    pub(crate) fn hsm_decrypt(
        &self,
        store_id: &str,
        material_id: &[u8; 16],
        iv: &[u8; 12],
        aad: &[u8],
        ct: &[u8],
    ) -> Result<kms_crypto::SecretBytes, KmsError> {
        let conn = self.key_store_connection(store_id)?;
        let pt = conn
            .with_any(|s| s.decrypt(material_id, iv, aad, ct))
            .map_err(|e| match e {
                HsmFault::DecryptFailed => KmsError::new(
                    ErrorCode::InvalidCiphertextException,
                    "The ciphertext is invalid, or its encryption context does not match",
                ),
                other => unavailable(store_id, &other),
            })?;
        self.hsm_audit(
            &conn.cluster_id,
            "Decrypt",
            serde_json::json!({"keyHandle": hex::encode(material_id)}),
        );
        Ok(pt)
    }

    /// Random bytes from a CloudHSM key store's cluster (GenerateRandom with CustomKeyStoreId).
    pub(crate) fn hsm_random(
        &self,
        caller: &Caller,
        store_id: &str,
        n: usize,
    ) -> Result<Vec<u8>, KmsError> {
        let store = self
            .load_key_store(store_id)?
            .filter(|k| k.account == caller.account && k.region == caller.region)
            .ok_or_else(|| {
                KmsError::new(
                    ErrorCode::CustomKeyStoreNotFoundException,
                    format!("Custom key store '{store_id}' does not exist"),
                )
            })?;
        if store.store_type != "AWS_CLOUDHSM" {
            return Err(KmsError::new(
                ErrorCode::UnsupportedOperationException,
                "GenerateRandom takes only CloudHSM key stores",
            ));
        }
        if store.connection_state != "CONNECTED" {
            return Err(KmsError::new(
                ErrorCode::CustomKeyStoreInvalidStateException,
                format!(
                    "Custom key store {store_id} is {}, not CONNECTED",
                    store.connection_state
                ),
            ));
        }
        let conn = self.key_store_connection(store_id)?;
        conn.with_any(|s| s.random(n))
            .map_err(|e| unavailable(store_id, &e))
    }

    /// Destroys a deleted key's material on every HSM of its store (best effort: an HSM that is
    /// not reachable keeps an orphan, recorded in the cluster's audit log).
    pub(crate) fn destroy_hsm_key(&self, store_id: &str, cluster_id: &str, material_id: &[u8; 16]) {
        let handle = hex::encode(material_id);
        match self.connections().get(store_id) {
            Some(conn) => {
                for (hsm_id, s) in conn.all() {
                    match s.destroy_key(material_id) {
                        Ok(()) | Err(HsmFault::KeyNotFound) => {
                            self.hsm_audit(cluster_id, "DestroyKey", serde_json::json!({"keyHandle": handle, "hsmId": hsm_id}))
                        }
                        Err(e) => self.hsm_audit(cluster_id, "OrphanKey", serde_json::json!({"keyHandle": handle, "hsmId": hsm_id, "why": e.to_string()})),
                    }
                }
            }
            None => self.hsm_audit(cluster_id, "OrphanKey", serde_json::json!({"keyHandle": handle, "why": "key store not connected when the key was deleted"})),
        }
    }
}

fn label_of(store_id: &str) -> String {
    format!("kmsd:{store_id}")
}
