//! The dispatch table: operation name -> parse and validate input -> method -> JSON output.

use kms_types::validate::Validate;
use kms_types::{parse_request, ErrorCode, KmsError, OPERATIONS};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Service;
use crate::context::Caller;

fn json<T: Serialize>(out: T) -> Result<Vec<u8>, KmsError> {
    serde_json::to_vec(&out).map_err(super::internal)
}

/// Parses the body as `T` (validated against the model).
fn input<T: DeserializeOwned + Validate>(body: &[u8]) -> Result<T, KmsError> {
    parse_request(body)
}

/// Whether `op` is an operation of the KMS model.
pub fn is_model_operation(op: &str) -> bool {
    OPERATIONS.iter().any(|(name, _, _)| *name == op)
}

/// Operations kmsd implements today (the README's table is built from the same list).
pub const SUPPORTED_OPERATIONS: &[&str] = &[
    "CancelKeyDeletion",
    "CreateGrant",
    "ListGrants",
    "ListRetirableGrants",
    "RetireGrant",
    "RevokeGrant",
    "ConnectCustomKeyStore",
    "CreateCustomKeyStore",
    "DeleteCustomKeyStore",
    "DescribeCustomKeyStores",
    "DisconnectCustomKeyStore",
    "UpdateCustomKeyStore",
    "CreateAlias",
    "CreateKey",
    "Decapsulate",
    "Decrypt",
    "DeleteAlias",
    "DeriveSharedSecret",
    "DescribeKey",
    "DisableKey",
    "DisableKeyRotation",
    "EnableKey",
    "EnableKeyRotation",
    "Encapsulate",
    "GetKeyRotationStatus",
    "ListKeyRotations",
    "RotateKeyOnDemand",
    "Encrypt",
    "GenerateDataKey",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateMac",
    "GenerateRandom",
    "GetKeyPolicy",
    "GetPublicKey",
    "ListAliases",
    "ListKeyPolicies",
    "ListKeys",
    "ListResourceTags",
    "PutKeyPolicy",
    "ReEncrypt",
    "ScheduleKeyDeletion",
    "Sign",
    "TagResource",
    "UntagResource",
    "UpdateAlias",
    "UpdateKeyDescription",
    "Verify",
    "VerifyMac",
];

impl Service {
    /// Runs operation `op` for `caller` on the JSON `body`; returns the JSON answer.
    ///
    /// Unknown names give `UnknownOperationException`; model operations kmsd does not implement
    /// yet give `UnsupportedOperationException`, never a made-up answer.
    pub async fn dispatch(
        &self,
        caller: &Caller,
        op: &str,
        body: &[u8],
    ) -> Result<Vec<u8>, KmsError> {
        let request = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .map(std::sync::Arc::new);
        let operation_caller = Caller {
            operation: op.to_owned(),
            request,
            ..caller.clone()
        };
        let caller = &operation_caller;
        if super::authz::is_iam_only(op) {
            self.authorize(caller, &format!("kms:{op}"), None, "*")?;
        }
        let empty = || Ok(b"{}".to_vec());
        match op {
            "CreateKey" => json(self.create_key(caller, input(body)?).await?),
            "DescribeKey" => json(self.describe_key(caller, input(body)?).await?),
            "ListKeys" => json(self.list_keys(caller, input(body)?).await?),
            "EnableKey" => self
                .enable_key(caller, input(body)?)
                .await
                .and_then(|_| empty()),
            "DisableKey" => self
                .disable_key(caller, input(body)?)
                .await
                .and_then(|_| empty()),
            "ScheduleKeyDeletion" => json(self.schedule_key_deletion(caller, input(body)?).await?),
            "CancelKeyDeletion" => json(self.cancel_key_deletion(caller, input(body)?).await?),
            "UpdateKeyDescription" => self
                .update_key_description(caller, input(body)?)
                .await
                .and_then(|_| empty()),
            "Encrypt" => json(self.encrypt(caller, input(body)?).await?),
            "Decrypt" => json(self.decrypt(caller, input(body)?).await?),
            "ReEncrypt" => json(self.re_encrypt(caller, input(body)?).await?),
            "GenerateDataKey" => json(self.generate_data_key(caller, input(body)?).await?),
            "GenerateDataKeyWithoutPlaintext" => json(
                self.generate_data_key_without_plaintext(caller, input(body)?)
                    .await?,
            ),
            "Sign" => json(self.sign(caller, input(body)?).await?),
            "Verify" => json(self.verify(caller, input(body)?).await?),
            "GetPublicKey" => json(self.get_public_key(caller, input(body)?).await?),
            "GenerateMac" => json(self.generate_mac(caller, input(body)?).await?),
            "VerifyMac" => json(self.verify_mac(caller, input(body)?).await?),
            "DeriveSharedSecret" => json(self.derive_shared_secret(caller, input(body)?).await?),
            "Encapsulate" => json(self.encapsulate(caller, input(body)?).await?),
            "Decapsulate" => json(self.decapsulate(caller, input(body)?).await?),
            "GenerateDataKeyPair" => json(self.generate_data_key_pair(caller, input(body)?).await?),
            "GenerateDataKeyPairWithoutPlaintext" => json(
                self.generate_data_key_pair_without_plaintext(caller, input(body)?)
                    .await?,
            ),
            "CreateCustomKeyStore" => {
                json(self.create_custom_key_store(caller, input(body)?).await?)
            }
            "DescribeCustomKeyStores" => json(
                self.describe_custom_key_stores(caller, input(body)?)
                    .await?,
            ),
            "ConnectCustomKeyStore" => self
                .connect_custom_key_store(caller, input(body)?)
                .await
                .and_then(|_| empty()),
            "DisconnectCustomKeyStore" => self
                .disconnect_custom_key_store(caller, input(body)?)
                .await
                .and_then(|_| empty()),
            "UpdateCustomKeyStore" => self
                .update_custom_key_store(caller, input(body)?)
                .await
                .and_then(|_| empty()),
            "DeleteCustomKeyStore" => self
                .delete_custom_key_store(caller, input(body)?)
                .await
                .and_then(|_| empty()),
            "CreateGrant" => json(self.create_grant(caller, input(body)?).await?),
            "ListGrants" => json(self.list_grants(caller, input(body)?).await?),
            "ListRetirableGrants" => json(self.list_retirable_grants(caller, input(body)?).await?),
            "RetireGrant" => self
                .retire_grant(caller, input(body)?)
                .await
                .and_then(|_| empty()),
            "RevokeGrant" => self
                .revoke_grant(caller, input(body)?)
                .await
                .and_then(|_| empty()),
            "GenerateRandom" => json(self.generate_random(caller, input(body)?).await?),
            "CreateAlias" => self
                .create_alias(caller, input(body)?)
                .await
                .and_then(|_| empty()),
            "UpdateAlias" => self
                .update_alias(caller, input(body)?)
                .await
                .and_then(|_| empty()),
            "DeleteAlias" => self
                .delete_alias(caller, input(body)?)
                .await
                .and_then(|_| empty()),
            "ListAliases" => json(self.list_aliases(caller, input(body)?).await?),
            "TagResource" => self
                .tag_resource(caller, input(body)?)
                .await
                .and_then(|_| empty()),
            "UntagResource" => self
                .untag_resource(caller, input(body)?)
                .await
                .and_then(|_| empty()),
            "ListResourceTags" => json(self.list_resource_tags(caller, input(body)?).await?),
            "GetKeyPolicy" => json(self.get_key_policy(caller, input(body)?).await?),
            "PutKeyPolicy" => self
                .put_key_policy(caller, input(body)?)
                .await
                .and_then(|_| empty()),
            "ListKeyPolicies" => json(self.list_key_policies(caller, input(body)?).await?),
            "EnableKeyRotation" => self
                .enable_key_rotation(caller, input(body)?)
                .await
                .and_then(|_| empty()),
            "DisableKeyRotation" => self
                .disable_key_rotation(caller, input(body)?)
                .await
                .and_then(|_| empty()),
            "GetKeyRotationStatus" => {
                json(self.get_key_rotation_status(caller, input(body)?).await?)
            }
            "RotateKeyOnDemand" => json(self.rotate_key_on_demand(caller, input(body)?).await?),
            "ListKeyRotations" => json(self.list_key_rotations(caller, input(body)?).await?),
            "GetKeyLastUsage" => json(self.get_key_last_usage(caller, input(body)?).await?),
            "ReplicateKey" => json(self.replicate_key(caller, input(body)?).await?),
            "UpdatePrimaryRegion" => self
                .update_primary_region(caller, input(body)?)
                .await
                .and_then(|_| empty()),
            "GetParametersForImport" => {
                json(self.get_parameters_for_import(caller, input(body)?).await?)
            }
            "ImportKeyMaterial" => json(self.import_key_material(caller, input(body)?).await?),
            "DeleteImportedKeyMaterial" => json(
                self.delete_imported_key_material(caller, input(body)?)
                    .await?,
            ),
            other if is_model_operation(other) => Err(KmsError::new(
                ErrorCode::UnsupportedOperationException,
                format!("kmsd does not support the {other} operation yet"),
            )),
            other => Err(KmsError::new(
                ErrorCode::UnknownOperationException,
                format!("Operation '{other}' is not an operation of the KMS API (TrentService)"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supported_operations_are_model_operations() {
        for op in SUPPORTED_OPERATIONS {
            assert!(is_model_operation(op), "{op}");
        }
    }
}
