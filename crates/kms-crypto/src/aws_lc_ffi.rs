//! The workspace's only `unsafe` code: the few AWS-LC functions that aws-lc-rs 1.19's safe API
//! does not expose, called through `aws-lc-sys` (pinned to the version aws-lc-rs links, so this
//! is the same AWS-LC build):
//!
//! - Ed25519ph (RFC 8032 HashEdDSA, empty context): `ED25519ph_sign` / `ED25519ph_verify`;
//! - ML-DSA over an external mu (FIPS 204 §6.2): `EVP_PKEY_sign` / `EVP_PKEY_verify`, which
//!   AWS-LC defines for ML-DSA keys as signing/verifying the 64-byte mu;
//! - ML-KEM key generation with PKCS#8 (seed form) and SPKI encoding (RFC 9935 / the IETF
//!   lamps ML-KEM certificates draft): `EVP_PKEY_keygen`, `EVP_marshal_*`, `EVP_parse_*`.
//!
//! Rules kept by every function here: AWS-LC objects are owned by a guard that frees them on
//! every path; no pointer outlives the call; every buffer is a Rust slice passed with its
//! length, and output lengths are checked before use; secrets copied out of AWS-LC land in
//! zeroize-on-drop buffers (AWS-LC's `OPENSSL_free` cleanses what it frees).
#![allow(unsafe_code)]

use std::ptr::{null, null_mut};

use aws_lc_sys as sys;
use zeroize::Zeroizing;

use crate::{CryptoError, SecretBytes};

/// Length of an Ed25519 signature.
pub(crate) const ED25519_SIGNATURE_LEN: usize = 64;

/// An owned `EVP_PKEY`.
struct Pkey(*mut sys::EVP_PKEY);

impl Drop for Pkey {
    fn drop(&mut self) {
        // SAFETY: the pointer is non-null (checked where a `Pkey` is made) and owned by us.
        unsafe { sys::EVP_PKEY_free(self.0) }
    }
}

/// An owned `EVP_PKEY_CTX`.
struct PkeyCtx(*mut sys::EVP_PKEY_CTX);

impl PkeyCtx {
    /// A context for operations with `key`.
    fn for_key(key: &Pkey) -> Result<PkeyCtx, CryptoError> {
        // SAFETY: `key.0` is a valid EVP_PKEY; the context takes its own reference to it.
        let ctx = unsafe { sys::EVP_PKEY_CTX_new(key.0, null_mut()) };
        non_null(ctx).map(PkeyCtx)
    }
}

impl Drop for PkeyCtx {
    fn drop(&mut self) {
        // SAFETY: non-null (checked where made) and owned by us.
        unsafe { sys::EVP_PKEY_CTX_free(self.0) }
    }
}

fn non_null<T>(p: *mut T) -> Result<*mut T, CryptoError> {
    if p.is_null() {
        clear_errors();
        Err(CryptoError::Primitive)
    } else {
        Ok(p)
    }
}

/// Drops AWS-LC's thread-local error queue (its entries say nothing we report).
fn clear_errors() {
    // SAFETY: no arguments; only touches this thread's error queue.
    unsafe { sys::ERR_clear_error() }
}

/// `Ok` when an AWS-LC call returned 1.
fn check(rc: std::os::raw::c_int, err: CryptoError) -> Result<(), CryptoError> {
    if rc == 1 {
        Ok(())
    } else {
        clear_errors();
        Err(err)
    }
}

/// Parses DER with `parse` (EVP_parse_private_key or EVP_parse_public_key); the whole input
/// must be consumed.
fn parse_der(
    der: &[u8],
    parse: unsafe extern "C" fn(*mut sys::CBS) -> *mut sys::EVP_PKEY,
) -> Result<Pkey, CryptoError> {
    let mut cbs = sys::CBS {
        data: der.as_ptr(),
        len: der.len(),
    };
    // SAFETY: `cbs` points into `der`, which outlives the call; the parser only reads it and
    // advances `cbs`.
    let key = unsafe { parse(&mut cbs) };
    let key = Pkey(non_null(key).map_err(|_| CryptoError::InvalidKey)?);
    if cbs.len != 0 {
        return Err(CryptoError::InvalidKey);
    }
    Ok(key)
}

fn parse_private_key(pkcs8: &[u8], pkey_type: i32) -> Result<Pkey, CryptoError> {
    let key = parse_der(pkcs8, sys::EVP_parse_private_key)?;
    // SAFETY: `key.0` is a valid EVP_PKEY.
    if unsafe { sys::EVP_PKEY_id(key.0) } != pkey_type {
        return Err(CryptoError::InvalidKey);
    }
    Ok(key)
}

fn parse_public_key(spki: &[u8], pkey_type: i32) -> Result<Pkey, CryptoError> {
    let key = parse_der(spki, sys::EVP_parse_public_key)?;
    // SAFETY: `key.0` is a valid EVP_PKEY.
    if unsafe { sys::EVP_PKEY_id(key.0) } != pkey_type {
        return Err(CryptoError::InvalidKey);
    }
    Ok(key)
}

/// Serialises `key` with `marshal` (EVP_marshal_private_key or EVP_marshal_public_key).
fn marshal(
    key: &Pkey,
    marshal: unsafe extern "C" fn(*mut sys::CBB, *const sys::EVP_PKEY) -> std::os::raw::c_int,
) -> Result<SecretBytes, CryptoError> {
    let mut cbb = std::mem::MaybeUninit::<sys::CBB>::uninit();
    // SAFETY: CBB_init initialises the CBB it is given; it fails only on allocation failure,
    // and then holds nothing to free.
    if unsafe { sys::CBB_init(cbb.as_mut_ptr(), 0) } != 1 {
        clear_errors();
        return Err(CryptoError::Primitive);
    }
    // SAFETY: initialised just above.
    let mut cbb = unsafe { cbb.assume_init() };
    // SAFETY: `cbb` is initialised and `key.0` is a valid EVP_PKEY.
    if unsafe { marshal(&mut cbb, key.0) } != 1 {
        // SAFETY: releases what the CBB holds; it is not used again.
        unsafe { sys::CBB_cleanup(&mut cbb) };
        clear_errors();
        return Err(CryptoError::Primitive);
    }
    let mut data: *mut u8 = null_mut();
    let mut len = 0usize;
    // SAFETY: on success CBB_finish hands us the buffer (to free with OPENSSL_free) and
    // leaves the CBB empty; on failure the CBB is cleaned up by us.
    if unsafe { sys::CBB_finish(&mut cbb, &mut data, &mut len) } != 1 || data.is_null() {
        // SAFETY: as above.
        unsafe { sys::CBB_cleanup(&mut cbb) };
        clear_errors();
        return Err(CryptoError::Primitive);
    }
    // SAFETY: `data` points to `len` initialised bytes owned by us until freed below.
    let out = Zeroizing::new(unsafe { std::slice::from_raw_parts(data, len) }.to_vec());
    // SAFETY: `data` came from CBB_finish; OPENSSL_free cleanses and frees it.
    unsafe { sys::OPENSSL_free(data.cast()) };
    Ok(out)
}

/// Ed25519ph (RFC 8032 §5.1, HashEdDSA with SHA-512, empty context) signature of `message`
/// with the 64-byte private key `seed || public key`.
pub(crate) fn ed25519ph_sign(
    private_key: &[u8; 64],
    message: &[u8],
) -> Result<[u8; ED25519_SIGNATURE_LEN], CryptoError> {
    let mut sig = [0u8; ED25519_SIGNATURE_LEN];
    // SAFETY: `sig` has the 64 bytes the function writes; `message` and `private_key` are
    // read within their lengths; no context (null, 0).
    let rc = unsafe {
        sys::ED25519ph_sign(
            sig.as_mut_ptr(),
            message.as_ptr(),
            message.len(),
            private_key.as_ptr(),
            null(),
            0,
        )
    };
    check(rc, CryptoError::Primitive)?;
    Ok(sig)
}

/// Checks an Ed25519ph (empty context) `signature` of `message` under the raw 32-byte public key.
pub(crate) fn ed25519ph_verify(public_key: &[u8; 32], message: &[u8], signature: &[u8]) -> bool {
    let Ok(signature) = <&[u8; ED25519_SIGNATURE_LEN]>::try_from(signature) else {
        return false;
    };
    // SAFETY: every pointer is read within the length its type or argument gives.
    let rc = unsafe {
        sys::ED25519ph_verify(
            message.as_ptr(),
            message.len(),
            signature.as_ptr(),
            public_key.as_ptr(),
            null(),
            0,
        )
    };
    check(rc, CryptoError::Primitive).is_ok()
}

/// ML-DSA signature over the 64-byte message representative `mu` (FIPS 204 Algorithm 7 from
/// line 7 on) with the PKCS#8 ML-DSA private key; `signature_len` is the level's length.
pub(crate) fn ml_dsa_sign_external_mu(
    pkcs8: &[u8],
    mu: &[u8; 64],
    signature_len: usize,
) -> Result<Vec<u8>, CryptoError> {
    let key = parse_private_key(pkcs8, sys::EVP_PKEY_PQDSA)?;
    let ctx = PkeyCtx::for_key(&key)?;
    // SAFETY: `ctx.0` is a valid context.
    check(
        unsafe { sys::EVP_PKEY_sign_init(ctx.0) },
        CryptoError::Primitive,
    )?;
    let mut sig = vec![0u8; signature_len];
    let mut len = sig.len();
    // SAFETY: AWS-LC writes at most `len` bytes into `sig` and sets `len`; `mu` is read
    // within its 64 bytes.
    let rc = unsafe { sys::EVP_PKEY_sign(ctx.0, sig.as_mut_ptr(), &mut len, mu.as_ptr(), 64) };
    check(rc, CryptoError::Primitive)?;
    if len != signature_len {
        return Err(CryptoError::Primitive);
    }
    Ok(sig)
}

/// Checks an ML-DSA `signature` over the external `mu` with the DER SPKI ML-DSA public key.
pub(crate) fn ml_dsa_verify_external_mu(
    spki: &[u8],
    mu: &[u8; 64],
    signature: &[u8],
) -> Result<bool, CryptoError> {
    let key = parse_public_key(spki, sys::EVP_PKEY_PQDSA)?;
    let ctx = PkeyCtx::for_key(&key)?;
    // SAFETY: `ctx.0` is a valid context.
    check(
        unsafe { sys::EVP_PKEY_verify_init(ctx.0) },
        CryptoError::Primitive,
    )?;
    // SAFETY: both buffers are read within the lengths passed with them.
    let rc = unsafe {
        sys::EVP_PKEY_verify(ctx.0, signature.as_ptr(), signature.len(), mu.as_ptr(), 64)
    };
    Ok(check(rc, CryptoError::Primitive).is_ok())
}

/// ML-KEM parameter sets by AWS-LC NID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MlKemNid {
    /// ML-KEM-512.
    MlKem512,
    /// ML-KEM-768.
    MlKem768,
    /// ML-KEM-1024.
    MlKem1024,
}

impl MlKemNid {
    fn nid(self) -> i32 {
        match self {
            MlKemNid::MlKem512 => sys::NID_MLKEM512,
            MlKemNid::MlKem768 => sys::NID_MLKEM768,
            MlKemNid::MlKem1024 => sys::NID_MLKEM1024,
        }
    }

    /// FIPS 203 decapsulation key size (the parameter sets differ in it, so it identifies one).
    fn decapsulation_key_len(self) -> usize {
        match self {
            MlKemNid::MlKem512 => 1632,
            MlKemNid::MlKem768 => 2400,
            MlKemNid::MlKem1024 => 3168,
        }
    }
}

/// Generates an ML-KEM key pair; returns its PKCS#8 private key in seed form (the 64-byte
/// seed d || z).
pub(crate) fn ml_kem_generate(params: MlKemNid) -> Result<SecretBytes, CryptoError> {
    // SAFETY: creates a fresh context for KEM keys (no engine).
    let ctx = PkeyCtx(non_null(unsafe {
        sys::EVP_PKEY_CTX_new_id(sys::EVP_PKEY_KEM, null_mut())
    })?);
    // SAFETY: `ctx.0` is a valid KEM context.
    check(
        unsafe { sys::EVP_PKEY_CTX_kem_set_params(ctx.0, params.nid()) },
        CryptoError::Primitive,
    )?;
    // SAFETY: as above.
    check(
        unsafe { sys::EVP_PKEY_keygen_init(ctx.0) },
        CryptoError::Primitive,
    )?;
    let mut key: *mut sys::EVP_PKEY = null_mut();
    // SAFETY: on success AWS-LC stores a new EVP_PKEY we own in `key`.
    check(
        unsafe { sys::EVP_PKEY_keygen(ctx.0, &mut key) },
        CryptoError::Primitive,
    )?;
    let key = Pkey(non_null(key)?);
    marshal(&key, sys::EVP_marshal_private_key)
}

/// Parses a PKCS#8 ML-KEM private key of `params`; returns its expanded FIPS 203 decapsulation
/// key and its DER SubjectPublicKeyInfo.
pub(crate) fn ml_kem_parse(
    params: MlKemNid,
    pkcs8: &[u8],
) -> Result<(SecretBytes, Vec<u8>), CryptoError> {
    let key = parse_private_key(pkcs8, sys::EVP_PKEY_KEM)?;
    let want = params.decapsulation_key_len();
    let mut dk = Zeroizing::new(vec![0u8; want]);
    let mut len = dk.len();
    // SAFETY: AWS-LC writes at most `len` bytes into `dk` and sets `len`.
    let rc = unsafe { sys::EVP_PKEY_get_raw_private_key(key.0, dk.as_mut_ptr(), &mut len) };
    check(rc, CryptoError::InvalidKey)?;
    if len != want {
        return Err(CryptoError::InvalidKey);
    }
    let spki = marshal(&key, sys::EVP_marshal_public_key)?;
    Ok((dk, spki.to_vec()))
}
