//! GetKeyLastUsage with aws-sdk-kms: the last successful cryptographic use, its request id and
//! CloudTrail event id (as in the audit trail), kept across a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use aws_sdk_kms::operation::RequestId;
use aws_sdk_kms::primitives::Blob;
use common::Server;

#[tokio::test]
async fn the_last_cryptographic_use_is_reported_and_survives_a_restart() {
    let mut server = Server::start(&[]);
    let kms = server.client();
    let id = common::new_key_id(&kms).await;
    let fresh = kms.get_key_last_usage().key_id(&id).send().await.unwrap();
    assert!(fresh.key_last_usage().unwrap().operation().is_none());
    assert!(fresh.tracking_start_date().unwrap() >= fresh.key_creation_date().unwrap());

    let enc = kms
        .encrypt()
        .key_id(&id)
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await
        .unwrap();
    let request_id = enc.request_id().unwrap().to_owned();
    // A failed use and a management call do not count.
    let _ = kms
        .decrypt()
        .ciphertext_blob(Blob::new(b"garbage".to_vec()))
        .send()
        .await
        .unwrap_err();
    kms.describe_key().key_id(&id).send().await.unwrap();

    let used = kms.get_key_last_usage().key_id(&id).send().await.unwrap();
    let last = used.key_last_usage().unwrap();
    assert_eq!(last.operation().map(|o| o.as_str()), Some("Encrypt"));
    assert_eq!(last.kms_request_id(), Some(request_id.as_str()));
    let event_id = last.cloud_trail_event_id().unwrap().to_owned();
    let trail: String = std::fs::read_dir(server.data_dir.join("audit"))
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
        .collect();
    let record = trail
        .lines()
        .find(|l| l.contains(&format!("\"eventID\":\"{event_id}\"")))
        .expect("the event id names the audit record");
    assert!(record.contains(&request_id) && record.contains("\"Encrypt\""));

    // Aliases are not accepted here, as in AWS.
    kms.create_alias()
        .alias_name("alias/usage")
        .target_key_id(&id)
        .send()
        .await
        .unwrap();
    let e = kms
        .get_key_last_usage()
        .key_id("alias/usage")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_not_found_exception(), "{e:?}");

    // Written at shutdown (and every few seconds): still there after a restart.
    assert!(server.terminate());
    let dir = server.data_dir.clone();
    let server = Server::start_in(&dir, &[]);
    let kms = server.client();
    let after = kms.get_key_last_usage().key_id(&id).send().await.unwrap();
    assert_eq!(
        after.key_last_usage().unwrap().kms_request_id(),
        Some(request_id.as_str())
    );
    assert_eq!(
        after.tracking_start_date(),
        used.tracking_start_date(),
        "tracking started once"
    );
}
