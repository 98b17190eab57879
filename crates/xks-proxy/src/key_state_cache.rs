//! Key states remembered between calls, so that an Encrypt or Decrypt does not read the key's
//! attributes and search for its disable marker in the token every time (on SoftHSM2 that
//! reading was about half of the proxy's CPU per Encrypt: the module re-opens, locks and reads
//! its object files for every attribute read and every search).
//!
//! The rule, in full:
//! * A state read from the token within `hsm.key_state_max_age_ms` is trusted for *allowing*
//!   an operation. Older states are read again.
//! * A refusal is never decided on a remembered state: the state is read again first, so
//!   `enable-key` or a usage given back takes effect at the next call.
//! * GetKeyMetadata always reads the token and refreshes the remembered state, and so does the
//!   check after a failed HSM operation.
//! * Missing keys are not remembered (a key created meanwhile is found at the next call).
//!
//! So a key disabled or restricted by another process (`xks-proxy disable-key`, another
//! PKCS#11 tool) may still serve calls for up to the maximum age; `0` reads the token at every
//! call. The number of remembered keys is bounded by [`MAX_REMEMBERED_KEYS`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kms_hsm::xks::XksKeyInfo;
use kms_hsm::{Hsm, HsmError};

use crate::key_state::{self, Need, Refusal};

/// At most this many keys' states are remembered; when full, states past their age are
/// dropped, and if none is, all are (the next calls read the token again).
pub const MAX_REMEMBERED_KEYS: usize = 4096;

/// Remembered key states of one token (see the module docs).
#[derive(Debug)]
pub struct KeyStateCache {
    max_age: Duration,
    states: Mutex<HashMap<String, (Instant, XksKeyInfo)>>,
}

impl KeyStateCache {
    /// A cache trusting states read within `max_age` (zero: never remember).
    pub fn new(max_age: Duration) -> KeyStateCache {
        KeyStateCache {
            max_age,
            states: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, XksKeyInfo)>> {
        self.states.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The remembered state of `label` if it is younger than the maximum age at `now`.
    fn remembered(&self, label: &str, now: Instant) -> Option<XksKeyInfo> {
        let states = self.lock();
        let (read_at, info) = states.get(label)?;
        (now.saturating_duration_since(*read_at) < self.max_age).then_some(*info)
    }

    fn remember(&self, label: &str, info: Option<XksKeyInfo>, read_at: Instant) {
        let mut states = self.lock();
        let Some(info) = info.filter(|_| !self.max_age.is_zero()) else {
            states.remove(label);
            return;
        };
        if states.len() >= MAX_REMEMBERED_KEYS && !states.contains_key(label) {
            let max_age = self.max_age;
            states.retain(|_, (at, _)| read_at.saturating_duration_since(*at) < max_age);
            if states.len() >= MAX_REMEMBERED_KEYS {
                states.clear();
            }
        }
        states.insert(label.to_owned(), (read_at, info));
    }

    /// Reads the key's state from the token and remembers it.
    pub fn read(&self, hsm: &Hsm, label: &str) -> Result<Option<XksKeyInfo>, HsmError> {
        let read_at = Instant::now();
        let info = hsm.xks_key_info(label)?;
        self.remember(label, info, read_at);
        Ok(info)
    }

    /// Whether the key `label` can serve `need`: allowed on a state younger than the maximum
    /// age, otherwise (and before any refusal) judged on a state read from the token now.
    pub fn check(
        &self,
        hsm: &Hsm,
        label: &str,
        need: Need,
    ) -> Result<Result<(), Refusal>, HsmError> {
        if let Some(info) = self.remembered(label, Instant::now()) {
            if key_state::check(Some(&info), need).is_ok() {
                return Ok(Ok(()));
            }
        }
        self.check_fresh(hsm, label, need)
    }

    /// Whether the key `label` can serve `need`, judged on its state read from the token now.
    pub fn check_fresh(
        &self,
        hsm: &Hsm,
        label: &str,
        need: Need,
    ) -> Result<Result<(), Refusal>, HsmError> {
        let info = self.read(hsm, label)?;
        Ok(key_state::check(info.as_ref(), need))
    }

    /// Number of remembered states (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no state is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(disabled: bool) -> XksKeyInfo {
        XksKeyInfo {
            encrypt: true,
            decrypt: true,
            value_len: Some(32),
            disabled,
        }
    }

    #[test]
    fn a_state_is_trusted_until_it_is_as_old_as_the_maximum_age() {
        let c = KeyStateCache::new(Duration::from_millis(1000));
        let t0 = Instant::now();
        c.remember("k", Some(info(false)), t0);
        assert_eq!(c.remembered("k", t0), Some(info(false)));
        assert_eq!(
            c.remembered("k", t0 + Duration::from_millis(999)),
            Some(info(false))
        );
        assert_eq!(c.remembered("k", t0 + Duration::from_millis(1000)), None);
        assert_eq!(c.remembered("other", t0), None);
    }

    #[test]
    fn missing_keys_and_a_zero_age_are_not_remembered() {
        let c = KeyStateCache::new(Duration::from_millis(1000));
        let t0 = Instant::now();
        c.remember("k", Some(info(false)), t0);
        c.remember("k", None, t0);
        assert!(c.is_empty(), "a key found missing is forgotten");
        let never = KeyStateCache::new(Duration::ZERO);
        never.remember("k", Some(info(false)), t0);
        assert!(never.is_empty());
        assert_eq!(never.remembered("k", t0), None);
    }

    #[test]
    fn the_number_of_remembered_states_is_bounded() {
        let c = KeyStateCache::new(Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..MAX_REMEMBERED_KEYS {
            c.remember(&format!("k{i}"), Some(info(false)), t0);
        }
        assert_eq!(c.len(), MAX_REMEMBERED_KEYS);
        // Refreshing a remembered key does not evict anything.
        c.remember("k0", Some(info(true)), t0);
        assert_eq!(c.len(), MAX_REMEMBERED_KEYS);
        // A new key when full and nothing has aged: everything is dropped but the new one.
        c.remember("new", Some(info(false)), t0);
        assert_eq!(c.len(), 1);
        // When full, aged states go first.
        let c = KeyStateCache::new(Duration::from_secs(1));
        for i in 0..MAX_REMEMBERED_KEYS - 1 {
            c.remember(&format!("old{i}"), Some(info(false)), t0);
        }
        let later = t0 + Duration::from_secs(5);
        c.remember("young", Some(info(false)), later);
        c.remember("newest", Some(info(false)), later);
        assert_eq!(c.len(), 2);
        assert!(c.remembered("young", later).is_some());
    }
}
