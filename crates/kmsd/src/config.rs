//! The TOML config file: every `kmsd serve` flag, by its long name with `_` for `-`.
//!
//! Precedence: command line > environment (`KMSD_*`) > config file > built-in default. The
//! file is applied by setting the `KMSD_*` variable of each key that the environment does not
//! already set, before the command line is parsed, so clap's own precedence does the rest.

use std::path::{Path, PathBuf};

/// Config keys and the environment variables they map to.
pub const KEYS: &[(&str, &str)] = &[
    ("listen", "KMSD_LISTEN"),
    ("data_dir", "KMSD_DATA_DIR"),
    ("store", "KMSD_STORE"),
    ("account_id", "KMSD_ACCOUNT_ID"),
    ("dev", "KMSD_DEV"),
    ("insecure_http", "KMSD_INSECURE_HTTP"),
    ("tls_cert", "KMSD_TLS_CERT"),
    ("tls_key", "KMSD_TLS_KEY"),
    ("admin_listen", "KMSD_ADMIN_LISTEN"),
    ("sweep_interval_secs", "KMSD_SWEEP_INTERVAL_SECS"),
    ("log_format", "KMSD_LOG_FORMAT"),
    ("log_level", "KMSD_LOG"),
    ("audit_dir", "KMSD_AUDIT_DIR"),
    ("audit_durability", "KMSD_AUDIT_DURABILITY"),
    ("audit_max_file_mib", "KMSD_AUDIT_MAX_FILE_MIB"),
    ("audit_roll_secs", "KMSD_AUDIT_ROLL_SECS"),
    ("audit_retention_days", "KMSD_AUDIT_RETENTION_DAYS"),
    ("audit_retention_bytes", "KMSD_AUDIT_RETENTION_BYTES"),
    ("no_mlock", "KMSD_NO_MLOCK"),
    ("root_key_pkcs11", "KMSD_ROOT_KEY_PKCS11"),
    ("root_key_pin_file", "KMSD_ROOT_KEY_PIN_FILE"),
    ("quotas", "KMSD_QUOTAS"),
    ("no_console", "KMSD_NO_CONSOLE"),
    ("node_id", "KMSD_NODE_ID"),
    ("key_cache_size", "KMSD_KEY_CACHE_SIZE"),
    ("hsm_config", "KMSD_HSM_CONFIG"),
    ("xks_config", "KMSD_XKS_CONFIG"),
    ("trusted_proxies", "KMSD_TRUSTED_PROXIES"),
    ("seed", "KMSD_SEED"),
    ("allow_seeded_material", "KMSD_ALLOW_SEEDED_MATERIAL"),
    ("idle_timeout_secs", "KMSD_IDLE_TIMEOUT_SECS"),
    ("header_timeout_secs", "KMSD_HEADER_TIMEOUT_SECS"),
    ("body_timeout_secs", "KMSD_BODY_TIMEOUT_SECS"),
    ("max_connections", "KMSD_MAX_CONNECTIONS"),
    ("max_connections_per_ip", "KMSD_MAX_CONNECTIONS_PER_IP"),
    (
        "max_unauthenticated_body_mib",
        "KMSD_MAX_UNAUTHENTICATED_BODY_MIB",
    ),
];

/// Reads a config file into (env var, value) pairs; unknown keys and non-scalar values are
/// errors that name the key.
pub fn read(path: &Path) -> Result<Vec<(&'static str, String)>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (k, v) in table {
        let Some((_, env)) = KEYS.iter().find(|(name, _)| *name == k) else {
            let valid: Vec<&str> = KEYS.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "{}: unknown key '{k}'; valid keys: {}",
                path.display(),
                valid.join(", ")
            ));
        };
        let value = match v {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                return Err(format!(
                    "{}: '{k}' must be a string, integer or boolean, not {}",
                    path.display(),
                    other.type_str()
                ))
            }
        };
        out.push((*env, value));
    }
    Ok(out)
}

/// The config file named by `--config FILE` in `args` or by `KMSD_CONFIG`.
pub fn path_from(args: &[std::ffi::OsString]) -> Option<PathBuf> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let a = a.to_string_lossy();
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(v));
        }
    }
    std::env::var_os("KMSD_CONFIG").map(PathBuf::from)
}

/// Applies the config file to the environment (only variables not already set). Must run
/// before any thread is started.
pub fn apply(path: &Path) -> Result<(), String> {
    for (env, value) in read(path)? {
        if std::env::var_os(env).is_none() {
            std::env::set_var(env, value);
        }
    }
    Ok(())
}

/// The log filter from a config file's `log_level`, for SIGHUP reloads.
pub fn log_level(path: &Path) -> Result<Option<String>, String> {
    Ok(read(path)?
        .into_iter()
        .find(|(env, _)| *env == "KMSD_LOG")
        .map(|(_, v)| v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_known_keys_and_rejects_unknown_ones() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("kmsd.toml");
        std::fs::write(
            &p,
            "listen = \"127.0.0.1:1\"\ndev = true\naudit_roll_secs = 60\n",
        )
        .unwrap();
        let got = read(&p).unwrap();
        assert!(got.contains(&("KMSD_LISTEN", "127.0.0.1:1".into())));
        assert!(got.contains(&("KMSD_DEV", "true".into())));
        assert!(got.contains(&("KMSD_AUDIT_ROLL_SECS", "60".into())));
        std::fs::write(&p, "listn = \"x\"\n").unwrap();
        assert!(read(&p).unwrap_err().contains("unknown key 'listn'"));
        std::fs::write(&p, "listen = [1]\n").unwrap();
        assert!(read(&p).is_err());
    }
}
