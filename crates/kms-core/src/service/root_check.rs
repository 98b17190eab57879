//! The root key check: a value sealed under the root key in the store's metadata, so a node
//! started with another root key on an initialised database refuses to start, clearly, instead
//! of failing later on every key.

use kms_types::{ErrorCode, KmsError};

use super::{internal, Service};
use crate::store::WriteOp;

/// Metadata name of the sealed check value.
const META_ROOT_KEY_CHECK: &str = "root-key-check";
/// What is sealed (and its additional authenticated data).
const CHECK_TEXT: &[u8] = b"kmsd root key check v1";

impl Service {
    /// Checks this service's root key against the store's sealed check value, writing the value
    /// when the store has none (a new database, or one from before the check). Refuses a root
    /// key other than the one the database was initialised with.
    pub async fn verify_root_key(&self) -> Result<(), KmsError> {
        let _section = self.write_section().await?;
        match self.store.get_meta(META_ROOT_KEY_CHECK).map_err(internal)? {
            Some(sealed_hex) => {
                let opened = hex::decode(&sealed_hex)
                    .ok()
                    .and_then(|sealed| self.root.open(CHECK_TEXT, &sealed).ok());
                match opened {
                    Some(text) if &text[..] == CHECK_TEXT => Ok(()),
                    _ => Err(KmsError::new(
                        ErrorCode::KMSInternalException,
                        "this root key is not the one the database was initialised with: every node of a cluster needs the same root key (copy root.key from a running node)",
                    )),
                }
            }
            None => {
                let sealed = self.root.seal(CHECK_TEXT, CHECK_TEXT).map_err(internal)?;
                self.commit(vec![WriteOp::PutMeta {
                    name: META_ROOT_KEY_CHECK.into(),
                    value: hex::encode(sealed),
                }])
                .await
            }
        }
    }
}
