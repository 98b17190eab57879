//! Data plane: Encrypt, Decrypt, ReEncrypt, GenerateDataKey(WithoutPlaintext), GenerateRandom.

use std::collections::BTreeMap;
use std::sync::Arc;

use kms_types::*;

use super::keys::check_enabled;
use super::{check_grant_tokens, dry_run_succeeded, internal, CachedKey, Service};
use crate::backends::{self, invalid_ciphertext};
use crate::context::Caller;
use crate::envelope;
use kms_crypto::asymmetric::{self, AsymmetricSpec, OaepHash};

/// Symmetric plaintext limit (PlaintextType max).
const MAX_PLAINTEXT: usize = 4096;

/// Checks that a key can be used for symmetric encryption now, by operation `op`.
pub(super) fn check_usable(k: &CachedKey, op: &str) -> Result<(), KmsError> {
    let r = &k.record;
    check_enabled(r)?;
    if r.key_usage != "ENCRYPT_DECRYPT" {
        return Err(super::key_usage_not_valid(r, op));
    }
    if r.key_spec != "SYMMETRIC_DEFAULT" {
        return Err(KmsError::new(
            ErrorCode::InvalidKeyUsageException,
            format!(
                "{} key spec is {} which is not valid for {op}.",
                r.arn(),
                r.key_spec
            ),
        ));
    }
    Ok(())
}

fn check_algorithm(k: &CachedKey, algorithm: Option<&str>) -> Result<(), KmsError> {
    match algorithm {
        None | Some("SYMMETRIC_DEFAULT") => Ok(()),
        Some(other) => Err(KmsError::new(
            ErrorCode::InvalidKeyUsageException,
            format!("The encryption algorithm {other} is not supported by {} (it supports SYMMETRIC_DEFAULT)", k.record.arn()),
        )),
    }
}

pub(super) fn no_recipient(recipient: Option<&RecipientInfo>) -> Result<(), KmsError> {
    match recipient {
        Some(_) => Err(KmsError::new(
            ErrorCode::UnsupportedOperationException,
            "kmsd does not support Recipient (Nitro Enclaves attestation documents)",
        )),
        None => Ok(()),
    }
}

/// What a successful symmetric decryption yields.
struct Opened {
    key: Arc<CachedKey>,
    plaintext: kms_crypto::SecretBytes,
    key_material_id: Option<String>,
    algorithm: String,
}

/// RSA keys with KeyUsage ENCRYPT_DECRYPT encrypt with RSAES-OAEP instead of the envelope.
fn rsa_encryption_spec(k: &CachedKey) -> Option<AsymmetricSpec> {
    match crate::spec::spec_kind(&k.record.key_spec) {
        Ok(crate::spec::SpecKind::Asymmetric(s)) if k.record.key_usage == "ENCRYPT_DECRYPT" => {
            Some(s)
        }
        _ => None,
    }
}

/// The OAEP hash of an RSA encryption algorithm (SYMMETRIC_DEFAULT or none: the AWS error).
fn oaep_hash(k: &CachedKey, algorithm: Option<&str>) -> Result<OaepHash, KmsError> {
    match algorithm {
        Some("RSAES_OAEP_SHA_1") => Ok(OaepHash::Sha1),
        Some("RSAES_OAEP_SHA_256") => Ok(OaepHash::Sha256),
        other => Err(KmsError::new(
            ErrorCode::InvalidKeyUsageException,
            format!(
                "The encryption algorithm {} is not valid for {} ({}): use RSAES_OAEP_SHA_1 or RSAES_OAEP_SHA_256",
                other.unwrap_or("SYMMETRIC_DEFAULT"),
                k.record.arn(),
                k.record.key_spec
            ),
        )),
    }
}

fn no_context_for_asymmetric(context: Option<&BTreeMap<String, String>>) -> Result<(), KmsError> {
    match context {
        Some(c) if !c.is_empty() => Err(KmsError::new(
            ErrorCode::ValidationException,
            "EncryptionContext is supported only with symmetric encryption KMS keys",
        )),
        _ => Ok(()),
    }
}

impl Service {
    /// Encrypts with any encryption key: the envelope for symmetric keys, RSAES-OAEP for RSA
    /// keys. Returns (ciphertext, algorithm, KeyMaterialId). `dry_run` stops after the checks.
    async fn encrypt_with(
        &self,
        caller: &Caller,
        k: &CachedKey,
        algorithm: Option<&str>,
        context: Option<&BTreeMap<String, String>>,
        plaintext: &[u8],
        dry_run: Option<bool>,
    ) -> Result<(Vec<u8>, String, Option<String>), KmsError> {
        if let Some(spec) = rsa_encryption_spec(k) {
            check_enabled(&k.record)?;
            let hash = oaep_hash(k, algorithm)?;
            no_context_for_asymmetric(context)?;
            let max = asymmetric::rsa_max_plaintext(spec, hash).unwrap_or(0);
            if plaintext.len() > max {
                return Err(KmsError::new(
                    ErrorCode::ValidationException,
                    format!(
                        "Algorithm {} and key spec {} cannot encrypt data larger than {max} bytes.",
                        algorithm.unwrap_or_default(),
                        k.record.key_spec
                    ),
                ));
            }
            if dry_run == Some(true) {
                return Err(dry_run_succeeded());
            }
            let spki = k
                .public_key
                .as_deref()
                .ok_or_else(|| internal("RSA key without public key"))?;
            let ct = asymmetric::rsa_oaep_encrypt(spki, hash, plaintext).map_err(internal)?;
            return Ok((ct, algorithm.unwrap_or_default().to_owned(), None));
        }
        check_usable(k, &caller.operation)?;
        check_algorithm(k, algorithm)?;
        if dry_run == Some(true) {
            return Err(dry_run_succeeded());
        }
        let (blob, material) = self.seal(caller, k, context, plaintext).await?;
        Ok((blob, "SYMMETRIC_DEFAULT".into(), Some(material)))
    }

    /// Decrypts an RSAES-OAEP ciphertext with a named RSA key.
    fn open_rsa(
        &self,
        key: Arc<CachedKey>,
        spec: AsymmetricSpec,
        blob: &[u8],
        context: Option<&BTreeMap<String, String>>,
        algorithm: Option<&str>,
    ) -> Result<Opened, KmsError> {
        check_enabled(&key.record)?;
        let hash = oaep_hash(&key, algorithm)?;
        no_context_for_asymmetric(context)?;
        let _ = spec;
        let pkcs8 = key
            .secret
            .as_deref()
            .ok_or_else(|| internal("RSA key without material"))?;
        let plaintext =
            asymmetric::rsa_oaep_decrypt(pkcs8, hash, blob).map_err(|_| invalid_ciphertext())?;
        Ok(Opened {
            key,
            plaintext,
            key_material_id: None,
            algorithm: algorithm.unwrap_or_default().to_owned(),
        })
    }

    /// Encrypts under the key's current material; returns (ciphertext blob, KeyMaterialId).
    pub(super) async fn seal(
        &self,
        caller: &Caller,
        k: &CachedKey,
        context: Option<&BTreeMap<String, String>>,
        plaintext: &[u8],
    ) -> Result<(Vec<u8>, String), KmsError> {
        let m = k
            .record
            .current_material()
            .ok_or_else(|| internal("key without material"))?;
        let material_id: [u8; 16] = hex::decode(&m.material_id)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| internal("bad material id"))?;
        let blob = k
            .backend
            .seal(self.using(caller, k, context), material_id, plaintext)
            .await?;
        Ok((blob, m.key_material_id.clone()))
    }

    /// What a backend call needs from this request.
    fn using<'a>(
        &'a self,
        caller: &'a Caller,
        key: &'a CachedKey,
        context: Option<&'a BTreeMap<String, String>>,
    ) -> backends::Use<'a> {
        backends::Use {
            service: self,
            caller,
            key,
            context,
        }
    }

    /// Opens a symmetric ciphertext blob. `expected_key`: the KeyId the caller named, if any.
    async fn open(
        &self,
        caller: &Caller,
        blob: &[u8],
        context: Option<&BTreeMap<String, String>>,
        expected_key: Option<&str>,
        algorithm: Option<&str>,
    ) -> Result<Opened, KmsError> {
        // The source half of ReEncrypt needs kms:ReEncryptFrom; Decrypt needs kms:Decrypt.
        let action = if caller.operation == "ReEncrypt" {
            "kms:ReEncryptFrom"
        } else {
            "kms:Decrypt"
        };
        if let Some(named) = expected_key {
            let id = self.resolve_as(caller, named, true, action)?;
            let k = self
                .registry
                .key(&caller.region, &id)?
                .ok_or_else(invalid_ciphertext)?;
            if let Some(spec) = rsa_encryption_spec(&k) {
                return self.open_rsa(k, spec, blob, context, algorithm);
            }
        }
        let xks_env = envelope::parse_xks(blob);
        let (key_id_bytes, material_id) = match (&xks_env, envelope::parse(blob)) {
            (Some(x), _) => (x.key_id, x.material_id),
            (None, Some(e)) => (e.key_id, e.material_id),
            (None, None) => return Err(invalid_ciphertext()),
        };
        let mut key = None;
        for multi_region in [false, true] {
            let id = envelope::key_id_string(&key_id_bytes, multi_region);
            if let Some(k) = self.registry.key(&caller.region, &id)? {
                key = Some(k);
                break;
            }
        }
        let key = key.ok_or_else(invalid_ciphertext)?;
        caller.touch(key.record.arn());
        if let Some(named) = expected_key {
            let named_id = self.resolve_as(caller, named, true, action)?;
            if named_id != key.record.key_id {
                return Err(KmsError::new(
                    ErrorCode::IncorrectKeyException,
                    "The key ID in the request does not identify a CMK that can perform this operation.",
                ));
            }
        }
        self.authorize(caller, action, Some(&key.record), &key.record.arn())?;
        check_usable(&key, &caller.operation)?;
        check_algorithm(&key, algorithm)?;
        // The key's backend refuses a blob of another format (a v2 envelope for a key outside
        // an external key store, or the reverse) as an invalid ciphertext.
        let plaintext = key
            .backend
            .open(self.using(caller, &key, context), blob)
            .await?;
        let material_hex = hex::encode(material_id);
        let key_material_id = key
            .record
            .materials
            .iter()
            .find(|m| m.material_id == material_hex)
            .map(|m| m.key_material_id.clone());
        Ok(Opened {
            key,
            plaintext,
            key_material_id,
            algorithm: "SYMMETRIC_DEFAULT".into(),
        })
    }

    /// Encrypt.
    pub async fn encrypt(
        &self,
        caller: &Caller,
        r: EncryptRequest,
    ) -> Result<EncryptResponse, KmsError> {
        check_grant_tokens(r.grant_tokens.as_ref())?;
        let k = self.resolve_cached(caller, r.key_id.as_deref().unwrap_or_default(), true)?;
        let plaintext = r.plaintext.as_ref().map(Blob::as_bytes).unwrap_or_default();
        let (blob, algorithm, _) = self
            .encrypt_with(
                caller,
                &k,
                r.encryption_algorithm.as_deref(),
                r.encryption_context.as_ref(),
                plaintext,
                r.dry_run,
            )
            .await?;
        Ok(EncryptResponse {
            ciphertext_blob: Some(Blob::new(blob)),
            key_id: Some(k.record.arn()),
            encryption_algorithm: Some(algorithm),
        })
    }

    /// Decrypt (KeyId optional for symmetric ciphertexts).
    pub async fn decrypt(
        &self,
        caller: &Caller,
        r: DecryptRequest,
    ) -> Result<DecryptResponse, KmsError> {
        check_grant_tokens(r.grant_tokens.as_ref())?;
        no_recipient(r.recipient.as_ref())?;
        let ignore_ciphertext = r.dry_run == Some(true)
            && r.dry_run_modifiers
                .as_ref()
                .is_some_and(|m| m.iter().any(|x| x == "IGNORE_CIPHERTEXT"));
        let Some(blob) = r.ciphertext_blob.as_ref() else {
            if ignore_ciphertext {
                if let Some(id) = r.key_id.as_deref() {
                    let k = self.resolve_cached(caller, id, true)?;
                    check_usable(&k, &caller.operation)?;
                }
                return Err(dry_run_succeeded());
            }
            return Err(KmsError::new(
                ErrorCode::ValidationException,
                "1 validation error detected: Value null at 'ciphertextBlob' failed to satisfy constraint: Member must not be null",
            ));
        };
        let opened = self
            .open(
                caller,
                blob.as_bytes(),
                r.encryption_context.as_ref(),
                r.key_id.as_deref(),
                r.encryption_algorithm.as_deref(),
            )
            .await?;
        if r.dry_run == Some(true) {
            return Err(dry_run_succeeded());
        }
        Ok(DecryptResponse {
            key_id: Some(opened.key.record.arn()),
            plaintext: Some(Blob::new(opened.plaintext.to_vec())),
            encryption_algorithm: Some(opened.algorithm),
            key_material_id: opened.key_material_id,
            ciphertext_for_recipient: None,
        })
    }

    /// ReEncrypt: decrypt under the source key, encrypt under the destination key, inside kmsd.
    pub async fn re_encrypt(
        &self,
        caller: &Caller,
        r: ReEncryptRequest,
    ) -> Result<ReEncryptResponse, KmsError> {
        check_grant_tokens(r.grant_tokens.as_ref())?;
        let dest_id = self.resolve_as(
            caller,
            r.destination_key_id.as_deref().unwrap_or_default(),
            true,
            "kms:ReEncryptTo",
        )?;
        let dest = self
            .registry
            .key(&caller.region, &dest_id)?
            .ok_or_else(invalid_ciphertext)?;
        let Some(blob) = r.ciphertext_blob.as_ref() else {
            return Err(KmsError::new(
                ErrorCode::ValidationException,
                "1 validation error detected: Value null at 'ciphertextBlob' failed to satisfy constraint: Member must not be null",
            ));
        };
        let opened = self
            .open(
                caller,
                blob.as_bytes(),
                r.source_encryption_context.as_ref(),
                r.source_key_id.as_deref(),
                r.source_encryption_algorithm.as_deref(),
            )
            .await?;
        let (out, dest_algorithm, dest_material) = self
            .encrypt_with(
                caller,
                &dest,
                r.destination_encryption_algorithm.as_deref(),
                r.destination_encryption_context.as_ref(),
                &opened.plaintext,
                r.dry_run,
            )
            .await?;
        Ok(ReEncryptResponse {
            ciphertext_blob: Some(Blob::new(out)),
            source_key_id: Some(opened.key.record.arn()),
            key_id: Some(dest.record.arn()),
            source_encryption_algorithm: Some(opened.algorithm),
            destination_encryption_algorithm: Some(dest_algorithm),
            source_key_material_id: opened.key_material_id,
            destination_key_material_id: dest_material,
        })
    }

    /// Shared part of GenerateDataKey and GenerateDataKeyWithoutPlaintext.
    async fn generate_data_key_inner(
        &self,
        caller: &Caller,
        key_id: Option<&str>,
        key_spec: Option<&str>,
        number_of_bytes: Option<i32>,
        context: Option<&BTreeMap<String, String>>,
        dry_run: Option<bool>,
    ) -> Result<(Arc<CachedKey>, kms_crypto::SecretBytes, Vec<u8>, String), KmsError> {
        let len = match (key_spec, number_of_bytes) {
            (Some("AES_256"), None) => 32,
            (Some("AES_128"), None) => 16,
            (None, Some(n)) => n as usize,
            (Some(_), Some(_)) | (None, None) => {
                return Err(KmsError::new(
                    ErrorCode::ValidationException,
                    "Please specify either number of bytes or key spec (exactly one of KeySpec and NumberOfBytes).",
                ));
            }
            (Some(other), None) => {
                return Err(KmsError::new(
                    ErrorCode::ValidationException,
                    format!("Unknown data key spec {other}"),
                ));
            }
        };
        let k = self.resolve_cached(caller, key_id.unwrap_or_default(), true)?;
        check_usable(&k, &caller.operation)?;
        if dry_run == Some(true) {
            return Err(dry_run_succeeded());
        }
        let data_key = kms_crypto::random_bytes(len.min(MAX_PLAINTEXT)).map_err(internal)?;
        let (blob, material) = self.seal(caller, &k, context, &data_key).await?;
        Ok((k, data_key, blob, material))
    }

    /// GenerateDataKey.
    pub async fn generate_data_key(
        &self,
        caller: &Caller,
        r: GenerateDataKeyRequest,
    ) -> Result<GenerateDataKeyResponse, KmsError> {
        check_grant_tokens(r.grant_tokens.as_ref())?;
        no_recipient(r.recipient.as_ref())?;
        let (k, data_key, blob, material) = self
            .generate_data_key_inner(
                caller,
                r.key_id.as_deref(),
                r.key_spec.as_deref(),
                r.number_of_bytes,
                r.encryption_context.as_ref(),
                r.dry_run,
            )
            .await?;
        Ok(GenerateDataKeyResponse {
            ciphertext_blob: Some(Blob::new(blob)),
            plaintext: Some(Blob::new(data_key.to_vec())),
            key_id: Some(k.record.arn()),
            key_material_id: Some(material),
            ciphertext_for_recipient: None,
        })
    }

    /// GenerateDataKeyWithoutPlaintext.
    pub async fn generate_data_key_without_plaintext(
        &self,
        caller: &Caller,
        r: GenerateDataKeyWithoutPlaintextRequest,
    ) -> Result<GenerateDataKeyWithoutPlaintextResponse, KmsError> {
        check_grant_tokens(r.grant_tokens.as_ref())?;
        let (k, _data_key, blob, material) = self
            .generate_data_key_inner(
                caller,
                r.key_id.as_deref(),
                r.key_spec.as_deref(),
                r.number_of_bytes,
                r.encryption_context.as_ref(),
                r.dry_run,
            )
            .await?;
        Ok(GenerateDataKeyWithoutPlaintextResponse {
            ciphertext_blob: Some(Blob::new(blob)),
            key_id: Some(k.record.arn()),
            key_material_id: Some(material),
        })
    }

    /// GenerateRandom.
    pub async fn generate_random(
        &self,
        caller: &Caller,
        r: GenerateRandomRequest,
    ) -> Result<GenerateRandomResponse, KmsError> {
        no_recipient(r.recipient.as_ref())?;
        let n = r.number_of_bytes.ok_or_else(|| {
            KmsError::new(ErrorCode::ValidationException, "NumberOfBytes is required.")
        })?;
        let bytes = match &r.custom_key_store_id {
            Some(id) => self.hsm_random(caller, id, n as usize)?,
            None => kms_crypto::random_bytes(n as usize)
                .map_err(internal)?
                .to_vec(),
        };
        Ok(GenerateRandomResponse {
            plaintext: Some(Blob::new(bytes)),
            ciphertext_for_recipient: None,
        })
    }
}
