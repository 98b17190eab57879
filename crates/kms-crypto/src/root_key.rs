//! The root key: seals every piece of key material before it reaches storage.
//!
//! By default it is a 32-byte random key in a file created on first start with mode 0600.
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

    /// Loads the root key file, creating it (mode 0600, fsynced) if it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, CryptoError> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let bytes = zeroize::Zeroizing::new(bytes);
                Self::from_bytes(&bytes)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let bytes = crate::random_bytes(32)?;
                write_private_file(path, &bytes).map_err(|e| CryptoError::Io(e.to_string()))?;
                Self::from_bytes(&bytes)
            }
            Err(e) => Err(CryptoError::Io(e.to_string())),
        }
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
    fn root_key_file_is_private_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.key");
        let rk = RootKey::load_or_create(&path).unwrap();
        let sealed = rk.seal(b"arn|1", b"material").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let again = RootKey::load_or_create(&path).unwrap();
        assert_eq!(&again.open(b"arn|1", &sealed).unwrap()[..], b"material");
        assert!(again.open(b"arn|2", &sealed).is_err());
        assert!(again.open(b"arn|1", &sealed[..5]).is_err());
        assert!(!sealed.windows(8).any(|w| w == b"material"));
    }
}
