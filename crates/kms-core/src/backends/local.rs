//! Keys whose material is sealed under the root key in the store (imported material too):
//! AES-256-GCM in kmsd with the unsealed material.

use kms_crypto::SecretBytes;
use kms_types::{ErrorCode, KmsError};

use super::{invalid_ciphertext, open_v1, seal_v1, BackendFuture, KeyBackend, Use};
use crate::error::internal;

/// Material unsealed into kmsd's memory.
pub(crate) struct Local;

impl KeyBackend for Local {
    fn name(&self) -> &'static str {
        "local"
    }

    fn holds_material(&self) -> bool {
        true
    }

    fn seal<'a>(
        &'a self,
        u: Use<'a>,
        material_id: [u8; 16],
        plaintext: &'a [u8],
    ) -> BackendFuture<'a, Vec<u8>> {
        seal_v1(u.key, material_id, u.context, |aad| {
            u.key
                .ciphers
                .get(&material_id)
                .ok_or_else(|| internal("material not loaded"))?
                .seal(aad, plaintext)
                .map_err(internal)
        })
        .into()
    }

    fn open<'a>(&'a self, u: Use<'a>, blob: &'a [u8]) -> BackendFuture<'a, SecretBytes> {
        let key = u.key;
        open_v1(blob, u.context, |env, aad| {
            match key.ciphers.get(&env.material_id) {
                Some(cipher) => cipher
                    .open(env.iv, aad, env.ciphertext_and_tag)
                    .map_err(|_| invalid_ciphertext()),
                None => {
                    // Imported material that was deleted or expired: the ciphertext is fine, the
                    // key cannot open it until the same material is imported again.
                    let id = hex::encode(env.material_id);
                    match key.record.materials.iter().find(|m| m.material_id == id) {
                        Some(m) => Err(KmsError::new(
                            ErrorCode::KMSInvalidStateException,
                            format!(
                                "The key material {} of {} is pending import.",
                                m.key_material_id,
                                key.record.arn()
                            ),
                        )),
                        None => Err(invalid_ciphertext()),
                    }
                }
            }
        })
        .into()
    }
}
