//! The backup operations of the CloudHSM v2 API: DescribeBackups, DeleteBackup, RestoreBackup,
//! ModifyBackupAttributes, CopyBackupToRegion, and CreateCluster's SourceBackupId.

use kms_types::cloudhsm::*;
use kms_types::{ErrorCode, KmsError};

use super::backup::BackupRecord;
use super::cluster::{ClusterRecord, CryptoUser};
use crate::context::Caller;
use crate::service::Service;

/// How long DeleteBackup keeps a backup restorable (CloudHSM: 7 days).
const PENDING_DELETION_MS: i64 = 7 * 24 * 3600 * 1000;

fn not_found(msg: impl Into<String>) -> KmsError {
    KmsError::new(ErrorCode::CloudHsmResourceNotFoundException, msg)
}

fn invalid(msg: impl Into<String>) -> KmsError {
    KmsError::new(ErrorCode::CloudHsmInvalidRequestException, msg)
}

/// CloudHsmInvalidRequestException unless the backup is in `state`.
fn require_state(b: &BackupRecord, state: &str) -> Result<(), KmsError> {
    if b.state == state {
        Ok(())
    } else {
        Err(invalid(format!(
            "Backup {} is {}, not {state}",
            b.backup_id, b.state
        )))
    }
}

impl Service {
    /// Makes a new cluster record a restore of `b`: same backup history, certificates and
    /// crypto user; it becomes ACTIVE once its first HSM holds the backup.
    pub(crate) fn restore_cluster_from(
        &self,
        c: &mut ClusterRecord,
        b: &BackupRecord,
    ) -> Result<(), KmsError> {
        c.lineage = b.lineage.clone();
        c.source_backup_id = Some(b.backup_id.clone());
        c.hsm_type = b.hsm_type.clone();
        c.cluster_certificate_pem = b.cluster_certificate_pem.clone();
        c.trust_anchor_pem = b.trust_anchor_pem.clone();
        c.csr_pem.clear();
        c.csr_spki_hex.clear();
        c.csr_key_sealed_hex.clear();
        c.crypto_user = match &b.crypto_user {
            Some(u) => {
                let password = match &u.password_sealed_hex {
                    Some(sealed) => Some(self.seal_user_password(
                        &c.cluster_id,
                        &self.open_backup_password(b, sealed)?,
                    )?),
                    None => None,
                };
                Some(CryptoUser {
                    name: u.name.clone(),
                    two_factor: u.two_factor,
                    failed_logins: 0,
                    password_sealed_hex: password,
                })
            }
            None => None,
        };
        c.state_message = Some(format!(
            "Restored from {}: create an HSM to receive its users and keys",
            b.backup_id
        ));
        Ok(())
    }

    /// A READY backup of the caller's account and Region, by id or ARN (CreateCluster's
    /// SourceBackupId, CopyBackupToRegion).
    pub(crate) fn ready_backup(&self, caller: &Caller, id: &str) -> Result<BackupRecord, KmsError> {
        let b = self.caller_backup(caller, Some(id))?;
        require_state(&b, "READY")?;
        Ok(b)
    }

    fn caller_backup(&self, caller: &Caller, id: Option<&str>) -> Result<BackupRecord, KmsError> {
        let id = id.unwrap_or_default();
        self.load_backup(&caller.account, &caller.region, id)?
            .filter(|b| b.state_at(self.now_ms()) != "DELETED")
            .ok_or_else(|| not_found(format!("Backup {id} not found")))
    }

    pub(crate) fn describe_backups(
        &self,
        caller: &Caller,
        r: DescribeBackupsRequest,
    ) -> Result<DescribeBackupsResponse, KmsError> {
        let now = self.now_ms();
        let filters = r.filters.unwrap_or_default();
        if let Some(bad) = filters.keys().find(|k| {
            !matches!(
                k.as_str(),
                "backupIds" | "sourceBackupIds" | "clusterIds" | "states" | "neverExpires"
            )
        }) {
            return Err(invalid(format!(
                "Unknown filter {bad}: use backupIds, sourceBackupIds, clusterIds, states or neverExpires"
            )));
        }
        let matches = |name: &str, value: &str| {
            filters
                .get(name)
                .is_none_or(|vs| vs.iter().any(|v| v == value))
        };
        let mut backups: Vec<BackupRecord> = self
            .all_backups()?
            .into_iter()
            .filter(|b| b.account == caller.account && b.region == caller.region)
            .filter(|b| {
                matches("backupIds", &b.backup_id)
                    && matches("clusterIds", &b.cluster_id)
                    && matches("states", b.state_at(now))
                    && matches("neverExpires", &b.never_expires.to_string())
                    // Only copies (CopyBackupToRegion) have a source backup.
                    && filters.get("sourceBackupIds").is_none_or(|ids| {
                        b.source_backup.as_ref().is_some_and(|s| ids.contains(s))
                    })
            })
            .collect();
        backups.sort_by(|a, b| (a.created_ms, &a.backup_id).cmp(&(b.created_ms, &b.backup_id)));
        if !r.sort_ascending.unwrap_or(false) {
            backups.reverse();
        }
        let start: usize = match r.next_token.as_deref() {
            Some(t) => t
                .parse()
                .map_err(|_| invalid("NextToken is not one kmsd issued"))?,
            None => 0,
        };
        let max = r.max_results.unwrap_or(50).clamp(1, 50) as usize;
        let page: Vec<_> = backups.iter().skip(start).take(max).collect();
        let end = start + page.len();
        Ok(DescribeBackupsResponse {
            backups: Some(page.into_iter().map(|b| b.to_wire(now)).collect()),
            next_token: (end < backups.len()).then(|| end.to_string()),
        })
    }

    /// Loads a backup of the caller under the write lock, lets `change` check and modify it,
    /// saves it (auditing `event` when given) and returns it as the API shows it.
    async fn update_backup(
        &self,
        caller: &Caller,
        backup_id: Option<&str>,
        event: Option<&str>,
        change: impl FnOnce(&mut BackupRecord, i64) -> Result<(), KmsError>,
    ) -> Result<Backup, KmsError> {
        let _guard = self.write_section().await?;
        let mut b = self.caller_backup(caller, backup_id)?;
        change(&mut b, self.now_ms())?;
        self.commit(vec![Self::put_backup(&b)?]).await?;
        if let Some(event) = event {
            self.hsm_audit(
                &b.cluster_id,
                event,
                serde_json::json!({"backupId": b.backup_id}),
            );
        }
        Ok(b.to_wire(self.now_ms()))
    }

    pub(crate) async fn delete_backup(
        &self,
        caller: &Caller,
        r: DeleteBackupRequest,
    ) -> Result<DeleteBackupResponse, KmsError> {
        let b = self
            .update_backup(
                caller,
                r.backup_id.as_deref(),
                Some("DeleteBackup"),
                |b, now| {
                    require_state(b, "READY")?;
                    b.state = "PENDING_DELETION".into();
                    b.delete_ms = Some(now + PENDING_DELETION_MS);
                    Ok(())
                },
            )
            .await?;
        Ok(DeleteBackupResponse { backup: Some(b) })
    }

    pub(crate) async fn restore_backup(
        &self,
        caller: &Caller,
        r: RestoreBackupRequest,
    ) -> Result<RestoreBackupResponse, KmsError> {
        let b = self
            .update_backup(
                caller,
                r.backup_id.as_deref(),
                Some("RestoreBackup"),
                |b, _| {
                    require_state(b, "PENDING_DELETION")?;
                    b.state = "READY".into();
                    b.delete_ms = None;
                    Ok(())
                },
            )
            .await?;
        Ok(RestoreBackupResponse { backup: Some(b) })
    }

    pub(crate) async fn modify_backup_attributes(
        &self,
        caller: &Caller,
        r: ModifyBackupAttributesRequest,
    ) -> Result<ModifyBackupAttributesResponse, KmsError> {
        let never_expires = r.never_expires.unwrap_or(false);
        let b = self
            .update_backup(caller, r.backup_id.as_deref(), None, |b, _| {
                b.never_expires = never_expires;
                Ok(())
            })
            .await?;
        Ok(ModifyBackupAttributesResponse { backup: Some(b) })
    }

    /// CopyBackupToRegion: a READY copy in another Region of the account, with the same content
    /// (the keys stay wrapped under the cluster wrapping key; the password is sealed anew).
    pub(crate) async fn copy_backup_to_region(
        &self,
        caller: &Caller,
        r: CopyBackupToRegionRequest,
    ) -> Result<CopyBackupToRegionResponse, KmsError> {
        let _guard = self.write_section().await?;
        let b = self.ready_backup(caller, r.backup_id.as_deref().unwrap_or_default())?;
        let region = r.destination_region.unwrap_or_default();
        // Its form is checked against the model's pattern when the request is parsed.
        if region == b.region {
            return Err(invalid(format!(
                "Backup {} is already in {region}: choose another destination Region",
                b.backup_id
            )));
        }
        let mut copy = b.clone();
        copy.backup_id = super::cloudhsm_id("backup-", 11)?;
        copy.region = region;
        copy.never_expires = false;
        copy.source_backup = Some(b.backup_id.clone());
        copy.source_region = Some(b.region.clone());
        copy.copied_ms = Some(self.now_ms());
        if let Some(u) = copy.crypto_user.as_mut() {
            if let Some(sealed) = &u.password_sealed_hex {
                let password = self.open_backup_password(&b, sealed)?;
                u.password_sealed_hex =
                    Some(self.seal_backup_password(&copy.backup_id, &password)?);
            }
        }
        self.commit(vec![Self::put_backup(&copy)?]).await?;
        self.hsm_audit(
            &b.cluster_id,
            "CopyBackupToRegion",
            serde_json::json!({"backupId": b.backup_id, "destinationBackupId": copy.backup_id, "destinationRegion": copy.region}),
        );
        Ok(CopyBackupToRegionResponse {
            destination_backup: Some(DestinationBackup {
                create_timestamp: Some(kms_types::Timestamp::from_millis(copy.created_ms)),
                source_backup: Some(b.backup_id.clone()),
                source_cluster: Some(b.cluster_id.clone()),
                source_region: Some(b.region.clone()),
            }),
        })
    }
}
