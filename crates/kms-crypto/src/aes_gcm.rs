//! AES-256-GCM with a 12-byte IV and a 16-byte tag.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

use crate::{random_array, CryptoError};

/// IV length.
pub const GCM_IV_LEN: usize = 12;
/// Tag length.
pub const GCM_TAG_LEN: usize = 16;

/// A prepared AES-256-GCM key. aws-lc-rs keeps the expanded key and cleanses it on drop.
pub struct AesGcmKey {
    key: LessSafeKey,
}

impl std::fmt::Debug for AesGcmKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AesGcmKey(<secret>)")
    }
}

impl AesGcmKey {
    /// Prepares a key from 32 bytes.
    pub fn new(key: &[u8]) -> Result<Self, CryptoError> {
        if key.len() != 32 {
            return Err(CryptoError::KeyLength);
        }
        let unbound = UnboundKey::new(&AES_256_GCM, key).map_err(|_| CryptoError::KeyLength)?;
        Ok(AesGcmKey {
            key: LessSafeKey::new(unbound),
        })
    }

    /// Encrypts with a fresh random IV; returns `(iv, ciphertext || tag)`.
    pub fn seal(
        &self,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<([u8; GCM_IV_LEN], Vec<u8>), CryptoError> {
        let iv: [u8; GCM_IV_LEN] = random_array()?;
        let mut buf = Vec::with_capacity(plaintext.len() + GCM_TAG_LEN);
        buf.extend_from_slice(plaintext);
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(iv), Aad::from(aad), &mut buf)
            .map_err(|_| CryptoError::Primitive)?;
        Ok((iv, buf))
    }

    /// Decrypts `ciphertext || tag` with `iv`; fails without detail if anything does not match.
    pub fn open(
        &self,
        iv: &[u8],
        aad: &[u8],
        ciphertext_and_tag: &[u8],
    ) -> Result<crate::SecretBytes, CryptoError> {
        let iv: [u8; GCM_IV_LEN] = iv.try_into().map_err(|_| CryptoError::Decrypt)?;
        if ciphertext_and_tag.len() < GCM_TAG_LEN {
            return Err(CryptoError::Decrypt);
        }
        let mut buf = zeroize::Zeroizing::new(ciphertext_and_tag.to_vec());
        let len = self
            .key
            .open_in_place(Nonce::assume_unique_for_key(iv), Aad::from(aad), &mut buf)
            .map_err(|_| CryptoError::Decrypt)?
            .len();
        buf.truncate(len);
        Ok(buf)
    }

    /// Encrypts with a caller-chosen IV, which must never repeat under this key: for test
    /// vectors and for emulating an HSM that takes the IV from its caller.
    pub fn seal_with_iv(
        &self,
        iv: [u8; GCM_IV_LEN],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let mut buf = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(iv), Aad::from(aad), &mut buf)
            .map_err(|_| CryptoError::Primitive)?;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NIST GCM test vector (gcmEncryptExtIV256, Count 0 with 128-bit PT and AAD), as published in
    /// the McGrew–Viega GCM spec test case 16.
    #[test]
    fn gcm_spec_test_case_16() {
        let key = hex::decode("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
            .unwrap();
        let iv: [u8; 12] = hex::decode("cafebabefacedbaddecaf888")
            .unwrap()
            .try_into()
            .unwrap();
        let pt = hex::decode("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39").unwrap();
        let aad = hex::decode("feedfacedeadbeeffeedfacedeadbeefabaddad2").unwrap();
        let k = AesGcmKey::new(&key).unwrap();
        let out = k.seal_with_iv(iv, &aad, &pt).unwrap();
        let (ct, tag) = out.split_at(pt.len());
        assert_eq!(hex::encode(ct), "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662");
        assert_eq!(hex::encode(tag), "76fc6ece0f4e1768cddf8853bb2d551b");
        assert_eq!(&k.open(&iv, &aad, &out).unwrap()[..], &pt[..]);
    }

    #[test]
    fn tampering_fails() {
        let k = AesGcmKey::new(&[7u8; 32]).unwrap();
        let (iv, mut ct) = k.seal(b"aad", b"secret").unwrap();
        assert_eq!(&k.open(&iv, b"aad", &ct).unwrap()[..], b"secret");
        assert_eq!(k.open(&iv, b"aae", &ct).unwrap_err(), CryptoError::Decrypt);
        ct[0] ^= 1;
        assert_eq!(k.open(&iv, b"aad", &ct).unwrap_err(), CryptoError::Decrypt);
        assert_eq!(
            k.open(&iv, b"aad", &ct[..3]).unwrap_err(),
            CryptoError::Decrypt
        );
        assert!(AesGcmKey::new(&[0u8; 16]).is_err());
    }
}
