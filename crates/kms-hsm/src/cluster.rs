//! Cluster key replication: the cluster wrapping key (CWK) and [`replicate_key`].
//! Design and guarantees: `docs/adr/0001-hsm-key-replication.md`.

use crate::error::{map_ck, rv_of, HsmError};
use crate::hsm::Hsm;
use crate::module::{context, find_slot};
use crate::template::{self, AttrArray};
use crate::TokenRef;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::elliptic_curve::{EcKdf, Ecdh1DeriveParams};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

/// The trusted cluster wrapping key visible in `session`, if any.
pub(crate) fn find_cluster_key(session: &Session) -> Result<Option<ObjectHandle>, CkError> {
    let found = session.find_objects(&template::cluster_key_search())?;
    match found.as_slice() {
        [] => Ok(None),
        [h] => Ok(Some(*h)),
        // More than one trusted CWK: refuse rather than guess.
        _ => Err(CkError::InvalidValue),
    }
}

fn find_cluster_key_in(session: &Session, label: &str) -> Result<Option<ObjectHandle>, HsmError> {
    find_cluster_key(session).map_err(|e| match e {
        CkError::InvalidValue => HsmError::Other(format!(
            "token {label:?} holds more than one trusted cluster wrapping key"
        )),
        e => map_ck(e),
    })
}

fn id_of(session: &Session, h: ObjectHandle) -> Result<Vec<u8>, HsmError> {
    let attrs = session
        .get_attributes(h, &[AttributeType::Id])
        .map_err(map_ck)?;
    Ok(attrs
        .into_iter()
        .find_map(|a| match a {
            Attribute::Id(v) => Some(v),
            _ => None,
        })
        .unwrap_or_default())
}

fn check_value(session: &Session, h: ObjectHandle) -> Result<Vec<u8>, HsmError> {
    let attrs = session
        .get_attributes(h, &[AttributeType::CheckValue])
        .map_err(map_ck)?;
    Ok(attrs
        .into_iter()
        .find_map(|a| match a {
            Attribute::CheckValue(v) => Some(v),
            _ => None,
        })
        .unwrap_or_default())
}

fn ec_point(session: &Session, h: ObjectHandle) -> Result<Vec<u8>, HsmError> {
    let attrs = session
        .get_attributes(h, &[AttributeType::EcPoint])
        .map_err(map_ck)?;
    attrs
        .into_iter()
        .find_map(|a| match a {
            Attribute::EcPoint(v) => Some(v),
            _ => None,
        })
        .ok_or_else(|| HsmError::Other("EC public key without CKA_EC_POINT".into()))
}

/// One token opened with the SO logged in, for the duration of an admin operation.
struct SoSession {
    label: String,
    session: Session,
}

impl Drop for SoSession {
    fn drop(&mut self) {
        // Closing the session would log out anyway; be explicit.
        if let Err(e) = self.session.logout() {
            tracing::debug!(token = %self.label, error = %e, "SO logout failed");
        }
    }
}

fn so_login(token: &TokenRef, so_pin: &str) -> Result<SoSession, HsmError> {
    let ctx = context(&token.module)?;
    let slot = find_slot(&ctx, &token.label)?;
    let session = ctx.open_rw_session(slot).map_err(map_ck)?;
    session
        .login(UserType::So, Some(&AuthPin::from(so_pin)))
        .map_err(map_ck)?;
    Ok(SoSession {
        label: token.label.clone(),
        session,
    })
}

/// Copies the CWK from `src` to `dst` (both SO sessions) without it leaving the HSMs: an
/// ephemeral P-256 key pair on each side, `CKM_ECDH1_DERIVE` (`CKD_NULL`, the only KDF
/// SoftHSM2 2.6 supports) to a transient AES-256 transport key on each side (the source one
/// `CKA_TRUSTED`), `C_WrapKey(CKM_AES_KEY_WRAP_PAD)` on the source, `C_UnwrapKey` on the target.
fn transfer_cluster_key(
    src: &SoSession,
    src_cwk: ObjectHandle,
    dst: &SoSession,
    cluster_key_id: &[u8],
) -> Result<(), HsmError> {
    let (pub_t, priv_t) = template::ecdh_keypair_templates();
    let (src_pub, src_priv) = src
        .session
        .generate_key_pair(&Mechanism::EccKeyPairGen, &pub_t, &priv_t)
        .map_err(map_ck)?;
    let (dst_pub, dst_priv) = dst
        .session
        .generate_key_pair(&Mechanism::EccKeyPairGen, &pub_t, &priv_t)
        .map_err(map_ck)?;
    let src_point = ec_point(&src.session, src_pub)?;
    let dst_point = ec_point(&dst.session, dst_pub)?;
    let src_tk = src
        .session
        .derive_key(
            &Mechanism::Ecdh1Derive(Ecdh1DeriveParams::new(EcKdf::null(), &dst_point)),
            src_priv,
            &template::transport_key_template(true),
        )
        .map_err(map_ck)?;
    let dst_tk = dst
        .session
        .derive_key(
            &Mechanism::Ecdh1Derive(Ecdh1DeriveParams::new(EcKdf::null(), &src_point)),
            dst_priv,
            &template::transport_key_template(false),
        )
        .map_err(map_ck)?;
    // Both sides must have derived the same transport key (key check values match).
    let (kcv_s, kcv_d) = (
        check_value(&src.session, src_tk)?,
        check_value(&dst.session, dst_tk)?,
    );
    if kcv_s.is_empty() || kcv_s != kcv_d {
        return Err(HsmError::ClusterKeyMismatch(format!(
            "ECDH transport keys of {:?} and {:?} differ",
            src.label, dst.label
        )));
    }
    let blob = Zeroizing::new(
        src.session
            .wrap_key(&Mechanism::AesKeyWrapPad, src_tk, src_cwk)
            .map_err(map_ck)?,
    );
    let policy = AttrArray::new(&template::kms_key_policy())?;
    dst.session
        .unwrap_key(
            &Mechanism::AesKeyWrapPad,
            dst_tk,
            &blob,
            &template::cluster_key_template(cluster_key_id, &policy, false),
        )
        .map_err(map_ck)?;
    drop(policy);
    // Transient objects are session objects and vanish with the session anyway.
    for (s, h) in [
        (&src.session, src_tk),
        (&src.session, src_pub),
        (&src.session, src_priv),
        (&dst.session, dst_tk),
        (&dst.session, dst_pub),
        (&dst.session, dst_priv),
    ] {
        if let Err(e) = s.destroy_object(h) {
            tracing::debug!(error = %e, "destroying a transient ECDH object failed");
        }
    }
    tracing::info!(from = %src.label, to = %dst.label, "cluster wrapping key transferred");
    Ok(())
}

/// See [`crate::admin::cluster_key_id`].
pub(crate) fn key_id(token: &TokenRef, so_pin: &str) -> Result<Option<Vec<u8>>, HsmError> {
    let s = so_login(token, so_pin)?;
    match find_cluster_key_in(&s.session, &s.label)? {
        Some(h) => id_of(&s.session, h).map(Some),
        None => Ok(None),
    }
}

/// See [`crate::admin::establish_cluster_wrapping_key`].
pub(crate) fn establish(tokens: &[TokenRef], so_pins: &[&str]) -> Result<Vec<u8>, HsmError> {
    if tokens.is_empty() || tokens.len() != so_pins.len() {
        return Err(HsmError::Other(
            "establish_cluster_wrapping_key needs one SO PIN per token (and ≥1 token)".into(),
        ));
    }
    let sessions = tokens
        .iter()
        .zip(so_pins)
        .map(|(t, pin)| so_login(t, pin))
        .collect::<Result<Vec<_>, _>>()?;
    let mut existing = Vec::with_capacity(sessions.len());
    for s in &sessions {
        let h = find_cluster_key_in(&s.session, &s.label)?;
        let id = match h {
            Some(h) => Some(id_of(&s.session, h)?),
            None => None,
        };
        existing.push(h.zip(id));
    }
    // Source: the first token that already has a CWK, else a fresh one on the first token.
    let (src_idx, src_cwk, cluster_key_id) = match existing
        .iter()
        .enumerate()
        .find_map(|(i, e)| e.clone().map(|(h, id)| (i, h, id)))
    {
        Some(found) => found,
        None => {
            let s = &sessions[0];
            let id = Zeroizing::new(s.session.generate_random_vec(16).map_err(map_ck)?);
            let policy = AttrArray::new(&template::kms_key_policy())?;
            let h = s
                .session
                .generate_key(
                    &Mechanism::AesKeyGen,
                    &template::cluster_key_template(&id, &policy, true),
                )
                .map_err(map_ck)?;
            tracing::info!(token = %s.label, cluster_key_id = %hex::encode(&*id), "generated cluster wrapping key");
            (0, h, id.to_vec())
        }
    };
    for (i, e) in existing.iter().enumerate() {
        match e {
            Some((_, id)) if *id != cluster_key_id => {
                return Err(HsmError::ClusterKeyMismatch(format!(
                    "token {:?} holds cluster key {} but token {:?} holds {}",
                    sessions[i].label,
                    hex::encode(id),
                    sessions[src_idx].label,
                    hex::encode(&cluster_key_id)
                )))
            }
            Some(_) => {}
            None if i == src_idx => {}
            None => {
                transfer_cluster_key(&sessions[src_idx], src_cwk, &sessions[i], &cluster_key_id)?
            }
        }
    }
    Ok(cluster_key_id)
}

/// Wraps key `id` of `source` under its cluster wrapping key (`C_WrapKey`,
/// `CKM_AES_KEY_WRAP_PAD`): the blob is ciphertext only a token holding the same cluster
/// wrapping key can unwrap. Returns the cluster key id (`CKA_ID`) and the blob.
pub fn wrap_under_cluster_key(
    source: &Hsm,
    id: &[u8; 16],
) -> Result<(Vec<u8>, Zeroizing<Vec<u8>>), HsmError> {
    let (cwk, cwk_id) = {
        // Released before `with_key` takes a session (a pool of one must not deadlock).
        let mut s = source.session()?;
        let r = find_cluster_key_in(&s, source.token_label());
        let cwk = s
            .check(r)?
            .ok_or_else(|| HsmError::ClusterKeyNotFound(source.token_label().to_string()))?;
        let r = id_of(&s, cwk);
        (cwk, s.check(r)?)
    };
    let wrapped = source.with_key(
        id,
        |s, h| s.wrap_key(&Mechanism::AesKeyWrapPad, cwk, h),
        map_ck,
    )?;
    Ok((cwk_id, Zeroizing::new(wrapped)))
}

/// Unwraps a blob made by [`wrap_under_cluster_key`] on `target` as the persistent KMS key `id`
/// (with the KMS key policy, which the wrapping key's `CKA_UNWRAP_TEMPLATE` enforces). A target
/// already holding `id` is left alone, so the call is idempotent. `from` names the blob's origin
/// in errors.
pub fn unwrap_under_cluster_key(
    target: &Hsm,
    id: &[u8; 16],
    label: &str,
    wrapped: &[u8],
    from: &str,
) -> Result<(), HsmError> {
    if target.has_key(id)? {
        return Ok(());
    }
    unwrap_missing_key(target, id, label, wrapped, from)
}

/// [`unwrap_under_cluster_key`] for a target known not to hold `id`.
fn unwrap_missing_key(
    target: &Hsm,
    id: &[u8; 16],
    label: &str,
    wrapped: &[u8],
    from: &str,
) -> Result<(), HsmError> {
    let mut s = target.session()?;
    let r = find_cluster_key_in(&s, target.token_label());
    let cwk = s
        .check(r)?
        .ok_or_else(|| HsmError::ClusterKeyNotFound(target.token_label().to_string()))?;
    let r = s.unwrap_key(
        &Mechanism::AesKeyWrapPad,
        cwk,
        wrapped,
        &template::kms_key_template(id, label, false),
    );
    if let Err(e) = r {
        let err = match rv_of(&e) {
            // AES-KWP integrity check failed: a different wrapping key.
            Some(
                RvError::GeneralError | RvError::WrappedKeyInvalid | RvError::EncryptedDataInvalid,
            ) => HsmError::ClusterKeyMismatch(format!(
                "{:?} cannot unwrap a key wrapped by {from}",
                target.token_label()
            )),
            _ => map_ck(e),
        };
        return s.check(Err(err));
    }
    tracing::debug!(from = %from, to = %target.token_label(), key_id = %hex::encode(id), "unwrapped HSM key");
    Ok(())
}

/// Makes the key `id` present on every HSM in `targets` (it exists on `source`) without its
/// plaintext ever leaving hardware: [`wrap_under_cluster_key`] on `source`,
/// [`unwrap_under_cluster_key`] on each target. Targets that already hold the key are skipped,
/// so the call is idempotent. All tokens must belong to one cluster (see
/// [`crate::admin::establish_cluster_wrapping_key`]).
pub fn replicate_key(
    source: &Hsm,
    targets: &[&Hsm],
    id: &[u8; 16],
    label: &str,
) -> Result<(), HsmError> {
    let mut blob: Option<Zeroizing<Vec<u8>>> = None;
    let from = format!("{:?}", source.token_label());
    for target in targets {
        if target.has_key(id)? {
            continue;
        }
        if blob.is_none() {
            blob = Some(wrap_under_cluster_key(source, id)?.1);
        }
        if let Some(wrapped) = blob.as_ref() {
            unwrap_missing_key(target, id, label, wrapped, &from)?;
        }
    }
    Ok(())
}
