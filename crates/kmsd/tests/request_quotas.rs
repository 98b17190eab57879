//! Request quotas (`--quotas FILE`) with the real binary: a burst beyond a small quota gets
//! AWS's ThrottlingException (HTTP 400, "Rate exceeded"); other accounts and other quotas are
//! unaffected; the SDK's retries get through.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeySpec, KeyUsageType, SigningAlgorithmSpec};
use common::{kms_request, now_secs, Server};

/// Symmetric cryptographic operations 5/s and RSA 5/s per account; CreateKey 2/s; nothing else
/// limited.
const QUOTAS: &str = "preset = \"none\"\n[rates]\nsymmetric = 5\nrsa = 5\nCreateKey = 2\n";

fn server(dir: &tempfile::TempDir) -> Server {
    let file = dir.path().join("quotas.toml");
    std::fs::write(&file, QUOTAS).unwrap();
    Server::start_in(
        &dir.path().join("data"),
        &["--quotas", file.to_str().unwrap()],
    )
}

/// Credentials of a second account, made with `kmsd admin create-account`.
fn second_account(server: &Server) -> (String, String) {
    let text = common::kmsd_admin(
        &server.data_dir,
        &server.store_args(),
        &["create-account", "444455556666"],
    );
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap()
            .trim_start_matches([' ', '='])
            .trim()
            .to_owned()
    };
    (get("aws_access_key_id"), get("aws_secret_access_key"))
}

#[tokio::test]
async fn a_burst_is_throttled_for_its_account_and_quota_only_and_sdk_retries_get_through() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir);
    let kms = server.client();
    let key = kms.create_key().send().await.unwrap();
    let key_id = key.key_metadata().unwrap().key_id().to_owned();
    let rsa = kms
        .create_key()
        .key_spec(KeySpec::Rsa2048)
        .key_usage(KeyUsageType::SignVerify)
        .send()
        .await
        .unwrap();
    let rsa_id = rsa.key_metadata().unwrap().key_id().to_owned();

    // CreateKey's own quota (2/s) is used up: a third at once is throttled.
    let err = kms.create_key().send().await.unwrap_err();
    assert_eq!(
        err.as_service_error().and_then(|e| e.meta().code()),
        Some("ThrottlingException")
    );

    // A burst of Encrypts over raw HTTP: the ones beyond the bucket get exactly AWS's answer.
    let (akid, secret) = server.admin_credentials();
    let body = serde_json::json!({"KeyId": key_id, "Plaintext": "aGk="}).to_string();
    let mut throttled = None;
    for _ in 0..20 {
        let r = kms_request(
            server.addr,
            "TrentService.Encrypt",
            &body,
            Some((&akid, &secret)),
            now_secs(),
        )
        .await;
        if r.status != 200 {
            throttled = Some(r);
            break;
        }
    }
    let r = throttled.expect("a burst of 20 above 5/s was never throttled");
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        serde_json::json!({"__type": "ThrottlingException", "message": "Rate exceeded"})
    );

    // Meanwhile: another quota class (RSA), an unlimited operation and another account pass.
    kms.sign()
        .key_id(&rsa_id)
        .message(Blob::new(b"msg".to_vec()))
        .signing_algorithm(SigningAlgorithmSpec::RsassaPssSha256)
        .send()
        .await
        .unwrap();
    kms.list_keys().send().await.unwrap();
    let (akid2, secret2) = second_account(&server);
    let other = server.client_with(&akid2, &secret2, "us-east-1");
    let key2 = other.create_key().send().await.unwrap();
    other
        .encrypt()
        .key_id(key2.key_metadata().unwrap().key_id())
        .plaintext(Blob::new(b"hi".to_vec()))
        .send()
        .await
        .unwrap();
    // The same account in another Region has its own buckets too.
    let west = server.client_with(&akid, &secret, "eu-west-1");
    let west_key = west.create_key().send().await.unwrap();
    west.encrypt()
        .key_id(west_key.key_metadata().unwrap().key_id())
        .plaintext(Blob::new(b"hi".to_vec()))
        .send()
        .await
        .unwrap();

    // The SDK's standard retries (with backoff) get every request of a longer burst through.
    let conf = kms
        .config()
        .to_builder()
        .retry_config(aws_sdk_kms::config::retry::RetryConfig::standard().with_max_attempts(10))
        .build();
    let retrying = aws_sdk_kms::Client::from_conf(conf);
    let before = server.log.lock().unwrap().matches("throttled").count();
    for _ in 0..15 {
        retrying
            .encrypt()
            .key_id(&key_id)
            .plaintext(Blob::new(b"hi".to_vec()))
            .send()
            .await
            .unwrap();
    }
    let after = server.log.lock().unwrap().matches("throttled").count();
    assert!(
        after > before,
        "the burst should have been throttled and retried"
    );
}

#[test]
fn a_bad_quota_file_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[rates]\nsymetric = 5\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kmsd"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--quotas", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown quota \"symetric\""), "{err}");
}
