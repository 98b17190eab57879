//! The operator's HSM declaration file (`--hsm-config`, TOML), re-read at every use so a change
//! (a removed subnet or security group rule) takes effect at once.
//!
//! ```toml
//! [[hsm]]
//! module = "/usr/lib/softhsm/libsofthsm2.so"
//! token_label = "hsm-a"
//! availability_zone = "us-east-1a"
//! so_pin_file = "/etc/kmsd/hsm-a.so-pin"     # or so_pin_env = "KMSD_HSM_A_SO_PIN"
//!
//! [[subnet]]
//! id = "subnet-0a1b2c3d"
//! availability_zone = "us-east-1a"
//!
//! [[security_group]]                         # optional: overrides the default rules of a cluster
//! cluster_id = "cluster-abcdefghijk"
//! rules = [{ direction = "inbound", protocol = "tcp", from_port = 2223, to_port = 2225, peer = "self" }]
//!
//! [[backup_vault]]                           # optional: keeps a backup history's wrapping key
//! module = "/usr/lib/softhsm/libsofthsm2.so" #   once its HSMs are deleted (and their tokens
//! token_label = "vault-1"                    #   erased); never an HSM of a cluster
//! so_pin_file = "/etc/kmsd/vault-1.so-pin"
//! ```

use std::path::{Path, PathBuf};

use kms_core::hsm::{DeclaredHsm, FleetSource, HsmFleet};
use zeroize::Zeroizing;

/// A fleet declared in a TOML file.
pub struct FileFleet {
    path: PathBuf,
    sessions_dir: PathBuf,
}

impl FileFleet {
    /// The declaration at `path`; `data_dir` holds the advisory login locks of `kmsd hsm login`.
    pub fn new(path: &Path, data_dir: &Path) -> Self {
        FileFleet {
            path: path.to_path_buf(),
            sessions_dir: data_dir.join("hsm-sessions"),
        }
    }

    /// The lock file that marks a cluster's crypto user as logged in by another client.
    pub fn login_lock(&self, cluster_id: &str) -> PathBuf {
        self.sessions_dir.join(format!("{cluster_id}.lock"))
    }
}

/// Parses a declaration file.
pub fn read_fleet(path: &Path) -> Result<HsmFleet, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

impl FleetSource for FileFleet {
    fn load(&self) -> Result<HsmFleet, String> {
        read_fleet(&self.path)
    }

    fn so_pin(&self, hsm: &DeclaredHsm) -> Result<Zeroizing<String>, String> {
        if let Some(file) = &hsm.so_pin_file {
            let text = Zeroizing::new(
                std::fs::read_to_string(file).map_err(|e| format!("reading {file}: {e}"))?,
            );
            return Ok(Zeroizing::new(text.trim().to_owned()));
        }
        if let Some(var) = &hsm.so_pin_env {
            return std::env::var(var)
                .map(Zeroizing::new)
                .map_err(|_| format!("environment variable {var} is not set"));
        }
        Err(format!(
            "HSM {} declares neither so_pin_file nor so_pin_env",
            hsm.token_label
        ))
    }

    fn user_logged_in_elsewhere(&self, cluster_id: &str) -> bool {
        let lock = self.login_lock(cluster_id);
        let Ok(pid) = std::fs::read_to_string(&lock) else {
            return false;
        };
        // A lock whose process is gone is stale.
        let alive = pid
            .trim()
            .parse::<u32>()
            .is_ok_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let _ = std::fs::remove_file(&lock);
        }
        alive
    }
}
