//! Post-quantum keys against implementations nobody here wrote: `kyber-py` (ML-KEM) encapsulates
//! to kmsd's ML-KEM public keys and kmsd decapsulates, and it decapsulates what kmsd encapsulates
//! to kmsd's ML-KEM data key pairs; `dilithium-py` (ML-DSA) verifies kmsd's ML-DSA signatures,
//! RAW and EXTERNAL_MU with mu computed in Python. Also: Ed25519ph, access control, and the audit
//! trail of Encapsulate/Decapsulate (no shared secret in it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{
    DataKeyPairSpec, EncapsulationAlgorithmSpec, KeySpec, KeyUsageType, MessageType,
    SigningAlgorithmSpec,
};
use base64::Engine as _;
use common::Server;
use kms_crypto::asymmetric::AsymmetricSpec;
use serde_json::{json, Value};

#[path = "common/python_peer.rs"]
mod python_peer;

/// The Python peer of these tests (tests/interop/pq_peer.py).
struct Peer;

impl Peer {
    fn start() -> python_peer::PythonPeer {
        python_peer::PythonPeer::start("pq_peer.py", "kyber-py, dilithium-py and ecdsa")
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

async fn public_key(kms: &aws_sdk_kms::Client, id: &str) -> Vec<u8> {
    kms.get_public_key()
        .key_id(id)
        .send()
        .await
        .unwrap()
        .public_key()
        .unwrap()
        .as_ref()
        .to_vec()
}

async fn decapsulate(kms: &aws_sdk_kms::Client, id: &str, ciphertext: &[u8]) -> Vec<u8> {
    kms.decapsulate()
        .key_id(id)
        .encapsulation_algorithm(EncapsulationAlgorithmSpec::MlKem)
        .shared_secret_ciphertext_blob(Blob::new(ciphertext.to_vec()))
        .send()
        .await
        .unwrap()
        .shared_secret()
        .unwrap()
        .as_ref()
        .to_vec()
}

const ML_KEM: [(KeySpec, DataKeyPairSpec, AsymmetricSpec, usize); 3] = [
    (
        KeySpec::MlKem512,
        DataKeyPairSpec::MlKem512,
        AsymmetricSpec::MlKem512,
        768,
    ),
    (
        KeySpec::MlKem768,
        DataKeyPairSpec::MlKem768,
        AsymmetricSpec::MlKem768,
        1088,
    ),
    (
        KeySpec::MlKem1024,
        DataKeyPairSpec::MlKem1024,
        AsymmetricSpec::MlKem1024,
        1568,
    ),
];

#[tokio::test]
async fn ml_kem_interoperates_with_kyber_py() {
    let server = Server::start(&[]);
    let kms = server.client();
    let mut peer = Peer::start();
    let wrap = common::new_key_id(&kms).await;
    for (spec, pair_spec, crypto_spec, ct_len) in ML_KEM {
        let id = create(&kms, spec.clone(), KeyUsageType::EncapsulateDecapsulate).await;
        let meta = kms.describe_key().key_id(&id).send().await.unwrap();
        let meta = meta.key_metadata().unwrap();
        assert_eq!(
            meta.encapsulation_algorithms(),
            [EncapsulationAlgorithmSpec::MlKem]
        );
        assert!(meta.signing_algorithms().is_empty());
        let pk = kms.get_public_key().key_id(&id).send().await.unwrap();
        assert_eq!(
            pk.encapsulation_algorithms(),
            [EncapsulationAlgorithmSpec::MlKem]
        );
        let spki = pk.public_key().unwrap().as_ref().to_vec();

        // kyber-py reads the SPKI (OID, length) and encapsulates; kmsd decapsulates.
        let theirs = peer.call(json!({"op":"kem_encaps","spki":b64(&spki)}));
        let ct = unb64(&theirs["ciphertext"]);
        assert_eq!(ct.len(), ct_len);
        assert_eq!(
            decapsulate(&kms, &id, &ct).await,
            unb64(&theirs["secret"]),
            "{spec:?}"
        );

        // kmsd's Encapsulate round-trips through its Decapsulate.
        let enc = kms
            .encapsulate()
            .key_id(&id)
            .encapsulation_algorithm(EncapsulationAlgorithmSpec::MlKem)
            .send()
            .await
            .unwrap();
        assert_eq!(
            enc.encapsulation_algorithm(),
            Some(&EncapsulationAlgorithmSpec::MlKem)
        );
        let ours = enc.shared_secret_ciphertext_blob().unwrap().as_ref();
        let secret = enc.shared_secret().unwrap().as_ref();
        assert_eq!((ours.len(), secret.len()), (ct_len, 32));
        assert_eq!(decapsulate(&kms, &id, ours).await, secret);

        // Wrong ciphertext length: InvalidCiphertextException.
        let err = kms
            .decapsulate()
            .key_id(&id)
            .encapsulation_algorithm(EncapsulationAlgorithmSpec::MlKem)
            .shared_secret_ciphertext_blob(Blob::new(ct[..ct_len - 1].to_vec()))
            .send()
            .await
            .unwrap_err();
        assert!(
            err.as_service_error()
                .unwrap()
                .is_invalid_ciphertext_exception(),
            "{err:?}"
        );

        // The reverse direction needs the private key outside kmsd: an ML-KEM data key pair.
        // kyber-py loads kmsd's PKCS#8 (seed form), finds the same encapsulation key as in the
        // SPKI, and decapsulates what kmsd's encapsulation code makes for that public key.
        let pair = kms
            .generate_data_key_pair()
            .key_id(&wrap)
            .key_pair_spec(pair_spec.clone())
            .send()
            .await
            .unwrap();
        let private = pair.private_key_plaintext().unwrap().as_ref().to_vec();
        let public = pair.public_key().unwrap().as_ref().to_vec();
        assert_eq!(private.len(), 86, "seed-form PKCS#8 for {pair_spec:?}");
        let r = peer.call(json!({"op":"kem_pair","private":b64(&private),"spki":b64(&public)}));
        assert_eq!(r["match"], true, "{pair_spec:?} {r}");
        assert_eq!(r["seed_form"], true);
        let (ct, secret) = kms_crypto::kem::encapsulate(crypto_spec, &public).unwrap();
        let r = peer.call(json!({"op":"kem_decaps","private":b64(&private),"ciphertext":b64(&ct)}));
        assert_eq!(unb64(&r["secret"]), *secret);
        // Implicit rejection gives the same pseudo-random secret in both implementations.
        let mut bad = ct.clone();
        bad[7] ^= 0x40;
        let r =
            peer.call(json!({"op":"kem_decaps","private":b64(&private),"ciphertext":b64(&bad)}));
        let ours = kms_crypto::kem::decapsulate(crypto_spec, &private, &bad).unwrap();
        assert_eq!(unb64(&r["secret"]), *ours);
        assert_ne!(*ours, *secret);
    }

    // DryRun, and Encapsulate on a key that is not an ML-KEM key.
    let id = create(
        &kms,
        KeySpec::MlKem768,
        KeyUsageType::EncapsulateDecapsulate,
    )
    .await;
    let err = kms
        .encapsulate()
        .key_id(&id)
        .encapsulation_algorithm(EncapsulationAlgorithmSpec::MlKem)
        .dry_run(true)
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error()
            .unwrap()
            .is_dry_run_operation_exception(),
        "{err:?}"
    );
    let sym = common::new_key_id(&kms).await;
    let err = kms
        .encapsulate()
        .key_id(&sym)
        .encapsulation_algorithm(EncapsulationAlgorithmSpec::MlKem)
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
        .create_key()
        .key_spec(KeySpec::MlKem512)
        .key_usage(KeyUsageType::EncryptDecrypt)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        err.as_service_error().unwrap().meta().code(),
        Some("ValidationException")
    );
}

#[tokio::test]
async fn ml_dsa_signatures_verify_with_dilithium_py() {
    let server = Server::start(&[]);
    let kms = server.client();
    let mut peer = Peer::start();
    let message = b"the message kmsd signs with ML-DSA".to_vec();
    for (spec, len) in [
        (KeySpec::MlDsa44, 2420),
        (KeySpec::MlDsa65, 3309),
        (KeySpec::MlDsa87, 4627),
    ] {
        let id = create(&kms, spec.clone(), KeyUsageType::SignVerify).await;
        let spki = public_key(&kms, &id).await;
        let sign = |mt: MessageType, m: Vec<u8>| {
            kms.sign()
                .key_id(&id)
                .message(Blob::new(m))
                .message_type(mt)
                .signing_algorithm(SigningAlgorithmSpec::MlDsaShake256)
                .send()
        };
        // RAW: pure ML-DSA over the message, empty context.
        let raw = sign(MessageType::Raw, message.clone()).await.unwrap();
        let raw = raw.signature().unwrap().as_ref().to_vec();
        assert_eq!(raw.len(), len);
        let r = peer.call(json!({"op":"dsa_verify","spki":b64(&spki),"message":b64(&message),"signature":b64(&raw)}));
        assert_eq!(r["valid"], true, "{spec:?} RAW");
        let r = peer.call(json!({"op":"dsa_verify","spki":b64(&spki),"message":b64(b"another message"),"signature":b64(&raw)}));
        assert_eq!(r["valid"], false);

        // EXTERNAL_MU: mu computed by dilithium-py; the signature is a pure ML-DSA signature of
        // the message, for dilithium-py and for kmsd's own Verify, RAW or EXTERNAL_MU.
        let mu = unb64(
            &peer.call(json!({"op":"dsa_mu","spki":b64(&spki),"message":b64(&message)}))["mu"],
        );
        assert_eq!(mu.len(), 64);
        let ext = sign(MessageType::ExternalMu, mu.clone()).await.unwrap();
        let ext = ext.signature().unwrap().as_ref().to_vec();
        assert_eq!(ext.len(), len);
        let r = peer.call(json!({"op":"dsa_verify","spki":b64(&spki),"message":b64(&message),"signature":b64(&ext)}));
        assert_eq!(r["valid"], true, "{spec:?} EXTERNAL_MU");
        for (mt, input) in [
            (MessageType::Raw, message.clone()),
            (MessageType::ExternalMu, mu.clone()),
        ] {
            let ok = kms
                .verify()
                .key_id(&id)
                .message(Blob::new(input))
                .message_type(mt)
                .signing_algorithm(SigningAlgorithmSpec::MlDsaShake256)
                .signature(Blob::new(ext.clone()))
                .send()
                .await
                .unwrap();
            assert!(ok.signature_valid());
        }
        let err = sign(MessageType::ExternalMu, mu[..63].to_vec())
            .await
            .unwrap_err();
        assert_eq!(
            err.as_service_error().unwrap().meta().code(),
            Some("ValidationException")
        );
    }
}

#[tokio::test]
async fn ed25519ph_signs_a_sha512_digest() {
    let server = Server::start(&[]);
    let kms = server.client();
    let id = create(&kms, KeySpec::EccNistEdwards25519, KeyUsageType::SignVerify).await;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA512, b"prehashed message");
    let digest = digest.as_ref().to_vec();
    let sign = |mt: MessageType, m: Vec<u8>| {
        kms.sign()
            .key_id(&id)
            .message(Blob::new(m))
            .message_type(mt)
            .signing_algorithm(SigningAlgorithmSpec::Ed25519PhSha512)
            .send()
    };
    let sig = sign(MessageType::Digest, digest.clone()).await.unwrap();
    assert_eq!(
        sig.signing_algorithm(),
        Some(&SigningAlgorithmSpec::Ed25519PhSha512)
    );
    let sig = sig.signature().unwrap().as_ref().to_vec();
    assert_eq!(sig.len(), 64);
    let verify = |m: Vec<u8>, alg: SigningAlgorithmSpec, mt: MessageType| {
        kms.verify()
            .key_id(&id)
            .message(Blob::new(m))
            .message_type(mt)
            .signing_algorithm(alg)
            .signature(Blob::new(sig.clone()))
            .send()
    };
    let ok = verify(
        digest.clone(),
        SigningAlgorithmSpec::Ed25519PhSha512,
        MessageType::Digest,
    )
    .await
    .unwrap();
    assert!(ok.signature_valid());
    // Not a pure Ed25519 signature of the digest; not valid for another digest.
    for (m, alg, mt) in [
        (
            digest.clone(),
            SigningAlgorithmSpec::Ed25519Sha512,
            MessageType::Raw,
        ),
        (
            vec![0u8; 64],
            SigningAlgorithmSpec::Ed25519PhSha512,
            MessageType::Digest,
        ),
    ] {
        let err = verify(m, alg, mt).await.unwrap_err();
        assert!(
            err.as_service_error()
                .unwrap()
                .is_kms_invalid_signature_exception(),
            "{err:?}"
        );
    }
    // RAW, or a digest of another length: ValidationException.
    for (mt, m) in [
        (MessageType::Raw, b"message".to_vec()),
        (MessageType::Digest, digest[..32].to_vec()),
    ] {
        let err = sign(mt, m).await.unwrap_err();
        assert_eq!(
            err.as_service_error().unwrap().meta().code(),
            Some("ValidationException")
        );
    }
}

#[tokio::test]
async fn encapsulation_is_access_controlled_and_audited_without_secrets() {
    let server = Server::start(&[]);
    let kms = server.client();
    let id = create(
        &kms,
        KeySpec::MlKem512,
        KeyUsageType::EncapsulateDecapsulate,
    )
    .await;
    let enc = kms
        .encapsulate()
        .key_id(&id)
        .encapsulation_algorithm(EncapsulationAlgorithmSpec::MlKem)
        .send()
        .await
        .unwrap();
    let ct = enc
        .shared_secret_ciphertext_blob()
        .unwrap()
        .as_ref()
        .to_vec();
    let secret = enc.shared_secret().unwrap().as_ref().to_vec();
    assert_eq!(decapsulate(&kms, &id, &ct).await, secret);

    // The key policy denies Decapsulate on keys of usage ENCAPSULATE_DECAPSULATE: Encapsulate
    // still works, Decapsulate is refused.
    let account = kms
        .describe_key()
        .key_id(&id)
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .aws_account_id()
        .unwrap()
        .to_owned();
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{account}:root")},
             "Action": "kms:*", "Resource": "*"},
            {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "kms:Decapsulate",
             "Resource": "*",
             "Condition": {"StringEquals": {"kms:KeyUsage": "ENCAPSULATE_DECAPSULATE"}}}
        ]
    });
    kms.put_key_policy()
        .key_id(&id)
        .policy(policy.to_string())
        .send()
        .await
        .unwrap();
    kms.encapsulate()
        .key_id(&id)
        .encapsulation_algorithm(EncapsulationAlgorithmSpec::MlKem)
        .send()
        .await
        .unwrap();
    let err = kms
        .decapsulate()
        .key_id(&id)
        .encapsulation_algorithm(EncapsulationAlgorithmSpec::MlKem)
        .shared_secret_ciphertext_blob(Blob::new(ct.clone()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        err.as_service_error().unwrap().meta().code(),
        Some("AccessDeniedException"),
        "{err:?}"
    );

    // The audit trail has the calls, and neither the secret nor the ciphertext.
    let mut events = Vec::new();
    let mut stack = vec![server.data_dir.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            for needle in [
                secret.clone(),
                b64(&secret).into_bytes(),
                b64(&ct).into_bytes(),
            ] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_slice()),
                    "{} holds the shared secret or its ciphertext",
                    path.display()
                );
            }
            if path.extension().is_some_and(|e| e == "jsonl") {
                for line in String::from_utf8_lossy(&bytes).lines() {
                    if let Ok(v) = serde_json::from_str::<Value>(line) {
                        if let Some(name) = v["eventName"].as_str() {
                            events.push((name.to_owned(), v));
                        }
                    }
                }
            }
        }
    }
    let log = server.log.lock().unwrap().clone();
    assert!(!log.contains(&b64(&secret)) && !log.contains(&b64(&ct)));
    let named = |n: &str| events.iter().filter(|(name, _)| name == n).count();
    assert_eq!(named("Encapsulate"), 2, "{events:?}");
    assert_eq!(named("Decapsulate"), 2, "{events:?}");
    for (name, v) in &events {
        if name == "Decapsulate" || name == "Encapsulate" {
            assert_eq!(v["responseElements"], Value::Null, "{v}");
            assert_eq!(
                v["requestParameters"]["encapsulationAlgorithm"], "ML_KEM",
                "{v}"
            );
        }
    }
}
