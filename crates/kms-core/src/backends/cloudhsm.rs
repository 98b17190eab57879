//! Keys in CloudHSM key stores: the material stays in the cluster's HSMs, which run
//! AES-256-GCM over the same envelope as local keys.

use kms_crypto::SecretBytes;

use super::{invalid_ciphertext, open_v1, seal_v1, BackendFuture, KeyBackend, Use};
use crate::error::internal;

/// The key's custom key store (its HSM sessions).
fn key_store_of<'a>(u: &Use<'a>) -> &'a str {
    u.key
        .record
        .custom_key_store_id
        .as_deref()
        .unwrap_or_default()
}

/// Material inside the HSMs of the key's custom key store.
pub(crate) struct CloudHsm;

impl KeyBackend for CloudHsm {
    fn name(&self) -> &'static str {
        "cloudhsm"
    }

    fn holds_material(&self) -> bool {
        false
    }

    fn seal<'a>(
        &'a self,
        u: Use<'a>,
        material_id: [u8; 16],
        plaintext: &'a [u8],
    ) -> BackendFuture<'a, Vec<u8>> {
        let store = key_store_of(&u);
        seal_v1(u.key, material_id, u.context, |aad| {
            let iv: [u8; 12] = kms_crypto::random_array().map_err(internal)?;
            let ct = u
                .service
                .hsm_encrypt(store, &material_id, &iv, aad, plaintext)?;
            Ok((iv, ct))
        })
        .into()
    }

    fn open<'a>(&'a self, u: Use<'a>, blob: &'a [u8]) -> BackendFuture<'a, SecretBytes> {
        let store = key_store_of(&u);
        open_v1(blob, u.context, |env, aad| {
            let iv: [u8; 12] = env.iv.try_into().map_err(|_| invalid_ciphertext())?;
            u.service
                .hsm_decrypt(store, &env.material_id, &iv, aad, env.ciphertext_and_tag)
        })
        .into()
    }
}
