//! Command line: `serve`, the key administration commands (operating on the token directly)
//! and `audit-verify`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kms_hsm::Hsm;

use crate::config::{valid_external_key_id, Config};

/// AWS KMS External Key Store (XKS) proxy in front of a PKCS#11 token.
#[derive(Debug, Parser)]
#[command(name = "xks-proxy", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the XKS Proxy API over HTTPS (SIGHUP reloads, SIGTERM stops).
    Serve {
        /// Configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
    },
    /// Validate the configuration file and exit.
    CheckConfig {
        /// Configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
    },
    /// Generate a new AES-256 key in the token for an external key id.
    CreateKey {
        /// Configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// External key id (1..128 of A-Z a-z 0-9 - . _).
        external_key_id: String,
    },
    /// Disable a key in the token (creates its disable marker; its usage is kept).
    DisableKey {
        /// Configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// External key id.
        external_key_id: String,
    },
    /// Enable a key in the token again (removes its disable marker).
    EnableKey {
        /// Configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// External key id.
        external_key_id: String,
    },
    /// Set what a key in the token allows (CKA_ENCRYPT, CKA_DECRYPT).
    SetKeyUsage {
        /// Configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// `encrypt,decrypt`, `encrypt`, `decrypt` or `none`.
        #[arg(long, value_parser = parse_usage)]
        usage: KeyUsage,
        /// External key id.
        external_key_id: String,
    },
    /// Show a key's state in the token.
    KeyStatus {
        /// Configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// External key id.
        external_key_id: String,
    },
    /// Verify the audit trail (hash chain and signed digests).
    AuditVerify {
        /// Configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
    },
}

/// The usage flags `set-key-usage` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyUsage {
    /// `CKA_ENCRYPT`.
    pub encrypt: bool,
    /// `CKA_DECRYPT`.
    pub decrypt: bool,
}

/// Parses `encrypt,decrypt` (any order), `encrypt`, `decrypt` or `none`.
fn parse_usage(s: &str) -> Result<KeyUsage, String> {
    let mut usage = KeyUsage {
        encrypt: false,
        decrypt: false,
    };
    if s == "none" {
        return Ok(usage);
    }
    for part in s.split(',') {
        match part {
            "encrypt" if !usage.encrypt => usage.encrypt = true,
            "decrypt" if !usage.decrypt => usage.decrypt = true,
            _ => {
                return Err(format!(
                    "{s:?}: expected encrypt,decrypt | encrypt | decrypt | none"
                ))
            }
        }
    }
    Ok(usage)
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xks-proxy: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cmd: Command) -> Result<(), String> {
    match cmd {
        Command::Serve { config } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("xks-proxy")
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(crate::server::run(config))
        }
        Command::CheckConfig { config } => {
            let cfg = Config::load(&config)?;
            crate::tls::server_config(&cfg.tls)?;
            println!(
                "{}: OK ({} key store(s), crypto {})",
                config.display(),
                cfg.key_stores.len(),
                if cfg.crypto_enabled {
                    "enabled"
                } else {
                    "disabled"
                }
            );
            Ok(())
        }
        Command::CreateKey {
            config,
            external_key_id,
        } => key_command(&config, &external_key_id, |hsm, label| {
            hsm.xks_generate_key(label).map_err(|e| e.to_string())?;
            Ok(format!(
                "created key {external_key_id} (token key label {label:?})"
            ))
        }),
        Command::DisableKey {
            config,
            external_key_id,
        } => key_command(&config, &external_key_id, |hsm, label| {
            hsm.xks_set_key_enabled(label, false)
                .map_err(|e| e.to_string())?;
            Ok(format!("disabled key {external_key_id}"))
        }),
        Command::EnableKey {
            config,
            external_key_id,
        } => key_command(&config, &external_key_id, |hsm, label| {
            hsm.xks_set_key_enabled(label, true)
                .map_err(|e| e.to_string())?;
            Ok(format!("enabled key {external_key_id}"))
        }),
        Command::SetKeyUsage {
            config,
            usage,
            external_key_id,
        } => key_command(&config, &external_key_id, |hsm, label| {
            hsm.xks_set_key_usage(label, usage.encrypt, usage.decrypt)
                .map_err(|e| e.to_string())?;
            Ok(format!(
                "key {external_key_id}: encrypt={}, decrypt={}",
                usage.encrypt, usage.decrypt
            ))
        }),
        Command::KeyStatus {
            config,
            external_key_id,
        } => key_command(&config, &external_key_id, |hsm, label| {
            match hsm.xks_key_info(label).map_err(|e| e.to_string())? {
                None => Err(format!("no key labelled {label:?} in the token")),
                Some(i) => Ok(format!(
                    "{external_key_id}: {} (token label {label:?}, AES-{}, encrypt={}, decrypt={})",
                    if i.disabled { "DISABLED" } else { "ENABLED" },
                    i.value_len.unwrap_or(0) * 8,
                    i.encrypt,
                    i.decrypt
                )),
            }
        }),
        Command::AuditVerify { config } => {
            let cfg = Config::load(&config)?;
            let public = crate::audit::public_key_path(&cfg.audit_signing_key);
            let spki =
                std::fs::read(&public).map_err(|e| format!("reading {}: {e}", public.display()))?;
            let r = kms_audit::verify_dir(&cfg.audit_dir, Some(&spki))?;
            println!(
                "audit trail OK: {} file(s), {} record(s), last sequence {}, last hash {}{}",
                r.files,
                r.records,
                r.last_seq,
                r.last_hash,
                r.open_file
                    .map(|f| format!(" ({f} still open: chained, not yet signed)"))
                    .unwrap_or_default()
            );
            Ok(())
        }
    }
}

fn key_command(
    config: &Path,
    external_key_id: &str,
    op: impl FnOnce(&Hsm, &str) -> Result<String, String>,
) -> Result<(), String> {
    if !valid_external_key_id(external_key_id) {
        return Err(format!(
            "external key id {external_key_id:?} must be 1..128 characters A-Z a-z 0-9 - . _"
        ));
    }
    let cfg = Config::load(config)?;
    let label = cfg.label_for(external_key_id);
    if !cfg
        .key_stores
        .iter()
        .any(|s| s.keys.contains_key(external_key_id))
    {
        eprintln!(
            "note: no key store in {} serves {external_key_id:?} yet (add it to a key store's keys)",
            config.display()
        );
    }
    let pin = cfg.hsm.read_pin()?;
    let hsm = Hsm::login(&cfg.hsm.token, &pin)
        .map_err(|e| format!("opening the HSM token {:?}: {e}", cfg.hsm.token.label))?;
    let msg = op(&hsm, &label)?;
    println!("{msg}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_values() {
        let u = |encrypt, decrypt| KeyUsage { encrypt, decrypt };
        assert_eq!(parse_usage("encrypt,decrypt"), Ok(u(true, true)));
        assert_eq!(parse_usage("decrypt,encrypt"), Ok(u(true, true)));
        assert_eq!(parse_usage("encrypt"), Ok(u(true, false)));
        assert_eq!(parse_usage("decrypt"), Ok(u(false, true)));
        assert_eq!(parse_usage("none"), Ok(u(false, false)));
        for bad in ["", "sign", "encrypt,encrypt", "encrypt,", "none,encrypt"] {
            assert!(parse_usage(bad).is_err(), "{bad:?}");
        }
    }
}
