//! The everyday symmetric-key workflow through the official aws-sdk-kms client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{DataKeySpec, KeyState, Tag};
use common::Server;

#[tokio::test]
async fn symmetric_workflow_through_the_sdk() {
    let server = Server::start(&[]);
    let kms = server.client();

    let created = kms
        .create_key()
        .description("orders")
        .tags(
            Tag::builder()
                .tag_key("team")
                .tag_value("payments")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let meta = created.key_metadata().unwrap();
    let key_id = meta.key_id().to_owned();
    assert_eq!(meta.key_state(), Some(&KeyState::Enabled));
    assert_eq!(
        meta.arn().unwrap(),
        format!("arn:aws:kms:us-east-1:111122223333:key/{key_id}")
    );
    assert_eq!(meta.aws_account_id(), Some("111122223333"));
    assert_eq!(meta.description(), Some("orders"));
    assert!(meta.creation_date().is_some());

    kms.create_alias()
        .alias_name("alias/orders")
        .target_key_id(&key_id)
        .send()
        .await
        .unwrap();

    // Encrypt by alias, decrypt without KeyId, context order-insensitive.
    let enc = kms
        .encrypt()
        .key_id("alias/orders")
        .plaintext(Blob::new(b"card 4111".to_vec()))
        .encryption_context("tenant", "a")
        .encryption_context("purpose", "test")
        .send()
        .await
        .unwrap();
    let blob = enc.ciphertext_blob().unwrap().clone();
    let dec = kms
        .decrypt()
        .ciphertext_blob(blob.clone())
        .encryption_context("purpose", "test")
        .encryption_context("tenant", "a")
        .send()
        .await
        .unwrap();
    assert_eq!(dec.plaintext().unwrap().as_ref(), b"card 4111");
    assert_eq!(dec.key_id(), enc.key_id());

    let err = kms
        .decrypt()
        .ciphertext_blob(blob.clone())
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error()
            .unwrap()
            .is_invalid_ciphertext_exception(),
        "{err:?}"
    );

    // Data keys.
    let dk = kms
        .generate_data_key()
        .key_id(&key_id)
        .key_spec(DataKeySpec::Aes256)
        .send()
        .await
        .unwrap();
    assert_eq!(dk.plaintext().unwrap().as_ref().len(), 32);
    let back = kms
        .decrypt()
        .ciphertext_blob(dk.ciphertext_blob().unwrap().clone())
        .send()
        .await
        .unwrap();
    assert_eq!(back.plaintext(), dk.plaintext());
    let dkw = kms
        .generate_data_key_without_plaintext()
        .key_id(&key_id)
        .number_of_bytes(64)
        .send()
        .await
        .unwrap();
    assert!(dkw.ciphertext_blob().is_some());

    // ReEncrypt to a second key.
    let other = common::new_key_id(&kms).await;
    let re = kms
        .re_encrypt()
        .ciphertext_blob(blob.clone())
        .source_encryption_context("tenant", "a")
        .source_encryption_context("purpose", "test")
        .destination_key_id(&other)
        .send()
        .await
        .unwrap();
    let dec2 = kms
        .decrypt()
        .ciphertext_blob(re.ciphertext_blob().unwrap().clone())
        .send()
        .await
        .unwrap();
    assert_eq!(dec2.plaintext().unwrap().as_ref(), b"card 4111");
    let err = kms
        .decrypt()
        .ciphertext_blob(re.ciphertext_blob().unwrap().clone())
        .key_id(&key_id)
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error().unwrap().is_incorrect_key_exception(),
        "{err:?}"
    );

    let rnd = kms
        .generate_random()
        .number_of_bytes(32)
        .send()
        .await
        .unwrap();
    assert_eq!(rnd.plaintext().unwrap().as_ref().len(), 32);

    // Tags, description, policies.
    kms.tag_resource()
        .key_id(&key_id)
        .tags(
            Tag::builder()
                .tag_key("env")
                .tag_value("prod")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let tags = kms
        .list_resource_tags()
        .key_id(&key_id)
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = tags.tags().iter().map(|t| t.tag_key()).collect();
    assert_eq!(keys, vec!["env", "team"]);
    kms.untag_resource()
        .key_id(&key_id)
        .tag_keys("team")
        .send()
        .await
        .unwrap();
    kms.update_key_description()
        .key_id(&key_id)
        .description("orders v2")
        .send()
        .await
        .unwrap();
    let policy = kms.get_key_policy().key_id(&key_id).send().await.unwrap();
    assert!(policy
        .policy()
        .unwrap()
        .contains("arn:aws:iam::111122223333:root"));
    let names = kms
        .list_key_policies()
        .key_id(&key_id)
        .send()
        .await
        .unwrap();
    assert_eq!(names.policy_names(), ["default"]);

    // States.
    kms.disable_key().key_id(&key_id).send().await.unwrap();
    let err = kms
        .encrypt()
        .key_id(&key_id)
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error().unwrap().is_disabled_exception(),
        "{err:?}"
    );
    kms.enable_key().key_id(&key_id).send().await.unwrap();
    let sched = kms
        .schedule_key_deletion()
        .key_id(&key_id)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    assert_eq!(sched.key_state(), Some(&KeyState::PendingDeletion));
    assert_eq!(sched.pending_window_in_days(), Some(7));
    let d = kms
        .describe_key()
        .key_id("alias/orders")
        .send()
        .await
        .unwrap();
    assert!(d.key_metadata().unwrap().deletion_date().is_some());
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
    kms.cancel_key_deletion()
        .key_id(&key_id)
        .send()
        .await
        .unwrap();
    let d = kms.describe_key().key_id(&key_id).send().await.unwrap();
    assert_eq!(
        d.key_metadata().unwrap().key_state(),
        Some(&KeyState::Disabled)
    );

    // Pagination with the SDK's paginator.
    for _ in 0..3 {
        kms.create_key().send().await.unwrap();
    }
    let all: Vec<_> = kms
        .list_keys()
        .limit(2)
        .into_paginator()
        .items()
        .send()
        .collect::<Vec<_>>()
        .await;
    assert_eq!(all.len(), 5);
    let aliases = kms.list_aliases().key_id(&key_id).send().await.unwrap();
    assert_eq!(aliases.aliases().len(), 1);
    kms.update_alias()
        .alias_name("alias/orders")
        .target_key_id(&other)
        .send()
        .await
        .unwrap();
    kms.delete_alias()
        .alias_name("alias/orders")
        .send()
        .await
        .unwrap();
    let err = kms
        .describe_key()
        .key_id("alias/orders")
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error().unwrap().is_not_found_exception(),
        "{err:?}"
    );
}

#[tokio::test]
async fn errors_reach_the_sdk_as_modeled_exceptions() {
    let server = Server::start(&[]);
    let kms = server.client();
    let err = kms
        .describe_key()
        .key_id("1234abcd-12ab-34cd-56ef-1234567890ab")
        .send()
        .await
        .unwrap_err();
    assert!(err.as_service_error().unwrap().is_not_found_exception());
    let err = kms
        .create_alias()
        .alias_name("alias/aws/mine")
        .target_key_id("1234abcd-12ab-34cd-56ef-1234567890ab")
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error()
            .unwrap()
            .is_invalid_alias_name_exception(),
        "{err:?}"
    );
    let err = kms.list_keys().marker("not-ours").send().await.unwrap_err();
    assert!(
        err.as_service_error()
            .unwrap()
            .is_invalid_marker_exception(),
        "{err:?}"
    );
    let err = kms
        .get_parameters_for_import()
        .key_id("1234abcd-12ab-34cd-56ef-1234567890ab")
        .wrapping_algorithm(aws_sdk_kms::types::AlgorithmSpec::RsaesOaepSha256)
        .wrapping_key_spec(aws_sdk_kms::types::WrappingKeySpec::Rsa2048)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        err.as_service_error().unwrap().meta().code(),
        Some("NotFoundException"),
        "{err:?}"
    );
    let err = kms
        .create_key()
        .key_spec(aws_sdk_kms::types::KeySpec::Sm2)
        .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error()
            .unwrap()
            .is_unsupported_operation_exception(),
        "{err:?}"
    );

    // Wrong secret and unknown access key.
    let (akid, _) = server.admin_credentials();
    let bad = server.client_with(&akid, "not-the-secret", "us-east-1");
    let err = bad.list_keys().send().await.unwrap_err();
    assert_eq!(
        err.as_service_error().unwrap().meta().code(),
        Some("InvalidSignatureException")
    );
    let unknown = server.client_with("AKIAUNKNOWN000000000", "x", "us-east-1");
    let err = unknown.list_keys().send().await.unwrap_err();
    assert_eq!(
        err.as_service_error().unwrap().meta().code(),
        Some("UnrecognizedClientException")
    );

    // The region comes from the credential scope: keys are per Region.
    let (a, s) = server.admin_credentials();
    let west = server.client_with(&a, &s, "eu-west-1");
    let k = west.create_key().send().await.unwrap();
    assert!(k
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .starts_with("arn:aws:kms:eu-west-1:111122223333:key/"));
    assert_eq!(kms.list_keys().send().await.unwrap().keys().len(), 0);
}

#[tokio::test]
async fn dev_mode_accepts_dummy_credentials() {
    let server = Server::start(&["--dev", "--account-id", "000000000000"]);
    for (a, s) in [
        ("test", "test"),
        ("testing", "testing"),
        ("FOOBARKEY", "whatever"),
    ] {
        let kms = server.client_with(a, s, "us-east-1");
        let k = kms.create_key().send().await.unwrap();
        assert_eq!(
            k.key_metadata().unwrap().aws_account_id(),
            Some("000000000000")
        );
    }
    // Scheduled deletion happens when the (dev) clock passes the deletion date.
    let kms = server.client_with("test", "test", "us-east-1");
    let id = common::new_key_id(&kms).await;
    kms.schedule_key_deletion()
        .key_id(&id)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    common::advance_dev_clock(server.addr, 6 * 86_400).await;
    assert!(kms.describe_key().key_id(&id).send().await.is_ok());
    common::advance_dev_clock(server.addr, 2 * 86_400).await;
    let err = kms.describe_key().key_id(&id).send().await.unwrap_err();
    assert!(
        err.as_service_error().unwrap().is_not_found_exception(),
        "{err:?}"
    );
}
