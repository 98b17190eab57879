//! Imported key material (keys of origin `EXTERNAL`): GetParametersForImport,
//! ImportKeyMaterial, DeleteImportedKeyMaterial, and the deletion of material at its `ValidTo`.
//!
//! GetParametersForImport makes a fresh RSA wrapping key pair per call. The import token is the
//! wrapping private key with its key ARN, algorithm and expiry, sealed under the root key (AAD
//! bound to the key ARN): it leaves kmsd only sealed, needs no database row, and works once per
//! import until it expires 24 hours later. Imported material is sealed under the root key like
//! generated material. Its `KeyMaterialId` is a digest of the key id and the material, so a
//! re-import is recognised as "the same material" without keeping the bytes: after deletion or
//! expiry the material record stays (without bytes) and only that material can come back.

use serde::{Deserialize, Serialize};

use kms_crypto::asymmetric::{self, AsymmetricSpec};
use kms_crypto::import_wrap::{self, WrappingAlgorithm};
use kms_types::*;

use super::keys::invalid_state;
use super::{internal, ts, Service};
use crate::context::Caller;
use crate::model::{sealing_aad, ImportedMaterial, KeyRecord, MaterialRecord};
use crate::spec::{spec_kind, SpecKind};
use crate::store::WriteOp;

/// How long the parameters of GetParametersForImport can be used.
const TOKEN_VALIDITY_MS: i64 = 24 * 3_600_000;
/// The furthest `ValidTo` ImportKeyMaterial accepts, from now.
const MAX_VALID_TO_MS: i64 = 365 * 86_400_000;
/// Marks a kmsd import token.
const TOKEN_PREFIX: &[u8] = b"kmsd-import-token-1:";

/// What an import token carries (sealed under the root key; never stored).
#[derive(Serialize, Deserialize)]
struct ImportToken {
    key_arn: String,
    wrapping_algorithm: String,
    /// Modulus length of the wrapping key in bytes.
    rsa_bytes: usize,
    expires_ms: i64,
    /// The wrapping private key, PKCS#8 DER, hex.
    wrapping_pkcs8_hex: String,
}

impl Drop for ImportToken {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.wrapping_pkcs8_hex);
    }
}

fn token_aad(key_arn: &str) -> Vec<u8> {
    format!("kmsd-import-token|{key_arn}").into_bytes()
}

fn invalid_token(k: &KeyRecord) -> KmsError {
    KmsError::new(
        ErrorCode::InvalidImportTokenException,
        format!(
            "The import token is invalid or was not issued for {} by GetParametersForImport.",
            k.arn()
        ),
    )
}

fn incorrect_material(why: &str) -> KmsError {
    KmsError::new(ErrorCode::IncorrectKeyMaterialException, why.to_owned())
}

/// AWS's answer for an import operation on a key whose origin is not EXTERNAL.
fn not_external(k: &KeyRecord) -> KmsError {
    KmsError::new(
        ErrorCode::UnsupportedOperationException,
        format!(
            "{} origin is {} which is not valid for this operation.",
            k.arn(),
            k.origin
        ),
    )
}

/// The `KeyMaterialId` of imported material: a digest of the key id and the material, so the
/// same material imported again into the same key has the same id.
fn imported_material_id(key_id: &str, material: &[u8]) -> String {
    let mut input = format!("kmsd-imported-key-material|{key_id}|").into_bytes();
    input.extend_from_slice(material);
    let id = hex::encode(kms_crypto::sha256(&input));
    zeroize::Zeroize::zeroize(&mut input);
    id
}

/// Checks that `material` is key material of the key's spec; returns the public key (DER SPKI)
/// for asymmetric keys. Wrong material is IncorrectKeyMaterialException.
fn check_material(k: &KeyRecord, material: &[u8]) -> Result<Option<Vec<u8>>, KmsError> {
    match spec_kind(&k.key_spec)? {
        SpecKind::Symmetric if material.len() == 32 => Ok(None),
        SpecKind::Symmetric => Err(incorrect_material(
            "Key material for a SYMMETRIC_DEFAULT key must be 256 bits (32 bytes).",
        )),
        SpecKind::Hmac(_) => {
            let (min, max) = match k.key_spec.as_str() {
                "HMAC_224" => (28, 64),
                "HMAC_256" => (32, 64),
                "HMAC_384" => (48, 128),
                _ => (64, 128),
            };
            if (min..=max).contains(&material.len()) {
                Ok(None)
            } else {
                Err(incorrect_material(&format!(
                    "Key material for an {} key must be {min} to {max} bytes.",
                    k.key_spec
                )))
            }
        }
        SpecKind::Asymmetric(spec) => asymmetric::public_key_spki(spec, material)
            .map(Some)
            .map_err(|_| {
                incorrect_material(&format!(
                    "The key material is not a DER-encoded PKCS#8 private key of key spec {}.",
                    k.key_spec
                ))
            }),
    }
}

/// The ExpirationModel and ValidTo of an import, with AWS's rules.
fn expiration(
    r: &ImportKeyMaterialRequest,
    now_ms: i64,
) -> Result<(String, Option<i64>), KmsError> {
    let model = r
        .expiration_model
        .clone()
        .unwrap_or_else(|| "KEY_MATERIAL_EXPIRES".into());
    let valid_to = r.valid_to.map(|t| t.as_millis());
    match (model.as_str(), valid_to) {
        ("KEY_MATERIAL_EXPIRES", None) => Err(KmsError::new(
            ErrorCode::ValidationException,
            "A validTo date must be set if the ExpirationModel is KEY_MATERIAL_EXPIRES",
        )),
        ("KEY_MATERIAL_EXPIRES", Some(t)) if t <= now_ms => Err(KmsError::new(
            ErrorCode::ValidationException,
            "The validTo date must be in the future.",
        )),
        ("KEY_MATERIAL_EXPIRES", Some(t)) if t > now_ms + MAX_VALID_TO_MS => Err(KmsError::new(
            ErrorCode::ValidationException,
            "The validTo date must be at most 365 days from now.",
        )),
        ("KEY_MATERIAL_DOES_NOT_EXPIRE", Some(_)) => Err(KmsError::new(
            ErrorCode::ValidationException,
            "A validTo date must not be set if the ExpirationModel is KEY_MATERIAL_DOES_NOT_EXPIRE",
        )),
        _ => Ok((model, valid_to)),
    }
}

/// Removes the bytes of material `index` of `k` (deletion or expiry): the record stays so the
/// same material can be imported again. Material still waiting for rotation is dropped whole.
/// The key goes to PendingImport when it has no usable current material left.
fn remove_material(k: &mut KeyRecord, index: usize) {
    if k.materials[index].pending_rotation() {
        k.materials.remove(index);
        return;
    }
    let m = &mut k.materials[index];
    m.sealed_hex.clear();
    if let Some(i) = m.imported.as_mut() {
        i.present = false;
        i.valid_to_ms = None;
    }
    if k.state != "PendingDeletion" && k.current_material().is_none_or(|m| !m.usable()) {
        k.state = "PendingImport".into();
    }
}

impl Service {
    /// GetParametersForImport: a fresh RSA wrapping public key and an import token for it.
    pub async fn get_parameters_for_import(
        &self,
        caller: &Caller,
        r: GetParametersForImportRequest,
    ) -> Result<GetParametersForImportResponse, KmsError> {
        let k = self.resolve_cached(caller, r.key_id.as_deref().unwrap_or_default(), false)?;
        let k = &k.record;
        if k.origin != "EXTERNAL" {
            return Err(not_external(k));
        }
        if !matches!(k.state.as_str(), "PendingImport" | "Enabled" | "Disabled") {
            return Err(invalid_state(k, &k.state));
        }
        let algorithm_name = r.wrapping_algorithm.unwrap_or_default();
        let spec_name = r.wrapping_key_spec.unwrap_or_default();
        if algorithm_name == "SM2PKE" || spec_name == "SM2" {
            return Err(KmsError::new(
                ErrorCode::UnsupportedOperationException,
                "SM2 wrapping keys (SM2PKE) are available only in AWS China Regions.",
            ));
        }
        let algorithm = WrappingAlgorithm::parse(&algorithm_name).ok_or_else(|| {
            KmsError::new(
                ErrorCode::ValidationException,
                format!("WrappingAlgorithm {algorithm_name} is not supported."),
            )
        })?;
        let spec = match spec_name.as_str() {
            "RSA_2048" => AsymmetricSpec::Rsa2048,
            "RSA_3072" => AsymmetricSpec::Rsa3072,
            "RSA_4096" => AsymmetricSpec::Rsa4096,
            other => {
                return Err(KmsError::new(
                    ErrorCode::ValidationException,
                    format!("WrappingKeySpec {other} is not supported."),
                ))
            }
        };
        // RSA key generation takes tens to hundreds of milliseconds: off the async workers.
        let pkcs8 = tokio::task::spawn_blocking(move || asymmetric::generate_private_key(spec))
            .await
            .map_err(internal)?
            .map_err(internal)?;
        let spki = asymmetric::public_key_spki(spec, &pkcs8).map_err(internal)?;
        let expires_ms = self.now_ms() + TOKEN_VALIDITY_MS;
        let token = ImportToken {
            key_arn: k.arn(),
            wrapping_algorithm: algorithm.as_str().into(),
            rsa_bytes: spec.rsa_bits().unwrap_or(0) / 8,
            expires_ms,
            wrapping_pkcs8_hex: hex::encode(&*pkcs8),
        };
        let plain = zeroize::Zeroizing::new(serde_json::to_vec(&token).map_err(internal)?);
        let mut blob = TOKEN_PREFIX.to_vec();
        blob.extend(
            self.root
                .seal(&token_aad(&k.arn()), &plain)
                .map_err(internal)?,
        );
        Ok(GetParametersForImportResponse {
            key_id: Some(k.arn()),
            import_token: Some(Blob::new(blob)),
            public_key: Some(Blob::new(spki)),
            parameters_valid_to: Some(ts(expires_ms)),
        })
    }

    /// Opens an import token for key `k`: InvalidImportTokenException unless kmsd issued it for
    /// this key, ExpiredImportTokenException after its 24 hours.
    fn open_import_token(&self, k: &KeyRecord, blob: &[u8]) -> Result<ImportToken, KmsError> {
        let sealed = blob
            .strip_prefix(TOKEN_PREFIX)
            .ok_or_else(|| invalid_token(k))?;
        let plain = self
            .root
            .open(&token_aad(&k.arn()), sealed)
            .map_err(|_| invalid_token(k))?;
        let token: ImportToken = serde_json::from_slice(&plain).map_err(|_| invalid_token(k))?;
        if token.key_arn != k.arn() {
            return Err(invalid_token(k));
        }
        if token.expires_ms <= self.now_ms() {
            return Err(KmsError::new(
                ErrorCode::ExpiredImportTokenException,
                "The import token has expired: call GetParametersForImport again.",
            ));
        }
        Ok(token)
    }

    /// ImportKeyMaterial: the first material of a key, the same material again (after deletion
    /// or expiry, or to change its expiration), or new material for rotation (symmetric keys).
    pub async fn import_key_material(
        &self,
        caller: &Caller,
        r: ImportKeyMaterialRequest,
    ) -> Result<ImportKeyMaterialResponse, KmsError> {
        let key_ref = r.key_id.clone().unwrap_or_default();
        let cached = self.resolve_cached(caller, &key_ref, false)?;
        let k = &cached.record;
        if k.origin != "EXTERNAL" {
            return Err(not_external(k));
        }
        if !matches!(k.state.as_str(), "PendingImport" | "Enabled" | "Disabled") {
            return Err(invalid_state(k, &k.state));
        }
        let token = self.open_import_token(
            k,
            r.import_token
                .as_ref()
                .map(|b| b.as_bytes())
                .unwrap_or_default(),
        )?;
        let algorithm =
            WrappingAlgorithm::parse(&token.wrapping_algorithm).ok_or_else(|| invalid_token(k))?;
        let wrapping_key =
            zeroize::Zeroizing::new(hex::decode(&token.wrapping_pkcs8_hex).map_err(internal)?);
        let material = import_wrap::unwrap_material(
            &wrapping_key,
            token.rsa_bytes,
            algorithm,
            r.encrypted_key_material
                .as_ref()
                .map(|b| b.as_bytes())
                .unwrap_or_default(),
        )
        .map_err(|_| KmsError::new(ErrorCode::InvalidCiphertextException, ""))?;
        let public_key = check_material(k, &material)?;
        let now = self.now_ms();
        let (expiration_model, valid_to_ms) = expiration(&r, now)?;
        let symmetric = k.key_spec == "SYMMETRIC_DEFAULT";
        if !symmetric
            && (r.import_type.is_some()
                || r.key_material_id.is_some()
                || r.key_material_description.is_some())
        {
            return Err(KmsError::new(
                ErrorCode::ValidationException,
                "ImportType, KeyMaterialId and KeyMaterialDescription are valid only for symmetric encryption keys.",
            ));
        }
        let computed_id = imported_material_id(&k.key_id, &material);
        let arn = k.arn();
        // A multi-Region replica imports the material of its primary, under the same
        // material id (so ciphertexts decrypt in every Region).
        let replica = k.multi_region && !k.is_primary();
        let primary_materials = match (&k.primary_region, replica) {
            (Some(region), true) => self
                .registry
                .load_key(region, &k.key_id)?
                .map(|p| p.materials)
                .unwrap_or_default(),
            _ => vec![],
        };

        let updated = self
            .update_key(caller, &key_ref, |k| {
                let import_type = r.import_type.clone().unwrap_or_else(|| {
                    if k.materials.is_empty() && !replica {
                        "NEW_KEY_MATERIAL".into()
                    } else {
                        "EXISTING_KEY_MATERIAL".into()
                    }
                });
                let settings = |description: Option<String>| ImportedMaterial {
                    expiration_model: expiration_model.clone(),
                    valid_to_ms,
                    description: r.key_material_description.clone().or(description),
                    present: true,
                    pending_rotation: false,
                };
                let index = match import_type.as_str() {
                    "NEW_KEY_MATERIAL" => {
                        if r.key_material_id.is_some() {
                            return Err(KmsError::new(
                                ErrorCode::ValidationException,
                                "KeyMaterialId cannot be specified when ImportType is NEW_KEY_MATERIAL.",
                            ));
                        }
                        if k.materials.iter().any(|m| m.key_material_id == computed_id) {
                            return Err(incorrect_material(
                                "This key material was already imported into this KMS key: import it again with ImportType EXISTING_KEY_MATERIAL.",
                            ));
                        }
                        if let Some(pending) = k.materials.iter().find(|m| m.pending_rotation()) {
                            return Err(KmsError::new(
                                ErrorCode::KMSInvalidStateException,
                                format!(
                                    "New key material (id: {computed_id}) cannot be imported into KMS key {}, because another key material (id: {}) is pending rotation.",
                                    k.key_id, pending.key_material_id
                                ),
                            ));
                        }
                        let first = k.materials.is_empty();
                        if replica {
                            return Err(KmsError::new(
                                ErrorCode::ValidationException,
                                "New key material is imported into the multi-Region primary key; import the same material into its replicas with ImportType EXISTING_KEY_MATERIAL.",
                            ));
                        }
                        if !first && k.multi_region {
                            return Err(KmsError::new(
                                ErrorCode::UnsupportedOperationException,
                                "kmsd does not rotate the imported key material of multi-Region keys.",
                            ));
                        }
                        if !first && !symmetric {
                            return Err(incorrect_material(
                                "Asymmetric and HMAC keys take no new key material after the first import.",
                            ));
                        }
                        let material_id =
                            hex::encode(kms_crypto::random_array::<16>().map_err(internal)?);
                        let mut imported = settings(None);
                        imported.pending_rotation = !first;
                        k.materials.push(MaterialRecord {
                            material_id,
                            key_material_id: computed_id.clone(),
                            created_ms: now,
                            sealed_hex: String::new(),
                            rotation_type: None,
                            imported: Some(imported),
                        });
                        if let Some(spki) = &public_key {
                            k.public_key_hex = Some(hex::encode(spki));
                        }
                        k.materials.len() - 1
                    }
                    _ => {
                        let wanted = r.key_material_id.as_deref().unwrap_or(&computed_id);
                        if wanted != computed_id {
                            return Err(incorrect_material(
                                "The key material does not match the KeyMaterialId in the request.",
                            ));
                        }
                        if replica && !k.materials.iter().any(|m| m.key_material_id == computed_id) {
                            if let Some(m) = primary_materials
                                .iter()
                                .find(|m| m.key_material_id == computed_id)
                            {
                                let mut copy = m.clone();
                                copy.sealed_hex.clear();
                                k.materials.push(copy);
                            }
                        }
                        let index = k
                            .materials
                            .iter()
                            .position(|m| m.key_material_id == computed_id)
                            .ok_or_else(|| {
                                incorrect_material(
                                    "The key material is not the key material previously imported into this KMS key.",
                                )
                            })?;
                        let m = &mut k.materials[index];
                        let old = m.imported.take();
                        let mut imported = settings(old.as_ref().and_then(|o| o.description.clone()));
                        imported.pending_rotation = old.is_some_and(|o| o.pending_rotation);
                        m.imported = Some(imported);
                        index
                    }
                };
                let m = &mut k.materials[index];
                m.sealed_hex = hex::encode(
                    self.root
                        .seal(&sealing_aad(&arn, &m.material_id), &material)
                        .map_err(internal)?,
                );
                if k.state == "PendingImport" && k.current_material().is_some_and(|m| m.usable()) {
                    k.state = "Enabled".into();
                }
                Ok(vec![])
            })
            .await?;
        Ok(ImportKeyMaterialResponse {
            key_id: Some(updated.arn()),
            key_material_id: Some(computed_id),
        })
    }

    /// Installs fixed material into an EXTERNAL key that has none (seed files, a test
    /// feature): the material as if imported with KEY_MATERIAL_DOES_NOT_EXPIRE, its material id
    /// derived from the key id and the material, so ciphertexts made under the same seed on
    /// another data dir decrypt here too.
    pub(crate) async fn seed_material(
        &self,
        caller: &Caller,
        key_id: &str,
        material: &[u8],
    ) -> Result<(), KmsError> {
        let cached = self.resolve_cached(caller, key_id, false)?;
        let public_key = check_material(&cached.record, material)?;
        let computed_id = imported_material_id(&cached.record.key_id, material);
        let material_id = computed_id[..32].to_owned();
        let arn = cached.record.arn();
        let now = self.now_ms();
        self.update_key(caller, key_id, |k| {
            if !k.materials.is_empty() {
                return Ok(vec![]);
            }
            let sealed = self
                .root
                .seal(&sealing_aad(&arn, &material_id), material)
                .map_err(internal)?;
            k.materials.push(MaterialRecord {
                material_id: material_id.clone(),
                key_material_id: computed_id.clone(),
                created_ms: now,
                sealed_hex: hex::encode(sealed),
                rotation_type: None,
                imported: Some(ImportedMaterial {
                    expiration_model: "KEY_MATERIAL_DOES_NOT_EXPIRE".into(),
                    valid_to_ms: None,
                    description: Some("seeded".into()),
                    present: true,
                    pending_rotation: false,
                }),
            });
            if let Some(spki) = &public_key {
                k.public_key_hex = Some(hex::encode(spki));
            }
            k.state = "Enabled".into();
            Ok(vec![])
        })
        .await
        .map(|_| ())
    }

    /// DeleteImportedKeyMaterial: deletes the current (or the named) imported material.
    pub async fn delete_imported_key_material(
        &self,
        caller: &Caller,
        r: DeleteImportedKeyMaterialRequest,
    ) -> Result<DeleteImportedKeyMaterialResponse, KmsError> {
        let mut deleted = String::new();
        let k = self
            .update_key(caller, r.key_id.as_deref().unwrap_or_default(), |k| {
                if k.origin != "EXTERNAL" {
                    return Err(not_external(k));
                }
                if !matches!(
                    k.state.as_str(),
                    "PendingImport" | "Enabled" | "Disabled" | "PendingDeletion"
                ) {
                    return Err(invalid_state(k, &k.state));
                }
                let index = match &r.key_material_id {
                    Some(id) => k.materials.iter().position(|m| &m.key_material_id == id),
                    None => {
                        let current = k.current_material().map(|m| m.material_id.clone());
                        k.materials
                            .iter()
                            .position(|m| Some(&m.material_id) == current.as_ref())
                    }
                }
                .ok_or_else(|| {
                    KmsError::new(
                        ErrorCode::NotFoundException,
                        format!(
                            "{} has no imported key material {}",
                            k.arn(),
                            r.key_material_id.as_deref().unwrap_or("to delete")
                        ),
                    )
                })?;
                deleted = k.materials[index].key_material_id.clone();
                remove_material(k, index);
                Ok(vec![])
            })
            .await?;
        Ok(DeleteImportedKeyMaterialResponse {
            key_id: Some(k.arn()),
            key_material_id: Some(deleted),
        })
    }

    /// Deletes imported material whose `ValidTo` has passed (a `DeleteExpiredKeyMaterial`
    /// service event each); returns how many keys lost material. The binary calls this with
    /// the other sweeps; tests call it after moving a [`crate::ManualClock`].
    pub async fn sweep_expired_key_material(&self) -> Result<usize, KmsError> {
        let _guard = self.write_section().await?;
        let now = self.now_ms();
        let due = self
            .store
            .keys_with_expired_material(now)
            .map_err(internal)?;
        let mut swept = 0;
        for mut k in due {
            let expired: Vec<usize> = k
                .materials
                .iter()
                .enumerate()
                .filter(|(_, m)| {
                    m.imported
                        .as_ref()
                        .is_some_and(|i| i.present && i.valid_to_ms.is_some_and(|t| t <= now))
                })
                .map(|(i, _)| i)
                .collect();
            // From the end, so the indexes stay valid when pending material is dropped whole.
            for i in expired.into_iter().rev() {
                remove_material(&mut k, i);
            }
            self.commit(vec![WriteOp::PutKey(k.clone())]).await?;
            tracing::info!(key_arn = %k.arn(), "deleted imported key material at its ValidTo");
            if let Some(sink) = self.event_sink() {
                sink.key_material_expired(&k.arn(), &k.account, &k.region, now);
            }
            swept += 1;
        }
        Ok(swept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(spec: &str) -> KeyRecord {
        KeyRecord {
            account: "111122223333".into(),
            region: "us-east-1".into(),
            key_id: "1234abcd-12ab-34cd-56ef-1234567890ab".into(),
            created_ms: 0,
            description: String::new(),
            key_spec: spec.into(),
            key_usage: "ENCRYPT_DECRYPT".into(),
            origin: "EXTERNAL".into(),
            state: "PendingImport".into(),
            deletion_date_ms: None,
            pending_window_days: None,
            policy: String::new(),
            tags: Default::default(),
            materials: vec![],
            multi_region: false,
            public_key_hex: None,
            custom_key_store_id: None,
            cloud_hsm_cluster_id: None,
            xks_key_id: None,
            rotation: None,
            primary_region: None,
            replica_regions: vec![],
        }
    }

    #[test]
    fn material_lengths_follow_the_key_spec() {
        assert!(check_material(&key("SYMMETRIC_DEFAULT"), &[1; 32]).is_ok());
        for bad in [16, 31, 33, 64] {
            let e = check_material(&key("SYMMETRIC_DEFAULT"), &vec![1; bad]).unwrap_err();
            assert_eq!(e.code, ErrorCode::IncorrectKeyMaterialException);
        }
        for (spec, min, max) in [
            ("HMAC_224", 28, 64),
            ("HMAC_256", 32, 64),
            ("HMAC_384", 48, 128),
            ("HMAC_512", 64, 128),
        ] {
            assert!(check_material(&key(spec), &vec![1; min]).is_ok());
            assert!(check_material(&key(spec), &vec![1; max]).is_ok());
            assert!(check_material(&key(spec), &vec![1; min - 1]).is_err());
            assert!(check_material(&key(spec), &vec![1; max + 1]).is_err());
        }
        assert!(check_material(&key("ECC_NIST_P256"), &[1; 32]).is_err());
    }

    #[test]
    fn expiration_rules() {
        let now = 1_000_000;
        let req = |model: Option<&str>, valid_to: Option<i64>| ImportKeyMaterialRequest {
            expiration_model: model.map(str::to_owned),
            valid_to: valid_to.map(Timestamp::from_millis),
            ..Default::default()
        };
        let e = expiration(&req(None, None), now).unwrap_err();
        assert_eq!(
            e.message,
            "A validTo date must be set if the ExpirationModel is KEY_MATERIAL_EXPIRES"
        );
        assert!(expiration(&req(None, Some(now + 1000)), now).is_ok());
        assert!(expiration(&req(None, Some(now)), now).is_err());
        assert!(expiration(&req(None, Some(now + MAX_VALID_TO_MS)), now).is_ok());
        assert!(expiration(&req(None, Some(now + MAX_VALID_TO_MS + 1)), now).is_err());
        let never = Some("KEY_MATERIAL_DOES_NOT_EXPIRE");
        assert_eq!(
            expiration(&req(never, None), now).unwrap(),
            ("KEY_MATERIAL_DOES_NOT_EXPIRE".into(), None)
        );
        assert!(expiration(&req(never, Some(now + 1000)), now).is_err());
    }

    #[test]
    fn the_same_material_has_the_same_id_in_one_key_only() {
        let a = imported_material_id("key-a", &[7; 32]);
        assert_eq!(a, imported_material_id("key-a", &[7; 32]));
        assert_ne!(a, imported_material_id("key-b", &[7; 32]));
        assert_ne!(a, imported_material_id("key-a", &[8; 32]));
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn deleting_the_current_material_makes_the_key_pending_import() {
        let mut k = key("SYMMETRIC_DEFAULT");
        k.state = "Enabled".into();
        let material = |pending: bool| MaterialRecord {
            material_id: "00".repeat(16),
            key_material_id: "id".into(),
            created_ms: 0,
            sealed_hex: "ab".into(),
            rotation_type: None,
            imported: Some(ImportedMaterial {
                expiration_model: "KEY_MATERIAL_DOES_NOT_EXPIRE".into(),
                valid_to_ms: None,
                description: None,
                present: true,
                pending_rotation: pending,
            }),
        };
        k.materials = vec![material(false), material(true)];
        // Pending material goes whole; the key keeps its current material.
        remove_material(&mut k, 1);
        assert_eq!(k.materials.len(), 1);
        assert_eq!(k.state, "Enabled");
        remove_material(&mut k, 0);
        assert_eq!(k.materials.len(), 1, "the record stays for a re-import");
        assert!(k.materials[0].sealed_hex.is_empty());
        assert_eq!(k.state, "PendingImport");
    }
}
