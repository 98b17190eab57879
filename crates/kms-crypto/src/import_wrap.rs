//! Wrapping of imported key material, as AWS KMS's GetParametersForImport / ImportKeyMaterial
//! define it: the client encrypts its material under a one-time RSA public key with RSAES-OAEP
//! (SHA-1 or SHA-256, MGF1 with the same hash), or, for material too long for OAEP, wraps it
//! with a fresh AES-256 key (RFC 5649 key wrap with padding, what `openssl enc
//! -id-aes256-wrap-pad` does) and OAEP-encrypts that AES key: `OAEP(aes key) || KWP(material)`.

use aws_lc_rs::key_wrap::{AesKek, KeyWrapPadded, AES_256};
use zeroize::Zeroizing;

use crate::asymmetric::{rsa_oaep_decrypt, rsa_oaep_encrypt, OaepHash};
use crate::{CryptoError, SecretBytes};

/// A `WrappingAlgorithm` of GetParametersForImport (SM2PKE aside: China Regions only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrappingAlgorithm {
    /// `RSAES_OAEP_SHA_1`.
    RsaesOaepSha1,
    /// `RSAES_OAEP_SHA_256`.
    RsaesOaepSha256,
    /// `RSA_AES_KEY_WRAP_SHA_1`.
    RsaAesKeyWrapSha1,
    /// `RSA_AES_KEY_WRAP_SHA_256`.
    RsaAesKeyWrapSha256,
}

impl WrappingAlgorithm {
    /// The algorithm of a wire name, if kmsd supports it.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "RSAES_OAEP_SHA_1" => Self::RsaesOaepSha1,
            "RSAES_OAEP_SHA_256" => Self::RsaesOaepSha256,
            "RSA_AES_KEY_WRAP_SHA_1" => Self::RsaAesKeyWrapSha1,
            "RSA_AES_KEY_WRAP_SHA_256" => Self::RsaAesKeyWrapSha256,
            _ => return None,
        })
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RsaesOaepSha1 => "RSAES_OAEP_SHA_1",
            Self::RsaesOaepSha256 => "RSAES_OAEP_SHA_256",
            Self::RsaAesKeyWrapSha1 => "RSA_AES_KEY_WRAP_SHA_1",
            Self::RsaAesKeyWrapSha256 => "RSA_AES_KEY_WRAP_SHA_256",
        }
    }

    fn oaep_hash(self) -> OaepHash {
        match self {
            Self::RsaesOaepSha1 | Self::RsaAesKeyWrapSha1 => OaepHash::Sha1,
            Self::RsaesOaepSha256 | Self::RsaAesKeyWrapSha256 => OaepHash::Sha256,
        }
    }

    fn uses_aes_key_wrap(self) -> bool {
        matches!(self, Self::RsaAesKeyWrapSha1 | Self::RsaAesKeyWrapSha256)
    }
}

/// Unwraps `wrapped` with the wrapping private key (PKCS#8 RSA) of `rsa_bytes` modulus bytes.
/// Any malformed or foreign input is [`CryptoError::Decrypt`].
pub fn unwrap_material(
    wrapping_pkcs8: &[u8],
    rsa_bytes: usize,
    algorithm: WrappingAlgorithm,
    wrapped: &[u8],
) -> Result<SecretBytes, CryptoError> {
    let hash = algorithm.oaep_hash();
    if !algorithm.uses_aes_key_wrap() {
        return rsa_oaep_decrypt(wrapping_pkcs8, hash, wrapped);
    }
    if wrapped.len() <= rsa_bytes {
        return Err(CryptoError::Decrypt);
    }
    let (encrypted_aes_key, kwp) = wrapped.split_at(rsa_bytes);
    let aes_key = rsa_oaep_decrypt(wrapping_pkcs8, hash, encrypted_aes_key)?;
    let kek = AesKek::new(&AES_256, &aes_key).map_err(|_| CryptoError::Decrypt)?;
    let mut out = Zeroizing::new(vec![0u8; kwp.len()]);
    let n = kek
        .unwrap_with_padding(kwp, &mut out)
        .map_err(|_| CryptoError::Decrypt)?
        .len();
    out.truncate(n);
    Ok(out)
}

/// Wraps `material` for import under a wrapping public key (DER SPKI), as a client does.
pub fn wrap_material(
    wrapping_spki: &[u8],
    algorithm: WrappingAlgorithm,
    material: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let hash = algorithm.oaep_hash();
    if !algorithm.uses_aes_key_wrap() {
        return rsa_oaep_encrypt(wrapping_spki, hash, material);
    }
    let aes_key = crate::random_bytes(32)?;
    let mut out = rsa_oaep_encrypt(wrapping_spki, hash, &aes_key)?;
    let kek = AesKek::new(&AES_256, &aes_key).map_err(|_| CryptoError::Primitive)?;
    let mut kwp = vec![0u8; material.len() + 16];
    let n = kek
        .wrap_with_padding(material, &mut kwp)
        .map_err(|_| CryptoError::Primitive)?
        .len();
    out.extend_from_slice(&kwp[..n]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asymmetric::{generate_private_key, public_key_spki, AsymmetricSpec};

    #[test]
    fn every_algorithm_round_trips_and_refuses_tampering() {
        let pkcs8 = generate_private_key(AsymmetricSpec::Rsa2048).unwrap();
        let spki = public_key_spki(AsymmetricSpec::Rsa2048, &pkcs8).unwrap();
        for alg in [
            WrappingAlgorithm::RsaesOaepSha1,
            WrappingAlgorithm::RsaesOaepSha256,
            WrappingAlgorithm::RsaAesKeyWrapSha1,
            WrappingAlgorithm::RsaAesKeyWrapSha256,
        ] {
            assert_eq!(WrappingAlgorithm::parse(alg.as_str()), Some(alg));
            let material = [7u8; 32];
            let mut wrapped = wrap_material(&spki, alg, &material).unwrap();
            let back = unwrap_material(&pkcs8, 256, alg, &wrapped).unwrap();
            assert_eq!(back.as_slice(), material);
            let last = wrapped.len() - 1;
            wrapped[last] ^= 1;
            assert_eq!(
                unwrap_material(&pkcs8, 256, alg, &wrapped).unwrap_err(),
                CryptoError::Decrypt
            );
        }
        // A private key longer than OAEP can carry needs the AES key wrap.
        let long = generate_private_key(AsymmetricSpec::Rsa2048).unwrap();
        assert!(wrap_material(&spki, WrappingAlgorithm::RsaesOaepSha256, &long).is_err());
        let wrapped = wrap_material(&spki, WrappingAlgorithm::RsaAesKeyWrapSha256, &long).unwrap();
        let back = unwrap_material(
            &pkcs8,
            256,
            WrappingAlgorithm::RsaAesKeyWrapSha256,
            &wrapped,
        )
        .unwrap();
        assert_eq!(back.as_slice(), long.as_slice());
    }
}
