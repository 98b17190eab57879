//! Key lifecycle: CreateKey, DescribeKey, ListKeys, Enable/DisableKey, Schedule/CancelKeyDeletion,
//! UpdateKeyDescription.

use std::collections::BTreeMap;

use kms_types::*;

use super::paging::{decode_marker, encode_marker, page_limit};
use super::policy::{check_policy_document, default_key_policy};
use super::tags::check_new_tags;
use super::{internal, ts, Service};
use crate::context::Caller;
use crate::model::{key_arn, sealing_aad, KeyRecord, MaterialRecord};
use crate::spec::{
    check_spec_usage, encapsulation_algorithms, encryption_algorithms, key_agreement_algorithms,
    mac_algorithms, signing_algorithms, spec_kind, SpecKind,
};
use crate::store::WriteOp;
use kms_crypto::asymmetric;

const DAY_MS: i64 = 86_400_000;

/// Builds `KeyMetadata` as AWS fills it for this key.
pub(super) fn key_metadata(k: &KeyRecord) -> KeyMetadata {
    let symmetric = k.key_spec == "SYMMETRIC_DEFAULT";
    KeyMetadata {
        aws_account_id: Some(k.account.clone()),
        key_id: Some(k.key_id.clone()),
        arn: Some(k.arn()),
        creation_date: Some(ts(k.created_ms)),
        enabled: Some(k.state == "Enabled"),
        description: Some(k.description.clone()),
        key_usage: Some(k.key_usage.clone()),
        key_state: Some(k.state.clone()),
        deletion_date: if k.state == "PendingDeletion" {
            k.deletion_date_ms.map(ts)
        } else {
            None
        },
        origin: Some(k.origin.clone()),
        key_manager: Some("CUSTOMER".into()),
        customer_master_key_spec: CustomerMasterKeySpec::parse(&k.key_spec)
            .map(|s| s.as_str().to_owned()),
        key_spec: Some(k.key_spec.clone()),
        encryption_algorithms: non_empty(encryption_algorithms(&k.key_spec, &k.key_usage)),
        signing_algorithms: non_empty(
            signing_algorithms(&k.key_spec, &k.key_usage)
                .into_iter()
                .map(String::from)
                .collect(),
        ),
        mac_algorithms: non_empty(mac_algorithms(&k.key_spec)),
        key_agreement_algorithms: non_empty(key_agreement_algorithms(&k.key_usage)),
        encapsulation_algorithms: non_empty(encapsulation_algorithms(&k.key_usage)),
        multi_region: Some(k.multi_region),
        custom_key_store_id: k.custom_key_store_id.clone(),
        cloud_hsm_cluster_id: k.cloud_hsm_cluster_id.clone(),
        xks_key_configuration: k.xks_key_id.as_ref().map(|id| XksKeyConfigurationType {
            id: Some(id.clone()),
        }),
        multi_region_configuration: k.multi_region.then(|| multi_region_configuration(k)),
        current_key_material_id: if symmetric && k.custom_key_store_id.is_none() {
            k.current_material().map(|m| m.key_material_id.clone())
        } else {
            None
        },
        expiration_model: k
            .current_material()
            .and_then(|m| m.imported.as_ref())
            .map(|i| i.expiration_model.clone()),
        valid_to: k
            .current_material()
            .and_then(|m| m.imported.as_ref())
            .filter(|i| i.present)
            .and_then(|i| i.valid_to_ms)
            .map(ts),
        ..Default::default()
    }
}

/// `MultiRegionConfiguration` of a multi-Region key: its type, the primary key and every
/// replica (including this key when it is one), as AWS describes them.
fn multi_region_configuration(k: &KeyRecord) -> MultiRegionConfiguration {
    let primary = k.primary_region.clone().unwrap_or_else(|| k.region.clone());
    let entry = |region: &str| MultiRegionKey {
        arn: Some(key_arn(region, &k.account, &k.key_id)),
        region: Some(region.to_owned()),
    };
    MultiRegionConfiguration {
        multi_region_key_type: Some(
            if primary == k.region {
                "PRIMARY"
            } else {
                "REPLICA"
            }
            .into(),
        ),
        primary_key: Some(entry(&primary)),
        replica_keys: Some(k.replica_regions.iter().map(|r| entry(r)).collect()),
    }
}

fn non_empty(v: Vec<String>) -> Option<Vec<String>> {
    (!v.is_empty()).then_some(v)
}

/// The `KeyMaterialId` for a material id: a digest of public values only.
pub(super) fn key_material_id(key_id: &str, material_id: &str) -> String {
    hex::encode(kms_crypto::sha256(
        format!("kmsd-key-material-id|{key_id}|{material_id}").as_bytes(),
    ))
}

impl Service {
    /// `LimitExceededException` when the caller's account has its quota of keys in the Region.
    fn check_key_quota(&self, caller: &Caller) -> Result<(), KmsError> {
        let quota = self.key_quota.load(std::sync::atomic::Ordering::Relaxed);
        let have = self
            .store
            .count_keys(&caller.account, &caller.region)
            .map_err(internal)?;
        if have >= quota {
            return Err(KmsError::new(
                ErrorCode::LimitExceededException,
                format!(
                    "Account {} already has {have} KMS keys in {}: the quota is {quota} keys per account and Region.",
                    caller.account, caller.region
                ),
            ));
        }
        Ok(())
    }

    /// KeyMetadata with the key's effective state: keys of a custom key store that is not
    /// connected are `Unavailable` (except keys pending deletion, which stay cancellable).
    pub(super) fn metadata(&self, k: &KeyRecord) -> KeyMetadata {
        let mut m = key_metadata(k);
        if let Some(store) = &k.custom_key_store_id {
            if k.state != "PendingDeletion" && !self.key_store_connected(store) {
                m.key_state = Some("Unavailable".into());
                m.enabled = Some(false);
            }
        }
        m
    }

    /// CreateKey.
    pub async fn create_key(
        &self,
        caller: &Caller,
        r: CreateKeyRequest,
    ) -> Result<CreateKeyResponse, KmsError> {
        self.create_key_with_id(caller, r, None).await
    }

    /// CreateKey with a key id chosen by the caller (seed files) instead of a random one.
    pub(crate) async fn create_key_with_id(
        &self,
        caller: &Caller,
        r: CreateKeyRequest,
        fixed_key_id: Option<String>,
    ) -> Result<CreateKeyResponse, KmsError> {
        if r.key_spec.is_some() && r.customer_master_key_spec.is_some() {
            return Err(KmsError::new(
                ErrorCode::ValidationException,
                "You cannot specify KeySpec and CustomerMasterKeySpec in the same request. CustomerMasterKeySpec is deprecated; use KeySpec.",
            ));
        }
        let spec = r
            .key_spec
            .or(r.customer_master_key_spec)
            .unwrap_or_else(|| "SYMMETRIC_DEFAULT".into());
        let kind = spec_kind(&spec)?;
        let usage = check_spec_usage(&spec, r.key_usage.as_deref())?;
        let origin = r.origin.unwrap_or_else(|| "AWS_KMS".into());
        if r.xks_key_id.is_some() && origin != "EXTERNAL_KEY_STORE" {
            return Err(KmsError::new(
                ErrorCode::ValidationException,
                "XksKeyId is valid only when Origin is EXTERNAL_KEY_STORE",
            ));
        }
        let key_store = match &r.custom_key_store_id {
            Some(id) => {
                if spec != "SYMMETRIC_DEFAULT" {
                    return Err(KmsError::new(
                        ErrorCode::UnsupportedOperationException,
                        format!("Keys in custom key stores must be SYMMETRIC_DEFAULT, not {spec}"),
                    ));
                }
                if r.multi_region == Some(true) {
                    return Err(KmsError::new(
                        ErrorCode::UnsupportedOperationException,
                        "Keys in custom key stores cannot be multi-Region keys",
                    ));
                }
                Some(self.key_store_for_new_key(caller, id, &origin)?)
            }
            None if origin == "AWS_CLOUDHSM" || origin == "EXTERNAL_KEY_STORE" => {
                return Err(KmsError::new(
                    ErrorCode::ValidationException,
                    format!("Origin {origin} needs a CustomKeyStoreId"),
                ));
            }
            None => None,
        };
        let external = origin == "EXTERNAL";
        if external && key_store.is_some() {
            return Err(KmsError::new(
                ErrorCode::ValidationException,
                "Origin EXTERNAL (imported key material) cannot be used with a CustomKeyStoreId",
            ));
        }
        if origin != "AWS_KMS" && !external && key_store.is_none() {
            return Err(KmsError::new(
                ErrorCode::UnsupportedOperationException,
                format!("kmsd does not support Origin {origin}"),
            ));
        }
        let policy = match r.policy.clone() {
            Some(p) => {
                check_policy_document(&p)?;
                p
            }
            None => default_key_policy(&caller.account),
        };
        let tags = check_new_tags(&BTreeMap::new(), r.tags.as_deref().unwrap_or_default())?;

        // Checked before any material is made (again before the insert, under the write lock).
        self.check_key_quota(caller)?;
        let multi_region = r.multi_region == Some(true);
        let key_id = if let Some(id) = fixed_key_id {
            id
        } else if multi_region {
            // Multi-Region keys: `mrk-` and 32 hex digits, the same id in every Region.
            format!("mrk-{}", uuid::Uuid::new_v4().simple())
        } else {
            uuid::Uuid::new_v4().to_string()
        };
        let arn = key_arn(&caller.region, &caller.account, &key_id);
        let material_id = hex::encode(kms_crypto::random_array::<16>().map_err(internal)?);
        if r.policy.is_some() && r.bypass_policy_lockout_safety_check != Some(true) {
            let provisional = KeyRecord {
                account: caller.account.clone(),
                region: caller.region.clone(),
                key_id: key_id.clone(),
                created_ms: 0,
                description: String::new(),
                key_spec: spec.clone(),
                key_usage: usage.clone(),
                origin: origin.clone(),
                state: "Enabled".into(),
                deletion_date_ms: None,
                pending_window_days: None,
                policy: policy.clone(),
                tags: tags.clone(),
                materials: vec![],
                multi_region: false,
                public_key_hex: None,
                custom_key_store_id: None,
                cloud_hsm_cluster_id: None,
                xks_key_id: None,
                rotation: None,
                primary_region: None,
                replica_regions: vec![],
            };
            self.check_lockout(caller, &policy, &provisional)?;
        }
        let xks_key_id = r.xks_key_id.clone();
        let hsm_store = key_store
            .as_ref()
            .filter(|k| k.store_type == "AWS_CLOUDHSM");
        if let Some(store) = key_store
            .as_ref()
            .filter(|k| k.store_type == "EXTERNAL_KEY_STORE")
        {
            let id = xks_key_id.as_deref().ok_or_else(|| {
                KmsError::new(
                    ErrorCode::ValidationException,
                    "Origin EXTERNAL_KEY_STORE needs XksKeyId",
                )
            })?;
            self.check_new_xks_key(caller, store, id).await?;
        }
        let mut cloud_hsm_cluster_id = None;
        if let Some(store) = hsm_store {
            let id: [u8; 16] = hex::decode(&material_id)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| internal("bad material id"))?;
            cloud_hsm_cluster_id = Some(self.generate_hsm_key(store, id, &arn).await?);
        }
        let (material, public_key) = match kind {
            // Material of a custom-key-store key lives in the HSMs only; imported material
            // comes later (ImportKeyMaterial).
            _ if hsm_store.is_some() || external => (zeroize::Zeroizing::new(Vec::new()), None),
            SpecKind::Symmetric => (kms_crypto::random_bytes(32).map_err(internal)?, None),
            SpecKind::Hmac(alg) => (asymmetric::hmac_generate_key(alg).map_err(internal)?, None),
            SpecKind::Asymmetric(s) => {
                // RSA key generation takes tens to hundreds of milliseconds: keep it off the async workers.
                let pkcs8 =
                    tokio::task::spawn_blocking(move || asymmetric::generate_private_key(s))
                        .await
                        .map_err(internal)?
                        .map_err(internal)?;
                let spki = asymmetric::public_key_spki(s, &pkcs8).map_err(internal)?;
                (pkcs8, Some(hex::encode(spki)))
            }
        };
        let sealed = if hsm_store.is_some() || external {
            Vec::new()
        } else {
            self.root
                .seal(&sealing_aad(&arn, &material_id), &material)
                .map_err(internal)?
        };
        let now = self.now_ms();
        let record = KeyRecord {
            account: caller.account.clone(),
            region: caller.region.clone(),
            key_id: key_id.clone(),
            created_ms: now,
            description: r.description.unwrap_or_default(),
            key_spec: spec,
            key_usage: usage,
            origin,
            state: if external { "PendingImport" } else { "Enabled" }.into(),
            deletion_date_ms: None,
            pending_window_days: None,
            policy,
            tags,
            materials: if external {
                vec![]
            } else {
                vec![MaterialRecord {
                    key_material_id: key_material_id(&key_id, &material_id),
                    material_id,
                    created_ms: now,
                    sealed_hex: hex::encode(sealed),
                    rotation_type: None,
                    imported: None,
                }]
            },
            multi_region,
            public_key_hex: public_key,
            custom_key_store_id: key_store.as_ref().map(|k| k.id.clone()),
            cloud_hsm_cluster_id,
            xks_key_id: xks_key_id.clone(),
            rotation: None,
            primary_region: multi_region.then(|| caller.region.clone()),
            replica_regions: vec![],
        };
        {
            // Count and insert under the write lock, so concurrent creates cannot overshoot.
            let _guard = self.write_section().await?;
            self.check_key_quota(caller)?;
            self.registry
                .commit_and_cache(vec![WriteOp::PutKey(record.clone())], &record)
                .await?;
        }
        caller.touch(record.arn());
        Ok(CreateKeyResponse {
            key_metadata: Some(self.metadata(&record)),
        })
    }

    /// DescribeKey: any identifier, any state.
    pub async fn describe_key(
        &self,
        caller: &Caller,
        r: DescribeKeyRequest,
    ) -> Result<DescribeKeyResponse, KmsError> {
        super::check_grant_tokens(r.grant_tokens.as_ref())?;
        let k = self.resolve_cached(caller, r.key_id.as_deref().unwrap_or_default(), true)?;
        Ok(DescribeKeyResponse {
            key_metadata: Some(self.metadata(&k.record)),
        })
    }

    /// ListKeys of the caller's account and Region, ordered by key id.
    pub async fn list_keys(
        &self,
        caller: &Caller,
        r: ListKeysRequest,
    ) -> Result<ListKeysResponse, KmsError> {
        let limit = page_limit(r.limit, 1000, 100)?;
        let after = decode_marker(r.marker.as_deref())?;
        let mut keys = self
            .store
            .list_keys(&caller.account, &caller.region, after.as_deref(), limit + 1)
            .map_err(internal)?;
        let truncated = keys.len() > limit;
        keys.truncate(limit);
        Ok(ListKeysResponse {
            next_marker: truncated
                .then(|| keys.last().map(|k| encode_marker(&k.key_id)))
                .flatten(),
            truncated: Some(truncated),
            keys: Some(
                keys.iter()
                    .map(|k| KeyListEntry {
                        key_id: Some(k.key_id.clone()),
                        key_arn: Some(k.arn()),
                    })
                    .collect(),
            ),
        })
    }

    /// EnableKey.
    pub async fn enable_key(&self, caller: &Caller, r: EnableKeyRequest) -> Result<(), KmsError> {
        self.set_enabled(caller, r.key_id.as_deref().unwrap_or_default(), true)
            .await
    }

    /// DisableKey.
    pub async fn disable_key(&self, caller: &Caller, r: DisableKeyRequest) -> Result<(), KmsError> {
        self.set_enabled(caller, r.key_id.as_deref().unwrap_or_default(), false)
            .await
    }

    async fn set_enabled(
        &self,
        caller: &Caller,
        key_id: &str,
        enable: bool,
    ) -> Result<(), KmsError> {
        self.update_key(caller, key_id, |k| {
            match k.state.as_str() {
                "Enabled" | "Disabled" => {}
                other => return Err(invalid_state(k, other)),
            }
            k.state = if enable { "Enabled" } else { "Disabled" }.into();
            Ok(vec![])
        })
        .await
        .map(|_| ())
    }

    /// ScheduleKeyDeletion: 7..30 days (default 30).
    pub async fn schedule_key_deletion(
        &self,
        caller: &Caller,
        r: ScheduleKeyDeletionRequest,
    ) -> Result<ScheduleKeyDeletionResponse, KmsError> {
        let days = r.pending_window_in_days.unwrap_or(30);
        if !(7..=30).contains(&days) {
            return Err(KmsError::new(
                ErrorCode::ValidationException,
                format!("1 validation error detected: Value '{days}' at 'pendingWindowInDays' failed to satisfy constraint: Member must have value between 7 and 30 (inclusive)"),
            ));
        }
        let now = self.now_ms();
        let k = self
            .update_key(caller, r.key_id.as_deref().unwrap_or_default(), |k| {
                if k.state == "PendingDeletion" || k.state == "PendingReplicaDeletion" {
                    return Err(invalid_state(k, &k.state.clone()));
                }
                k.pending_window_days = Some(days);
                if k.is_primary() && !k.replica_regions.is_empty() {
                    // A primary waits for its replicas to be deleted, then for its own window.
                    k.state = "PendingReplicaDeletion".into();
                    k.deletion_date_ms = None;
                } else {
                    k.state = "PendingDeletion".into();
                    k.deletion_date_ms = Some(now + i64::from(days) * DAY_MS);
                }
                Ok(vec![])
            })
            .await?;
        Ok(ScheduleKeyDeletionResponse {
            key_id: Some(k.arn()),
            deletion_date: k.deletion_date_ms.map(ts),
            key_state: Some(k.state),
            pending_window_in_days: Some(days),
        })
    }

    /// CancelKeyDeletion: PendingDeletion -> Disabled.
    pub async fn cancel_key_deletion(
        &self,
        caller: &Caller,
        r: CancelKeyDeletionRequest,
    ) -> Result<CancelKeyDeletionResponse, KmsError> {
        let k = self
            .update_key(caller, r.key_id.as_deref().unwrap_or_default(), |k| {
                if k.state != "PendingDeletion" && k.state != "PendingReplicaDeletion" {
                    return Err(KmsError::new(
                        ErrorCode::KMSInvalidStateException,
                        format!(
                            "{} is not pending deletion (its state is {}).",
                            k.arn(),
                            k.state
                        ),
                    ));
                }
                // Back to Disabled, as AWS; a key without usable material (imported material
                // never imported, deleted or expired) goes back to PendingImport.
                k.state =
                    if k.origin == "EXTERNAL" && k.current_material().is_none_or(|m| !m.usable()) {
                        "PendingImport"
                    } else {
                        "Disabled"
                    }
                    .into();
                k.deletion_date_ms = None;
                k.pending_window_days = None;
                Ok(vec![])
            })
            .await?;
        Ok(CancelKeyDeletionResponse {
            key_id: Some(k.arn()),
        })
    }

    /// UpdateKeyDescription.
    pub async fn update_key_description(
        &self,
        caller: &Caller,
        r: UpdateKeyDescriptionRequest,
    ) -> Result<(), KmsError> {
        let description = r.description.unwrap_or_default();
        self.update_key(caller, r.key_id.as_deref().unwrap_or_default(), |k| {
            reject_pending_deletion(k)?;
            k.description = description;
            Ok(vec![])
        })
        .await
        .map(|_| ())
    }
}

/// `KMSInvalidStateException` for a key whose state forbids the operation.
pub(super) fn invalid_state(k: &KeyRecord, state: &str) -> KmsError {
    let what = match state {
        "PendingDeletion" => "is pending deletion",
        "PendingImport" => "is pending import",
        "PendingReplicaDeletion" => "is pending replica deletion",
        "Unavailable" => "is unavailable",
        "Creating" => "is being created",
        "Updating" => "is being updated",
        _ => "is not in a valid state for this operation",
    };
    KmsError::new(
        ErrorCode::KMSInvalidStateException,
        format!("{} {what}.", k.arn()),
    )
}

/// Management operations that AWS refuses on keys pending deletion.
pub(super) fn reject_pending_deletion(k: &KeyRecord) -> Result<(), KmsError> {
    if k.state == "PendingDeletion" {
        return Err(invalid_state(k, "PendingDeletion"));
    }
    Ok(())
}

/// State rule of the cryptographic operations: `DisabledException` for Disabled keys,
/// `KMSInvalidStateException` for every other state but Enabled.
pub(super) fn check_enabled(k: &KeyRecord) -> Result<(), KmsError> {
    match k.state.as_str() {
        "Enabled" => Ok(()),
        "Disabled" => Err(KmsError::new(
            ErrorCode::DisabledException,
            format!("{} is disabled.", k.arn()),
        )),
        other => Err(invalid_state(k, other)),
    }
}
