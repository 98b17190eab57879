//! The audit trail: a CloudTrail record per call (success or failure), no secrets in it or in
//! the logs, durable for acknowledged requests, and `kmsd audit verify` catching tampering.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use aws_sdk_kms::primitives::Blob;
use common::Server;
use serde_json::Value;

fn kmsd(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kmsd"))
        .args(args)
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn records(dir: &Path) -> Vec<Value> {
    let (ok, out) = kmsd(&["audit", "query", dir.join("audit").to_str().unwrap()]);
    assert!(ok, "{out}");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn all_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn every_call_is_recorded_without_secrets_and_the_trail_verifies() {
    let mut server = Server::start(&[]);
    let kms = server.client();
    let plaintext = b"audit-plaintext-marker-51d2".to_vec();
    let key = kms
        .create_key()
        .description("audited")
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_owned();
    let ct = kms
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(plaintext.clone()))
        .encryption_context("Department", "Finance")
        .send()
        .await
        .unwrap();
    let dk = kms
        .generate_data_key()
        .key_id(&key)
        .number_of_bytes(32)
        .send()
        .await
        .unwrap();
    let pt = kms
        .decrypt()
        .ciphertext_blob(ct.ciphertext_blob().unwrap().clone())
        .encryption_context("Department", "Finance")
        .send()
        .await
        .unwrap();
    assert_eq!(pt.plaintext().unwrap().as_ref(), &plaintext[..]);
    let _ = kms
        .decrypt()
        .ciphertext_blob(ct.ciphertext_blob().unwrap().clone())
        .send()
        .await
        .unwrap_err();
    let bad = server.client_with("AKIAUNKNOWN000000000", "x", "us-east-1");
    let _ = bad.list_keys().send().await.unwrap_err();
    assert!(server.terminate());

    let dir = server.data_dir.clone();
    let recs = records(&dir);
    let names: Vec<&str> = recs
        .iter()
        .map(|r| r["eventName"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "CreateKey",
            "Encrypt",
            "GenerateDataKey",
            "Decrypt",
            "Decrypt",
            "ListKeys"
        ]
    );
    let create = &recs[0];
    assert_eq!(create["eventSource"], "kms.amazonaws.com");
    assert_eq!(create["eventType"], "AwsApiCall");
    assert_eq!(create["eventVersion"], "1.08");
    assert_eq!(
        create["userIdentity"]["arn"],
        "arn:aws:iam::111122223333:user/admin"
    );
    assert_eq!(create["userIdentity"]["type"], "IAMUser");
    assert_eq!(create["awsRegion"], "us-east-1");
    assert_eq!(create["readOnly"], false);
    assert_eq!(create["requestParameters"]["description"], "audited");
    assert_eq!(
        create["responseElements"]["keyMetadata"]["arn"],
        key.as_str()
    );
    assert_eq!(create["resources"][0]["ARN"], key.as_str());
    assert!(
        create["requestID"].as_str().unwrap().len() == 36
            && create["eventID"].as_str().unwrap().len() == 36
    );
    let enc = &recs[1];
    assert_eq!(
        enc["requestParameters"]["encryptionContext"]["Department"],
        "Finance"
    );
    assert_eq!(enc["requestParameters"]["keyId"], key.as_str());
    assert!(enc["requestParameters"].get("plaintext").is_none());
    assert_eq!(enc["responseElements"], Value::Null);
    assert_eq!(enc["readOnly"], true);
    assert_eq!(recs[4]["errorCode"], "InvalidCiphertextException");
    assert_eq!(recs[4]["resources"][0]["ARN"], key.as_str());
    assert_eq!(recs[5]["errorCode"], "UnrecognizedClientException");
    assert_eq!(
        recs[5]["userIdentity"]["accessKeyId"],
        "AKIAUNKNOWN000000000"
    );

    // Verify with the pinned public key.
    let audit_dir = dir.join("audit");
    let public = dir.join("audit-signing-key.pub.der");
    let (ok, out) = kmsd(&[
        "audit",
        "verify",
        audit_dir.to_str().unwrap(),
        "--public-key",
        public.to_str().unwrap(),
    ]);
    assert!(ok && out.contains("6 records"), "{out}");

    // No plaintext, data key, ciphertext or secret in any file of the data dir, nor in the logs.
    let (_, admin_secret) = server.admin_credentials();
    let b64 = |b: &[u8]| {
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b).into_bytes()
    };
    let secrets: Vec<Vec<u8>> = vec![
        plaintext.clone(),
        b64(&plaintext),
        dk.plaintext().unwrap().as_ref().to_vec(),
        b64(dk.plaintext().unwrap().as_ref()),
        b64(ct.ciphertext_blob().unwrap().as_ref()),
        admin_secret.clone().into_bytes(),
    ];
    let log = server.log.lock().unwrap().clone();
    assert!(
        log.contains("DEBUG"),
        "the test runs the server at debug level"
    );
    for s in &secrets {
        assert!(!contains(log.as_bytes(), s), "a secret reached the log");
        for (name, bytes) in all_bytes(&dir) {
            if name.ends_with("admin-credentials") {
                continue;
            }
            assert!(!contains(&bytes, s), "a secret is in {name}");
        }
    }

    // Tampering is found and located.
    let file = std::fs::read_dir(&audit_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .min()
        .unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replacen("\"Finance\"", "\"Sales\"", 1)).unwrap();
    let (ok, out) = kmsd(&[
        "audit",
        "verify",
        audit_dir.to_str().unwrap(),
        "--public-key",
        public.to_str().unwrap(),
    ]);
    assert!(!ok && out.contains("audit-00000001.jsonl:3:"), "{out}");
}

#[tokio::test]
async fn acknowledged_calls_are_in_the_trail_after_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut server = Server::start_in(&dir, &[]);
    let kms = server.client();
    let key = common::new_key_id(&kms).await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let kms = kms.clone();
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = 0;
            for _ in 0..25 {
                kms.encrypt()
                    .key_id(&key)
                    .plaintext(Blob::new(b"x".to_vec()))
                    .send()
                    .await
                    .unwrap();
                ids += 1;
            }
            ids
        }));
    }
    let mut acked = 0;
    for t in tasks {
        acked += t.await.unwrap();
    }
    server.kill9();
    // Restart closes the crashed file with a signed digest and continues the chain.
    let mut server = Server::start_in(&dir, &[]);
    server.client().list_keys().send().await.unwrap();
    assert!(server.terminate());
    let encrypts = records(&dir)
        .iter()
        .filter(|r| r["eventName"] == "Encrypt")
        .count();
    assert_eq!(encrypts, acked);
    let (ok, out) = kmsd(&["audit", "verify", dir.join("audit").to_str().unwrap()]);
    assert!(ok, "{out}");
}

#[tokio::test]
async fn scheduled_deletion_and_automatic_rotation_are_aws_service_events() {
    let mut server = Server::start(&["--dev"]);
    let kms = server.client_with("test", "test", "us-east-1");
    let id = common::new_key_id(&kms).await;
    kms.schedule_key_deletion()
        .key_id(&id)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    // A key rotating every 90 days, with a ciphertext from before its rotation.
    let rotating = common::new_key_id(&kms).await;
    let old = kms
        .encrypt()
        .key_id(&rotating)
        .plaintext(Blob::new(b"old".to_vec()))
        .send()
        .await
        .unwrap();
    kms.enable_key_rotation()
        .key_id(&rotating)
        .rotation_period_in_days(90)
        .send()
        .await
        .unwrap();
    let status = kms
        .get_key_rotation_status()
        .key_id(&rotating)
        .send()
        .await
        .unwrap();
    assert!(status.key_rotation_enabled());
    assert_eq!(status.rotation_period_in_days(), Some(90));
    common::advance_dev_clock(server.addr, 8 * 86_400).await;
    common::advance_dev_clock(server.addr, 90 * 86_400).await;
    let rotations = kms
        .list_key_rotations()
        .key_id(&rotating)
        .send()
        .await
        .unwrap();
    assert_eq!(rotations.rotations().len(), 1);
    assert_eq!(
        rotations.rotations()[0].rotation_type(),
        Some(&aws_sdk_kms::types::RotationType::Automatic)
    );
    let plain = kms
        .decrypt()
        .ciphertext_blob(old.ciphertext_blob().unwrap().clone())
        .send()
        .await
        .unwrap();
    assert_eq!(plain.plaintext().unwrap().as_ref(), b"old");
    assert!(server.terminate());
    let recs = records(&server.data_dir);
    let events: Vec<_> = recs
        .iter()
        .filter(|r| r["eventType"] == "AwsServiceEvent")
        .collect();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["eventName"], "DeleteKey");
    assert!(events[0]["resources"][0]["ARN"]
        .as_str()
        .unwrap()
        .ends_with(&id));
    assert_eq!(events[1]["eventName"], "RotateKey");
    assert!(events[1]["resources"][0]["ARN"]
        .as_str()
        .unwrap()
        .ends_with(&rotating));
}
