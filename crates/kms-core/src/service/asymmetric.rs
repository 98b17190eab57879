//! Asymmetric, HMAC and key-agreement operations: Sign, Verify, GetPublicKey, GenerateMac,
//! VerifyMac, DeriveSharedSecret, GenerateDataKeyPair(WithoutPlaintext). Encapsulate and
//! Decapsulate are in `kem`.

use kms_crypto::asymmetric::{self, AsymmetricSpec, SignInput};
use kms_crypto::CryptoError;
use kms_types::*;

use super::keys::check_enabled;
use super::{check_grant_tokens, dry_run_succeeded, internal, CachedKey, Service};
use crate::context::Caller;
use crate::spec::{self, SpecKind};

/// The key's private key and spec, for keys with asymmetric material.
pub(super) fn private_key(k: &CachedKey) -> Result<(AsymmetricSpec, &[u8]), KmsError> {
    match spec::spec_kind(&k.record.key_spec)? {
        SpecKind::Asymmetric(s) => Ok((
            s,
            k.secret
                .as_deref()
                .ok_or_else(|| internal("asymmetric key without material"))?,
        )),
        _ => Err(internal("not an asymmetric key")),
    }
}

/// The key's parsed private signing key (parsed once, kept with the cached key).
fn signing_key(k: &CachedKey) -> Result<&asymmetric::SigningKey, KmsError> {
    if let Some(key) = k.signing_key.get() {
        return Ok(key);
    }
    let (spec, pkcs8) = private_key(k)?;
    let key = asymmetric::SigningKey::from_pkcs8(spec, pkcs8).map_err(crypto_error)?;
    // Another request may have set it meanwhile: either value is the same key.
    let _ = k.signing_key.set(key);
    k.signing_key
        .get()
        .ok_or_else(|| internal("signing key cache"))
}

/// Maps a crypto-layer input error to AWS's ValidationException; the rest is internal.
pub(super) fn crypto_error(e: CryptoError) -> KmsError {
    match e {
        CryptoError::InvalidInput(why) => KmsError::new(ErrorCode::ValidationException, why),
        CryptoError::Unsupported(why) => {
            KmsError::new(ErrorCode::UnsupportedOperationException, why)
        }
        CryptoError::InvalidPeerKey => KmsError::new(
            ErrorCode::ValidationException,
            // AWS's recorded answer carries no message.
            "",
        ),
        other => internal(other),
    }
}

/// Checks the key, algorithm and message type of Sign/Verify; returns what to sign.
fn sign_input<'a>(
    k: &CachedKey,
    op: &str,
    algorithm: &str,
    message_type: Option<&str>,
    message: &'a [u8],
) -> Result<(asymmetric::SigningAlgorithm, SignInput<'a>), KmsError> {
    check_enabled(&k.record)?;
    if k.record.key_usage != "SIGN_VERIFY" {
        return Err(super::key_usage_not_valid(&k.record, op));
    }
    let offered = spec::signing_algorithms(&k.record.key_spec, &k.record.key_usage);
    let alg = spec::signing_algorithm(algorithm)
        .filter(|_| offered.contains(&algorithm))
        .ok_or_else(|| {
            KmsError::new(
                ErrorCode::InvalidKeyUsageException,
                format!(
                    "Signing algorithm {algorithm} is not supported by {} ({}); it supports {}",
                    k.record.arn(),
                    k.record.key_spec,
                    offered.join(", ")
                ),
            )
        })?;
    let input = match message_type.unwrap_or("RAW") {
        "RAW" => {
            if algorithm == "ED25519_PH_SHA_512" {
                return Err(KmsError::new(
                    ErrorCode::ValidationException,
                    "ED25519_PH_SHA_512 requires MessageType DIGEST",
                ));
            }
            SignInput::Raw(message)
        }
        "DIGEST" => {
            if algorithm == "ED25519_SHA_512" || algorithm == "ML_DSA_SHAKE_256" {
                return Err(KmsError::new(
                    ErrorCode::ValidationException,
                    format!("{algorithm} does not accept MessageType DIGEST"),
                ));
            }
            let want = asymmetric::digest_len(alg).unwrap_or(0);
            if message.len() != want {
                return Err(KmsError::new(
                    ErrorCode::ValidationException,
                    format!("Digest is invalid length for algorithm {algorithm}."),
                ));
            }
            SignInput::Digest(message)
        }
        "EXTERNAL_MU" => {
            if algorithm != "ML_DSA_SHAKE_256" {
                return Err(KmsError::new(
                    ErrorCode::ValidationException,
                    "MessageType EXTERNAL_MU is only for ML_DSA_SHAKE_256",
                ));
            }
            if message.len() != 64 {
                return Err(KmsError::new(
                    ErrorCode::ValidationException,
                    "With MessageType EXTERNAL_MU the message must be the 64-byte mu",
                ));
            }
            SignInput::ExternalMu(message)
        }
        other => {
            return Err(KmsError::new(
                ErrorCode::ValidationException,
                format!("Unknown MessageType {other}"),
            ))
        }
    };
    Ok((alg, input))
}

impl Service {
    /// Sign.
    pub async fn sign(&self, caller: &Caller, r: SignRequest) -> Result<SignResponse, KmsError> {
        check_grant_tokens(r.grant_tokens.as_ref())?;
        let k = self.resolve_cached(caller, r.key_id.as_deref().unwrap_or_default(), true)?;
        let algorithm = r.signing_algorithm.clone().unwrap_or_default();
        let message = r.message.as_ref().map(Blob::as_bytes).unwrap_or_default();
        let (alg, input) = sign_input(&k, "Sign", &algorithm, r.message_type.as_deref(), message)?;
        if r.dry_run == Some(true) {
            return Err(dry_run_succeeded());
        }
        let signature = signing_key(&k)?.sign(alg, input).map_err(crypto_error)?;
        Ok(SignResponse {
            key_id: Some(k.record.arn()),
            signature: Some(Blob::new(signature)),
            signing_algorithm: Some(algorithm),
        })
    }

    /// Verify: `SignatureValid: true`, or `KMSInvalidSignatureException`.
    pub async fn verify(
        &self,
        caller: &Caller,
        r: VerifyRequest,
    ) -> Result<VerifyResponse, KmsError> {
        check_grant_tokens(r.grant_tokens.as_ref())?;
        let k = self.resolve_cached(caller, r.key_id.as_deref().unwrap_or_default(), true)?;
        let algorithm = r.signing_algorithm.clone().unwrap_or_default();
        let message = r.message.as_ref().map(Blob::as_bytes).unwrap_or_default();
        let (alg, input) =
            sign_input(&k, "Verify", &algorithm, r.message_type.as_deref(), message)?;
        if r.dry_run == Some(true) {
            return Err(dry_run_succeeded());
        }
        let (spec, _) = private_key(&k)?;
        let spki = k
            .public_key
            .as_deref()
            .ok_or_else(|| internal("asymmetric key without public key"))?;
        let signature = r.signature.as_ref().map(Blob::as_bytes).unwrap_or_default();
        if !asymmetric::verify(spec, spki, alg, input, signature).map_err(crypto_error)? {
            return Err(KmsError::new(
                ErrorCode::KMSInvalidSignatureException,
                "The signature is not valid for this message, key and algorithm",
            ));
        }
        Ok(VerifyResponse {
            key_id: Some(k.record.arn()),
            signature_valid: Some(true),
            signing_algorithm: Some(algorithm),
        })
    }

    /// GetPublicKey: asymmetric keys only.
    pub async fn get_public_key(
        &self,
        caller: &Caller,
        r: GetPublicKeyRequest,
    ) -> Result<GetPublicKeyResponse, KmsError> {
        check_grant_tokens(r.grant_tokens.as_ref())?;
        let k = self.resolve_cached(caller, r.key_id.as_deref().unwrap_or_default(), true)?;
        let Some(spki) = k.public_key.clone() else {
            return Err(KmsError::new(
                ErrorCode::UnsupportedOperationException,
                format!(
                    "{} is a {} key: it has no public key",
                    k.record.arn(),
                    k.record.key_spec
                ),
            ));
        };
        check_enabled(&k.record)?;
        let m = super::keys::key_metadata(&k.record);
        Ok(GetPublicKeyResponse {
            key_id: Some(k.record.arn()),
            public_key: Some(Blob::new(spki)),
            customer_master_key_spec: m.customer_master_key_spec,
            key_spec: m.key_spec,
            key_usage: m.key_usage,
            encryption_algorithms: m.encryption_algorithms,
            signing_algorithms: m.signing_algorithms,
            key_agreement_algorithms: m.key_agreement_algorithms,
            encapsulation_algorithms: m.encapsulation_algorithms,
        })
    }

    /// Checks an HMAC key and algorithm; returns the key bytes.
    fn mac_key<'a>(
        k: &'a CachedKey,
        op: &str,
        algorithm: &str,
    ) -> Result<(asymmetric::HmacAlgorithm, &'a [u8]), KmsError> {
        check_enabled(&k.record)?;
        let SpecKind::Hmac(alg) = spec::spec_kind(&k.record.key_spec)? else {
            return Err(super::key_usage_not_valid(&k.record, op));
        };
        if !spec::mac_algorithms(&k.record.key_spec)
            .iter()
            .any(|a| a == algorithm)
        {
            return Err(KmsError::new(
                ErrorCode::InvalidKeyUsageException,
                format!(
                    "Algorithm {algorithm} is incompatible with key spec {}.",
                    k.record.key_spec
                ),
            ));
        }
        Ok((
            alg,
            k.secret
                .as_deref()
                .ok_or_else(|| internal("HMAC key without material"))?,
        ))
    }

    /// GenerateMac.
    pub async fn generate_mac(
        &self,
        caller: &Caller,
        r: GenerateMacRequest,
    ) -> Result<GenerateMacResponse, KmsError> {
        check_grant_tokens(r.grant_tokens.as_ref())?;
        let k = self.resolve_cached(caller, r.key_id.as_deref().unwrap_or_default(), true)?;
        let algorithm = r.mac_algorithm.clone().unwrap_or_default();
        let (alg, key) = Self::mac_key(&k, "GenerateMac", &algorithm)?;
        if r.dry_run == Some(true) {
            return Err(dry_run_succeeded());
        }
        let mac = asymmetric::hmac_sign(
            alg,
            key,
            r.message.as_ref().map(Blob::as_bytes).unwrap_or_default(),
        );
        Ok(GenerateMacResponse {
            key_id: Some(k.record.arn()),
            mac: Some(Blob::new(mac)),
            mac_algorithm: Some(algorithm),
        })
    }

    /// VerifyMac: `MacValid: true`, or `KMSInvalidMacException`.
    pub async fn verify_mac(
        &self,
        caller: &Caller,
        r: VerifyMacRequest,
    ) -> Result<VerifyMacResponse, KmsError> {
        check_grant_tokens(r.grant_tokens.as_ref())?;
        let k = self.resolve_cached(caller, r.key_id.as_deref().unwrap_or_default(), true)?;
        let algorithm = r.mac_algorithm.clone().unwrap_or_default();
        let (alg, key) = Self::mac_key(&k, "VerifyMac", &algorithm)?;
        if r.dry_run == Some(true) {
            return Err(dry_run_succeeded());
        }
        let message = r.message.as_ref().map(Blob::as_bytes).unwrap_or_default();
        let mac = r.mac.as_ref().map(Blob::as_bytes).unwrap_or_default();
        if !asymmetric::hmac_verify(alg, key, message, mac) {
            return Err(KmsError::new(
                ErrorCode::KMSInvalidMacException,
                "The MAC is not valid for this message, key and algorithm",
            ));
        }
        Ok(VerifyMacResponse {
            key_id: Some(k.record.arn()),
            mac_valid: Some(true),
            mac_algorithm: Some(algorithm),
        })
    }

    /// DeriveSharedSecret (ECDH).
    pub async fn derive_shared_secret(
        &self,
        caller: &Caller,
        r: DeriveSharedSecretRequest,
    ) -> Result<DeriveSharedSecretResponse, KmsError> {
        check_grant_tokens(r.grant_tokens.as_ref())?;
        super::crypto::no_recipient(r.recipient.as_ref())?;
        let k = self.resolve_cached(caller, r.key_id.as_deref().unwrap_or_default(), true)?;
        check_enabled(&k.record)?;
        if k.record.key_usage != "KEY_AGREEMENT" {
            return Err(super::key_usage_not_valid(&k.record, "DeriveSharedSecret"));
        }
        let algorithm = r.key_agreement_algorithm.clone().unwrap_or_default();
        if algorithm != "ECDH" {
            return Err(KmsError::new(
                ErrorCode::InvalidKeyUsageException,
                format!("Key agreement algorithm {algorithm} is not supported (ECDH is)"),
            ));
        }
        if r.dry_run == Some(true) {
            return Err(dry_run_succeeded());
        }
        let (spec, pkcs8) = private_key(&k)?;
        let peer = r
            .public_key
            .as_ref()
            .map(Blob::as_bytes)
            .unwrap_or_default();
        let secret = asymmetric::ecdh(spec, pkcs8, peer).map_err(crypto_error)?;
        Ok(DeriveSharedSecretResponse {
            key_id: Some(k.record.arn()),
            shared_secret: Some(Blob::new(secret.to_vec())),
            key_agreement_algorithm: Some(algorithm),
            key_origin: Some(k.record.origin.clone()),
            ciphertext_for_recipient: None,
        })
    }

    /// Shared part of the two GenerateDataKeyPair operations: (wrapping key, PKCS#8, SPKI,
    /// encrypted private key, KeyMaterialId).
    async fn data_key_pair(
        &self,
        caller: &Caller,
        key_id: Option<&str>,
        pair_spec: &str,
        context: Option<&std::collections::BTreeMap<String, String>>,
        dry_run: Option<bool>,
    ) -> Result<
        (
            std::sync::Arc<CachedKey>,
            kms_crypto::SecretBytes,
            Vec<u8>,
            Vec<u8>,
            String,
        ),
        KmsError,
    > {
        let k = self.resolve_cached(caller, key_id.unwrap_or_default(), true)?;
        super::crypto::check_usable(&k, &caller.operation)?;
        if k.record.custom_key_store_id.is_some() {
            return Err(KmsError::new(
                ErrorCode::UnsupportedOperationException,
                format!(
                    "{} is in a custom key store: data key pairs cannot be wrapped by such keys",
                    k.record.arn()
                ),
            ));
        }
        let spec = spec::data_key_pair_spec(pair_spec)?;
        if dry_run == Some(true) {
            return Err(dry_run_succeeded());
        }
        let pkcs8 = tokio::task::spawn_blocking(move || asymmetric::generate_private_key(spec))
            .await
            .map_err(internal)?
            .map_err(internal)?;
        let spki = asymmetric::public_key_spki(spec, &pkcs8).map_err(internal)?;
        let (blob, material) = self.seal(caller, &k, context, &pkcs8).await?;
        Ok((k, pkcs8, spki, blob, material))
    }

    /// GenerateDataKeyPair.
    pub async fn generate_data_key_pair(
        &self,
        caller: &Caller,
        r: GenerateDataKeyPairRequest,
    ) -> Result<GenerateDataKeyPairResponse, KmsError> {
        check_grant_tokens(r.grant_tokens.as_ref())?;
        super::crypto::no_recipient(r.recipient.as_ref())?;
        let pair_spec = r.key_pair_spec.clone().unwrap_or_default();
        let (k, pkcs8, spki, blob, material) = self
            .data_key_pair(
                caller,
                r.key_id.as_deref(),
                &pair_spec,
                r.encryption_context.as_ref(),
                r.dry_run,
            )
            .await?;
        Ok(GenerateDataKeyPairResponse {
            key_id: Some(k.record.arn()),
            key_pair_spec: Some(pair_spec),
            private_key_ciphertext_blob: Some(Blob::new(blob)),
            private_key_plaintext: Some(Blob::new(pkcs8.to_vec())),
            public_key: Some(Blob::new(spki)),
            key_material_id: Some(material),
            ciphertext_for_recipient: None,
        })
    }

    /// GenerateDataKeyPairWithoutPlaintext.
    pub async fn generate_data_key_pair_without_plaintext(
        &self,
        caller: &Caller,
        r: GenerateDataKeyPairWithoutPlaintextRequest,
    ) -> Result<GenerateDataKeyPairWithoutPlaintextResponse, KmsError> {
        check_grant_tokens(r.grant_tokens.as_ref())?;
        let pair_spec = r.key_pair_spec.clone().unwrap_or_default();
        let (k, _pkcs8, spki, blob, material) = self
            .data_key_pair(
                caller,
                r.key_id.as_deref(),
                &pair_spec,
                r.encryption_context.as_ref(),
                r.dry_run,
            )
            .await?;
        Ok(GenerateDataKeyPairWithoutPlaintextResponse {
            key_id: Some(k.record.arn()),
            key_pair_spec: Some(pair_spec),
            private_key_ciphertext_blob: Some(Blob::new(blob)),
            public_key: Some(Blob::new(spki)),
            key_material_id: Some(material),
        })
    }
}
