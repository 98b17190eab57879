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
//! usage flags can be changed (`C_SetAttributeValue`). Nothing here caches an
//! object handle or an attribute: every call finds the key by label and reads its attributes
//! again, so changes made by another process (e.g. `xks-proxy disable-key`) are seen by the
//! next call, as far as the module itself does not cache them (SoftHSM2 with the file object
//! store re-reads changed object files).

use crate::error::{map_ck, map_decrypt, HsmError};
use crate::hsm::Hsm;
use crate::pool::PooledSession;
use crate::GCM_TAG_LEN;
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

fn gcm<'a>(iv: &'a mut [u8; 12], aad: &'a [u8]) -> Result<Mechanism<'a>, HsmError> {
    Ok(Mechanism::AesGcm(
        GcmParams::new(iv, aad, 128.into()).map_err(map_ck)?,
    ))
}

impl Hsm {
    /// The one AES key labelled `label`, if any. Private objects are invisible without login,
    /// so "none found" on a session that lost its login is [`HsmError::NotLoggedIn`].
    pub(crate) fn xks_find(
        s: &PooledSession<'_>,
        label: &str,
    ) -> Result<Option<ObjectHandle>, HsmError> {
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

    /// Reads the key's state from the token (`None` if no AES key has this label).
    pub fn xks_key_info(&self, label: &str) -> Result<Option<XksKeyInfo>, HsmError> {
        let mut s = self.session()?;
        let Some(h) = s.check(Self::xks_find(&s, label))? else {
            return Ok(None);
        };
        let r = s
            .get_attributes(
                h,
                &[
                    AttributeType::Encrypt,
                    AttributeType::Decrypt,
                    AttributeType::ValueLen,
                ],
            )
            .map_err(map_ck);
        let attrs = s.check(r)?;
        let r = s.find_objects(&marker_search(label)).map_err(map_ck);
        let markers = s.check(r)?;
        let mut info = XksKeyInfo {
            encrypt: false,
            decrypt: false,
            value_len: None,
            disabled: !markers.is_empty(),
        };
        for a in attrs {
            match a {
                Attribute::Encrypt(b) => info.encrypt = b,
                Attribute::Decrypt(b) => info.decrypt = b,
                Attribute::ValueLen(n) => info.value_len = u64::try_from(usize::from(n)).ok(),
                _ => {}
            }
        }
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
        let h = s
            .check(Self::xks_find(&s, label))?
            .ok_or(HsmError::KeyNotFound)?;
        let mut iv = *iv;
        let mech = gcm(&mut iv, aad)?;
        let r = s.encrypt(&mech, h, plaintext).map_err(map_ck);
        s.check(r)
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
        let h = s
            .check(Self::xks_find(&s, label))?
            .ok_or(HsmError::KeyNotFound)?;
        let mut iv = *iv;
        let mech = gcm(&mut iv, aad)?;
        let r = s
            .decrypt(&mech, h, ciphertext_and_tag)
            .map(Zeroizing::new)
            .map_err(map_decrypt);
        s.check(r)
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
