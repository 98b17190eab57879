//! Loading and saving clusters and key stores as store documents.

use kms_types::KmsError;

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
    /// A cluster by id (any account).
    pub(crate) fn load_cluster(&self, cluster_id: &str) -> Result<Option<ClusterRecord>, KmsError> {
        self.store()
            .get_doc(CLUSTER_DOC, cluster_id)
            .map_err(corrupt)?
            .map(|b| serde_json::from_str(&b).map_err(corrupt))
            .transpose()
    }

    /// Every cluster (any account).
    pub(crate) fn all_clusters(&self) -> Result<Vec<ClusterRecord>, KmsError> {
        self.store()
            .list_docs(CLUSTER_DOC)
            .map_err(corrupt)?
            .into_iter()
            .map(|(_, b)| serde_json::from_str(&b).map_err(corrupt))
            .collect()
    }

    /// The write that saves a cluster.
    pub(crate) fn put_cluster(c: &ClusterRecord) -> Result<WriteOp, KmsError> {
        Ok(WriteOp::PutDoc {
            kind: CLUSTER_DOC.into(),
            id: c.cluster_id.clone(),
            body: serde_json::to_string(c).map_err(corrupt)?,
        })
    }

    /// A key store by id (any account).
    pub(crate) fn load_key_store(&self, id: &str) -> Result<Option<KeyStoreRecord>, KmsError> {
        self.store()
            .get_doc(KEY_STORE_DOC, id)
            .map_err(corrupt)?
            .map(|b| serde_json::from_str(&b).map_err(corrupt))
            .transpose()
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
        self.store()
            .list_docs(KEY_STORE_DOC)
            .map_err(corrupt)?
            .into_iter()
            .map(|(_, b)| serde_json::from_str(&b).map_err(corrupt))
            .collect()
    }

    /// The write that saves a key store.
    pub(crate) fn put_key_store(k: &KeyStoreRecord) -> Result<WriteOp, KmsError> {
        Ok(WriteOp::PutDoc {
            kind: KEY_STORE_DOC.into(),
            id: k.id.clone(),
            body: serde_json::to_string(k).map_err(corrupt)?,
        })
    }
}
