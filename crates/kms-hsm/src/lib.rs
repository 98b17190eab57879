//! PKCS#11 HSM tokens for kmsd's CloudHSM-style custom key stores (through `cryptoki`),
//! tested against SoftHSM2.
//!
//! Mapping (see `custom-key-stores.md` §5): a *cluster* is a set of tokens, each found by
//! label ([`TokenRef`]); `kmsuser` is the token's `CKU_USER` and its password the user PIN;
//! KMS keys are persistent, sensitive AES-256 keys identified by a 16-byte `CKA_ID`, used only
//! with `CKM_AES_GCM` inside the HSM, and copied between the tokens of a cluster by
//! [`replicate_key`] under a cluster wrapping key (`docs/adr/0001-hsm-key-replication.md`).
//!
//! Process-wide facts callers must respect:
//! * each module is loaded and `C_Initialize`d once per process and never finalised;
//! * SoftHSM2 reads `SOFTHSM2_CONF` at that moment, and sees only tokens that existed then
//!   (plus those created through [`admin::init_token`]);
//! * login state is per process and token: one [`Hsm`] per token per process.
//!
//! PINs are only held as zeroize-on-drop `AuthPin`s for the duration of a call and never
//! logged.

pub mod admin;
mod cluster;
mod error;
mod hsm;
mod module;
mod pool;
pub mod root_key;
mod template;
pub mod xks;

#[cfg(test)]
mod tests;

pub use cluster::{replicate_key, unwrap_under_cluster_key, wrap_under_cluster_key};
pub use error::HsmError;
pub use hsm::{Hsm, DEFAULT_POOL_SIZE, GCM_TAG_LEN};
pub use module::refresh_module;
pub use root_key::{Pkcs11RootKey, RootKeyLocation, WRAPPED_ROOT_KEY_FILE};
pub use template::CLUSTER_KEY_LABEL;

use std::path::PathBuf;

/// A token: the PKCS#11 module that serves it and its label. Tokens are always found by label,
/// never by slot id (slot ids change across restarts).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenRef {
    /// Path of the PKCS#11 shared library, e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    /// The token label (`CK_TOKEN_INFO.label`, at most 32 bytes).
    pub label: String,
}

impl TokenRef {
    /// A token reference.
    pub fn new(module: impl Into<PathBuf>, label: impl Into<String>) -> TokenRef {
        TokenRef {
            module: module.into(),
            label: label.into(),
        }
    }
}
