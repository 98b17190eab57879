//! Custom key store connection state is cluster-wide: the key store record (in the shared
//! store) says whether a store is CONNECTED, and every node holds its own HSM sessions or XKS
//! proxy target to match it.
//!
//! The node that runs ConnectCustomKeyStore logs in and rotates the `kmsuser` password once,
//! sealing the new one in the record (under the cluster-wide write section, so two nodes
//! connecting at once rotate once: the second finds the store CONNECTED). Every other node,
//! on learning from the change log that a key store or cluster record changed, follows it
//! here: it logs in with the sealed current password (never rotating it), drops its sessions
//! when the store is no longer CONNECTED, and adds or drops sessions of HSMs added to or
//! removed from the cluster. A node starting while a store is CONNECTED does the same.

use std::collections::HashSet;
use std::sync::Arc;

use kms_types::KmsError;

use super::connection::Connection;
use super::keystore::KeyStoreRecord;
use super::users::KMS_USER;
use super::DeclaredHsm;
use crate::service::Service;

/// Store types.
const CLOUDHSM: &str = "AWS_CLOUDHSM";
const EXTERNAL: &str = "EXTERNAL_KEY_STORE";

impl Service {
    /// Brings this node's HSM sessions and XKS proxy targets in line with the key store
    /// records when the change log showed them (or a cluster) changed, or a retry is due.
    /// Cheap otherwise. Called after reading the change log, before each request.
    pub async fn follow_key_stores(&self) {
        if self.connections().follow_idle() {
            return;
        }
        let _following = self.connections().start_following().await;
        if !self.connections().follow_due() {
            return;
        }
        if let Err(e) = self.follow_all_key_stores().await {
            tracing::warn!(error = %e.message, "could not follow the key stores' connection states; trying again shortly");
            self.connections().retry_later();
        }
    }

    /// Follows every key store record, under the write section (so this node's own
    /// connects and disconnects, which hold it, are never seen half done).
    async fn follow_all_key_stores(&self) -> Result<(), KmsError> {
        let _guard = self.write_section().await?;
        let stores = self.all_key_stores()?;
        for store in &stores {
            if let Err(why) = self.follow_key_store(store).await {
                tracing::warn!(custom_key_store = %store.id, why, "this node could not open the sessions of a CONNECTED key store");
                // A node without HSMs declared cannot, until it restarts with them.
                if self.hsm_env().is_some() {
                    self.connections().retry_later();
                }
            }
        }
        // Sessions and targets of stores deleted meanwhile.
        let known: HashSet<&str> = stores.iter().map(|s| s.id.as_str()).collect();
        for id in self.connections().store_ids() {
            if !known.contains(id.as_str()) {
                self.connections().remove(&id);
            }
        }
        for id in self.xks_target_ids() {
            if !known.contains(id.as_str()) {
                self.unregister_xks_target(&id);
            }
        }
        Ok(())
    }

    /// Makes this node's state of one store match its record. Must be called in the write
    /// section. Errs (with why) when the store is CONNECTED but this node could not open any
    /// session to it.
    pub(crate) async fn follow_key_store(&self, store: &KeyStoreRecord) -> Result<(), String> {
        let connected = store.connection_state == "CONNECTED";
        match (store.store_type.as_str(), connected) {
            (CLOUDHSM, true) => self.follow_connected_hsm_store(store).await,
            (EXTERNAL, true) => {
                let target = self.xks_target(store).map_err(|e| e.message)?;
                let current = self.connected_xks_target(&store.id).ok();
                if current.is_none_or(|c| !c.same_proxy(&target)) {
                    self.register_xks_target(&store.id, target);
                }
                Ok(())
            }
            (_, false) => {
                if self.connections().get(&store.id).is_some() {
                    tracing::info!(custom_key_store = %store.id, state = %store.connection_state, "the key store is no longer connected: closing this node's sessions");
                    self.connections().remove(&store.id);
                }
                if self.connected_xks_target(&store.id).is_ok() {
                    self.unregister_xks_target(&store.id);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// A CONNECTED CloudHSM key store: sessions on every active HSM of its cluster, logged in
    /// with the store's current password (or the pending one of an interrupted rotation).
    async fn follow_connected_hsm_store(&self, store: &KeyStoreRecord) -> Result<(), String> {
        let env = self
            .hsm_env()
            .ok_or("this node declares no HSMs (--hsm-config)")?;
        let cluster_id = store.cluster_id.clone().unwrap_or_default();
        let cluster = self
            .load_cluster(&cluster_id)
            .map_err(|e| e.message)?
            .ok_or_else(|| format!("cluster {cluster_id} does not exist"))?;
        let fleet = env.fleet.load()?;
        let active = cluster.declared_active_hsms(&fleet);
        let mut existing = self.connections().get(&store.id);
        if existing
            .as_ref()
            .is_some_and(|c| c.cluster_id != cluster_id)
        {
            // Moved to a related cluster while this node did not look (disconnected, updated,
            // connected again): start over on the new cluster.
            self.connections().remove(&store.id);
            existing = None;
        }
        if let Some(conn) = &existing {
            // Sessions of HSMs removed from the cluster go.
            let gone: Vec<String> = conn
                .all()
                .into_iter()
                .map(|(id, _)| id)
                .filter(|id| !active.iter().any(|(a, _)| a == id))
                .collect();
            for id in gone {
                self.connections().drop_hsm(&cluster_id, &id);
            }
        }
        let have: Vec<String> = existing
            .as_ref()
            .map(|c| c.all().into_iter().map(|(id, _)| id).collect())
            .unwrap_or_default();
        let missing: Vec<(String, DeclaredHsm)> = active
            .into_iter()
            .filter(|(id, _)| !have.contains(id))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut passwords = Vec::new();
        for sealed in [
            &store.password_sealed_hex,
            &store.pending_password_sealed_hex,
        ]
        .into_iter()
        .flatten()
        {
            passwords.push(
                self.open_password(&store.id, sealed)
                    .map_err(|e| e.message)?,
            );
        }
        let driver = env.driver.clone();
        let logins = tokio::task::spawn_blocking(move || {
            missing
                .into_iter()
                .map(|(hsm_id, d)| {
                    let mut last = None;
                    for pw in &passwords {
                        match driver.login(&d, pw) {
                            Ok(s) => return (hsm_id, Ok(s)),
                            Err(e) => last = Some(e),
                        }
                    }
                    (hsm_id, Err(last))
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| e.to_string())?;
        let mut sessions = Vec::new();
        let mut faults = Vec::new();
        for (hsm_id, r) in logins {
            match r {
                Ok(s) => sessions.push((hsm_id, s)),
                Err(e) => faults.push(format!(
                    "{hsm_id}: {}",
                    e.map_or("no password".into(), |e| e.to_string())
                )),
            }
        }
        if !sessions.is_empty() {
            self.hsm_audit(
                &cluster_id,
                "Login",
                serde_json::json!({"user": KMS_USER, "hsms": sessions.len(), "customKeyStoreId": store.id}),
            );
        }
        match existing {
            Some(conn) => {
                if let Ok(mut s) = conn.sessions.write() {
                    s.extend(sessions);
                }
                if !faults.is_empty() {
                    // The store serves from the HSMs this node reached.
                    tracing::warn!(custom_key_store = %store.id, faults = %faults.join("; "), "could not log in to an HSM added to the cluster");
                }
                Ok(())
            }
            None if sessions.is_empty() => Err(format!(
                "no HSM of cluster {cluster_id} accepted the store's password: {}",
                faults.join("; ")
            )),
            None => {
                tracing::info!(custom_key_store = %store.id, hsms = sessions.len(), "the key store is CONNECTED: this node opened its sessions");
                self.connections().insert(
                    &store.id,
                    Arc::new(Connection::new(cluster_id.clone(), sessions)),
                );
                Ok(())
            }
        }
    }
}
