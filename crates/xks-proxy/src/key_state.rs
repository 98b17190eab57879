//! What a token key allows and whether it is disabled, as the XKS API reports and enforces
//! them.
//!
//! * Usage: `CKA_ENCRYPT` / `CKA_DECRYPT` of the token key. GetKeyMetadata lists them as
//!   `keyUsage`; an Encrypt or Decrypt the key does not allow is `InvalidKeyUsageException`.
//!   An Encrypt that asks for a ciphertext data integrity value also needs `CKA_DECRYPT`: the
//!   proxy proves its output decrypts before answering.
//! * Disabled: a disable marker exists in the token for the key (`disable-key` creates it,
//!   `enable-key` removes it; see `kms_hsm::xks`). GetKeyMetadata says `DISABLED`; Encrypt and
//!   Decrypt are `InvalidStateException`. A key with neither usage is not disabled (AWS's
//!   test client expects `InvalidKeyUsageException` for it).

use kms_hsm::xks::XksKeyInfo;

/// The usages an operation needs from the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Encrypt; `trial_decrypt` when a ciphertext data integrity value is requested.
    Encrypt {
        /// The output is decrypted once before answering (needs `CKA_DECRYPT` too).
        trial_decrypt: bool,
    },
    /// Decrypt.
    Decrypt,
}

/// Why a token key cannot serve an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No AES key with the label in the token.
    Missing,
    /// Not an AES-256 key.
    NotAes256,
    /// Disabled in the HSM.
    Disabled,
    /// The key does not allow the operation (the message says which usage is missing).
    NotAllowed(&'static str),
}

/// `keyUsage` of GetKeyMetadata: what the token key allows, in the spec's spelling.
pub fn key_usage(info: &XksKeyInfo) -> Vec<&'static str> {
    let mut usage = Vec::with_capacity(2);
    if info.encrypt {
        usage.push("ENCRYPT");
    }
    if info.decrypt {
        usage.push("DECRYPT");
    }
    usage
}

/// Checks, in this order: the key exists, is AES-256, is not disabled, allows what `need`
/// needs.
pub fn check(info: Option<&XksKeyInfo>, need: Need) -> Result<(), Refusal> {
    let Some(info) = info else {
        return Err(Refusal::Missing);
    };
    if !info.is_aes256() {
        return Err(Refusal::NotAes256);
    }
    if info.disabled {
        return Err(Refusal::Disabled);
    }
    match need {
        Need::Encrypt { .. } if !info.encrypt => Err(Refusal::NotAllowed(
            "the external key does not allow encryption (CKA_ENCRYPT is false in the HSM)",
        )),
        Need::Encrypt {
            trial_decrypt: true,
        } if !info.decrypt => Err(Refusal::NotAllowed(
            "the external key does not allow decryption (CKA_DECRYPT is false in the HSM), \
             which the trial decryption behind ciphertextDataIntegrityValue needs",
        )),
        Need::Decrypt if !info.decrypt => Err(Refusal::NotAllowed(
            "the external key does not allow decryption (CKA_DECRYPT is false in the HSM)",
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(encrypt: bool, decrypt: bool) -> XksKeyInfo {
        XksKeyInfo {
            encrypt,
            decrypt,
            value_len: Some(32),
            disabled: false,
        }
    }

    const PLAIN: Need = Need::Encrypt {
        trial_decrypt: false,
    };
    const CDIV: Need = Need::Encrypt {
        trial_decrypt: true,
    };

    #[test]
    fn usage_decides_each_operation() {
        let cases = [
            // (encrypt, decrypt) -> ready for (plain encrypt, CDIV encrypt, decrypt)
            ((true, true), [true, true, true]),
            ((true, false), [true, false, false]),
            ((false, true), [false, false, true]),
            ((false, false), [false, false, false]),
        ];
        for ((e, d), expected) in cases {
            let k = key(e, d);
            for (need, ready) in [PLAIN, CDIV, Need::Decrypt].into_iter().zip(expected) {
                let verdict = check(Some(&k), need);
                if ready {
                    assert_eq!(verdict, Ok(()), "{e} {d} {need:?}");
                } else {
                    assert!(
                        matches!(verdict, Err(Refusal::NotAllowed(_))),
                        "{e} {d} {need:?}: {verdict:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn key_usage_lists_the_flags() {
        assert_eq!(key_usage(&key(true, true)), ["ENCRYPT", "DECRYPT"]);
        assert_eq!(key_usage(&key(true, false)), ["ENCRYPT"]);
        assert_eq!(key_usage(&key(false, true)), ["DECRYPT"]);
        assert!(key_usage(&key(false, false)).is_empty());
    }

    #[test]
    fn disabled_is_decided_before_usage() {
        let mut k = key(false, false);
        assert!(matches!(
            check(Some(&k), PLAIN),
            Err(Refusal::NotAllowed(_))
        ));
        k.disabled = true;
        assert_eq!(check(Some(&k), PLAIN), Err(Refusal::Disabled));
        assert_eq!(check(Some(&key(true, true)), Need::Decrypt), Ok(()));
        assert_eq!(check(None, PLAIN), Err(Refusal::Missing));
        k.value_len = Some(16);
        assert_eq!(check(Some(&k), PLAIN), Err(Refusal::NotAes256));
    }
}
