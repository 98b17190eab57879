//! `kmsd k8s-kms-plugin` with kube-apiserver's KEK in a CloudHSM key store (SoftHSM2 tokens
//! standing in for the HSMs): round trips, key_id is the key's ARN, a disconnected store makes
//! Status not ok and Encrypt fail. Its own test binary: it sets SOFTHSM2_CONF for the process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/hsm_lab.rs"]
mod hsm_lab;
mod k8s_support;

use std::path::Path;
use std::process::Command;

use aws_sdk_kms::types::OriginType;
use common::Server;
use hsm_lab::{run, sign_csr};
use k8s_kms_plugin::proto::EncryptRequest;
use k8s_support::{connect, decrypt, encrypt, start_plugin, status};
use serde_json::Value;

const SO_PIN: &str = "so-secret-1234";
const KEY_STORE_PASSWORD: &str = "kmsPswd123";

/// `aws cloudhsmv2 ...` against the test server, as its admin.
fn cloudhsmv2(server: &Server, args: &[&str]) -> Value {
    let out = run(Command::new("aws")
        .args([
            "--endpoint-url",
            &server.endpoint(),
            "--region",
            "us-east-1",
        ])
        .args(["--output", "json", "cloudhsmv2"])
        .args(args)
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            server.data_dir.join("admin-credentials"),
        )
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env_remove("AWS_PROFILE"));
    serde_json::from_str(&out).unwrap()
}

/// Two SoftHSM2 tokens (zones a and b) and the HSM declaration naming them.
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
    std::fs::write(dir.join("so-pin"), SO_PIN).unwrap();
    let mut toml = String::new();
    for zone in ["a", "b"] {
        run(Command::new("softhsm2-util").args([
            "--init-token",
            "--free",
            "--label",
            &format!("hsm-{zone}"),
            "--so-pin",
            SO_PIN,
            "--pin",
            "initial-user-pin",
        ]));
        toml.push_str(&format!(
            "[[hsm]]\nmodule = \"/usr/lib/softhsm/libsofthsm2.so\"\ntoken_label = \"hsm-{zone}\"\navailability_zone = \"us-east-1{zone}\"\nso_pin_file = \"{}\"\n\n[[subnet]]\nid = \"subnet-0{zone}0{zone}0{zone}0{zone}\"\navailability_zone = \"us-east-1{zone}\"\n\n",
            dir.join("so-pin").display()
        ));
    }
    let path = dir.join("hsms.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

#[tokio::test]
async fn a_key_in_a_cloudhsm_key_store() {
    let tmp = tempfile::tempdir().unwrap();
    let hsms = hsm_setup(tmp.path());
    let data = tmp.path().join("data");
    let hsm_flag = hsms.to_str().unwrap().to_owned();
    let server = Server::start_in(&data, &["--hsm-config", &hsm_flag]);

    let c = cloudhsmv2(
        &server,
        &[
            "create-cluster",
            "--hsm-type",
            "hsm1.medium",
            "--subnet-ids",
            "subnet-0a0a0a0a",
            "subnet-0b0b0b0b",
        ],
    );
    let cluster = c["Cluster"]["ClusterId"].as_str().unwrap().to_owned();
    for az in ["us-east-1a", "us-east-1b"] {
        let h = cloudhsmv2(
            &server,
            &[
                "create-hsm",
                "--cluster-id",
                &cluster,
                "--availability-zone",
                az,
            ],
        );
        assert_eq!(h["Hsm"]["State"], "ACTIVE", "{h}");
    }
    let d = cloudhsmv2(
        &server,
        &[
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
    cloudhsmv2(
        &server,
        &[
            "initialize-cluster",
            "--cluster-id",
            &cluster,
            "--signed-cert",
            &signed,
            "--trust-anchor",
            &anchor,
        ],
    );
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
        KEY_STORE_PASSWORD,
    ]));

    let kms = server.client();
    let store = kms
        .create_custom_key_store()
        .custom_key_store_name("k8s-hsm")
        .cloud_hsm_cluster_id(&cluster)
        .trust_anchor_certificate(&anchor)
        .key_store_password(KEY_STORE_PASSWORD)
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
    let arn = kms
        .create_key()
        .origin(OriginType::AwsCloudhsm)
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_owned();
    kms.create_alias()
        .alias_name("alias/k8s-hsm")
        .target_key_id(&arn)
        .send()
        .await
        .unwrap();

    let plugin = start_plugin(&server, &["--key-id", "alias/k8s-hsm"]);
    let mut client = connect(&plugin.socket).await;
    let st = status(&mut client).await;
    assert_eq!(
        (st.healthz.as_str(), st.key_id.as_str()),
        ("ok", arn.as_str())
    );
    let (ciphertext, key_id) = encrypt(&mut client, b"seed in the HSM", "uid-hsm").await;
    assert_eq!(key_id, arn);
    assert_eq!(
        decrypt(&mut client, &ciphertext, &key_id).await.unwrap(),
        b"seed in the HSM"
    );

    // A disconnected key store: Status not ok, Encrypt and Decrypt fail (no fake success).
    kms.disconnect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    let st = status(&mut client).await;
    assert_ne!(st.healthz, "ok");
    let failed = client
        .encrypt(EncryptRequest {
            plaintext: b"seed".to_vec(),
            uid: "u".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(failed.code(), tonic::Code::FailedPrecondition, "{failed:?}");
    let failed = decrypt(&mut client, &ciphertext, &key_id)
        .await
        .unwrap_err();
    assert_eq!(failed.code(), tonic::Code::FailedPrecondition, "{failed:?}");
}
