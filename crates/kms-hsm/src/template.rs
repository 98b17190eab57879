//! Attribute templates: the policy of KMS keys, the cluster wrapping key and the transient
//! keys used to establish it. See `docs/adr/0001-hsm-key-replication.md`.
//!
//! SoftHSM2 2.6 quirk: in `C_UnwrapKey` the template is applied in order and every attribute
//! after `CKA_MODIFIABLE=FALSE` is rejected with `CKR_ATTRIBUTE_READ_ONLY`, so every template
//! here ends with `CKA_MODIFIABLE=FALSE`.

use crate::error::HsmError;
use cryptoki::mechanism::MechanismType;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use std::os::raw::c_ulong;

/// `CKA_UNWRAP_TEMPLATE` (`CKF_ARRAY_ATTRIBUTE | 0x212`); cryptoki has no variant for it.
const CKA_UNWRAP_TEMPLATE: c_ulong = 0x4000_0212;

/// `CKA_LABEL` of the cluster wrapping key on every token of a cluster.
pub const CLUSTER_KEY_LABEL: &str = "kmsd-cluster-wrapping-key";

/// DER OID of NIST P-256 (`prime256v1`), the curve of the transient ECDH key pairs.
pub(crate) const P256_OID_DER: [u8; 10] =
    [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// Attributes every KMS key has, whether generated or replicated (unwrapped). The cluster
/// wrapping key carries exactly this list as its `CKA_UNWRAP_TEMPLATE`, so a key unwrapped with
/// it can only ever become another KMS key with this policy (never a non-sensitive copy).
pub(crate) fn kms_key_policy() -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        // Extractable only for C_WrapKey under a CKA_TRUSTED key (see the ADR).
        Attribute::Extractable(true),
        Attribute::WrapWithTrusted(true),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
        Attribute::Sign(false),
        Attribute::Verify(false),
        Attribute::Copyable(false),
        Attribute::AllowedMechanisms(vec![MechanismType::AES_GCM]),
        Attribute::Modifiable(false),
    ]
}

/// Puts `CKA_MODIFIABLE` last (see the module docs).
fn modifiable_last(mut t: Vec<Attribute>) -> Vec<Attribute> {
    let (m, mut rest): (Vec<_>, Vec<_>) = t
        .drain(..)
        .partition(|a| matches!(a, Attribute::Modifiable(_)));
    rest.extend(m);
    rest
}

/// Template for `C_GenerateKey` of a KMS key (with `CKA_VALUE_LEN`) or for `C_UnwrapKey` of a
/// replica (without: the length comes from the wrapped key).
pub(crate) fn kms_key_template(id: &[u8; 16], label: &str, generate: bool) -> Vec<Attribute> {
    let mut t = kms_key_policy();
    t.push(Attribute::Id(id.to_vec()));
    t.push(Attribute::Label(label.as_bytes().to_vec()));
    if generate {
        t.push(Attribute::ValueLen(32.into()));
    }
    modifiable_last(t)
}

/// Test-only template to import a known AES-256 key (non-extractable) for known-answer tests.
#[cfg(test)]
pub(crate) fn imported_key_template(id: &[u8; 16], label: &str, value: &[u8]) -> Vec<Attribute> {
    modifiable_last(vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
        Attribute::Copyable(false),
        Attribute::AllowedMechanisms(vec![MechanismType::AES_GCM]),
        Attribute::Modifiable(false),
        Attribute::Id(id.to_vec()),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Value(value.to_vec()),
    ])
}

/// Search template for KMS keys by id.
pub(crate) fn kms_key_search(id: &[u8; 16]) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::Id(id.to_vec()),
    ]
}

/// Search template for the cluster wrapping key: only a `CKA_TRUSTED` key qualifies, which
/// only the SO can have made, so a look-alike created by a user is never picked up.
pub(crate) fn cluster_key_search() -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::Label(CLUSTER_KEY_LABEL.as_bytes().to_vec()),
        Attribute::Trusted(true),
    ]
}

/// A `CK_ATTRIBUTE[]` value built in memory, for array attributes such as
/// `CKA_UNWRAP_TEMPLATE` that cryptoki cannot express. `bytes` holds `CK_ATTRIBUTE` structs
/// whose `pValue` point into `values`; both must stay alive (and unmoved on the heap) while
/// the library reads the attribute, i.e. until the call that receives it returns.
pub(crate) struct AttrArray {
    _values: Vec<Vec<u8>>,
    bytes: Vec<u8>,
}

impl AttrArray {
    /// Serialises `attrs` as a native `CK_ATTRIBUTE` array.
    pub(crate) fn new(attrs: &[Attribute]) -> Result<AttrArray, HsmError> {
        let raw = attrs.iter().map(raw_attr).collect::<Result<Vec<_>, _>>()?;
        let (types, values): (Vec<c_ulong>, Vec<Vec<u8>>) = raw.into_iter().unzip();
        // Layout of CK_ATTRIBUTE { CK_ULONG type; void *pValue; CK_ULONG ulValueLen; } with
        // natural C alignment.
        let ul = std::mem::size_of::<c_ulong>();
        let ptr = std::mem::size_of::<usize>();
        let align = std::mem::align_of::<c_ulong>().max(std::mem::align_of::<usize>());
        let round = |n: usize, a: usize| n.div_ceil(a) * a;
        let off_ptr = round(ul, std::mem::align_of::<usize>());
        let off_len = round(off_ptr + ptr, std::mem::align_of::<c_ulong>());
        let size = round(off_len + ul, align);
        let mut bytes = vec![0u8; size * values.len()];
        for (i, (t, v)) in types.iter().zip(values.iter()).enumerate() {
            let base = i * size;
            let len = c_ulong::try_from(v.len())
                .map_err(|_| HsmError::Other("attribute value too long".into()))?;
            bytes[base..base + ul].copy_from_slice(&t.to_ne_bytes());
            let p = v.as_ptr().expose_provenance();
            bytes[base + off_ptr..base + off_ptr + ptr].copy_from_slice(&p.to_ne_bytes());
            bytes[base + off_len..base + off_len + ul].copy_from_slice(&len.to_ne_bytes());
        }
        Ok(AttrArray {
            _values: values,
            bytes,
        })
    }

    /// The `CKA_UNWRAP_TEMPLATE` attribute carrying this array. The returned attribute holds a
    /// copy of the struct bytes, whose pointers still refer to `self`: keep `self` alive.
    pub(crate) fn as_unwrap_template(&self) -> Attribute {
        Attribute::VendorDefined((
            AttributeType::VendorDefined(CKA_UNWRAP_TEMPLATE),
            self.bytes.clone(),
        ))
    }
}

/// Native (`CK_ATTRIBUTE_TYPE`, value bytes) of the attribute kinds used in unwrap templates.
fn raw_attr(a: &Attribute) -> Result<(c_ulong, Vec<u8>), HsmError> {
    let t: c_ulong = a.attribute_type().into();
    let v = match a {
        Attribute::Class(c) => c_ulong::from(*c).to_ne_bytes().to_vec(),
        Attribute::KeyType(k) => c_ulong::from(*k).to_ne_bytes().to_vec(),
        Attribute::AllowedMechanisms(ms) => ms
            .iter()
            .flat_map(|m| c_ulong::from(*m).to_ne_bytes())
            .collect(),
        Attribute::Token(b)
        | Attribute::Private(b)
        | Attribute::Sensitive(b)
        | Attribute::Extractable(b)
        | Attribute::WrapWithTrusted(b)
        | Attribute::Encrypt(b)
        | Attribute::Decrypt(b)
        | Attribute::Wrap(b)
        | Attribute::Unwrap(b)
        | Attribute::Derive(b)
        | Attribute::Sign(b)
        | Attribute::Verify(b)
        | Attribute::Copyable(b)
        | Attribute::Modifiable(b) => vec![u8::from(*b)],
        other => {
            return Err(HsmError::Other(format!(
                "attribute {:?} not supported in an attribute array",
                other.attribute_type()
            )))
        }
    };
    Ok((t, v))
}

/// Template of the cluster wrapping key (CWK). The SO creates it (only the SO may set
/// `CKA_TRUSTED`), so it must be a public object (SoftHSM2 lets the SO create only
/// `CKA_PRIVATE=FALSE` objects); its value is still sensitive and it can do nothing but
/// AES-KWP wrap/unwrap, unwrapping only into [`kms_key_policy`].
pub(crate) fn cluster_key_template(
    cluster_key_id: &[u8],
    unwrap_template: &AttrArray,
    generate: bool,
) -> Vec<Attribute> {
    let mut t = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Sensitive(true),
        // Extractable only under a trusted key: needed to hand it to a new token.
        Attribute::Extractable(true),
        Attribute::WrapWithTrusted(true),
        Attribute::Trusted(true),
        Attribute::Wrap(true),
        Attribute::Unwrap(true),
        Attribute::Encrypt(false),
        Attribute::Decrypt(false),
        Attribute::Derive(false),
        Attribute::Sign(false),
        Attribute::Verify(false),
        Attribute::Copyable(false),
        Attribute::AllowedMechanisms(vec![MechanismType::AES_KEY_WRAP_PAD]),
        unwrap_template.as_unwrap_template(),
        Attribute::Label(CLUSTER_KEY_LABEL.as_bytes().to_vec()),
        Attribute::Id(cluster_key_id.to_vec()),
    ];
    if generate {
        t.push(Attribute::ValueLen(32.into()));
    }
    t.push(Attribute::Modifiable(false));
    t
}

/// Transient (session object) AES-256 key derived by ECDH between two tokens, used once to
/// wrap (source side: `CKA_TRUSTED`, only the SO may set it) or unwrap (target side) the CWK.
pub(crate) fn transport_key_template(wrap_side: bool) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::ValueLen(32.into()),
        Attribute::Token(false),
        Attribute::Private(false),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Trusted(wrap_side),
        Attribute::Wrap(wrap_side),
        Attribute::Unwrap(!wrap_side),
        Attribute::Encrypt(false),
        Attribute::Decrypt(false),
        Attribute::Derive(false),
        Attribute::AllowedMechanisms(vec![MechanismType::AES_KEY_WRAP_PAD]),
    ]
}

/// Transient P-256 key pair (session objects) for ECDH: (public template, private template).
pub(crate) fn ecdh_keypair_templates() -> (Vec<Attribute>, Vec<Attribute>) {
    (
        vec![
            Attribute::Token(false),
            Attribute::Private(false),
            Attribute::EcParams(P256_OID_DER.to_vec()),
        ],
        vec![
            Attribute::Token(false),
            Attribute::Private(false),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Derive(true),
        ],
    )
}
