//! Imported key material (Origin EXTERNAL) end to end with aws-sdk-kms, the material wrapped
//! the way AWS's guide tells users to: `openssl pkeyutl` (RSAES-OAEP SHA-1 / SHA-256) and
//! `openssl enc -id-aes256-wrap-pad` + OAEP for RSA_AES_KEY_WRAP_SHA_256.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{
    AlgorithmSpec, ExpirationModelType, ImportType, IncludeKeyMaterial, KeySpec, KeyState,
    KeyUsageType, OriginType, SigningAlgorithmSpec, WrappingKeySpec,
};
use common::Server;

fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Wraps the file `material` for import as AWS's guide does; returns the wrapped bytes.
fn wrap(dir: &Path, public_key_der: &[u8], algorithm: &AlgorithmSpec, material: &Path) -> Vec<u8> {
    let public = dir.join("WrappingPublicKey.der");
    std::fs::write(&public, public_key_der).unwrap();
    let out = dir.join("EncryptedKeyMaterial.bin");
    let p = |p: &Path| p.to_str().unwrap().to_owned();
    let oaep = |input: &Path, output: &Path, md: &str| {
        let mut args = vec![
            "pkeyutl".to_owned(),
            "-encrypt".into(),
            "-in".into(),
            p(input),
            "-out".into(),
            p(output),
            "-inkey".into(),
            p(&public),
            "-keyform".into(),
            "DER".into(),
            "-pubin".into(),
            "-pkeyopt".into(),
            "rsa_padding_mode:oaep".into(),
            "-pkeyopt".into(),
            format!("rsa_oaep_md:{md}"),
        ];
        if md == "sha256" {
            args.extend(["-pkeyopt".into(), "rsa_mgf1_md:sha256".into()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        openssl(&args);
    };
    match algorithm {
        AlgorithmSpec::RsaesOaepSha1 => oaep(material, &out, "sha1"),
        AlgorithmSpec::RsaesOaepSha256 => oaep(material, &out, "sha256"),
        AlgorithmSpec::RsaAesKeyWrapSha256 => {
            let aes = dir.join("aes-key.bin");
            openssl(&["rand", "-out", &p(&aes), "32"]);
            let aes_hex = hex::encode(std::fs::read(&aes).unwrap());
            let wrapped_material = dir.join("key-material-wrapped.bin");
            openssl(&[
                "enc",
                "-id-aes256-wrap-pad",
                "-K",
                &aes_hex,
                "-iv",
                "A65959A6",
                "-in",
                &p(material),
                "-out",
                &p(&wrapped_material),
            ]);
            let wrapped_aes = dir.join("aes-key-wrapped.bin");
            oaep(&aes, &wrapped_aes, "sha256");
            let mut all = std::fs::read(&wrapped_aes).unwrap();
            all.extend(std::fs::read(&wrapped_material).unwrap());
            return all;
        }
        other => panic!("{other:?}"),
    }
    std::fs::read(&out).unwrap()
}

/// GetParametersForImport + wrap + ImportKeyMaterial; returns the KeyMaterialId (or the error).
#[allow(clippy::too_many_arguments)]
async fn import(
    kms: &aws_sdk_kms::Client,
    dir: &Path,
    key_id: &str,
    algorithm: AlgorithmSpec,
    material: &Path,
    import_type: Option<ImportType>,
    valid_to_secs: Option<i64>,
) -> Result<String, (String, String)> {
    let params = kms
        .get_parameters_for_import()
        .key_id(key_id)
        .wrapping_algorithm(algorithm.clone())
        .wrapping_key_spec(WrappingKeySpec::Rsa2048)
        .send()
        .await
        .unwrap();
    let wrapped = wrap(
        dir,
        params.public_key().unwrap().as_ref(),
        &algorithm,
        material,
    );
    let mut req = kms
        .import_key_material()
        .key_id(key_id)
        .import_token(params.import_token().unwrap().clone())
        .encrypted_key_material(Blob::new(wrapped))
        .set_import_type(import_type);
    req = match valid_to_secs {
        Some(t) => req
            .expiration_model(ExpirationModelType::KeyMaterialExpires)
            .valid_to(aws_sdk_kms::primitives::DateTime::from_secs(t)),
        None => req.expiration_model(ExpirationModelType::KeyMaterialDoesNotExpire),
    };
    req.send()
        .await
        .map(|r| r.key_material_id().unwrap().to_owned())
        .map_err(|e| {
            let e = e.into_service_error();
            (
                aws_sdk_kms::error::ProvideErrorMetadata::code(&e)
                    .unwrap_or_default()
                    .to_owned(),
                aws_sdk_kms::error::ProvideErrorMetadata::message(&e)
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
}

async fn state(kms: &aws_sdk_kms::Client, key_id: &str) -> KeyState {
    kms.describe_key()
        .key_id(key_id)
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .key_state()
        .unwrap()
        .clone()
}

async fn decrypt(kms: &aws_sdk_kms::Client, ct: &Blob) -> Result<Vec<u8>, String> {
    kms.decrypt()
        .ciphertext_blob(ct.clone())
        .send()
        .await
        .map(|r| r.plaintext().unwrap().as_ref().to_vec())
        .map_err(|e| {
            aws_sdk_kms::error::ProvideErrorMetadata::code(&e.into_service_error())
                .unwrap_or_default()
                .to_owned()
        })
}

/// Encrypts; returns the ciphertext and the key's current KeyMaterialId (which encrypted it).
async fn encrypt(kms: &aws_sdk_kms::Client, key_id: &str, text: &[u8]) -> (Blob, String) {
    let r = kms
        .encrypt()
        .key_id(key_id)
        .plaintext(Blob::new(text.to_vec()))
        .send()
        .await
        .unwrap();
    let current = kms
        .describe_key()
        .key_id(key_id)
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .current_key_material_id()
        .unwrap_or_default()
        .to_owned();
    (r.ciphertext_blob().unwrap().clone(), current)
}

#[tokio::test]
async fn symmetric_material_is_imported_deleted_reimported_rotated_and_expires() {
    let server = Server::start(&["--dev"]);
    let kms = server.client();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let material = dir.join("PlaintextKeyMaterial.bin");
    openssl(&["rand", "-out", material.to_str().unwrap(), "32"]);
    let other = dir.join("OtherKeyMaterial.bin");
    openssl(&["rand", "-out", other.to_str().unwrap(), "32"]);

    let meta = kms
        .create_key()
        .origin(OriginType::External)
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .clone();
    let key = meta.key_id().to_owned();
    let arn = meta.arn().unwrap().to_owned();
    assert_eq!(meta.key_state(), Some(&KeyState::PendingImport));
    assert_eq!(meta.origin(), Some(&OriginType::External));
    let e = kms
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_kms_invalid_state_exception(), "{e:?}");
    assert_eq!(
        aws_sdk_kms::error::ProvideErrorMetadata::message(&e),
        Some(format!("{arn} is pending import.").as_str())
    );

    // First import (OAEP SHA-256), no expiry.
    let id1 = import(
        &kms,
        dir,
        &key,
        AlgorithmSpec::RsaesOaepSha256,
        &material,
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(state(&kms, &key).await, KeyState::Enabled);
    let (ct1, used) = encrypt(&kms, &key, b"first").await;
    assert_eq!(used, id1);

    // Delete: PendingImport, earlier ciphertexts fail until the same material is back.
    let d = kms
        .delete_imported_key_material()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(d.key_material_id(), Some(id1.as_str()));
    assert_eq!(state(&kms, &key).await, KeyState::PendingImport);
    assert_eq!(
        decrypt(&kms, &ct1).await.unwrap_err(),
        "KMSInvalidStateException"
    );
    let (code, _) = import(
        &kms,
        dir,
        &key,
        AlgorithmSpec::RsaesOaepSha1,
        &other,
        None,
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(code, "IncorrectKeyMaterialException");
    let again = import(
        &kms,
        dir,
        &key,
        AlgorithmSpec::RsaesOaepSha1,
        &material,
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(again, id1, "the same material has the same KeyMaterialId");
    assert_eq!(decrypt(&kms, &ct1).await.unwrap(), b"first");

    // Rotation: new material (RSA_AES_KEY_WRAP_SHA_256) waits for RotateKeyOnDemand.
    let e = kms
        .rotate_key_on_demand()
        .key_id(&key)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(
        aws_sdk_kms::error::ProvideErrorMetadata::message(&e),
        Some(format!("No available key material pending rotation for the key: {arn}.").as_str())
    );
    let id2 = import(
        &kms,
        dir,
        &key,
        AlgorithmSpec::RsaAesKeyWrapSha256,
        &other,
        Some(ImportType::NewKeyMaterial),
        None,
    )
    .await
    .unwrap();
    assert_ne!(id2, id1);
    let rotations = kms
        .list_key_rotations()
        .key_id(&key)
        .include_key_material(IncludeKeyMaterial::AllKeyMaterial)
        .send()
        .await
        .unwrap();
    let states: Vec<(String, String)> = rotations
        .rotations()
        .iter()
        .map(|r| {
            (
                r.key_material_id().unwrap().to_owned(),
                r.key_material_state().unwrap().as_str().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        states,
        vec![
            (id1.clone(), "CURRENT".to_owned()),
            (id2.clone(), "PENDING_ROTATION".to_owned())
        ]
    );
    assert_eq!(
        encrypt(&kms, &key, b"x").await.1,
        id1,
        "pending material does not encrypt"
    );
    let (code, msg) = import(
        &kms,
        dir,
        &key,
        AlgorithmSpec::RsaesOaepSha256,
        &material,
        Some(ImportType::NewKeyMaterial),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(code, "IncorrectKeyMaterialException", "{msg}");
    let r = kms
        .rotate_key_on_demand()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.key_id(), Some(arn.as_str()));
    let (ct2, used) = encrypt(&kms, &key, b"second").await;
    assert_eq!(used, id2);
    assert_eq!(decrypt(&kms, &ct1).await.unwrap(), b"first");
    assert_eq!(decrypt(&kms, &ct2).await.unwrap(), b"second");
    let described = kms.describe_key().key_id(&key).send().await.unwrap();
    assert_eq!(
        described.key_metadata().unwrap().current_key_material_id(),
        Some(id2.as_str())
    );

    // Expiry: the current material re-imported with a ValidTo one hour ahead (server clock);
    // two hours later the sweeper has deleted it.
    let now = common::now_secs();
    let reimported = import(
        &kms,
        dir,
        &key,
        AlgorithmSpec::RsaesOaepSha256,
        &other,
        None,
        Some(now + 3600),
    )
    .await
    .unwrap();
    assert_eq!(reimported, id2);
    let meta = kms.describe_key().key_id(&key).send().await.unwrap();
    assert_eq!(
        meta.key_metadata().unwrap().expiration_model(),
        Some(&ExpirationModelType::KeyMaterialExpires)
    );
    common::advance_dev_clock(server.addr, 7200).await;
    assert_eq!(state(&kms, &key).await, KeyState::PendingImport);
    assert_eq!(
        decrypt(&kms, &ct2).await.unwrap_err(),
        "KMSInvalidStateException"
    );
    let log = server.data_dir.join("audit");
    let trail: String = std::fs::read_dir(&log)
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
        .collect();
    assert!(trail.contains("\"DeleteExpiredKeyMaterial\""));
    let now = common::now_secs() + 7200;
    import(
        &kms,
        dir,
        &key,
        AlgorithmSpec::RsaesOaepSha256,
        &other,
        Some(ImportType::ExistingKeyMaterial),
        Some(now + 3600),
    )
    .await
    .unwrap();
    assert_eq!(decrypt(&kms, &ct2).await.unwrap(), b"second");
    assert_eq!(decrypt(&kms, &ct1).await.unwrap(), b"first");
}

#[tokio::test]
async fn import_rules_and_aws_errors() {
    let server = Server::start(&[]);
    let kms = server.client();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let material = dir.join("m.bin");
    openssl(&["rand", "-out", material.to_str().unwrap(), "32"]);

    let generated = common::new_key_id(&kms).await;
    let e = kms
        .get_parameters_for_import()
        .key_id(&generated)
        .wrapping_algorithm(AlgorithmSpec::RsaesOaepSha256)
        .wrapping_key_spec(WrappingKeySpec::Rsa2048)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_unsupported_operation_exception(), "{e:?}");
    assert_eq!(
        aws_sdk_kms::error::ProvideErrorMetadata::message(&e),
        Some(
            format!(
                "arn:aws:kms:us-east-1:111122223333:key/{generated} origin is AWS_KMS which is not valid for this operation."
            )
            .as_str()
        )
    );

    let new_external = || async {
        kms.create_key()
            .origin(OriginType::External)
            .send()
            .await
            .unwrap()
            .key_metadata()
            .unwrap()
            .key_id()
            .to_owned()
    };
    let a = new_external().await;
    let b = new_external().await;
    // A token of key A does not import into key B; garbage is no token.
    let params = kms
        .get_parameters_for_import()
        .key_id(&a)
        .wrapping_algorithm(AlgorithmSpec::RsaesOaepSha256)
        .wrapping_key_spec(WrappingKeySpec::Rsa3072)
        .send()
        .await
        .unwrap();
    assert_eq!(params.public_key().unwrap().as_ref()[0], 0x30);
    let wrapped = wrap(
        dir,
        params.public_key().unwrap().as_ref(),
        &AlgorithmSpec::RsaesOaepSha256,
        &material,
    );
    for token in [
        params.import_token().unwrap().clone(),
        Blob::new(b"not a token".to_vec()),
    ] {
        let e = kms
            .import_key_material()
            .key_id(&b)
            .import_token(token)
            .encrypted_key_material(Blob::new(wrapped.clone()))
            .expiration_model(ExpirationModelType::KeyMaterialDoesNotExpire)
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert!(e.is_invalid_import_token_exception(), "{e:?}");
    }
    // KEY_MATERIAL_EXPIRES (the default) needs ValidTo: AWS's message.
    let e = kms
        .import_key_material()
        .key_id(&a)
        .import_token(params.import_token().unwrap().clone())
        .encrypted_key_material(Blob::new(wrapped.clone()))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(
        aws_sdk_kms::error::ProvideErrorMetadata::message(&e),
        Some("A validTo date must be set if the ExpirationModel is KEY_MATERIAL_EXPIRES")
    );
    // Tampered wrapped material.
    let mut bad = wrapped.clone();
    bad[10] ^= 1;
    let e = kms
        .import_key_material()
        .key_id(&a)
        .import_token(params.import_token().unwrap().clone())
        .encrypted_key_material(Blob::new(bad))
        .expiration_model(ExpirationModelType::KeyMaterialDoesNotExpire)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_invalid_ciphertext_exception(), "{e:?}");
    // 16 bytes are not an AES-256 key.
    let short = dir.join("short.bin");
    openssl(&["rand", "-out", short.to_str().unwrap(), "16"]);
    let (code, _) = import(
        &kms,
        dir,
        &a,
        AlgorithmSpec::RsaesOaepSha256,
        &short,
        None,
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(code, "IncorrectKeyMaterialException");
    // ValidTo more than 365 days ahead.
    let (code, _) = import(
        &kms,
        dir,
        &a,
        AlgorithmSpec::RsaesOaepSha256,
        &material,
        None,
        Some(common::now_secs() + 400 * 86_400),
    )
    .await
    .unwrap_err();
    assert_eq!(code, "ValidationException");
    // The same material in two keys: each has its own KeyMaterialId.
    let ida = import(
        &kms,
        dir,
        &a,
        AlgorithmSpec::RsaesOaepSha256,
        &material,
        None,
        None,
    )
    .await
    .unwrap();
    let idb = import(
        &kms,
        dir,
        &b,
        AlgorithmSpec::RsaesOaepSha256,
        &material,
        None,
        None,
    )
    .await
    .unwrap();
    assert_ne!(ida, idb);
    // Cancelling a deletion of a key without material goes back to PendingImport.
    let c = new_external().await;
    kms.schedule_key_deletion()
        .key_id(&c)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    kms.cancel_key_deletion().key_id(&c).send().await.unwrap();
    assert_eq!(state(&kms, &c).await, KeyState::PendingImport);
}

#[tokio::test]
async fn an_imported_rsa_signing_key_signs_and_its_public_key_matches() {
    let server = Server::start(&[]);
    let kms = server.client();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pem = dir.join("private.pem");
    let der = dir.join("PrivateKey.der");
    let p = |x: &Path| x.to_str().unwrap().to_owned();
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        &p(&pem),
    ]);
    openssl(&[
        "pkcs8",
        "-topk8",
        "-nocrypt",
        "-inform",
        "PEM",
        "-in",
        &p(&pem),
        "-outform",
        "DER",
        "-out",
        &p(&der),
    ]);
    let key = kms
        .create_key()
        .origin(OriginType::External)
        .key_spec(KeySpec::Rsa2048)
        .key_usage(KeyUsageType::SignVerify)
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .key_id()
        .to_owned();
    import(
        &kms,
        dir,
        &key,
        AlgorithmSpec::RsaAesKeyWrapSha256,
        &der,
        None,
        None,
    )
    .await
    .unwrap();
    let public = kms.get_public_key().key_id(&key).send().await.unwrap();
    let ours = dir.join("pub.der");
    openssl(&[
        "pkey",
        "-in",
        &p(&pem),
        "-pubout",
        "-outform",
        "DER",
        "-out",
        &p(&ours),
    ]);
    assert_eq!(
        public.public_key().unwrap().as_ref(),
        std::fs::read(&ours).unwrap().as_slice()
    );
    let message = dir.join("msg.txt");
    std::fs::write(&message, b"signed by imported material").unwrap();
    let sig = kms
        .sign()
        .key_id(&key)
        .message(Blob::new(std::fs::read(&message).unwrap()))
        .signing_algorithm(SigningAlgorithmSpec::RsassaPkcs1V15Sha256)
        .send()
        .await
        .unwrap();
    let sig_file = dir.join("sig.bin");
    std::fs::write(&sig_file, sig.signature().unwrap().as_ref()).unwrap();
    let pub_pem = dir.join("pub.pem");
    openssl(&["pkey", "-in", &p(&pem), "-pubout", "-out", &p(&pub_pem)]);
    openssl(&[
        "dgst",
        "-sha256",
        "-verify",
        &p(&pub_pem),
        "-signature",
        &p(&sig_file),
        &p(&message),
    ]);
}
