//! Tests against SoftHSM2, with a private token directory per test process.
//!
//! `SOFTHSM2_CONF` is process-global and read once at `C_Initialize`, so one configuration is
//! set up once (OnceLock) for the whole test binary and every test uses unique token labels.

use super::*;
use crate::error::map_ck;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeInfo, AttributeType, KeyType, ObjectClass};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const SO_PIN: &str = "so-pin-1234";
const USER_PIN: &str = "kmsuser1pass";

static CONF_DIR: OnceLock<PathBuf> = OnceLock::new();
static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn module() -> PathBuf {
    std::env::var_os("KMS_HSM_TEST_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"))
}

/// Creates the process-wide SoftHSM2 config (once) and removes token dirs left behind by test
/// processes that no longer run.
fn setup() {
    CONF_DIR.get_or_init(|| {
        let tmp = std::env::temp_dir();
        if let Ok(entries) = std::fs::read_dir(&tmp) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if let Some(pid) = name.strip_prefix("kms-hsm-test-") {
                    if !PathBuf::from(format!("/proc/{pid}")).exists() {
                        let _ = std::fs::remove_dir_all(e.path());
                    }
                }
            }
        }
        let dir = tmp.join(format!("kms-hsm-test-{}", std::process::id()));
        let tokens = dir.join("tokens");
        std::fs::create_dir_all(&tokens).unwrap();
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                tokens.display()
            ),
        )
        .unwrap();
        std::env::set_var("SOFTHSM2_CONF", &conf);
        dir
    });
}

fn unique_label(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let l = format!("{prefix}-{n}");
    assert!(l.len() <= 32, "label too long: {l}");
    l
}

/// A fresh token with SO PIN and user PIN set.
fn new_token(prefix: &str) -> TokenRef {
    setup();
    let t = TokenRef::new(module(), unique_label(prefix));
    admin::init_token(&t.module, &t.label, SO_PIN).unwrap();
    admin::init_user_pin(&t, SO_PIN, USER_PIN).unwrap();
    t
}

fn key_id(n: u8) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[0] = 0x4b;
    id[15] = n;
    id
}

fn rv(e: CkError) -> RvError {
    match e {
        CkError::Pkcs11(rv, _) => rv,
        other => panic!("not a PKCS#11 error: {other}"),
    }
}

fn bool_attr(hsm: &Hsm, h: cryptoki::object::ObjectHandle, t: AttributeType) -> bool {
    let s = hsm.session().unwrap();
    let attrs = s.get_attributes(h, &[t]).unwrap();
    match attrs.as_slice() {
        [Attribute::Sensitive(b)]
        | [Attribute::Extractable(b)]
        | [Attribute::AlwaysSensitive(b)]
        | [Attribute::NeverExtractable(b)]
        | [Attribute::WrapWithTrusted(b)]
        | [Attribute::Trusted(b)]
        | [Attribute::Modifiable(b)]
        | [Attribute::Copyable(b)]
        | [Attribute::Private(b)]
        | [Attribute::Token(b)]
        | [Attribute::Local(b)]
        | [Attribute::Encrypt(b)]
        | [Attribute::Decrypt(b)]
        | [Attribute::Wrap(b)]
        | [Attribute::Unwrap(b)]
        | [Attribute::Derive(b)] => *b,
        other => panic!("unexpected {other:?} for {t:?}"),
    }
}

fn key_handle(hsm: &Hsm, id: &[u8; 16]) -> cryptoki::object::ObjectHandle {
    let s = hsm.session().unwrap();
    let found = s
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Id(id.to_vec()),
        ])
        .unwrap();
    assert_eq!(found.len(), 1);
    found[0]
}

#[test]
fn hsm_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Hsm>();
    assert_send_sync::<HsmError>();
}

#[test]
fn init_token_and_user_pin_then_login() {
    let t = new_token("init");
    let hsm = Hsm::login(&t, USER_PIN).unwrap();
    assert_eq!(hsm.token_label(), t.label);
    hsm.probe().unwrap();
    hsm.logout().unwrap();

    assert_eq!(
        admin::init_token(&t.module, &t.label, SO_PIN),
        Err(HsmError::TokenAlreadyExists(t.label.clone()))
    );
    assert!(matches!(
        admin::init_token(&t.module, "this-label-is-longer-than-32-bytes", SO_PIN),
        Err(HsmError::Other(_))
    ));
    assert!(matches!(
        admin::init_user_pin(&t, "wrong-so-pin", USER_PIN),
        Err(HsmError::PinIncorrect)
    ));
}

#[test]
fn unknown_token_and_module() {
    setup();
    let t = TokenRef::new(module(), "no-such-token-label");
    assert_eq!(
        Hsm::login(&t, USER_PIN).err(),
        Some(HsmError::TokenNotFound("no-such-token-label".into()))
    );
    let bad = TokenRef::new("/nonexistent/libpkcs11.so", "x");
    assert!(matches!(
        Hsm::login(&bad, USER_PIN),
        Err(HsmError::ModuleLoad(_))
    ));
}

#[test]
fn login_with_wrong_pin_is_pin_incorrect() {
    let t = new_token("wrongpin");
    assert_eq!(
        Hsm::login(&t, "not-the-pin").err(),
        Some(HsmError::PinIncorrect)
    );
    // The failed attempt left no login behind.
    Hsm::login(&t, USER_PIN).unwrap().logout().unwrap();
}

#[test]
fn login_before_user_pin_exists() {
    setup();
    let t = TokenRef::new(module(), unique_label("nouser"));
    admin::init_token(&t.module, &t.label, SO_PIN).unwrap();
    assert_eq!(
        Hsm::login(&t, USER_PIN).err(),
        Some(HsmError::UserPinNotInitialized)
    );
    admin::init_user_pin(&t, SO_PIN, USER_PIN).unwrap();
    Hsm::login(&t, USER_PIN).unwrap();
}

#[test]
fn second_login_in_same_process_is_user_already_logged_in() {
    let t = new_token("twice");
    let hsm = Hsm::login(&t, USER_PIN).unwrap();
    assert_eq!(
        Hsm::login(&t, USER_PIN).err(),
        Some(HsmError::UserAlreadyLoggedIn)
    );
    // The SO cannot log in either while the user is logged in.
    assert_eq!(
        admin::init_user_pin(&t, SO_PIN, USER_PIN),
        Err(HsmError::UserAlreadyLoggedIn)
    );
    hsm.logout().unwrap();
    // Logged out: operations fail, logout is idempotent.
    assert_eq!(hsm.probe(), Err(HsmError::NotLoggedIn));
    assert_eq!(hsm.random(1), Err(HsmError::NotLoggedIn));
    hsm.logout().unwrap();
    drop(hsm);
    let hsm = Hsm::login(&t, USER_PIN).unwrap();
    // Dropping (closing all sessions) logs out too.
    drop(hsm);
    Hsm::login(&t, USER_PIN).unwrap();
}

#[test]
fn change_pin_then_old_fails_new_works() {
    let t = new_token("chpin");
    let hsm = Hsm::login(&t, USER_PIN).unwrap();
    assert_eq!(
        hsm.change_pin("not-the-old-pin", "NewPassw0rd"),
        Err(HsmError::PinIncorrect)
    );
    hsm.change_pin(USER_PIN, "NewPassw0rd").unwrap();
    hsm.logout().unwrap();
    assert_eq!(Hsm::login(&t, USER_PIN).err(), Some(HsmError::PinIncorrect));
    let hsm = Hsm::login(&t, "NewPassw0rd").unwrap();
    // Rotate again (kmsd rotates on every connect).
    hsm.change_pin("NewPassw0rd", "Rotated2Again").unwrap();
    hsm.logout().unwrap();
    Hsm::login(&t, "Rotated2Again").unwrap();
}

#[test]
fn set_pin_in_read_only_session_is_session_read_only() {
    let t = new_token("ropin");
    let ctx = crate::module::context(&t.module).unwrap();
    let slot = crate::module::find_slot(&ctx, &t.label).unwrap();
    let ro = ctx.open_ro_session(slot).unwrap();
    let pin = cryptoki::types::AuthPin::from(USER_PIN);
    assert_eq!(
        ro.set_pin(&pin, &pin).map_err(map_ck),
        Err(HsmError::SessionReadOnly)
    );
}

#[test]
fn generate_key_gcm_round_trip_and_tamper() {
    let t = new_token("gcm");
    let hsm = Hsm::login(&t, USER_PIN).unwrap();
    let id = key_id(1);
    assert!(!hsm.has_key(&id).unwrap());
    hsm.generate_aes256_key(&id, "arn:aws:kms:us-east-1:111122223333:key/gcm")
        .unwrap();
    assert!(hsm.has_key(&id).unwrap());
    assert_eq!(
        hsm.generate_aes256_key(&id, "dup"),
        Err(HsmError::KeyAlreadyExists)
    );

    let iv = [7u8; 12];
    let aad = b"kms-context";
    let pt = b"attack at dawn, 256 bits of fun";
    let ct = hsm.aes_gcm_encrypt(&id, &iv, aad, pt).unwrap();
    assert_eq!(ct.len(), pt.len() + GCM_TAG_LEN);
    assert_eq!(
        hsm.aes_gcm_decrypt(&id, &iv, aad, &ct).unwrap().as_slice(),
        pt
    );
    // Empty plaintext and empty AAD.
    let ct0 = hsm.aes_gcm_encrypt(&id, &iv, b"", b"").unwrap();
    assert_eq!(ct0.len(), GCM_TAG_LEN);
    assert!(hsm.aes_gcm_decrypt(&id, &iv, b"", &ct0).unwrap().is_empty());

    let mut bad_tag = ct.clone();
    *bad_tag.last_mut().unwrap() ^= 1;
    assert_eq!(
        hsm.aes_gcm_decrypt(&id, &iv, aad, &bad_tag),
        Err(HsmError::Decrypt)
    );
    let mut bad_ct = ct.clone();
    bad_ct[0] ^= 0x80;
    assert_eq!(
        hsm.aes_gcm_decrypt(&id, &iv, aad, &bad_ct),
        Err(HsmError::Decrypt)
    );
    assert_eq!(
        hsm.aes_gcm_decrypt(&id, &iv, b"kms-contexT", &ct),
        Err(HsmError::Decrypt)
    );
    assert_eq!(
        hsm.aes_gcm_decrypt(&id, &[8u8; 12], aad, &ct),
        Err(HsmError::Decrypt)
    );
    assert_eq!(
        hsm.aes_gcm_decrypt(&id, &iv, aad, &ct[..10]),
        Err(HsmError::Decrypt)
    );
    // The session is still fine after a failed decrypt.
    assert_eq!(
        hsm.aes_gcm_decrypt(&id, &iv, aad, &ct).unwrap().as_slice(),
        pt
    );
    assert_eq!(
        hsm.aes_gcm_encrypt(&key_id(99), &iv, aad, pt),
        Err(HsmError::KeyNotFound)
    );
}

#[test]
fn key_attributes_and_non_extractability() {
    let t = new_token("attrs");
    let hsm = Hsm::login(&t, USER_PIN).unwrap();
    let id = key_id(2);
    hsm.generate_aes256_key(&id, "arn:aws:kms:us-east-1:111122223333:key/attrs")
        .unwrap();
    let h = key_handle(&hsm, &id);
    assert!(bool_attr(&hsm, h, AttributeType::Token));
    assert!(bool_attr(&hsm, h, AttributeType::Private));
    assert!(bool_attr(&hsm, h, AttributeType::Sensitive));
    assert!(bool_attr(&hsm, h, AttributeType::AlwaysSensitive));
    // By design: extractable, but only by wrapping under a CKA_TRUSTED key.
    assert!(bool_attr(&hsm, h, AttributeType::Extractable));
    assert!(bool_attr(&hsm, h, AttributeType::WrapWithTrusted));
    assert!(!bool_attr(&hsm, h, AttributeType::NeverExtractable));
    assert!(!bool_attr(&hsm, h, AttributeType::Modifiable));
    assert!(!bool_attr(&hsm, h, AttributeType::Copyable));
    assert!(bool_attr(&hsm, h, AttributeType::Local));
    assert!(!bool_attr(&hsm, h, AttributeType::Wrap));
    assert!(!bool_attr(&hsm, h, AttributeType::Derive));
    {
        let s = hsm.session().unwrap();
        let attrs = s
            .get_attributes(h, &[AttributeType::Label, AttributeType::Id])
            .unwrap();
        assert_eq!(
            attrs,
            vec![
                Attribute::Label(b"arn:aws:kms:us-east-1:111122223333:key/attrs".to_vec()),
                Attribute::Id(id.to_vec()),
            ]
        );

        // CKA_VALUE cannot be read: C_GetAttributeValue reports CKR_ATTRIBUTE_SENSITIVE.
        assert!(matches!(
            s.get_attribute_info(h, &[AttributeType::Value])
                .unwrap()
                .as_slice(),
            [AttributeInfo::Sensitive]
        ));
        assert!(s
            .get_attributes(h, &[AttributeType::Value])
            .unwrap()
            .is_empty());

        // Plain C_WrapKey under a key the user made fails: the user cannot make it trusted.
        let untrusted = s
            .generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::Token(false),
                    Attribute::ValueLen(32.into()),
                    Attribute::Wrap(true),
                    Attribute::Unwrap(true),
                ],
            )
            .unwrap();
        for mech in [Mechanism::AesKeyWrapPad, Mechanism::AesKeyWrap] {
            assert_eq!(
                rv(s.wrap_key(&mech, untrusted, h).unwrap_err()),
                RvError::KeyNotWrappable
            );
        }
        assert_eq!(
            rv(s.update_attributes(untrusted, &[Attribute::Trusted(true)])
                .unwrap_err()),
            RvError::AttributeReadOnly
        );
        assert_eq!(
            rv(s.generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::Token(false),
                    Attribute::ValueLen(32.into()),
                    Attribute::Wrap(true),
                    Attribute::Trusted(true),
                ],
            )
            .unwrap_err()),
            RvError::AttributeReadOnly
        );
        // The policy cannot be relaxed, nor the key copied with other attributes.
        for a in [
            Attribute::WrapWithTrusted(false),
            Attribute::Sensitive(false),
            Attribute::Derive(true),
            Attribute::Wrap(true),
        ] {
            assert!(s.update_attributes(h, &[a]).is_err());
        }
        assert!(s.copy_object(h, &[Attribute::Sensitive(false)]).is_err());
        assert!(s.copy_object(h, &[]).is_err());
        // Only AES-GCM: no raw block-cipher oracle.
        assert_eq!(
            rv(s.encrypt(&Mechanism::AesEcb, h, &[0u8; 16]).unwrap_err()),
            RvError::MechanismInvalid
        );
    }
}

#[test]
fn destroy_key() {
    let t = new_token("destroy");
    let hsm = Hsm::login(&t, USER_PIN).unwrap();
    let id = key_id(3);
    hsm.generate_aes256_key(&id, "k").unwrap();
    hsm.aes_gcm_encrypt(&id, &[0; 12], b"", b"x").unwrap();
    hsm.destroy_key(&id).unwrap();
    assert!(!hsm.has_key(&id).unwrap());
    assert_eq!(hsm.destroy_key(&id), Err(HsmError::KeyNotFound));
    assert_eq!(
        hsm.aes_gcm_encrypt(&id, &[0; 12], b"", b"x"),
        Err(HsmError::KeyNotFound)
    );
}

#[test]
fn stale_cached_handle_is_looked_up_again() {
    let t = new_token("stale");
    let hsm = Hsm::login(&t, USER_PIN).unwrap();
    let id = key_id(4);
    hsm.generate_aes256_key(&id, "k").unwrap();
    hsm.aes_gcm_encrypt(&id, &[0; 12], b"", b"x").unwrap();
    // Replace the key behind the cache's back.
    {
        let s = hsm.session().unwrap();
        s.destroy_object(key_handle(&hsm, &id)).unwrap();
        s.generate_key(
            &Mechanism::AesKeyGen,
            &crate::template::kms_key_template(&id, "k2", true),
        )
        .unwrap();
    }
    let ct = hsm.aes_gcm_encrypt(&id, &[0; 12], b"", b"x").unwrap();
    assert_eq!(
        hsm.aes_gcm_decrypt(&id, &[0; 12], b"", &ct)
            .unwrap()
            .as_slice(),
        b"x"
    );
    {
        let s = hsm.session().unwrap();
        s.destroy_object(key_handle(&hsm, &id)).unwrap();
    }
    assert_eq!(
        hsm.aes_gcm_encrypt(&id, &[0; 12], b"", b"x"),
        Err(HsmError::KeyNotFound)
    );
}

#[test]
fn random_bytes() {
    let t = new_token("rng");
    let hsm = Hsm::login(&t, USER_PIN).unwrap();
    assert!(hsm.random(0).unwrap().is_empty());
    assert_eq!(hsm.random(1).unwrap().len(), 1);
    let a = hsm.random(32).unwrap();
    let b = hsm.random(32).unwrap();
    assert_eq!(a.len(), 32);
    assert_ne!(a, b);
    assert_eq!(hsm.random(4096).unwrap().len(), 4096);
    hsm.probe().unwrap();
}

/// McGrew–Viega GCM test case 16 (AES-256, 96-bit IV, AAD), with the key imported.
#[test]
fn known_answer_gcm_test_case_16() {
    let t = new_token("kat");
    let hsm = Hsm::login(&t, USER_PIN).unwrap();
    let key: [u8; 32] =
        hex::decode("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
            .unwrap()
            .try_into()
            .unwrap();
    let iv: [u8; 12] = hex::decode("cafebabefacedbaddecaf888")
        .unwrap()
        .try_into()
        .unwrap();
    let aad = hex::decode("feedfacedeadbeeffeedfacedeadbeefabaddad2").unwrap();
    let pt = hex::decode(
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
    )
    .unwrap();
    let expected = hex::decode(concat!(
        "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
        "76fc6ece0f4e1768cddf8853bb2d551b"
    ))
    .unwrap();
    let id = key_id(16);
    hsm.import_aes256_key_for_tests(&id, "gcm-tc16", &key)
        .unwrap();
    let h = key_handle(&hsm, &id);
    assert!(!bool_attr(&hsm, h, AttributeType::Extractable));
    let ct = hsm.aes_gcm_encrypt(&id, &iv, &aad, &pt).unwrap();
    assert_eq!(hex::encode(&ct), hex::encode(&expected));
    assert_eq!(
        hsm.aes_gcm_decrypt(&id, &iv, &aad, &expected)
            .unwrap()
            .as_slice(),
        pt.as_slice()
    );
}

#[test]
fn replication_across_three_tokens() {
    let a = new_token("repA");
    let b = new_token("repB");
    let c = new_token("repC");
    let d = new_token("repD");
    let other = new_token("repX");
    let lonely = new_token("repN");

    // SO step (no crypto user logged in yet in this process).
    let cid = admin::establish_cluster_wrapping_key(
        &[a.clone(), b.clone(), c.clone()],
        &[SO_PIN, SO_PIN, SO_PIN],
    )
    .unwrap();
    assert_eq!(cid.len(), 16);
    // Idempotent, and extends the cluster to a new token from any member.
    assert_eq!(
        admin::establish_cluster_wrapping_key(&[c.clone(), d.clone()], &[SO_PIN, SO_PIN]).unwrap(),
        cid
    );
    // A token of another cluster cannot be merged.
    let other_cid =
        admin::establish_cluster_wrapping_key(std::slice::from_ref(&other), &[SO_PIN]).unwrap();
    assert_ne!(other_cid, cid);
    assert!(matches!(
        admin::establish_cluster_wrapping_key(&[a.clone(), other.clone()], &[SO_PIN, SO_PIN]),
        Err(HsmError::ClusterKeyMismatch(_))
    ));
    assert!(matches!(
        admin::establish_cluster_wrapping_key(std::slice::from_ref(&a), &[SO_PIN, SO_PIN]),
        Err(HsmError::Other(_))
    ));

    // A pool of one session must do (no operation may hold two sessions of one Hsm).
    let ha = Hsm::login_with_pool_size(&a, USER_PIN, 1).unwrap();
    let hb = Hsm::login(&b, USER_PIN).unwrap();
    let hc = Hsm::login(&c, USER_PIN).unwrap();
    let hd = Hsm::login(&d, USER_PIN).unwrap();
    let hx = Hsm::login(&other, USER_PIN).unwrap();
    let hn = Hsm::login(&lonely, USER_PIN).unwrap();
    for h in [&ha, &hb, &hc, &hd] {
        assert_eq!(h.cluster_key_id().unwrap(), Some(cid.clone()));
    }
    assert_eq!(hn.cluster_key_id().unwrap(), None);

    let id = key_id(5);
    let label = "arn:aws:kms:us-east-1:111122223333:key/replicated";
    ha.generate_aes256_key(&id, label).unwrap();
    replicate_key(&ha, &[&hb, &hc], &id, label).unwrap();
    // Idempotent.
    replicate_key(&ha, &[&hb, &hc], &id, label).unwrap();
    for h in [&hb, &hc] {
        assert!(h.has_key(&id).unwrap());
    }
    // What A encrypted, B and C decrypt, and vice versa.
    let iv = [3u8; 12];
    let ct = ha
        .aes_gcm_encrypt(&id, &iv, b"ctx", b"replicated secret")
        .unwrap();
    for h in [&hb, &hc] {
        assert_eq!(
            h.aes_gcm_decrypt(&id, &iv, b"ctx", &ct).unwrap().as_slice(),
            b"replicated secret"
        );
    }
    let ct_c = hc.aes_gcm_encrypt(&id, &iv, b"", b"from C").unwrap();
    assert_eq!(
        ha.aes_gcm_decrypt(&id, &iv, b"", &ct_c).unwrap().as_slice(),
        b"from C"
    );
    // A replica can be replicated further (e.g. when the origin HSM is gone).
    replicate_key(&hb, &[&hd], &id, label).unwrap();
    assert_eq!(
        hd.aes_gcm_decrypt(&id, &iv, b"ctx", &ct)
            .unwrap()
            .as_slice(),
        b"replicated secret"
    );

    // The replica has the same policy (but is not CKA_LOCAL/ALWAYS_SENSITIVE: it was unwrapped).
    let rh = key_handle(&hb, &id);
    assert!(bool_attr(&hb, rh, AttributeType::Sensitive));
    assert!(bool_attr(&hb, rh, AttributeType::Private));
    assert!(bool_attr(&hb, rh, AttributeType::Token));
    assert!(bool_attr(&hb, rh, AttributeType::WrapWithTrusted));
    assert!(!bool_attr(&hb, rh, AttributeType::Modifiable));
    assert!(!bool_attr(&hb, rh, AttributeType::Copyable));
    assert!(!bool_attr(&hb, rh, AttributeType::Local));
    assert!(!bool_attr(&hb, rh, AttributeType::AlwaysSensitive));
    {
        let s = hb.session().unwrap();
        assert!(matches!(
            s.get_attribute_info(rh, &[AttributeType::Value])
                .unwrap()
                .as_slice(),
            [AttributeInfo::Sensitive]
        ));
        let attrs = s.get_attributes(rh, &[AttributeType::Label]).unwrap();
        assert_eq!(attrs, vec![Attribute::Label(label.as_bytes().to_vec())]);
    }

    // The cluster wrapping key: trusted, public (SO-made), wrap/unwrap only, immutable.
    {
        let s = ha.session().unwrap();
        let cwk = crate::cluster::find_cluster_key(&s).unwrap().unwrap();
        drop(s);
        assert!(bool_attr(&ha, cwk, AttributeType::Trusted));
        assert!(bool_attr(&ha, cwk, AttributeType::Sensitive));
        assert!(!bool_attr(&ha, cwk, AttributeType::Private));
        assert!(!bool_attr(&ha, cwk, AttributeType::Modifiable));
        assert!(!bool_attr(&ha, cwk, AttributeType::Encrypt));
        assert!(!bool_attr(&ha, cwk, AttributeType::Decrypt));
        let kh = key_handle(&ha, &id);
        let s = ha.session().unwrap();
        assert!(s
            .update_attributes(cwk, &[Attribute::Decrypt(true)])
            .is_err());
        assert!(s.copy_object(cwk, &[]).is_err());

        // The classic wrap/unwrap attack: wrap the KMS key under the CWK (allowed), then
        // unwrap it as a non-sensitive, extractable key to read CKA_VALUE. The CWK's
        // CKA_UNWRAP_TEMPLATE makes SoftHSM2 refuse any template but the KMS key policy.
        let blob = s.wrap_key(&Mechanism::AesKeyWrapPad, cwk, kh).unwrap();
        let evil_templates: Vec<Vec<Attribute>> = vec![
            vec![
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Token(false),
                Attribute::Sensitive(false),
                Attribute::Extractable(true),
            ],
            crate::template::kms_key_template(&key_id(66), "evil", false)
                .into_iter()
                .map(|a| match a {
                    Attribute::Sensitive(_) => Attribute::Sensitive(false),
                    a => a,
                })
                .collect(),
            crate::template::kms_key_template(&key_id(67), "evil", false)
                .into_iter()
                .map(|a| match a {
                    Attribute::WrapWithTrusted(_) => Attribute::WrapWithTrusted(false),
                    a => a,
                })
                .collect(),
        ];
        for evil in evil_templates {
            assert_eq!(
                rv(s.unwrap_key(&Mechanism::AesKeyWrapPad, cwk, &blob, &evil)
                    .unwrap_err()),
                RvError::TemplateInconsistent
            );
        }
        // Another mechanism with the CWK (to get raw AES) is refused.
        assert_eq!(
            rv(s.unwrap_key(
                &Mechanism::AesKeyWrap,
                cwk,
                &blob,
                &crate::template::kms_key_template(&key_id(68), "evil", false)
            )
            .unwrap_err()),
            RvError::MechanismInvalid
        );
    }

    // Tokens of another cluster / without a cluster key.
    assert!(matches!(
        replicate_key(&ha, &[&hx], &id, label),
        Err(HsmError::ClusterKeyMismatch(_))
    ));
    assert!(!hx.has_key(&id).unwrap());
    assert_eq!(
        replicate_key(&ha, &[&hn], &id, label),
        Err(HsmError::ClusterKeyNotFound(lonely.label.clone()))
    );
    assert_eq!(
        replicate_key(&hn, &[&ha], &key_id(77), label),
        Err(HsmError::ClusterKeyNotFound(lonely.label.clone()))
    );
    assert_eq!(
        replicate_key(&ha, &[&hb], &key_id(78), label),
        Err(HsmError::KeyNotFound)
    );
}

#[test]
fn session_pool_serves_threads() {
    let t = new_token("pool");
    let hsm = Hsm::login_with_pool_size(&t, USER_PIN, 2).unwrap();
    let id = key_id(6);
    hsm.generate_aes256_key(&id, "k").unwrap();
    std::thread::scope(|sc| {
        for n in 0..4u8 {
            let hsm = &hsm;
            sc.spawn(move || {
                for i in 0..50u8 {
                    let iv = [n; 12];
                    let pt = [i; 64];
                    let ct = hsm.aes_gcm_encrypt(&id, &iv, &[n], &pt).unwrap();
                    let back = hsm.aes_gcm_decrypt(&id, &iv, &[n], &ct).unwrap();
                    assert_eq!(back.as_slice(), &pt);
                }
            });
        }
    });
    assert!(hsm.open_sessions() <= 2);
}

/// Rough throughput of 256-byte GCM encryptions through one `Hsm`:
/// `cargo test -p kms-hsm --release -- --ignored --nocapture throughput`.
#[test]
#[ignore]
fn throughput() {
    let t = new_token("perf");
    let hsm = Hsm::login_with_pool_size(&t, USER_PIN, 4).unwrap();
    let id = key_id(7);
    hsm.generate_aes256_key(&id, "k").unwrap();
    let pt = [0x5au8; 256];
    let run = |threads: usize| {
        let dur = Duration::from_secs(3);
        let total = AtomicUsize::new(0);
        let start = Instant::now();
        std::thread::scope(|sc| {
            for n in 0..threads {
                let (hsm, total) = (&hsm, &total);
                sc.spawn(move || {
                    let mut iv = [0u8; 12];
                    iv[0] = n as u8;
                    let mut count = 0usize;
                    while start.elapsed() < dur {
                        iv[4..12].copy_from_slice(&(count as u64).to_be_bytes());
                        hsm.aes_gcm_encrypt(&id, &iv, b"aad", &pt).unwrap();
                        count += 1;
                    }
                    total.fetch_add(count, Ordering::Relaxed);
                });
            }
        });
        total.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
    };
    for threads in [1, 2, 4] {
        println!(
            "SoftHSM2 AES-256-GCM encrypt 256 B, {threads} thread(s): {:.0} ops/s",
            run(threads)
        );
    }
    // Control: two threads on two tokens (two Hsm) — separates SoftHSM locking from CPU limits.
    let t2 = new_token("perf2");
    let hsm2 = Hsm::login(&t2, USER_PIN).unwrap();
    hsm2.generate_aes256_key(&id, "k").unwrap();
    let total = AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|sc| {
        for h in [&hsm, &hsm2] {
            let total = &total;
            sc.spawn(move || {
                let mut count = 0usize;
                while start.elapsed() < Duration::from_secs(3) {
                    h.aes_gcm_encrypt(&id, &[1; 12], b"aad", &pt).unwrap();
                    count += 1;
                }
                total.fetch_add(count, Ordering::Relaxed);
            });
        }
    });
    println!(
        "2 threads on 2 tokens: {:.0} ops/s",
        total.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
    );
    let s = Instant::now();
    let n = 2000;
    for _ in 0..n {
        hsm.probe().unwrap();
    }
    println!(
        "probe: {:.1} µs",
        s.elapsed().as_secs_f64() * 1e6 / n as f64
    );
}

#[test]
fn lost_login_is_not_logged_in_not_key_not_found() {
    let t = new_token("lost");
    let hsm = Hsm::login(&t, USER_PIN).unwrap();
    let id = key_id(8);
    hsm.generate_aes256_key(&id, "k").unwrap();
    hsm.aes_gcm_encrypt(&id, &[0; 12], b"", b"x").unwrap();
    // Someone logs the process out of the token behind the Hsm's back.
    hsm.session().unwrap().logout().unwrap();
    assert_eq!(
        hsm.aes_gcm_encrypt(&id, &[0; 12], b"", b"x"),
        Err(HsmError::NotLoggedIn)
    );
    assert_eq!(hsm.has_key(&id), Err(HsmError::NotLoggedIn));
    assert_eq!(hsm.probe(), Err(HsmError::NotLoggedIn));
}

/// An XKS key's handle is kept between calls; when the key is destroyed behind the proxy's back
/// (another process, here a raw session) and a new key takes its label, the next call uses the
/// new key, and with no key left the call is KeyNotFound, never the old key.
#[test]
fn xks_kept_handle_follows_the_token() {
    let t = new_token("xks-keep");
    let hsm = Hsm::login(&t, USER_PIN).unwrap();
    hsm.xks_generate_key("k").unwrap();
    let iv = [7u8; 12];
    let first = hsm
        .xks_aes_gcm_encrypt("k", &iv, b"aad", b"secret")
        .unwrap();
    assert!(hsm.xks_key_info("k").unwrap().unwrap().is_aes256());
    assert_eq!(hsm.xks_handles.lock().unwrap().len(), 1, "handle kept");

    // Destroy the key without going through the kept handle, then make a new one.
    let destroy_all = |hsm: &Hsm| {
        let s = hsm.session().unwrap();
        for h in s
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Label(b"k".to_vec()),
            ])
            .unwrap()
        {
            s.destroy_object(h).unwrap();
        }
    };
    destroy_all(&hsm);
    hsm.xks_generate_key("k").unwrap();
    assert!(matches!(
        hsm.xks_aes_gcm_decrypt("k", &iv, b"aad", &first),
        Err(HsmError::Decrypt)
    ));
    let second = hsm
        .xks_aes_gcm_encrypt("k", &iv, b"aad", b"secret")
        .unwrap();
    assert_ne!(first, second, "the new key encrypted");
    assert_eq!(
        &*hsm.xks_aes_gcm_decrypt("k", &iv, b"aad", &second).unwrap(),
        b"secret"
    );

    destroy_all(&hsm);
    assert!(matches!(
        hsm.xks_aes_gcm_encrypt("k", &iv, b"aad", b"secret"),
        Err(HsmError::KeyNotFound)
    ));
    assert_eq!(hsm.xks_key_info("k").unwrap(), None);
}

#[test]
fn reinit_token_erases_every_object_and_the_user() {
    let t = new_token("wipe");
    assert_eq!(admin::cluster_key_id(&t, SO_PIN).unwrap(), None);
    let cid = admin::establish_cluster_wrapping_key(std::slice::from_ref(&t), &[SO_PIN]).unwrap();
    assert_eq!(
        admin::cluster_key_id(&t, SO_PIN).unwrap(),
        Some(cid),
        "asked again, the same key (and asking creates none)"
    );
    {
        let h = Hsm::login(&t, USER_PIN).unwrap();
        h.generate_aes256_key(&key_id(1), "k").unwrap();
        // Refused while this process has a session on the token.
        assert!(admin::reinit_token(&t, SO_PIN).is_err());
        h.logout().unwrap();
    }
    assert!(admin::reinit_token(&t, "wrong-so-pin").is_err());
    admin::reinit_token(&t, SO_PIN).unwrap();
    assert_eq!(admin::cluster_key_id(&t, SO_PIN).unwrap(), None);
    assert!(matches!(
        Hsm::login(&t, USER_PIN),
        Err(HsmError::UserPinNotInitialized)
    ));
    admin::init_user_pin(&t, SO_PIN, USER_PIN).unwrap();
    let h = Hsm::login(&t, USER_PIN).unwrap();
    assert!(!h.has_key(&key_id(1)).unwrap(), "the key is gone");
}
