//! ML-KEM (FIPS 203) for the KMS key specs ML_KEM_512, ML_KEM_768 and ML_KEM_1024.
//!
//! Private keys are PKCS#8 in seed form (the 64-byte seed d || z, as AWS KMS returns ML-KEM data
//! key pairs) and public keys DER `SubjectPublicKeyInfo` with the NIST ML-KEM OIDs (RFC 9935),
//! both made and read by AWS-LC; encapsulation and decapsulation run through aws-lc-rs.

use aws_lc_rs::kem::{self, Ciphertext, DecapsulationKey, EncapsulationKey};
use x509_parser::prelude::FromDer as _;
use x509_parser::x509::SubjectPublicKeyInfo;
use zeroize::Zeroizing;

use crate::asymmetric::AsymmetricSpec;
use crate::aws_lc_ffi::{self, MlKemNid};
use crate::{CryptoError, SecretBytes};

/// Length of an ML-KEM shared secret.
pub const SHARED_SECRET_LEN: usize = 32;

/// What differs between the three parameter sets.
struct Params {
    nid: MlKemNid,
    algorithm: &'static kem::Algorithm,
    /// id-alg-ml-kem-512/768/1024 (NIST CSOR 2.16.840.1.101.3.4.4.x).
    oid: &'static str,
    ciphertext_len: usize,
}

fn params(spec: AsymmetricSpec) -> Result<Params, CryptoError> {
    Ok(match spec {
        AsymmetricSpec::MlKem512 => Params {
            nid: MlKemNid::MlKem512,
            algorithm: &kem::ML_KEM_512,
            oid: "2.16.840.1.101.3.4.4.1",
            ciphertext_len: 768,
        },
        AsymmetricSpec::MlKem768 => Params {
            nid: MlKemNid::MlKem768,
            algorithm: &kem::ML_KEM_768,
            oid: "2.16.840.1.101.3.4.4.2",
            ciphertext_len: 1088,
        },
        AsymmetricSpec::MlKem1024 => Params {
            nid: MlKemNid::MlKem1024,
            algorithm: &kem::ML_KEM_1024,
            oid: "2.16.840.1.101.3.4.4.3",
            ciphertext_len: 1568,
        },
        _ => {
            return Err(CryptoError::InvalidInput(
                "key encapsulation needs an ML_KEM_512, ML_KEM_768 or ML_KEM_1024 key",
            ))
        }
    })
}

/// Whether `spec` is an ML-KEM spec.
pub fn is_ml_kem(spec: AsymmetricSpec) -> bool {
    params(spec).is_ok()
}

/// Ciphertext length of `spec` (768, 1088 or 1568 bytes); `None` for a non-ML-KEM spec.
pub fn ciphertext_len(spec: AsymmetricSpec) -> Option<usize> {
    params(spec).ok().map(|p| p.ciphertext_len)
}

/// Generates an ML-KEM key pair of `spec`; returns its PKCS#8 (seed form) private key.
pub(crate) fn generate(spec: AsymmetricSpec) -> Result<SecretBytes, CryptoError> {
    aws_lc_ffi::ml_kem_generate(params(spec)?.nid)
}

/// The DER SPKI of the PKCS#8 ML-KEM private key `pkcs8` of `spec`.
pub(crate) fn public_key_spki(spec: AsymmetricSpec, pkcs8: &[u8]) -> Result<Vec<u8>, CryptoError> {
    aws_lc_ffi::ml_kem_parse(params(spec)?.nid, pkcs8).map(|(_, spki)| spki)
}

/// The raw encapsulation key inside an ML-KEM SPKI of `p` (no parameters, no unused bits).
fn encapsulation_key(p: &Params, spki: &[u8]) -> Result<EncapsulationKey, CryptoError> {
    let (rest, info) = SubjectPublicKeyInfo::from_der(spki).map_err(|_| CryptoError::InvalidKey)?;
    if !rest.is_empty()
        || info.algorithm.algorithm.to_id_string() != p.oid
        || info.algorithm.parameters.is_some()
        || info.subject_public_key.unused_bits != 0
    {
        return Err(CryptoError::InvalidKey);
    }
    EncapsulationKey::new(p.algorithm, &info.subject_public_key.data)
        .map_err(|_| CryptoError::InvalidKey)
}

/// Encapsulates a fresh shared secret to the ML-KEM public key `spki` of `spec`: returns
/// (ciphertext, 32-byte shared secret).
pub fn encapsulate(
    spec: AsymmetricSpec,
    spki: &[u8],
) -> Result<(Vec<u8>, SecretBytes), CryptoError> {
    let p = params(spec)?;
    let key = encapsulation_key(&p, spki)?;
    let (ciphertext, secret) = key.encapsulate().map_err(|_| CryptoError::Primitive)?;
    Ok((
        ciphertext.as_ref().to_vec(),
        Zeroizing::new(secret.as_ref().to_vec()),
    ))
}

/// Decapsulates `ciphertext` with the PKCS#8 ML-KEM private key of `spec`.
///
/// A ciphertext of the wrong length is [`CryptoError::Decrypt`]; any other ciphertext yields a
/// 32-byte secret (FIPS 203 implicit rejection: a ciphertext made for another key or altered
/// gives a pseudo-random secret, not an error).
pub fn decapsulate(
    spec: AsymmetricSpec,
    pkcs8: &[u8],
    ciphertext: &[u8],
) -> Result<SecretBytes, CryptoError> {
    let p = params(spec)?;
    if ciphertext.len() != p.ciphertext_len {
        return Err(CryptoError::Decrypt);
    }
    let (dk, _) = aws_lc_ffi::ml_kem_parse(p.nid, pkcs8)?;
    let key = DecapsulationKey::new(p.algorithm, &dk).map_err(|_| CryptoError::InvalidKey)?;
    let secret = key
        .decapsulate(Ciphertext::from(ciphertext))
        .map_err(|_| CryptoError::Primitive)?;
    Ok(Zeroizing::new(secret.as_ref().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asymmetric::{generate_private_key, public_key_spki as spki_of};

    const SPECS: [(AsymmetricSpec, usize, usize); 3] = [
        (AsymmetricSpec::MlKem512, 800, 768),
        (AsymmetricSpec::MlKem768, 1184, 1088),
        (AsymmetricSpec::MlKem1024, 1568, 1568),
    ];

    #[test]
    fn round_trip_and_encodings() {
        for (spec, ek_len, ct_len) in SPECS {
            let pkcs8 = generate_private_key(spec).unwrap();
            // PKCS#8 seed form: SEQUENCE { 0, AlgorithmIdentifier, OCTET STRING { [0] 64 bytes } },
            // 86 bytes whatever the level (as AWS documents for ML-KEM data key pairs).
            assert_eq!(pkcs8.len(), 86, "{spec:?}");
            assert_eq!(&pkcs8[pkcs8.len() - 66..pkcs8.len() - 64], &[0x80, 0x40]);
            let spki = spki_of(spec, &pkcs8).unwrap();
            let (_, info) = SubjectPublicKeyInfo::from_der(&spki).unwrap();
            assert_eq!(
                info.algorithm.algorithm.to_id_string(),
                params(spec).unwrap().oid
            );
            assert_eq!(info.subject_public_key.data.len(), ek_len);
            assert_eq!(ciphertext_len(spec), Some(ct_len));

            let (ct, secret) = encapsulate(spec, &spki).unwrap();
            assert_eq!(ct.len(), ct_len);
            assert_eq!(secret.len(), SHARED_SECRET_LEN);
            assert_eq!(*decapsulate(spec, &pkcs8, &ct).unwrap(), *secret);
            // Implicit rejection: an altered ciphertext gives another secret, not an error.
            let mut bad = ct.clone();
            bad[0] ^= 1;
            let other = decapsulate(spec, &pkcs8, &bad).unwrap();
            assert_eq!(other.len(), SHARED_SECRET_LEN);
            assert_ne!(*other, *secret);
            // A ciphertext of the wrong length is refused.
            assert_eq!(
                decapsulate(spec, &pkcs8, &ct[1..]),
                Err(CryptoError::Decrypt)
            );
            assert_eq!(decapsulate(spec, &pkcs8, &[]), Err(CryptoError::Decrypt));
            // The raw key is not an SPKI; garbage is not a private key.
            assert_eq!(
                encapsulate(spec, &info.subject_public_key.data).map(|_| ()),
                Err(CryptoError::InvalidKey)
            );
            assert_eq!(
                decapsulate(spec, b"garbage", &ct),
                Err(CryptoError::InvalidKey)
            );
        }
    }

    #[test]
    fn levels_do_not_mix() {
        let k512 = generate_private_key(AsymmetricSpec::MlKem512).unwrap();
        let spki512 = spki_of(AsymmetricSpec::MlKem512, &k512).unwrap();
        let k768 = generate_private_key(AsymmetricSpec::MlKem768).unwrap();
        assert_eq!(
            spki_of(AsymmetricSpec::MlKem768, &k512),
            Err(CryptoError::InvalidKey)
        );
        assert_eq!(
            encapsulate(AsymmetricSpec::MlKem768, &spki512).map(|_| ()),
            Err(CryptoError::InvalidKey)
        );
        let (ct768, _) = encapsulate(
            AsymmetricSpec::MlKem768,
            &spki_of(AsymmetricSpec::MlKem768, &k768).unwrap(),
        )
        .unwrap();
        assert_eq!(
            decapsulate(AsymmetricSpec::MlKem1024, &k768, &[0u8; 1568]),
            Err(CryptoError::InvalidKey)
        );
        assert_eq!(
            decapsulate(AsymmetricSpec::MlKem512, &k768, &ct768),
            Err(CryptoError::Decrypt)
        );
        // Not an ML-KEM spec, not an ML-KEM key.
        assert!(matches!(
            encapsulate(AsymmetricSpec::EccNistP256, &spki512),
            Err(CryptoError::InvalidInput(_))
        ));
        let ec = generate_private_key(AsymmetricSpec::EccNistP256).unwrap();
        assert_eq!(
            decapsulate(AsymmetricSpec::MlKem512, &ec, &[0u8; 768]),
            Err(CryptoError::InvalidKey)
        );
        assert!(!is_ml_kem(AsymmetricSpec::MlDsa44));
    }
}
