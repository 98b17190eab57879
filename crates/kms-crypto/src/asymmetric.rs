//! Asymmetric key pairs (RSA, ECDSA, Ed25519, ML-DSA, ML-KEM), RSA-OAEP, ECDH and HMAC for the
//! KMS key specs, through aws-lc-rs (and, for Ed25519ph, ML-DSA external mu and ML-KEM key
//! encoding, through AWS-LC functions aws-lc-rs does not expose: see `aws_lc_ffi`).
//!
//! Private keys travel as PKCS#8 v1 DER (RFC 5958 `PrivateKeyInfo`) and public keys as DER
//! `SubjectPublicKeyInfo` (RFC 5280). Private keys, HMAC keys, shared secrets and decrypted
//! plaintext are returned as [`SecretBytes`]. ML-KEM encapsulation is in [`crate::kem`].

use aws_lc_rs::encoding::{AsBigEndian as _, AsDer};
use aws_lc_rs::signature::{
    EcdsaKeyPair, EcdsaSigningAlgorithm, Ed25519KeyPair, KeyPair as _, ParsedPublicKey,
    PqdsaKeyPair, PqdsaSigningAlgorithm, RsaEncoding, VerificationAlgorithm,
};
use aws_lc_rs::{agreement, digest, hmac, rand, rsa, signature};
use zeroize::Zeroizing;

use crate::aws_lc_ffi;
use crate::{CryptoError, SecretBytes};

/// Key specs with private keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsymmetricSpec {
    /// RSA with a 2048-bit modulus.
    Rsa2048,
    /// RSA with a 3072-bit modulus.
    Rsa3072,
    /// RSA with a 4096-bit modulus.
    Rsa4096,
    /// ECC on NIST P-256 (secp256r1).
    EccNistP256,
    /// ECC on NIST P-384 (secp384r1).
    EccNistP384,
    /// ECC on NIST P-521 (secp521r1).
    EccNistP521,
    /// ECC on SECG secp256k1.
    EccSecgP256k1,
    /// Ed25519 (RFC 8032).
    Ed25519,
    /// ML-DSA-44 (FIPS 204).
    MlDsa44,
    /// ML-DSA-65 (FIPS 204).
    MlDsa65,
    /// ML-DSA-87 (FIPS 204).
    MlDsa87,
    /// ML-KEM-512 (FIPS 203): key encapsulation only.
    MlKem512,
    /// ML-KEM-768 (FIPS 203): key encapsulation only.
    MlKem768,
    /// ML-KEM-1024 (FIPS 203): key encapsulation only.
    MlKem1024,
}

/// Signing algorithms (KMS SigningAlgorithmSpec).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlgorithm {
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt.
    RsaPssSha256,
    /// RSASSA-PSS with SHA-384, MGF1-SHA-384 and a 48-byte salt.
    RsaPssSha384,
    /// RSASSA-PSS with SHA-512, MGF1-SHA-512 and a 64-byte salt.
    RsaPssSha512,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RsaPkcs1Sha256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RsaPkcs1Sha384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RsaPkcs1Sha512,
    /// ECDSA with SHA-256 (P-256 or secp256k1), DER-encoded signature.
    EcdsaSha256,
    /// ECDSA with SHA-384 (P-384), DER-encoded signature.
    EcdsaSha384,
    /// ECDSA with SHA-512 (P-521), DER-encoded signature.
    EcdsaSha512,
    /// Pure Ed25519 (RFC 8032) over the raw message.
    Ed25519Sha512,
    /// Ed25519ph (RFC 8032 HashEdDSA: Ed25519 over the SHA-512 of its input, empty context).
    /// KMS gives it a 64-byte DIGEST as input and still applies the SHA-512 prehash to it.
    Ed25519PhSha512,
    /// Pure ML-DSA (FIPS 204) with an empty context, over a message or an external mu.
    MlDsaShake256,
}

/// What is signed: the message (KMS MessageType RAW), its digest (DIGEST), or an ML-DSA mu (EXTERNAL_MU).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInput<'a> {
    /// The message itself; the algorithm hashes it.
    Raw(&'a [u8]),
    /// A digest of the message computed by the caller with the algorithm's hash.
    Digest(&'a [u8]),
    /// An ML-DSA message representative mu (FIPS 204 §6.2, 64 bytes:
    /// SHAKE256(SHAKE256(pk, 64) || 0x00 || 0x00 || M, 64) for an empty context).
    ExternalMu(&'a [u8]),
}

/// Hash (and MGF1 hash) of RSAES-OAEP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OaepHash {
    /// SHA-1 (KMS RSAES_OAEP_SHA_1).
    Sha1,
    /// SHA-256 (KMS RSAES_OAEP_SHA_256).
    Sha256,
}

/// HMAC algorithms (KMS HMAC_224 .. HMAC_512 key specs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HmacAlgorithm {
    /// HMAC-SHA-224.
    Sha224,
    /// HMAC-SHA-256.
    Sha256,
    /// HMAC-SHA-384.
    Sha384,
    /// HMAC-SHA-512.
    Sha512,
}

const RSA_ALGORITHMS: &[SigningAlgorithm] = &[
    SigningAlgorithm::RsaPssSha256,
    SigningAlgorithm::RsaPssSha384,
    SigningAlgorithm::RsaPssSha512,
    SigningAlgorithm::RsaPkcs1Sha256,
    SigningAlgorithm::RsaPkcs1Sha384,
    SigningAlgorithm::RsaPkcs1Sha512,
];

impl AsymmetricSpec {
    /// Every asymmetric key spec.
    pub const ALL: [AsymmetricSpec; 14] = [
        Self::Rsa2048,
        Self::Rsa3072,
        Self::Rsa4096,
        Self::EccNistP256,
        Self::EccNistP384,
        Self::EccNistP521,
        Self::EccSecgP256k1,
        Self::Ed25519,
        Self::MlDsa44,
        Self::MlDsa65,
        Self::MlDsa87,
        Self::MlKem512,
        Self::MlKem768,
        Self::MlKem1024,
    ];

    /// The RSA modulus size in bits, or `None` for a non-RSA spec.
    pub fn rsa_bits(self) -> Option<usize> {
        match self {
            Self::Rsa2048 => Some(2048),
            Self::Rsa3072 => Some(3072),
            Self::Rsa4096 => Some(4096),
            _ => None,
        }
    }

    /// The signing algorithms valid for this key spec (as in KMS; none for ML-KEM).
    pub fn signing_algorithms(self) -> &'static [SigningAlgorithm] {
        match self {
            Self::Rsa2048 | Self::Rsa3072 | Self::Rsa4096 => RSA_ALGORITHMS,
            Self::EccNistP256 | Self::EccSecgP256k1 => &[SigningAlgorithm::EcdsaSha256],
            Self::EccNistP384 => &[SigningAlgorithm::EcdsaSha384],
            Self::EccNistP521 => &[SigningAlgorithm::EcdsaSha512],
            Self::Ed25519 => &[
                SigningAlgorithm::Ed25519Sha512,
                SigningAlgorithm::Ed25519PhSha512,
            ],
            Self::MlDsa44 | Self::MlDsa65 | Self::MlDsa87 => &[SigningAlgorithm::MlDsaShake256],
            Self::MlKem512 | Self::MlKem768 | Self::MlKem1024 => &[],
        }
    }

    fn rsa_key_size(self) -> Option<rsa::KeySize> {
        match self {
            Self::Rsa2048 => Some(rsa::KeySize::Rsa2048),
            Self::Rsa3072 => Some(rsa::KeySize::Rsa3072),
            Self::Rsa4096 => Some(rsa::KeySize::Rsa4096),
            _ => None,
        }
    }

    fn ecdsa(self) -> Option<(&'static EcdsaSigningAlgorithm, &'static ParsedAlg)> {
        match self {
            Self::EccNistP256 => Some((
                &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                &signature::ECDSA_P256_SHA256_ASN1,
            )),
            Self::EccNistP384 => Some((
                &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
                &signature::ECDSA_P384_SHA384_ASN1,
            )),
            Self::EccNistP521 => Some((
                &signature::ECDSA_P521_SHA512_ASN1_SIGNING,
                &signature::ECDSA_P521_SHA512_ASN1,
            )),
            Self::EccSecgP256k1 => Some((
                &signature::ECDSA_P256K1_SHA256_ASN1_SIGNING,
                &signature::ECDSA_P256K1_SHA256_ASN1,
            )),
            _ => None,
        }
    }

    fn ml_dsa(self) -> Option<&'static PqdsaSigningAlgorithm> {
        match self {
            Self::MlDsa44 => Some(&signature::ML_DSA_44_SIGNING),
            Self::MlDsa65 => Some(&signature::ML_DSA_65_SIGNING),
            Self::MlDsa87 => Some(&signature::ML_DSA_87_SIGNING),
            _ => None,
        }
    }

    fn ml_dsa_verification(self) -> Option<&'static ParsedAlg> {
        match self {
            Self::MlDsa44 => Some(&signature::ML_DSA_44),
            Self::MlDsa65 => Some(&signature::ML_DSA_65),
            Self::MlDsa87 => Some(&signature::ML_DSA_87),
            _ => None,
        }
    }

    fn ecdh(self) -> Option<&'static agreement::Algorithm> {
        match self {
            Self::EccNistP256 => Some(&agreement::ECDH_P256),
            Self::EccNistP384 => Some(&agreement::ECDH_P384),
            Self::EccNistP521 => Some(&agreement::ECDH_P521),
            _ => None,
        }
    }
}

/// Any aws-lc-rs verification algorithm.
type ParsedAlg = dyn VerificationAlgorithm;

impl SigningAlgorithm {
    /// Every signing algorithm.
    pub const ALL: [SigningAlgorithm; 12] = [
        Self::RsaPssSha256,
        Self::RsaPssSha384,
        Self::RsaPssSha512,
        Self::RsaPkcs1Sha256,
        Self::RsaPkcs1Sha384,
        Self::RsaPkcs1Sha512,
        Self::EcdsaSha256,
        Self::EcdsaSha384,
        Self::EcdsaSha512,
        Self::Ed25519Sha512,
        Self::Ed25519PhSha512,
        Self::MlDsaShake256,
    ];

    /// The SHA-2 hash applied to the message for RSA and ECDSA; `None` otherwise.
    fn sha2(self) -> Option<&'static digest::Algorithm> {
        match self {
            Self::RsaPssSha256 | Self::RsaPkcs1Sha256 | Self::EcdsaSha256 => Some(&digest::SHA256),
            Self::RsaPssSha384 | Self::RsaPkcs1Sha384 | Self::EcdsaSha384 => Some(&digest::SHA384),
            Self::RsaPssSha512 | Self::RsaPkcs1Sha512 | Self::EcdsaSha512 => Some(&digest::SHA512),
            Self::Ed25519Sha512 | Self::Ed25519PhSha512 | Self::MlDsaShake256 => None,
        }
    }

    fn rsa_encoding(self) -> Option<&'static dyn RsaEncoding> {
        match self {
            Self::RsaPssSha256 => Some(&signature::RSA_PSS_SHA256),
            Self::RsaPssSha384 => Some(&signature::RSA_PSS_SHA384),
            Self::RsaPssSha512 => Some(&signature::RSA_PSS_SHA512),
            Self::RsaPkcs1Sha256 => Some(&signature::RSA_PKCS1_SHA256),
            Self::RsaPkcs1Sha384 => Some(&signature::RSA_PKCS1_SHA384),
            Self::RsaPkcs1Sha512 => Some(&signature::RSA_PKCS1_SHA512),
            _ => None,
        }
    }

    fn rsa_verification(self) -> Option<&'static ParsedAlg> {
        match self {
            Self::RsaPssSha256 => Some(&signature::RSA_PSS_2048_8192_SHA256),
            Self::RsaPssSha384 => Some(&signature::RSA_PSS_2048_8192_SHA384),
            Self::RsaPssSha512 => Some(&signature::RSA_PSS_2048_8192_SHA512),
            Self::RsaPkcs1Sha256 => Some(&signature::RSA_PKCS1_2048_8192_SHA256),
            Self::RsaPkcs1Sha384 => Some(&signature::RSA_PKCS1_2048_8192_SHA384),
            Self::RsaPkcs1Sha512 => Some(&signature::RSA_PKCS1_2048_8192_SHA512),
            _ => None,
        }
    }
}

/// Generates a key pair for `spec` and returns its PKCS#8 v1 DER private key.
pub fn generate_private_key(spec: AsymmetricSpec) -> Result<SecretBytes, CryptoError> {
    if let Some(size) = spec.rsa_key_size() {
        let key = rsa::KeyPair::generate(size).map_err(|_| CryptoError::Primitive)?;
        let der = key.as_der().map_err(|_| CryptoError::Primitive)?;
        return Ok(Zeroizing::new(der.as_ref().to_vec()));
    }
    if let Some((alg, _)) = spec.ecdsa() {
        let key = EcdsaKeyPair::generate(alg).map_err(|_| CryptoError::Primitive)?;
        let doc = key.to_pkcs8v1().map_err(|_| CryptoError::Primitive)?;
        return Ok(Zeroizing::new(doc.as_ref().to_vec()));
    }
    if let Some(alg) = spec.ml_dsa() {
        let key = PqdsaKeyPair::generate(alg).map_err(|_| CryptoError::Primitive)?;
        let doc = key.to_pkcs8v1().map_err(|_| CryptoError::Primitive)?;
        return Ok(Zeroizing::new(doc.as_ref().to_vec()));
    }
    if crate::kem::is_ml_kem(spec) {
        return crate::kem::generate(spec);
    }
    // Only Ed25519 is left.
    let key = Ed25519KeyPair::generate().map_err(|_| CryptoError::Primitive)?;
    let doc = key.to_pkcs8v1().map_err(|_| CryptoError::Primitive)?;
    Ok(Zeroizing::new(doc.as_ref().to_vec()))
}

/// Loads an RSA signing key and checks that its modulus has the spec's size.
fn load_rsa(spec: AsymmetricSpec, pkcs8: &[u8]) -> Result<rsa::KeyPair, CryptoError> {
    let bits = spec.rsa_bits().ok_or(CryptoError::InvalidKey)?;
    let key = rsa::KeyPair::from_pkcs8(pkcs8).map_err(|_| CryptoError::InvalidKey)?;
    if key.public_modulus_len() * 8 != bits {
        return Err(CryptoError::InvalidKey);
    }
    Ok(key)
}

/// A signing key pair of one of the asymmetric specs, loaded from PKCS#8.
enum LoadedKey {
    Rsa(rsa::KeyPair),
    Ecdsa(EcdsaKeyPair),
    /// With the 64-byte private key (seed || public key) that AWS-LC's Ed25519ph takes.
    Ed25519(Ed25519KeyPair, Zeroizing<[u8; 64]>),
    /// With its PKCS#8, which AWS-LC's external-mu signing parses.
    MlDsa(PqdsaKeyPair, SecretBytes),
}

fn load_ed25519(pkcs8: &[u8]) -> Result<LoadedKey, CryptoError> {
    let key = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| CryptoError::InvalidKey)?;
    let seed = key
        .seed()
        .and_then(|s| s.as_be_bytes())
        .map_err(|_| CryptoError::InvalidKey)?;
    let (seed, public) = (seed.as_ref(), key.public_key().as_ref());
    if seed.len() != 32 || public.len() != 32 {
        return Err(CryptoError::InvalidKey);
    }
    let mut private = Zeroizing::new([0u8; 64]);
    private[..32].copy_from_slice(seed);
    private[32..].copy_from_slice(public);
    Ok(LoadedKey::Ed25519(key, private))
}

fn load(spec: AsymmetricSpec, pkcs8: &[u8]) -> Result<LoadedKey, CryptoError> {
    if crate::kem::is_ml_kem(spec) {
        return Err(CryptoError::InvalidInput(
            "ML-KEM keys encapsulate and decapsulate; they do not sign",
        ));
    }
    if spec.rsa_bits().is_some() {
        return load_rsa(spec, pkcs8).map(LoadedKey::Rsa);
    }
    if let Some((alg, _)) = spec.ecdsa() {
        return EcdsaKeyPair::from_pkcs8(alg, pkcs8)
            .map(LoadedKey::Ecdsa)
            .map_err(|_| CryptoError::InvalidKey);
    }
    if let Some(alg) = spec.ml_dsa() {
        return PqdsaKeyPair::from_pkcs8(alg, pkcs8)
            .map(|k| LoadedKey::MlDsa(k, Zeroizing::new(pkcs8.to_vec())))
            .map_err(|_| CryptoError::InvalidKey);
    }
    load_ed25519(pkcs8)
}

/// Returns the DER `SubjectPublicKeyInfo` of the PKCS#8 private key `pkcs8` of `spec`.
pub fn public_key_spki(spec: AsymmetricSpec, pkcs8: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if crate::kem::is_ml_kem(spec) {
        return crate::kem::public_key_spki(spec, pkcs8);
    }
    let der = match load(spec, pkcs8)? {
        LoadedKey::Rsa(k) => k.public_key().as_der(),
        LoadedKey::Ecdsa(k) => k.public_key().as_der(),
        LoadedKey::Ed25519(k, _) => k.public_key().as_der(),
        LoadedKey::MlDsa(k, _) => k.public_key().as_der(),
    }
    .map_err(|_| CryptoError::Primitive)?;
    Ok(der.as_ref().to_vec())
}

/// Digest length in bytes accepted by [`SignInput::Digest`] for `alg`; `None` if it takes no digest.
pub fn digest_len(alg: SigningAlgorithm) -> Option<usize> {
    match alg {
        SigningAlgorithm::Ed25519PhSha512 => Some(64),
        _ => alg.sha2().map(|d| d.output_len()),
    }
}

/// The input of a signature operation after validation.
enum Prepared<'a> {
    Raw(&'a [u8]),
    Digest(digest::Digest),
    /// The input of Ed25519ph, which it hashes with SHA-512 (for KMS: the caller's digest).
    Ed25519ph(&'a [u8]),
    /// An ML-DSA external mu.
    ExternalMu(&'a [u8; 64]),
}

/// Checks that `alg` fits `spec` and `input`, and imports a digest.
fn prepare<'a>(
    spec: AsymmetricSpec,
    alg: SigningAlgorithm,
    input: SignInput<'a>,
) -> Result<Prepared<'a>, CryptoError> {
    if !spec.signing_algorithms().contains(&alg) {
        return Err(CryptoError::InvalidInput(
            "the signing algorithm is not valid for the key spec",
        ));
    }
    match (alg, input) {
        (SigningAlgorithm::MlDsaShake256, SignInput::Raw(m)) => Ok(Prepared::Raw(m)),
        (SigningAlgorithm::MlDsaShake256, SignInput::ExternalMu(mu)) => mu
            .try_into()
            .map(Prepared::ExternalMu)
            .map_err(|_| CryptoError::InvalidInput("an external mu is 64 bytes")),
        (SigningAlgorithm::MlDsaShake256, SignInput::Digest(_)) => Err(CryptoError::InvalidInput(
            "ML-DSA signs a RAW message or an EXTERNAL_MU, not a DIGEST",
        )),
        (SigningAlgorithm::Ed25519Sha512, SignInput::Raw(m)) => Ok(Prepared::Raw(m)),
        (SigningAlgorithm::Ed25519Sha512, _) => Err(CryptoError::InvalidInput(
            "ED25519_SHA_512 signs only a RAW message",
        )),
        (SigningAlgorithm::Ed25519PhSha512, SignInput::Digest(d)) => {
            if d.len() != 64 {
                return Err(CryptoError::InvalidInput(
                    "the digest length does not match the signing algorithm",
                ));
            }
            Ok(Prepared::Ed25519ph(d))
        }
        (SigningAlgorithm::Ed25519PhSha512, _) => Err(CryptoError::InvalidInput(
            "ED25519_PH_SHA_512 signs only a SHA-512 DIGEST",
        )),
        (_, SignInput::ExternalMu(_)) => Err(CryptoError::InvalidInput(
            "EXTERNAL_MU is only valid with ML-DSA",
        )),
        (_, SignInput::Raw(m)) => Ok(Prepared::Raw(m)),
        (_, SignInput::Digest(d)) => {
            let hash = alg.sha2().ok_or(CryptoError::InvalidInput(
                "the signing algorithm takes no digest",
            ))?;
            digest::Digest::import_less_safe(d, hash)
                .map(Prepared::Digest)
                .map_err(|_| {
                    CryptoError::InvalidInput(
                        "the digest length does not match the signing algorithm",
                    )
                })
        }
    }
}

/// A private signing key of one asymmetric spec, parsed once from PKCS#8 (parsing an RSA key
/// costs about as much as a signature, so callers keep this with the key). aws-lc frees and
/// cleanses the key's memory on drop.
pub struct SigningKey {
    spec: AsymmetricSpec,
    key: LoadedKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Parses the PKCS#8 private key of `spec`.
    pub fn from_pkcs8(spec: AsymmetricSpec, pkcs8: &[u8]) -> Result<SigningKey, CryptoError> {
        Ok(SigningKey {
            spec,
            key: load(spec, pkcs8)?,
        })
    }

    /// Signs `input` under `alg`; returns the signature.
    pub fn sign(
        &self,
        alg: SigningAlgorithm,
        input: SignInput<'_>,
    ) -> Result<Vec<u8>, CryptoError> {
        let input = prepare(self.spec, alg, input)?;
        match &self.key {
            LoadedKey::Rsa(key) => {
                let encoding = alg.rsa_encoding().ok_or(CryptoError::InvalidInput(
                    "the signing algorithm is not valid for the key spec",
                ))?;
                let mut sig = vec![0u8; key.public_modulus_len()];
                match input {
                    Prepared::Raw(m) => key.sign(encoding, &rand::SystemRandom::new(), m, &mut sig),
                    Prepared::Digest(d) => key.sign_digest(encoding, &d, &mut sig),
                    Prepared::Ed25519ph(_) | Prepared::ExternalMu(_) => {
                        return Err(CryptoError::InvalidInput(
                            "the signing algorithm is not valid for the key spec",
                        ))
                    }
                }
                .map_err(|_| CryptoError::Primitive)?;
                Ok(sig)
            }
            LoadedKey::Ecdsa(key) => {
                let sig = match input {
                    Prepared::Raw(m) => key.sign(&rand::SystemRandom::new(), m),
                    Prepared::Digest(d) => key.sign_digest(&d),
                    Prepared::Ed25519ph(_) | Prepared::ExternalMu(_) => {
                        return Err(CryptoError::InvalidInput(
                            "the signing algorithm is not valid for the key spec",
                        ))
                    }
                }
                .map_err(|_| CryptoError::Primitive)?;
                Ok(sig.as_ref().to_vec())
            }
            LoadedKey::Ed25519(key, ph_private) => match input {
                Prepared::Raw(m) => key
                    .try_sign(m)
                    .map(|s| s.as_ref().to_vec())
                    .map_err(|_| CryptoError::Primitive),
                Prepared::Ed25519ph(m) => {
                    aws_lc_ffi::ed25519ph_sign(ph_private, m).map(|s| s.to_vec())
                }
                Prepared::Digest(_) | Prepared::ExternalMu(_) => Err(CryptoError::InvalidInput(
                    "ED25519_SHA_512 signs only a RAW message",
                )),
            },
            LoadedKey::MlDsa(key, pkcs8) => match input {
                Prepared::Raw(m) => {
                    let mut sig = vec![0u8; key.algorithm().signature_len()];
                    let n = key.sign(m, &mut sig).map_err(|_| CryptoError::Primitive)?;
                    sig.truncate(n);
                    Ok(sig)
                }
                Prepared::ExternalMu(mu) => {
                    aws_lc_ffi::ml_dsa_sign_external_mu(pkcs8, mu, key.algorithm().signature_len())
                }
                Prepared::Digest(_) | Prepared::Ed25519ph(_) => Err(CryptoError::InvalidInput(
                    "ML-DSA signs a RAW message or an EXTERNAL_MU, not a DIGEST",
                )),
            },
        }
    }
}

/// Signs `input` with the PKCS#8 private key of `spec` under `alg`; returns the signature.
/// (Parses the key each call: keep a [`SigningKey`] to sign repeatedly.)
pub fn sign(
    spec: AsymmetricSpec,
    pkcs8: &[u8],
    alg: SigningAlgorithm,
    input: SignInput<'_>,
) -> Result<Vec<u8>, CryptoError> {
    SigningKey::from_pkcs8(spec, pkcs8)?.sign(alg, input)
}

/// Parses the DER SPKI `spki` of `spec` for verification under `alg`.
///
/// The input must be exactly the canonical DER `SubjectPublicKeyInfo` (as made by
/// [`public_key_spki`] or OpenSSL): raw points, raw keys and PKCS#1 `RSAPublicKey` are rejected.
fn parse_verifying_key(
    spec: AsymmetricSpec,
    alg: SigningAlgorithm,
    spki: &[u8],
) -> Result<ParsedPublicKey, CryptoError> {
    let verification: &'static ParsedAlg = if let Some(bits) = spec.rsa_bits() {
        let public =
            rsa::PublicEncryptingKey::from_der(spki).map_err(|_| CryptoError::InvalidKey)?;
        if public.key_size_bits() != bits {
            return Err(CryptoError::InvalidKey);
        }
        alg.rsa_verification().ok_or(CryptoError::InvalidInput(
            "the signing algorithm is not valid for the key spec",
        ))?
    } else if let Some((_, verification)) = spec.ecdsa() {
        verification
    } else if let Some(verification) = spec.ml_dsa_verification() {
        verification
    } else {
        &signature::ED25519
    };
    let key = ParsedPublicKey::new(verification, spki).map_err(|_| CryptoError::InvalidKey)?;
    let canonical = key.as_der().map_err(|_| CryptoError::InvalidKey)?;
    if canonical.as_ref() != spki {
        return Err(CryptoError::InvalidKey);
    }
    Ok(key)
}

/// Verifies `signature` over `input` with the DER SPKI of `spec`; `Ok(false)` for a bad signature.
pub fn verify(
    spec: AsymmetricSpec,
    spki: &[u8],
    alg: SigningAlgorithm,
    input: SignInput<'_>,
    signature: &[u8],
) -> Result<bool, CryptoError> {
    let input = prepare(spec, alg, input)?;
    let key = parse_verifying_key(spec, alg, spki)?;
    let result = match input {
        Prepared::Raw(m) => key.verify_sig(m, signature),
        Prepared::Digest(d) => key.verify_digest_sig(&d, signature),
        Prepared::Ed25519ph(m) => {
            let public = ed25519_raw_public_key(spki)?;
            return Ok(aws_lc_ffi::ed25519ph_verify(&public, m, signature));
        }
        Prepared::ExternalMu(mu) => {
            return aws_lc_ffi::ml_dsa_verify_external_mu(spki, mu, signature)
        }
    };
    Ok(result.is_ok())
}

/// The raw 32-byte key in an Ed25519 SPKI (RFC 8410) already checked by [`parse_verifying_key`].
fn ed25519_raw_public_key(spki: &[u8]) -> Result<[u8; 32], CryptoError> {
    use x509_parser::prelude::FromDer as _;
    let (_, info) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki)
        .map_err(|_| CryptoError::InvalidKey)?;
    info.subject_public_key
        .data
        .as_ref()
        .try_into()
        .map_err(|_| CryptoError::InvalidKey)
}

fn oaep_algorithm(hash: OaepHash) -> &'static rsa::OaepAlgorithm {
    match hash {
        OaepHash::Sha1 => &rsa::OAEP_SHA1_MGF1SHA1,
        OaepHash::Sha256 => &rsa::OAEP_SHA256_MGF1SHA256,
    }
}

fn oaep_hash_len(hash: OaepHash) -> usize {
    match hash {
        OaepHash::Sha1 => 20,
        OaepHash::Sha256 => 32,
    }
}

/// Longest RSAES-OAEP plaintext for `spec` and `hash`; `None` for a non-RSA spec.
pub fn rsa_max_plaintext(spec: AsymmetricSpec, hash: OaepHash) -> Option<usize> {
    spec.rsa_bits()
        .map(|bits| bits / 8 - 2 * oaep_hash_len(hash) - 2)
}

/// Encrypts `plaintext` with RSAES-OAEP (MGF1 with the same hash, no label) under a DER SPKI.
pub fn rsa_oaep_encrypt(
    spki: &[u8],
    hash: OaepHash,
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let public = rsa::PublicEncryptingKey::from_der(spki).map_err(|_| CryptoError::InvalidKey)?;
    let key = rsa::OaepPublicEncryptingKey::new(public).map_err(|_| CryptoError::InvalidKey)?;
    let alg = oaep_algorithm(hash);
    if plaintext.len() > key.max_plaintext_size(alg) {
        return Err(CryptoError::InvalidInput(
            "the plaintext is too long for the RSA key and OAEP hash",
        ));
    }
    let mut out = vec![0u8; key.ciphertext_size()];
    let n = key
        .encrypt(alg, plaintext, &mut out, None)
        .map_err(|_| CryptoError::Primitive)?
        .len();
    out.truncate(n);
    Ok(out)
}

/// Decrypts an RSAES-OAEP `ciphertext` with a PKCS#8 RSA private key; `Decrypt` on any failure.
pub fn rsa_oaep_decrypt(
    pkcs8: &[u8],
    hash: OaepHash,
    ciphertext: &[u8],
) -> Result<SecretBytes, CryptoError> {
    let private =
        rsa::PrivateDecryptingKey::from_pkcs8(pkcs8).map_err(|_| CryptoError::InvalidKey)?;
    let key = rsa::OaepPrivateDecryptingKey::new(private).map_err(|_| CryptoError::InvalidKey)?;
    if ciphertext.len() != key.key_size_bytes() {
        return Err(CryptoError::Decrypt);
    }
    let mut out = Zeroizing::new(vec![0u8; key.min_output_size()]);
    let n = key
        .decrypt(oaep_algorithm(hash), ciphertext, &mut out, None)
        .map_err(|_| CryptoError::Decrypt)?
        .len();
    out.truncate(n);
    Ok(out)
}

/// ECDH (P-256/384/521) of a PKCS#8 private key with a peer DER SPKI; returns the raw x-coordinate.
pub fn ecdh(
    spec: AsymmetricSpec,
    pkcs8: &[u8],
    peer_spki: &[u8],
) -> Result<SecretBytes, CryptoError> {
    let alg = spec.ecdh().ok_or(CryptoError::InvalidInput(
        "key agreement needs an ECC_NIST_P256, P384 or P521 key",
    ))?;
    let private = agreement::PrivateKey::from_private_key_der(alg, pkcs8)
        .map_err(|_| CryptoError::InvalidKey)?;
    let peer =
        agreement::ParsedPublicKey::try_from(agreement::UnparsedPublicKey::new(alg, peer_spki))
            .map_err(|_| CryptoError::InvalidPeerKey)?;
    if peer.format() != agreement::ParsedPublicKeyFormat::X509 || peer.alg() != alg {
        return Err(CryptoError::InvalidPeerKey);
    }
    agreement::agree(&private, peer, CryptoError::InvalidPeerKey, |secret| {
        Ok(Zeroizing::new(secret.to_vec()))
    })
}

fn hmac_algorithm(alg: HmacAlgorithm) -> hmac::Algorithm {
    match alg {
        HmacAlgorithm::Sha224 => hmac::HMAC_SHA224,
        HmacAlgorithm::Sha256 => hmac::HMAC_SHA256,
        HmacAlgorithm::Sha384 => hmac::HMAC_SHA384,
        HmacAlgorithm::Sha512 => hmac::HMAC_SHA512,
    }
}

/// Key length in bytes of the KMS HMAC key spec (HMAC_224 .. HMAC_512).
pub fn hmac_key_len(alg: HmacAlgorithm) -> usize {
    match alg {
        HmacAlgorithm::Sha224 => 28,
        HmacAlgorithm::Sha256 => 32,
        HmacAlgorithm::Sha384 => 48,
        HmacAlgorithm::Sha512 => 64,
    }
}

/// Generates a random HMAC key of [`hmac_key_len`] bytes.
pub fn hmac_generate_key(alg: HmacAlgorithm) -> Result<SecretBytes, CryptoError> {
    crate::random_bytes(hmac_key_len(alg))
}

/// HMAC of `message` under `key`.
pub fn hmac_sign(alg: HmacAlgorithm, key: &[u8], message: &[u8]) -> Vec<u8> {
    let key = hmac::Key::new(hmac_algorithm(alg), key);
    hmac::sign(&key, message).as_ref().to_vec()
}

/// Checks `mac` against the HMAC of `message` in constant time (a truncated MAC fails).
pub fn hmac_verify(alg: HmacAlgorithm, key: &[u8], message: &[u8], mac: &[u8]) -> bool {
    let key = hmac::Key::new(hmac_algorithm(alg), key);
    hmac::verify(&key, message, mac).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &[u8] = b"kmsd asymmetric signing test message";

    fn hash(alg: SigningAlgorithm, m: &[u8]) -> Vec<u8> {
        let d = alg.sha2().unwrap();
        digest::digest(d, m).as_ref().to_vec()
    }

    fn is_invalid_input<T: std::fmt::Debug>(r: Result<T, CryptoError>) -> bool {
        matches!(r, Err(CryptoError::InvalidInput(_)))
    }

    /// The pure Ed25519 signature of `m` (to tell it apart from Ed25519ph).
    #[allow(non_snake_case)]
    fn Ed25519Sha512_of(spec: AsymmetricSpec, pkcs8: &[u8], m: &[u8]) -> Vec<u8> {
        sign(
            spec,
            pkcs8,
            SigningAlgorithm::Ed25519Sha512,
            SignInput::Raw(m),
        )
        .unwrap()
    }

    /// Signs and verifies with every algorithm `spec` allows, in every allowed mode.
    fn exercise_signing(spec: AsymmetricSpec, pkcs8: &[u8], spki: &[u8]) {
        let tampered = b"kmsd asymmetric signing test messagE";
        for alg in SigningAlgorithm::ALL {
            if !spec.signing_algorithms().contains(&alg) {
                assert!(
                    is_invalid_input(sign(spec, pkcs8, alg, SignInput::Raw(MESSAGE))),
                    "{spec:?} {alg:?}"
                );
                assert!(is_invalid_input(verify(
                    spec,
                    spki,
                    alg,
                    SignInput::Raw(MESSAGE),
                    b"sig"
                )));
                continue;
            }
            match alg {
                SigningAlgorithm::Ed25519PhSha512 => {
                    let d = digest::digest(&digest::SHA512, MESSAGE);
                    let d = d.as_ref();
                    let sig = sign(spec, pkcs8, alg, SignInput::Digest(d)).unwrap();
                    assert_eq!(sig.len(), 64);
                    assert!(verify(spec, spki, alg, SignInput::Digest(d), &sig).unwrap());
                    // Not a pure Ed25519 signature of the digest or of the message.
                    let pure = Ed25519Sha512_of(spec, pkcs8, d);
                    assert_ne!(sig, pure);
                    let td = digest::digest(&digest::SHA512, tampered);
                    assert!(
                        !verify(spec, spki, alg, SignInput::Digest(td.as_ref()), &sig).unwrap()
                    );
                    let mut bad = sig.clone();
                    bad[5] ^= 1;
                    assert!(!verify(spec, spki, alg, SignInput::Digest(d), &bad).unwrap());
                    assert!(!verify(spec, spki, alg, SignInput::Digest(d), &sig[1..]).unwrap());
                    assert!(!verify(spec, spki, alg, SignInput::Digest(d), b"").unwrap());
                    assert!(is_invalid_input(verify(
                        spec,
                        spki,
                        alg,
                        SignInput::Raw(MESSAGE),
                        &sig
                    )));
                    assert!(is_invalid_input(sign(
                        spec,
                        pkcs8,
                        alg,
                        SignInput::Raw(MESSAGE)
                    )));
                    assert!(is_invalid_input(sign(
                        spec,
                        pkcs8,
                        alg,
                        SignInput::Digest(&[0u8; 32])
                    )));
                }
                SigningAlgorithm::Ed25519Sha512 | SigningAlgorithm::MlDsaShake256 => {
                    let sig = sign(spec, pkcs8, alg, SignInput::Raw(MESSAGE)).unwrap();
                    assert!(verify(spec, spki, alg, SignInput::Raw(MESSAGE), &sig).unwrap());
                    assert!(!verify(spec, spki, alg, SignInput::Raw(tampered), &sig).unwrap());
                    let mut bad = sig.clone();
                    bad[3] ^= 1;
                    assert!(!verify(spec, spki, alg, SignInput::Raw(MESSAGE), &bad).unwrap());
                    assert!(!verify(spec, spki, alg, SignInput::Raw(MESSAGE), &sig[1..]).unwrap());
                    let d = digest::digest(&digest::SHA512, MESSAGE);
                    assert!(is_invalid_input(sign(
                        spec,
                        pkcs8,
                        alg,
                        SignInput::Digest(d.as_ref())
                    )));
                    assert!(is_invalid_input(verify(
                        spec,
                        spki,
                        alg,
                        SignInput::Digest(d.as_ref()),
                        &sig
                    )));
                    let mu = [7u8; 64];
                    if alg == SigningAlgorithm::MlDsaShake256 {
                        let len = spec.ml_dsa().unwrap().signature_len();
                        assert_eq!(sig.len(), len);
                        let mu_sig = sign(spec, pkcs8, alg, SignInput::ExternalMu(&mu)).unwrap();
                        assert_eq!(mu_sig.len(), len);
                        let input = SignInput::ExternalMu(&mu);
                        assert!(verify(spec, spki, alg, input, &mu_sig).unwrap());
                        // Signed over another mu, or altered: invalid.
                        assert!(!verify(spec, spki, alg, input, &sig).unwrap());
                        let mut bad = mu_sig.clone();
                        bad[10] ^= 1;
                        assert!(!verify(spec, spki, alg, input, &bad).unwrap());
                        assert!(!verify(spec, spki, alg, input, &mu_sig[1..]).unwrap());
                        let other = SignInput::ExternalMu(&[8u8; 64]);
                        assert!(!verify(spec, spki, alg, other, &mu_sig).unwrap());
                        // A mu is 64 bytes.
                        assert!(is_invalid_input(sign(
                            spec,
                            pkcs8,
                            alg,
                            SignInput::ExternalMu(&mu[1..])
                        )));
                        assert!(is_invalid_input(verify(
                            spec,
                            spki,
                            alg,
                            SignInput::ExternalMu(&[0u8; 65]),
                            &mu_sig
                        )));
                    } else {
                        assert_eq!(sig.len(), 64);
                        assert!(is_invalid_input(sign(
                            spec,
                            pkcs8,
                            alg,
                            SignInput::ExternalMu(&mu)
                        )));
                    }
                }
                _ => {
                    let d = hash(alg, MESSAGE);
                    assert_eq!(digest_len(alg), Some(d.len()));
                    let raw_sig = sign(spec, pkcs8, alg, SignInput::Raw(MESSAGE)).unwrap();
                    let digest_sig = sign(spec, pkcs8, alg, SignInput::Digest(&d)).unwrap();
                    for sig in [&raw_sig, &digest_sig] {
                        if let Some(bits) = spec.rsa_bits() {
                            assert_eq!(sig.len(), bits / 8);
                        } else {
                            assert_eq!(sig[0], 0x30, "ECDSA signatures are DER SEQUENCEs");
                        }
                        assert!(verify(spec, spki, alg, SignInput::Raw(MESSAGE), sig).unwrap());
                        assert!(verify(spec, spki, alg, SignInput::Digest(&d), sig).unwrap());
                        assert!(!verify(spec, spki, alg, SignInput::Raw(tampered), sig).unwrap());
                        let td = hash(alg, tampered);
                        assert!(!verify(spec, spki, alg, SignInput::Digest(&td), sig).unwrap());
                        let mut bad = sig.clone();
                        let last = bad.len() - 1;
                        bad[last] ^= 1;
                        assert!(!verify(spec, spki, alg, SignInput::Raw(MESSAGE), &bad).unwrap());
                        assert!(!verify(spec, spki, alg, SignInput::Raw(MESSAGE), b"").unwrap());
                    }
                    // A digest of the wrong length, or an external mu, is refused.
                    assert!(is_invalid_input(sign(
                        spec,
                        pkcs8,
                        alg,
                        SignInput::Digest(&d[1..])
                    )));
                    assert!(is_invalid_input(verify(
                        spec,
                        spki,
                        alg,
                        SignInput::Digest(&d[1..]),
                        &raw_sig
                    )));
                    assert!(is_invalid_input(sign(
                        spec,
                        pkcs8,
                        alg,
                        SignInput::ExternalMu(&[0u8; 64])
                    )));
                }
            }
        }
        // Garbage keys are rejected as keys, not as bad signatures.
        let alg = spec.signing_algorithms()[0];
        assert_eq!(
            sign(spec, b"garbage", alg, SignInput::Raw(MESSAGE)),
            Err(CryptoError::InvalidKey)
        );
        assert_eq!(
            verify(spec, b"garbage", alg, SignInput::Raw(MESSAGE), b"sig"),
            Err(CryptoError::InvalidKey)
        );
        assert_eq!(
            public_key_spki(spec, b"garbage"),
            Err(CryptoError::InvalidKey)
        );
    }

    /// Generates a key of `spec`, checks its SPKI, and runs the signing checks.
    fn generate_and_exercise(spec: AsymmetricSpec) -> (SecretBytes, Vec<u8>) {
        let pkcs8 = generate_private_key(spec).unwrap();
        let spki = public_key_spki(spec, &pkcs8).unwrap();
        assert_eq!(spki[0], 0x30);
        assert_eq!(public_key_spki(spec, &pkcs8).unwrap(), spki);
        exercise_signing(spec, &pkcs8, &spki);
        (pkcs8, spki)
    }

    fn rsa_round_trip(spec: AsymmetricSpec) {
        let (pkcs8, spki) = generate_and_exercise(spec);
        let bits = spec.rsa_bits().unwrap();
        // The same PKCS#8 loads as a signing key and as an OAEP decryption key.
        assert!(rsa::KeyPair::from_pkcs8(&pkcs8).is_ok());
        assert!(rsa::PrivateDecryptingKey::from_pkcs8(&pkcs8).is_ok());
        for hash in [OaepHash::Sha1, OaepHash::Sha256] {
            let max = rsa_max_plaintext(spec, hash).unwrap();
            let plaintext: Vec<u8> = (0..max).map(|i| i as u8).collect();
            let ct = rsa_oaep_encrypt(&spki, hash, &plaintext).unwrap();
            assert_eq!(ct.len(), bits / 8);
            assert_eq!(*rsa_oaep_decrypt(&pkcs8, hash, &ct).unwrap(), plaintext);
            let short = rsa_oaep_encrypt(&spki, hash, b"").unwrap();
            assert!(rsa_oaep_decrypt(&pkcs8, hash, &short).unwrap().is_empty());
            assert!(is_invalid_input(rsa_oaep_encrypt(
                &spki,
                hash,
                &vec![1u8; max + 1]
            )));
            let mut bad = ct.clone();
            bad[10] ^= 1;
            assert_eq!(
                rsa_oaep_decrypt(&pkcs8, hash, &bad),
                Err(CryptoError::Decrypt)
            );
            assert_eq!(
                rsa_oaep_decrypt(&pkcs8, hash, &ct[1..]),
                Err(CryptoError::Decrypt)
            );
            let other = match hash {
                OaepHash::Sha1 => OaepHash::Sha256,
                OaepHash::Sha256 => OaepHash::Sha1,
            };
            assert_eq!(
                rsa_oaep_decrypt(&pkcs8, other, &ct),
                Err(CryptoError::Decrypt)
            );
        }
        // A key of another size is not a key of this spec.
        let other = if spec == AsymmetricSpec::Rsa2048 {
            AsymmetricSpec::Rsa3072
        } else {
            AsymmetricSpec::Rsa2048
        };
        let alg = SigningAlgorithm::RsaPssSha256;
        assert_eq!(
            sign(other, &pkcs8, alg, SignInput::Raw(MESSAGE)),
            Err(CryptoError::InvalidKey)
        );
        assert_eq!(
            verify(other, &spki, alg, SignInput::Raw(MESSAGE), b"x"),
            Err(CryptoError::InvalidKey)
        );
        assert_eq!(
            public_key_spki(AsymmetricSpec::EccNistP256, &pkcs8),
            Err(CryptoError::InvalidKey)
        );
        assert!(is_invalid_input(ecdh(spec, &pkcs8, &spki)));
    }

    #[test]
    fn rsa_2048() {
        assert_eq!(
            rsa_max_plaintext(AsymmetricSpec::Rsa2048, OaepHash::Sha1),
            Some(214)
        );
        assert_eq!(
            rsa_max_plaintext(AsymmetricSpec::Rsa2048, OaepHash::Sha256),
            Some(190)
        );
        rsa_round_trip(AsymmetricSpec::Rsa2048);
    }

    #[test]
    fn rsa_3072() {
        assert_eq!(
            rsa_max_plaintext(AsymmetricSpec::Rsa3072, OaepHash::Sha1),
            Some(342)
        );
        assert_eq!(
            rsa_max_plaintext(AsymmetricSpec::Rsa3072, OaepHash::Sha256),
            Some(318)
        );
        rsa_round_trip(AsymmetricSpec::Rsa3072);
    }

    #[test]
    fn rsa_4096() {
        assert_eq!(
            rsa_max_plaintext(AsymmetricSpec::Rsa4096, OaepHash::Sha1),
            Some(470)
        );
        assert_eq!(
            rsa_max_plaintext(AsymmetricSpec::Rsa4096, OaepHash::Sha256),
            Some(446)
        );
        assert_eq!(
            rsa_max_plaintext(AsymmetricSpec::EccNistP256, OaepHash::Sha1),
            None
        );
        rsa_round_trip(AsymmetricSpec::Rsa4096);
    }

    #[test]
    fn ecc_sign_verify() {
        let specs = [
            AsymmetricSpec::EccNistP256,
            AsymmetricSpec::EccNistP384,
            AsymmetricSpec::EccNistP521,
            AsymmetricSpec::EccSecgP256k1,
        ];
        let keys: Vec<_> = specs.iter().map(|&s| generate_and_exercise(s)).collect();
        // A key of one curve is not a key of another.
        for (i, &spec) in specs.iter().enumerate() {
            for (j, (pkcs8, spki)) in keys.iter().enumerate() {
                if i == j {
                    continue;
                }
                let alg = spec.signing_algorithms()[0];
                assert_eq!(
                    sign(spec, pkcs8, alg, SignInput::Raw(MESSAGE)),
                    Err(CryptoError::InvalidKey)
                );
                assert_eq!(
                    verify(spec, spki, alg, SignInput::Raw(MESSAGE), b"x"),
                    Err(CryptoError::InvalidKey)
                );
            }
        }
        // A raw EC point is not an SPKI.
        let (_, spki) = &keys[0];
        let raw_point = &spki[spki.len() - 65..];
        assert_eq!(raw_point[0], 0x04);
        assert_eq!(
            verify(
                AsymmetricSpec::EccNistP256,
                raw_point,
                SigningAlgorithm::EcdsaSha256,
                SignInput::Raw(MESSAGE),
                b"x"
            ),
            Err(CryptoError::InvalidKey)
        );
    }

    #[test]
    fn ml_kem_keys_do_not_sign() {
        let spec = AsymmetricSpec::MlKem768;
        let pkcs8 = generate_private_key(spec).unwrap();
        assert!(is_invalid_input(SigningKey::from_pkcs8(spec, &pkcs8)));
        let spki = public_key_spki(spec, &pkcs8).unwrap();
        for alg in SigningAlgorithm::ALL {
            assert!(is_invalid_input(sign(
                spec,
                &pkcs8,
                alg,
                SignInput::Raw(MESSAGE)
            )));
            assert!(is_invalid_input(verify(
                spec,
                &spki,
                alg,
                SignInput::Raw(MESSAGE),
                b"sig"
            )));
        }
        assert!(is_invalid_input(ecdh(spec, &pkcs8, &spki)));
    }

    #[test]
    fn ed25519_sign_verify() {
        let (pkcs8, _) = generate_and_exercise(AsymmetricSpec::Ed25519);
        assert_eq!(
            sign(
                AsymmetricSpec::MlDsa44,
                &pkcs8,
                SigningAlgorithm::MlDsaShake256,
                SignInput::Raw(MESSAGE)
            ),
            Err(CryptoError::InvalidKey)
        );
    }

    #[test]
    fn ml_dsa_sign_verify() {
        let k44 = generate_and_exercise(AsymmetricSpec::MlDsa44);
        generate_and_exercise(AsymmetricSpec::MlDsa65);
        generate_and_exercise(AsymmetricSpec::MlDsa87);
        let alg = SigningAlgorithm::MlDsaShake256;
        assert_eq!(
            sign(
                AsymmetricSpec::MlDsa65,
                &k44.0,
                alg,
                SignInput::Raw(MESSAGE)
            ),
            Err(CryptoError::InvalidKey)
        );
        assert_eq!(
            verify(
                AsymmetricSpec::MlDsa87,
                &k44.1,
                alg,
                SignInput::Raw(MESSAGE),
                b"x"
            ),
            Err(CryptoError::InvalidKey)
        );
    }

    #[test]
    fn digest_lengths() {
        use SigningAlgorithm as A;
        for (alg, len) in [
            (A::RsaPssSha256, Some(32)),
            (A::RsaPssSha384, Some(48)),
            (A::RsaPssSha512, Some(64)),
            (A::RsaPkcs1Sha256, Some(32)),
            (A::RsaPkcs1Sha384, Some(48)),
            (A::RsaPkcs1Sha512, Some(64)),
            (A::EcdsaSha256, Some(32)),
            (A::EcdsaSha384, Some(48)),
            (A::EcdsaSha512, Some(64)),
            (A::Ed25519Sha512, None),
            (A::Ed25519PhSha512, Some(64)),
            (A::MlDsaShake256, None),
        ] {
            assert_eq!(digest_len(alg), len, "{alg:?}");
        }
    }

    /// RFC 8032 section 7.1, TEST 1 (empty message).
    #[test]
    fn ed25519_rfc8032_test1() {
        let seed = hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .unwrap();
        let public =
            hex::decode("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
                .unwrap();
        let expected = hex::decode(
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        )
        .unwrap();
        let kp = Ed25519KeyPair::from_seed_and_public_key(&seed, &public).unwrap();
        let pkcs8 = kp.to_pkcs8v1().unwrap();
        let spec = AsymmetricSpec::Ed25519;
        let alg = SigningAlgorithm::Ed25519Sha512;
        let spki = public_key_spki(spec, pkcs8.as_ref()).unwrap();
        // RFC 8410 SPKI: 12-byte header then the 32-byte public key.
        assert_eq!(spki.len(), 44);
        assert_eq!(&spki[12..], &public[..]);
        let sig = sign(spec, pkcs8.as_ref(), alg, SignInput::Raw(b"")).unwrap();
        assert_eq!(sig, expected);
        assert!(verify(spec, &spki, alg, SignInput::Raw(b""), &expected).unwrap());
        assert!(!verify(spec, &spki, alg, SignInput::Raw(b"x"), &expected).unwrap());
        // The raw 32-byte key is not an SPKI.
        assert_eq!(
            verify(spec, &public, alg, SignInput::Raw(b""), &expected),
            Err(CryptoError::InvalidKey)
        );
    }

    /// RFC 8032 section 7.3, the Ed25519ph test vector (message "abc"), through AWS-LC's
    /// Ed25519ph; then the same key through [`SigningKey`], whose DIGEST input is the message
    /// Ed25519ph hashes (as KMS does for ED25519_PH_SHA_512).
    #[test]
    fn ed25519ph_rfc8032() {
        let seed = hex::decode("833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42")
            .unwrap();
        let public =
            hex::decode("ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf")
                .unwrap();
        let expected = hex::decode(
            "98a70222f0b8121aa9d30f813d683f809e462b469c7ff87639499bb94e6dae41\
             31f85042463c2a355a2003d062adf5aaa10b8c61e636062aaad11c2a26083406",
        )
        .unwrap();
        let mut private = [0u8; 64];
        private[..32].copy_from_slice(&seed);
        private[32..].copy_from_slice(&public);
        let public: [u8; 32] = public.try_into().unwrap();
        let sig = aws_lc_ffi::ed25519ph_sign(&private, b"abc").unwrap();
        assert_eq!(sig.to_vec(), expected);
        assert!(aws_lc_ffi::ed25519ph_verify(&public, b"abc", &expected));
        assert!(!aws_lc_ffi::ed25519ph_verify(&public, b"abd", &expected));
        assert!(!aws_lc_ffi::ed25519ph_verify(
            &public,
            b"abc",
            &expected[1..]
        ));

        let kp = Ed25519KeyPair::from_seed_and_public_key(&seed, &public).unwrap();
        let pkcs8 = kp.to_pkcs8v1().unwrap();
        let spec = AsymmetricSpec::Ed25519;
        let alg = SigningAlgorithm::Ed25519PhSha512;
        let spki = public_key_spki(spec, pkcs8.as_ref()).unwrap();
        let digest = digest::digest(&digest::SHA512, b"abc");
        let input = SignInput::Digest(digest.as_ref());
        let kms_sig = sign(spec, pkcs8.as_ref(), alg, input).unwrap();
        // Ed25519 is deterministic: the signature is Ed25519ph over the 64 digest bytes.
        let direct = aws_lc_ffi::ed25519ph_sign(&private, digest.as_ref()).unwrap();
        assert_eq!(kms_sig, direct.to_vec());
        assert_ne!(kms_sig, expected);
        assert!(verify(spec, &spki, alg, input, &kms_sig).unwrap());
        assert!(aws_lc_ffi::ed25519ph_verify(
            &public,
            digest.as_ref(),
            &kms_sig
        ));
    }

    #[test]
    fn ecdh_agreement() {
        let curves = [
            (AsymmetricSpec::EccNistP256, 32),
            (AsymmetricSpec::EccNistP384, 48),
            (AsymmetricSpec::EccNistP521, 66),
        ];
        let mut keys = Vec::new();
        for (spec, len) in curves {
            let a = generate_private_key(spec).unwrap();
            let b = generate_private_key(spec).unwrap();
            let a_pub = public_key_spki(spec, &a).unwrap();
            let b_pub = public_key_spki(spec, &b).unwrap();
            let ab = ecdh(spec, &a, &b_pub).unwrap();
            let ba = ecdh(spec, &b, &a_pub).unwrap();
            assert_eq!(ab.len(), len);
            assert_eq!(*ab, *ba);
            assert_ne!(*ab, vec![0u8; len]);
            assert_eq!(ecdh(spec, &a, b"garbage"), Err(CryptoError::InvalidPeerKey));
            assert_eq!(ecdh(spec, &a, b""), Err(CryptoError::InvalidPeerKey));
            // The bare point inside the SPKI is not accepted.
            let point_len = 1 + 2 * len;
            let point = &b_pub[b_pub.len() - point_len..];
            assert_eq!(point[0], 0x04);
            assert_eq!(ecdh(spec, &a, point), Err(CryptoError::InvalidPeerKey));
            // A corrupted point is rejected.
            let mut bad = b_pub.clone();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            assert_eq!(ecdh(spec, &a, &bad), Err(CryptoError::InvalidPeerKey));
            assert_eq!(ecdh(spec, b"garbage", &b_pub), Err(CryptoError::InvalidKey));
            keys.push((spec, a, a_pub));
        }
        // A P-384 (or P-521) peer for a P-256 key, and so on.
        for (spec, pkcs8, _) in &keys {
            for (other, _, other_pub) in &keys {
                if spec != other {
                    assert_eq!(
                        ecdh(*spec, pkcs8, other_pub),
                        Err(CryptoError::InvalidPeerKey)
                    );
                }
            }
        }
        // A private key of another curve than the spec says.
        assert_eq!(
            ecdh(AsymmetricSpec::EccNistP384, &keys[0].1, &keys[1].2),
            Err(CryptoError::InvalidKey)
        );
        // secp256k1 and non-EC specs have no key agreement.
        let k1 = generate_private_key(AsymmetricSpec::EccSecgP256k1).unwrap();
        let k1_pub = public_key_spki(AsymmetricSpec::EccSecgP256k1, &k1).unwrap();
        assert!(is_invalid_input(ecdh(
            AsymmetricSpec::EccSecgP256k1,
            &k1,
            &k1_pub
        )));
        // A secp256k1 peer for a P-256 key.
        assert_eq!(
            ecdh(AsymmetricSpec::EccNistP256, &keys[0].1, &k1_pub),
            Err(CryptoError::InvalidPeerKey)
        );
    }

    const HMACS: [HmacAlgorithm; 4] = [
        HmacAlgorithm::Sha224,
        HmacAlgorithm::Sha256,
        HmacAlgorithm::Sha384,
        HmacAlgorithm::Sha512,
    ];

    /// RFC 4231 test cases 1, 2 and 4 (HMAC-SHA-224, -256, -384, -512 in that order).
    #[test]
    fn hmac_rfc4231() {
        let cases: [(Vec<u8>, Vec<u8>, [&str; 4]); 3] = [
            (
                vec![0x0b; 20],
                b"Hi There".to_vec(),
                [
                    "896fb1128abbdf196832107cd49df33f47b4b1169912ba4f53684b22",
                    "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
                    "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59c\
                     faea9ea9076ede7f4af152e8b2fa9cb6",
                    "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde\
                     daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
                ],
            ),
            (
                b"Jefe".to_vec(),
                b"what do ya want for nothing?".to_vec(),
                [
                    "a30e01098bc6dbbf45690f3a7e9e6d0f8bbea2a39e6148008fd05e44",
                    "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
                    "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e\
                     8e2240ca5e69e2c78b3239ecfab21649",
                    "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554\
                     9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
                ],
            ),
            (
                (1u8..=25).collect(),
                vec![0xcd; 50],
                [
                    "6c11506874013cac6a2abc1bb382627cec6a90d86efc012de7afec5a",
                    "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
                    "3e8a69b7783c25851933ab6290af6ca77a9981480850009cc5577c6e1f573b4e\
                     6801dd23c4a7d679ccf8a386c674cffb",
                    "b0ba465637458c6990e5a8c5f61d4af7e576d97ff94b872de76f8050361ee3db\
                     a91ca5c11aa25eb4d679275cc5788063a5f19741120c4f2de2adebeb10a298dd",
                ],
            ),
        ];
        for (key, data, macs) in &cases {
            for (alg, expected) in HMACS.iter().zip(macs) {
                let mac = hmac_sign(*alg, key, data);
                assert_eq!(hex::encode(&mac), *expected, "{alg:?}");
                assert!(hmac_verify(*alg, key, data, &mac));
                // Truncated, extended, tampered MAC, message or key: all fail.
                assert!(!hmac_verify(*alg, key, data, &mac[..mac.len() - 1]));
                assert!(!hmac_verify(*alg, key, data, &mac[..16]));
                assert!(!hmac_verify(*alg, key, data, b""));
                let mut longer = mac.clone();
                longer.push(0);
                assert!(!hmac_verify(*alg, key, data, &longer));
                let mut bad = mac.clone();
                bad[0] ^= 0x80;
                assert!(!hmac_verify(*alg, key, data, &bad));
                let mut bad_data = data.clone();
                bad_data[0] ^= 1;
                assert!(!hmac_verify(*alg, key, &bad_data, &mac));
                let mut bad_key = key.clone();
                bad_key[0] ^= 1;
                assert!(!hmac_verify(*alg, &bad_key, data, &mac));
            }
        }
    }

    #[test]
    fn hmac_keys() {
        for (alg, len) in HMACS.into_iter().zip([28, 32, 48, 64]) {
            assert_eq!(hmac_key_len(alg), len);
            let k1 = hmac_generate_key(alg).unwrap();
            let k2 = hmac_generate_key(alg).unwrap();
            assert_eq!(k1.len(), len);
            assert_ne!(*k1, *k2);
            let mac = hmac_sign(alg, &k1, b"m");
            assert_eq!(mac.len(), len);
            assert!(hmac_verify(alg, &k1, b"m", &mac));
            assert!(!hmac_verify(alg, &k2, b"m", &mac));
        }
    }

    #[test]
    fn spec_tables() {
        for spec in AsymmetricSpec::ALL {
            assert_eq!(
                spec.signing_algorithms().is_empty(),
                crate::kem::is_ml_kem(spec),
                "{spec:?}"
            );
            assert_eq!(spec.rsa_bits().is_some(), spec.rsa_key_size().is_some());
            assert_eq!(
                rsa_max_plaintext(spec, OaepHash::Sha256).is_some(),
                spec.rsa_bits().is_some()
            );
        }
    }
}
