//! The token of a deleted HSM is erased (its cluster wrapping key kept in a declared backup
//! vault first), so another cluster gets it clean, and the deleted HSMs' cluster is still
//! restored from its backup. SoftHSM2 tokens stand in for the HSMs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/hsm_lab.rs"]
mod hsm_lab;

use aws_sdk_kms::primitives::Blob;
use hsm_lab::{connect, create_store, disconnect, HsmLab};
use serde_json::Value;

/// A new key in the store; returns (key id, ciphertext of "kept secret").
async fn key_and_ciphertext(kms: &aws_sdk_kms::Client, store: &str) -> (String, Blob) {
    let key = hsm_lab::create_key(kms, store).await;
    let ct = kms
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"kept secret".to_vec()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob()
        .unwrap()
        .clone();
    (key, ct)
}

async fn decrypts(kms: &aws_sdk_kms::Client, ct: &Blob) {
    let pt = kms
        .decrypt()
        .ciphertext_blob(ct.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(pt.plaintext().unwrap().as_ref(), b"kept secret");
}

/// The cluster as DescribeClusters shows it.
fn describe(lab: &HsmLab, server: &common::Server, cluster: &str) -> Value {
    lab.aws(
        server,
        &[
            "cloudhsmv2",
            "describe-clusters",
            "--filters",
            &format!("clusterIds={cluster}"),
        ],
    )["Clusters"][0]
        .clone()
}

/// DeleteHsm of the cluster's HSM in `us-east-1<zone>`.
fn delete_hsm_in(lab: &HsmLab, server: &common::Server, cluster: &str, zone: &str) {
    let c = describe(lab, server, cluster);
    let hsm = c["Hsms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["AvailabilityZone"] == format!("us-east-1{zone}").as_str())
        .unwrap_or_else(|| panic!("no HSM in zone {zone}: {c}"));
    lab.aws(
        server,
        &[
            "cloudhsmv2",
            "delete-hsm",
            "--cluster-id",
            cluster,
            "--hsm-id",
            hsm["HsmId"].as_str().unwrap(),
        ],
    );
}

#[tokio::test]
async fn a_freed_token_is_erased_and_its_cluster_still_restores() {
    // hsm-a and hsm-b for cluster A, hsm-c for cluster B, hsm-d to restore A; one backup vault.
    let lab = HsmLab::new(&[("a", "a"), ("b", "b"), ("c", "b"), ("d", "a")]);
    lab.add_backup_vault("vault-1");
    let server = lab.serve();
    let kms = server.client();

    // Cluster A with a connected key store and a key.
    let (a, anchor_a) = lab.cluster(&server, &["a", "b"], Some("kmsuser"));
    let store_a = create_store(&kms, "store-a", &a, &anchor_a).await;
    assert_eq!(connect(&kms, &store_a).await.0, "CONNECTED");
    let (_, ct) = key_and_ciphertext(&kms, &store_a).await;

    // Its HSM on hsm-a is deleted: the token is erased (the wrapping key kept in the vault).
    delete_hsm_in(&lab, &server, &a, "a");
    decrypts(&kms, &ct).await;

    // Cluster B, active with its own wrapping key on hsm-c, gets the freed hsm-a: a clean
    // token, synchronised from hsm-c (it ended DEGRADED "cluster wrapping key mismatch" when
    // freed tokens kept A's objects).
    let (b, anchor_b) = lab.cluster(&server, &["b"], Some("kmsuser"));
    let h = lab.create_hsm(&server, &b, "a");
    assert_eq!(h["State"], "ACTIVE", "{h}");
    let store_b = create_store(&kms, "store-b", &b, &anchor_b).await;
    assert_eq!(connect(&kms, &store_b).await.0, "CONNECTED");
    let (_, ct_b) = key_and_ciphertext(&kms, &store_b).await;
    decrypts(&kms, &ct_b).await;

    // A loses its last HSM (erased too), then is restored from its latest backup onto hsm-d
    // (the wrapping key from the vault) and the erased hsm-b: the old ciphertext decrypts.
    disconnect(&kms, &store_a).await;
    delete_hsm_in(&lab, &server, &a, "b");
    assert!(describe(&lab, &server, &a)["Hsms"]
        .as_array()
        .unwrap()
        .is_empty());
    for zone in ["a", "b"] {
        let h = lab.create_hsm(&server, &a, zone);
        assert_eq!(h["State"], "ACTIVE", "{h}");
    }
    assert_eq!(describe(&lab, &server, &a)["State"], "ACTIVE");
    assert_eq!(connect(&kms, &store_a).await.0, "CONNECTED");
    decrypts(&kms, &ct).await;
    decrypts(&kms, &ct_b).await;

    // The erasures are in A's own log.
    let log = lab.cluster_log(&a);
    let erased = log
        .lines()
        .filter(|l| l.contains("\"eventName\":\"EraseHsmToken\"") && l.contains("\"erased\":true"))
        .count();
    assert_eq!(erased, 2, "{log}");
    assert!(log.contains("vault-1"), "{log}");
}
