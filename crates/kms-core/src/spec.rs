//! The KeySpec × KeyUsage matrix and the algorithms each combination offers, as AWS defines them.

use kms_crypto::asymmetric::{AsymmetricSpec, HmacAlgorithm, SigningAlgorithm};
use kms_types::{ErrorCode, KmsError};

/// What kind of material a key spec has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecKind {
    /// AES-256-GCM (`SYMMETRIC_DEFAULT`).
    Symmetric,
    /// A private key (RSA, ECC, Ed25519, ML-DSA, ML-KEM).
    Asymmetric(AsymmetricSpec),
    /// An HMAC key.
    Hmac(HmacAlgorithm),
}

/// Parses a KeySpec wire value into its kind; SM2 (China Regions only) is unsupported.
pub fn spec_kind(spec: &str) -> Result<SpecKind, KmsError> {
    use AsymmetricSpec::*;
    Ok(match spec {
        "SYMMETRIC_DEFAULT" => SpecKind::Symmetric,
        "RSA_2048" => SpecKind::Asymmetric(Rsa2048),
        "RSA_3072" => SpecKind::Asymmetric(Rsa3072),
        "RSA_4096" => SpecKind::Asymmetric(Rsa4096),
        "ECC_NIST_P256" => SpecKind::Asymmetric(EccNistP256),
        "ECC_NIST_P384" => SpecKind::Asymmetric(EccNistP384),
        "ECC_NIST_P521" => SpecKind::Asymmetric(EccNistP521),
        "ECC_SECG_P256K1" => SpecKind::Asymmetric(EccSecgP256k1),
        "ECC_NIST_EDWARDS25519" => SpecKind::Asymmetric(Ed25519),
        "ML_DSA_44" => SpecKind::Asymmetric(MlDsa44),
        "ML_DSA_65" => SpecKind::Asymmetric(MlDsa65),
        "ML_DSA_87" => SpecKind::Asymmetric(MlDsa87),
        "ML_KEM_512" => SpecKind::Asymmetric(MlKem512),
        "ML_KEM_768" => SpecKind::Asymmetric(MlKem768),
        "ML_KEM_1024" => SpecKind::Asymmetric(MlKem1024),
        "HMAC_224" => SpecKind::Hmac(HmacAlgorithm::Sha224),
        "HMAC_256" => SpecKind::Hmac(HmacAlgorithm::Sha256),
        "HMAC_384" => SpecKind::Hmac(HmacAlgorithm::Sha384),
        "HMAC_512" => SpecKind::Hmac(HmacAlgorithm::Sha512),
        other => {
            return Err(KmsError::new(
                ErrorCode::UnsupportedOperationException,
                format!(
                "kmsd does not support KeySpec {other} (SM2 keys exist only in AWS China Regions)"
            ),
            ))
        }
    })
}

/// The usages a spec allows (first one is the default where AWS has one).
pub fn allowed_usages(spec: &str) -> &'static [&'static str] {
    match spec {
        "SYMMETRIC_DEFAULT" => &["ENCRYPT_DECRYPT"],
        "RSA_2048" | "RSA_3072" | "RSA_4096" => &["ENCRYPT_DECRYPT", "SIGN_VERIFY"],
        "ECC_NIST_P256" | "ECC_NIST_P384" | "ECC_NIST_P521" => &["SIGN_VERIFY", "KEY_AGREEMENT"],
        "HMAC_224" | "HMAC_256" | "HMAC_384" | "HMAC_512" => &["GENERATE_VERIFY_MAC"],
        "ML_KEM_512" | "ML_KEM_768" | "ML_KEM_1024" => &["ENCAPSULATE_DECAPSULATE"],
        _ => &["SIGN_VERIFY"],
    }
}

/// Checks a spec/usage pair for CreateKey; `usage` None means "not given".
pub fn check_spec_usage(spec: &str, usage: Option<&str>) -> Result<String, KmsError> {
    let allowed = allowed_usages(spec);
    match usage {
        None if spec == "SYMMETRIC_DEFAULT" => Ok("ENCRYPT_DECRYPT".into()),
        None => Err(KmsError::new(
            ErrorCode::ValidationException,
            "You must specify a KeyUsage value for all KMS keys except for symmetric encryption keys.",
        )),
        Some(u) if allowed.contains(&u) => Ok(u.to_owned()),
        Some(u) => Err(KmsError::new(
            ErrorCode::ValidationException,
            format!("KeyUsage {u} is not compatible with KeySpec {spec}"),
        )),
    }
}

/// Encryption algorithms of a key (empty unless ENCRYPT_DECRYPT).
pub fn encryption_algorithms(spec: &str, usage: &str) -> Vec<String> {
    match (spec, usage) {
        ("SYMMETRIC_DEFAULT", _) => vec!["SYMMETRIC_DEFAULT".into()],
        (s, "ENCRYPT_DECRYPT") if s.starts_with("RSA_") => {
            vec!["RSAES_OAEP_SHA_1".into(), "RSAES_OAEP_SHA_256".into()]
        }
        _ => vec![],
    }
}

/// Signing algorithms of a key (empty unless SIGN_VERIFY).
pub fn signing_algorithms(spec: &str, usage: &str) -> Vec<&'static str> {
    if usage != "SIGN_VERIFY" {
        return vec![];
    }
    match spec {
        s if s.starts_with("RSA_") => vec![
            "RSASSA_PSS_SHA_256",
            "RSASSA_PSS_SHA_384",
            "RSASSA_PSS_SHA_512",
            "RSASSA_PKCS1_V1_5_SHA_256",
            "RSASSA_PKCS1_V1_5_SHA_384",
            "RSASSA_PKCS1_V1_5_SHA_512",
        ],
        "ECC_NIST_P256" | "ECC_SECG_P256K1" => vec!["ECDSA_SHA_256"],
        "ECC_NIST_P384" => vec!["ECDSA_SHA_384"],
        "ECC_NIST_P521" => vec!["ECDSA_SHA_512"],
        "ECC_NIST_EDWARDS25519" => vec!["ED25519_SHA_512", "ED25519_PH_SHA_512"],
        "ML_DSA_44" | "ML_DSA_65" | "ML_DSA_87" => vec!["ML_DSA_SHAKE_256"],
        _ => vec![],
    }
}

/// MAC algorithms of a key.
pub fn mac_algorithms(spec: &str) -> Vec<String> {
    match spec {
        "HMAC_224" => vec!["HMAC_SHA_224".into()],
        "HMAC_256" => vec!["HMAC_SHA_256".into()],
        "HMAC_384" => vec!["HMAC_SHA_384".into()],
        "HMAC_512" => vec!["HMAC_SHA_512".into()],
        _ => vec![],
    }
}

/// Key encapsulation algorithms of a key (ML-KEM keys: `ML_KEM`).
pub fn encapsulation_algorithms(usage: &str) -> Vec<String> {
    if usage == "ENCAPSULATE_DECAPSULATE" {
        vec!["ML_KEM".into()]
    } else {
        vec![]
    }
}

/// Key agreement algorithms of a key.
pub fn key_agreement_algorithms(usage: &str) -> Vec<String> {
    if usage == "KEY_AGREEMENT" {
        vec!["ECDH".into()]
    } else {
        vec![]
    }
}

/// The crypto layer's signing algorithm for a wire value.
pub fn signing_algorithm(alg: &str) -> Option<SigningAlgorithm> {
    use SigningAlgorithm::*;
    Some(match alg {
        "RSASSA_PSS_SHA_256" => RsaPssSha256,
        "RSASSA_PSS_SHA_384" => RsaPssSha384,
        "RSASSA_PSS_SHA_512" => RsaPssSha512,
        "RSASSA_PKCS1_V1_5_SHA_256" => RsaPkcs1Sha256,
        "RSASSA_PKCS1_V1_5_SHA_384" => RsaPkcs1Sha384,
        "RSASSA_PKCS1_V1_5_SHA_512" => RsaPkcs1Sha512,
        "ECDSA_SHA_256" => EcdsaSha256,
        "ECDSA_SHA_384" => EcdsaSha384,
        "ECDSA_SHA_512" => EcdsaSha512,
        "ED25519_SHA_512" => Ed25519Sha512,
        "ED25519_PH_SHA_512" => Ed25519PhSha512,
        "ML_DSA_SHAKE_256" => MlDsaShake256,
        _ => return None,
    })
}

/// Data key pair specs kmsd can generate.
pub fn data_key_pair_spec(spec: &str) -> Result<AsymmetricSpec, KmsError> {
    match spec_kind(spec)? {
        SpecKind::Asymmetric(s)
            if !matches!(
                s,
                AsymmetricSpec::MlDsa44 | AsymmetricSpec::MlDsa65 | AsymmetricSpec::MlDsa87
            ) =>
        {
            Ok(s)
        }
        _ => Err(KmsError::new(
            ErrorCode::ValidationException,
            format!("{spec} is not a data key pair spec"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_matches_aws() {
        assert_eq!(
            check_spec_usage("SYMMETRIC_DEFAULT", None).unwrap(),
            "ENCRYPT_DECRYPT"
        );
        assert!(check_spec_usage("RSA_2048", None).is_err());
        assert!(check_spec_usage("RSA_2048", Some("KEY_AGREEMENT")).is_err());
        assert!(check_spec_usage("ECC_SECG_P256K1", Some("KEY_AGREEMENT")).is_err());
        assert!(check_spec_usage("ECC_NIST_P384", Some("KEY_AGREEMENT")).is_ok());
        assert!(check_spec_usage("HMAC_256", Some("GENERATE_VERIFY_MAC")).is_ok());
        assert!(check_spec_usage("HMAC_256", Some("SIGN_VERIFY")).is_err());
        for spec in ["ML_KEM_512", "ML_KEM_768", "ML_KEM_1024"] {
            assert!(matches!(spec_kind(spec), Ok(SpecKind::Asymmetric(_))));
            assert!(check_spec_usage(spec, Some("ENCAPSULATE_DECAPSULATE")).is_ok());
            assert!(check_spec_usage(spec, Some("SIGN_VERIFY")).is_err());
            assert!(check_spec_usage(spec, Some("ENCRYPT_DECRYPT")).is_err());
            assert!(check_spec_usage(spec, None).is_err());
            assert!(signing_algorithms(spec, "ENCAPSULATE_DECAPSULATE").is_empty());
            // AWS's DataKeyPairSpec has the ML-KEM specs too.
            assert!(data_key_pair_spec(spec).is_ok());
        }
        for spec in ["ML_DSA_65", "RSA_2048", "ECC_NIST_P256"] {
            assert!(check_spec_usage(spec, Some("ENCAPSULATE_DECAPSULATE")).is_err());
        }
        assert_eq!(
            encapsulation_algorithms("ENCAPSULATE_DECAPSULATE"),
            vec!["ML_KEM".to_owned()]
        );
        assert!(encapsulation_algorithms("SIGN_VERIFY").is_empty());
        assert_eq!(
            spec_kind("SM2").unwrap_err().code,
            ErrorCode::UnsupportedOperationException
        );
        assert_eq!(signing_algorithms("RSA_4096", "SIGN_VERIFY").len(), 6);
        assert!(signing_algorithms("RSA_4096", "ENCRYPT_DECRYPT").is_empty());
        for a in signing_algorithms("RSA_2048", "SIGN_VERIFY") {
            assert!(signing_algorithm(a).is_some());
        }
    }
}
