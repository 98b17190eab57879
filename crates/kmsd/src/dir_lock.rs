//! One server per directory: `kmsd serve` holds an exclusive lock on its data dir (and on its
//! audit dir) for its whole life, taken before it reads or writes anything there, so a second
//! server on the same directories stops with a clear error instead of racing on the database
//! and breaking the audit chain. The lock is an OS file lock (`flock`), released by the kernel
//! when the process ends, however it ends: a SIGKILLed server leaves no stale lock behind.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside a locked directory.
pub const LOCK_FILE: &str = ".kmsd.lock";

/// An exclusive lock on a directory, held until dropped (or the process ends).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// Creates `dir` if missing (mode 0700) and locks it, or says which process holds it.
    /// `what` names the directory in the error (`data dir`, `audit dir`).
    pub fn acquire(dir: &Path, what: &str) -> Result<DirLock, String> {
        create_private_dir(dir).map_err(|e| format!("creating {what} {}: {e}", dir.display()))?;
        let path = dir.join(LOCK_FILE);
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options
            .open(&path)
            .map_err(|e| format!("opening {}: {e}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let who = if holder.is_empty() {
                    "another process".to_owned()
                } else {
                    format!("another kmsd (pid {holder})")
                };
                return Err(format!(
                    "{who} is already serving {what} {}: only one `kmsd serve` may own it (stop that one first; `kmsd admin` and `kmsd hsm` work beside a running server)",
                    dir.display()
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(format!("locking {}: {e}", path.display()));
            }
        }
        // Holding the lock: record who holds it, for the error the next one prints.
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| file.write_all(std::process::id().to_string().as_bytes()))
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        Ok(DirLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `create_dir_all` with mode 0700 for what it creates.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_dir_is_refused_until_the_first_is_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let first = DirLock::acquire(&dir, "data dir").unwrap();
        let err = DirLock::acquire(&dir, "data dir").unwrap_err();
        assert!(err.contains("is already serving data dir"), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        DirLock::acquire(&dir, "data dir").unwrap();
    }
}
