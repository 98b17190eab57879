//! Multi-Region keys: ReplicateKey, UpdatePrimaryRegion, and what related keys share.
//!
//! A multi-Region key is one key record per Region with the same `mrk-` key id (records are
//! keyed by Region and key id). Related keys share their key spec, usage, origin and key
//! material (the same material ids, so a ciphertext made in one Region decrypts in another;
//! each record seals the bytes under the root key bound to its own ARN); each has its own
//! policy, description, tags, aliases, grants and state. Every record carries the primary's
//! Region and the replicas' Regions, rewritten together in one transaction.

use kms_types::*;

use super::keys::invalid_state;
use super::policy::{check_policy_document, default_key_policy};
use super::tags::check_new_tags;
use super::{internal, Service};
use crate::context::Caller;
use crate::model::{key_arn, sealing_aad, KeyRecord, MaterialRecord};
use crate::store::WriteOp;

/// UnsupportedOperationException for an operation only a primary key can do.
pub(super) fn not_primary(k: &KeyRecord) -> KmsError {
    KmsError::new(
        ErrorCode::UnsupportedOperationException,
        format!("{} is not a multi-region primary key.", k.arn()),
    )
}

/// UnsupportedOperationException for a replica asked to rotate: rotation belongs to the primary
/// and reaches every replica.
pub(super) fn replica_does_not_rotate(k: &KeyRecord) -> KmsError {
    KmsError::new(
        ErrorCode::UnsupportedOperationException,
        format!(
            "{} is a multi-Region replica key: rotation is managed on its primary key in {}.",
            k.arn(),
            k.primary_region.as_deref().unwrap_or_default()
        ),
    )
}

impl Service {
    /// The records of the other Regions of a multi-Region key (those that exist).
    pub(super) fn related_keys(&self, k: &KeyRecord) -> Result<Vec<KeyRecord>, KmsError> {
        let mut out = Vec::new();
        for region in k.related_regions() {
            if let Some(r) = self.registry.load_key(&region, &k.key_id)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// `m` of key `from`, resealed for the same key in another Region (`to_arn`). Imported
    /// material is copied without its bytes: each Region imports the same material itself.
    fn copy_material(
        &self,
        from: &KeyRecord,
        m: &MaterialRecord,
        to_arn: &str,
    ) -> Result<MaterialRecord, KmsError> {
        let mut copy = m.clone();
        if let Some(i) = copy.imported.as_mut() {
            i.present = false;
            i.valid_to_ms = None;
            copy.sealed_hex.clear();
            return Ok(copy);
        }
        let sealed = hex::decode(&m.sealed_hex).map_err(internal)?;
        let bytes = self
            .root
            .open(&sealing_aad(&from.arn(), &m.material_id), &sealed)
            .map_err(internal)?;
        copy.sealed_hex = hex::encode(
            self.root
                .seal(&sealing_aad(to_arn, &m.material_id), &bytes)
                .map_err(internal)?,
        );
        Ok(copy)
    }

    /// The writes that give every replica of primary `k` its new material `m` (rotation).
    pub(super) fn share_new_material(
        &self,
        k: &KeyRecord,
        m: &MaterialRecord,
    ) -> Result<Vec<WriteOp>, KmsError> {
        if !k.is_primary() {
            return Ok(vec![]);
        }
        let mut ops = Vec::new();
        for mut replica in self.related_keys(k)? {
            let copy = self.copy_material(k, m, &replica.arn())?;
            replica.materials.push(copy);
            ops.push(WriteOp::PutKey(replica));
        }
        Ok(ops)
    }

    /// ReplicateKey: a replica of a multi-Region primary key in another Region of the account.
    pub async fn replicate_key(
        &self,
        caller: &Caller,
        r: ReplicateKeyRequest,
    ) -> Result<ReplicateKeyResponse, KmsError> {
        // The model's RegionType pattern has checked the Region name.
        let target = r.replica_region.clone().unwrap_or_default();
        let policy = match r.policy.clone() {
            Some(p) => {
                check_policy_document(&p)?;
                p
            }
            None => default_key_policy(&caller.account),
        };
        let tags = check_new_tags(&Default::default(), r.tags.as_deref().unwrap_or_default())?;
        let _guard = self.write_section().await?;
        let id = self.resolve(caller, r.key_id.as_deref().unwrap_or_default(), false)?;
        let primary = self
            .registry
            .load_key(&caller.region, &id)?
            .ok_or_else(|| super::key_not_found(&caller.region, &caller.account, &id))?;
        if !primary.multi_region {
            return Err(KmsError::new(
                ErrorCode::UnsupportedOperationException,
                format!("{} is not a multi-region key.", primary.arn()),
            ));
        }
        if !primary.is_primary() {
            return Err(not_primary(&primary));
        }
        if target == primary.region {
            return Err(KmsError::new(
                ErrorCode::ValidationException,
                format!(
                    "The replica Region {target} is the Region of the primary key {}.",
                    primary.arn()
                ),
            ));
        }
        if !matches!(
            primary.state.as_str(),
            "Enabled" | "Disabled" | "PendingImport"
        ) {
            return Err(invalid_state(&primary, &primary.state));
        }
        if primary.replica_regions.contains(&target)
            || self.registry.load_key(&target, &primary.key_id)?.is_some()
        {
            return Err(KmsError::new(
                ErrorCode::AlreadyExistsException,
                format!("A replica of {} already exists in {target}.", primary.arn()),
            ));
        }
        let arn = key_arn(&target, &primary.account, &primary.key_id);
        let mut replica = primary.clone();
        replica.region = target.clone();
        replica.created_ms = self.now_ms();
        replica.description = r.description.clone().unwrap_or_default();
        replica.policy = policy.clone();
        replica.tags = tags;
        replica.rotation = None;
        replica.deletion_date_ms = None;
        replica.pending_window_days = None;
        replica.materials = primary
            .materials
            .iter()
            .map(|m| self.copy_material(&primary, m, &arn))
            .collect::<Result<_, _>>()?;
        replica.state = if primary.origin == "EXTERNAL" {
            // Each Region imports the same material itself, as in AWS.
            "PendingImport".into()
        } else {
            "Enabled".into()
        };
        if r.policy.is_some() && r.bypass_policy_lockout_safety_check != Some(true) {
            self.check_lockout(caller, &policy, &replica)?;
        }
        let mut regions = primary.replica_regions.clone();
        regions.push(target.clone());
        replica.replica_regions = regions.clone();
        let mut ops = vec![WriteOp::PutKey(replica.clone())];
        let mut primary = primary;
        for mut other in self.related_keys(&primary)? {
            other.replica_regions = regions.clone();
            ops.push(WriteOp::PutKey(other));
        }
        primary.replica_regions = regions;
        ops.push(WriteOp::PutKey(primary));
        self.commit(ops).await?;
        let replica_tags = replica
            .tags
            .iter()
            .map(|(k, v)| Tag {
                tag_key: Some(k.clone()),
                tag_value: Some(v.clone()),
            })
            .collect();
        Ok(ReplicateKeyResponse {
            replica_key_metadata: Some(self.metadata(&replica)),
            replica_policy: Some(replica.policy.clone()),
            replica_tags: Some(replica_tags),
        })
    }

    /// UpdatePrimaryRegion: the replica in `PrimaryRegion` becomes the primary key and the
    /// primary a replica (at once; AWS passes through `Updating`).
    pub async fn update_primary_region(
        &self,
        caller: &Caller,
        r: UpdatePrimaryRegionRequest,
    ) -> Result<(), KmsError> {
        let target = r.primary_region.clone().unwrap_or_default();
        let _guard = self.write_section().await?;
        let id = self.resolve(caller, r.key_id.as_deref().unwrap_or_default(), false)?;
        let primary = self
            .registry
            .load_key(&caller.region, &id)?
            .ok_or_else(|| super::key_not_found(&caller.region, &caller.account, &id))?;
        if !primary.is_primary() {
            return Err(not_primary(&primary));
        }
        if target == primary.region {
            return Ok(());
        }
        if !primary.replica_regions.contains(&target) {
            return Err(KmsError::new(
                ErrorCode::NotFoundException,
                format!("{} has no replica in {target}.", primary.arn()),
            ));
        }
        let mut all = self.related_keys(&primary)?;
        all.push(primary);
        for k in &all {
            if !matches!(k.state.as_str(), "Enabled" | "Disabled" | "PendingImport") {
                return Err(invalid_state(k, &k.state));
            }
        }
        let replicas: Vec<String> = all
            .iter()
            .map(|k| k.region.clone())
            .filter(|r| *r != target)
            .collect();
        let mut ops = Vec::new();
        for mut k in all {
            if k.region != target {
                // Automatic rotation is the primary's: it moves with the primary role.
                k.rotation = None;
            }
            k.primary_region = Some(target.clone());
            k.replica_regions = replicas.clone();
            ops.push(WriteOp::PutKey(k));
        }
        self.commit(ops).await
    }

    /// The writes after replica `deleted` is gone: the related keys forget it, and a primary
    /// waiting for its replicas (`PendingReplicaDeletion`) starts its own waiting period.
    pub(crate) fn forget_replica(&self, deleted: &KeyRecord) -> Result<Vec<WriteOp>, KmsError> {
        let mut ops = Vec::new();
        let now = self.now_ms();
        for mut k in self.related_keys(deleted)? {
            k.replica_regions.retain(|r| *r != deleted.region);
            if k.state == "PendingReplicaDeletion" && k.replica_regions.is_empty() {
                let days = k.pending_window_days.unwrap_or(30);
                k.state = "PendingDeletion".into();
                k.deletion_date_ms = Some(now + i64::from(days) * 86_400_000);
            }
            ops.push(WriteOp::PutKey(k));
        }
        Ok(ops)
    }
}
