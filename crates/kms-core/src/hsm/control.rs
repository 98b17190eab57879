//! The CloudHSM v2 control plane (`BaldrApiService`): clusters and their HSMs.

use std::collections::BTreeMap;

use kms_types::cloudhsm::*;
use kms_types::validate::Validate;
use kms_types::{ErrorCode, KmsError};

use super::cloudhsm_id;
use super::cluster::{ClusterRecord, HsmRecord};
use crate::context::Caller;
use crate::service::Service;

pub(super) fn invalid(msg: impl Into<String>) -> KmsError {
    KmsError::new(ErrorCode::CloudHsmInvalidRequestException, msg)
}

pub(super) fn not_found(msg: impl Into<String>) -> KmsError {
    KmsError::new(ErrorCode::CloudHsmResourceNotFoundException, msg)
}

pub(super) fn internal<E: std::fmt::Display>(e: E) -> KmsError {
    tracing::error!(error = %e, "CloudHSM control plane error");
    KmsError::new(
        ErrorCode::CloudHsmInternalFailureException,
        "kmsd hit an internal error",
    )
}

fn json<T: serde::Serialize>(v: T) -> Result<Vec<u8>, KmsError> {
    serde_json::to_vec(&v).map_err(internal)
}

fn input<T: serde::de::DeserializeOwned + Validate>(body: &[u8]) -> Result<T, KmsError> {
    kms_types::parse_request(body)
}

/// Operations of the CloudHSM v2 API kmsd answers.
pub const SUPPORTED_CLOUDHSM_OPERATIONS: &[&str] = &[
    "CopyBackupToRegion",
    "CreateCluster",
    "CreateHsm",
    "DeleteBackup",
    "DeleteCluster",
    "DeleteHsm",
    "DescribeBackups",
    "DescribeClusters",
    "InitializeCluster",
    "ModifyBackupAttributes",
    "RestoreBackup",
];

impl Service {
    /// Runs a CloudHSM v2 operation (`X-Amz-Target: BaldrApiService.<op>`).
    pub async fn dispatch_cloudhsm(
        &self,
        caller: &Caller,
        op: &str,
        body: &[u8],
    ) -> Result<Vec<u8>, KmsError> {
        if self.hsm_env().is_none() {
            return Err(invalid(
                "this kmsd declares no HSMs (start it with --hsm-config)",
            ));
        }
        self.authorize(caller, &format!("cloudhsm:{op}"), None, "*")?;
        match op {
            "CreateCluster" => json(self.create_cluster(caller, input(body)?).await?),
            "DescribeClusters" => json(self.describe_clusters(caller, input(body)?)?),
            "InitializeCluster" => json(self.initialize_cluster(caller, input(body)?).await?),
            "CreateHsm" => json(self.create_hsm(caller, input(body)?).await?),
            "DeleteHsm" => json(self.delete_hsm(caller, input(body)?).await?),
            "DeleteCluster" => json(self.delete_cluster(caller, input(body)?).await?),
            "DescribeBackups" => json(self.describe_backups(caller, input(body)?)?),
            "DeleteBackup" => json(self.delete_backup(caller, input(body)?).await?),
            "RestoreBackup" => json(self.restore_backup(caller, input(body)?).await?),
            "CopyBackupToRegion" => json(self.copy_backup_to_region(caller, input(body)?).await?),
            "ModifyBackupAttributes" => {
                json(self.modify_backup_attributes(caller, input(body)?).await?)
            }
            other
                if kms_types::cloudhsm::OPERATIONS
                    .iter()
                    .any(|(n, _, _)| *n == other) =>
            {
                Err(KmsError::new(
                    ErrorCode::UnsupportedOperationException,
                    format!("kmsd does not support the CloudHSM operation {other} yet"),
                ))
            }
            other => Err(KmsError::new(
                ErrorCode::UnknownOperationException,
                format!("Operation '{other}' is not a CloudHSM v2 operation"),
            )),
        }
    }

    /// A cluster of the caller's account and Region.
    pub(crate) fn caller_cluster(
        &self,
        caller: &Caller,
        cluster_id: &str,
    ) -> Result<ClusterRecord, KmsError> {
        self.load_cluster(cluster_id)?
            .filter(|c| c.account == caller.account && c.region == caller.region)
            .ok_or_else(|| not_found(format!("Cluster {cluster_id} not found")))
    }

    async fn create_cluster(
        &self,
        caller: &Caller,
        r: CreateClusterRequest,
    ) -> Result<CreateClusterResponse, KmsError> {
        let env = self.hsm_env().ok_or_else(|| invalid("no HSMs declared"))?;
        let fleet = env.fleet.load().map_err(internal)?;
        let source = r
            .source_backup_id
            .as_deref()
            .map(|id| self.ready_backup(caller, id))
            .transpose()?;
        let subnet_ids = r.subnet_ids.unwrap_or_default();
        if subnet_ids.is_empty() {
            return Err(invalid("SubnetIds must name at least one subnet"));
        }
        let mut mapping = BTreeMap::new();
        for id in &subnet_ids {
            let s = fleet
                .subnet(id)
                .ok_or_else(|| invalid(format!("Subnet {id} does not exist")))?;
            if mapping
                .insert(s.availability_zone.clone(), id.clone())
                .is_some()
            {
                return Err(invalid(format!(
                    "Only one subnet per Availability Zone: two given in {}",
                    s.availability_zone
                )));
            }
        }
        let cluster_id = cloudhsm_id("cluster-", 11)?;
        let (key, csr_pem, spki) =
            kms_crypto::x509::cluster_csr(&format!("{cluster_id} HSM:{}", cluster_id.len()))
                .map_err(internal)?;
        let sealed = self
            .root_key()
            .seal(
                format!("kmsd-cluster-csr-key|{cluster_id}").as_bytes(),
                &key,
            )
            .map_err(internal)?;
        let mut record = ClusterRecord {
            account: caller.account.clone(),
            region: caller.region.clone(),
            cluster_id: cluster_id.clone(),
            state: "UNINITIALIZED".into(),
            state_message: None,
            hsm_type: r.hsm_type.unwrap_or_else(|| "hsm1.medium".into()),
            created_ms: self.now_ms(),
            subnet_mapping: mapping,
            security_group: format!(
                "sg-{}",
                hex::encode(kms_crypto::random_array::<9>().map_err(internal)?)[..17].to_owned()
            ),
            vpc_id: "vpc-kmsd".into(),
            hsms: vec![],
            csr_pem,
            csr_spki_hex: hex::encode(spki),
            csr_key_sealed_hex: hex::encode(sealed),
            cluster_certificate_pem: None,
            trust_anchor_pem: None,
            lineage: hex::encode(kms_crypto::random_array::<16>().map_err(internal)?),
            source_backup_id: None,
            crypto_user: None,
        };
        if let Some(b) = &source {
            self.restore_cluster_from(&mut record, b)?;
        }
        self.commit(vec![Self::put_cluster(&record)?]).await?;
        self.hsm_audit(
            &cluster_id,
            "CreateCluster",
            serde_json::json!({"principal": caller.principal_arn}),
        );
        Ok(CreateClusterResponse {
            cluster: Some(record.to_wire()),
        })
    }

    fn describe_clusters(
        &self,
        caller: &Caller,
        r: DescribeClustersRequest,
    ) -> Result<DescribeClustersResponse, KmsError> {
        let filters = r.filters.unwrap_or_default();
        let ids = filters.get("clusterIds");
        let states = filters.get("states");
        let mut clusters: Vec<ClusterRecord> = self
            .all_clusters()?
            .into_iter()
            .filter(|c| c.account == caller.account && c.region == caller.region)
            .filter(|c| ids.is_none_or(|ids| ids.contains(&c.cluster_id)))
            .filter(|c| states.is_none_or(|s| s.contains(&c.state)))
            .collect();
        clusters.sort_by(|a, b| a.cluster_id.cmp(&b.cluster_id));
        let start = match r.next_token.as_deref() {
            Some(t) => clusters
                .iter()
                .position(|c| c.cluster_id.as_str() > t)
                .unwrap_or(clusters.len()),
            None => 0,
        };
        let max = r.max_results.unwrap_or(25).clamp(1, 25) as usize;
        let page: Vec<_> = clusters.iter().skip(start).take(max).collect();
        let next = (start + page.len() < clusters.len())
            .then(|| page.last().map(|c| c.cluster_id.clone()))
            .flatten();
        Ok(DescribeClustersResponse {
            clusters: Some(page.into_iter().map(ClusterRecord::to_wire).collect()),
            next_token: next,
        })
    }

    async fn initialize_cluster(
        &self,
        caller: &Caller,
        r: InitializeClusterRequest,
    ) -> Result<InitializeClusterResponse, KmsError> {
        let _guard = self.write_section().await?;
        let mut c = self.caller_cluster(caller, r.cluster_id.as_deref().unwrap_or_default())?;
        if c.source_backup_id.is_some() {
            return Err(invalid(format!(
                "Cluster {} was created from a backup and is already initialized",
                c.cluster_id
            )));
        }
        if c.state != "UNINITIALIZED" {
            return Err(invalid(format!(
                "Cluster {} is {}, not UNINITIALIZED",
                c.cluster_id, c.state
            )));
        }
        if c.hsms.is_empty() {
            return Err(invalid(format!(
                "Cluster {} has no HSM: create one before initializing the cluster",
                c.cluster_id
            )));
        }
        let signed = r.signed_cert.unwrap_or_default();
        let anchor = r.trust_anchor.unwrap_or_default();
        let spki = hex::decode(&c.csr_spki_hex).map_err(internal)?;
        kms_crypto::x509::verify_cluster_certificate(&signed, &anchor, &spki).map_err(|e| {
            invalid(format!(
                "The signed certificate is not valid for cluster {}: {e}",
                c.cluster_id
            ))
        })?;
        c.cluster_certificate_pem = Some(signed);
        c.trust_anchor_pem = Some(anchor);
        c.state = if c.crypto_user.is_some() {
            "ACTIVE"
        } else {
            "INITIALIZED"
        }
        .into();
        c.state_message = (c.state == "INITIALIZED").then(|| {
            "Create the crypto user (kmsd hsm create-user) to activate the cluster".into()
        });
        self.commit(vec![Self::put_cluster(&c)?]).await?;
        self.hsm_audit(
            &c.cluster_id,
            "InitializeCluster",
            serde_json::json!({"principal": caller.principal_arn}),
        );
        if c.state == "ACTIVE" {
            self.backup_cluster(&c, "ActivateCluster").await;
        }
        Ok(InitializeClusterResponse {
            state: Some(c.state.clone()),
            state_message: c.state_message.clone(),
        })
    }

    async fn create_hsm(
        &self,
        caller: &Caller,
        r: CreateHsmRequest,
    ) -> Result<CreateHsmResponse, KmsError> {
        let env = self.hsm_env().ok_or_else(|| invalid("no HSMs declared"))?;
        let _guard = self.write_section().await?;
        let mut c = self.caller_cluster(caller, r.cluster_id.as_deref().unwrap_or_default())?;
        let az = r.availability_zone.unwrap_or_default();
        let subnet = c.subnet_mapping.get(&az).cloned().ok_or_else(|| {
            invalid(format!(
                "Cluster {} has no subnet in Availability Zone {az}",
                c.cluster_id
            ))
        })?;
        let fleet = env.fleet.load().map_err(internal)?;
        // Tokens of other HSMs, and tokens keeping another backup history's wrapping key.
        let mut used: Vec<String> = self
            .all_clusters()?
            .iter()
            .flat_map(|c| c.hsms.iter().map(|h| h.token_label.clone()))
            .collect();
        used.extend(self.tokens_kept_from(&c.lineage)?);
        let hsm = fleet
            .hsms
            .iter()
            .find(|h| h.availability_zone == az && !used.contains(&h.token_label))
            .ok_or_else(|| {
                KmsError::new(
                    ErrorCode::CloudHsmResourceLimitExceededException,
                    format!("No free HSM is declared in Availability Zone {az}"),
                )
            })?
            .clone();
        let probe = {
            let d = env.driver.clone();
            let h = hsm.clone();
            tokio::task::spawn_blocking(move || d.probe_token(&h))
                .await
                .map_err(internal)?
                .map_err(|e| e.to_string())
        };
        // A token kept for a backup history that no longer exists is erased first.
        let probe = match probe {
            Ok(()) => self.claim_token(&hsm, &c.lineage).await,
            Err(e) => Err(e),
        };
        let n = c.hsms.len() as u8 + 10;
        let record = HsmRecord {
            hsm_id: cloudhsm_id("hsm-", 11)?,
            availability_zone: az,
            subnet_id: subnet,
            eni_id: format!(
                "eni-{}",
                hex::encode(kms_crypto::random_array::<8>().map_err(internal)?)
            ),
            eni_ip: format!("10.0.{}.{}", c.hsms.len() + 1, n),
            token_label: hsm.token_label.clone(),
            state: if probe.is_ok() { "ACTIVE" } else { "DEGRADED" }.into(),
            state_message: probe.err(),
        };
        c.hsms.push(record.clone());
        self.commit(vec![Self::put_cluster(&c)?]).await?;
        self.hsm_audit(
            &c.cluster_id,
            "CreateHsm",
            serde_json::json!({"hsmId": record.hsm_id, "token": record.token_label}),
        );
        // An HSM joining a cluster that has its crypto user gets the user and every key: from
        // the other HSMs, as CloudHSM's cluster sync does, or, when it is the only one, from the
        // cluster's latest backup. If that fails the HSM is DEGRADED with the reason.
        if c.crypto_user.is_some() && record.state == "ACTIVE" {
            let alone = !c.active_hsms().any(|h| h.hsm_id != record.hsm_id);
            let outcome = if alone {
                self.restore_backup_onto(&c, &record).await
            } else {
                self.sync_added_hsm(&c, &record).await.inspect(|keys| {
                    self.hsm_audit(
                        &c.cluster_id,
                        "SyncHsm",
                        serde_json::json!({"hsmId": record.hsm_id, "keys": keys}),
                    )
                })
            };
            match outcome {
                Ok(_) if c.state == "UNINITIALIZED" && c.source_backup_id.is_some() => {
                    // A cluster created from a backup is active once an HSM holds the backup.
                    c.state = "ACTIVE".into();
                    c.state_message = None;
                    self.commit(vec![Self::put_cluster(&c)?]).await?;
                }
                Ok(_) => {}
                Err(why) => {
                    tracing::warn!(cluster = %c.cluster_id, hsm = %record.hsm_id, %why, "HSM not synchronised");
                    if let Some(h) = c.hsms.iter_mut().find(|h| h.hsm_id == record.hsm_id) {
                        h.state = "DEGRADED".into();
                        h.state_message = Some(why);
                    }
                    self.commit(vec![Self::put_cluster(&c)?]).await?;
                }
            }
            if c.state == "ACTIVE" {
                self.backup_cluster(&c, "CreateHsm").await;
            }
        }
        let wire = c
            .to_wire()
            .hsms
            .unwrap_or_default()
            .into_iter()
            .find(|h| h.hsm_id.as_deref() == Some(&record.hsm_id));
        Ok(CreateHsmResponse { hsm: wire })
    }

    async fn delete_hsm(
        &self,
        caller: &Caller,
        r: DeleteHsmRequest,
    ) -> Result<DeleteHsmResponse, KmsError> {
        let _guard = self.write_section().await?;
        let mut c = self.caller_cluster(caller, r.cluster_id.as_deref().unwrap_or_default())?;
        let pos = c
            .hsms
            .iter()
            .position(|h| {
                r.hsm_id.as_deref() == Some(h.hsm_id.as_str())
                    || r.eni_id.as_deref() == Some(h.eni_id.as_str())
                    || r.eni_ip.as_deref() == Some(h.eni_ip.as_str())
            })
            .ok_or_else(|| not_found("HSM not found in the cluster"))?;
        // CloudHSM backs an active cluster up when an HSM is removed (the last one included).
        if c.state == "ACTIVE" && c.crypto_user.is_some() {
            self.backup_cluster(&c, "DeleteHsm").await;
        }
        let removed = c.hsms.remove(pos);
        self.commit(vec![Self::put_cluster(&c)?]).await?;
        self.connections().drop_hsm(&c.cluster_id, &removed.hsm_id);
        self.hsm_audit(
            &c.cluster_id,
            "DeleteHsm",
            serde_json::json!({"hsmId": removed.hsm_id}),
        );
        // As CloudHSM zeroises a deleted HSM: the token is erased (its wrapping key kept first
        // where the backups need it), so the next CreateHsm gets a clean token.
        self.release_token(&c, &removed).await;
        Ok(DeleteHsmResponse {
            hsm_id: Some(removed.hsm_id),
        })
    }

    async fn delete_cluster(
        &self,
        caller: &Caller,
        r: DeleteClusterRequest,
    ) -> Result<DeleteClusterResponse, KmsError> {
        let _guard = self.write_section().await?;
        let mut c = self.caller_cluster(caller, r.cluster_id.as_deref().unwrap_or_default())?;
        if !c.hsms.is_empty() {
            return Err(invalid(format!(
                "Cluster {} still has HSMs: delete them first",
                c.cluster_id
            )));
        }
        self.commit(vec![crate::store::WriteOp::DeleteDoc {
            kind: super::CLUSTER_DOC.into(),
            id: c.cluster_id.clone(),
        }])
        .await?;
        self.hsm_audit(
            &c.cluster_id,
            "DeleteCluster",
            serde_json::json!({"principal": caller.principal_arn}),
        );
        c.state = "DELETED".into();
        Ok(DeleteClusterResponse {
            cluster: Some(c.to_wire()),
        })
    }
}
