//! The root key: seals every piece of key material before it reaches storage.
//!
//! Where the 32 root key bytes are kept, and how they come back into memory at start, is a
//! [`RootKeyProvider`](crate::RootKeyProvider) (`root_key_provider.rs`): a plain file by default,
//! or wrapped by a key inside a PKCS#11 HSM.
//! Sealed format: `version (1) | iv (12) | ciphertext | tag (16)`, AAD chosen by the caller
//! (kmsd binds the key ARN and material id so sealed blobs cannot be swapped between keys).

use std::io::Write;
use std::path::Path;

use crate::{AesGcmKey, CryptoError, SecretBytes, GCM_IV_LEN};

const SEALED_VERSION: u8 = 1;

/// The key that seals key material at rest.
#[derive(Debug)]
pub struct RootKey {
    key: AesGcmKey,
}

impl RootKey {
    /// A root key from raw bytes (32).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        Ok(RootKey {
            key: AesGcmKey::new(bytes)?,
        })
    }

    /// Seals `plaintext` with `aad`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let (iv, ct) = self.key.seal(aad, plaintext)?;
        let mut out = Vec::with_capacity(1 + GCM_IV_LEN + ct.len());
        out.push(SEALED_VERSION);
        out.extend_from_slice(&iv);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens what `seal` produced with the same `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<SecretBytes, CryptoError> {
        match sealed.split_first() {
            Some((&SEALED_VERSION, rest)) if rest.len() > GCM_IV_LEN => {
                let (iv, ct) = rest.split_at(GCM_IV_LEN);
                self.key.open(iv, aad, ct)
            }
            _ => Err(CryptoError::Decrypt),
        }
    }
}

/// Writes a file readable only by its owner and fsyncs it and its directory.
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(contents)?;
    f.sync_all()?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_material_opens_only_with_its_aad() {
        let rk = RootKey::from_bytes(&[7u8; 32]).unwrap();
        let sealed = rk.seal(b"arn|1", b"material").unwrap();
        let again = RootKey::from_bytes(&[7u8; 32]).unwrap();
        assert_eq!(&again.open(b"arn|1", &sealed).unwrap()[..], b"material");
        assert!(again.open(b"arn|2", &sealed).is_err());
        assert!(again.open(b"arn|1", &sealed[..5]).is_err());
        assert!(!sealed.windows(8).any(|w| w == b"material"));
    }
}
