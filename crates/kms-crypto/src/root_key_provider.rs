//! [`RootKeyProvider`]: where the root key's 32 bytes are kept at rest and how they come back
//! into (zeroizing) memory at start. The only code that reads or unwraps the root key.
//!
//! Two implementations: [`FileRootKey`] (a 0600 file, the default) in this crate, and the
//! PKCS#11 one in `kms-hsm` (the key wrapped by a non-extractable AES key inside a token).
//! [`load_or_create`] starts a server; [`rewrap`] moves the same root key from one provider to
//! another, so nothing sealed under it needs re-encrypting.

use std::io::Write;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::{constant_time_eq, random_bytes, write_private_file, RootKey};

/// Length of the root key in bytes (AES-256).
pub const ROOT_KEY_LEN: usize = 32;

/// The root key's raw bytes, wiped when dropped.
pub type RootKeyMaterial = Zeroizing<Vec<u8>>;

/// Why the root key could not be loaded, stored or removed. Messages name files, tokens and
/// key labels, never key bytes or PINs.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RootKeyError {
    /// The provider holds no root key.
    #[error("no root key in {0}")]
    NotFound(String),
    /// The provider already holds a root key (refusing to overwrite it).
    #[error("{0} already holds a root key")]
    AlreadyExists(String),
    /// Reading or writing a file failed.
    #[error("root key: {0}")]
    Io(String),
    /// The protected root key exists but does not open (wrong key, damaged file).
    #[error("root key: {0}")]
    DoesNotOpen(String),
    /// The HSM refused or failed (token missing, wrong PIN, wrapping key missing, ...).
    #[error("root key: {0}")]
    Hsm(String),
}

/// Keeps the root key at rest and brings it back into memory: the one seam between kmsd and
/// wherever the root key lives.
pub trait RootKeyProvider: Send + Sync {
    /// Where the root key is kept, for messages (e.g. `file /var/lib/kmsd/root.key`).
    fn describe(&self) -> String;
    /// Whether this provider holds a root key (cheap: no HSM login).
    fn exists(&self) -> bool;
    /// The root key's bytes ([`RootKeyError::NotFound`] if there is none).
    fn load(&self) -> Result<RootKeyMaterial, RootKeyError>;
    /// Keeps `material` (32 bytes) here; [`RootKeyError::AlreadyExists`] if a root key is
    /// already kept here.
    fn store(&self, material: &[u8]) -> Result<(), RootKeyError>;
    /// Removes the root key kept here (for a plaintext file: overwritten, then unlinked).
    fn destroy(&self) -> Result<(), RootKeyError>;
}

/// The root key from `provider`, creating (and storing) a fresh random one if it holds none.
pub fn load_or_create(provider: &dyn RootKeyProvider) -> Result<RootKey, RootKeyError> {
    let material = if provider.exists() {
        provider.load()?
    } else {
        let fresh = random_bytes(ROOT_KEY_LEN)
            .map_err(|e| RootKeyError::Io(format!("generating a root key: {e}")))?;
        provider.store(&fresh)?;
        fresh
    };
    RootKey::from_bytes(&material)
        .map_err(|_| RootKeyError::DoesNotOpen(format!("{} is not 32 bytes", provider.describe())))
}

/// Moves the root key from `from` to `to` unchanged: stores it at `to`, reads it back from
/// there and compares, and only then destroys it at `from`. Resumable: if `to` already holds
/// the same root key (an earlier rewrap stopped before destroying), it just finishes; a
/// *different* root key at `to` is refused.
pub fn rewrap(from: &dyn RootKeyProvider, to: &dyn RootKeyProvider) -> Result<(), RootKeyError> {
    let material = from.load()?;
    if material.len() != ROOT_KEY_LEN {
        return Err(RootKeyError::DoesNotOpen(format!(
            "{} is not 32 bytes",
            from.describe()
        )));
    }
    if !to.exists() {
        to.store(&material)?;
    }
    let back = to.load()?;
    if !constant_time_eq(&back, &material) {
        return Err(RootKeyError::AlreadyExists(format!(
            "{} (a different root key; move or remove it first)",
            to.describe()
        )));
    }
    from.destroy()
}

/// The default provider: the root key in plaintext in a file (mode 0600) in the data dir.
#[derive(Debug, Clone)]
pub struct FileRootKey {
    path: PathBuf,
}

impl FileRootKey {
    /// The root key file `path` (conventionally `DATA_DIR/root.key`).
    pub fn new(path: impl Into<PathBuf>) -> FileRootKey {
        FileRootKey { path: path.into() }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn io(path: &Path, e: std::io::Error) -> RootKeyError {
    RootKeyError::Io(format!("{}: {e}", path.display()))
}

impl RootKeyProvider for FileRootKey {
    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }

    fn exists(&self) -> bool {
        self.path.exists()
    }

    fn load(&self) -> Result<RootKeyMaterial, RootKeyError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => Ok(Zeroizing::new(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(RootKeyError::NotFound(self.describe()))
            }
            Err(e) => Err(io(&self.path, e)),
        }
    }

    fn store(&self, material: &[u8]) -> Result<(), RootKeyError> {
        match write_private_file(&self.path, material) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(RootKeyError::AlreadyExists(self.describe()))
            }
            Err(e) => Err(io(&self.path, e)),
        }
    }

    fn destroy(&self) -> Result<(), RootKeyError> {
        overwrite_and_unlink(&self.path).map_err(|e| io(&self.path, e))
    }
}

/// Overwrites the file with zeros (fsynced) and unlinks it (directory fsynced). On copy-on-write
/// file systems and flash the old blocks may survive; the overwrite is a best effort.
pub fn overwrite_and_unlink(path: &Path) -> std::io::Result<()> {
    let len = std::fs::metadata(path)?.len();
    {
        let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
        let zeros = vec![0u8; usize::try_from(len).unwrap_or(0).max(ROOT_KEY_LEN)];
        f.write_all(&zeros)?;
        f.sync_all()?;
    }
    std::fs::remove_file(path)?;
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
    use std::sync::Mutex;

    #[test]
    fn file_root_key_is_created_private_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let file = FileRootKey::new(dir.path().join("root.key"));
        assert!(!file.exists());
        let rk = load_or_create(&file).unwrap();
        let sealed = rk.seal(b"arn|1", b"material").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(file.path()).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let again = load_or_create(&file).unwrap();
        assert_eq!(&again.open(b"arn|1", &sealed).unwrap()[..], b"material");
        assert_eq!(
            file.store(&[1u8; 32]),
            Err(RootKeyError::AlreadyExists(file.describe()))
        );
    }

    #[test]
    fn destroy_overwrites_then_unlinks() {
        let dir = tempfile::tempdir().unwrap();
        let file = FileRootKey::new(dir.path().join("root.key"));
        file.store(&[5u8; 32]).unwrap();
        // A hard link sees the inode's blocks after the unlink: they must be zeros.
        let link = dir.path().join("peek");
        std::fs::hard_link(file.path(), &link).unwrap();
        file.destroy().unwrap();
        assert!(!file.exists());
        assert_eq!(std::fs::read(&link).unwrap(), vec![0u8; 32]);
        assert_eq!(file.load(), Err(RootKeyError::NotFound(file.describe())));
    }

    /// An in-memory provider, to test [`rewrap`] without files.
    #[derive(Default)]
    struct Memory(Mutex<Option<Vec<u8>>>);

    impl RootKeyProvider for Memory {
        fn describe(&self) -> String {
            "memory".into()
        }
        fn exists(&self) -> bool {
            self.0.lock().unwrap().is_some()
        }
        fn load(&self) -> Result<RootKeyMaterial, RootKeyError> {
            self.0
                .lock()
                .unwrap()
                .clone()
                .map(Zeroizing::new)
                .ok_or(RootKeyError::NotFound("memory".into()))
        }
        fn store(&self, m: &[u8]) -> Result<(), RootKeyError> {
            let mut g = self.0.lock().unwrap();
            if g.is_some() {
                return Err(RootKeyError::AlreadyExists("memory".into()));
            }
            *g = Some(m.to_vec());
            Ok(())
        }
        fn destroy(&self) -> Result<(), RootKeyError> {
            *self.0.lock().unwrap() = None;
            Ok(())
        }
    }

    #[test]
    fn rewrap_moves_the_same_key_and_removes_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let file = FileRootKey::new(dir.path().join("root.key"));
        let rk = load_or_create(&file).unwrap();
        let sealed = rk.seal(b"aad", b"secret").unwrap();
        let mem = Memory::default();
        rewrap(&file, &mem).unwrap();
        assert!(!file.exists());
        let moved = load_or_create(&mem).unwrap();
        assert_eq!(&moved.open(b"aad", &sealed).unwrap()[..], b"secret");
        // And back.
        rewrap(&mem, &file).unwrap();
        assert!(!mem.exists());
        let back = load_or_create(&file).unwrap();
        assert_eq!(&back.open(b"aad", &sealed).unwrap()[..], b"secret");
    }

    #[test]
    fn rewrap_resumes_onto_the_same_key_but_refuses_a_different_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = FileRootKey::new(dir.path().join("root.key"));
        file.store(&[1u8; 32]).unwrap();
        let same = Memory::default();
        same.store(&[1u8; 32]).unwrap();
        rewrap(&file, &same).unwrap();
        assert!(!file.exists());

        file.store(&[1u8; 32]).unwrap();
        let other = Memory::default();
        other.store(&[2u8; 32]).unwrap();
        let err = rewrap(&file, &other).unwrap_err();
        assert!(matches!(err, RootKeyError::AlreadyExists(_)), "{err}");
        assert!(file.exists(), "the source must survive a refused rewrap");
        assert!(rewrap(&Memory::default(), &file).is_err());
    }
}
