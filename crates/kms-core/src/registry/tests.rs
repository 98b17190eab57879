//! The registry's caches: bounded, reloading what they evicted, invalidated by the change log.

use std::sync::Arc;

use kms_types::*;

use crate::service::tests::{admin_caller, b64, call, new_key};
use crate::{ManualClock, MemStore, Service, Store};

fn service_on(store: Arc<dyn Store>, key_cache_size: usize) -> Service {
    let root = Arc::new(kms_crypto::RootKey::from_bytes(&[9u8; 32]).unwrap());
    Service::new(store, root, Arc::new(ManualClock::default())).with_key_cache_size(key_cache_size)
}

async fn encrypt(svc: &Service, key_id: &str, text: &[u8]) -> Result<Vec<u8>, KmsError> {
    let mut c = admin_caller();
    c.operation = "Encrypt".into();
    let r: EncryptResponse = call(
        svc,
        &c,
        "Encrypt",
        serde_json::json!({"KeyId": key_id, "Plaintext": b64(text)}),
    )
    .await?;
    Ok(r.ciphertext_blob.unwrap().as_bytes().to_vec())
}

async fn decrypt(svc: &Service, blob: &[u8]) -> Result<Vec<u8>, KmsError> {
    let mut c = admin_caller();
    c.operation = "Decrypt".into();
    let r: DecryptResponse = call(
        svc,
        &c,
        "Decrypt",
        serde_json::json!({"CiphertextBlob": b64(blob)}),
    )
    .await?;
    Ok(r.plaintext.unwrap().as_bytes().to_vec())
}

#[tokio::test]
async fn the_key_cache_keeps_its_bound_and_reloads_what_it_evicted() {
    let svc = service_on(Arc::new(MemStore::default()), 3);
    assert_eq!(svc.key_cache_size(), 3);
    let c = admin_caller();
    let mut sealed = Vec::new();
    for i in 0..10u8 {
        let id = new_key(&svc, &c).await;
        sealed.push((
            id.clone(),
            vec![i; 8],
            encrypt(&svc, &id, &[i; 8]).await.unwrap(),
        ));
        assert!(svc.registry.keys.len() <= 3, "after {} keys", i + 1);
    }
    // Reads alone (no write reads the change log in between) fill the cache to its bound.
    for (id, _, _) in &sealed[..6] {
        encrypt(&svc, id, b"fill").await.unwrap();
    }
    assert_eq!(svc.registry.keys.len(), 3);
    // Every key was evicted at least once or is still cached; each opens its ciphertext, so a
    // reload unseals the same material.
    for (id, text, blob) in &sealed {
        assert_eq!(&decrypt(&svc, blob).await.unwrap(), text, "{id}");
        assert!(svc.registry.keys.len() <= 3);
    }
    // And a reloaded key still encrypts what the first load decrypts.
    let (id, _, _) = &sealed[0];
    let again = encrypt(&svc, id, b"again").await.unwrap();
    assert_eq!(decrypt(&svc, &again).await.unwrap(), b"again");
}

#[tokio::test]
async fn the_alias_cache_is_bounded_too() {
    let svc = service_on(Arc::new(MemStore::default()), 2);
    let c = admin_caller();
    let id = new_key(&svc, &c).await;
    for i in 0..6 {
        let name = format!("alias/a{i}");
        let _: serde_json::Value = call(
            &svc,
            &c,
            "CreateAlias",
            serde_json::json!({"AliasName": name, "TargetKeyId": id}),
        )
        .await
        .unwrap();
        encrypt(&svc, &name, b"x").await.unwrap();
        // Names that do not exist are cached as absent, within the same bound.
        let missing = encrypt(&svc, &format!("alias/missing{i}"), b"x").await;
        assert_eq!(missing.unwrap_err().code, ErrorCode::NotFoundException);
        assert!(svc.registry.aliases.len() <= 2);
    }
}

#[tokio::test]
async fn another_nodes_write_reaches_this_nodes_cache_through_the_change_log() {
    let store: Arc<dyn Store> = Arc::new(MemStore::default());
    let a = service_on(store.clone(), 100);
    let b = service_on(store.clone(), 100);
    let c = admin_caller();
    b.sync_changes().unwrap();
    let id = new_key(&a, &c).await;
    b.sync_changes().unwrap();
    encrypt(&b, &id, b"cached on b").await.unwrap();
    assert_eq!(b.registry.keys.len(), 1);

    let _: serde_json::Value = call(&a, &c, "DisableKey", serde_json::json!({"KeyId": id}))
        .await
        .unwrap();
    // Without reading the log, b still holds the enabled key: the cache is real.
    encrypt(&b, &id, b"stale").await.unwrap();
    b.sync_changes().unwrap();
    let refused = encrypt(&b, &id, b"fresh").await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::DisabledException);

    // An alias deleted on a is gone on b after the same read.
    let _: serde_json::Value = call(
        &a,
        &c,
        "CreateAlias",
        serde_json::json!({"AliasName": "alias/shared", "TargetKeyId": id}),
    )
    .await
    .unwrap();
    b.sync_changes().unwrap();
    let _: serde_json::Value = call(&a, &c, "EnableKey", serde_json::json!({"KeyId": id}))
        .await
        .unwrap();
    b.sync_changes().unwrap();
    encrypt(&b, "alias/shared", b"via alias").await.unwrap();
    let _: serde_json::Value = call(
        &a,
        &c,
        "DeleteAlias",
        serde_json::json!({"AliasName": "alias/shared"}),
    )
    .await
    .unwrap();
    b.sync_changes().unwrap();
    let gone = encrypt(&b, "alias/shared", b"x").await.unwrap_err();
    assert_eq!(gone.code, ErrorCode::NotFoundException);
}

fn is_cached(svc: &Service, key_id: &str) -> bool {
    svc.registry
        .keys
        .get(&("us-east-1".to_owned(), key_id.to_owned()))
        .is_some()
}

#[tokio::test]
async fn a_new_key_is_cached_and_this_nodes_own_log_entries_do_not_drop_it() {
    let svc = service_on(Arc::new(MemStore::default()), 100);
    let c = admin_caller();
    svc.sync_changes().unwrap();
    let id = new_key(&svc, &c).await;
    // CreateKey cached what it wrote: the first Encrypt reads nothing from the store.
    assert!(is_cached(&svc, &id));
    // Reading the log, which now names the key, keeps it: the entry is this node's own write.
    svc.sync_changes().unwrap();
    assert!(is_cached(&svc, &id));
    encrypt(&svc, &id, b"x").await.unwrap();

    // An own write drops the key when it commits; the reload after it is current and survives
    // the log read that follows.
    let _: serde_json::Value = call(
        &svc,
        &c,
        "UpdateKeyDescription",
        serde_json::json!({"KeyId": id, "Description": "d"}),
    )
    .await
    .unwrap();
    assert!(!is_cached(&svc, &id));
    encrypt(&svc, &id, b"x").await.unwrap();
    assert!(is_cached(&svc, &id));
    svc.sync_changes().unwrap();
    assert!(is_cached(&svc, &id));
}

#[tokio::test]
async fn another_nodes_write_still_drops_a_key_after_this_nodes_own_write() {
    let store: Arc<dyn Store> = Arc::new(MemStore::default());
    let a = service_on(store.clone(), 100);
    let b = service_on(store.clone(), 100);
    let c = admin_caller();
    a.sync_changes().unwrap();
    b.sync_changes().unwrap();
    let id = new_key(&a, &c).await;
    // a's own write, then (unread by a) b's: only b's entry drops the key on a.
    let _: serde_json::Value = call(
        &a,
        &c,
        "UpdateKeyDescription",
        serde_json::json!({"KeyId": id, "Description": "d"}),
    )
    .await
    .unwrap();
    encrypt(&a, &id, b"cached again on a").await.unwrap();
    b.sync_changes().unwrap();
    let _: serde_json::Value = call(&b, &c, "DisableKey", serde_json::json!({"KeyId": id}))
        .await
        .unwrap();
    a.sync_changes().unwrap();
    assert!(!is_cached(&a, &id));
    let refused = encrypt(&a, &id, b"x").await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::DisabledException);
}
