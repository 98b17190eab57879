//! ML-KEM key encapsulation: Encapsulate and Decapsulate (keys of spec ML_KEM_512/768/1024 and
//! usage ENCAPSULATE_DECAPSULATE).

use kms_crypto::kem;
use kms_types::*;

use super::asymmetric::{crypto_error, private_key};
use super::keys::check_enabled;
use super::{check_grant_tokens, dry_run_succeeded, internal, CachedKey, Service};
use crate::context::Caller;

/// The only encapsulation algorithm (the model's EncapsulationAlgorithmSpec).
const ML_KEM: &str = "ML_KEM";

/// Checks that `k` is an enabled ML-KEM key and `algorithm` is ML_KEM.
fn check_kem_key(k: &CachedKey, op: &str, algorithm: Option<&str>) -> Result<(), KmsError> {
    check_enabled(&k.record)?;
    if k.record.key_usage != "ENCAPSULATE_DECAPSULATE" {
        return Err(super::key_usage_not_valid(&k.record, op));
    }
    match algorithm {
        Some(ML_KEM) => Ok(()),
        other => Err(KmsError::new(
            ErrorCode::InvalidKeyUsageException,
            format!(
                "Encapsulation algorithm {} is not supported by {} ({}); it supports ML_KEM",
                other.unwrap_or("(none)"),
                k.record.arn(),
                k.record.key_spec
            ),
        )),
    }
}

impl Service {
    /// Encapsulate: a fresh 32-byte shared secret and its ciphertext under the key's public key.
    pub async fn encapsulate(
        &self,
        caller: &Caller,
        r: EncapsulateRequest,
    ) -> Result<EncapsulateResponse, KmsError> {
        check_grant_tokens(r.grant_tokens.as_ref())?;
        let k = self.resolve_cached(caller, r.key_id.as_deref().unwrap_or_default(), true)?;
        check_kem_key(&k, "Encapsulate", r.encapsulation_algorithm.as_deref())?;
        if r.dry_run == Some(true) {
            return Err(dry_run_succeeded());
        }
        let (spec, _) = private_key(&k)?;
        let spki = k
            .public_key
            .as_deref()
            .ok_or_else(|| internal("ML-KEM key without public key"))?;
        let (ciphertext, secret) = kem::encapsulate(spec, spki).map_err(crypto_error)?;
        Ok(EncapsulateResponse {
            key_id: Some(k.record.arn()),
            shared_secret: Some(Blob::new(secret.to_vec())),
            shared_secret_ciphertext_blob: Some(Blob::new(ciphertext)),
            encapsulation_algorithm: Some(ML_KEM.into()),
        })
    }

    /// Decapsulate: the shared secret of a ciphertext. A ciphertext of the wrong length for the
    /// key spec is `InvalidCiphertextException`; any other gives a 32-byte secret (FIPS 203
    /// implicit rejection), so a wrong key or an altered ciphertext is not reported.
    pub async fn decapsulate(
        &self,
        caller: &Caller,
        r: DecapsulateRequest,
    ) -> Result<DecapsulateResponse, KmsError> {
        check_grant_tokens(r.grant_tokens.as_ref())?;
        let k = self.resolve_cached(caller, r.key_id.as_deref().unwrap_or_default(), true)?;
        check_kem_key(&k, "Decapsulate", r.encapsulation_algorithm.as_deref())?;
        let (spec, pkcs8) = private_key(&k)?;
        let ciphertext = r
            .shared_secret_ciphertext_blob
            .as_ref()
            .map(Blob::as_bytes)
            .unwrap_or_default();
        let want = kem::ciphertext_len(spec).ok_or_else(|| internal("not an ML-KEM spec"))?;
        if ciphertext.len() != want {
            return Err(KmsError::new(
                ErrorCode::InvalidCiphertextException,
                format!(
                    "The ciphertext is {} bytes; an {} shared secret ciphertext is {want} bytes",
                    ciphertext.len(),
                    k.record.key_spec
                ),
            ));
        }
        if r.dry_run == Some(true) {
            return Err(dry_run_succeeded());
        }
        let secret = kem::decapsulate(spec, pkcs8, ciphertext).map_err(crypto_error)?;
        Ok(DecapsulateResponse {
            key_id: Some(k.record.arn()),
            shared_secret: Some(Blob::new(secret.to_vec())),
            encapsulation_algorithm: Some(ML_KEM.into()),
        })
    }
}
