//! The token of a deleted HSM is erased, its backup history's wrapping key kept first: by a
//! declared backup vault, else by the last token itself, reserved for that history until it is
//! gone.

use kms_types::ErrorCode;
use serde_json::{json, Value};

use super::fleet::DeclaredVault;
use super::tests::{active_cluster, connected_store_with_key, env, hsm, kms, state, Env};

async fn op(e: &Env, name: &str, body: Value) -> Value {
    hsm(e, name, body).await.unwrap()
}

/// DeleteHsm of the cluster's HSM in `az`.
async fn delete_hsm_in(e: &Env, cluster: &str, az: &str) {
    let d = op(
        e,
        "DescribeClusters",
        json!({"Filters": {"clusterIds": [cluster]}}),
    )
    .await;
    let h = d["Clusters"][0]["Hsms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["AvailabilityZone"] == az)
        .unwrap()
        .clone();
    op(
        e,
        "DeleteHsm",
        json!({"ClusterId": cluster, "HsmId": h["HsmId"]}),
    )
    .await;
}

async fn create_hsm(e: &Env, cluster: &str, az: &str) -> Result<Value, kms_types::KmsError> {
    hsm(
        e,
        "CreateHsm",
        json!({"ClusterId": cluster, "AvailabilityZone": az}),
    )
    .await
    .map(|r| r["Hsm"].clone())
}

fn erased(e: &Env, token: &str) -> bool {
    e.driver.key_count(token) == 0
        && !e.driver.has_cluster_key(token)
        && e.driver.user_pin(token).is_none()
}

async fn connect_and_decrypt(e: &Env, store: &str, ct: &Value) {
    kms(
        e,
        "ConnectCustomKeyStore",
        json!({"CustomKeyStoreId": store}),
    )
    .await
    .unwrap();
    assert_eq!(state(e, store).await, ("CONNECTED".into(), None));
    let pt = kms(e, "Decrypt", json!({"CiphertextBlob": ct}))
        .await
        .unwrap();
    assert_eq!(pt["Plaintext"], "aGVsbG8=");
}

#[tokio::test]
async fn a_declared_vault_keeps_the_key_so_every_freed_token_is_erased() {
    let e = env();
    e.fleet
        .fleet
        .write()
        .unwrap()
        .backup_vaults
        .push(DeclaredVault {
            module: "mem".into(),
            token_label: "vault".into(),
            so_pin_file: None,
            so_pin_env: None,
        });
    let (a, anchor) = active_cluster(&e).await;
    let (store, ct) = connected_store_with_key(&e, &a, &anchor).await;
    kms(
        &e,
        "DisconnectCustomKeyStore",
        json!({"CustomKeyStoreId": store}),
    )
    .await
    .unwrap();
    delete_hsm_in(&e, &a, "us-east-1a").await;
    delete_hsm_in(&e, &a, "us-east-1b").await;
    assert!(erased(&e, "hsm-a") && erased(&e, "hsm-b"));
    assert!(e.driver.has_cluster_key("vault"));
    assert_eq!(e.driver.key_count("vault"), 0, "a vault keeps no key");
    // Restored from the backup, the wrapping key coming from the vault.
    for az in ["us-east-1c", "us-east-1a"] {
        let h = create_hsm(&e, &a, az).await.unwrap();
        assert_eq!(h["State"], "ACTIVE", "{h}");
    }
    assert_eq!(e.driver.key_count("hsm-c"), 1);
    connect_and_decrypt(&e, &store, &ct).await;
}

#[tokio::test]
async fn without_a_vault_the_last_token_is_kept_for_its_history_only() {
    let e = env();
    let (a, anchor) = active_cluster(&e).await;
    let (store, ct) = connected_store_with_key(&e, &a, &anchor).await;
    kms(
        &e,
        "DisconnectCustomKeyStore",
        json!({"CustomKeyStoreId": store}),
    )
    .await
    .unwrap();
    // hsm-a is erased (hsm-b still holds the wrapping key); hsm-b, the last holder, is kept.
    delete_hsm_in(&e, &a, "us-east-1a").await;
    assert!(erased(&e, "hsm-a"));
    delete_hsm_in(&e, &a, "us-east-1b").await;
    assert!(e.driver.has_cluster_key("hsm-b"));
    // No other cluster gets it...
    let b = op(
        &e,
        "CreateCluster",
        json!({"HsmType": "hsm1.medium", "SubnetIds": ["subnet-0a0a0a0a", "subnet-0b0b0b0b"]}),
    )
    .await;
    let b = b["Cluster"]["ClusterId"].as_str().unwrap().to_owned();
    let err = create_hsm(&e, &b, "us-east-1b").await.unwrap_err();
    assert_eq!(err.code, ErrorCode::CloudHsmResourceLimitExceededException);
    // ...its own cluster does, and is restored with it.
    for az in ["us-east-1b", "us-east-1a"] {
        let h = create_hsm(&e, &a, az).await.unwrap();
        assert_eq!(h["State"], "ACTIVE", "{h}");
    }
    connect_and_decrypt(&e, &store, &ct).await;

    // Once neither the cluster nor a backup of its history is left, the kept token is erased
    // when another cluster gets it.
    kms(
        &e,
        "DisconnectCustomKeyStore",
        json!({"CustomKeyStoreId": store}),
    )
    .await
    .unwrap();
    delete_hsm_in(&e, &a, "us-east-1a").await;
    delete_hsm_in(&e, &a, "us-east-1b").await;
    assert!(erased(&e, "hsm-a") && !erased(&e, "hsm-b"));
    op(&e, "DeleteCluster", json!({"ClusterId": a})).await;
    let err = create_hsm(&e, &b, "us-east-1b").await.unwrap_err();
    assert_eq!(
        err.code,
        ErrorCode::CloudHsmResourceLimitExceededException,
        "its backups still need it"
    );
    let backups = op(
        &e,
        "DescribeBackups",
        json!({"Filters": {"clusterIds": [a]}}),
    )
    .await;
    for bk in backups["Backups"].as_array().unwrap() {
        op(&e, "DeleteBackup", json!({"BackupId": bk["BackupId"]})).await;
    }
    e.clock.advance_ms(8 * 24 * 3600 * 1000);
    let h = create_hsm(&e, &b, "us-east-1b").await.unwrap();
    assert_eq!(h["State"], "ACTIVE", "{h}");
    assert!(erased(&e, "hsm-b"));
}
