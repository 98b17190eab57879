//! The real `aws` CLI against kmsd: the README walkthrough in miniature.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::Server;

fn aws(server: &Server, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("aws")
        .args([
            "--endpoint-url",
            &server.endpoint(),
            "--region",
            "us-east-1",
            "--output",
            "json",
        ])
        .args(args)
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            server.data_dir.join("admin-credentials"),
        )
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .output()
        .expect("the `aws` CLI must be installed (`pip install awscli`; .ci/run does this)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(server: &Server, args: &[&str]) -> serde_json::Value {
    let (success, out, err) = aws(server, args);
    assert!(success, "aws {args:?} failed: {err}");
    if out.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&out).unwrap()
    }
}

#[test]
fn aws_cli_walkthrough() {
    let server = Server::start(&[]);
    let id = ok(&server, &["kms", "create-key", "--description", "cli"])["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(
        &server,
        &[
            "kms",
            "create-alias",
            "--alias-name",
            "alias/cli",
            "--target-key-id",
            &id,
        ],
    );
    let tmp = tempfile::tempdir().unwrap();
    let pt = tmp.path().join("pt.txt");
    std::fs::write(&pt, b"hello from the cli").unwrap();
    let enc = ok(
        &server,
        &[
            "kms",
            "encrypt",
            "--key-id",
            "alias/cli",
            "--plaintext",
            &format!("fileb://{}", pt.display()),
            "--encryption-context",
            "app=walkthrough",
        ],
    );
    use base64::Engine as _;
    let ct = base64::engine::general_purpose::STANDARD
        .decode(enc["CiphertextBlob"].as_str().unwrap())
        .unwrap();
    let ctf = tmp.path().join("ct.bin");
    std::fs::write(&ctf, ct).unwrap();
    let dec = ok(
        &server,
        &[
            "kms",
            "decrypt",
            "--ciphertext-blob",
            &format!("fileb://{}", ctf.display()),
            "--encryption-context",
            "app=walkthrough",
        ],
    );
    let pt_back = base64::engine::general_purpose::STANDARD
        .decode(dec["Plaintext"].as_str().unwrap())
        .unwrap();
    assert_eq!(pt_back, b"hello from the cli");
    let (success, _, err) = aws(
        &server,
        &[
            "kms",
            "decrypt",
            "--ciphertext-blob",
            &format!("fileb://{}", ctf.display()),
        ],
    );
    assert!(
        !success && err.contains("InvalidCiphertextException"),
        "{err}"
    );
    let dk = ok(
        &server,
        &[
            "kms",
            "generate-data-key",
            "--key-id",
            "alias/cli",
            "--key-spec",
            "AES_256",
        ],
    );
    assert!(dk["Plaintext"].is_string() && dk["CiphertextBlob"].is_string());
    let keys = ok(&server, &["kms", "list-keys"]);
    assert_eq!(keys["Keys"].as_array().unwrap().len(), 1);
    let who = ok(&server, &["sts", "get-caller-identity"]);
    assert_eq!(who["Account"], "111122223333");
    // GetKeyLastUsage: the generate-data-key above was the key's last use.
    let id = keys["Keys"][0]["KeyId"].as_str().unwrap().to_owned();
    let usage = ok(&server, &["kms", "get-key-last-usage", "--key-id", &id]);
    assert_eq!(
        usage["KeyLastUsage"]["Operation"], "GenerateDataKey",
        "{usage}"
    );
}
