//! Two services on one store and one set of HSMs behave as two nodes of a cluster: a key store
//! connected on one is usable on the other at once, with one password rotation, and a
//! disconnect on one closes the other's sessions.

use std::sync::Arc;

use kms_types::ErrorCode;
use serde_json::json;

use super::tests::{active_cluster, connected_store_with_key, env, hsm, kms, new_store, Env};
use crate::Service;

/// A second node on `e`'s store, HSMs and root key, having read the change log as the server
/// does before each request.
async fn second_node(e: &Env) -> Env {
    let root = Arc::new(kms_crypto::RootKey::from_bytes(&[3u8; 32]).unwrap());
    let svc = Service::new(e.store.clone(), root, e.clock.clone());
    svc.enable_hsm(e.fleet.clone(), Arc::new(e.driver.clone()));
    svc.sync_changes_async().await.unwrap();
    Env {
        svc,
        clock: e.clock.clone(),
        driver: e.driver.clone(),
        fleet: e.fleet.clone(),
        caller: e.caller.clone(),
        store: e.store.clone(),
    }
}

/// ConnectCustomKeyStore or DisconnectCustomKeyStore (`op`) of `store` on a node.
async fn set_connected(node: &Env, op: &str, store: &str) {
    kms(node, op, json!({ "CustomKeyStoreId": store }))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_store_connected_on_one_node_serves_on_another_with_one_rotation() {
    let a = env();
    let (cluster, anchor) = active_cluster(&a).await;
    let b = second_node(&a).await;
    let (store, ct) = connected_store_with_key(&a, &cluster, &anchor).await;
    let rotated = a.driver.user_pin("hsm-a").unwrap();
    assert_ne!(rotated, "kmsPswd123", "the connect rotated the password");

    // Node 2 learns of the connection from the change log before its next request.
    b.svc.sync_changes_async().await.unwrap();
    let opened = kms(&b, "Decrypt", json!({"CiphertextBlob": ct}))
        .await
        .unwrap();
    assert_eq!(opened["Plaintext"], "aGVsbG8=");
    let key = opened["KeyId"].as_str().unwrap().to_owned();
    let ct2 = kms(
        &b,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": "d29ybGQ="}),
    )
    .await
    .unwrap()["CiphertextBlob"]
        .clone();
    let back = kms(&a, "Decrypt", json!({"CiphertextBlob": ct2}))
        .await
        .unwrap();
    assert_eq!(back["Plaintext"], "d29ybGQ=");
    // Connecting again on node 2 (as a second ConnectCustomKeyStore racing the first would)
    // finds it CONNECTED: no second rotation.
    set_connected(&b, "ConnectCustomKeyStore", &store).await;
    assert_eq!(a.driver.user_pin("hsm-a").unwrap(), rotated);
    assert_eq!(a.driver.user_pin("hsm-b").unwrap(), rotated);

    // A disconnect on node 1 closes node 2's sessions before its next request.
    set_connected(&a, "DisconnectCustomKeyStore", &store).await;
    b.svc.sync_changes_async().await.unwrap();
    assert!(b.svc.connections().get(&store).is_none());
    let refused = kms(
        &b,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": "d29ybGQ="}),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code, ErrorCode::KMSInvalidStateException);

    // A node started while the store is CONNECTED opens its sessions without rotating.
    set_connected(&a, "ConnectCustomKeyStore", &store).await;
    let rotated = a.driver.user_pin("hsm-a").unwrap();
    let c = second_node(&a).await;
    c.svc.restore_key_store_connections().await;
    let opened = kms(&c, "Decrypt", json!({"CiphertextBlob": ct2}))
        .await
        .unwrap();
    assert_eq!(opened["Plaintext"], "d29ybGQ=");
    assert_eq!(a.driver.user_pin("hsm-a").unwrap(), rotated);
}

#[tokio::test]
async fn a_node_reconnects_to_a_store_connected_again_elsewhere_with_the_new_password() {
    let a = env();
    let (cluster, anchor) = active_cluster(&a).await;
    let store = new_store(&a, &cluster, &anchor, "s").await;
    let b = second_node(&a).await;
    for _ in 0..2 {
        set_connected(&a, "ConnectCustomKeyStore", &store).await;
        b.svc.sync_changes_async().await.unwrap();
        assert_eq!(b.svc.connections().get(&store).unwrap().all().len(), 2);
        set_connected(&a, "DisconnectCustomKeyStore", &store).await;
        b.svc.sync_changes_async().await.unwrap();
        assert!(b.svc.connections().get(&store).is_none());
    }
}

#[tokio::test]
async fn a_node_follows_hsms_added_to_and_deleted_from_the_cluster() {
    let a = env();
    let (cluster, anchor) = active_cluster(&a).await;
    let (store, ct) = connected_store_with_key(&a, &cluster, &anchor).await;
    let b = second_node(&a).await;
    let sessions = |n: &Env| n.svc.connections().get(&store).unwrap().all().len();
    assert_eq!(sessions(&b), 2);
    let added = hsm(
        &a,
        "CreateHsm",
        json!({"ClusterId": cluster, "AvailabilityZone": "us-east-1c"}),
    )
    .await
    .unwrap()["Hsm"]["HsmId"]
        .as_str()
        .unwrap()
        .to_owned();
    b.svc.sync_changes_async().await.unwrap();
    assert_eq!(sessions(&b), 3);
    // Node 2 serves from the new HSM alone.
    a.driver.set_unreachable("hsm-a", true);
    a.driver.set_unreachable("hsm-b", true);
    let opened = kms(&b, "Decrypt", json!({"CiphertextBlob": ct}))
        .await
        .unwrap();
    assert_eq!(opened["Plaintext"], "aGVsbG8=");
    a.driver.set_unreachable("hsm-a", false);
    a.driver.set_unreachable("hsm-b", false);
    hsm(
        &a,
        "DeleteHsm",
        json!({"ClusterId": cluster, "HsmId": added}),
    )
    .await
    .unwrap();
    b.svc.sync_changes_async().await.unwrap();
    assert_eq!(sessions(&b), 2);
}
