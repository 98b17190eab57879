//! The crypto user's life against the in-memory driver: only `kmsuser` connects, list, delete,
//! change of password (which unlocks), their refusals; and the key store's state when kmsd
//! restarts without its HSMs; a trust anchor is exactly one certificate.

use std::sync::Arc;

use kms_types::ErrorCode;
use serde_json::json;

use super::tests::{
    active_cluster, active_cluster_as, connected_store_with_key, env, kms, new_store, sign, state,
    Env,
};
use crate::Service;

/// Connect, the state it ended in, then disconnect (when it did not stay DISCONNECTED).
async fn connect_then_disconnect(e: &Env, store: &str) -> (String, Option<String>) {
    kms(
        e,
        "ConnectCustomKeyStore",
        json!({"CustomKeyStoreId": store}),
    )
    .await
    .unwrap();
    let got = state(e, store).await;
    kms(
        e,
        "DisconnectCustomKeyStore",
        json!({"CustomKeyStoreId": store}),
    )
    .await
    .unwrap();
    got
}

fn user_names(e: &Env, cluster: &str) -> Vec<(String, String, bool)> {
    e.svc
        .list_crypto_users(cluster)
        .unwrap()
        .into_iter()
        .map(|u| (u.username, u.role, u.locked))
        .collect()
}

fn failed(code: &str) -> (String, Option<String>) {
    ("FAILED".to_owned(), Some(code.to_owned()))
}

#[tokio::test]
async fn only_kmsuser_connects_and_a_wrong_user_is_deleted_and_recreated() {
    let e = env();
    let (cluster, anchor) = active_cluster_as(&e, "cryptouser").await;
    let store = new_store(&e, &cluster, &anchor, "store").await;
    assert_eq!(
        connect_then_disconnect(&e, &store).await,
        failed("USER_NOT_FOUND"),
        "a crypto user not named kmsuser is no kmsuser"
    );
    assert_eq!(
        user_names(&e, &cluster),
        vec![
            ("admin".into(), "admin".into(), false),
            ("cryptouser".into(), "crypto-user".into(), false)
        ]
    );
    // The one user slot is taken: create-user refuses until the wrong user is deleted.
    let err = e
        .svc
        .create_crypto_user(&cluster, "kmsuser", "kmsPswd123", false)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::CloudHsmInvalidRequestException);
    let err = e
        .svc
        .delete_crypto_user(&cluster, "kmsuser")
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::CloudHsmResourceNotFoundException);
    e.svc
        .delete_crypto_user(&cluster, "CryptoUser")
        .await
        .unwrap();
    assert_eq!(user_names(&e, &cluster).len(), 1, "only the admin is left");
    assert_ne!(
        e.driver.user_pin("hsm-a").as_deref(),
        Some("kmsPswd123"),
        "the deleted user's password no longer opens the HSM"
    );
    assert_eq!(
        connect_then_disconnect(&e, &store).await,
        failed("USER_NOT_FOUND")
    );
    // Names are case-insensitive and shown lowercase, as in the CloudHSM CLI.
    e.svc
        .create_crypto_user(&cluster, "KMSUSER", "kmsPswd123", false)
        .await
        .unwrap();
    assert_eq!(user_names(&e, &cluster)[1].0, "kmsuser");
    assert_eq!(connect_then_disconnect(&e, &store).await.0, "CONNECTED");
    for bad in ["", "kms-user", "a_name_longer_than_thirty_one_chars"] {
        let err = e
            .svc
            .create_crypto_user(&cluster, bad, "kmsPswd123", false)
            .await
            .unwrap_err();
        assert_eq!(
            err.code,
            ErrorCode::CloudHsmInvalidRequestException,
            "{bad:?}"
        );
    }
    let err = e.svc.list_crypto_users("cluster-nope1234567").unwrap_err();
    assert_eq!(err.code, ErrorCode::CloudHsmResourceNotFoundException);
}

#[tokio::test]
async fn user_changes_are_refused_while_logged_in_and_deletion_while_it_owns_keys() {
    let e = env();
    let (cluster, anchor) = active_cluster(&e).await;
    let (store, _) = connected_store_with_key(&e, &cluster, &anchor).await;
    let err = e
        .svc
        .change_crypto_user_password(&cluster, "kmsuser", "newPswd456")
        .await
        .unwrap_err();
    assert!(err.message.contains("logged in"), "{}", err.message);
    let err = e
        .svc
        .delete_crypto_user(&cluster, "kmsuser")
        .await
        .unwrap_err();
    assert!(err.message.contains("logged in"), "{}", err.message);
    kms(
        &e,
        "DisconnectCustomKeyStore",
        json!({"CustomKeyStoreId": store}),
    )
    .await
    .unwrap();
    let err = e
        .svc
        .delete_crypto_user(&cluster, "kmsuser")
        .await
        .unwrap_err();
    assert!(err.message.contains("owns 1 keys"), "{}", err.message);
    // A management session holds the user too.
    e.fleet
        .logged_in_elsewhere
        .write()
        .unwrap()
        .push(cluster.clone());
    let err = e
        .svc
        .change_crypto_user_password(&cluster, "kmsuser", "newPswd456")
        .await
        .unwrap_err();
    assert!(err.message.contains("kmsd hsm login"), "{}", err.message);
}

#[tokio::test]
async fn a_locked_out_user_is_unlocked_by_a_password_change() {
    let e = env();
    let (cluster, anchor) = active_cluster(&e).await;
    let store = new_store(&e, &cluster, &anchor, "store").await;
    let update = |password: &'static str| {
        let (e, store) = (&e, store.clone());
        async move {
            kms(
                e,
                "UpdateCustomKeyStore",
                json!({"CustomKeyStoreId": store, "KeyStorePassword": password}),
            )
            .await
            .unwrap();
        }
    };
    update("wrongPw123").await;
    for _ in 0..5 {
        assert_eq!(
            connect_then_disconnect(&e, &store).await,
            failed("INVALID_CREDENTIALS")
        );
    }
    update("kmsPswd123").await;
    assert_eq!(
        connect_then_disconnect(&e, &store).await,
        failed("USER_LOCKED_OUT"),
        "locked out: even the right password fails"
    );
    assert_eq!(
        user_names(&e, &cluster)[1],
        ("kmsuser".into(), "crypto-user".into(), true)
    );
    assert!(e
        .svc
        .create_crypto_user(&cluster, "kmsuser", "kmsPswd123", false)
        .await
        .is_err());
    // The AWS remedy: the crypto officer sets a new password (which unlocks), then the key
    // store is given it.
    e.svc
        .change_crypto_user_password(&cluster, "kmsuser", "newPswd456")
        .await
        .unwrap();
    assert_eq!(e.driver.user_pin("hsm-a").as_deref(), Some("newPswd456"));
    assert_eq!(e.driver.user_pin("hsm-b").as_deref(), Some("newPswd456"));
    assert!(!user_names(&e, &cluster)[1].2, "unlocked");
    assert_eq!(
        connect_then_disconnect(&e, &store).await,
        failed("INVALID_CREDENTIALS"),
        "the store still holds the old password"
    );
    update("newPswd456").await;
    assert_eq!(connect_then_disconnect(&e, &store).await.0, "CONNECTED");
}

#[tokio::test]
async fn a_store_connected_before_a_restart_without_hsms_is_failed_not_connected() {
    let e = env();
    let (cluster, anchor) = active_cluster(&e).await;
    let (store, _) = connected_store_with_key(&e, &cluster, &anchor).await;
    // The same data, served by a kmsd started without its HSM declaration.
    let root = Arc::new(kms_crypto::RootKey::from_bytes(&[3u8; 32]).unwrap());
    let restarted = Service::new(e.store.clone(), root, e.clock.clone());
    restarted.restore_key_store_connections().await;
    let again = Env {
        svc: restarted,
        clock: e.clock.clone(),
        driver: e.driver.clone(),
        fleet: e.fleet.clone(),
        caller: e.caller.clone(),
        store: e.store.clone(),
    };
    assert_eq!(state(&again, &store).await, failed("NETWORK_ERRORS"));
}

#[tokio::test]
async fn a_trust_anchor_with_a_second_certificate_appended_is_refused() {
    let e = env();
    let (cluster, anchor) = active_cluster(&e).await;
    let (_, other) = sign(&kms_crypto::x509::cluster_csr("x").unwrap().1);
    let err = kms(
        &e,
        "CreateCustomKeyStore",
        json!({"CustomKeyStoreName": "s", "CloudHsmClusterId": cluster,
               "TrustAnchorCertificate": format!("{anchor}{other}"), "KeyStorePassword": "kmsPswd123"}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::IncorrectTrustAnchorException);
    new_store(&e, &cluster, &anchor, "s").await;
}
