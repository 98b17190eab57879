//! Keys for an XKS proxy (AWS KMS External Key Store, `xks-proxy`): AES-256 keys found by
//! their `CKA_LABEL` (the external key id).
//!
//! What a key may do is its usage flags `CKA_ENCRYPT` / `CKA_DECRYPT` (enforced by the token).
//! Whether it is *disabled* is separate, as in the XKS API (a missing usage is
//! `InvalidKeyUsageException`, a disabled key `InvalidStateException`): a key is disabled while
//! a *disable marker* exists, a private token data object (`CKO_DATA`) with the key's label
//! and `CKA_APPLICATION` = [`XKS_DISABLED_MARKER`]. The token does not enforce the marker; the
//! proxy reads it at every call. (`CKA_END_DATE` would be the natural attribute, but SoftHSM2
//! cannot read it back from private objects: SoftHSMv2 issues 655 and 804.)
//!
//! Unlike kmsd's CloudHSM-style keys (16-byte `CKA_ID`, not modifiable, extractable under the
//! cluster wrapping key), an XKS key is never extractable and stays modifiable so that its
//! usage flags can be changed (`C_SetAttributeValue`). A key's object handle is found by label
//! once and kept (a search walks every object of the token, the dearest part of a call); its
//! attributes and disable marker are read again at every call, so changes made by another
//! process (e.g. `xks-proxy disable-key`) are seen by the next call, as far as the module itself
//! does not cache them (SoftHSM2 with the file object store re-reads changed object files). A
//! kept handle that the token no longer knows, or that names another object, is dropped and the
//! key searched for again. One difference from searching every time: a second AES key given the
//! same label by another process is not noticed while the first one exists.

use crate::error::{is_stale_handle, map_ck, map_decrypt, HsmError};
use crate::hsm::Hsm;
use crate::pool::PooledSession;
use crate::GCM_TAG_LEN;
use cryptoki::error::Error as CkError;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use zeroize::Zeroizing;

/// Longest accepted label (an XKS external key id is at most 128 characters).
pub const MAX_XKS_LABEL_LEN: usize = 128;

/// `CKA_APPLICATION` of the data objects marking an XKS key disabled (see the module docs).
pub const XKS_DISABLED_MARKER: &str = "xks-proxy disabled key";

/// What [`Hsm::xks_key_info`] reads from the token about an XKS key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XksKeyInfo {
    /// `CKA_ENCRYPT`.
    pub encrypt: bool,
    /// `CKA_DECRYPT`.
    pub decrypt: bool,
    /// `CKA_VALUE_LEN` in bytes (32 for AES-256), if the token reports it.
    pub value_len: Option<u64>,
    /// A disable marker exists for the key.
    pub disabled: bool,
}

impl XksKeyInfo {
    /// An AES-256 key (`CKA_VALUE_LEN` = 32).
    pub fn is_aes256(&self) -> bool {
        self.value_len == Some(32)
    }
}

/// Identity of the token, for health reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XksTokenInfo {
    /// Token label.
    pub label: String,
    /// `manufacturerID`, e.g. `SoftHSM project`.
    pub manufacturer: String,
    /// `model`, e.g. `SoftHSM v2`.
    pub model: String,
    /// Serial number.
    pub serial: String,
}

fn check_label(label: &str) -> Result<(), HsmError> {
    if label.is_empty() || label.len() > MAX_XKS_LABEL_LEN {
        return Err(HsmError::Other(format!(
            "XKS key label must be 1..={MAX_XKS_LABEL_LEN} bytes"
        )));
    }
    if label == crate::CLUSTER_KEY_LABEL {
        return Err(HsmError::Other(format!(
            "{label:?} is reserved for the cluster wrapping key"
        )));
    }
    Ok(())
}

/// Search template: AES secret keys with this label.
fn search(label: &str) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Label(label.as_bytes().to_vec()),
    ]
}

/// Search template: the disable markers of the key `label`.
fn marker_search(label: &str) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::DATA),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Application(XKS_DISABLED_MARKER.as_bytes().to_vec()),
    ]
}

/// Template of a disable marker: a private token data object without a value.
fn marker_template(label: &str) -> Vec<Attribute> {
    let mut t = marker_search(label);
    t.extend([Attribute::Token(true), Attribute::Private(true)]);
    t
}

/// Template of a new XKS key: persistent, private, sensitive, never extractable, AES-GCM
/// encrypt/decrypt only, modifiable (for `xks_set_key_usage`). `CKA_MODIFIABLE` last (see
/// `template.rs` for the SoftHSM2 ordering quirk).
fn key_template(label: &str) -> Vec<Attribute> {
    vec![
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
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Modifiable(true),
    ]
}

impl Hsm {
    /// The one AES key labelled `label`, if any. Private objects are invisible without login,
    /// so "none found" on a session that lost its login is [`HsmError::NotLoggedIn`].
    fn xks_find(s: &PooledSession<'_>, label: &str) -> Result<Option<ObjectHandle>, HsmError> {
        let found = s.find_objects(&search(label)).map_err(map_ck)?;
        match found.as_slice() {
            [] => {
                let info = s.get_session_info().map_err(map_ck)?;
                match info.session_state() {
                    cryptoki::session::SessionState::RwUser
                    | cryptoki::session::SessionState::RoUser => Ok(None),
                    _ => Err(HsmError::NotLoggedIn),
                }
            }
            [h] => Ok(Some(*h)),
            _ => Err(HsmError::Other(format!(
                "{} AES keys share the label {label:?}",
                found.len()
            ))),
        }
    }

    /// Generates the persistent AES-256 XKS key `label` inside the token (see the module
    /// docs for its attributes). [`HsmError::KeyAlreadyExists`] if an AES key with this label
    /// exists.
    pub fn xks_generate_key(&self, label: &str) -> Result<(), HsmError> {
        check_label(label)?;
        let mut s = self.session()?;
        if s.check(Self::xks_find(&s, label))?.is_some() {
            return Err(HsmError::KeyAlreadyExists);
        }
        let r = s
            .generate_key(&Mechanism::AesKeyGen, &key_template(label))
            .map_err(map_ck);
        s.check(r)?;
        tracing::info!(token = %self.token_label(), key_label = %label, "generated XKS key");
        Ok(())
    }

    fn xks_cache(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, ObjectHandle>> {
        self.xks_handles.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `op` on the key `label`: with its kept handle, else (or if that handle is stale, or
    /// `op` answers `None` because it names another object) with the handle found by label,
    /// which is then kept. `Ok(None)`: no AES key has this label.
    fn with_xks_key<T>(
        &self,
        s: &mut PooledSession<'_>,
        label: &str,
        op: impl Fn(&PooledSession<'_>, ObjectHandle) -> Result<Option<T>, CkError>,
        map: impl Fn(CkError) -> HsmError,
    ) -> Result<Option<T>, HsmError> {
        let kept = self.xks_cache().get(label).copied();
        if let Some(h) = kept {
            match op(s, h) {
                Ok(Some(v)) => return Ok(Some(v)),
                Ok(None) => {}
                Err(e) if is_stale_handle(&e) => {}
                Err(e) => {
                    let r = Err(map(e));
                    return s.check(r);
                }
            }
            self.xks_cache().remove(label);
        }
        let Some(h) = s.check(Self::xks_find(s, label))? else {
            return Ok(None);
        };
        self.xks_cache().insert(label.to_owned(), h);
        let r = match op(s, h) {
            Ok(Some(v)) => Ok(Some(v)),
            Ok(None) => Err(HsmError::Other(format!(
                "the object found for XKS key {label:?} changed while it was read"
            ))),
            Err(e) => Err(map(e)),
        };
        s.check(r)
    }

    /// Reads the key's state from the token (`None` if no AES key has this label).
    pub fn xks_key_info(&self, label: &str) -> Result<Option<XksKeyInfo>, HsmError> {
        let mut s = self.session()?;
        let read = |s: &PooledSession<'_>, h: ObjectHandle| {
            let attrs = s.get_attributes(
                h,
                &[
                    AttributeType::Class,
                    AttributeType::KeyType,
                    AttributeType::Label,
                    AttributeType::Encrypt,
                    AttributeType::Decrypt,
                    AttributeType::ValueLen,
                ],
            )?;
            let mut info = XksKeyInfo {
                encrypt: false,
                decrypt: false,
                value_len: None,
                disabled: false,
            };
            let (mut class_ok, mut type_ok, mut label_ok) = (false, false, false);
            for a in attrs {
                match a {
                    Attribute::Class(c) => class_ok = c == ObjectClass::SECRET_KEY,
                    Attribute::KeyType(t) => type_ok = t == KeyType::AES,
                    Attribute::Label(l) => label_ok = l == label.as_bytes(),
                    Attribute::Encrypt(b) => info.encrypt = b,
                    Attribute::Decrypt(b) => info.decrypt = b,
                    Attribute::ValueLen(n) => info.value_len = u64::try_from(usize::from(n)).ok(),
                    _ => {}
                }
            }
            Ok((class_ok && type_ok && label_ok).then_some(info))
        };
        let Some(mut info) = self.with_xks_key(&mut s, label, read, map_ck)? else {
            return Ok(None);
        };
        let r = s.find_objects(&marker_search(label)).map_err(map_ck);
        info.disabled = !s.check(r)?.is_empty();
        Ok(Some(info))
    }

    /// Enables (removes every disable marker) or disables (creates a disable marker unless
    /// one exists) the key; its usage flags are left alone. [`HsmError::KeyNotFound`] if no
    /// AES key has this label.
    pub fn xks_set_key_enabled(&self, label: &str, enabled: bool) -> Result<(), HsmError> {
        let mut s = self.session()?;
        s.check(Self::xks_find(&s, label))?
            .ok_or(HsmError::KeyNotFound)?;
        let r = s.find_objects(&marker_search(label)).map_err(map_ck);
        let markers = s.check(r)?;
        if enabled {
            for m in markers {
                let r = s.destroy_object(m).map_err(map_ck);
                s.check(r)?;
            }
        } else if markers.is_empty() {
            let r = s.create_object(&marker_template(label)).map_err(map_ck);
            s.check(r)?;
        }
        tracing::info!(token = %self.token_label(), key_label = %label, enabled, "changed XKS key state");
        Ok(())
    }

    /// Sets what the key allows: `CKA_ENCRYPT` and `CKA_DECRYPT` (whether it is disabled is
    /// left alone). [`HsmError::KeyNotFound`] if no AES key has this label.
    pub fn xks_set_key_usage(
        &self,
        label: &str,
        encrypt: bool,
        decrypt: bool,
    ) -> Result<(), HsmError> {
        let mut s = self.session()?;
        let h = s
            .check(Self::xks_find(&s, label))?
            .ok_or(HsmError::KeyNotFound)?;
        let r = s
            .update_attributes(
                h,
                &[Attribute::Encrypt(encrypt), Attribute::Decrypt(decrypt)],
            )
            .map_err(map_ck);
        s.check(r)?;
        tracing::info!(token = %self.token_label(), key_label = %label, encrypt, decrypt, "changed XKS key usage");
        Ok(())
    }

    /// AES-256-GCM encryption with the key `label` (96-bit IV chosen by the caller, 128-bit
    /// tag). Returns `ciphertext || tag`. [`HsmError::KeyNotFound`] if there is no such key; a
    /// key without `CKA_ENCRYPT` fails in the token (`CKR_KEY_FUNCTION_NOT_PERMITTED`). The
    /// disable marker is not looked at here (the caller checks [`Hsm::xks_key_info`]).
    pub fn xks_aes_gcm_encrypt(
        &self,
        label: &str,
        iv: &[u8; 12],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        let mut s = self.session()?;
        let encrypt = |s: &PooledSession<'_>, h: ObjectHandle| {
            let mut iv = *iv;
            let mech = Mechanism::AesGcm(GcmParams::new(&mut iv, aad, 128.into())?);
            s.encrypt(&mech, h, plaintext).map(Some)
        };
        self.with_xks_key(&mut s, label, encrypt, map_ck)?
            .ok_or(HsmError::KeyNotFound)
    }

    /// AES-256-GCM decryption of `ciphertext || tag` with the key `label`. Authentication
    /// failure (or an input shorter than the tag) is [`HsmError::Decrypt`].
    pub fn xks_aes_gcm_decrypt(
        &self,
        label: &str,
        iv: &[u8; 12],
        aad: &[u8],
        ciphertext_and_tag: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        if ciphertext_and_tag.len() < GCM_TAG_LEN {
            return Err(HsmError::Decrypt);
        }
        let mut s = self.session()?;
        let decrypt = |s: &PooledSession<'_>, h: ObjectHandle| {
            let mut iv = *iv;
            let mech = Mechanism::AesGcm(GcmParams::new(&mut iv, aad, 128.into())?);
            s.decrypt(&mech, h, ciphertext_and_tag)
                .map(|p| Some(Zeroizing::new(p)))
        };
        self.with_xks_key(&mut s, label, decrypt, map_decrypt)?
            .ok_or(HsmError::KeyNotFound)
    }

    /// Label, manufacturer, model and serial number of the token (`C_GetTokenInfo`).
    pub fn xks_token_info(&self) -> Result<XksTokenInfo, HsmError> {
        let mut s = self.session()?;
        let r = s.get_session_info().map_err(map_ck);
        let slot = s.check(r)?.slot_id();
        let ctx = crate::module::context(&self.token().module)?;
        let info = ctx.get_token_info(slot).map_err(map_ck)?;
        Ok(XksTokenInfo {
            label: info.label().to_string(),
            manufacturer: info.manufacturer_id().to_string(),
            model: info.model().to_string(),
            serial: info.serial_number().to_string(),
        })
    }
}
