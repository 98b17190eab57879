//! What seed files (`kmsd serve --seed FILE`, a test feature) need from the service: keys with
//! fixed ids and, optionally, fixed material, created only when missing.

use kms_types::*;

use super::{internal, Service};
use crate::context::Caller;
use crate::ids::is_key_id;

impl Service {
    /// Creates key `key_id` in the caller's account and Region with `r` unless a key with that
    /// id exists there; returns whether it was created. With `material`, the key is created with
    /// Origin EXTERNAL and the material installed as imported (`KEY_MATERIAL_DOES_NOT_EXPIRE`),
    /// so DescribeKey says what it is.
    pub async fn seed_key(
        &self,
        caller: &Caller,
        key_id: &str,
        mut r: CreateKeyRequest,
        material: Option<&[u8]>,
    ) -> Result<bool, KmsError> {
        let key_id = key_id.to_ascii_lowercase();
        if !is_key_id(&key_id) {
            return Err(KmsError::new(
                ErrorCode::ValidationException,
                format!(
                    "Seeded key id '{key_id}' is not a key id (a UUID, or mrk- and 32 hex digits)"
                ),
            ));
        }
        if key_id.starts_with("mrk-") != (r.multi_region == Some(true)) {
            return Err(KmsError::new(
                ErrorCode::ValidationException,
                format!(
                    "Seeded key id '{key_id}': mrk- ids are for multi-Region keys, and only they"
                ),
            ));
        }
        if self
            .store
            .get_key(&caller.region, &key_id)
            .map_err(internal)?
            .is_some()
        {
            return Ok(false);
        }
        if material.is_some() {
            r.origin = Some("EXTERNAL".into());
        }
        self.create_key_with_id(caller, r, Some(key_id.clone()))
            .await?;
        if let Some(m) = material {
            self.seed_material(caller, &key_id, m).await?;
        }
        Ok(true)
    }
}
