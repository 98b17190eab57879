//! Request quota classes: which AWS KMS request quota a request counts against (AWS "Request
//! quotas": cryptographic operations share one quota per key type; keys in a custom key store
//! also count against that store's quota; GenerateDataKeyPair has one quota per data key pair
//! spec; every other operation has its own). The limiter itself lives at the edge (kmsd); this
//! module only classifies, because the class of a cryptographic operation depends on the key.

use base64::Engine;

use super::Service;
use crate::context::Caller;
use crate::envelope;
use crate::ids::{parse_key_ref, KeyRef};
use crate::model::KeyRecord;

/// A request quota that requests share.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuotaClass {
    /// Cryptographic operations with symmetric encryption keys and HMAC keys, and GenerateRandom.
    Symmetric,
    /// Cryptographic operations with RSA keys.
    Rsa,
    /// Cryptographic operations with elliptic-curve (and SM2) keys.
    Ecc,
    /// Cryptographic operations with ML-DSA keys.
    MlDsa,
    /// Cryptographic operations with ML-KEM keys.
    MlKem,
    /// Cryptographic operations with keys of one custom key store (the store id); the quota is
    /// per key store, not per account.
    CustomKeyStore(String),
    /// GenerateDataKeyPair(WithoutPlaintext) of one data key pair spec (e.g. `RSA_2048`).
    DataKeyPair(String),
    /// Any other operation, by name: each has its own quota.
    Operation(String),
}

impl QuotaClass {
    /// The name used in quota files: `symmetric`, `rsa`, `ecc`, `ml-dsa`, `ml-kem`,
    /// `custom-key-store`, `GenerateDataKeyPair:<spec>`, or the operation name.
    pub fn name(&self) -> String {
        match self {
            QuotaClass::Symmetric => "symmetric".into(),
            QuotaClass::Rsa => "rsa".into(),
            QuotaClass::Ecc => "ecc".into(),
            QuotaClass::MlDsa => "ml-dsa".into(),
            QuotaClass::MlKem => "ml-kem".into(),
            QuotaClass::CustomKeyStore(_) => "custom-key-store".into(),
            QuotaClass::DataKeyPair(spec) => format!("GenerateDataKeyPair:{spec}"),
            QuotaClass::Operation(op) => op.clone(),
        }
    }

    /// Whose quota it is: the custom key store for [`QuotaClass::CustomKeyStore`], otherwise
    /// the calling account (AWS throttles the caller, also for keys of other accounts).
    pub fn owner<'a>(&'a self, caller_account: &'a str) -> &'a str {
        match self {
            QuotaClass::CustomKeyStore(id) => id,
            _ => caller_account,
        }
    }
}

/// One quota a request draws on, and how many requests' worth it costs there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaCharge {
    /// The quota.
    pub class: QuotaClass,
    /// Requests' worth (3 for data key generation in a custom key store, as AWS documents).
    pub cost: u32,
}

/// Operations that share the cryptographic-operations quota of their key's type.
const CRYPTO_OPERATIONS: &[&str] = &[
    "Decrypt",
    "Encrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateMac",
    "VerifyMac",
    "ReEncrypt",
    "Sign",
    "Verify",
    "DeriveSharedSecret",
    "Encapsulate",
    "Decapsulate",
];

/// The cryptographic-operations quota of a key spec.
pub fn key_type_class(key_spec: &str) -> QuotaClass {
    if key_spec.starts_with("RSA_") {
        QuotaClass::Rsa
    } else if key_spec.starts_with("ECC_") || key_spec == "SM2" {
        QuotaClass::Ecc
    } else if key_spec.starts_with("ML_DSA_") {
        QuotaClass::MlDsa
    } else if key_spec.starts_with("ML_KEM_") {
        QuotaClass::MlKem
    } else {
        // SYMMETRIC_DEFAULT and HMAC_*.
        QuotaClass::Symmetric
    }
}

/// Operations that draw three requests' worth of a custom key store's quota.
fn custom_store_cost(op: &str) -> u32 {
    match op {
        "GenerateDataKey" | "GenerateDataKeyWithoutPlaintext" | "GenerateRandom" => 3,
        _ => 1,
    }
}

/// The request members that choose a quota: read without building a JSON tree of the whole
/// body (other members, plaintexts included, are skipped), borrowed where JSON allows.
#[derive(Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct QuotaMembers<'a> {
    #[serde(borrow)]
    key_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    destination_key_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    ciphertext_blob: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    source_ciphertext_blob: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    key_pair_spec: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    custom_key_store_id: Option<std::borrow::Cow<'a, str>>,
}

impl<'a> QuotaMembers<'a> {
    /// The members of `body`; none when it is not a JSON object of the expected shape (the
    /// request then fails later with the proper error).
    fn of(body: &'a [u8]) -> Self {
        serde_json::from_slice(body).unwrap_or_default()
    }
}

impl Service {
    /// The quotas `op` with JSON `body` from `caller` counts against. Never fails: a key that
    /// cannot be found (the request will fail later with the proper error) counts as symmetric.
    pub fn quota_charges(&self, caller: &Caller, op: &str, body: &[u8]) -> Vec<QuotaCharge> {
        let charge = |class| QuotaCharge { class, cost: 1 };
        match op {
            "GenerateDataKeyPair" | "GenerateDataKeyPairWithoutPlaintext" => {
                let members = QuotaMembers::of(body);
                let spec = members.key_pair_spec.as_deref().unwrap_or("UNKNOWN");
                vec![charge(QuotaClass::DataKeyPair(spec.to_owned()))]
            }
            "GenerateRandom" => {
                let mut out = vec![charge(QuotaClass::Symmetric)];
                if let Some(store) = QuotaMembers::of(body).custom_key_store_id {
                    out.push(QuotaCharge {
                        class: QuotaClass::CustomKeyStore(store.into_owned()),
                        cost: custom_store_cost(op),
                    });
                }
                out
            }
            _ if CRYPTO_OPERATIONS.contains(&op) => {
                let members = QuotaMembers::of(body);
                let key_ref = if op == "ReEncrypt" {
                    members.destination_key_id.as_deref()
                } else {
                    members.key_id.as_deref()
                };
                let record = match key_ref {
                    Some(r) => self.quota_key(caller, r),
                    None => members
                        .ciphertext_blob
                        .as_deref()
                        .or(members.source_ciphertext_blob.as_deref())
                        .and_then(|b| self.quota_key_of_ciphertext(caller, b)),
                };
                let Some(record) = record else {
                    return vec![charge(QuotaClass::Symmetric)];
                };
                let mut out = vec![charge(key_type_class(&record.key_spec))];
                if let Some(store) = &record.custom_key_store_id {
                    out.push(QuotaCharge {
                        class: QuotaClass::CustomKeyStore(store.clone()),
                        cost: custom_store_cost(op),
                    });
                }
                out
            }
            _ => vec![charge(QuotaClass::Operation(op.to_owned()))],
        }
    }

    /// The key a `KeyId` member names, from the caches, without authorisation (only its type
    /// is used, to pick the quota).
    fn quota_key(&self, caller: &Caller, key_ref: &str) -> Option<KeyRecordView> {
        let (region, id) = match parse_key_ref(key_ref, true).ok()? {
            KeyRef::Id(id) => (caller.region.clone(), id),
            KeyRef::KeyArn { region, key_id, .. } => (region, key_id),
            KeyRef::AliasName(name) => (
                caller.region.clone(),
                self.registry
                    .alias_target(&caller.account, &caller.region, &name)
                    .ok()??,
            ),
            KeyRef::AliasArn {
                region,
                account,
                name,
            } => {
                let id = self
                    .registry
                    .alias_target(&account, &region, &name)
                    .ok()??;
                (region, id)
            }
        };
        self.quota_view(&region, &id)
    }

    /// The key a symmetric ciphertext names in its envelope header.
    fn quota_key_of_ciphertext(&self, caller: &Caller, b64: &str) -> Option<KeyRecordView> {
        let blob = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        let key_id = envelope::parse_xks(&blob)
            .map(|e| e.key_id)
            .or_else(|| envelope::parse(&blob).map(|e| e.key_id))?;
        [false, true]
            .into_iter()
            .find_map(|mrk| self.quota_view(&caller.region, &envelope::key_id_string(&key_id, mrk)))
    }

    fn quota_view(&self, region: &str, id: &str) -> Option<KeyRecordView> {
        let entry = self.registry.key(region, id).ok()??;
        Some(KeyRecordView::of(&entry.record))
    }
}

/// The two facts of a key that choose its quota.
#[derive(Debug)]
struct KeyRecordView {
    key_spec: String,
    custom_key_store_id: Option<String>,
}

impl KeyRecordView {
    fn of(r: &KeyRecord) -> Self {
        KeyRecordView {
            key_spec: r.key_spec.clone(),
            custom_key_store_id: r.custom_key_store_id.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_members_are_read_without_the_rest_of_the_body() {
        let m = QuotaMembers::of(
            br#"{"Plaintext":"aGk=","KeyId":"alias\/x","EncryptionContext":{"a":"b"},"CustomKeyStoreId":"cks-1"}"#,
        );
        assert_eq!(m.key_id.as_deref(), Some("alias/x"), "escapes decoded");
        assert_eq!(m.custom_key_store_id.as_deref(), Some("cks-1"));
        assert!(m.ciphertext_blob.is_none());
        for bad in [&b"not json"[..], b"[1]", b"{\"KeyId\":5}"] {
            assert!(QuotaMembers::of(bad).key_id.is_none());
        }
    }

    #[test]
    fn key_specs_map_to_their_documented_quota() {
        assert_eq!(key_type_class("SYMMETRIC_DEFAULT"), QuotaClass::Symmetric);
        assert_eq!(key_type_class("HMAC_256"), QuotaClass::Symmetric);
        assert_eq!(key_type_class("RSA_4096"), QuotaClass::Rsa);
        assert_eq!(key_type_class("ECC_NIST_P256"), QuotaClass::Ecc);
        assert_eq!(key_type_class("ECC_SECG_P256K1"), QuotaClass::Ecc);
        assert_eq!(key_type_class("SM2"), QuotaClass::Ecc);
        assert_eq!(key_type_class("ML_DSA_65"), QuotaClass::MlDsa);
        assert_eq!(key_type_class("ML_KEM_768"), QuotaClass::MlKem);
    }

    #[test]
    fn names_and_owners() {
        assert_eq!(QuotaClass::Symmetric.name(), "symmetric");
        assert_eq!(
            QuotaClass::DataKeyPair("RSA_2048".into()).name(),
            "GenerateDataKeyPair:RSA_2048"
        );
        assert_eq!(
            QuotaClass::Operation("CreateKey".into()).name(),
            "CreateKey"
        );
        let store = QuotaClass::CustomKeyStore("cks-1".into());
        assert_eq!(store.name(), "custom-key-store");
        assert_eq!(store.owner("111122223333"), "cks-1");
        assert_eq!(QuotaClass::Rsa.owner("111122223333"), "111122223333");
    }
}
