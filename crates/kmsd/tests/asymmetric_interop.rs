//! Asymmetric, HMAC and key-agreement keys, checked against code nobody here wrote: Python
//! `cryptography` (OpenSSL) verifies kmsd's signatures, encrypts for kmsd's RSA keys, derives the
//! same ECDH secrets and loads kmsd's data key pairs; `openssl` reads the DER it returns.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{
    DataKeyPairSpec, EncryptionAlgorithmSpec, KeyAgreementAlgorithmSpec, KeySpec, KeyUsageType,
    MacAlgorithmSpec, MessageType, SigningAlgorithmSpec,
};
use base64::Engine as _;
use common::Server;
use serde_json::{json, Value};

#[path = "common/python_peer.rs"]
mod python_peer;

/// The Python peer of these tests (tests/interop/crypto_peer.py).
struct Peer;

impl Peer {
    fn start() -> python_peer::PythonPeer {
        python_peer::PythonPeer::start("crypto_peer.py", "the `cryptography` package")
    }
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}
fn unb64(v: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap())
        .unwrap()
}
fn sha(bits: u32, m: &[u8]) -> Vec<u8> {
    let alg = match bits {
        256 => &aws_lc_rs::digest::SHA256,
        384 => &aws_lc_rs::digest::SHA384,
        _ => &aws_lc_rs::digest::SHA512,
    };
    aws_lc_rs::digest::digest(alg, m).as_ref().to_vec()
}

async fn create(kms: &aws_sdk_kms::Client, spec: KeySpec, usage: KeyUsageType) -> String {
    kms.create_key()
        .key_spec(spec)
        .key_usage(usage)
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .key_id()
        .to_owned()
}

#[tokio::test]
async fn signatures_verify_outside_kmsd() {
    let server = Server::start(&[]);
    let kms = server.client();
    let mut peer = Peer::start();
    let cases: &[(KeySpec, &[(SigningAlgorithmSpec, u32)])] = &[
        (
            KeySpec::Rsa2048,
            &[
                (SigningAlgorithmSpec::RsassaPssSha256, 256),
                (SigningAlgorithmSpec::RsassaPssSha384, 384),
                (SigningAlgorithmSpec::RsassaPssSha512, 512),
                (SigningAlgorithmSpec::RsassaPkcs1V15Sha256, 256),
                (SigningAlgorithmSpec::RsassaPkcs1V15Sha384, 384),
                (SigningAlgorithmSpec::RsassaPkcs1V15Sha512, 512),
            ],
        ),
        (
            KeySpec::Rsa3072,
            &[(SigningAlgorithmSpec::RsassaPssSha256, 256)],
        ),
        (
            KeySpec::EccNistP256,
            &[(SigningAlgorithmSpec::EcdsaSha256, 256)],
        ),
        (
            KeySpec::EccNistP384,
            &[(SigningAlgorithmSpec::EcdsaSha384, 384)],
        ),
        (
            KeySpec::EccNistP521,
            &[(SigningAlgorithmSpec::EcdsaSha512, 512)],
        ),
        (
            KeySpec::EccSecgP256K1,
            &[(SigningAlgorithmSpec::EcdsaSha256, 256)],
        ),
    ];
    let message = b"the message kmsd signs".to_vec();
    for (spec, algs) in cases {
        let id = create(&kms, spec.clone(), KeyUsageType::SignVerify).await;
        let pk = kms.get_public_key().key_id(&id).send().await.unwrap();
        assert_eq!(pk.key_spec(), Some(spec));
        assert_eq!(pk.key_usage(), Some(&KeyUsageType::SignVerify));
        let spki = pk.public_key().unwrap().as_ref().to_vec();
        let listed = kms
            .describe_key()
            .key_id(&id)
            .send()
            .await
            .unwrap()
            .key_metadata()
            .unwrap()
            .signing_algorithms()
            .to_vec();
        assert_eq!(
            listed.len(),
            algs.len().max(if matches!(spec, KeySpec::Rsa3072) {
                6
            } else {
                1
            })
        );
        for (alg, bits) in algs.iter() {
            for digest_mode in [false, true] {
                let input = if digest_mode {
                    sha(*bits, &message)
                } else {
                    message.clone()
                };
                let mt = if digest_mode {
                    MessageType::Digest
                } else {
                    MessageType::Raw
                };
                let sig = kms
                    .sign()
                    .key_id(&id)
                    .message(Blob::new(input.clone()))
                    .message_type(mt.clone())
                    .signing_algorithm(alg.clone())
                    .send()
                    .await
                    .unwrap();
                let sig = sig.signature().unwrap().as_ref().to_vec();
                // The peer verifies against the original message either way.
                let r = peer.call(json!({"op":"verify","alg":alg.as_str(),"spki":b64(&spki),"message":b64(&message),"digest":false,"signature":b64(&sig)}));
                assert_eq!(r["valid"], true, "{spec:?} {alg:?} digest={digest_mode}");
                let ok = kms
                    .verify()
                    .key_id(&id)
                    .message(Blob::new(input))
                    .message_type(mt)
                    .signing_algorithm(alg.clone())
                    .signature(Blob::new(sig.clone()))
                    .send()
                    .await
                    .unwrap();
                assert!(ok.signature_valid());
                let mut bad = sig.clone();
                let last = bad.len() - 1;
                bad[last] ^= 1;
                let err = kms
                    .verify()
                    .key_id(&id)
                    .message(Blob::new(message.clone()))
                    .signing_algorithm(alg.clone())
                    .signature(Blob::new(bad))
                    .send()
                    .await
                    .unwrap_err();
                assert!(
                    err.as_service_error()
                        .unwrap()
                        .is_kms_invalid_signature_exception(),
                    "{err:?}"
                );
            }
        }
    }
    // Ed25519 (pure) verifies with the peer too.
    let id = create(&kms, KeySpec::EccNistEdwards25519, KeyUsageType::SignVerify).await;
    let spki = kms
        .get_public_key()
        .key_id(&id)
        .send()
        .await
        .unwrap()
        .public_key()
        .unwrap()
        .as_ref()
        .to_vec();
    let sig = kms
        .sign()
        .key_id(&id)
        .message(Blob::new(message.clone()))
        .signing_algorithm(SigningAlgorithmSpec::Ed25519Sha512)
        .send()
        .await
        .unwrap();
    let r = peer.call(json!({"op":"verify","alg":"ED25519_SHA_512","spki":b64(&spki),"message":b64(&message),"signature":b64(sig.signature().unwrap().as_ref())}));
    assert_eq!(r["valid"], true);
}

#[tokio::test]
async fn rsa_encryption_ecdh_and_data_key_pairs_interoperate() {
    let server = Server::start(&[]);
    let kms = server.client();
    let mut peer = Peer::start();

    // RSA: the peer encrypts with the public key, kmsd decrypts; and the reverse through ReEncrypt.
    let id = create(&kms, KeySpec::Rsa2048, KeyUsageType::EncryptDecrypt).await;
    let spki = kms
        .get_public_key()
        .key_id(&id)
        .send()
        .await
        .unwrap()
        .public_key()
        .unwrap()
        .as_ref()
        .to_vec();
    for (hash, alg) in [
        ("SHA_1", EncryptionAlgorithmSpec::RsaesOaepSha1),
        ("SHA_256", EncryptionAlgorithmSpec::RsaesOaepSha256),
    ] {
        let r = peer.call(json!({"op":"oaep_encrypt","hash":hash,"spki":b64(&spki),"plaintext":b64(b"wrapped secret")}));
        let pt = kms
            .decrypt()
            .key_id(&id)
            .encryption_algorithm(alg.clone())
            .ciphertext_blob(Blob::new(unb64(&r["ciphertext"])))
            .send()
            .await
            .unwrap();
        assert_eq!(pt.plaintext().unwrap().as_ref(), b"wrapped secret");
        assert_eq!(pt.encryption_algorithm(), Some(&alg));
    }
    let max = vec![7u8; 190];
    let ct = kms
        .encrypt()
        .key_id(&id)
        .encryption_algorithm(EncryptionAlgorithmSpec::RsaesOaepSha256)
        .plaintext(Blob::new(max.clone()))
        .send()
        .await
        .unwrap();
    let back = kms
        .decrypt()
        .key_id(&id)
        .encryption_algorithm(EncryptionAlgorithmSpec::RsaesOaepSha256)
        .ciphertext_blob(ct.ciphertext_blob().unwrap().clone())
        .send()
        .await
        .unwrap();
    assert_eq!(back.plaintext().unwrap().as_ref(), &max[..]);
    let err = kms
        .encrypt()
        .key_id(&id)
        .encryption_algorithm(EncryptionAlgorithmSpec::RsaesOaepSha256)
        .plaintext(Blob::new(vec![7u8; 191]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        err.as_service_error().unwrap().meta().code(),
        Some("ValidationException")
    );
    let err = kms
        .encrypt()
        .key_id(&id)
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error()
            .unwrap()
            .is_invalid_key_usage_exception(),
        "{err:?}"
    );
    let err = kms
        .encrypt()
        .key_id(&id)
        .encryption_algorithm(EncryptionAlgorithmSpec::RsaesOaepSha1)
        .encryption_context("a", "b")
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        err.as_service_error().unwrap().meta().code(),
        Some("ValidationException")
    );

    // ECDH: both sides derive the same secret.
    for (spec, curve) in [
        (KeySpec::EccNistP256, "P256"),
        (KeySpec::EccNistP384, "P384"),
        (KeySpec::EccNistP521, "P521"),
    ] {
        let id = create(&kms, spec, KeyUsageType::KeyAgreement).await;
        let kms_pub = kms
            .get_public_key()
            .key_id(&id)
            .send()
            .await
            .unwrap()
            .public_key()
            .unwrap()
            .as_ref()
            .to_vec();
        let theirs = peer.call(json!({"op":"ecdh_keypair","curve":curve}));
        let derived = kms
            .derive_shared_secret()
            .key_id(&id)
            .key_agreement_algorithm(KeyAgreementAlgorithmSpec::Ecdh)
            .public_key(Blob::new(unb64(&theirs["spki"])))
            .send()
            .await
            .unwrap();
        let expected =
            peer.call(json!({"op":"ecdh","private":theirs["private"],"peer_spki":b64(&kms_pub)}));
        assert_eq!(
            derived.shared_secret().unwrap().as_ref(),
            &unb64(&expected["secret"])[..],
            "{curve}"
        );
        let err = kms
            .derive_shared_secret()
            .key_id(&id)
            .key_agreement_algorithm(KeyAgreementAlgorithmSpec::Ecdh)
            .public_key(Blob::new(b"not a key".to_vec()))
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            err.as_service_error().unwrap().meta().code(),
            Some("ValidationException"),
            "{err:?}"
        );
    }

    // Data key pairs: the peer and openssl load them; the encrypted private key decrypts under
    // the wrapping key with the encryption context.
    let wrap = common::new_key_id(&kms).await;
    for spec in [
        DataKeyPairSpec::Rsa2048,
        DataKeyPairSpec::EccNistP256,
        DataKeyPairSpec::EccNistP384,
        DataKeyPairSpec::EccNistP521,
        DataKeyPairSpec::EccSecgP256K1,
        DataKeyPairSpec::EccNistEdwards25519,
    ] {
        let pair = kms
            .generate_data_key_pair()
            .key_id(&wrap)
            .key_pair_spec(spec.clone())
            .encryption_context("use", "pair")
            .send()
            .await
            .unwrap();
        let private = pair.private_key_plaintext().unwrap().as_ref().to_vec();
        let public = pair.public_key().unwrap().as_ref().to_vec();
        let r = peer.call(json!({"op":"check_pair","private":b64(&private),"spki":b64(&public)}));
        assert_eq!(r["match"], true, "{spec:?} {r}");
        let opened = kms
            .decrypt()
            .ciphertext_blob(pair.private_key_ciphertext_blob().unwrap().clone())
            .encryption_context("use", "pair")
            .send()
            .await
            .unwrap();
        assert_eq!(opened.plaintext().unwrap().as_ref(), &private[..]);
        let dir = tempfile::tempdir().unwrap();
        let der = dir.path().join("k.der");
        std::fs::write(&der, &private).unwrap();
        let out = Command::new("openssl")
            .args(["pkey", "-inform", "DER", "-noout", "-in"])
            .arg(&der)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl rejects the {spec:?} PKCS#8: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let pair = kms
        .generate_data_key_pair_without_plaintext()
        .key_id(&wrap)
        .key_pair_spec(DataKeyPairSpec::EccNistP256)
        .send()
        .await
        .unwrap();
    assert!(pair.public_key().is_some() && pair.private_key_ciphertext_blob().is_some());
}

#[tokio::test]
async fn hmac_keys_usage_rules_and_metadata() {
    let server = Server::start(&[]);
    let kms = server.client();
    for (spec, alg, len) in [
        (KeySpec::Hmac224, MacAlgorithmSpec::HmacSha224, 28),
        (KeySpec::Hmac256, MacAlgorithmSpec::HmacSha256, 32),
        (KeySpec::Hmac384, MacAlgorithmSpec::HmacSha384, 48),
        (KeySpec::Hmac512, MacAlgorithmSpec::HmacSha512, 64),
    ] {
        let id = create(&kms, spec.clone(), KeyUsageType::GenerateVerifyMac).await;
        let meta = kms
            .describe_key()
            .key_id(&id)
            .send()
            .await
            .unwrap()
            .key_metadata()
            .unwrap()
            .clone();
        assert_eq!(meta.mac_algorithms(), std::slice::from_ref(&alg));
        assert!(meta.encryption_algorithms().is_empty());
        let mac = kms
            .generate_mac()
            .key_id(&id)
            .mac_algorithm(alg.clone())
            .message(Blob::new(b"msg".to_vec()))
            .send()
            .await
            .unwrap();
        let mac = mac.mac().unwrap().as_ref().to_vec();
        assert_eq!(mac.len(), len);
        let ok = kms
            .verify_mac()
            .key_id(&id)
            .mac_algorithm(alg.clone())
            .message(Blob::new(b"msg".to_vec()))
            .mac(Blob::new(mac.clone()))
            .send()
            .await
            .unwrap();
        assert!(ok.mac_valid());
        let err = kms
            .verify_mac()
            .key_id(&id)
            .mac_algorithm(alg.clone())
            .message(Blob::new(b"msh".to_vec()))
            .mac(Blob::new(mac))
            .send()
            .await
            .unwrap_err();
        assert!(
            err.as_service_error()
                .unwrap()
                .is_kms_invalid_mac_exception(),
            "{err:?}"
        );
        let err = kms.get_public_key().key_id(&id).send().await.unwrap_err();
        assert!(err
            .as_service_error()
            .unwrap()
            .is_unsupported_operation_exception());
    }
    let hmac = create(&kms, KeySpec::Hmac256, KeyUsageType::GenerateVerifyMac).await;
    let err = kms
        .generate_mac()
        .key_id(&hmac)
        .mac_algorithm(MacAlgorithmSpec::HmacSha512)
        .message(Blob::new(b"m".to_vec()))
        .send()
        .await
        .unwrap_err();
    assert!(err
        .as_service_error()
        .unwrap()
        .is_invalid_key_usage_exception());

    // Wrong usage for the operation, invalid spec/usage pairs, SM2.
    let sym = common::new_key_id(&kms).await;
    let err = kms
        .sign()
        .key_id(&sym)
        .message(Blob::new(b"m".to_vec()))
        .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
        .send()
        .await
        .unwrap_err();
    assert!(err
        .as_service_error()
        .unwrap()
        .is_invalid_key_usage_exception());
    let err = kms
        .generate_mac()
        .key_id(&sym)
        .mac_algorithm(MacAlgorithmSpec::HmacSha256)
        .message(Blob::new(b"m".to_vec()))
        .send()
        .await
        .unwrap_err();
    assert!(err
        .as_service_error()
        .unwrap()
        .is_invalid_key_usage_exception());
    let ec = create(&kms, KeySpec::EccNistP256, KeyUsageType::SignVerify).await;
    let err = kms
        .encrypt()
        .key_id(&ec)
        .plaintext(Blob::new(b"m".to_vec()))
        .send()
        .await
        .unwrap_err();
    assert!(err
        .as_service_error()
        .unwrap()
        .is_invalid_key_usage_exception());
    let err = kms
        .sign()
        .key_id(&ec)
        .message(Blob::new(vec![1; 31]))
        .message_type(MessageType::Digest)
        .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        err.as_service_error().unwrap().meta().code(),
        Some("ValidationException")
    );
    let err = kms
        .sign()
        .key_id(&ec)
        .message(Blob::new(b"m".to_vec()))
        .signing_algorithm(SigningAlgorithmSpec::EcdsaSha384)
        .send()
        .await
        .unwrap_err();
    assert!(err
        .as_service_error()
        .unwrap()
        .is_invalid_key_usage_exception());
    let err = kms
        .generate_data_key()
        .key_id(&ec)
        .number_of_bytes(32)
        .send()
        .await
        .unwrap_err();
    assert!(err
        .as_service_error()
        .unwrap()
        .is_invalid_key_usage_exception());
    let err = kms
        .create_key()
        .key_spec(KeySpec::EccSecgP256K1)
        .key_usage(KeyUsageType::KeyAgreement)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        err.as_service_error().unwrap().meta().code(),
        Some("ValidationException")
    );
    let err = kms
        .create_key()
        .key_spec(KeySpec::Rsa2048)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        err.as_service_error().unwrap().meta().code(),
        Some("ValidationException")
    );
    let err = kms
        .create_key()
        .key_spec(KeySpec::Sm2)
        .key_usage(KeyUsageType::SignVerify)
        .send()
        .await
        .unwrap_err();
    assert!(err
        .as_service_error()
        .unwrap()
        .is_unsupported_operation_exception());
    kms.disable_key().key_id(&ec).send().await.unwrap();
    let err = kms
        .sign()
        .key_id(&ec)
        .message(Blob::new(b"m".to_vec()))
        .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
        .send()
        .await
        .unwrap_err();
    assert!(err.as_service_error().unwrap().is_disabled_exception());

    // ML-DSA signs and verifies (consistency: the peer library has no ML-DSA).
    let id = create(&kms, KeySpec::MlDsa65, KeyUsageType::SignVerify).await;
    let sig = kms
        .sign()
        .key_id(&id)
        .message(Blob::new(b"pq".to_vec()))
        .signing_algorithm(SigningAlgorithmSpec::MlDsaShake256)
        .send()
        .await
        .unwrap();
    assert_eq!(sig.signature().unwrap().as_ref().len(), 3309);
    let ok = kms
        .verify()
        .key_id(&id)
        .message(Blob::new(b"pq".to_vec()))
        .signing_algorithm(SigningAlgorithmSpec::MlDsaShake256)
        .signature(sig.signature().unwrap().clone())
        .send()
        .await
        .unwrap();
    assert!(ok.signature_valid());
}
