//! The key manager behind the proxy: one PKCS#11 token, logged in once per process, called
//! from blocking threads with a time limit. A lost login (token reset, device error) is
//! re-established at the next call with the PIN kept in memory (zeroized on drop).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kms_hsm::{Hsm, HsmError};
use zeroize::Zeroizing;

use crate::config::{HsmCalls, HsmSettings};
use crate::key_state_cache::KeyStateCache;

/// Why a backend call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendError {
    /// The HSM did not answer within the configured time.
    Timeout,
    /// The HSM answered with an error.
    Hsm(HsmError),
}

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackendError::Timeout => write!(f, "the HSM did not answer in time"),
            BackendError::Hsm(e) => write!(f, "{e}"),
        }
    }
}

/// The token the proxy serves keys from.
pub struct Backend {
    settings: HsmSettings,
    pin: Zeroizing<String>,
    hsm: Mutex<Option<Arc<Hsm>>>,
    key_states: Arc<KeyStateCache>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("token", &self.settings.token)
            .finish_non_exhaustive()
    }
}

impl Backend {
    /// Logs in to the token (fails if the module, token or PIN is wrong).
    pub fn open(settings: HsmSettings, pin: Zeroizing<String>) -> Result<Backend, HsmError> {
        let hsm = Hsm::login_with_pool_size(&settings.token, &pin, settings.sessions)?;
        let key_states = Arc::new(KeyStateCache::new(Duration::from_millis(
            settings.key_state_max_age_ms,
        )));
        Ok(Backend {
            key_states,
            settings,
            pin,
            hsm: Mutex::new(Some(Arc::new(hsm))),
        })
    }

    /// The key states remembered between calls (see [`crate::key_state_cache`]).
    pub fn key_states(&self) -> &Arc<KeyStateCache> {
        &self.key_states
    }

    /// The token label.
    pub fn token_label(&self) -> &str {
        &self.settings.token.label
    }

    fn current(&self) -> Result<Arc<Hsm>, HsmError> {
        let mut g = self.hsm.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = g.as_ref() {
            return Ok(h.clone());
        }
        let h = Arc::new(Hsm::login_with_pool_size(
            &self.settings.token,
            &self.pin,
            self.settings.sessions,
        )?);
        tracing::info!(token = %self.settings.token.label, "logged in to the HSM again");
        *g = Some(h.clone());
        Ok(h)
    }

    fn forget(&self, failed: &Arc<Hsm>) {
        let mut g = self.hsm.lock().unwrap_or_else(|p| p.into_inner());
        if g.as_ref().is_some_and(|h| Arc::ptr_eq(h, failed)) {
            *g = None;
        }
    }

    /// Runs `op` on the token: in a blocking thread within the configured time limit, or, with
    /// `hsm.calls = "inline"`, right here on the async worker (see [`HsmCalls`]).
    pub async fn run<T, F>(self: &Arc<Self>, op: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnOnce(&Hsm) -> Result<T, HsmError> + Send + 'static,
    {
        if self.settings.calls == HsmCalls::Inline {
            return self.call(op).map_err(BackendError::Hsm);
        }
        let me = self.clone();
        let task = tokio::task::spawn_blocking(move || me.call(op));
        match tokio::time::timeout(Duration::from_millis(self.settings.timeout_ms), task).await {
            Err(_) => Err(BackendError::Timeout),
            Ok(Err(join)) => Err(BackendError::Hsm(HsmError::Other(format!(
                "HSM task failed: {join}"
            )))),
            Ok(Ok(r)) => r.map_err(BackendError::Hsm),
        }
    }

    /// Runs `op` on the current session, forgetting the login when the token says it is gone.
    fn call<T>(&self, op: impl FnOnce(&Hsm) -> Result<T, HsmError>) -> Result<T, HsmError> {
        let hsm = self.current()?;
        let r = op(&hsm);
        if let Err(e) = &r {
            if matches!(e, HsmError::NotLoggedIn) || e.is_device() {
                tracing::warn!(token = %self.settings.token.label, error = %e, "HSM session lost; will log in again");
                self.forget(&hsm);
            }
        }
        r
    }
}
