//! The plugin's Unix socket: checked before binding, created with restrictive permissions.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use tokio::net::UnixListener;

/// Checks `path`, removes a stale socket left there, and binds a listener whose file has
/// permissions `mode`. Refuses a directory that others may write to (anyone could replace the
/// socket) and an existing file that is not a socket (it is never deleted).
pub fn bind(path: &Path, mode: u32) -> Result<UnixListener, String> {
    check(path)?;
    if path.exists() {
        std::fs::remove_file(path)
            .map_err(|e| format!("removing the stale socket {}: {e}", path.display()))?;
    }
    // The socket file is created owner-only, so nobody can connect before its mode is set.
    let previous = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
    let bound = UnixListener::bind(path);
    rustix::process::umask(previous);
    let listener = bound.map_err(|e| format!("binding {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("setting the mode of {}: {e}", path.display()))?;
    Ok(listener)
}

/// The checks of [`bind`] without side effects.
pub fn check(path: &Path) -> Result<(), String> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = std::fs::metadata(parent)
        .map_err(|e| format!("socket directory {}: {e}", parent.display()))?;
    if !dir.is_dir() {
        return Err(format!("{} is not a directory", parent.display()));
    }
    if dir.permissions().mode() & 0o002 != 0 {
        return Err(format!(
            "refusing socket directory {}: it is world-writable (mode {:o}); use a directory \
             only root or the plugin's user can write, e.g. /var/run/kmsd (0750)",
            parent.display(),
            dir.permissions().mode() & 0o7777
        ));
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_socket() => Err(format!(
            "refusing {}: it exists and is not a socket",
            path.display()
        )),
        _ => Ok(()),
    }
}
