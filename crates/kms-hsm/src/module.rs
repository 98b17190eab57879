//! Process-wide registry of loaded PKCS#11 modules and token lookup by label.
//!
//! `C_Initialize` may be called only once per module per process (a second call returns
//! `CKR_CRYPTOKI_ALREADY_INITIALIZED`, even through a second `dlopen` of the same library), so
//! every [`Pkcs11`] context is created once per module path and shared. `C_Finalize` is never
//! called: other users of the module in this process could still hold sessions.

use crate::error::{map_ck, rv_of, HsmError};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::RvError;
use cryptoki::slot::Slot;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
/// Logged-in [`crate::Hsm`]s per module, so the module is re-initialised only when none is open.
static LIVE: OnceLock<Mutex<HashMap<PathBuf, usize>>> = OnceLock::new();

fn module_key(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Counts a logged-in `Hsm` on the module.
pub(crate) fn acquire(path: &Path) {
    let live = LIVE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut live = live.lock().unwrap_or_else(|p| p.into_inner());
    *live.entry(module_key(path)).or_insert(0) += 1;
}

/// Uncounts a logged-in `Hsm` on the module.
pub(crate) fn release(path: &Path) {
    let live = LIVE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut live = live.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(n) = live.get_mut(&module_key(path)) {
        *n = n.saturating_sub(1);
    }
}

/// Re-initialises the module (`C_Finalize`, then `C_Initialize` at next use) if no `Hsm` of
/// this process is logged in through it, so that changes other processes made to its tokens
/// become visible. SoftHSM2 reads a token's user PIN once per `C_Initialize`; a real HSM sees
/// such changes at once. Returns whether it re-initialised.
pub fn refresh_module(path: &Path) -> bool {
    let key = module_key(path);
    let live = LIVE.get_or_init(|| Mutex::new(HashMap::new()));
    let live = live.lock().unwrap_or_else(|p| p.into_inner());
    if live.get(&key).copied().unwrap_or(0) > 0 {
        return false;
    }
    let map = MODULES.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    match map.remove(&key) {
        Some(ctx) => {
            if let Err(e) = ctx.finalize() {
                tracing::warn!(module = %key.display(), error = %e, "C_Finalize failed");
            }
            true
        }
        None => false,
    }
}

/// Loads and initialises the module at `path` (once per process) and returns its shared context.
pub(crate) fn context(path: &Path) -> Result<Pkcs11, HsmError> {
    let key = module_key(path);
    let map = MODULES.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(ctx) = map.get(&key) {
        return Ok(ctx.clone());
    }
    let ctx =
        Pkcs11::new(&key).map_err(|e| HsmError::ModuleLoad(format!("{}: {e}", key.display())))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) => {}
        Err(e) if rv_of(&e) == Some(RvError::CryptokiAlreadyInitialized) => {
            // Someone else in this process (outside this registry) initialised it: usable.
            tracing::warn!(module = %key.display(), "PKCS#11 module was already initialised");
        }
        Err(e) => {
            return Err(HsmError::ModuleLoad(format!(
                "{}: C_Initialize: {e}",
                key.display()
            )))
        }
    }
    tracing::debug!(module = %key.display(), "PKCS#11 module initialised");
    map.insert(key, ctx.clone());
    Ok(ctx)
}

/// The slot holding the initialised token labelled `label`. Slot ids are not stable across
/// restarts (SoftHSM2 derives them from the token serial), so tokens are always found by label.
pub(crate) fn find_slot(ctx: &Pkcs11, label: &str) -> Result<Slot, HsmError> {
    let mut found = None;
    for slot in ctx.get_slots_with_token().map_err(map_ck)? {
        let info = match ctx.get_token_info(slot) {
            Ok(info) => info,
            // A token vanishing between the two calls is not our token.
            Err(_) => continue,
        };
        if info.token_initialized() && info.label() == label {
            if found.is_some() {
                return Err(HsmError::Other(format!(
                    "more than one token is labelled {label:?}"
                )));
            }
            found = Some(slot);
        }
    }
    found.ok_or_else(|| HsmError::TokenNotFound(label.to_string()))
}

/// A slot with a present but uninitialised token (SoftHSM2 always offers one).
pub(crate) fn find_free_slot(ctx: &Pkcs11) -> Result<Slot, HsmError> {
    for slot in ctx.get_slots_with_token().map_err(map_ck)? {
        if let Ok(info) = ctx.get_token_info(slot) {
            if !info.token_initialized() {
                return Ok(slot);
            }
        }
    }
    Err(HsmError::Other(
        "no free (uninitialised) token slot in the module".to_string(),
    ))
}
