//! Which [`RootKeyProvider`] a data dir uses, and `kmsd root-key rewrap`.
//!
//! A data dir holds its root key either in plaintext (`root.key`, the default) or wrapped by a
//! PKCS#11 HSM key (`root.key.wrapped`, `--root-key-pkcs11`). Never both: a server refuses a data
//! dir whose root key is kept the other way than it was told, instead of creating a second,
//! different root key that could open nothing in the database.

use std::path::{Path, PathBuf};

use kms_crypto::{FileRootKey, RootKey, RootKeyProvider};
use kms_hsm::{Pkcs11RootKey, RootKeyLocation, WRAPPED_ROOT_KEY_FILE};
use zeroize::Zeroizing;

/// File name of the plaintext root key in the data dir.
pub const ROOT_KEY_FILE: &str = "root.key";
/// Environment variable holding the token's user PIN (the alternative to a PIN file).
pub const PIN_ENV: &str = "KMSD_ROOT_KEY_PIN";
/// Environment variable naming the PIN file (`--root-key-pin-file`).
pub const PIN_FILE_ENV: &str = "KMSD_ROOT_KEY_PIN_FILE";
/// Environment variable with the wrapping key's location (`--root-key-pkcs11`).
pub const LOCATION_ENV: &str = "KMSD_ROOT_KEY_PKCS11";

/// `kmsd root-key ...`
#[derive(clap::Subcommand, Debug)]
pub enum RootKeyCommand {
    /// Move the root key between a plaintext file and HSM protection without re-encrypting
    /// anything (the root key itself stays the same). Refused while a server holds the data dir.
    /// `--to pkcs11` wraps `root.key` under the HSM key (created if absent) and overwrites and
    /// removes `root.key`; `--to file` unwraps `root.key.wrapped` back into `root.key`.
    Rewrap {
        /// The data directory.
        #[arg(long, env = "KMSD_DATA_DIR", default_value = "./kmsd-data")]
        data_dir: PathBuf,
        /// Where the root key goes: `pkcs11` or `file`.
        #[arg(long, value_parser = ["pkcs11", "file"])]
        to: String,
        /// The HSM wrapping key: MODULE,TOKEN_LABEL,KEY_LABEL (for `--to file`, default: the
        /// location recorded in root.key.wrapped).
        #[arg(long, env = LOCATION_ENV)]
        root_key_pkcs11: Option<RootKeyLocation>,
        /// File holding the token's user PIN (or set KMSD_ROOT_KEY_PIN).
        #[arg(long, env = PIN_FILE_ENV)]
        root_key_pin_file: Option<PathBuf>,
    },
}

/// The token user PIN: from `pin_file` (trailing newline ignored) or `KMSD_ROOT_KEY_PIN`.
pub fn read_pin(pin_file: Option<&Path>) -> Result<Zeroizing<String>, String> {
    if let Some(path) = pin_file {
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| format!("reading the root key PIN file {}: {e}", path.display()))?,
        );
        let pin = text.trim_end_matches(['\n', '\r']);
        if pin.is_empty() {
            return Err(format!("the root key PIN file {} is empty", path.display()));
        }
        return Ok(Zeroizing::new(pin.to_owned()));
    }
    match std::env::var(PIN_ENV) {
        Ok(pin) if !pin.is_empty() => Ok(Zeroizing::new(pin)),
        _ => Err(format!(
            "the HSM-protected root key needs the token's user PIN: --root-key-pin-file FILE or {PIN_ENV} (never on the command line)"
        )),
    }
}

fn file_provider(data_dir: &Path) -> FileRootKey {
    FileRootKey::new(data_dir.join(ROOT_KEY_FILE))
}

fn hsm_provider(
    data_dir: &Path,
    location: &RootKeyLocation,
    pin_file: Option<&Path>,
) -> Result<Pkcs11RootKey, String> {
    Ok(Pkcs11RootKey::new(
        location.clone(),
        read_pin(pin_file)?,
        data_dir,
    ))
}

/// The server's root key: from `root.key` (created on first start), or, with `pkcs11`, unwrapped
/// from `root.key.wrapped` by the HSM (wrapping key and root key created on first start).
pub fn for_serve(
    data_dir: &Path,
    pkcs11: Option<&RootKeyLocation>,
    pin_file: Option<&Path>,
) -> Result<RootKey, String> {
    let plain = data_dir.join(ROOT_KEY_FILE);
    let wrapped = data_dir.join(WRAPPED_ROOT_KEY_FILE);
    let provider: Box<dyn RootKeyProvider> = match pkcs11 {
        Some(location) => {
            if plain.exists() {
                return Err(format!(
                    "{} holds a plaintext root key; move it into the HSM first: kmsd root-key rewrap --data-dir {} --to pkcs11 --root-key-pkcs11 {location}",
                    plain.display(),
                    data_dir.display()
                ));
            }
            Box::new(hsm_provider(data_dir, location, pin_file)?)
        }
        None => {
            if wrapped.exists() && !plain.exists() {
                let hint = Pkcs11RootKey::recorded_location(data_dir)
                    .map(|l| l.to_string())
                    .unwrap_or_else(|| "MODULE,TOKEN_LABEL,KEY_LABEL".into());
                return Err(format!(
                    "the root key of {} is wrapped by an HSM ({}); start with --root-key-pkcs11 {hint} and the token's PIN",
                    data_dir.display(),
                    wrapped.display()
                ));
            }
            Box::new(file_provider(data_dir))
        }
    };
    let root = kms_crypto::load_or_create_root_key(provider.as_ref()).map_err(|e| e.to_string())?;
    tracing::info!(root_key = %provider.describe(), "root key loaded");
    Ok(root)
}

/// The root key for offline tools (`kmsd admin`, `kmsd hsm`) on a data dir: the plaintext file,
/// or, if the data dir's root key is wrapped, the HSM named by `KMSD_ROOT_KEY_PKCS11` or recorded
/// in `root.key.wrapped`, with the PIN from `KMSD_ROOT_KEY_PIN_FILE` or `KMSD_ROOT_KEY_PIN`.
pub fn for_tools(data_dir: &Path) -> Result<RootKey, String> {
    let wrapped = data_dir.join(WRAPPED_ROOT_KEY_FILE);
    if !wrapped.exists() || data_dir.join(ROOT_KEY_FILE).exists() {
        return for_serve(data_dir, None, None);
    }
    let location = match std::env::var(LOCATION_ENV) {
        Ok(s) => s
            .parse::<RootKeyLocation>()
            .map_err(|e| format!("{LOCATION_ENV}: {e}"))?,
        Err(_) => Pkcs11RootKey::recorded_location(data_dir)
            .ok_or_else(|| format!("{} is damaged; set {LOCATION_ENV}", wrapped.display()))?,
    };
    let pin_file = std::env::var_os(PIN_FILE_ENV).map(PathBuf::from);
    for_serve(data_dir, Some(&location), pin_file.as_deref())
}

/// Runs `kmsd root-key ...`.
pub fn root_key_command(cmd: RootKeyCommand) -> Result<(), String> {
    let RootKeyCommand::Rewrap {
        data_dir,
        to,
        root_key_pkcs11,
        root_key_pin_file,
    } = cmd;
    if !data_dir.is_dir() {
        return Err(format!("no data dir {}", data_dir.display()));
    }
    // Not while a server uses the root key: it would keep (and a restart look for) the old form.
    let _lock = crate::dir_lock::DirLock::acquire(&data_dir, "data dir")?;
    let location = match root_key_pkcs11 {
        Some(l) => l,
        None if to == "file" => Pkcs11RootKey::recorded_location(&data_dir).ok_or_else(|| {
            format!(
                "no readable {} in {}: nothing to move to a file (or give --root-key-pkcs11)",
                WRAPPED_ROOT_KEY_FILE,
                data_dir.display()
            )
        })?,
        None => {
            return Err("--to pkcs11 needs --root-key-pkcs11 MODULE,TOKEN_LABEL,KEY_LABEL".into())
        }
    };
    let file = file_provider(&data_dir);
    let hsm = hsm_provider(&data_dir, &location, root_key_pin_file.as_deref())?;
    let (from, dest): (&dyn RootKeyProvider, &dyn RootKeyProvider) = if to == "pkcs11" {
        (&file, &hsm)
    } else {
        (&hsm, &file)
    };
    if !from.exists() {
        return Err(format!(
            "no root key to move: {} does not exist",
            from.describe()
        ));
    }
    kms_crypto::rewrap_root_key(from, dest).map_err(|e| e.to_string())?;
    println!(
        "root key moved to {} (removed {})",
        dest.describe(),
        from.describe()
    );
    Ok(())
}
