//! Audit files readable by kmsd's user only: the directory 0700, the files 0600 (the records
//! name principals, keys and encryption contexts).

use std::fs::{File, OpenOptions};
use std::path::Path;

/// Creates `dir` (and its parents) if missing, and makes it 0700.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)?;
    make_private_mode(dir, 0o700)
}

/// Makes an existing audit file 0600 (files written by older versions were 0644).
pub(crate) fn make_private(path: &Path) -> std::io::Result<()> {
    make_private_mode(path, 0o600)
}

#[cfg(unix)]
fn make_private_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let current = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if current != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn make_private_mode(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

/// Creates a new file 0600 for appending (fails if it exists).
pub(crate) fn create_private_append(path: &Path) -> std::io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.create_new(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
}
