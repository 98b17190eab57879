//! The audit trail: a CloudTrail record per call (success or failure), no secrets in it or in
//! the logs, durable for acknowledged requests, and `kmsd audit verify` catching tampering.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use aws_sdk_kms::primitives::Blob;
use common::Server;
use serde_json::{json, Value};

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

/// Every file under `dir`, and the server's PostgreSQL database when it has one.
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
    out.extend(common::postgres_dump(dir).map(|d| ("the PostgreSQL database".to_owned(), d)));
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
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
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
    // (Line numbers depend on where kmsd wrote its signed checkpoints.)
    assert!(
        !ok && out.contains("audit-00000001.jsonl:") && out.contains("record 3 does not chain"),
        "{out}"
    );
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
    let public = dir.join("audit-signing-key.pub.der");
    let (ok, out) = kmsd(&[
        "audit",
        "verify",
        dir.join("audit").to_str().unwrap(),
        "--public-key",
        public.to_str().unwrap(),
    ]);
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

fn audit_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    files
}

fn verify_with_key(audit: &Path, public: &Path, extra: &[&str]) -> (bool, String) {
    let mut args = vec![
        "audit",
        "verify",
        audit.to_str().unwrap(),
        "--public-key",
        public.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    kmsd(&args)
}

/// Polls `kmsd audit verify` until nothing is left unsigned (kmsd signs within about a second).
fn wait_until_signed(audit: &Path, public: &Path) {
    for _ in 0..200 {
        let (ok, out) = verify_with_key(audit, public, &[]);
        assert!(ok, "{out}");
        if out.contains(" 0 record(s) after its last signed checkpoint") {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("kmsd did not sign its records");
}

/// Issue 12 §3: rewrite a denied Encrypt in the file still being written as an admin's
/// success and recompute the chain. kmsd has signed a checkpoint over it meanwhile, so verify
/// finds it; verify without a pinned key refuses to run.
#[tokio::test]
async fn a_rewritten_record_of_the_open_file_is_found_and_verify_needs_a_pinned_key() {
    let mut server = Server::start(&[]);
    let kms = server.client();
    let key = common::new_key_id(&kms).await;
    let mallory = server.client_with("AKIAMALLORY000000000", "x", "us-east-1");
    let _ = mallory
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await
        .unwrap_err();
    kms.list_keys().send().await.unwrap();
    let audit = server.data_dir.join("audit");
    let public = server.data_dir.join("audit-signing-key.pub.der");
    wait_until_signed(&audit, &public);

    let (ok, out) = kmsd(&["audit", "verify", audit.to_str().unwrap()]);
    assert!(!ok && out.contains("--trust-embedded-key"), "{out}");
    let (ok, out) = kmsd(&[
        "audit",
        "verify",
        audit.to_str().unwrap(),
        "--trust-embedded-key",
    ]);
    assert!(ok && out.contains("not a pinned one"), "{out}");

    // The attack, on the open file.
    let open = audit_files(&audit).pop().unwrap();
    let mut prev = String::new();
    let mut out_lines = String::new();
    for line in std::fs::read_to_string(&open).unwrap().lines() {
        let mut v: Value = serde_json::from_str(line).unwrap();
        if v.get("kmsdChain").is_none() {
            out_lines.push_str(line);
            out_lines.push('\n');
            continue;
        }
        if prev.is_empty() {
            prev = v["kmsdChain"]["prev"].as_str().unwrap().to_owned();
        }
        if v["eventName"] == "Encrypt" && v.get("errorCode").is_some() {
            let m = v.as_object_mut().unwrap();
            m.remove("errorCode");
            m.remove("errorMessage");
            v["userIdentity"] = json!({"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/admin", "accountId": "111122223333"});
        }
        v["kmsdChain"]["prev"] = json!(prev);
        let l = serde_json::to_string(&v).unwrap();
        prev = hex::encode(kms_crypto::sha256(l.as_bytes()));
        out_lines.push_str(&l);
        out_lines.push('\n');
    }
    std::fs::write(&open, out_lines).unwrap();
    let (ok, out) = verify_with_key(&audit, &public, &[]);
    assert!(!ok && out.contains("signed checkpoint"), "{out}");
    assert!(server.terminate());
}

/// `kmsd audit anchor` output kept elsewhere catches records cut off the end, which no
/// signature in the remaining files can show; the PEM from `kmsd audit public-key` works as
/// the pinned key.
#[tokio::test]
async fn an_anchor_catches_a_trail_cut_short() {
    let mut server = Server::start(&["--audit-roll-secs", "1"]);
    let kms = server.client();
    kms.list_keys().send().await.unwrap();
    let audit = server.data_dir.join("audit");
    // Wait for the first file to roll, then write into a second one.
    for _ in 0..200 {
        if audit_files(&audit).len() == 1
            && std::fs::read_to_string(&audit_files(&audit)[0])
                .unwrap()
                .contains("kmsdDigest")
        {
            break;
        }
        kms.list_aliases().send().await.unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    kms.list_keys().send().await.unwrap();
    assert!(server.terminate());

    let (ok, pem) = {
        let out = Command::new(env!("CARGO_BIN_EXE_kmsd"))
            .args(["audit", "public-key", "--data-dir"])
            .arg(&server.data_dir)
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8(out.stdout).unwrap())
    };
    assert!(
        ok && pem.starts_with("-----BEGIN PUBLIC KEY-----\n"),
        "{pem}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let pem_file = tmp.path().join("audit.pem");
    std::fs::write(&pem_file, pem).unwrap();
    let (ok, line) = kmsd(&[
        "audit",
        "anchor",
        audit.to_str().unwrap(),
        "--public-key",
        pem_file.to_str().unwrap(),
    ]);
    assert!(ok && line.starts_with("{\"kmsdAnchor\""), "{line}");
    let anchor = tmp.path().join("anchor.json");
    std::fs::write(&anchor, line).unwrap();
    let anchor_arg = ["--anchor", anchor.to_str().unwrap()];
    let (ok, out) = verify_with_key(&audit, &pem_file, &anchor_arg);
    assert!(ok && out.contains("anchored record"), "{out}");

    // Remove the newest file: what remains still verifies on its own, not against the anchor.
    let files = audit_files(&audit);
    assert!(files.len() >= 2, "{files:?}");
    std::fs::remove_file(files.last().unwrap()).unwrap();
    let (ok, out) = verify_with_key(&audit, &pem_file, &[]);
    assert!(ok, "{out}");
    let (ok, out) = verify_with_key(&audit, &pem_file, &anchor_arg);
    assert!(!ok && out.contains("records cut off the end"), "{out}");
}

#[cfg(unix)]
#[tokio::test]
async fn an_audit_dir_outside_the_data_dir_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let audit = tmp.path().join("var-log-kmsd");
    let mut server = Server::start(&["--audit-dir", audit.to_str().unwrap()]);
    server.client().list_keys().send().await.unwrap();
    assert!(server.terminate());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&audit), 0o700);
    let files = audit_files(&audit);
    assert!(!files.is_empty());
    for f in files {
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
}

/// Issue 12 §6: invalid signed requests carrying a 300 KB value grow the trail by a bounded
/// amount each (the value and the error message repeating it are cut).
#[tokio::test]
async fn oversized_invalid_requests_grow_the_trail_by_a_bounded_amount() {
    let mut server = Server::start(&[]);
    let (akid, secret) = server.admin_credentials();
    let audit = server.data_dir.join("audit");
    let size = |dir: &Path| -> u64 {
        audit_files(dir)
            .iter()
            .map(|f| std::fs::metadata(f).unwrap().len())
            .sum()
    };
    server.client().list_keys().send().await.unwrap();
    let before = size(&audit);
    let huge = "k".repeat(300 * 1024);
    // A value the error message repeats, a blob-like bearer token, and (second body) an
    // unmodelled member that makes the parameters as a whole too large.
    let echoed = json!({"KeyId": huge, "GrantTokens": [huge.clone()]}).to_string();
    let unmodelled = json!({"KeyId": huge, "Unmodelled": huge}).to_string();
    const REQUESTS: u64 = 50;
    for i in 0..REQUESTS {
        let r = common::kms_request(
            server.addr,
            "TrentService.DescribeKey",
            if i % 2 == 0 { &echoed } else { &unmodelled },
            Some((&akid, &secret)),
            common::now_secs(),
        )
        .await;
        assert_eq!(r.error_type(), "ValidationException");
    }
    assert!(server.terminate());
    let per_request = (size(&audit) - before) / REQUESTS;
    assert!(per_request < 80 * 1024, "{per_request} bytes per request");
    let recs = records(&server.data_dir);
    let show = |r: &Value| r.to_string().chars().take(600).collect::<String>();
    let echoed = &recs[recs.len() - 2];
    let key_id = echoed["requestParameters"]["keyId"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", show(echoed)));
    assert!(
        key_id.ends_with("…[truncated by kmsd: 307200 bytes]"),
        "{}",
        show(echoed)
    );
    assert!(echoed["requestParameters"].get("grantTokens").is_none());
    assert!(echoed["errorMessage"]
        .as_str()
        .unwrap()
        .contains("[truncated by kmsd: "));
    let unmodelled = recs.last().unwrap();
    assert_eq!(
        unmodelled["requestParameters"]["kmsdTruncated"],
        true,
        "{}",
        show(unmodelled)
    );
}

/// Retention from the command line: closed files go, the removal is in the trail, and the trail
/// that starts later still verifies.
#[tokio::test]
async fn retention_removes_closed_files_and_the_trail_still_verifies() {
    let mut server = Server::start(&["--audit-roll-secs", "1", "--audit-retention-bytes", "1"]);
    let kms = server.client();
    let audit = server.data_dir.join("audit");
    let first = audit.join("audit-00000001.jsonl");
    for _ in 0..200 {
        kms.list_keys().send().await.unwrap();
        if !first.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(!first.exists(), "retention did not remove the first file");
    kms.list_keys().send().await.unwrap();
    assert!(server.terminate());
    let public = server.data_dir.join("audit-signing-key.pub.der");
    let (ok, out) = verify_with_key(&audit, &public, &[]);
    assert!(ok && out.contains("removed by retention"), "{out}");
    let removals = records(&server.data_dir)
        .into_iter()
        .filter(|r| r["eventName"] == "AuditFilesRemoved")
        .count();
    assert!(removals >= 1);
}

/// Several nodes' trails side by side: each record names its node (`--node-id`, or the name kept
/// in DATA_DIR/node-id), `kmsd audit verify` checks every node's trail in the parent directory
/// and names a damaged one, `kmsd audit query` merges them by time.
#[tokio::test]
async fn several_nodes_trails_verify_and_merge() {
    let trails = tempfile::tempdir().unwrap();
    let dir_a = trails.path().join("node-a");
    let dir_b = trails.path().join("node-b");
    let mut a = Server::start(&[
        "--node-id",
        "node-a",
        "--audit-dir",
        dir_a.to_str().unwrap(),
    ]);
    let mut b = Server::start(&["--audit-dir", dir_b.to_str().unwrap()]);
    let b_name = std::fs::read_to_string(b.data_dir.join("node-id"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(b_name.starts_with("node-"), "{b_name}");
    common::new_key_id(&a.client()).await;
    common::new_key_id(&b.client()).await;
    common::new_key_id(&a.client()).await;
    assert!(a.terminate());
    assert!(b.terminate());

    let parent = trails.path().to_str().unwrap();
    let (ok, out) = kmsd(&["audit", "verify", parent, "--trust-embedded-key"]);
    assert!(ok, "{out}");
    assert!(out.contains("node-a: audit trail intact"), "{out}");
    assert!(out.contains("node-b: audit trail intact"), "{out}");

    let (ok, out) = kmsd(&["audit", "query", parent, "--event-name", "CreateKey"]);
    assert!(ok, "{out}");
    let merged: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let nodes: Vec<&str> = merged
        .iter()
        .map(|r| r["kmsdNodeId"].as_str().unwrap())
        .collect();
    // eventTime has one-second resolution: within a second, records keep their node's order.
    let mut sorted = nodes.clone();
    sorted.sort();
    let mut want = vec!["node-a", "node-a", b_name.as_str()];
    want.sort();
    assert_eq!(sorted, want, "{out}");
    let seqs_a: Vec<u64> = merged
        .iter()
        .filter(|r| r["kmsdNodeId"] == "node-a")
        .map(|r| r["kmsdChain"]["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs_a.windows(2).all(|w| w[0] < w[1]), "{seqs_a:?}");
    let times: Vec<&str> = merged
        .iter()
        .map(|r| r["eventTime"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");

    // A damaged trail is named; the others are still reported.
    let file = std::fs::read_dir(&dir_b)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replacen("CreateKey", "CreateKeZ", 1)).unwrap();
    let (ok, out) = kmsd(&["audit", "verify", parent, "--trust-embedded-key"]);
    assert!(!ok, "{out}");
    assert!(out.contains("node-a: audit trail intact"), "{out}");
    assert!(out.contains("node-b: NOT intact"), "{out}");
}
