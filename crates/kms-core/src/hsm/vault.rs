//! Erasing the token of a deleted HSM, and where a backup history's cluster wrapping key is kept
//! meanwhile.
//!
//! A backup's keys are wrapped under its history's (lineage's) cluster wrapping key, which only
//! exists inside tokens. When an HSM is deleted its token is erased (re-initialised: every
//! object gone, no crypto user), so that the next CreateHsm, on any cluster, gets a clean token.
//! Before that, if the token holds the wrapping key, the key is kept by a *keeper*:
//!
//! 1. the lineage's backup-vault token (a `[[backup_vault]]` of the declaration, assigned to the
//!    lineage the first time one is needed; the key is copied HSM to HSM, by ECDH);
//! 2. else another active HSM of the lineage, which still holds it (nothing to record);
//! 3. else the freed token itself: it is not erased and stays reserved for its lineage
//!    (CreateHsm hands it to no other cluster) as long as a cluster or backup of that lineage
//!    exists.
//!
//! A keeper record whose lineage has neither a cluster nor a backup (deleted ones excepted) any
//! more is stale: its token is erased when it is handed out again.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::cluster::{ClusterRecord, HsmRecord};
use super::driver::{HsmDriver, HsmFault};
use super::fleet::{DeclaredHsm, HsmFleet};
use crate::service::Service;
use crate::store::WriteOp;
use kms_types::KmsError;

/// Document kind of keeper records (id: the token label).
pub const KEEPER_DOC: &str = "cloudhsm-key-keeper";

/// A token keeping a backup history's cluster wrapping key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeeperRecord {
    /// The token.
    pub token_label: String,
    /// The backup history whose wrapping key it keeps.
    pub lineage: String,
    /// A declared backup vault (else the token of a deleted HSM).
    pub backup_vault: bool,
    /// Since when (ms).
    pub since_ms: i64,
}

/// What became of a freed token.
enum Freed {
    /// Erased; the wrapping key (if it held one) is kept by this token, or by another HSM of
    /// the lineage (`None`).
    Wiped(Option<String>),
    /// Not erased: it is the last token holding its lineage's wrapping key.
    Kept,
}

impl Service {
    fn all_keepers(&self) -> Result<Vec<KeeperRecord>, KmsError> {
        self.store()
            .list_docs(KEEPER_DOC)
            .map_err(|e| KmsError::internal(e.to_string()))?
            .into_iter()
            .map(|(_, b)| serde_json::from_str(&b).map_err(|e| KmsError::internal(e.to_string())))
            .collect()
    }

    fn put_keeper(k: &KeeperRecord) -> Result<WriteOp, KmsError> {
        Ok(WriteOp::PutDoc {
            kind: KEEPER_DOC.into(),
            id: k.token_label.clone(),
            body: serde_json::to_string(k).map_err(|e| KmsError::internal(e.to_string()))?,
        })
    }

    fn delete_keeper(token_label: &str) -> WriteOp {
        WriteOp::DeleteDoc {
            kind: KEEPER_DOC.into(),
            id: token_label.to_owned(),
        }
    }

    /// Whether a cluster or a backup (not yet deleted) of the lineage exists.
    fn lineage_alive(&self, lineage: &str) -> Result<bool, KmsError> {
        let now = self.now_ms();
        Ok(self.all_clusters()?.iter().any(|c| c.lineage == lineage)
            || self
                .all_backups()?
                .iter()
                .any(|b| b.lineage == lineage && b.state_at(now) != "DELETED"))
    }

    /// The live keepers (stale ones left out).
    fn live_keepers(&self) -> Result<Vec<KeeperRecord>, KmsError> {
        let mut live = Vec::new();
        for k in self.all_keepers()? {
            if self.lineage_alive(&k.lineage)? {
                live.push(k);
            }
        }
        Ok(live)
    }

    /// The token keeping the lineage's wrapping key, if any.
    pub(crate) fn lineage_keeper(&self, lineage: &str) -> Result<Option<String>, KmsError> {
        Ok(self
            .all_keepers()?
            .into_iter()
            .find(|k| k.lineage == lineage)
            .map(|k| k.token_label))
    }

    /// Tokens CreateHsm must not hand to a cluster of `lineage`: those keeping another live
    /// lineage's wrapping key.
    pub(crate) fn tokens_kept_from(&self, lineage: &str) -> Result<Vec<String>, KmsError> {
        Ok(self
            .live_keepers()?
            .into_iter()
            .filter(|k| k.lineage != lineage)
            .map(|k| k.token_label)
            .collect())
    }

    /// Called by CreateHsm under the write lock for the token it hands to a cluster of
    /// `lineage`: a stale keeper's token is erased first; the record of a token kept for this
    /// very lineage is dropped (the token becomes an HSM of the lineage again, still holding
    /// its wrapping key). Returns why the token could not be erased.
    pub(crate) async fn claim_token(&self, hsm: &DeclaredHsm, lineage: &str) -> Result<(), String> {
        let keeper = self
            .all_keepers()
            .map_err(|e| e.message)?
            .into_iter()
            .find(|k| k.token_label == hsm.token_label);
        let Some(keeper) = keeper else {
            return Ok(());
        };
        if keeper.lineage != lineage {
            let env = self.hsm_env().ok_or("no HSMs declared")?;
            let so = env.fleet.so_pin(hsm)?;
            let (driver, d) = (env.driver.clone(), hsm.clone());
            tokio::task::spawn_blocking(move || driver.wipe_token(&d, &so))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("erasing the token of a former backup history: {e}"))?;
        }
        self.commit(vec![Self::delete_keeper(&hsm.token_label)])
            .await
            .map_err(|e| e.message)
    }

    /// Erases the token of `removed`, just deleted from `c` (and committed), after making sure
    /// its wrapping key is kept (see the module documentation). Failures are logged and
    /// audited; DeleteHsm itself succeeds, as in CloudHSM.
    pub(crate) async fn release_token(&self, c: &ClusterRecord, removed: &HsmRecord) {
        let outcome = self.try_release_token(c, removed).await;
        let token = &removed.token_label;
        let details = match outcome {
            Ok(Freed::Wiped(keeper)) => serde_json::json!({
                "hsmId": removed.hsm_id, "token": token, "erased": true,
                "clusterKeyKeptBy": keeper,
            }),
            Ok(Freed::Kept) => {
                tracing::warn!(cluster = %c.cluster_id, %token, "the token of the deleted HSM is the last one holding its backup history's wrapping key: kept (declare a [[backup_vault]] token to have it erased)");
                serde_json::json!({
                    "hsmId": removed.hsm_id, "token": token, "erased": false,
                    "reason": "last token holding the backup history's cluster wrapping key and no backup vault available",
                })
            }
            Err(why) => {
                tracing::warn!(cluster = %c.cluster_id, %token, %why, "the token of the deleted HSM was not erased");
                serde_json::json!({
                    "hsmId": removed.hsm_id, "token": token, "erased": false, "reason": why,
                })
            }
        };
        self.hsm_audit(&c.cluster_id, "EraseHsmToken", details);
    }

    async fn try_release_token(
        &self,
        c: &ClusterRecord,
        removed: &HsmRecord,
    ) -> Result<Freed, String> {
        let env = self.hsm_env().ok_or("no HSMs declared")?;
        let fleet = env.fleet.load()?;
        let token = fleet
            .hsm(&removed.token_label)
            .cloned()
            .ok_or_else(|| format!("{} is no longer declared", removed.token_label))?;
        let so = env.fleet.so_pin(&token)?;
        let err = |e: KmsError| e.message;
        let other_holders = self
            .all_clusters()
            .map_err(err)?
            .iter()
            .filter(|o| o.lineage == c.lineage)
            .flat_map(|o| o.active_hsms().map(|h| h.token_label.clone()))
            .any(|l| l != removed.token_label);
        // The keeper: the lineage's, else a declared vault nobody needs (erased first).
        let keeper = match self.lineage_keeper(&c.lineage).map_err(err)? {
            Some(label) if label != removed.token_label => Some((label, false)),
            Some(_) => None,
            None => self
                .free_vault(&fleet, &c.lineage)
                .map_err(err)?
                .map(|l| (l, true)),
        };
        let keeper = keeper
            .and_then(|(l, fresh)| fleet.token(&l).map(|d| (d, fresh)))
            .map(|(d, fresh)| env.fleet.so_pin(&d).map(|so| (d, so, fresh)))
            .transpose()?;
        let driver = env.driver.clone();
        let decision = tokio::task::spawn_blocking(move || {
            keep_then_erase(driver.as_ref(), &token, &so, keeper, other_holders)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        let record = match &decision {
            Decision::Erased {
                kept_by: Some(vault),
                newly_assigned: true,
            } => Some(KeeperRecord {
                token_label: vault.clone(),
                lineage: c.lineage.clone(),
                backup_vault: true,
                since_ms: self.now_ms(),
            }),
            Decision::Erased { .. } => None,
            Decision::Kept => Some(KeeperRecord {
                token_label: removed.token_label.clone(),
                lineage: c.lineage.clone(),
                backup_vault: false,
                since_ms: self.now_ms(),
            }),
        };
        if let Some(r) = &record {
            let mut writes = vec![Self::put_keeper(r).map_err(err)?];
            // A vault now keeps the key: a token kept for the lineage until now is no longer
            // needed (it is erased when handed out again, as a stale keeper).
            if r.backup_vault {
                for old in self.all_keepers().map_err(err)? {
                    if old.lineage == c.lineage && old.token_label != r.token_label {
                        writes.push(Self::delete_keeper(&old.token_label));
                    }
                }
            }
            self.commit(writes).await.map_err(err)?;
        }
        Ok(match decision {
            Decision::Kept => Freed::Kept,
            Decision::Erased { kept_by, .. } => Freed::Wiped(kept_by),
        })
    }

    /// A declared backup vault no live lineage uses.
    fn free_vault(&self, fleet: &HsmFleet, lineage: &str) -> Result<Option<String>, KmsError> {
        let live = self.live_keepers()?;
        Ok(fleet
            .backup_vaults
            .iter()
            .map(|v| v.token_label.clone())
            .find(|l| {
                !live
                    .iter()
                    .any(|k| k.token_label == *l && k.lineage != lineage)
            }))
    }
}

/// What [`keep_then_erase`] did.
enum Decision {
    /// The token was erased; its wrapping key (if any) is kept by `kept_by`, or by another HSM
    /// of the lineage (`None`); `newly_assigned`: a vault now assigned to the lineage (a record
    /// to write).
    Erased {
        kept_by: Option<String>,
        newly_assigned: bool,
    },
    /// The token was kept, the last holder of its wrapping key.
    Kept,
}

/// In the HSMs: copies the token's wrapping key (if any) to `keeper` (a fresh vault is erased
/// first), then erases the token; keeps the token when nothing else would hold the key.
fn keep_then_erase(
    driver: &dyn HsmDriver,
    token: &DeclaredHsm,
    so: &str,
    keeper: Option<(DeclaredHsm, Zeroizing<String>, bool)>,
    other_holders: bool,
) -> Result<Decision, HsmFault> {
    let Some(cwk) = driver.cluster_key_id(token, so)? else {
        erase(driver, token, so)?;
        return Ok(Decision::Erased {
            kept_by: None,
            newly_assigned: false,
        });
    };
    if let Some((vault, vault_so, fresh)) = keeper {
        if fresh {
            driver.wipe_token(&vault, &vault_so)?;
        }
        match driver.prepare_cluster(&[(token, so), (&vault, vault_so.as_str())], "") {
            Ok(id) if id == cwk => {
                erase(driver, token, so)?;
                return Ok(Decision::Erased {
                    kept_by: Some(vault.token_label.clone()),
                    newly_assigned: fresh,
                });
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(vault = %vault.token_label, error = %e, "the backup vault cannot keep the cluster wrapping key")
            }
        }
    }
    if other_holders {
        erase(driver, token, so)?;
        return Ok(Decision::Erased {
            kept_by: None,
            newly_assigned: false,
        });
    }
    Ok(Decision::Kept)
}

/// Erases a token, retrying briefly: a request that was using the deleted HSM's session may
/// still hold it open for a moment.
fn erase(driver: &dyn HsmDriver, token: &DeclaredHsm, so: &str) -> Result<(), HsmFault> {
    let mut last = None;
    for attempt in 0..5 {
        match driver.wipe_token(token, so) {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::debug!(token = %token.token_label, attempt, error = %e, "erasing the token failed");
                last = Some(e);
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
    Err(last.unwrap_or_else(|| HsmFault::Other("erasing the token failed".into())))
}
