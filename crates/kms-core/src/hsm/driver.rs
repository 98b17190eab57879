//! The HSM access the domain needs, implemented with PKCS#11 by the binary.

use std::any::Any;
use std::sync::Arc;

use super::fleet::DeclaredHsm;

/// A failure reported by an HSM, in the terms the key store's error codes need.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HsmFault {
    /// Module not loadable, token absent, device error: the HSM cannot be reached.
    #[error("HSM unreachable: {0}")]
    Unreachable(String),
    /// Wrong user PIN.
    #[error("incorrect PIN")]
    PinIncorrect,
    /// The user is locked out.
    #[error("user locked")]
    PinLocked,
    /// The token has no crypto user yet.
    #[error("no crypto user on the token")]
    UserNotFound,
    /// The crypto user is logged in elsewhere.
    #[error("user already logged in")]
    UserLoggedIn,
    /// No key object with that id.
    #[error("key not found in the HSM")]
    KeyNotFound,
    /// AES-GCM authentication failed.
    #[error("decryption failed")]
    DecryptFailed,
    /// Anything else.
    #[error("HSM error: {0}")]
    Other(String),
}

/// A token with the crypto user logged in.
pub trait HsmSession: Send + Sync {
    /// Changes the crypto user's PIN.
    fn change_pin(&self, old: &str, new: &str) -> Result<(), HsmFault>;
    /// Generates a persistent, non-extractable AES-256 key.
    fn generate_key(&self, id: &[u8; 16], label: &str) -> Result<(), HsmFault>;
    /// Whether a key exists.
    fn has_key(&self, id: &[u8; 16]) -> Result<bool, HsmFault>;
    /// Destroys a key.
    fn destroy_key(&self, id: &[u8; 16]) -> Result<(), HsmFault>;
    /// AES-256-GCM inside the HSM; returns ciphertext || tag.
    fn encrypt(
        &self,
        id: &[u8; 16],
        iv: &[u8; 12],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, HsmFault>;
    /// AES-256-GCM decryption inside the HSM.
    fn decrypt(
        &self,
        id: &[u8; 16],
        iv: &[u8; 12],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<kms_crypto::SecretBytes, HsmFault>;
    /// Random bytes from the HSM.
    fn random(&self, n: usize) -> Result<Vec<u8>, HsmFault>;
    /// Cheap health check.
    fn probe(&self) -> Result<(), HsmFault>;
    /// Logs the crypto user out.
    fn logout(&self);
    /// For the driver's own downcasts (key replication).
    fn as_any(&self) -> &dyn Any;
}

/// Opens tokens.
pub trait HsmDriver: Send + Sync {
    /// Whether the token is reachable (no login).
    fn probe_token(&self, hsm: &DeclaredHsm) -> Result<(), HsmFault>;
    /// Creates the crypto user with `user_pin` (SO login with `so_pin`).
    fn create_user(&self, hsm: &DeclaredHsm, so_pin: &str, user_pin: &str) -> Result<(), HsmFault>;
    /// Logs the crypto user in.
    fn login(&self, hsm: &DeclaredHsm, user_pin: &str) -> Result<Arc<dyn HsmSession>, HsmFault>;
    /// The id of the cluster wrapping key the token holds, if any (SO login; changes nothing).
    fn cluster_key_id(&self, hsm: &DeclaredHsm, so_pin: &str) -> Result<Option<Vec<u8>>, HsmFault>;
    /// Erases the token as re-initialising it does (SO login): every object destroyed, no
    /// crypto user; its label and SO PIN stay.
    fn wipe_token(&self, hsm: &DeclaredHsm, so_pin: &str) -> Result<(), HsmFault>;
    /// Prepares a set of tokens of one cluster for key replication (e.g. a shared wrapping key
    /// established inside the tokens); idempotent. Called with the SO PINs when the cluster's
    /// crypto user is created. Returns the id of the cluster wrapping key the tokens now share
    /// (the one of the first token holding one, else a new one made on the first token).
    fn prepare_cluster(
        &self,
        hsms: &[(&DeclaredHsm, &str)],
        user_pin: &str,
    ) -> Result<Vec<u8>, HsmFault>;
    /// Makes key `id` (present on `source`) present on every session of `targets` without its
    /// plaintext leaving the HSMs.
    fn replicate_key(
        &self,
        source: &Arc<dyn HsmSession>,
        targets: &[Arc<dyn HsmSession>],
        id: &[u8; 16],
        label: &str,
    ) -> Result<(), HsmFault>;
    /// Wraps key `id` of `source` under the cluster wrapping key, for a backup: returns the
    /// wrapping key's id and the blob, ciphertext only an HSM holding that key can unwrap.
    fn wrap_for_backup(
        &self,
        source: &Arc<dyn HsmSession>,
        id: &[u8; 16],
    ) -> Result<(Vec<u8>, Vec<u8>), HsmFault>;
    /// Unwraps a backup blob on `target` as the non-extractable key `id` (a target already
    /// holding `id` is left alone).
    fn restore_from_backup(
        &self,
        target: &Arc<dyn HsmSession>,
        id: &[u8; 16],
        label: &str,
        blob: &[u8],
    ) -> Result<(), HsmFault>;
}
