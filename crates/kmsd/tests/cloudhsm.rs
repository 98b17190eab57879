//! A CloudHSM-style key store end to end, with SoftHSM2 tokens standing in for the HSMs: the
//! `aws cloudhsmv2` CLI creates and initialises the cluster (CSR signed by an `openssl` CA),
//! `kmsd hsm create-user` makes kmsuser, the SDK creates and connects the key store, and keys in
//! it encrypt inside the HSMs, survive a restart, and keep working with one HSM gone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/hsm_lab.rs"]
mod hsm_lab;

use std::path::Path;
use std::process::Command;

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{ConnectionStateType, KeyState, OriginType};
use common::Server;
use hsm_lab::{run, sign_csr};
use serde_json::Value;

const SO_PIN: &str = "so-secret-1234";

fn aws(server: &Server, args: &[&str]) -> Value {
    let out = run(Command::new("aws")
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
        .env_remove("AWS_PROFILE"));
    if out.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&out).unwrap()
    }
}

/// ConnectCustomKeyStore, then the store as DescribeCustomKeyStores shows it.
async fn connect(
    kms: &aws_sdk_kms::Client,
    store: &str,
) -> aws_sdk_kms::types::CustomKeyStoresListEntry {
    kms.connect_custom_key_store()
        .custom_key_store_id(store)
        .send()
        .await
        .unwrap();
    kms.describe_custom_key_stores()
        .custom_key_store_id(store)
        .send()
        .await
        .unwrap()
        .custom_key_stores()[0]
        .clone()
}

/// The test's ciphertext decrypts (context app=hsm) to its plaintext.
async fn decrypts_inside_the_hsm(kms: &aws_sdk_kms::Client, blob: &Blob) {
    let pt = kms
        .decrypt()
        .ciphertext_blob(blob.clone())
        .encryption_context("app", "hsm")
        .send()
        .await
        .unwrap();
    assert_eq!(pt.plaintext().unwrap().as_ref(), b"inside the HSM");
}

/// `aws cloudhsmv2 create-hsm`, which must leave the HSM ACTIVE.
fn create_active_hsm(server: &Server, cluster: &str, az: &str) {
    let h = aws(
        server,
        &[
            "cloudhsmv2",
            "create-hsm",
            "--cluster-id",
            cluster,
            "--availability-zone",
            az,
        ],
    );
    assert_eq!(h["Hsm"]["State"], "ACTIVE", "{h}");
}

/// Tokens and the HSM declaration: tokens a/b/c in zones us-east-1a/b/c.
fn hsm_setup(dir: &Path) -> std::path::PathBuf {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    std::env::set_var("SOFTHSM2_CONF", &conf);
    for label in ["hsm-a", "hsm-b", "hsm-c", "hsm-d", "hsm-e"] {
        run(Command::new("softhsm2-util").args([
            "--init-token",
            "--free",
            "--label",
            label,
            "--so-pin",
            SO_PIN,
            "--pin",
            "initial-user-pin",
        ]));
    }
    std::fs::write(dir.join("so-pin"), SO_PIN).unwrap();
    let module = "/usr/lib/softhsm/libsofthsm2.so";
    let mut toml = String::new();
    // hsm-d and hsm-e stand in zones a and b for a cluster restored from a backup.
    for (label, z) in [("a", "a"), ("b", "b"), ("c", "c"), ("d", "a"), ("e", "b")] {
        toml.push_str(&format!(
            "[[hsm]]\nmodule = \"{module}\"\ntoken_label = \"hsm-{label}\"\navailability_zone = \"us-east-1{z}\"\nso_pin_file = \"{}\"\n\n",
            dir.join("so-pin").display()
        ));
    }
    for (z, id) in [
        ("a", "subnet-0a0a0a0a"),
        ("b", "subnet-0b0b0b0b"),
        ("c", "subnet-0c0c0c0c"),
    ] {
        toml.push_str(&format!(
            "[[subnet]]\nid = \"{id}\"\navailability_zone = \"us-east-1{z}\"\n\n"
        ));
    }
    let path = dir.join("hsms.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

#[tokio::test]
async fn cloudhsm_key_store_with_softhsm() {
    let tmp = tempfile::tempdir().unwrap();
    let hsms = hsm_setup(tmp.path());
    let data = tmp.path().join("data");
    let hsm_flag = hsms.to_str().unwrap().to_owned();
    let mut server = Server::start_in(&data, &["--hsm-config", &hsm_flag]);

    // Control plane through the real `aws cloudhsmv2` CLI.
    let c = aws(
        &server,
        &[
            "cloudhsmv2",
            "create-cluster",
            "--hsm-type",
            "hsm1.medium",
            "--subnet-ids",
            "subnet-0a0a0a0a",
            "subnet-0b0b0b0b",
            "subnet-0c0c0c0c",
        ],
    );
    let cluster = c["Cluster"]["ClusterId"].as_str().unwrap().to_owned();
    assert!(cluster.starts_with("cluster-"));
    for az in ["us-east-1a", "us-east-1b"] {
        create_active_hsm(&server, &cluster, az);
    }
    let d = aws(
        &server,
        &[
            "cloudhsmv2",
            "describe-clusters",
            "--filters",
            &format!("clusterIds={cluster}"),
        ],
    );
    let csr = d["Clusters"][0]["Certificates"]["ClusterCsr"]
        .as_str()
        .unwrap()
        .to_owned();
    let (signed, anchor) = sign_csr(tmp.path(), &csr);
    let init = aws(
        &server,
        &[
            "cloudhsmv2",
            "initialize-cluster",
            "--cluster-id",
            &cluster,
            "--signed-cert",
            &signed,
            "--trust-anchor",
            &anchor,
        ],
    );
    assert_eq!(init["State"], "INITIALIZED");
    run(Command::new(env!("CARGO_BIN_EXE_kmsd")).args([
        "hsm",
        "create-user",
        "--data-dir",
        data.to_str().unwrap(),
        "--hsm-config",
        &hsm_flag,
        "--cluster-id",
        &cluster,
        "kmsuser",
        "kmsPswd123",
    ]));
    let d = aws(&server, &["cloudhsmv2", "describe-clusters"]);
    assert_eq!(d["Clusters"][0]["State"], "ACTIVE");

    // The key store through the SDK.
    let kms = server.client();
    let store = kms
        .create_custom_key_store()
        .custom_key_store_name("ExampleCloudHSMKeyStore")
        .cloud_hsm_cluster_id(&cluster)
        .trust_anchor_certificate(&anchor)
        .key_store_password("kmsPswd123")
        .send()
        .await
        .unwrap()
        .custom_key_store_id()
        .unwrap()
        .to_owned();
    kms.connect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    let listed = kms
        .describe_custom_key_stores()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    let entry = &listed.custom_key_stores()[0];
    assert_eq!(
        entry.connection_state(),
        Some(&ConnectionStateType::Connected),
        "{entry:?}"
    );
    assert_eq!(entry.cloud_hsm_cluster_id(), Some(cluster.as_str()));

    let key = kms
        .create_key()
        .origin(OriginType::AwsCloudhsm)
        .custom_key_store_id(&store)
        .description("in the HSM")
        .send()
        .await
        .unwrap();
    let meta = key.key_metadata().unwrap();
    assert_eq!(meta.origin(), Some(&OriginType::AwsCloudhsm));
    assert_eq!(meta.cloud_hsm_cluster_id(), Some(cluster.as_str()));
    let key_id = meta.key_id().to_owned();
    let ct = kms
        .encrypt()
        .key_id(&key_id)
        .plaintext(Blob::new(b"inside the HSM".to_vec()))
        .encryption_context("app", "hsm")
        .send()
        .await
        .unwrap();
    let blob = ct.ciphertext_blob().unwrap().clone();
    decrypts_inside_the_hsm(&kms, &blob).await;
    let rnd = kms
        .generate_random()
        .number_of_bytes(64)
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    assert_eq!(rnd.plaintext().unwrap().as_ref().len(), 64);

    // Restart: the connection is restored (and the password rotated again).
    assert!(server.terminate());
    let mut server = Server::start_in(&data, &["--hsm-config", &hsm_flag]);
    let kms = server.client();
    let mut connected = false;
    for _ in 0..100 {
        let s = kms
            .describe_custom_key_stores()
            .custom_key_store_id(&store)
            .send()
            .await
            .unwrap();
        if s.custom_key_stores()[0].connection_state() == Some(&ConnectionStateType::Connected)
            && kms
                .decrypt()
                .ciphertext_blob(blob.clone())
                .encryption_context("app", "hsm")
                .send()
                .await
                .is_ok()
        {
            connected = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(connected, "the key store did not reconnect after a restart");

    // One HSM gone (its token files removed): the other serves without error.
    let tokens = tmp.path().join("tokens");
    let dirs: Vec<_> = std::fs::read_dir(&tokens)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let token_dir = |label: &str| {
        dirs.iter()
            .find(|d| {
                std::fs::read(d.join("token.object"))
                    .map(|b| b.windows(label.len()).any(|w| w == label.as_bytes()))
                    .unwrap_or(false)
            })
            .unwrap_or_else(|| panic!("token directory of {label}"))
            .clone()
    };
    let hsm_a_dir = token_dir("hsm-a");
    std::fs::rename(&hsm_a_dir, tmp.path().join("hsm-a-unplugged")).unwrap();
    for _ in 0..6 {
        decrypts_inside_the_hsm(&kms, &blob).await;
    }
    std::fs::rename(tmp.path().join("hsm-a-unplugged"), &hsm_a_dir).unwrap();

    // A third HSM joins the active cluster: it receives the crypto user, the cluster wrapping
    // key and the key (inside the HSMs), and then serves alone with the first two unplugged.
    create_active_hsm(&server, &cluster, "us-east-1c");
    let hsm_b_dir = token_dir("hsm-b");
    std::fs::rename(&hsm_a_dir, tmp.path().join("hsm-a-unplugged")).unwrap();
    std::fs::rename(&hsm_b_dir, tmp.path().join("hsm-b-unplugged")).unwrap();
    for _ in 0..3 {
        decrypts_inside_the_hsm(&kms, &blob).await;
    }
    std::fs::rename(tmp.path().join("hsm-a-unplugged"), &hsm_a_dir).unwrap();
    std::fs::rename(tmp.path().join("hsm-b-unplugged"), &hsm_b_dir).unwrap();

    // Disconnect: the key is Unavailable and unusable; deletion of the store needs no keys.
    kms.disconnect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    let d = kms.describe_key().key_id(&key_id).send().await.unwrap();
    assert_eq!(
        d.key_metadata().unwrap().key_state(),
        Some(&KeyState::Unavailable)
    );
    let err = kms
        .encrypt()
        .key_id(&key_id)
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error()
            .unwrap()
            .is_kms_invalid_state_exception(),
        "{err:?}"
    );
    let err = kms
        .delete_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error()
            .unwrap()
            .is_custom_key_store_has_cm_ks_exception(),
        "{err:?}"
    );

    // While someone else holds a management session as kmsuser, connecting fails USER_LOGGED_IN.
    let mut login = Command::new(env!("CARGO_BIN_EXE_kmsd"))
        .args([
            "hsm",
            "login",
            "--data-dir",
            data.to_str().unwrap(),
            "--cluster-id",
            &cluster,
        ])
        .args(common::store_args_of(&data))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(login.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
    }
    let s = connect(&kms, &store).await;
    assert_eq!(s.connection_state(), Some(&ConnectionStateType::Failed));
    assert_eq!(
        s.connection_error_code().map(|c| c.as_str()),
        Some("USER_LOGGED_IN")
    );
    let _ = Command::new("kill")
        .args(["-TERM", &login.id().to_string()])
        .status();
    let _ = login.wait();
    kms.disconnect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    kms.connect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    decrypts_inside_the_hsm(&kms, &blob).await;

    // Backups were taken at activation and when HSMs joined; a cluster created from the latest
    // one receives the key (wrapped inside the HSMs) and shares the backup history.
    let b = aws(
        &server,
        &[
            "cloudhsmv2",
            "describe-backups",
            "--filters",
            &format!("clusterIds={cluster}"),
        ],
    );
    let backups = b["Backups"].as_array().unwrap();
    assert_eq!(
        backups.len(),
        2,
        "activation and the HSM added to the active cluster: {b}"
    );
    assert!(backups.iter().all(|b| b["BackupState"] == "READY"), "{b}");
    let backup = backups[0]["BackupId"].as_str().unwrap().to_owned();
    let c2 = aws(
        &server,
        &[
            "cloudhsmv2",
            "create-cluster",
            "--hsm-type",
            "hsm1.medium",
            "--subnet-ids",
            "subnet-0a0a0a0a",
            "subnet-0b0b0b0b",
            "--source-backup-id",
            &backup,
        ],
    );
    assert_eq!(c2["Cluster"]["SourceBackupId"], backup.as_str(), "{c2}");
    let cluster2 = c2["Cluster"]["ClusterId"].as_str().unwrap().to_owned();
    for az in ["us-east-1a", "us-east-1b"] {
        create_active_hsm(&server, &cluster2, az);
    }
    let d = aws(
        &server,
        &[
            "cloudhsmv2",
            "describe-clusters",
            "--filters",
            &format!("clusterIds={cluster2}"),
        ],
    );
    assert_eq!(d["Clusters"][0]["State"], "ACTIVE", "{d}");
    let err = kms
        .create_custom_key_store()
        .custom_key_store_name("SecondStore")
        .cloud_hsm_cluster_id(&cluster2)
        .trust_anchor_certificate(&anchor)
        .key_store_password("kmsPswd123")
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error()
            .unwrap()
            .is_cloud_hsm_cluster_in_use_exception(),
        "{err:?}"
    );
    // The store moves to the restored cluster (whose HSMs have the backup's kmsuser password)
    // and decrypts there what it encrypted on the first cluster.
    kms.disconnect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    kms.update_custom_key_store()
        .custom_key_store_id(&store)
        .cloud_hsm_cluster_id(&cluster2)
        .send()
        .await
        .unwrap();
    let s = connect(&kms, &store).await;
    assert_eq!(
        s.connection_state(),
        Some(&ConnectionStateType::Connected),
        "{s:?}"
    );
    decrypts_inside_the_hsm(&kms, &blob).await;
    assert!(server.terminate());

    // The cluster's own audit log recorded the HSM operations and verifies.
    let cluster_log = data.join("hsm-audit").join(&cluster);
    let (ok, out) = {
        let o = Command::new(env!("CARGO_BIN_EXE_kmsd"))
            .args([
                "audit",
                "verify",
                cluster_log.to_str().unwrap(),
                "--public-key",
            ])
            .arg(data.join("audit-signing-key.pub.der"))
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
        )
    };
    assert!(ok, "{out}");
    let q = run(Command::new(env!("CARGO_BIN_EXE_kmsd")).args([
        "audit",
        "query",
        cluster_log.to_str().unwrap(),
    ]));
    for event in [
        "CreateCluster",
        "InitializeCluster",
        "Login",
        "ChangePassword",
        "GenerateKey",
        "Encrypt",
        "Decrypt",
        "ConnectFailed",
        "CreateBackup",
    ] {
        assert!(
            q.contains(&format!("\"eventName\":\"{event}\"")),
            "no {event} in the cluster log:\n{q}"
        );
    }
    assert!(
        !q.contains("kmsPswd123"),
        "a password reached the cluster log"
    );
}
