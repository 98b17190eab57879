//! `kmsd serve --seed FILE`: deterministic fixtures. The committed ciphertext
//! (tests/fixtures/seeded-ciphertext.b64, made once under tests/fixtures/seed.toml) decrypts on
//! any fresh kmsd seeded with that file; restarting with the same file creates no duplicates;
//! fixed material needs --dev or --allow-seeded-material and is reported as imported.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::OriginType;
use base64::Engine;
use common::Server;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[tokio::test]
async fn seeded_fixtures_decrypt_a_committed_ciphertext_and_restart_without_duplicates() {
    let seed = fixture("seed.toml");
    let seed = seed.to_str().unwrap();
    let mut server = Server::start(&["--seed", seed, "--allow-seeded-material"]);
    // The seeded user's fixed access key works (no --dev: real signature checks).
    let kms = server.client_with(
        "AKIAKMSDSEEDFIXTURE1",
        "kmsd/seed/fixture/secret/do/not/use/in/prod",
        "us-east-1",
    );
    let committed = std::fs::read_to_string(fixture("seeded-ciphertext.b64")).unwrap();
    let blob = base64::engine::general_purpose::STANDARD
        .decode(committed.trim())
        .unwrap();
    let pt = kms
        .decrypt()
        .ciphertext_blob(Blob::new(blob.clone()))
        .encryption_context("purpose", "fixture")
        .send()
        .await
        .unwrap();
    assert_eq!(
        pt.plaintext().unwrap().as_ref(),
        b"hello from the committed fixtures"
    );
    assert_eq!(
        pt.key_id(),
        Some("arn:aws:kms:us-east-1:111122223333:key/11111111-2222-3333-4444-555555555555")
    );
    let fixed = kms
        .describe_key()
        .key_id("alias/seeded")
        .send()
        .await
        .unwrap();
    assert_eq!(
        fixed.key_metadata().unwrap().origin(),
        Some(&OriginType::External),
        "fixed material is reported as imported"
    );
    let generated = kms
        .describe_key()
        .key_id("22222222-3333-4444-5555-666666666666")
        .send()
        .await
        .unwrap();
    assert_eq!(
        generated.key_metadata().unwrap().origin(),
        Some(&OriginType::AwsKms)
    );
    let sig = kms
        .sign()
        .key_id("33333333-4444-5555-6666-777777777777")
        .message(Blob::new(b"m".to_vec()))
        .signing_algorithm(aws_sdk_kms::types::SigningAlgorithmSpec::EcdsaSha256)
        .send()
        .await
        .unwrap();
    assert!(sig.signature().is_some());

    let count = |kms: aws_sdk_kms::Client| async move {
        let keys = kms.list_keys().send().await.unwrap().keys().len();
        let aliases = kms.list_aliases().send().await.unwrap().aliases().len();
        let grants = kms
            .list_grants()
            .key_id("11111111-2222-3333-4444-555555555555")
            .send()
            .await
            .unwrap()
            .grants()
            .len();
        (keys, aliases, grants)
    };
    let before = count(kms.clone()).await;
    assert_eq!(before, (3, 1, 1));

    // Same file again: nothing new.
    assert!(server.terminate());
    let dir = server.data_dir.clone();
    let server = Server::start_in(&dir, &["--seed", seed, "--allow-seeded-material"]);
    let kms = server.client_with(
        "AKIAKMSDSEEDFIXTURE1",
        "kmsd/seed/fixture/secret/do/not/use/in/prod",
        "us-east-1",
    );
    assert_eq!(count(kms.clone()).await, before);
    assert!(server.log.lock().unwrap().contains("applied the seed file"));
}

#[tokio::test]
async fn fixed_material_needs_dev_or_an_explicit_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kmsd"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path().join("data"))
        .arg("--seed")
        .arg(fixture("seed.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("fixed key material") && err.contains("--allow-seeded-material"),
        "{err}"
    );
}
