//! Cluster backups, as CloudHSM makes them: taken by the service (never on request) when a
//! cluster is activated, when an HSM is added to or removed from an active cluster, and at
//! least once every 24 hours (the sweeper); restored
//! onto the first HSM of a cluster that has none (a cluster created from a backup, or one whose
//! HSMs were all deleted).
//!
//! A backup holds the cluster's certificates, its crypto user (with the password sealed under
//! the root key) and every key of the key store, each wrapped inside an HSM under the cluster
//! wrapping key: ciphertext only an HSM holding that wrapping key can unwrap. The wrapping key
//! itself never leaves hardware (CloudHSM uses a manufacturer key kmsd does not have), so a
//! restore takes it, HSM to HSM, from a declared token that still holds it: the token keeping
//! it for the backup history once HSMs are deleted (a backup vault, see [`super::vault`]), one
//! of the HSMs the backup was taken from, or an HSM of a cluster sharing the backup history.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::cluster::{ClusterRecord, HsmRecord};
use super::driver::{HsmFault, HsmSession};
use super::fleet::DeclaredHsm;
use super::keystore::KeyStoreRecord;
use crate::service::Service;
use kms_types::KmsError;

/// Document kind of backups in the store.
pub const BACKUP_DOC: &str = "cloudhsm-backup";

/// One key of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackedUpKey {
    /// The HSM object id (`CKA_ID`, hex).
    pub id_hex: String,
    /// The HSM object label (the KMS key ARN).
    pub label: String,
    /// The key wrapped under the cluster wrapping key (hex).
    pub wrapped_hex: String,
}

/// The crypto user as a backup holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackedUpUser {
    /// User name.
    pub name: String,
    /// Two-factor authentication.
    pub two_factor: bool,
    /// Its password when the backup was taken, sealed under the root key (hex); `None` when
    /// kmsd did not know it.
    pub password_sealed_hex: Option<String>,
}

/// A cluster backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRecord {
    /// Owning account.
    pub account: String,
    /// Region.
    pub region: String,
    /// `backup-...`.
    pub backup_id: String,
    /// The cluster it was taken from.
    pub cluster_id: String,
    /// `READY` or `PENDING_DELETION` (shown as `DELETED` once the deletion time has passed).
    pub state: String,
    /// Creation time (ms).
    pub created_ms: i64,
    /// When a PENDING_DELETION backup is gone (ms).
    pub delete_ms: Option<i64>,
    /// Kept regardless of retention.
    pub never_expires: bool,
    /// HSM type of the cluster.
    pub hsm_type: String,
    /// What made kmsd take it (`ActivateCluster`, `CreateHsm`, `DeleteHsm`).
    pub trigger: String,
    /// Backup history shared by the clusters restored from it.
    pub lineage: String,
    /// The cluster certificate (PEM).
    pub cluster_certificate_pem: Option<String>,
    /// The trust anchor (PEM).
    pub trust_anchor_pem: Option<String>,
    /// The crypto user.
    pub crypto_user: Option<BackedUpUser>,
    /// Id of the cluster wrapping key the keys are wrapped under (hex); `None` without keys.
    pub cluster_key_id_hex: Option<String>,
    /// Tokens that held the cluster wrapping key when the backup was taken.
    pub cluster_key_holders: Vec<String>,
    /// The keys.
    pub keys: Vec<BackedUpKey>,
    /// For a copy (CopyBackupToRegion): the backup it was copied from.
    #[serde(default)]
    pub source_backup: Option<String>,
    /// For a copy: the Region of the backup it was copied from.
    #[serde(default)]
    pub source_region: Option<String>,
    /// For a copy: when it was copied (ms).
    #[serde(default)]
    pub copied_ms: Option<i64>,
}

impl BackupRecord {
    /// The state at `now_ms`.
    pub fn state_at(&self, now_ms: i64) -> &str {
        match self.delete_ms {
            Some(t) if self.state == "PENDING_DELETION" && now_ms >= t => "DELETED",
            _ => &self.state,
        }
    }

    /// `arn:aws:cloudhsm:<region>:<account>:backup/<id>`.
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:cloudhsm:{}:{}:backup/{}",
            self.region, self.account, self.backup_id
        )
    }

    /// The backup as the CloudHSM v2 API shows it.
    pub fn to_wire(&self, now_ms: i64) -> kms_types::cloudhsm::Backup {
        kms_types::cloudhsm::Backup {
            backup_arn: Some(self.arn()),
            backup_id: Some(self.backup_id.clone()),
            backup_state: Some(self.state_at(now_ms).to_owned()),
            cluster_id: Some(self.cluster_id.clone()),
            create_timestamp: Some(kms_types::Timestamp::from_millis(self.created_ms)),
            delete_timestamp: self.delete_ms.map(kms_types::Timestamp::from_millis),
            hsm_type: Some(self.hsm_type.clone()),
            mode: Some("NON_FIPS".into()),
            never_expires: Some(self.never_expires),
            copy_timestamp: self.copied_ms.map(kms_types::Timestamp::from_millis),
            source_backup: self.source_backup.clone(),
            source_region: self.source_region.clone(),
            source_cluster: self
                .source_backup
                .is_some()
                .then(|| self.cluster_id.clone()),
            ..Default::default()
        }
    }
}

fn user_password_aad(cluster_id: &str) -> Vec<u8> {
    format!("kmsd-crypto-user-password|{cluster_id}").into_bytes()
}

fn backup_password_aad(backup_id: &str) -> Vec<u8> {
    format!("kmsd-backup-password|{backup_id}").into_bytes()
}

fn fail(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// A connected key store whose HSM sessions were logged out so this process can log in as SO.
pub(crate) struct PausedStore {
    store_id: String,
    hsms: Vec<(String, DeclaredHsm)>,
    password: Zeroizing<String>,
}

impl Service {
    /// Seals the crypto user's password for the cluster record.
    pub(crate) fn seal_user_password(
        &self,
        cluster_id: &str,
        password: &str,
    ) -> Result<String, KmsError> {
        self.seal_text(&user_password_aad(cluster_id), password)
    }

    /// The key store associated with a cluster, if any.
    pub(crate) fn cluster_key_store(
        &self,
        cluster_id: &str,
    ) -> Result<Option<KeyStoreRecord>, KmsError> {
        Ok(self
            .all_key_stores()?
            .into_iter()
            .find(|s| s.cluster_id.as_deref() == Some(cluster_id)))
    }

    /// The crypto user's current password, as kmsd knows it: the associated key store's (it
    /// rotates it at every connect), else the one the cluster's user was created or restored
    /// with.
    pub(crate) fn crypto_user_password(
        &self,
        c: &ClusterRecord,
    ) -> Result<Option<Zeroizing<String>>, KmsError> {
        if let Some(store) = self.cluster_key_store(&c.cluster_id)? {
            if let Some(sealed) = &store.password_sealed_hex {
                return self.open_password(&store.id, sealed).map(Some);
            }
        }
        self.cluster_user_password(c)
    }

    /// The password kmsd kept in the cluster record (the one the crypto user was created or
    /// restored with, or the last one of a deleted key store).
    pub(crate) fn cluster_user_password(
        &self,
        c: &ClusterRecord,
    ) -> Result<Option<Zeroizing<String>>, KmsError> {
        c.crypto_user
            .as_ref()
            .and_then(|u| u.password_sealed_hex.as_deref())
            .map(|sealed| self.open_text(&user_password_aad(&c.cluster_id), sealed))
            .transpose()
    }

    /// Seals a crypto user password for backup `backup_id`.
    pub(crate) fn seal_backup_password(
        &self,
        backup_id: &str,
        password: &str,
    ) -> Result<String, KmsError> {
        self.seal_text(&backup_password_aad(backup_id), password)
    }

    /// The crypto user password a backup holds.
    pub(crate) fn open_backup_password(
        &self,
        b: &BackupRecord,
        sealed_hex: &str,
    ) -> Result<Zeroizing<String>, KmsError> {
        self.open_text(&backup_password_aad(&b.backup_id), sealed_hex)
    }

    /// The HSM keys (object id, label) of a key store's KMS keys.
    pub(crate) fn hsm_keys_of_store(
        &self,
        store_id: &str,
    ) -> Result<Vec<([u8; 16], String)>, KmsError> {
        Ok(self
            .store()
            .keys_in_custom_key_store(store_id)
            .map_err(|e| KmsError::internal(e.to_string()))?
            .iter()
            .flat_map(|k| {
                let label = k.arn();
                k.materials.iter().filter_map(move |m| {
                    let id = hex::decode(&m.material_id).ok()?.try_into().ok()?;
                    Some((id, label.clone()))
                })
            })
            .collect())
    }

    /// The HSM keys of the key store using a cluster of `c`'s backup history (at most one
    /// store may): what every HSM of `c` should hold.
    pub(crate) fn lineage_keys(
        &self,
        c: &ClusterRecord,
    ) -> Result<Vec<([u8; 16], String)>, KmsError> {
        let mut keys = Vec::new();
        for store in self.all_key_stores()? {
            let Some(cluster) = store.cluster_id.as_deref() else {
                continue;
            };
            if self
                .load_cluster(cluster)?
                .is_some_and(|o| o.lineage == c.lineage)
            {
                keys.extend(self.hsm_keys_of_store(&store.id)?);
            }
        }
        Ok(keys)
    }

    /// Takes a backup of an active cluster. A failure is logged and audited, never fatal to the
    /// operation that triggered it (as in CloudHSM). Returns whether a backup was made.
    pub(crate) async fn backup_cluster(&self, c: &ClusterRecord, trigger: &str) -> bool {
        match self.take_backup(c, trigger).await {
            Ok(b) => {
                self.hsm_audit(
                    &c.cluster_id,
                    "CreateBackup",
                    serde_json::json!({"backupId": b.backup_id, "trigger": trigger, "keys": b.keys.len()}),
                );
                true
            }
            Err(why) => {
                tracing::warn!(cluster = %c.cluster_id, trigger, %why, "cluster backup failed");
                self.hsm_audit(
                    &c.cluster_id,
                    "CreateBackupFailed",
                    serde_json::json!({"trigger": trigger, "reason": why}),
                );
                false
            }
        }
    }

    /// Backs up every ACTIVE cluster whose latest backup is a day old (CloudHSM backs clusters
    /// up at least once every 24 hours); a cluster whose backup failed is retried after an hour.
    /// Returns the number of clusters backed up.
    pub async fn sweep_due_backups(&self) -> Result<usize, KmsError> {
        const DAY_MS: i64 = 24 * 3600 * 1000;
        const RETRY_MS: i64 = 3600 * 1000;
        if self.hsm_env().is_none() {
            return Ok(0);
        }
        let now = self.now_ms();
        let backups = self.all_backups()?;
        let mut done = 0;
        for c in self.all_clusters()? {
            if c.state != "ACTIVE" || c.crypto_user.is_none() || c.active_hsms().next().is_none() {
                continue;
            }
            let latest = backups
                .iter()
                .filter(|b| b.cluster_id == c.cluster_id)
                .map(|b| b.created_ms)
                .max();
            let failed_at = self
                .backup_failures
                .lock()
                .ok()
                .and_then(|f| f.get(&c.cluster_id).copied());
            let due = latest.is_none_or(|t| now - t >= DAY_MS)
                && failed_at.is_none_or(|t| now - t >= RETRY_MS);
            if !due {
                continue;
            }
            let _guard = self.write_section().await?;
            let made = self.backup_cluster(&c, "Periodic").await;
            if let Ok(mut f) = self.backup_failures.lock() {
                if made {
                    f.remove(&c.cluster_id);
                } else {
                    f.insert(c.cluster_id.clone(), now);
                }
            }
            done += usize::from(made);
        }
        Ok(done)
    }

    async fn take_backup(&self, c: &ClusterRecord, trigger: &str) -> Result<BackupRecord, String> {
        let env = self.hsm_env().ok_or("no HSMs declared")?;
        let backup_id = super::cloudhsm_id("backup-", 11).map_err(|e| e.message)?;
        let password = self
            .crypto_user_password(c)
            .map_err(|e| fail("crypto user password", e.message))?;
        let store = self
            .cluster_key_store(&c.cluster_id)
            .map_err(|e| fail("key store", e.message))?;
        let keys = self.lineage_keys(c).map_err(|e| fail("keys", e.message))?;
        let holders: Vec<String> = c.active_hsms().map(|h| h.token_label.clone()).collect();
        let mut wrapped = Vec::new();
        let mut cluster_key_id_hex = None;
        if !keys.is_empty() {
            // Wrapping needs a crypto-user session: the connected store's, else a login.
            let connected: Vec<Arc<dyn HsmSession>> = store
                .as_ref()
                .and_then(|s| self.connections().get(&s.id))
                .map(|conn| conn.all().into_iter().map(|(_, s)| s).collect())
                .unwrap_or_default();
            let fleet = env.fleet.load().map_err(|e| fail("HSM declaration", e))?;
            let declared: Vec<DeclaredHsm> = holders
                .iter()
                .filter_map(|l| fleet.hsm(l).cloned())
                .collect();
            let driver = env.driver.clone();
            let pw = password.clone();
            let keys_c = keys.clone();
            let (cwk, blobs) = tokio::task::spawn_blocking(move || {
                wrap_all(
                    driver.as_ref(),
                    &connected,
                    &declared,
                    pw.as_ref().map(|p| p.as_str()),
                    &keys_c,
                )
            })
            .await
            .map_err(|e| fail("task", e))?
            .map_err(|e| fail("wrapping the keys in the HSMs", e))?;
            cluster_key_id_hex = (!cwk.is_empty()).then(|| hex::encode(cwk));
            wrapped = keys
                .iter()
                .zip(blobs)
                .filter_map(|((id, label), blob)| {
                    Some(BackedUpKey {
                        id_hex: hex::encode(id),
                        label: label.clone(),
                        wrapped_hex: hex::encode(blob?),
                    })
                })
                .collect();
        }
        let password_sealed_hex = password
            .as_ref()
            .map(|p| self.seal_backup_password(&backup_id, p))
            .transpose()
            .map_err(|e| fail("sealing", e.message))?;
        let record = BackupRecord {
            account: c.account.clone(),
            region: c.region.clone(),
            backup_id,
            cluster_id: c.cluster_id.clone(),
            state: "READY".into(),
            created_ms: self.now_ms(),
            delete_ms: None,
            never_expires: false,
            hsm_type: c.hsm_type.clone(),
            trigger: trigger.to_owned(),
            lineage: c.lineage.clone(),
            cluster_certificate_pem: c.cluster_certificate_pem.clone(),
            trust_anchor_pem: c.trust_anchor_pem.clone(),
            crypto_user: c.crypto_user.as_ref().map(|u| BackedUpUser {
                name: u.name.clone(),
                two_factor: u.two_factor,
                password_sealed_hex,
            }),
            cluster_key_id_hex,
            cluster_key_holders: holders,
            keys: wrapped,
            source_backup: None,
            source_region: None,
            copied_ms: None,
        };
        self.commit(vec![Self::put_backup(&record).map_err(|e| e.message)?])
            .await
            .map_err(|e| fail("saving", e.message))?;
        Ok(record)
    }

    /// The backup a cluster without HSMs is restored from: its own latest READY backup, else
    /// the backup it was created from.
    fn backup_to_restore(&self, c: &ClusterRecord) -> Result<Option<BackupRecord>, KmsError> {
        let now = self.now_ms();
        let own = self
            .all_backups()?
            .into_iter()
            .filter(|b| {
                b.cluster_id == c.cluster_id && b.region == c.region && b.state_at(now) == "READY"
            })
            .max_by_key(|b| b.created_ms);
        match own {
            Some(b) => Ok(Some(b)),
            None => match &c.source_backup_id {
                Some(id) => Ok(self
                    .load_backup(&c.account, &c.region, id)?
                    .filter(|b| b.state_at(now) != "DELETED")),
                None => Ok(None),
            },
        }
    }

    /// Restores the cluster's backup onto `added`, the only active HSM of the cluster: the
    /// crypto user, the cluster wrapping key (HSM to HSM) and every key. Returns the number of
    /// keys, or why it failed. Called under the write lock.
    pub(crate) async fn restore_backup_onto(
        &self,
        c: &ClusterRecord,
        added: &HsmRecord,
    ) -> Result<usize, String> {
        let env = self.hsm_env().ok_or("no HSMs declared")?;
        let backup = self
            .backup_to_restore(c)
            .map_err(|e| fail("reading backups", e.message))?
            .ok_or_else(|| format!("cluster {} has no backup to restore", c.cluster_id))?;
        let password = backup
            .crypto_user
            .as_ref()
            .and_then(|u| u.password_sealed_hex.as_deref())
            .map(|s| self.open_backup_password(&backup, s))
            .transpose()
            .map_err(|e| fail("backup password", e.message))?
            .ok_or_else(|| format!("backup {} holds no crypto user password", backup.backup_id))?;
        let fleet = env.fleet.load().map_err(|e| fail("HSM declaration", e))?;
        let with_so = |label: &str| -> Option<(DeclaredHsm, Zeroizing<String>)> {
            let d = fleet.token(label)?;
            let so = env.fleet.so_pin(&d).ok()?;
            Some((d, so))
        };
        let target = with_so(&added.token_label)
            .ok_or_else(|| format!("{} is not declared or has no SO PIN", added.token_label))?;
        // Tokens that may hold the wrapping key: the token keeping it for the backup history
        // (a backup vault, or the last token of a deleted HSM), the backup's, then the HSMs of
        // every cluster sharing its history.
        let mut holders: Vec<String> = self
            .lineage_keeper(&backup.lineage)
            .map_err(|e| fail("reading keepers", e.message))?
            .into_iter()
            .collect();
        holders.extend(backup.cluster_key_holders.iter().cloned());
        for other in self
            .all_clusters()
            .map_err(|e| fail("reading clusters", e.message))?
            .into_iter()
            .filter(|o| o.lineage == backup.lineage)
        {
            holders.extend(other.active_hsms().map(|h| h.token_label.clone()));
        }
        let mut seen = std::collections::HashSet::new();
        holders.retain(|l| *l != added.token_label && seen.insert(l.clone()));
        let sources: Vec<(DeclaredHsm, Zeroizing<String>)> =
            holders.iter().filter_map(|l| with_so(l)).collect();
        let keys: Vec<([u8; 16], String, Vec<u8>)> = backup
            .keys
            .iter()
            .map(|k| {
                let id: [u8; 16] = hex::decode(&k.id_hex)
                    .ok()
                    .and_then(|v| v.try_into().ok())
                    .ok_or_else(|| format!("backup key id {} is invalid", k.id_hex))?;
                let blob = hex::decode(&k.wrapped_hex).map_err(|e| fail("backup key", e))?;
                Ok((id, k.label.clone(), blob))
            })
            .collect::<Result<_, String>>()?;
        let cluster_key = backup
            .cluster_key_id_hex
            .as_deref()
            .map(hex::decode)
            .transpose()
            .map_err(|e| fail("backup cluster key id", e))?;
        // SO logins on a token are refused while this process holds crypto-user sessions on it.
        let paused = self.pause_stores_on(&holders);
        let driver = env.driver.clone();
        let pw = password.clone();
        let result = tokio::task::spawn_blocking(move || {
            restore_on(
                driver.as_ref(),
                &target,
                &sources,
                cluster_key.as_deref(),
                &pw,
                &keys,
            )
        })
        .await
        .map_err(|e| fail("task", e));
        self.resume_stores(paused).await;
        let copied = result?.map_err(|e| fail("restoring in the HSMs", e))?;
        self.hsm_audit(
            &c.cluster_id,
            "RestoreHsmFromBackup",
            serde_json::json!({"backupId": backup.backup_id, "hsmId": added.hsm_id, "keys": copied}),
        );
        self.join_connected_store(c, added).await;
        Ok(copied)
    }

    /// A store of `c` that stayed connected while the cluster had no HSM logs in to `added`
    /// (with its current password) and uses it from now on.
    async fn join_connected_store(&self, c: &ClusterRecord, added: &HsmRecord) {
        let (Some(env), Ok(Some(store))) = (self.hsm_env(), self.cluster_key_store(&c.cluster_id))
        else {
            return;
        };
        let (Some(conn), Some(sealed)) = (
            self.connections().get(&store.id),
            store.password_sealed_hex.as_deref(),
        ) else {
            return;
        };
        let (Ok(password), Ok(fleet)) = (self.open_password(&store.id, sealed), env.fleet.load())
        else {
            return;
        };
        let Some(d) = fleet.hsm(&added.token_label).cloned() else {
            return;
        };
        let driver = env.driver.clone();
        let login = tokio::task::spawn_blocking(move || driver.login(&d, &password)).await;
        match login {
            Ok(Ok(session)) => {
                if let Ok(mut s) = conn.sessions.write() {
                    s.push((added.hsm_id.clone(), session));
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(cluster = %c.cluster_id, hsm = %added.hsm_id, error = %e, "the connected key store could not log in to the restored HSM; reconnect it")
            }
            Err(e) => tracing::warn!(error = %e, "login task failed"),
        }
    }

    /// Logs out the connected CloudHSM key stores with a session on one of `tokens`.
    pub(crate) fn pause_stores_on(&self, tokens: &[String]) -> Vec<PausedStore> {
        let (Some(env), Ok(stores)) = (self.hsm_env(), self.all_key_stores()) else {
            return Vec::new();
        };
        let Ok(fleet) = env.fleet.load() else {
            return Vec::new();
        };
        let mut paused = Vec::new();
        for store in stores
            .into_iter()
            .filter(|s| s.store_type == "AWS_CLOUDHSM")
        {
            let (Some(conn), Some(Ok(Some(cluster)))) = (
                self.connections().get(&store.id),
                store.cluster_id.as_deref().map(|id| self.load_cluster(id)),
            ) else {
                continue;
            };
            let hsms = cluster.declared_active_hsms(&fleet);
            if !hsms.iter().any(|(_, d)| tokens.contains(&d.token_label)) {
                continue;
            }
            let Some(Ok(password)) = store
                .password_sealed_hex
                .as_deref()
                .map(|s| self.open_password(&store.id, s))
            else {
                continue;
            };
            let sessions = conn
                .sessions
                .write()
                .map(|mut s| std::mem::take(&mut *s))
                .unwrap_or_default();
            for (_, s) in sessions {
                s.logout();
            }
            paused.push(PausedStore {
                store_id: store.id,
                hsms,
                password,
            });
        }
        paused
    }

    /// Logs paused key stores in again on every HSM that answers.
    pub(crate) async fn resume_stores(&self, paused: Vec<PausedStore>) {
        let Some(env) = self.hsm_env() else {
            return;
        };
        for p in paused {
            let driver = env.driver.clone();
            let sessions = tokio::task::spawn_blocking(move || {
                p.hsms
                    .iter()
                    .filter_map(|(id, d)| match driver.login(d, &p.password) {
                        Ok(s) => Some((id.clone(), s)),
                        Err(e) => {
                            tracing::warn!(hsm = %id, error = %e, "could not log in again after an HSM administration");
                            None
                        }
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
            if let Some(conn) = self.connections().get(&p.store_id) {
                if let Ok(mut s) = conn.sessions.write() {
                    *s = sessions;
                }
            }
        }
    }
}

/// Blobs of a backup in key order (`None`: the HSM does not hold that key).
type Blobs = Vec<Option<Vec<u8>>>;

/// Wraps every key under the cluster wrapping key, from the first session (connected, else a
/// crypto-user login on a declared HSM) that answers; keys the HSM does not hold (a cluster
/// restored from an older backup) are left out. Returns the wrapping key id and the blobs.
fn wrap_all(
    driver: &dyn super::HsmDriver,
    connected: &[Arc<dyn HsmSession>],
    declared: &[DeclaredHsm],
    password: Option<&str>,
    keys: &[([u8; 16], String)],
) -> Result<(Vec<u8>, Blobs), HsmFault> {
    let wrap = |s: &Arc<dyn HsmSession>| -> Result<(Vec<u8>, Blobs), HsmFault> {
        let mut cwk = Vec::new();
        let mut blobs = Vec::with_capacity(keys.len());
        for (id, _) in keys {
            let (k, blob) = match driver.wrap_for_backup(s, id) {
                Ok(r) => r,
                Err(HsmFault::KeyNotFound) => {
                    blobs.push(None);
                    continue;
                }
                Err(e) => return Err(e),
            };
            if !cwk.is_empty() && cwk != k {
                return Err(HsmFault::Other(
                    "the HSM holds two cluster wrapping keys".into(),
                ));
            }
            cwk = k;
            blobs.push(Some(blob));
        }
        Ok((cwk, blobs))
    };
    let mut last = HsmFault::Unreachable("no active HSM".into());
    for s in connected {
        match wrap(s) {
            Ok(r) => return Ok(r),
            Err(e) => last = e,
        }
    }
    if connected.is_empty() {
        let password = password.ok_or(HsmFault::UserNotFound)?;
        for d in declared {
            let r = driver.login(d, password).and_then(|s| {
                let r = wrap(&s);
                s.logout();
                r
            });
            match r {
                Ok(r) => return Ok(r),
                Err(e) => last = e,
            }
        }
    }
    Err(last)
}

/// In the HSMs: the crypto user on `target`; the cluster wrapping key (from the first source
/// holding `cluster_key`, or a new one when the backup has no keys); then every key unwrapped.
fn restore_on(
    driver: &dyn super::HsmDriver,
    target: &(DeclaredHsm, Zeroizing<String>),
    sources: &[(DeclaredHsm, Zeroizing<String>)],
    cluster_key: Option<&[u8]>,
    password: &str,
    keys: &[([u8; 16], String, Vec<u8>)],
) -> Result<usize, HsmFault> {
    let (new_hsm, new_so) = target;
    driver.create_user(new_hsm, new_so, password)?;
    // What each token holds, asked without changing anything (asking `prepare_cluster` would
    // create a wrapping key on an erased token).
    let key_of = |d: &DeclaredHsm, so: &str| match driver.cluster_key_id(d, so) {
        Ok(id) => id,
        Err(e) => {
            tracing::debug!(token = %d.token_label, error = %e, "not a source of the cluster wrapping key");
            None
        }
    };
    // A backup without keys names no wrapping key: the history's, if a token holds it.
    let cluster_key = match cluster_key {
        Some(k) => k.to_vec(),
        None => match sources.iter().find_map(|(d, so)| key_of(d, so)) {
            Some(k) => k,
            None => {
                driver.prepare_cluster(&[(new_hsm, new_so.as_str())], password)?;
                return Ok(0);
            }
        },
    };
    // A token kept for this history may come back as its HSM, still holding the key.
    if key_of(new_hsm, new_so).as_deref() != Some(cluster_key.as_slice()) {
        let (source, source_so) = sources
            .iter()
            .find(|(d, so)| key_of(d, so).as_deref() == Some(cluster_key.as_slice()))
            .ok_or_else(|| {
                HsmFault::Unreachable(format!(
                    "no declared HSM token still holds the cluster wrapping key {} the backup's keys are wrapped under",
                    hex::encode(&cluster_key)
                ))
            })?;
        driver.prepare_cluster(
            &[(source, source_so.as_str()), (new_hsm, new_so.as_str())],
            password,
        )?;
    }
    let session = driver.login(new_hsm, password)?;
    let r = keys
        .iter()
        .try_for_each(|(id, label, blob)| driver.restore_from_backup(&session, id, label, blob));
    session.logout();
    r.map(|()| keys.len())
}
