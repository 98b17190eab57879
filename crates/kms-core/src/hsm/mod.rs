//! CloudHSM-style key stores: HSM clusters made of PKCS#11 tokens (declared by the operator),
//! the CloudHSM v2 control plane over them, and the KMS custom key store operations.
//!
//! The domain sees tokens only through [`HsmDriver`] / [`HsmSession`]; the binary implements
//! them with PKCS#11 (`kms-hsm`), tests with [`memory::MemoryDriver`].

pub mod backup;
mod backup_ops;
pub mod cluster;
mod connection;
mod control;
pub mod driver;
pub mod fleet;
mod follow;
mod keys;
pub mod keystore;
pub mod memory;
mod store_ops;
mod sync;
pub mod users;
mod vault;

pub use connection::Connections;
pub use control::SUPPORTED_CLOUDHSM_OPERATIONS;
pub use driver::{HsmDriver, HsmFault, HsmSession};
pub use fleet::{
    DeclaredHsm, DeclaredSubnet, DeclaredVault, FleetSource, HsmFleet, SgRule, StaticFleet,
};
pub use store_ops::KeyStoreState;
pub use users::{HsmUser, KMS_USER};

/// Document kind of clusters in the store.
pub const CLUSTER_DOC: &str = "cloudhsm-cluster";
/// Document kind of custom key stores in the store.
pub const KEY_STORE_DOC: &str = "custom-key-store";

/// Random id in the CloudHSM style: `prefix` + `len` characters of `[2-7a-z]`.
pub(crate) fn cloudhsm_id(prefix: &str, len: usize) -> Result<String, kms_types::KmsError> {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let bytes =
        kms_crypto::random_bytes(len).map_err(|e| kms_types::KmsError::internal(e.to_string()))?;
    Ok(format!(
        "{prefix}{}",
        bytes
            .iter()
            .map(|b| ALPHABET[(*b & 31) as usize] as char)
            .collect::<String>()
    ))
}

#[cfg(test)]
mod follow_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod user_tests;
#[cfg(test)]
mod vault_tests;
