//! [`HsmError`] and the mapping from PKCS#11 return values (`CK_RV`).

use cryptoki::context::Function;
use cryptoki::error::{Error as CkError, RvError};

/// Failure of an HSM (PKCS#11 token) operation. Never carries a PIN or key material.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HsmError {
    /// The PKCS#11 module (shared library) could not be loaded or initialised.
    #[error("cannot load PKCS#11 module: {0}")]
    ModuleLoad(String),
    /// No initialised token with this label is present in the module.
    #[error("token not found: {0}")]
    TokenNotFound(String),
    /// A token with this label already exists (`admin::init_token`).
    #[error("a token labelled {0:?} already exists")]
    TokenAlreadyExists(String),
    /// `CKR_PIN_INCORRECT`: wrong user (or SO) PIN.
    #[error("PIN incorrect")]
    PinIncorrect,
    /// `CKR_PIN_LOCKED`: the PIN is locked after too many failures.
    #[error("PIN locked")]
    PinLocked,
    /// `CKR_PIN_INVALID` / `CKR_PIN_LEN_RANGE`: the PIN has invalid characters or length.
    #[error("PIN invalid (characters or length rejected by the token)")]
    PinInvalid,
    /// `CKR_USER_PIN_NOT_INITIALIZED`: the crypto user (`kmsuser`) does not exist yet.
    #[error("user PIN not initialised (crypto user does not exist)")]
    UserPinNotInitialized,
    /// `CKR_USER_ALREADY_LOGGED_IN` / `CKR_USER_ANOTHER_ALREADY_LOGGED_IN`: this process is
    /// already logged in to the token (login state is per process and token).
    #[error("a user is already logged in to the token in this process")]
    UserAlreadyLoggedIn,
    /// `CKR_USER_NOT_LOGGED_IN`: the login state was lost (e.g. all sessions were closed).
    #[error("not logged in to the token")]
    NotLoggedIn,
    /// No key with this `CKA_ID` on the token.
    #[error("key not found on the token")]
    KeyNotFound,
    /// A key with this `CKA_ID` already exists on the token.
    #[error("a key with this id already exists on the token")]
    KeyAlreadyExists,
    /// `CKR_SESSION_READ_ONLY`: the operation needs a read/write session.
    #[error("session is read-only")]
    SessionReadOnly,
    /// AES-GCM authentication failed (wrong key, IV, AAD, or tampered ciphertext/tag).
    #[error("decryption failed: authentication tag mismatch or malformed ciphertext")]
    Decrypt,
    /// The token has no cluster wrapping key (run `admin::establish_cluster_wrapping_key`).
    #[error("token {0:?} has no cluster wrapping key")]
    ClusterKeyNotFound(String),
    /// Two tokens hold different cluster wrapping keys (they are not the same cluster).
    #[error("cluster wrapping key mismatch: {0}")]
    ClusterKeyMismatch(String),
    /// Device failure: `CKR_DEVICE_ERROR`, `CKR_DEVICE_REMOVED`, `CKR_TOKEN_NOT_PRESENT`,
    /// `CKR_DEVICE_MEMORY`, or the session vanished.
    #[error("HSM device error: {0}")]
    Device(String),
    /// Anything else (unexpected return value, bad argument, ...).
    #[error("HSM error: {0}")]
    Other(String),
}

impl HsmError {
    /// True for errors that mean the token/session is unusable (the session is dropped from
    /// the pool instead of being reused).
    pub fn is_device(&self) -> bool {
        matches!(self, HsmError::Device(_))
    }
}

/// The PKCS#11 return value inside a cryptoki error, if any.
pub(crate) fn rv_of(e: &CkError) -> Option<RvError> {
    match e {
        CkError::Pkcs11(rv, _) => Some(*rv),
        _ => None,
    }
}

/// Generic mapping of a cryptoki error to [`HsmError`].
pub(crate) fn map_ck(e: CkError) -> HsmError {
    match e {
        CkError::Pkcs11(rv, func) => map_rv(rv, func),
        CkError::LibraryLoading(e) => HsmError::ModuleLoad(e.to_string()),
        other => HsmError::Other(other.to_string()),
    }
}

fn map_rv(rv: RvError, func: Function) -> HsmError {
    match rv {
        RvError::PinIncorrect => HsmError::PinIncorrect,
        RvError::PinLocked => HsmError::PinLocked,
        RvError::PinInvalid | RvError::PinLenRange => HsmError::PinInvalid,
        RvError::UserPinNotInitialized => HsmError::UserPinNotInitialized,
        RvError::UserAlreadyLoggedIn | RvError::UserAnotherAlreadyLoggedIn => {
            HsmError::UserAlreadyLoggedIn
        }
        RvError::UserNotLoggedIn => HsmError::NotLoggedIn,
        RvError::SessionReadOnly => HsmError::SessionReadOnly,
        RvError::DeviceError
        | RvError::DeviceRemoved
        | RvError::DeviceMemory
        | RvError::TokenNotPresent
        | RvError::TokenNotRecognized
        | RvError::SessionClosed
        | RvError::SessionHandleInvalid
        | RvError::CryptokiNotInitialized => HsmError::Device(format!("{func}: {rv}")),
        _ => HsmError::Other(format!("{func}: {rv}")),
    }
}

/// Mapping for `C_Decrypt` with AES-GCM: SoftHSM2 reports a bad tag as `CKR_GENERAL_ERROR`,
/// the specification as `CKR_ENCRYPTED_DATA_INVALID`; both (and a too-short input) become
/// [`HsmError::Decrypt`].
pub(crate) fn map_decrypt(e: CkError) -> HsmError {
    match rv_of(&e) {
        Some(
            RvError::EncryptedDataInvalid
            | RvError::EncryptedDataLenRange
            | RvError::GeneralError
            | RvError::FunctionFailed,
        ) => HsmError::Decrypt,
        _ => map_ck(e),
    }
}

/// True if the error means a cached object handle is stale.
pub(crate) fn is_stale_handle(e: &CkError) -> bool {
    matches!(
        rv_of(e),
        Some(
            RvError::ObjectHandleInvalid
                | RvError::KeyHandleInvalid
                | RvError::WrappingKeyHandleInvalid
                | RvError::UnwrappingKeyHandleInvalid
        )
    )
}
