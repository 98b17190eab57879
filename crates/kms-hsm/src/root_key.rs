//! The root key wrapped by a PKCS#11 HSM: [`Pkcs11RootKey`], a
//! [`kms_crypto::RootKeyProvider`].
//!
//! The token holds a persistent AES-256 *root wrapping key*, found by its `CKA_LABEL`: private,
//! sensitive, never extractable, not copyable or modifiable, AES-GCM encrypt/decrypt only. The
//! root key itself is kept in the data dir encrypted under it (AES-256-GCM computed inside the
//! token, 96-bit IV from the host RNG, 128-bit tag), in the file `root.key.wrapped`:
//!
//! ```text
//! "KMSDRKW1" | u16 len | module path | u16 len | token label | u16 len | key label
//!            | iv (12) | ciphertext (32) | tag (16)          (lengths big-endian)
//! ```
//!
//! The module, token and key label recorded there are a hint for tools (`kmsd admin` finds the
//! token without flags); the server uses what it is told. The AAD is the constant [`AAD`], so a
//! wrapped root key opens wherever the same wrapping key is (another module path, a token
//! restored from backup).

use crate::error::{map_ck, map_decrypt, HsmError};
use crate::hsm::Hsm;
use crate::TokenRef;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use kms_crypto::{RootKeyError, RootKeyMaterial, RootKeyProvider, ROOT_KEY_LEN};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// File name of the wrapped root key in the data dir.
pub const WRAPPED_ROOT_KEY_FILE: &str = "root.key.wrapped";

const MAGIC: &[u8; 8] = b"KMSDRKW1";
/// AAD of the wrapping (a constant: see the module docs).
pub const AAD: &[u8] = b"kmsd root key, wrapped under a PKCS#11 AES-256-GCM key, format 1";
const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Where the root wrapping key lives: module, token label and key label (the
/// `--root-key-pkcs11 MODULE,TOKEN_LABEL,KEY_LABEL` value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootKeyLocation {
    /// The token (module path and label).
    pub token: TokenRef,
    /// `CKA_LABEL` of the AES wrapping key.
    pub key_label: String,
}

impl std::str::FromStr for RootKeyLocation {
    type Err = String;

    /// Parses `MODULE,TOKEN_LABEL,KEY_LABEL` (the module path may contain commas; the labels
    /// may not).
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.rsplitn(3, ',');
        let (Some(key), Some(token), Some(module)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err("expected MODULE,TOKEN_LABEL,KEY_LABEL".into());
        };
        if module.is_empty() || token.is_empty() || key.is_empty() {
            return Err("expected MODULE,TOKEN_LABEL,KEY_LABEL, none of them empty".into());
        }
        if token.len() > crate::admin::MAX_LABEL_LEN {
            return Err(format!(
                "token label {token:?} is longer than {} bytes",
                crate::admin::MAX_LABEL_LEN
            ));
        }
        if key == crate::CLUSTER_KEY_LABEL {
            return Err(format!("{key:?} is reserved for the cluster wrapping key"));
        }
        Ok(RootKeyLocation {
            token: TokenRef::new(module, token),
            key_label: key.to_owned(),
        })
    }
}

impl std::fmt::Display for RootKeyLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{},{},{}",
            self.token.module.display(),
            self.token.label,
            self.key_label
        )
    }
}

/// The root key wrapped by an AES key inside a PKCS#11 token (see the module docs). Logs in
/// for each call and logs out (drops the session) right after: the server unwraps once at
/// start and keeps no HSM session for the root key.
pub struct Pkcs11RootKey {
    location: RootKeyLocation,
    pin: Zeroizing<String>,
    file: PathBuf,
}

impl std::fmt::Debug for Pkcs11RootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11RootKey")
            .field("location", &self.location)
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

/// Template of the root wrapping key (`CKA_MODIFIABLE` last: see `template.rs`).
fn wrapping_key_template(label: &str) -> Result<Vec<Attribute>, HsmError> {
    let id = kms_crypto::random_array::<16>().map_err(|e| HsmError::Other(e.to_string()))?;
    Ok(vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::ValueLen(32.into()),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
        Attribute::Sign(false),
        Attribute::Verify(false),
        Attribute::Copyable(false),
        Attribute::AllowedMechanisms(vec![MechanismType::AES_GCM]),
        Attribute::Id(id.to_vec()),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Modifiable(false),
    ])
}

impl Hsm {
    /// True if the token has an AES key labelled `label`.
    pub fn has_root_wrapping_key(&self, label: &str) -> Result<bool, HsmError> {
        let mut s = self.session()?;
        Ok(s.check(Self::xks_find(&s, label))?.is_some())
    }

    /// Generates the root wrapping key `label` (persistent, sensitive, non-extractable AES-256,
    /// AES-GCM only). [`HsmError::KeyAlreadyExists`] if an AES key has this label.
    pub fn generate_root_wrapping_key(&self, label: &str) -> Result<(), HsmError> {
        let mut s = self.session()?;
        if s.check(Self::xks_find(&s, label))?.is_some() {
            return Err(HsmError::KeyAlreadyExists);
        }
        let r = s
            .generate_key(&Mechanism::AesKeyGen, &wrapping_key_template(label)?)
            .map_err(map_ck);
        s.check(r)?;
        tracing::info!(token = %self.token_label(), key_label = %label, "generated the root wrapping key");
        Ok(())
    }

    /// AES-GCM with the key `label` inside the token: encrypts (`decrypt == false`) or decrypts
    /// `input`. [`HsmError::KeyNotFound`] without such a key, [`HsmError::Decrypt`] if the tag
    /// does not verify.
    fn root_gcm(
        &self,
        label: &str,
        iv: &[u8; IV_LEN],
        input: &[u8],
        decrypt: bool,
    ) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        let mut s = self.session()?;
        let h = s
            .check(Self::xks_find(&s, label))?
            .ok_or(HsmError::KeyNotFound)?;
        let mut iv = *iv;
        let mech = Mechanism::AesGcm(GcmParams::new(&mut iv, AAD, 128.into()).map_err(map_ck)?);
        let r = if decrypt {
            s.decrypt(&mech, h, input).map_err(map_decrypt)
        } else {
            s.encrypt(&mech, h, input).map_err(map_ck)
        };
        s.check(r.map(Zeroizing::new))
    }
}

fn put_field(out: &mut Vec<u8>, field: &[u8]) -> Result<(), RootKeyError> {
    let len = u16::try_from(field.len())
        .map_err(|_| RootKeyError::Io("module path or label too long".into()))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(field);
    Ok(())
}

fn take_field<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (len, tail) = rest.split_first_chunk::<2>()?;
    let len = usize::from(u16::from_be_bytes(*len));
    if tail.len() < len {
        return None;
    }
    let (field, tail) = tail.split_at(len);
    *rest = tail;
    Some(field)
}

/// A parsed `root.key.wrapped`.
struct Wrapped {
    location: RootKeyLocation,
    iv: [u8; IV_LEN],
    sealed: Vec<u8>,
}

fn parse(bytes: &[u8]) -> Option<Wrapped> {
    let mut rest = bytes.strip_prefix(MAGIC.as_slice())?;
    let module = std::str::from_utf8(take_field(&mut rest)?).ok()?;
    let token = std::str::from_utf8(take_field(&mut rest)?).ok()?;
    let key = std::str::from_utf8(take_field(&mut rest)?).ok()?;
    let (iv, sealed) = rest.split_first_chunk::<IV_LEN>()?;
    if sealed.len() != ROOT_KEY_LEN + TAG_LEN {
        return None;
    }
    Some(Wrapped {
        location: RootKeyLocation {
            token: TokenRef::new(module, token),
            key_label: key.to_owned(),
        },
        iv: *iv,
        sealed: sealed.to_vec(),
    })
}

impl Pkcs11RootKey {
    /// The root key wrapped by the key at `location`, kept in `data_dir/root.key.wrapped`,
    /// logging in with the user PIN `pin`.
    pub fn new(location: RootKeyLocation, pin: Zeroizing<String>, data_dir: &Path) -> Self {
        Pkcs11RootKey {
            location,
            pin,
            file: data_dir.join(WRAPPED_ROOT_KEY_FILE),
        }
    }

    /// Where the wrapping key was when `data_dir/root.key.wrapped` was written (as recorded in
    /// the file), or `None` if there is no readable wrapped root key.
    pub fn recorded_location(data_dir: &Path) -> Option<RootKeyLocation> {
        let bytes = std::fs::read(data_dir.join(WRAPPED_ROOT_KEY_FILE)).ok()?;
        parse(&bytes).map(|w| w.location)
    }

    /// The wrapped root key file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    fn token_desc(&self) -> String {
        format!(
            "PKCS#11 token {:?} (module {})",
            self.location.token.label,
            self.location.token.module.display()
        )
    }

    /// Logs in, mapping the failures an operator must tell apart.
    fn login(&self) -> Result<Hsm, RootKeyError> {
        Hsm::login_with_pool_size(&self.location.token, &self.pin, 1).map_err(|e| {
            RootKeyError::Hsm(match e {
                HsmError::TokenNotFound(_) => format!("{} not found", self.token_desc()),
                HsmError::PinIncorrect => {
                    format!("wrong PIN for {} (CKR_PIN_INCORRECT)", self.token_desc())
                }
                HsmError::PinLocked => format!("the user PIN of {} is locked", self.token_desc()),
                HsmError::UserPinNotInitialized => format!(
                    "{} has no user PIN yet (initialise it, e.g. softhsm2-util --init-token ... --pin)",
                    self.token_desc()
                ),
                other => format!("{}: {other}", self.token_desc()),
            })
        })
    }

    fn hsm_err(&self, e: HsmError) -> RootKeyError {
        RootKeyError::Hsm(format!("{}: {e}", self.token_desc()))
    }
}

impl RootKeyProvider for Pkcs11RootKey {
    fn describe(&self) -> String {
        format!(
            "{} wrapped by key {:?} of {}",
            self.file.display(),
            self.location.key_label,
            self.token_desc()
        )
    }

    fn exists(&self) -> bool {
        self.file.exists()
    }

    fn load(&self) -> Result<RootKeyMaterial, RootKeyError> {
        let bytes = match std::fs::read(&self.file) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RootKeyError::NotFound(self.file.display().to_string()))
            }
            Err(e) => return Err(RootKeyError::Io(format!("{}: {e}", self.file.display()))),
        };
        let wrapped = parse(&bytes).ok_or_else(|| {
            RootKeyError::DoesNotOpen(format!(
                "{} is not a wrapped root key (damaged or not written by kmsd)",
                self.file.display()
            ))
        })?;
        let hsm = self.login()?;
        let label = &self.location.key_label;
        match hsm.root_gcm(label, &wrapped.iv, &wrapped.sealed, true) {
            Ok(material) if material.len() == ROOT_KEY_LEN => Ok(material),
            Ok(_) | Err(HsmError::Decrypt) => Err(RootKeyError::DoesNotOpen(format!(
                "{} does not open with key {label:?} of {}: a different key carries that label, or the file is damaged",
                self.file.display(),
                self.token_desc()
            ))),
            Err(HsmError::KeyNotFound) => Err(RootKeyError::Hsm(format!(
                "{} has no AES key labelled {label:?}, which wrapped {}: restore that key into the token (or the plaintext root key from a backup)",
                self.token_desc(),
                self.file.display()
            ))),
            Err(e) => Err(self.hsm_err(e)),
        }
    }

    fn store(&self, material: &[u8]) -> Result<(), RootKeyError> {
        if material.len() != ROOT_KEY_LEN {
            return Err(RootKeyError::Io("a root key is 32 bytes".into()));
        }
        if self.exists() {
            return Err(RootKeyError::AlreadyExists(self.file.display().to_string()));
        }
        let hsm = self.login()?;
        let label = &self.location.key_label;
        if !hsm
            .has_root_wrapping_key(label)
            .map_err(|e| self.hsm_err(e))?
        {
            hsm.generate_root_wrapping_key(label)
                .map_err(|e| self.hsm_err(e))?;
        }
        let iv = kms_crypto::random_array::<IV_LEN>()
            .map_err(|e| RootKeyError::Io(format!("generating an IV: {e}")))?;
        let sealed = hsm
            .root_gcm(label, &iv, material, false)
            .map_err(|e| self.hsm_err(e))?;
        let mut out = MAGIC.to_vec();
        put_field(
            &mut out,
            self.location.token.module.to_string_lossy().as_bytes(),
        )?;
        put_field(&mut out, self.location.token.label.as_bytes())?;
        put_field(&mut out, label.as_bytes())?;
        out.extend_from_slice(&iv);
        out.extend_from_slice(&sealed);
        // Written whole under a temporary name, then renamed: a crash leaves no half file.
        let tmp = self.file.with_extension("wrapped.tmp");
        let _ = std::fs::remove_file(&tmp);
        kms_crypto::write_private_file(&tmp, &out)
            .and_then(|()| std::fs::rename(&tmp, &self.file))
            .map_err(|e| RootKeyError::Io(format!("{}: {e}", self.file.display())))?;
        if let Some(dir) = self.file.parent() {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        tracing::info!(file = %self.file.display(), token = %self.location.token.label, key_label = %label, "wrapped the root key under the HSM key");
        Ok(())
    }

    /// Removes the wrapped root key file. The wrapping key stays in the token (other nodes or
    /// data dirs may still use it).
    fn destroy(&self) -> Result<(), RootKeyError> {
        kms_crypto::overwrite_and_unlink(&self.file)
            .map_err(|e| RootKeyError::Io(format!("{}: {e}", self.file.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_parses_and_prints() {
        let l: RootKeyLocation = "/usr/lib/a,b.so,tok,root-wrap".parse().unwrap();
        assert_eq!(l.token.module, PathBuf::from("/usr/lib/a,b.so"));
        assert_eq!(l.token.label, "tok");
        assert_eq!(l.key_label, "root-wrap");
        assert_eq!(l.to_string(), "/usr/lib/a,b.so,tok,root-wrap");
        assert!("tok,key".parse::<RootKeyLocation>().is_err());
        assert!("/m.so,,key".parse::<RootKeyLocation>().is_err());
        assert!(format!("/m.so,tok,{}", crate::CLUSTER_KEY_LABEL)
            .parse::<RootKeyLocation>()
            .is_err());
    }

    #[test]
    fn wrapped_file_format_round_trips_and_rejects_damage() {
        let mut out = MAGIC.to_vec();
        put_field(&mut out, b"/m.so").unwrap();
        put_field(&mut out, b"tok").unwrap();
        put_field(&mut out, b"key").unwrap();
        out.extend_from_slice(&[7u8; IV_LEN]);
        out.extend_from_slice(&[9u8; ROOT_KEY_LEN + TAG_LEN]);
        let w = parse(&out).unwrap();
        assert_eq!(w.location.token.label, "tok");
        assert_eq!(w.location.key_label, "key");
        assert_eq!(w.iv, [7u8; IV_LEN]);
        assert!(parse(&out[..out.len() - 1]).is_none());
        assert!(parse(&out[1..]).is_none());
        assert!(parse(b"").is_none());
    }
}
