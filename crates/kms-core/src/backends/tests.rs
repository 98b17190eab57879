//! The backends seam: each key gets the backend of its material's home, and the local one
//! keeps the envelope's rules.

use std::collections::BTreeMap;

use kms_types::ErrorCode;

use super::*;
use crate::service::tests::{admin_caller, new_key};
use crate::{ManualClock, MemStore};

fn service() -> Service {
    let root = std::sync::Arc::new(kms_crypto::RootKey::from_bytes(&[7u8; 32]).unwrap());
    Service::new(
        std::sync::Arc::new(MemStore::default()),
        root,
        std::sync::Arc::new(ManualClock::default()),
    )
}

#[tokio::test]
async fn a_key_gets_the_backend_of_where_its_material_lives() {
    let svc = service();
    let c = admin_caller();
    let id = new_key(&svc, &c).await;
    let key = svc.registry.key("us-east-1", &id).unwrap().unwrap();
    assert_eq!(key.backend.name(), "local");
    let mut record = key.record.clone();
    record.cloud_hsm_cluster_id = Some("cluster-1234567890a".into());
    record.custom_key_store_id = Some("cks-1234567890abcdef0".into());
    assert_eq!(for_record(&record).name(), "cloudhsm");
    assert!(!for_record(&record).holds_material());
    record.cloud_hsm_cluster_id = None;
    record.xks_key_id = Some("external-key".into());
    assert_eq!(for_record(&record).name(), "external");
    assert!(for_record(&record).holds_material());
}

#[tokio::test]
async fn the_local_backend_round_trips_and_refuses_other_formats_and_contexts() {
    let svc = service();
    let c = admin_caller();
    let id = new_key(&svc, &c).await;
    let key = svc.registry.key("us-east-1", &id).unwrap().unwrap();
    let material: [u8; 16] = hex::decode(&key.record.current_material().unwrap().material_id)
        .unwrap()
        .try_into()
        .unwrap();
    let ctx: BTreeMap<String, String> = [("k".to_owned(), "v".to_owned())].into();
    let using = |context| Use {
        service: &svc,
        caller: &c,
        key: &key,
        context,
    };
    let blob = Local
        .seal(using(Some(&ctx)), material, b"secret")
        .await
        .unwrap();
    assert_eq!(envelope::parse(&blob).unwrap().material_id, material);
    let opened = Local.open(using(Some(&ctx)), &blob).await.unwrap();
    assert_eq!(&opened[..], b"secret");
    for (blob, context) in [
        (blob.clone(), None),
        (
            {
                let mut v2 = blob.clone();
                v2[0] = envelope::XKS_ENVELOPE_VERSION;
                v2
            },
            Some(&ctx),
        ),
    ] {
        let e = Local.open(using(context), &blob).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidCiphertextException);
    }
    // A blob naming material the key does not hold (here: another key's) is invalid too.
    let other = svc
        .registry
        .key("us-east-1", &new_key(&svc, &c).await)
        .unwrap()
        .unwrap();
    let e = Local
        .open(
            Use {
                key: &other,
                ..using(Some(&ctx))
            },
            &blob,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidCiphertextException);
}
