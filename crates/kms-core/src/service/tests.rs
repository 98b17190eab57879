//! Domain tests against the in-memory store and a clock the test moves.

use std::sync::Arc;

use kms_types::*;

use crate::{Caller, ManualClock, MemStore, Service};

fn setup() -> (Service, Arc<ManualClock>, Caller) {
    let clock = Arc::new(ManualClock::default());
    let root = Arc::new(kms_crypto::RootKey::from_bytes(&[9u8; 32]).unwrap());
    let svc = Service::new(Arc::new(MemStore::default()), root, clock.clone());
    let caller = Caller {
        account: "111122223333".into(),
        region: "us-east-1".into(),
        principal_arn: "arn:aws:iam::111122223333:user/admin".into(),
        user_id: "AIDATEST".into(),
        access_key_id: "AKIATEST".into(),
        source_ip: None,
        request_id: "req".into(),
        operation: String::new(),
        resources: Default::default(),
        skip_authorization: true,
        ..Default::default()
    };
    (svc, clock, caller)
}

async fn call<T: serde::de::DeserializeOwned>(
    svc: &Service,
    c: &Caller,
    op: &str,
    body: serde_json::Value,
) -> Result<T, KmsError> {
    let out = svc.dispatch(c, op, body.to_string().as_bytes()).await?;
    Ok(serde_json::from_slice(&out).unwrap())
}

async fn new_key(svc: &Service, c: &Caller) -> String {
    let r: CreateKeyResponse = call(svc, c, "CreateKey", serde_json::json!({}))
        .await
        .unwrap();
    r.key_metadata.unwrap().key_id.unwrap()
}

fn b64(b: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b)
}

#[tokio::test]
async fn encrypt_decrypt_with_context_and_states() {
    let (svc, _, c) = setup();
    let id = new_key(&svc, &c).await;
    let ctx = serde_json::json!({"a": "1", "b": "2"});
    let e: EncryptResponse = call(
        &svc,
        &c,
        "Encrypt",
        serde_json::json!({"KeyId": id, "Plaintext": b64(b"hi"), "EncryptionContext": ctx}),
    )
    .await
    .unwrap();
    let blob = b64(e.ciphertext_blob.unwrap().as_bytes());
    let d: DecryptResponse = call(
        &svc,
        &c,
        "Decrypt",
        serde_json::json!({"CiphertextBlob": blob, "EncryptionContext": {"b": "2", "a": "1"}}),
    )
    .await
    .unwrap();
    assert_eq!(d.plaintext.unwrap().as_bytes(), b"hi");
    let err = call::<DecryptResponse>(
        &svc,
        &c,
        "Decrypt",
        serde_json::json!({"CiphertextBlob": blob, "EncryptionContext": {"a": "1"}}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidCiphertextException);

    let other = new_key(&svc, &c).await;
    let err = call::<DecryptResponse>(
        &svc,
        &c,
        "Decrypt",
        serde_json::json!({"CiphertextBlob": blob, "EncryptionContext": ctx, "KeyId": other}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::IncorrectKeyException);

    call::<serde_json::Value>(&svc, &c, "DisableKey", serde_json::json!({"KeyId": id}))
        .await
        .unwrap();
    let err = call::<EncryptResponse>(
        &svc,
        &c,
        "Encrypt",
        serde_json::json!({"KeyId": id, "Plaintext": b64(b"x")}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::DisabledException);
    let s: ScheduleKeyDeletionResponse = call(
        &svc,
        &c,
        "ScheduleKeyDeletion",
        serde_json::json!({"KeyId": id, "PendingWindowInDays": 7}),
    )
    .await
    .unwrap();
    assert_eq!(s.key_state.as_deref(), Some("PendingDeletion"));
    let err = call::<DecryptResponse>(
        &svc,
        &c,
        "Decrypt",
        serde_json::json!({"CiphertextBlob": blob, "EncryptionContext": ctx}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::KMSInvalidStateException);
    let err = call::<serde_json::Value>(&svc, &c, "EnableKey", serde_json::json!({"KeyId": id}))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::KMSInvalidStateException);
    let cancel: CancelKeyDeletionResponse = call(
        &svc,
        &c,
        "CancelKeyDeletion",
        serde_json::json!({"KeyId": id}),
    )
    .await
    .unwrap();
    assert!(cancel
        .key_id
        .unwrap()
        .starts_with("arn:aws:kms:us-east-1:111122223333:key/"));
    let d: DescribeKeyResponse = call(&svc, &c, "DescribeKey", serde_json::json!({"KeyId": id}))
        .await
        .unwrap();
    assert_eq!(
        d.key_metadata.unwrap().key_state.as_deref(),
        Some("Disabled")
    );
}

#[tokio::test]
async fn sweeper_deletes_due_keys_and_their_aliases() {
    let (svc, clock, c) = setup();
    let id = new_key(&svc, &c).await;
    call::<serde_json::Value>(
        &svc,
        &c,
        "CreateAlias",
        serde_json::json!({"AliasName": "alias/doomed", "TargetKeyId": id}),
    )
    .await
    .unwrap();
    call::<ScheduleKeyDeletionResponse>(
        &svc,
        &c,
        "ScheduleKeyDeletion",
        serde_json::json!({"KeyId": id, "PendingWindowInDays": 7}),
    )
    .await
    .unwrap();
    assert_eq!(svc.sweep_due_deletions().await.unwrap(), 0);
    clock.advance_ms(7 * 86_400_000 - 60_000);
    assert_eq!(svc.sweep_due_deletions().await.unwrap(), 0);
    clock.advance_ms(120_000);
    assert_eq!(svc.sweep_due_deletions().await.unwrap(), 1);
    let err =
        call::<DescribeKeyResponse>(&svc, &c, "DescribeKey", serde_json::json!({"KeyId": id}))
            .await
            .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFoundException);
    let l: ListAliasesResponse = call(&svc, &c, "ListAliases", serde_json::json!({}))
        .await
        .unwrap();
    assert!(l.aliases.unwrap().is_empty());
}

#[tokio::test]
async fn aliases_identifiers_and_pagination() {
    let (svc, _, c) = setup();
    let id = new_key(&svc, &c).await;
    call::<serde_json::Value>(
        &svc,
        &c,
        "CreateAlias",
        serde_json::json!({"AliasName": "alias/app", "TargetKeyId": id}),
    )
    .await
    .unwrap();
    let err = call::<serde_json::Value>(
        &svc,
        &c,
        "CreateAlias",
        serde_json::json!({"AliasName": "alias/app", "TargetKeyId": id}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::AlreadyExistsException);
    let err = call::<serde_json::Value>(
        &svc,
        &c,
        "CreateAlias",
        serde_json::json!({"AliasName": "alias/aws/x", "TargetKeyId": id}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidAliasNameException);
    for key_id in [
        "alias/app".to_string(),
        "arn:aws:kms:us-east-1:111122223333:alias/app".into(),
        format!("arn:aws:kms:us-east-1:111122223333:key/{id}"),
    ] {
        let d: DescribeKeyResponse = call(
            &svc,
            &c,
            "DescribeKey",
            serde_json::json!({"KeyId": key_id}),
        )
        .await
        .unwrap();
        assert_eq!(d.key_metadata.unwrap().key_id.unwrap(), id);
    }
    let err = call::<serde_json::Value>(
        &svc,
        &c,
        "EnableKey",
        serde_json::json!({"KeyId": "alias/app"}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFoundException);
    for _ in 0..4 {
        new_key(&svc, &c).await;
    }
    let mut marker: Option<String> = None;
    let mut seen = 0;
    loop {
        let mut body = serde_json::json!({"Limit": 2});
        if let Some(m) = &marker {
            body["Marker"] = serde_json::json!(m);
        }
        let page: ListKeysResponse = call(&svc, &c, "ListKeys", body).await.unwrap();
        seen += page.keys.unwrap().len();
        if page.truncated != Some(true) {
            break;
        }
        marker = page.next_marker;
    }
    assert_eq!(seen, 5);
    let err =
        call::<ListKeysResponse>(&svc, &c, "ListKeys", serde_json::json!({"Marker": "bogus"}))
            .await
            .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidMarkerException);
}

#[tokio::test]
async fn data_keys_random_reencrypt_and_unsupported() {
    let (svc, _, c) = setup();
    let a = new_key(&svc, &c).await;
    let b = new_key(&svc, &c).await;
    let g: GenerateDataKeyResponse = call(
        &svc,
        &c,
        "GenerateDataKey",
        serde_json::json!({"KeyId": a, "KeySpec": "AES_256"}),
    )
    .await
    .unwrap();
    assert_eq!(g.plaintext.as_ref().unwrap().len(), 32);
    let err = call::<GenerateDataKeyResponse>(
        &svc,
        &c,
        "GenerateDataKey",
        serde_json::json!({"KeyId": a}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::ValidationException);
    let re: ReEncryptResponse = call(
        &svc,
        &c,
        "ReEncrypt",
        serde_json::json!({"CiphertextBlob": b64(g.ciphertext_blob.unwrap().as_bytes()), "DestinationKeyId": b}),
    )
    .await
    .unwrap();
    let d: DecryptResponse = call(
        &svc,
        &c,
        "Decrypt",
        serde_json::json!({"CiphertextBlob": b64(re.ciphertext_blob.unwrap().as_bytes())}),
    )
    .await
    .unwrap();
    assert_eq!(d.plaintext.unwrap(), g.plaintext.unwrap());
    let r: GenerateRandomResponse = call(
        &svc,
        &c,
        "GenerateRandom",
        serde_json::json!({"NumberOfBytes": 1024}),
    )
    .await
    .unwrap();
    assert_eq!(r.plaintext.unwrap().len(), 1024);
    let err = call::<serde_json::Value>(&svc, &c, "Encapsulate", serde_json::json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::UnsupportedOperationException);
    let err = call::<serde_json::Value>(&svc, &c, "Frobnicate", serde_json::json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::UnknownOperationException);
    let err = call::<EncryptResponse>(
        &svc,
        &c,
        "Encrypt",
        serde_json::json!({"KeyId": a, "Plaintext": b64(b"x"), "DryRun": true}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::DryRunOperationException);
}

#[tokio::test]
async fn tags_and_policies() {
    let (svc, _, c) = setup();
    let r: CreateKeyResponse = call(
        &svc,
        &c,
        "CreateKey",
        serde_json::json!({"Tags": [{"TagKey": "env", "TagValue": "prod"}], "Description": "d"}),
    )
    .await
    .unwrap();
    let id = r.key_metadata.unwrap().key_id.unwrap();
    call::<serde_json::Value>(
        &svc,
        &c,
        "TagResource",
        serde_json::json!({"KeyId": id, "Tags": [{"TagKey": "team", "TagValue": "x"}]}),
    )
    .await
    .unwrap();
    call::<serde_json::Value>(
        &svc,
        &c,
        "UntagResource",
        serde_json::json!({"KeyId": id, "TagKeys": ["env", "missing"]}),
    )
    .await
    .unwrap();
    let t: ListResourceTagsResponse = call(
        &svc,
        &c,
        "ListResourceTags",
        serde_json::json!({"KeyId": id}),
    )
    .await
    .unwrap();
    assert_eq!(
        t.tags.unwrap(),
        vec![Tag {
            tag_key: Some("team".into()),
            tag_value: Some("x".into())
        }]
    );
    let err = call::<serde_json::Value>(
        &svc,
        &c,
        "TagResource",
        serde_json::json!({"KeyId": id, "Tags": [{"TagKey": "aws:x", "TagValue": "x"}]}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::TagException);
    let p: GetKeyPolicyResponse = call(&svc, &c, "GetKeyPolicy", serde_json::json!({"KeyId": id}))
        .await
        .unwrap();
    assert!(p.policy.unwrap().contains("key-default-1"));
    let err = call::<serde_json::Value>(
        &svc,
        &c,
        "PutKeyPolicy",
        serde_json::json!({"KeyId": id, "Policy": "{}"}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::MalformedPolicyDocumentException);
    let doc = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}]}"#;
    call::<serde_json::Value>(
        &svc,
        &c,
        "PutKeyPolicy",
        serde_json::json!({"KeyId": id, "Policy": doc}),
    )
    .await
    .unwrap();
    let p: GetKeyPolicyResponse = call(
        &svc,
        &c,
        "GetKeyPolicy",
        serde_json::json!({"KeyId": id, "PolicyName": "default"}),
    )
    .await
    .unwrap();
    assert_eq!(p.policy.unwrap(), doc);
}

#[tokio::test]
async fn other_accounts_keys_are_refused() {
    let (svc, _, c) = setup();
    let id = new_key(&svc, &c).await;
    let mut other = c.clone();
    other.account = "444455556666".into();
    other.principal_arn = "arn:aws:iam::444455556666:user/admin".into();
    other.skip_authorization = false;
    let err = call::<DescribeKeyResponse>(
        &svc,
        &other,
        "DescribeKey",
        serde_json::json!({"KeyId": id}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFoundException);
    let arn = format!("arn:aws:kms:us-east-1:111122223333:key/{id}");
    let err = call::<DescribeKeyResponse>(
        &svc,
        &other,
        "DescribeKey",
        serde_json::json!({"KeyId": arn}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::AccessDeniedException);
}
