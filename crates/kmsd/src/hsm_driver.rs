//! The PKCS#11 implementation of the domain's HSM traits, over `kms-hsm`.

use std::any::Any;
use std::path::Path;
use std::sync::Arc;

use kms_core::hsm::{DeclaredHsm, HsmDriver, HsmFault, HsmSession};
use kms_hsm::{Hsm, HsmError, TokenRef};

/// Opens declared tokens through their PKCS#11 modules.
#[derive(Debug, Default)]
pub struct Pkcs11Driver;

struct Session(Hsm);

fn token(h: &DeclaredHsm) -> TokenRef {
    TokenRef::new(&h.module, &h.token_label)
}

fn fault(e: HsmError) -> HsmFault {
    match e {
        HsmError::PinIncorrect | HsmError::PinInvalid => HsmFault::PinIncorrect,
        HsmError::PinLocked => HsmFault::PinLocked,
        HsmError::UserPinNotInitialized => HsmFault::UserNotFound,
        HsmError::UserAlreadyLoggedIn => HsmFault::UserLoggedIn,
        HsmError::KeyNotFound => HsmFault::KeyNotFound,
        HsmError::Decrypt => HsmFault::DecryptFailed,
        HsmError::ModuleLoad(m) | HsmError::TokenNotFound(m) | HsmError::Device(m) => {
            HsmFault::Unreachable(m)
        }
        HsmError::NotLoggedIn => HsmFault::Unreachable("the HSM session was logged out".into()),
        other => HsmFault::Other(other.to_string()),
    }
}

impl HsmSession for Session {
    fn change_pin(&self, old: &str, new: &str) -> Result<(), HsmFault> {
        self.0.change_pin(old, new).map_err(fault)
    }
    fn generate_key(&self, id: &[u8; 16], label: &str) -> Result<(), HsmFault> {
        self.0.generate_aes256_key(id, label).map_err(fault)
    }
    fn has_key(&self, id: &[u8; 16]) -> Result<bool, HsmFault> {
        self.0.has_key(id).map_err(fault)
    }
    fn destroy_key(&self, id: &[u8; 16]) -> Result<(), HsmFault> {
        self.0.destroy_key(id).map_err(fault)
    }
    fn encrypt(
        &self,
        id: &[u8; 16],
        iv: &[u8; 12],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, HsmFault> {
        self.0
            .aes_gcm_encrypt(id, iv, aad, plaintext)
            .map_err(fault)
    }
    fn decrypt(
        &self,
        id: &[u8; 16],
        iv: &[u8; 12],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<kms_crypto::SecretBytes, HsmFault> {
        self.0
            .aes_gcm_decrypt(id, iv, aad, ciphertext)
            .map_err(fault)
    }
    fn random(&self, n: usize) -> Result<Vec<u8>, HsmFault> {
        self.0.random(n).map_err(fault)
    }
    fn probe(&self) -> Result<(), HsmFault> {
        self.0.probe().map_err(fault)
    }
    fn logout(&self) {
        let _ = self.0.logout();
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl HsmDriver for Pkcs11Driver {
    fn probe_token(&self, hsm: &DeclaredHsm) -> Result<(), HsmFault> {
        match kms_hsm::admin::probe_token(&token(hsm)) {
            // A token created after the module was initialised (SoftHSM2 lists only the tokens
            // present at C_Initialize): re-initialise the module to see it, which is possible
            // while this process has no session open on it.
            Err(HsmError::TokenNotFound(_)) if kms_hsm::refresh_module(Path::new(&hsm.module)) => {
                kms_hsm::admin::probe_token(&token(hsm)).map_err(fault)
            }
            r => r.map_err(fault),
        }
    }

    fn create_user(&self, hsm: &DeclaredHsm, so_pin: &str, user_pin: &str) -> Result<(), HsmFault> {
        kms_hsm::admin::init_user_pin(&token(hsm), so_pin, user_pin).map_err(fault)
    }

    fn login(&self, hsm: &DeclaredHsm, user_pin: &str) -> Result<Arc<dyn HsmSession>, HsmFault> {
        match Hsm::login(&token(hsm), user_pin) {
            Ok(h) => Ok(Arc::new(Session(h))),
            // The user or its PIN may have been changed by another process (`kmsd hsm
            // create-user`, an operator's tool): SoftHSM2 sees that only after re-initialising
            // the module, which is safe when this process has no session open on it.
            Err(
                HsmError::PinIncorrect
                | HsmError::UserPinNotInitialized
                | HsmError::TokenNotFound(_),
            ) if kms_hsm::refresh_module(Path::new(&hsm.module)) => Ok(Arc::new(Session(
                Hsm::login(&token(hsm), user_pin).map_err(fault)?,
            ))),
            Err(e) => Err(fault(e)),
        }
    }

    fn cluster_key_id(&self, hsm: &DeclaredHsm, so_pin: &str) -> Result<Option<Vec<u8>>, HsmFault> {
        kms_hsm::admin::cluster_key_id(&token(hsm), so_pin).map_err(fault)
    }

    fn wipe_token(&self, hsm: &DeclaredHsm, so_pin: &str) -> Result<(), HsmFault> {
        kms_hsm::admin::reinit_token(&token(hsm), so_pin).map_err(fault)
    }

    fn prepare_cluster(
        &self,
        hsms: &[(&DeclaredHsm, &str)],
        _user_pin: &str,
    ) -> Result<Vec<u8>, HsmFault> {
        let tokens: Vec<TokenRef> = hsms.iter().map(|(h, _)| token(h)).collect();
        let so_pins: Vec<&str> = hsms.iter().map(|(_, p)| *p).collect();
        kms_hsm::admin::establish_cluster_wrapping_key(&tokens, &so_pins).map_err(fault)
    }

    fn replicate_key(
        &self,
        source: &Arc<dyn HsmSession>,
        targets: &[Arc<dyn HsmSession>],
        id: &[u8; 16],
        label: &str,
    ) -> Result<(), HsmFault> {
        let src = pkcs11(source)?;
        let dst: Vec<&Hsm> = targets.iter().map(pkcs11).collect::<Result<Vec<_>, _>>()?;
        kms_hsm::replicate_key(src, &dst, id, label).map_err(fault)
    }

    fn wrap_for_backup(
        &self,
        source: &Arc<dyn HsmSession>,
        id: &[u8; 16],
    ) -> Result<(Vec<u8>, Vec<u8>), HsmFault> {
        let (cwk_id, blob) = kms_hsm::wrap_under_cluster_key(pkcs11(source)?, id).map_err(fault)?;
        // The blob is ciphertext under a key that never leaves the HSMs.
        Ok((cwk_id, blob.to_vec()))
    }

    fn restore_from_backup(
        &self,
        target: &Arc<dyn HsmSession>,
        id: &[u8; 16],
        label: &str,
        blob: &[u8],
    ) -> Result<(), HsmFault> {
        kms_hsm::unwrap_under_cluster_key(pkcs11(target)?, id, label, blob, "a cluster backup")
            .map_err(fault)
    }
}

/// The PKCS#11 HSM behind a session of this driver.
fn pkcs11(s: &Arc<dyn HsmSession>) -> Result<&Hsm, HsmFault> {
    s.as_any()
        .downcast_ref::<Session>()
        .map(|s| &s.0)
        .ok_or_else(|| HsmFault::Other("not a PKCS#11 session".into()))
}
