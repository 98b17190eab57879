//! An in-memory HSM driver for tests of the key store logic (no PKCS#11). Keys are AES-256
//! keys held in memory; tokens can be made unreachable to test failover.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::driver::{HsmDriver, HsmFault, HsmSession};
use super::fleet::DeclaredHsm;

#[derive(Default)]
struct Token {
    user_pin: Option<String>,
    keys: HashMap<[u8; 16], [u8; 32]>,
    /// The cluster wrapping key: (id, value).
    cluster_key: Option<([u8; 16], [u8; 32])>,
    unreachable: bool,
}

/// The in-memory driver. Tokens exist as soon as they are named.
#[derive(Default, Clone)]
pub struct MemoryDriver {
    tokens: Arc<Mutex<HashMap<String, Token>>>,
}

impl MemoryDriver {
    /// Makes a token unreachable (or reachable again).
    pub fn set_unreachable(&self, label: &str, unreachable: bool) {
        if let Ok(mut t) = self.tokens.lock() {
            t.entry(label.to_owned()).or_default().unreachable = unreachable;
        }
    }
    /// Whether a token holds a cluster wrapping key.
    pub fn has_cluster_key(&self, label: &str) -> bool {
        self.tokens
            .lock()
            .map(|t| t.get(label).is_some_and(|t| t.cluster_key.is_some()))
            .unwrap_or(false)
    }
    /// Number of keys on a token.
    pub fn key_count(&self, label: &str) -> usize {
        self.tokens
            .lock()
            .map(|t| t.get(label).map_or(0, |t| t.keys.len()))
            .unwrap_or(0)
    }
    /// The current user PIN of a token (tests check rotation).
    pub fn user_pin(&self, label: &str) -> Option<String> {
        self.tokens
            .lock()
            .ok()
            .and_then(|t| t.get(label).and_then(|t| t.user_pin.clone()))
    }
    /// Removes a token's crypto user.
    pub fn remove_user(&self, label: &str) {
        if let Ok(mut t) = self.tokens.lock() {
            t.entry(label.to_owned()).or_default().user_pin = None;
        }
    }
    /// Sets a token's user PIN directly (an operator changing it behind kmsd's back).
    pub fn set_user_pin(&self, label: &str, pin: &str) {
        if let Ok(mut t) = self.tokens.lock() {
            t.entry(label.to_owned()).or_default().user_pin = Some(pin.to_owned());
        }
    }
    /// Erases a token (its user, keys and cluster wrapping key), as re-initialising it would.
    pub fn wipe(&self, label: &str) {
        if let Ok(mut t) = self.tokens.lock() {
            t.insert(label.to_owned(), Token::default());
        }
    }
    fn with<T>(
        &self,
        label: &str,
        f: impl FnOnce(&mut Token) -> Result<T, HsmFault>,
    ) -> Result<T, HsmFault> {
        let mut tokens = self
            .tokens
            .lock()
            .map_err(|_| HsmFault::Other("poisoned".into()))?;
        let t = tokens.entry(label.to_owned()).or_default();
        if t.unreachable {
            return Err(HsmFault::Unreachable(format!(
                "token {label} is unreachable"
            )));
        }
        f(t)
    }
}

struct MemorySession {
    driver: MemoryDriver,
    label: String,
}

fn cipher(key: &[u8; 32]) -> Result<kms_crypto::AesGcmKey, HsmFault> {
    kms_crypto::AesGcmKey::new(key).map_err(|e| HsmFault::Other(e.to_string()))
}

impl HsmSession for MemorySession {
    fn change_pin(&self, old: &str, new: &str) -> Result<(), HsmFault> {
        self.driver.with(&self.label, |t| {
            if t.user_pin.as_deref() != Some(old) {
                return Err(HsmFault::PinIncorrect);
            }
            t.user_pin = Some(new.to_owned());
            Ok(())
        })
    }
    fn generate_key(&self, id: &[u8; 16], _label: &str) -> Result<(), HsmFault> {
        let k: [u8; 32] = kms_crypto::random_array().map_err(|e| HsmFault::Other(e.to_string()))?;
        self.driver.with(&self.label, |t| {
            t.keys.insert(*id, k);
            Ok(())
        })
    }
    fn has_key(&self, id: &[u8; 16]) -> Result<bool, HsmFault> {
        self.driver
            .with(&self.label, |t| Ok(t.keys.contains_key(id)))
    }
    fn destroy_key(&self, id: &[u8; 16]) -> Result<(), HsmFault> {
        self.driver.with(&self.label, |t| {
            t.keys.remove(id).map(|_| ()).ok_or(HsmFault::KeyNotFound)
        })
    }
    fn encrypt(
        &self,
        id: &[u8; 16],
        iv: &[u8; 12],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, HsmFault> {
        let key = self.driver.with(&self.label, |t| {
            t.keys.get(id).copied().ok_or(HsmFault::KeyNotFound)
        })?;
        cipher(&key)?
            .seal_with_iv(*iv, aad, plaintext)
            .map_err(|e| HsmFault::Other(e.to_string()))
    }
    fn decrypt(
        &self,
        id: &[u8; 16],
        iv: &[u8; 12],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<kms_crypto::SecretBytes, HsmFault> {
        let key = self.driver.with(&self.label, |t| {
            t.keys.get(id).copied().ok_or(HsmFault::KeyNotFound)
        })?;
        cipher(&key)?
            .open(iv, aad, ciphertext)
            .map_err(|_| HsmFault::DecryptFailed)
    }
    fn random(&self, n: usize) -> Result<Vec<u8>, HsmFault> {
        self.driver.with(&self.label, |_| Ok(()))?;
        kms_crypto::random_bytes(n)
            .map(|b| b.to_vec())
            .map_err(|e| HsmFault::Other(e.to_string()))
    }
    fn probe(&self) -> Result<(), HsmFault> {
        self.driver.with(&self.label, |_| Ok(()))
    }
    fn logout(&self) {}
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl HsmDriver for MemoryDriver {
    fn probe_token(&self, hsm: &DeclaredHsm) -> Result<(), HsmFault> {
        self.with(&hsm.token_label, |_| Ok(()))
    }
    fn create_user(
        &self,
        hsm: &DeclaredHsm,
        _so_pin: &str,
        user_pin: &str,
    ) -> Result<(), HsmFault> {
        self.with(&hsm.token_label, |t| {
            t.user_pin = Some(user_pin.to_owned());
            Ok(())
        })
    }
    fn login(&self, hsm: &DeclaredHsm, user_pin: &str) -> Result<Arc<dyn HsmSession>, HsmFault> {
        self.with(&hsm.token_label, |t| match &t.user_pin {
            None => Err(HsmFault::UserNotFound),
            Some(p) if p != user_pin => Err(HsmFault::PinIncorrect),
            Some(_) => Ok(()),
        })?;
        Ok(Arc::new(MemorySession {
            driver: self.clone(),
            label: hsm.token_label.clone(),
        }))
    }
    fn cluster_key_id(
        &self,
        hsm: &DeclaredHsm,
        _so_pin: &str,
    ) -> Result<Option<Vec<u8>>, HsmFault> {
        self.with(&hsm.token_label, |t| {
            Ok(t.cluster_key.map(|(id, _)| id.to_vec()))
        })
    }
    fn wipe_token(&self, hsm: &DeclaredHsm, _so_pin: &str) -> Result<(), HsmFault> {
        self.with(&hsm.token_label, |t| {
            let unreachable = t.unreachable;
            *t = Token {
                unreachable,
                ..Token::default()
            };
            Ok(())
        })
    }
    fn prepare_cluster(
        &self,
        hsms: &[(&DeclaredHsm, &str)],
        _user_pin: &str,
    ) -> Result<Vec<u8>, HsmFault> {
        let mut existing = None;
        for (h, _) in hsms {
            if let Some(k) = self.with(&h.token_label, |t| Ok(t.cluster_key))? {
                existing.get_or_insert(k);
            }
        }
        let key = match existing {
            Some(k) => k,
            None => (
                kms_crypto::random_array().map_err(|e| HsmFault::Other(e.to_string()))?,
                kms_crypto::random_array().map_err(|e| HsmFault::Other(e.to_string()))?,
            ),
        };
        for (h, _) in hsms {
            self.with(&h.token_label, |t| match t.cluster_key {
                Some((id, _)) if id != key.0 => Err(HsmFault::Other(format!(
                    "token {} holds another cluster wrapping key",
                    h.token_label
                ))),
                _ => {
                    t.cluster_key = Some(key);
                    Ok(())
                }
            })?;
        }
        Ok(key.0.to_vec())
    }
    fn replicate_key(
        &self,
        source: &Arc<dyn HsmSession>,
        targets: &[Arc<dyn HsmSession>],
        id: &[u8; 16],
        _label: &str,
    ) -> Result<(), HsmFault> {
        let src = memory_session(source)?;
        let key = self.with(&src.label, |t| {
            t.keys.get(id).copied().ok_or(HsmFault::KeyNotFound)
        })?;
        for t in targets {
            let dst = memory_session(t)?;
            self.with(&dst.label, |tok| {
                tok.keys.insert(*id, key);
                Ok(())
            })?;
        }
        Ok(())
    }
    fn wrap_for_backup(
        &self,
        source: &Arc<dyn HsmSession>,
        id: &[u8; 16],
    ) -> Result<(Vec<u8>, Vec<u8>), HsmFault> {
        let src = memory_session(source)?;
        let (cwk, key) = self.with(&src.label, |t| {
            let cwk = t
                .cluster_key
                .ok_or_else(|| HsmFault::Other("no cluster wrapping key".into()))?;
            Ok((cwk, t.keys.get(id).copied().ok_or(HsmFault::KeyNotFound)?))
        })?;
        let iv: [u8; 12] =
            kms_crypto::random_array().map_err(|e| HsmFault::Other(e.to_string()))?;
        let mut blob = iv.to_vec();
        blob.extend(
            cipher(&cwk.1)?
                .seal_with_iv(iv, id, &key)
                .map_err(|e| HsmFault::Other(e.to_string()))?,
        );
        Ok((cwk.0.to_vec(), blob))
    }
    fn restore_from_backup(
        &self,
        target: &Arc<dyn HsmSession>,
        id: &[u8; 16],
        _label: &str,
        blob: &[u8],
    ) -> Result<(), HsmFault> {
        let dst = memory_session(target)?;
        let cwk = self.with(&dst.label, |t| {
            t.cluster_key
                .ok_or_else(|| HsmFault::Other("no cluster wrapping key".into()))
        })?;
        let (iv, ct) = blob.split_at_checked(12).ok_or(HsmFault::DecryptFailed)?;
        let key = cipher(&cwk.1)?.open(iv, id, ct).map_err(|_| {
            HsmFault::Other("the blob was wrapped under another cluster wrapping key".into())
        })?;
        let key: [u8; 32] = key
            .as_slice()
            .try_into()
            .map_err(|_| HsmFault::Other("not an AES-256 key".into()))?;
        self.with(&dst.label, |t| {
            t.keys.entry(*id).or_insert(key);
            Ok(())
        })
    }
}

fn memory_session(s: &Arc<dyn HsmSession>) -> Result<&MemorySession, HsmFault> {
    s.as_any()
        .downcast_ref::<MemorySession>()
        .ok_or_else(|| HsmFault::Other("foreign session".into()))
}
