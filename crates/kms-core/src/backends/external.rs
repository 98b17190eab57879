//! Keys in external key stores: double encryption, kmsd's own material inside and the
//! proxy's key outside (`crate::xks::keys` speaks to the proxy).

use kms_crypto::SecretBytes;

use super::{BackendFuture, KeyBackend, Use};

/// kmsd's material plus a key behind an XKS proxy.
pub(crate) struct External;

impl KeyBackend for External {
    fn name(&self) -> &'static str {
        "external"
    }

    fn holds_material(&self) -> bool {
        true
    }

    fn seal<'a>(
        &'a self,
        u: Use<'a>,
        material_id: [u8; 16],
        plaintext: &'a [u8],
    ) -> BackendFuture<'a, Vec<u8>> {
        BackendFuture::Pending(Box::pin(u.service.xks_seal(
            u.caller,
            u.key,
            material_id,
            u.context,
            plaintext,
        )))
    }

    fn open<'a>(&'a self, u: Use<'a>, blob: &'a [u8]) -> BackendFuture<'a, SecretBytes> {
        BackendFuture::Pending(Box::pin(
            u.service.xks_open(u.caller, u.key, blob, u.context),
        ))
    }
}
