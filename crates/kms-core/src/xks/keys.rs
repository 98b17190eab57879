//! Keys in external key stores: checked against the proxy at creation, double-encrypted.

use kms_types::{ErrorCode, KmsError};

use super::client::{Encrypted, RequestMetadata};
use super::XksFault;
use crate::context::Caller;
use crate::envelope;
use crate::hsm::keystore::KeyStoreRecord;
use crate::service::{CachedKey, Service};

fn meta(caller: &Caller, key_arn: Option<String>) -> RequestMetadata {
    RequestMetadata {
        kms_request_id: caller.request_id.clone(),
        kms_operation: if caller.operation.is_empty() {
            "CreateKey".into()
        } else {
            caller.operation.clone()
        },
        aws_principal_arn: Some(caller.principal_arn.clone()),
        kms_key_arn: key_arn,
    }
}

/// What a proxy failure means for Encrypt, Decrypt, ReEncrypt and GenerateDataKey*.
fn data_plane_error(store_id: &str, f: &XksFault) -> KmsError {
    match f {
        XksFault::Proxy { name, .. } if name == "ThrottlingException" => KmsError::new(
            ErrorCode::ThrottlingException,
            format!("The proxy of external key store {store_id} is throttling requests"),
        ),
        other => KmsError::new(
            ErrorCode::KMSInvalidStateException,
            format!("The external key store {store_id} could not complete the request: {other}"),
        ),
    }
}

impl Service {
    /// CreateKey in an external key store: the XksKeyId must be unused in the store and name an
    /// enabled AES_256 key usable for ENCRYPT and DECRYPT (GetKeyMetadata).
    pub(crate) async fn check_new_xks_key(
        &self,
        caller: &Caller,
        store: &KeyStoreRecord,
        xks_key_id: &str,
    ) -> Result<(), KmsError> {
        let in_use = self
            .store()
            .keys_in_custom_key_store(&store.id)
            .map_err(|e| KmsError::internal(e.to_string()))?;
        if let Some(k) = in_use
            .iter()
            .find(|k| k.xks_key_id.as_deref() == Some(xks_key_id))
        {
            return Err(KmsError::new(
                ErrorCode::XksKeyAlreadyInUseException,
                format!(
                    "External key {xks_key_id} is already used by {} in custom key store {}",
                    k.arn(),
                    store.id
                ),
            ));
        }
        let client = self
            .xks_client()
            .ok_or_else(|| KmsError::internal("no external key store client"))?;
        let target = self.connected_xks_target(&store.id).map_err(|_| {
            KmsError::new(
                ErrorCode::CustomKeyStoreInvalidStateException,
                format!("Custom key store {} is not connected", store.id),
            )
        })?;
        let m = match client
            .key_metadata(&target, xks_key_id, meta(caller, None))
            .await
        {
            Ok(m) => m,
            Err(XksFault::Proxy { name, .. }) if name == "KeyNotFoundException" => {
                return Err(KmsError::new(
                    ErrorCode::XksKeyNotFoundException,
                    format!("The proxy has no key {xks_key_id}"),
                ));
            }
            Err(XksFault::Proxy { name, .. })
                if matches!(
                    name.as_str(),
                    "InvalidStateException"
                        | "InvalidKeyUsageException"
                        | "UnsupportedOperationException"
                ) =>
            {
                return Err(KmsError::new(
                    ErrorCode::XksKeyInvalidConfigurationException,
                    format!("The proxy reports {name} for key {xks_key_id}"),
                ));
            }
            Err(XksFault::Proxy { name, .. }) if name == "AccessDeniedException" => {
                return Err(KmsError::new(
                    ErrorCode::KMSInvalidStateException,
                    format!("The proxy denied access to key {xks_key_id}"),
                ));
            }
            Err(f) => {
                return Err(KmsError::new(
                    ErrorCode::CustomKeyStoreInvalidStateException,
                    format!("The proxy of custom key store {} failed: {f}", store.id),
                ));
            }
        };
        if m.key_spec != "AES_256"
            || !m.key_usage.iter().any(|u| u == "ENCRYPT")
            || !m.key_usage.iter().any(|u| u == "DECRYPT")
            || m.key_status != "ENABLED"
        {
            return Err(KmsError::new(
                ErrorCode::XksKeyInvalidConfigurationException,
                format!(
                    "External key {xks_key_id} must be an ENABLED AES_256 key usable for ENCRYPT and DECRYPT (it is {} {} {:?})",
                    m.key_status, m.key_spec, m.key_usage
                ),
            ));
        }
        Ok(())
    }

    /// Double encryption: kmsd's own material first, then the external key through the proxy.
    pub(crate) async fn xks_seal(
        &self,
        caller: &Caller,
        k: &CachedKey,
        material_id: [u8; 16],
        context: Option<&std::collections::BTreeMap<String, String>>,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, KmsError> {
        let store_id = k.record.custom_key_store_id.clone().unwrap_or_default();
        let target = self.connected_xks_target(&store_id)?;
        let client = self
            .xks_client()
            .ok_or_else(|| KmsError::internal("no external key store client"))?;
        let key_id = envelope::key_id_bytes(&k.record.key_id)
            .ok_or_else(|| KmsError::internal("bad key id"))?;
        let header = envelope::xks_header(&key_id, &material_id);
        let inner_aad = envelope::aad(&header, context);
        let cipher = k
            .ciphers
            .get(&material_id)
            .ok_or_else(|| KmsError::internal("material not loaded"))?;
        let (inner_iv, inner_ct) = cipher
            .seal(&inner_aad, plaintext)
            .map_err(|e| KmsError::internal(e.to_string()))?;
        let xks_key = k.record.xks_key_id.clone().unwrap_or_default();
        let outer = client
            .encrypt(
                &target,
                &xks_key,
                meta(caller, Some(k.record.arn())),
                &inner_ct,
                &header,
            )
            .await
            .map_err(|f| data_plane_error(&store_id, &f))?;
        Ok(envelope::assemble_xks(
            &header,
            &inner_iv,
            &outer.iv,
            &outer.tag,
            &outer.metadata,
            &outer.ciphertext,
        ))
    }

    /// Reverses [`Self::xks_seal`]: the proxy first, then kmsd's own material.
    pub(crate) async fn xks_open(
        &self,
        caller: &Caller,
        k: &CachedKey,
        blob: &[u8],
        context: Option<&std::collections::BTreeMap<String, String>>,
    ) -> Result<kms_crypto::SecretBytes, KmsError> {
        let invalid = || {
            KmsError::new(
                ErrorCode::InvalidCiphertextException,
                "The ciphertext is invalid, or its encryption context does not match",
            )
        };
        let env = envelope::parse_xks(blob).ok_or_else(invalid)?;
        let store_id = k.record.custom_key_store_id.clone().unwrap_or_default();
        let target = self.connected_xks_target(&store_id)?;
        let client = self
            .xks_client()
            .ok_or_else(|| KmsError::internal("no external key store client"))?;
        let outer = Encrypted {
            ciphertext: env.xks_ciphertext.to_vec(),
            iv: env.xks_iv.to_vec(),
            tag: env.xks_tag.to_vec(),
            metadata: env.xks_metadata.to_vec(),
        };
        let xks_key = k.record.xks_key_id.clone().unwrap_or_default();
        let inner_ct = client
            .decrypt(
                &target,
                &xks_key,
                meta(caller, Some(k.record.arn())),
                &outer,
                env.header,
            )
            .await
            .map_err(|f| data_plane_error(&store_id, &f))?;
        let cipher = k.ciphers.get(&env.material_id).ok_or_else(invalid)?;
        cipher
            .open(env.inner_iv, &envelope::aad(env.header, context), &inner_ct)
            .map_err(|_| invalid())
    }
}
