//! Where a key's symmetric material lives, and how the data plane uses it there: one
//! [`KeyBackend`] per home, chosen once when the registry loads a key ([`for_record`]).
//!
//! - [`Local`]: material sealed under the root key in the store (generated or imported),
//!   unsealed into memory; AES-GCM runs in kmsd.
//! - [`CloudHsm`]: material inside the HSMs of a CloudHSM key store; AES-GCM runs there.
//! - [`External`]: an external key store: kmsd's own material, then the proxy's key
//!   (double encryption).
//!
//! Encrypt, Decrypt, ReEncrypt and GenerateDataKey* call [`KeyBackend::seal`] and
//! [`KeyBackend::open`]; the ciphertext formats stay in [`crate::envelope`].

mod cloudhsm;
mod external;
mod local;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use kms_crypto::SecretBytes;
use kms_types::{ErrorCode, KmsError};

use crate::context::Caller;
use crate::envelope;
use crate::error::internal;
use crate::model::KeyRecord;
use crate::registry::CachedKey;
use crate::service::Service;

pub(crate) use cloudhsm::CloudHsm;
pub(crate) use external::External;
pub(crate) use local::Local;

/// An encryption context.
pub(crate) type EncryptionContext = BTreeMap<String, String>;

/// A backend's answer: ready at once (material in kmsd or a synchronous HSM call, no
/// allocation), or after I/O (a proxy).
pub(crate) enum BackendFuture<'a, T> {
    /// Already computed (`None` once taken).
    Ready(Option<Result<T, KmsError>>),
    /// Still running.
    Pending(Pin<Box<dyn Future<Output = Result<T, KmsError>> + Send + 'a>>),
}

impl<T> From<Result<T, KmsError>> for BackendFuture<'_, T> {
    fn from(r: Result<T, KmsError>) -> Self {
        BackendFuture::Ready(Some(r))
    }
}

impl<T: Unpin> Future for BackendFuture<'_, T> {
    type Output = Result<T, KmsError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            BackendFuture::Ready(r) => Poll::Ready(
                r.take()
                    .unwrap_or_else(|| Err(internal("backend answer polled twice"))),
            ),
            BackendFuture::Pending(f) => f.as_mut().poll(cx),
        }
    }
}

/// What a symmetric data-plane call works with.
pub(crate) struct Use<'a> {
    /// The service (connections to HSMs and proxies, audit of HSM events).
    pub(crate) service: &'a Service,
    /// Who asks (request metadata for proxies).
    pub(crate) caller: &'a Caller,
    /// The key.
    pub(crate) key: &'a CachedKey,
    /// The encryption context (bound as AAD).
    pub(crate) context: Option<&'a EncryptionContext>,
}

/// One home of symmetric key material.
pub(crate) trait KeyBackend: Send + Sync {
    /// The home's name (`local`, `cloudhsm`, `external`), for logs and tests.
    fn name(&self) -> &'static str;

    /// Whether kmsd unseals the key's material from the store when it loads the key (false:
    /// the material never leaves the HSMs).
    fn holds_material(&self) -> bool;

    /// Encrypts `plaintext` under the key's material `material_id`: the ciphertext blob.
    fn seal<'a>(
        &'a self,
        u: Use<'a>,
        material_id: [u8; 16],
        plaintext: &'a [u8],
    ) -> BackendFuture<'a, Vec<u8>>;

    /// Decrypts a ciphertext blob that names the key (InvalidCiphertextException for a blob
    /// of another format, another context or altered bytes).
    fn open<'a>(&'a self, u: Use<'a>, blob: &'a [u8]) -> BackendFuture<'a, SecretBytes>;
}

/// The backend of a key: external key store keys have an XKS key id, CloudHSM key store keys
/// a cluster, every other key keeps its material sealed in the store.
pub(crate) fn for_record(record: &KeyRecord) -> &'static dyn KeyBackend {
    if record.xks_key_id.is_some() {
        &External
    } else if record.cloud_hsm_cluster_id.is_some() {
        &CloudHsm
    } else {
        &Local
    }
}

/// The answer to a ciphertext that is not one, or does not match its context.
pub(crate) fn invalid_ciphertext() -> KmsError {
    KmsError::new(
        ErrorCode::InvalidCiphertextException,
        "The ciphertext is invalid, or its encryption context does not match",
    )
}

/// Seals a v1 envelope: `gcm` encrypts under the material wherever it lives, given the AAD,
/// and returns (iv, ciphertext and tag).
fn seal_v1(
    key: &CachedKey,
    material_id: [u8; 16],
    context: Option<&EncryptionContext>,
    gcm: impl FnOnce(&[u8]) -> Result<([u8; 12], Vec<u8>), KmsError>,
) -> Result<Vec<u8>, KmsError> {
    let key_id =
        envelope::key_id_bytes(&key.record.key_id).ok_or_else(|| internal("bad key id"))?;
    let header = envelope::header(&key_id, &material_id);
    let (iv, ct) = gcm(&envelope::aad(&header, context))?;
    Ok(envelope::assemble(&header, &iv, &ct))
}

/// Opens a v1 envelope: `gcm` decrypts the parsed envelope given the AAD.
fn open_v1(
    blob: &[u8],
    context: Option<&EncryptionContext>,
    gcm: impl FnOnce(&envelope::Envelope<'_>, &[u8]) -> Result<SecretBytes, KmsError>,
) -> Result<SecretBytes, KmsError> {
    let env = envelope::parse(blob).ok_or_else(invalid_ciphertext)?;
    let aad = envelope::aad(env.header, context);
    gcm(&env, &aad)
}

#[cfg(test)]
mod tests;
