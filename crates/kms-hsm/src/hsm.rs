//! [`Hsm`]: a token with the crypto user logged in, and the key operations on it.

use crate::error::{is_stale_handle, map_ck, map_decrypt, HsmError};
use crate::module::{context, find_slot};
use crate::pool::{PooledSession, SessionPool};
use crate::template;
use crate::TokenRef;
use cryptoki::error::Error as CkError;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectHandle};
use cryptoki::session::{SessionState, UserType};
use cryptoki::types::AuthPin;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use zeroize::Zeroizing;

/// Length of a GCM tag appended to the ciphertext.
pub const GCM_TAG_LEN: usize = 16;

/// Default number of R/W sessions an [`Hsm`] opens at most.
pub const DEFAULT_POOL_SIZE: usize = 4;

/// A token opened with the crypto user (`kmsuser`, `CKU_USER`) logged in; holds a small pool of
/// R/W sessions so several threads can use it concurrently.
///
/// Login state is per process and token: while an `Hsm` for a token exists, a second
/// [`Hsm::login`] to the same token in this process fails with
/// [`HsmError::UserAlreadyLoggedIn`]. Dropping the `Hsm` closes its sessions, which logs out.
/// The PIN is not retained: if the login is lost (e.g. the token was reset), operations fail
/// with [`HsmError::NotLoggedIn`] or [`HsmError::Device`] and the caller must log in again.
pub struct Hsm {
    token: TokenRef,
    pool: SessionPool,
    /// `CKA_ID` -> object handle. Handles stay valid while the process keeps a session open on
    /// the token (the pool always does); a stale one is detected and looked up again.
    handles: Mutex<HashMap<[u8; 16], ObjectHandle>>,
    /// XKS key label -> object handle (see [`crate::xks`]): found once, checked at every use.
    pub(crate) xks_handles: Mutex<HashMap<String, ObjectHandle>>,
    logged_out: AtomicBool,
}

impl Drop for Hsm {
    fn drop(&mut self) {
        crate::module::release(&self.token.module);
    }
}

impl std::fmt::Debug for Hsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hsm")
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

fn gcm_params<'a>(iv: &'a mut [u8; 12], aad: &'a [u8]) -> Result<Mechanism<'a>, HsmError> {
    Ok(Mechanism::AesGcm(
        GcmParams::new(iv, aad, 128.into()).map_err(map_ck)?,
    ))
}

impl Hsm {
    /// Opens the token (loading and `C_Initialize`-ing the module once per process), opens a
    /// R/W session and logs the crypto user in, with a pool of [`DEFAULT_POOL_SIZE`] sessions.
    pub fn login(token: &TokenRef, user_pin: &str) -> Result<Hsm, HsmError> {
        Self::login_with_pool_size(token, user_pin, DEFAULT_POOL_SIZE)
    }

    /// As [`Hsm::login`] with at most `pool_size` concurrent sessions (minimum 1).
    pub fn login_with_pool_size(
        token: &TokenRef,
        user_pin: &str,
        pool_size: usize,
    ) -> Result<Hsm, HsmError> {
        let ctx = context(&token.module)?;
        let slot = find_slot(&ctx, &token.label)?;
        let session = ctx.open_rw_session(slot).map_err(map_ck)?;
        let pin = AuthPin::from(user_pin);
        session.login(UserType::User, Some(&pin)).map_err(map_ck)?;
        tracing::info!(token = %token.label, "logged in to HSM token as crypto user");
        crate::module::acquire(&token.module);
        Ok(Hsm {
            token: token.clone(),
            pool: SessionPool::new(ctx, slot, session, pool_size),
            handles: Mutex::new(HashMap::new()),
            xks_handles: Mutex::new(HashMap::new()),
            logged_out: AtomicBool::new(false),
        })
    }

    /// The token's label.
    pub fn token_label(&self) -> &str {
        &self.token.label
    }

    /// The token reference this `Hsm` was opened with.
    pub fn token(&self) -> &TokenRef {
        &self.token
    }

    /// Number of sessions the pool currently has open.
    #[cfg(test)]
    pub(crate) fn open_sessions(&self) -> usize {
        self.pool.open_sessions()
    }

    pub(crate) fn session(&self) -> Result<PooledSession<'_>, HsmError> {
        if self.logged_out.load(Ordering::SeqCst) {
            return Err(HsmError::NotLoggedIn);
        }
        self.pool.get()
    }

    /// Changes the crypto user's PIN (`C_SetPIN` in a R/W session while logged in). The caller
    /// should persist `new_pin` (as "pending") before calling, see the key-store reference.
    pub fn change_pin(&self, old_pin: &str, new_pin: &str) -> Result<(), HsmError> {
        let mut s = self.session()?;
        let (old, new) = (AuthPin::from(old_pin), AuthPin::from(new_pin));
        let r = s.set_pin(&old, &new).map_err(map_ck);
        s.check(r)?;
        tracing::info!(token = %self.token.label, "crypto user PIN changed");
        Ok(())
    }

    /// Logs out (`C_Logout`) and closes the idle sessions. Takes `&self` so it works through an
    /// `Arc`; afterwards every operation fails with [`HsmError::NotLoggedIn`] (log in again with
    /// [`Hsm::login`]). Idempotent.
    pub fn logout(&self) -> Result<(), HsmError> {
        if self.logged_out.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let r = match self.pool.get() {
            Ok(s) => match s.logout() {
                Ok(()) => Ok(()),
                Err(e) => match map_ck(e) {
                    HsmError::NotLoggedIn => Ok(()),
                    other => Err(other),
                },
            },
            Err(e) => Err(e),
        };
        self.pool.close_all();
        self.cache().clear();
        self.xks_handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        tracing::info!(token = %self.token.label, "logged out of HSM token");
        r
    }

    /// Fails with [`HsmError::NotLoggedIn`] if the session no longer has the user logged in.
    fn ensure_logged_in(s: &PooledSession<'_>) -> Result<(), HsmError> {
        let info = s.get_session_info().map_err(map_ck)?;
        match info.session_state() {
            SessionState::RwUser | SessionState::RoUser => Ok(()),
            _ => Err(HsmError::NotLoggedIn),
        }
    }

    /// All objects that are KMS keys with this id.
    fn find_all(s: &PooledSession<'_>, id: &[u8; 16]) -> Result<Vec<ObjectHandle>, HsmError> {
        let found = s
            .find_objects(&template::kms_key_search(id))
            .map_err(map_ck)?;
        if found.is_empty() {
            // Private objects are invisible without login: do not report "not found" then.
            Self::ensure_logged_in(s)?;
        }
        Ok(found)
    }

    /// The handle of key `id`, from the cache or by `C_FindObjects`.
    fn handle(&self, s: &PooledSession<'_>, id: &[u8; 16]) -> Result<ObjectHandle, HsmError> {
        if let Some(h) = self.cache().get(id) {
            return Ok(*h);
        }
        let found = Self::find_all(s, id)?;
        match found.as_slice() {
            [] => Err(HsmError::KeyNotFound),
            [h] => {
                self.cache().insert(*id, *h);
                Ok(*h)
            }
            _ => Err(HsmError::Other(format!(
                "{} objects share the key id {}",
                found.len(),
                hex::encode(id)
            ))),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 16], ObjectHandle>> {
        self.handles.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `op` with the handle of key `id`; if the cached handle turned out to be stale,
    /// looks the key up again and retries once.
    pub(crate) fn with_key<T>(
        &self,
        id: &[u8; 16],
        op: impl Fn(&PooledSession<'_>, ObjectHandle) -> Result<T, CkError>,
        map: impl Fn(CkError) -> HsmError,
    ) -> Result<T, HsmError> {
        let mut s = self.session()?;
        let h = s.check(self.handle(&s, id))?;
        match op(&s, h) {
            Ok(v) => Ok(v),
            Err(e) if is_stale_handle(&e) => {
                self.cache().remove(id);
                let h = s.check(self.handle(&s, id))?;
                let r = op(&s, h).map_err(&map);
                s.check(r)
            }
            Err(e) => {
                let r = Err(map(e));
                s.check(r)
            }
        }
    }

    /// Generates the persistent AES-256 KMS key `id` inside the token (`CKA_TOKEN`, private,
    /// sensitive, encrypt/decrypt with AES-GCM only, not modifiable or copyable, extractable
    /// only by wrapping under a `CKA_TRUSTED` key: the cluster wrapping key, see
    /// [`crate::replicate_key`]). `label` becomes `CKA_LABEL` (the KMS key ARN).
    pub fn generate_aes256_key(&self, id: &[u8; 16], label: &str) -> Result<(), HsmError> {
        let mut s = self.session()?;
        if !s.check(Self::find_all(&s, id))?.is_empty() {
            return Err(HsmError::KeyAlreadyExists);
        }
        let r = s
            .generate_key(
                &Mechanism::AesKeyGen,
                &template::kms_key_template(id, label, true),
            )
            .map_err(map_ck);
        let h = s.check(r)?;
        self.cache().insert(*id, h);
        tracing::debug!(token = %self.token.label, key_id = %hex::encode(id), "generated HSM key");
        Ok(())
    }

    /// Test support: imports a known AES-256 key value (non-extractable) for known-answer tests.
    #[cfg(test)]
    pub(crate) fn import_aes256_key_for_tests(
        &self,
        id: &[u8; 16],
        label: &str,
        value: &[u8; 32],
    ) -> Result<(), HsmError> {
        let s = self.session()?;
        let h = s
            .create_object(&template::imported_key_template(id, label, value))
            .map_err(map_ck)?;
        self.cache().insert(*id, h);
        Ok(())
    }

    /// True if the key `id` exists on the token.
    pub fn has_key(&self, id: &[u8; 16]) -> Result<bool, HsmError> {
        let mut s = self.session()?;
        let found = s.check(Self::find_all(&s, id))?;
        if found.is_empty() {
            self.cache().remove(id);
        }
        Ok(!found.is_empty())
    }

    /// Destroys the key `id` (every object with that id); [`HsmError::KeyNotFound`] if absent.
    pub fn destroy_key(&self, id: &[u8; 16]) -> Result<(), HsmError> {
        let mut s = self.session()?;
        let found = s.check(Self::find_all(&s, id))?;
        self.cache().remove(id);
        if found.is_empty() {
            return Err(HsmError::KeyNotFound);
        }
        for h in found {
            let r = s.destroy_object(h).map_err(map_ck);
            s.check(r)?;
        }
        tracing::debug!(token = %self.token.label, key_id = %hex::encode(id), "destroyed HSM key");
        Ok(())
    }

    /// AES-256-GCM encryption inside the token (`CKM_AES_GCM`, 96-bit IV, 128-bit tag).
    /// Returns `ciphertext || tag`.
    pub fn aes_gcm_encrypt(
        &self,
        id: &[u8; 16],
        iv: &[u8; 12],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        self.with_key(
            id,
            |s, h| {
                let mut iv = *iv;
                let mech = gcm_params(&mut iv, aad).map_err(|_| CkError::InvalidValue)?;
                s.encrypt(&mech, h, plaintext)
            },
            map_ck,
        )
    }

    /// AES-256-GCM decryption inside the token of `ciphertext || tag`. Authentication failure
    /// (or an input shorter than the tag) is [`HsmError::Decrypt`].
    pub fn aes_gcm_decrypt(
        &self,
        id: &[u8; 16],
        iv: &[u8; 12],
        aad: &[u8],
        ciphertext_and_tag: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        if ciphertext_and_tag.len() < GCM_TAG_LEN {
            return Err(HsmError::Decrypt);
        }
        self.with_key(
            id,
            |s, h| {
                let mut iv = *iv;
                let mech = gcm_params(&mut iv, aad).map_err(|_| CkError::InvalidValue)?;
                s.decrypt(&mech, h, ciphertext_and_tag).map(Zeroizing::new)
            },
            map_decrypt,
        )
    }

    /// `n` random bytes from the token's RNG (`C_GenerateRandom`).
    pub fn random(&self, n: usize) -> Result<Vec<u8>, HsmError> {
        let mut out = vec![0u8; n];
        if n == 0 {
            return Ok(out);
        }
        let mut s = self.session()?;
        let r = s.generate_random_slice(&mut out).map_err(map_ck);
        s.check(r)?;
        Ok(out)
    }

    /// Cheap health check: the session still has the user logged in and the token answers a
    /// 1-byte `C_GenerateRandom`.
    pub fn probe(&self) -> Result<(), HsmError> {
        let mut s = self.session()?;
        let r = Self::ensure_logged_in(&s);
        s.check(r)?;
        let mut b = [0u8; 1];
        let r = s.generate_random_slice(&mut b).map_err(map_ck);
        s.check(r)
    }

    /// The `CKA_ID` of the token's cluster wrapping key (identical on every token of a
    /// cluster), or `None` if the token has none. See [`crate::admin::establish_cluster_wrapping_key`].
    pub fn cluster_key_id(&self) -> Result<Option<Vec<u8>>, HsmError> {
        let mut s = self.session()?;
        let r = crate::cluster::find_cluster_key(&s).map_err(map_ck);
        let Some(h) = s.check(r)? else {
            return Ok(None);
        };
        let r = s.get_attributes(h, &[AttributeType::Id]).map_err(map_ck);
        let attrs = s.check(r)?;
        Ok(attrs.into_iter().find_map(|a| match a {
            Attribute::Id(v) => Some(v),
            _ => None,
        }))
    }
}
