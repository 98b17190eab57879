//! Token administration with the Security Officer (SO) PIN: for operators and tests, never on
//! the request path. (CloudHSM analogue: the crypto officer's `cloudhsm_mgmt_util`.)
//!
//! The SO cannot log in while this process has the crypto user logged in to the same token
//! (an [`crate::Hsm`] exists for it): that fails with [`HsmError::UserAlreadyLoggedIn`].

use crate::error::{map_ck, HsmError};
use crate::module::{context, find_free_slot, find_slot};
use crate::TokenRef;
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use std::path::Path;
use std::sync::Mutex;

static INIT_TOKEN_LOCK: Mutex<()> = Mutex::new(());

/// Maximum length of a token label in bytes (`CK_TOKEN_INFO.label` is 32 blank-padded bytes).
pub const MAX_LABEL_LEN: usize = 32;

/// Initialises a token in a free slot with `label` and SO PIN (no user PIN yet), like
/// `softhsm2-util --init-token --free`. Fails with [`HsmError::TokenAlreadyExists`] if a token
/// with this label exists. Note: SoftHSM2 only sees tokens that existed when the module was
/// initialised in this process, plus those created through this function.
pub fn init_token(module: &Path, label: &str, so_pin: &str) -> Result<(), HsmError> {
    if label.is_empty() || label.len() > MAX_LABEL_LEN || label.ends_with(' ') {
        return Err(HsmError::Other(format!(
            "token label must be 1..={MAX_LABEL_LEN} bytes without trailing blanks: {label:?}"
        )));
    }
    let ctx = context(module)?;
    // Two concurrent C_InitToken calls could pick the same free slot (the second would
    // re-initialise the first's token): serialise token creation in this process.
    let _guard = INIT_TOKEN_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    match find_slot(&ctx, label) {
        Ok(_) => return Err(HsmError::TokenAlreadyExists(label.to_string())),
        Err(HsmError::TokenNotFound(_)) => {}
        Err(e) => return Err(e),
    }
    let slot = find_free_slot(&ctx)?;
    ctx.init_token(slot, &AuthPin::from(so_pin), label)
        .map_err(map_ck)?;
    // Re-reading the slot list makes SoftHSM2 offer a new free slot, and proves the token is
    // findable by its label.
    find_slot(&ctx, label)?;
    tracing::info!(token = %label, "initialised HSM token");
    Ok(())
}

/// Creates the crypto user (`kmsuser`): SO login + `C_InitPIN(user_pin)` (CloudHSM:
/// `createUser CU kmsuser <password>`). Also resets a forgotten user PIN.
pub fn init_user_pin(token: &TokenRef, so_pin: &str, user_pin: &str) -> Result<(), HsmError> {
    let ctx = context(&token.module)?;
    let slot = find_slot(&ctx, &token.label)?;
    let session = ctx.open_rw_session(slot).map_err(map_ck)?;
    session
        .login(UserType::So, Some(&AuthPin::from(so_pin)))
        .map_err(map_ck)?;
    let r = session.init_pin(&AuthPin::from(user_pin)).map_err(map_ck);
    if let Err(e) = session.logout() {
        tracing::debug!(token = %token.label, error = %e, "SO logout failed");
    }
    r?;
    tracing::info!(token = %token.label, "crypto user PIN initialised");
    Ok(())
}

/// Establishes (or extends to new tokens) the cluster wrapping key, the AES-256 key that
/// [`crate::replicate_key`] uses to copy KMS keys between the tokens of a cluster. Needs the SO
/// PIN of every token (`so_pins[i]` for `tokens[i]`), because only the SO may set `CKA_TRUSTED`.
///
/// If no token has a cluster wrapping key, one is generated on `tokens[0]`; otherwise the first
/// token holding one is the source. It is copied to every token lacking it through an ECDH
/// (P-256) key agreement between the two HSMs, so its value never leaves hardware. Tokens
/// holding a *different* cluster key fail with [`HsmError::ClusterKeyMismatch`]. Idempotent.
/// Returns the cluster key id (its `CKA_ID`, equal on all tokens; see
/// [`crate::Hsm::cluster_key_id`]).
pub fn establish_cluster_wrapping_key(
    tokens: &[TokenRef],
    so_pins: &[&str],
) -> Result<Vec<u8>, HsmError> {
    crate::cluster::establish(tokens, so_pins)
}

/// Re-initialises an initialised token (`C_InitToken` with its SO PIN and its own label): every
/// object on it is destroyed and the crypto user's PIN is uninitialised, as on a fresh token
/// (CloudHSM zeroises a deleted HSM). Fails with `CKR_SESSION_EXISTS` while this process has a
/// session open on the token.
pub fn reinit_token(token: &TokenRef, so_pin: &str) -> Result<(), HsmError> {
    let ctx = context(&token.module)?;
    let _guard = INIT_TOKEN_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let slot = find_slot(&ctx, &token.label)?;
    ctx.init_token(slot, &AuthPin::from(so_pin), &token.label)
        .map_err(map_ck)?;
    tracing::info!(token = %token.label, "re-initialised HSM token (every object destroyed)");
    Ok(())
}

/// The id (`CKA_ID`) of the cluster wrapping key the token holds, if any. Logs in as SO and
/// changes nothing (unlike [`establish_cluster_wrapping_key`], which would create one).
pub fn cluster_key_id(token: &TokenRef, so_pin: &str) -> Result<Option<Vec<u8>>, HsmError> {
    crate::cluster::key_id(token, so_pin)
}

/// Checks that the token's module loads and the token is present (no login).
pub fn probe_token(token: &TokenRef) -> Result<(), HsmError> {
    let ctx = crate::module::context(&token.module)?;
    crate::module::find_slot(&ctx, &token.label).map(|_| ())
}
