//! Loading and saving clusters, key stores and backups as store documents, and the secrets
//! (crypto-user passwords) they hold sealed under the root key.

use kms_types::KmsError;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::backup::{BackupRecord, BACKUP_DOC};
use super::cluster::ClusterRecord;
use super::keystore::KeyStoreRecord;
use super::{CLUSTER_DOC, KEY_STORE_DOC};
use crate::service::Service;
use crate::store::WriteOp;

fn corrupt<E: std::fmt::Display>(e: E) -> KmsError {
    tracing::error!(error = %e, "unreadable document in the store");
    KmsError::internal("kmsd hit an internal error reading its own records")
}

/// A custom key store's connection state, as DescribeCustomKeyStores reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStoreState {
    /// `cks-...`
    pub id: String,
    /// `AWS_CLOUDHSM` or `EXTERNAL_KEY_STORE`.
    pub store_type: String,
    /// `DISCONNECTED`, `CONNECTING`, `CONNECTED`, `DISCONNECTING` or `FAILED`.
    pub connection_state: String,
}

impl Service {
    fn load_doc<T: DeserializeOwned>(&self, kind: &str, id: &str) -> Result<Option<T>, KmsError> {
        self.store()
            .get_doc(kind, id)
            .map_err(corrupt)?
            .map(|b| serde_json::from_str(&b).map_err(corrupt))
            .transpose()
    }

    fn all_docs<T: DeserializeOwned>(&self, kind: &str) -> Result<Vec<T>, KmsError> {
        self.store()
            .list_docs(kind)
            .map_err(corrupt)?
            .into_iter()
            .map(|(_, b)| serde_json::from_str(&b).map_err(corrupt))
            .collect()
    }

    fn put_doc<T: Serialize>(kind: &str, id: &str, doc: &T) -> Result<WriteOp, KmsError> {
        Ok(WriteOp::PutDoc {
            kind: kind.into(),
            id: id.into(),
            body: serde_json::to_string(doc).map_err(corrupt)?,
        })
    }

    /// Seals `text` (a password) under the root key, bound to `aad`; hex.
    pub(crate) fn seal_text(&self, aad: &[u8], text: &str) -> Result<String, KmsError> {
        self.root_key()
            .seal(aad, text.as_bytes())
            .map(hex::encode)
            .map_err(|e| {
                tracing::error!(error = %e, "sealing a password failed");
                KmsError::internal("kmsd hit an internal error")
            })
    }

    /// Opens what [`Self::seal_text`] sealed with the same `aad`.
    pub(crate) fn open_text(
        &self,
        aad: &[u8],
        sealed_hex: &str,
    ) -> Result<zeroize::Zeroizing<String>, KmsError> {
        let sealed = hex::decode(sealed_hex).map_err(corrupt)?;
        let plain = self.root_key().open(aad, &sealed).map_err(corrupt)?;
        Ok(zeroize::Zeroizing::new(
            String::from_utf8(plain.to_vec()).map_err(corrupt)?,
        ))
    }

    /// A cluster by id (any account).
    pub(crate) fn load_cluster(&self, cluster_id: &str) -> Result<Option<ClusterRecord>, KmsError> {
        self.load_doc(CLUSTER_DOC, cluster_id)
    }

    /// Every cluster (any account).
    pub(crate) fn all_clusters(&self) -> Result<Vec<ClusterRecord>, KmsError> {
        self.all_docs(CLUSTER_DOC)
    }

    /// The write that saves a cluster.
    pub(crate) fn put_cluster(c: &ClusterRecord) -> Result<WriteOp, KmsError> {
        Self::put_doc(CLUSTER_DOC, &c.cluster_id, c)
    }

    /// A key store by id (any account).
    pub(crate) fn load_key_store(&self, id: &str) -> Result<Option<KeyStoreRecord>, KmsError> {
        self.load_doc(KEY_STORE_DOC, id)
    }

    /// The connection state of every custom key store (any account), for health and metrics.
    pub fn key_store_states(&self) -> Result<Vec<KeyStoreState>, KmsError> {
        Ok(self
            .all_key_stores()?
            .into_iter()
            .map(|k| KeyStoreState {
                id: k.id,
                store_type: k.store_type,
                connection_state: k.connection_state,
            })
            .collect())
    }

    /// Every key store (any account).
    pub(crate) fn all_key_stores(&self) -> Result<Vec<KeyStoreRecord>, KmsError> {
        self.all_docs(KEY_STORE_DOC)
    }

    /// The write that saves a key store.
    pub(crate) fn put_key_store(k: &KeyStoreRecord) -> Result<WriteOp, KmsError> {
        Self::put_doc(KEY_STORE_DOC, &k.id, k)
    }

    /// A backup by id or ARN, of the given account and Region.
    pub(crate) fn load_backup(
        &self,
        account: &str,
        region: &str,
        id_or_arn: &str,
    ) -> Result<Option<BackupRecord>, KmsError> {
        let id = id_or_arn.rsplit('/').next().unwrap_or(id_or_arn);
        Ok(self
            .load_doc::<BackupRecord>(BACKUP_DOC, id)?
            .filter(|b| b.account == account && b.region == region))
    }

    /// Every backup (any account).
    pub(crate) fn all_backups(&self) -> Result<Vec<BackupRecord>, KmsError> {
        self.all_docs(BACKUP_DOC)
    }

    /// The write that saves a backup.
    pub(crate) fn put_backup(b: &BackupRecord) -> Result<WriteOp, KmsError> {
        Self::put_doc(BACKUP_DOC, &b.backup_id, b)
    }
}
