//! Domain tests against the in-memory store and a clock the test moves.

use std::sync::Arc;

use kms_types::*;

use crate::{Caller, ManualClock, MemStore, Service};

/// A service on an in-memory store, its clock, and the account admin.
pub(crate) fn setup() -> (Service, Arc<ManualClock>, Caller) {
    let clock = Arc::new(ManualClock::default());
    let root = Arc::new(kms_crypto::RootKey::from_bytes(&[9u8; 32]).unwrap());
    let svc = Service::new(Arc::new(MemStore::default()), root, clock.clone());
    (svc, clock, admin_caller())
}

/// The account admin in us-east-1, authorisation skipped.
pub(crate) fn admin_caller() -> Caller {
    Caller {
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
    }
}

/// Runs `op` with a JSON body and parses its answer.
pub(crate) async fn call<T: serde::de::DeserializeOwned>(
    svc: &Service,
    c: &Caller,
    op: &str,
    body: serde_json::Value,
) -> Result<T, KmsError> {
    let out = svc.dispatch(c, op, body.to_string().as_bytes()).await?;
    Ok(serde_json::from_slice(&out).unwrap())
}

/// Creates a symmetric key; returns its id.
pub(crate) async fn new_key(svc: &Service, c: &Caller) -> String {
    let r: CreateKeyResponse = call(svc, c, "CreateKey", serde_json::json!({}))
        .await
        .unwrap();
    r.key_metadata.unwrap().key_id.unwrap()
}

/// Standard base64.
pub(crate) fn b64(b: &[u8]) -> String {
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
    let err = call::<serde_json::Value>(&svc, &c, "GetParametersForImport", serde_json::json!({}))
        .await
        .unwrap_err();
    assert_eq!(
        err.code,
        ErrorCode::ValidationException,
        "KeyId is required"
    );
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

async fn status(svc: &Service, c: &Caller, id: &str) -> GetKeyRotationStatusResponse {
    call(
        svc,
        c,
        "GetKeyRotationStatus",
        serde_json::json!({ "KeyId": id }),
    )
    .await
    .unwrap()
}

async fn current_material(svc: &Service, c: &Caller, id: &str) -> Option<String> {
    call::<DescribeKeyResponse>(svc, c, "DescribeKey", serde_json::json!({ "KeyId": id }))
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .current_key_material_id
}

#[tokio::test]
async fn rotation_on_schedule_and_on_demand_keeps_old_ciphertexts_decryptable() {
    use crate::Clock as _;
    use serde_json::{json, Value};
    let (svc, clock, c) = setup();
    let id = new_key(&svc, &c).await;
    let encrypt = |plaintext: &'static [u8]| {
        let (svc, c, id) = (&svc, &c, id.clone());
        async move {
            let e: EncryptResponse = call(
                svc,
                c,
                "Encrypt",
                json!({"KeyId": id, "Plaintext": b64(plaintext)}),
            )
            .await
            .unwrap();
            b64(e.ciphertext_blob.unwrap().as_bytes())
        }
    };
    let decrypts = |blob: String| {
        let (svc, c) = (&svc, &c);
        async move {
            call::<DecryptResponse>(svc, c, "Decrypt", json!({ "CiphertextBlob": blob }))
                .await
                .unwrap()
                .plaintext
                .unwrap()
                .as_bytes()
                .to_vec()
        }
    };
    let s = status(&svc, &c, &id).await;
    assert_eq!(s.key_rotation_enabled, Some(false));
    assert_eq!(s.next_rotation_date, None);
    let before = encrypt(b"before").await;
    let first_material = current_material(&svc, &c, &id).await;

    // Out-of-range periods are refused by the model's constraint.
    let err = call::<Value>(
        &svc,
        &c,
        "EnableKeyRotation",
        json!({"KeyId": id, "RotationPeriodInDays": 89}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::ValidationException);
    call::<Value>(
        &svc,
        &c,
        "EnableKeyRotation",
        json!({"KeyId": id, "RotationPeriodInDays": 90}),
    )
    .await
    .unwrap();
    let s = status(&svc, &c, &id).await;
    assert_eq!(s.key_rotation_enabled, Some(true));
    assert_eq!(s.rotation_period_in_days, Some(90));
    // The manual clock runs on from real time: allow the test's own duration.
    let next = s.next_rotation_date.unwrap().as_millis();
    assert!(
        (next - (clock.now_ms() + 90 * 86_400_000)).abs() < 5_000,
        "{next}"
    );

    // Not yet due; then due.
    clock.advance_ms(89 * 86_400_000);
    assert_eq!(svc.sweep_due_rotations().await.unwrap(), 0);
    clock.advance_ms(86_400_000);
    assert_eq!(svc.sweep_due_rotations().await.unwrap(), 1);
    assert_eq!(svc.sweep_due_rotations().await.unwrap(), 0, "rescheduled");
    assert_ne!(current_material(&svc, &c, &id).await, first_material);
    let s = status(&svc, &c, &id).await;
    // The manual clock runs on from real time: allow the test's own duration.
    let next = s.next_rotation_date.unwrap().as_millis();
    assert!(
        (next - (clock.now_ms() + 90 * 86_400_000)).abs() < 5_000,
        "{next}"
    );

    // On demand, independent of the schedule.
    let after_auto = encrypt(b"after-auto").await;
    call::<RotateKeyOnDemandResponse>(&svc, &c, "RotateKeyOnDemand", json!({ "KeyId": id }))
        .await
        .unwrap();
    let after_demand = encrypt(b"after-demand").await;
    assert_eq!(decrypts(before).await, b"before");
    assert_eq!(decrypts(after_auto).await, b"after-auto");
    assert_eq!(decrypts(after_demand).await, b"after-demand");

    let list: ListKeyRotationsResponse = call(&svc, &c, "ListKeyRotations", json!({ "KeyId": id }))
        .await
        .unwrap();
    let rotations = list.rotations.unwrap();
    let types: Vec<_> = rotations
        .iter()
        .map(|r| r.rotation_type.as_deref().unwrap())
        .collect();
    assert_eq!(types, ["AUTOMATIC", "ON_DEMAND"]);
    assert_eq!(rotations[1].key_material_state.as_deref(), Some("CURRENT"));
    assert_eq!(
        rotations[0].key_material_state.as_deref(),
        Some("NON_CURRENT")
    );
    // Paging, and the first material with ALL_KEY_MATERIAL.
    let page: ListKeyRotationsResponse = call(
        &svc,
        &c,
        "ListKeyRotations",
        json!({"KeyId": id, "Limit": 1, "IncludeKeyMaterial": "ALL_KEY_MATERIAL"}),
    )
    .await
    .unwrap();
    assert_eq!(page.truncated, Some(true));
    assert_eq!(page.rotations.as_ref().unwrap()[0].rotation_type, None);
    let rest: ListKeyRotationsResponse = call(
        &svc,
        &c,
        "ListKeyRotations",
        json!({"KeyId": id, "Limit": 10, "IncludeKeyMaterial": "ALL_KEY_MATERIAL", "Marker": page.next_marker}),
    )
    .await
    .unwrap();
    assert_eq!(rest.rotations.unwrap().len(), 2);
    assert_eq!(rest.truncated, Some(false));

    // Disabled keys: no rotation settings, no automatic rotation; status still readable.
    call::<Value>(&svc, &c, "DisableKey", json!({ "KeyId": id }))
        .await
        .unwrap();
    let err = call::<Value>(&svc, &c, "DisableKeyRotation", json!({ "KeyId": id }))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::DisabledException);
    clock.advance_ms(91 * 86_400_000);
    assert_eq!(svc.sweep_due_rotations().await.unwrap(), 0);
    assert_eq!(status(&svc, &c, &id).await.key_rotation_enabled, Some(true));
    call::<Value>(&svc, &c, "EnableKey", json!({ "KeyId": id }))
        .await
        .unwrap();
    call::<Value>(&svc, &c, "DisableKeyRotation", json!({ "KeyId": id }))
        .await
        .unwrap();
    assert_eq!(
        status(&svc, &c, &id).await.key_rotation_enabled,
        Some(false)
    );
    assert_eq!(svc.sweep_due_rotations().await.unwrap(), 0);

    // Keys that cannot rotate.
    let hmac: CreateKeyResponse = call(
        &svc,
        &c,
        "CreateKey",
        json!({"KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC"}),
    )
    .await
    .unwrap();
    let hmac = hmac.key_metadata.unwrap().key_id.unwrap();
    for op in ["EnableKeyRotation", "RotateKeyOnDemand", "ListKeyRotations"] {
        let err = call::<Value>(&svc, &c, op, json!({ "KeyId": hmac }))
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::UnsupportedOperationException, "{op}");
    }
    assert_eq!(
        status(&svc, &c, &hmac).await.key_rotation_enabled,
        Some(false)
    );

    // The on-demand quota.
    let other = new_key(&svc, &c).await;
    for _ in 0..25 {
        call::<Value>(&svc, &c, "RotateKeyOnDemand", json!({ "KeyId": other }))
            .await
            .unwrap();
    }
    let err = call::<Value>(&svc, &c, "RotateKeyOnDemand", json!({ "KeyId": other }))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::LimitExceededException);
}

#[tokio::test]
async fn create_key_stops_at_the_key_quota() {
    let (svc, _, c) = setup();
    svc.set_key_quota(2);
    new_key(&svc, &c).await;
    new_key(&svc, &c).await;
    let err = call::<CreateKeyResponse>(&svc, &c, "CreateKey", serde_json::json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::LimitExceededException);
    assert!(err.message.contains("quota is 2 keys"), "{}", err.message);
    // Another Region has its own quota.
    let west = Caller {
        region: "us-west-2".into(),
        ..c.clone()
    };
    new_key(&svc, &west).await;
}

async fn new_asymmetric_key(svc: &Service, c: &Caller, spec: &str, usage: &str) -> KeyMetadata {
    let r: CreateKeyResponse = call(
        svc,
        c,
        "CreateKey",
        serde_json::json!({"KeySpec": spec, "KeyUsage": usage}),
    )
    .await
    .unwrap();
    r.key_metadata.unwrap()
}

#[tokio::test]
async fn ml_kem_keys_encapsulate_and_decapsulate() {
    let (svc, _, c) = setup();
    for (spec, ct_len) in [
        ("ML_KEM_512", 768),
        ("ML_KEM_768", 1088),
        ("ML_KEM_1024", 1568),
    ] {
        let m = new_asymmetric_key(&svc, &c, spec, "ENCAPSULATE_DECAPSULATE").await;
        assert_eq!(m.encapsulation_algorithms, Some(vec!["ML_KEM".to_owned()]));
        assert_eq!(m.signing_algorithms, None);
        assert_eq!(m.encryption_algorithms, None);
        let id = m.key_id.unwrap();
        let pk: GetPublicKeyResponse =
            call(&svc, &c, "GetPublicKey", serde_json::json!({ "KeyId": id }))
                .await
                .unwrap();
        assert_eq!(pk.encapsulation_algorithms, Some(vec!["ML_KEM".to_owned()]));
        assert_eq!(pk.key_usage.as_deref(), Some("ENCAPSULATE_DECAPSULATE"));
        let e: EncapsulateResponse = call(
            &svc,
            &c,
            "Encapsulate",
            serde_json::json!({"KeyId": id, "EncapsulationAlgorithm": "ML_KEM"}),
        )
        .await
        .unwrap();
        let ct = e.shared_secret_ciphertext_blob.unwrap();
        let secret = e.shared_secret.unwrap();
        assert_eq!(ct.len(), ct_len);
        assert_eq!(secret.len(), 32);
        assert_eq!(e.encapsulation_algorithm.as_deref(), Some("ML_KEM"));
        let d: DecapsulateResponse = call(
            &svc,
            &c,
            "Decapsulate",
            serde_json::json!({"KeyId": id, "EncapsulationAlgorithm": "ML_KEM",
                "SharedSecretCiphertextBlob": b64(ct.as_bytes())}),
        )
        .await
        .unwrap();
        assert_eq!(d.shared_secret.unwrap(), secret);
        // A ciphertext of the wrong length: InvalidCiphertextException (DryRun too).
        for dry in [false, true] {
            let err = call::<DecapsulateResponse>(
                &svc,
                &c,
                "Decapsulate",
                serde_json::json!({"KeyId": id, "EncapsulationAlgorithm": "ML_KEM", "DryRun": dry,
                    "SharedSecretCiphertextBlob": b64(&ct.as_bytes()[1..])}),
            )
            .await
            .unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidCiphertextException);
        }
        // An altered ciphertext decapsulates to another secret (implicit rejection).
        let mut bad = ct.as_bytes().to_vec();
        bad[3] ^= 1;
        let d: DecapsulateResponse = call(
            &svc,
            &c,
            "Decapsulate",
            serde_json::json!({"KeyId": id, "EncapsulationAlgorithm": "ML_KEM",
                "SharedSecretCiphertextBlob": b64(&bad)}),
        )
        .await
        .unwrap();
        assert_ne!(d.shared_secret.unwrap(), secret);
        for op in ["Encapsulate", "Decapsulate"] {
            let mut body = serde_json::json!({"KeyId": id, "EncapsulationAlgorithm": "ML_KEM", "DryRun": true});
            if op == "Decapsulate" {
                body["SharedSecretCiphertextBlob"] = b64(ct.as_bytes()).into();
            }
            let err = call::<serde_json::Value>(&svc, &c, op, body)
                .await
                .unwrap_err();
            assert_eq!(err.code, ErrorCode::DryRunOperationException, "{op}");
        }
        // Not a signing key.
        let err = call::<SignResponse>(
            &svc,
            &c,
            "Sign",
            serde_json::json!({"KeyId": id, "Message": b64(b"m"), "SigningAlgorithm": "ML_DSA_SHAKE_256"}),
        )
        .await
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidKeyUsageException);
    }
    // Wrong usage for the spec, and ML-KEM operations on other keys.
    let err = call::<CreateKeyResponse>(
        &svc,
        &c,
        "CreateKey",
        serde_json::json!({"KeySpec": "ML_KEM_768", "KeyUsage": "SIGN_VERIFY"}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::ValidationException);
    let sym = new_key(&svc, &c).await;
    let dsa = new_asymmetric_key(&svc, &c, "ML_DSA_44", "SIGN_VERIFY").await;
    for id in [sym, dsa.key_id.unwrap()] {
        let err = call::<EncapsulateResponse>(
            &svc,
            &c,
            "Encapsulate",
            serde_json::json!({"KeyId": id, "EncapsulationAlgorithm": "ML_KEM"}),
        )
        .await
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidKeyUsageException);
    }
    // Disabled key.
    let id = new_asymmetric_key(&svc, &c, "ML_KEM_512", "ENCAPSULATE_DECAPSULATE")
        .await
        .key_id
        .unwrap();
    call::<serde_json::Value>(&svc, &c, "DisableKey", serde_json::json!({"KeyId": id}))
        .await
        .unwrap();
    let err = call::<EncapsulateResponse>(
        &svc,
        &c,
        "Encapsulate",
        serde_json::json!({"KeyId": id, "EncapsulationAlgorithm": "ML_KEM"}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::DisabledException);
    // ML-KEM data key pairs: PKCS#8 seed form (86 bytes for every level) and SPKI.
    let wrap = new_key(&svc, &c).await;
    let pair: GenerateDataKeyPairResponse = call(
        &svc,
        &c,
        "GenerateDataKeyPair",
        serde_json::json!({"KeyId": wrap, "KeyPairSpec": "ML_KEM_1024"}),
    )
    .await
    .unwrap();
    assert_eq!(pair.private_key_plaintext.unwrap().len(), 86);
    assert!(pair.public_key.unwrap().len() > 1568);
}

#[tokio::test]
async fn ml_kem_grants_allow_encapsulate_and_decapsulate_only() {
    let (svc, _, c) = setup();
    let id = new_asymmetric_key(&svc, &c, "ML_KEM_768", "ENCAPSULATE_DECAPSULATE")
        .await
        .key_id
        .unwrap();
    let grantee = "arn:aws:iam::111122223333:user/bob";
    let _: CreateGrantResponse = call(
        &svc,
        &c,
        "CreateGrant",
        serde_json::json!({"KeyId": id, "GranteePrincipal": grantee,
            "Operations": ["Encapsulate", "Decapsulate", "GetPublicKey", "DescribeKey"]}),
    )
    .await
    .unwrap();
    for op in [
        "Sign",
        "Encrypt",
        "DeriveSharedSecret",
        "GenerateDataKeyPair",
    ] {
        let err = call::<CreateGrantResponse>(
            &svc,
            &c,
            "CreateGrant",
            serde_json::json!({"KeyId": id, "GranteePrincipal": grantee, "Operations": [op]}),
        )
        .await
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::ValidationException, "{op}");
    }
    let sign_key = new_asymmetric_key(&svc, &c, "ECC_NIST_P256", "SIGN_VERIFY")
        .await
        .key_id
        .unwrap();
    let err = call::<CreateGrantResponse>(
        &svc,
        &c,
        "CreateGrant",
        serde_json::json!({"KeyId": sign_key, "GranteePrincipal": grantee, "Operations": ["Encapsulate"]}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::ValidationException);
}

#[tokio::test]
async fn ed25519ph_and_ml_dsa_external_mu_sign_and_verify() {
    let (svc, _, c) = setup();
    let sign = |id: &str, alg: &str, mt: &str, msg: &[u8]| serde_json::json!({"KeyId": id, "SigningAlgorithm": alg, "MessageType": mt, "Message": b64(msg)});
    let ed = new_asymmetric_key(&svc, &c, "ECC_NIST_EDWARDS25519", "SIGN_VERIFY")
        .await
        .key_id
        .unwrap();
    let digest = [5u8; 64];
    let s: SignResponse = call(
        &svc,
        &c,
        "Sign",
        sign(&ed, "ED25519_PH_SHA_512", "DIGEST", &digest),
    )
    .await
    .unwrap();
    let sig = b64(s.signature.unwrap().as_bytes());
    let mut v = sign(&ed, "ED25519_PH_SHA_512", "DIGEST", &digest);
    v["Signature"] = sig.clone().into();
    let ok: VerifyResponse = call(&svc, &c, "Verify", v.clone()).await.unwrap();
    assert_eq!(ok.signature_valid, Some(true));
    v["Message"] = b64(&[6u8; 64]).into();
    let err = call::<VerifyResponse>(&svc, &c, "Verify", v)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::KMSInvalidSignatureException);
    for (mt, msg) in [("RAW", &digest[..]), ("DIGEST", &digest[..32])] {
        let err = call::<SignResponse>(&svc, &c, "Sign", sign(&ed, "ED25519_PH_SHA_512", mt, msg))
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::ValidationException, "{mt}");
    }

    let dsa = new_asymmetric_key(&svc, &c, "ML_DSA_65", "SIGN_VERIFY")
        .await
        .key_id
        .unwrap();
    let mu = [9u8; 64];
    let s: SignResponse = call(
        &svc,
        &c,
        "Sign",
        sign(&dsa, "ML_DSA_SHAKE_256", "EXTERNAL_MU", &mu),
    )
    .await
    .unwrap();
    let sig = s.signature.unwrap();
    assert_eq!(sig.len(), 3309);
    let mut v = sign(&dsa, "ML_DSA_SHAKE_256", "EXTERNAL_MU", &mu);
    v["Signature"] = b64(sig.as_bytes()).into();
    let ok: VerifyResponse = call(&svc, &c, "Verify", v.clone()).await.unwrap();
    assert_eq!(ok.signature_valid, Some(true));
    // The same bytes as a RAW message are another input.
    v["MessageType"] = "RAW".into();
    let err = call::<VerifyResponse>(&svc, &c, "Verify", v)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::KMSInvalidSignatureException);
    let err = call::<SignResponse>(
        &svc,
        &c,
        "Sign",
        sign(&dsa, "ML_DSA_SHAKE_256", "EXTERNAL_MU", &mu[1..]),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::ValidationException);
}

/// The caller of `c` in another Region.
fn in_region(c: &Caller, region: &str) -> Caller {
    Caller {
        region: region.into(),
        ..c.clone()
    }
}

#[tokio::test]
async fn multi_region_rules_replication_rotation_and_deletion() {
    let (svc, clock, east) = setup();
    let west = in_region(&east, "us-west-2");
    let created: CreateKeyResponse = call(
        &svc,
        &east,
        "CreateKey",
        serde_json::json!({"MultiRegion": true}),
    )
    .await
    .unwrap();
    let id = created.key_metadata.unwrap().key_id.unwrap();
    assert!(id.starts_with("mrk-"));
    // Not in a custom key store; not without MultiRegion to the primary.
    let plain = new_key(&svc, &east).await;
    let err = call::<ReplicateKeyResponse>(
        &svc,
        &east,
        "ReplicateKey",
        serde_json::json!({"KeyId": plain, "ReplicaRegion": "us-west-2"}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::UnsupportedOperationException);
    let err = call::<ReplicateKeyResponse>(
        &svc,
        &east,
        "ReplicateKey",
        serde_json::json!({"KeyId": id, "ReplicaRegion": "us-east-1"}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::ValidationException, "its own Region");
    let _: ReplicateKeyResponse = call(
        &svc,
        &east,
        "ReplicateKey",
        serde_json::json!({"KeyId": id, "ReplicaRegion": "us-west-2"}),
    )
    .await
    .unwrap();

    // Rotation on the primary reaches the replica in the same commit.
    let _: RotateKeyOnDemandResponse = call(
        &svc,
        &east,
        "RotateKeyOnDemand",
        serde_json::json!({"KeyId": id}),
    )
    .await
    .unwrap();
    assert_eq!(
        current_material(&svc, &east, &id).await,
        current_material(&svc, &west, &id).await
    );
    let err = call::<serde_json::Value>(
        &svc,
        &west,
        "EnableKeyRotation",
        serde_json::json!({"KeyId": id}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::UnsupportedOperationException);

    // Deleting the primary waits for its replica.
    let s: ScheduleKeyDeletionResponse = call(
        &svc,
        &east,
        "ScheduleKeyDeletion",
        serde_json::json!({"KeyId": id, "PendingWindowInDays": 7}),
    )
    .await
    .unwrap();
    assert_eq!(s.key_state.as_deref(), Some("PendingReplicaDeletion"));
    let err = call::<EncryptResponse>(
        &svc,
        &east,
        "Encrypt",
        serde_json::json!({"KeyId": id, "Plaintext": b64(b"x")}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::KMSInvalidStateException);
    let _: ScheduleKeyDeletionResponse = call(
        &svc,
        &west,
        "ScheduleKeyDeletion",
        serde_json::json!({"KeyId": id, "PendingWindowInDays": 7}),
    )
    .await
    .unwrap();
    clock.advance_ms(8 * 86_400_000);
    assert_eq!(svc.sweep_due_deletions().await.unwrap(), 1, "the replica");
    let d: DescribeKeyResponse = call(&svc, &east, "DescribeKey", serde_json::json!({"KeyId": id}))
        .await
        .unwrap();
    let m = d.key_metadata.unwrap();
    assert_eq!(m.key_state.as_deref(), Some("PendingDeletion"));
    assert!(m
        .multi_region_configuration
        .unwrap()
        .replica_keys
        .unwrap()
        .is_empty());
    clock.advance_ms(8 * 86_400_000);
    assert_eq!(
        svc.sweep_due_deletions().await.unwrap(),
        1,
        "then the primary"
    );
}

#[tokio::test]
async fn quota_classes_follow_the_key_type_alias_and_ciphertext() {
    use crate::{QuotaCharge, QuotaClass};
    let (svc, _, c) = setup();
    let one = |class| vec![QuotaCharge { class, cost: 1 }];
    let sym = new_key(&svc, &c).await;
    let rsa: CreateKeyResponse = call(
        &svc,
        &c,
        "CreateKey",
        serde_json::json!({"KeySpec": "RSA_2048", "KeyUsage": "SIGN_VERIFY"}),
    )
    .await
    .unwrap();
    let rsa = rsa.key_metadata.unwrap().key_id.unwrap();
    let _: serde_json::Value = call(
        &svc,
        &c,
        "CreateAlias",
        serde_json::json!({"AliasName": "alias/signer", "TargetKeyId": rsa}),
    )
    .await
    .unwrap();
    let charges =
        |op: &str, body: serde_json::Value| svc.quota_charges(&c, op, body.to_string().as_bytes());
    assert_eq!(
        charges("Encrypt", serde_json::json!({"KeyId": sym})),
        one(QuotaClass::Symmetric)
    );
    assert_eq!(
        charges("Sign", serde_json::json!({"KeyId": rsa})),
        one(QuotaClass::Rsa)
    );
    assert_eq!(
        charges("Sign", serde_json::json!({"KeyId": "alias/signer"})),
        one(QuotaClass::Rsa)
    );
    let arn = format!("arn:aws:kms:us-east-1:111122223333:key/{rsa}");
    assert_eq!(
        charges("Verify", serde_json::json!({"KeyId": arn})),
        one(QuotaClass::Rsa)
    );
    // Decrypt without KeyId: the key named in the ciphertext.
    let e: EncryptResponse = call(
        &svc,
        &c,
        "Encrypt",
        serde_json::json!({"KeyId": sym, "Plaintext": b64(b"x")}),
    )
    .await
    .unwrap();
    let blob = b64(e.ciphertext_blob.unwrap().as_bytes());
    assert_eq!(
        charges("Decrypt", serde_json::json!({"CiphertextBlob": blob})),
        one(QuotaClass::Symmetric)
    );
    // Unknown keys count as symmetric (the request fails later with NotFoundException).
    assert_eq!(
        charges("Encrypt", serde_json::json!({"KeyId": "alias/none"})),
        one(QuotaClass::Symmetric)
    );
    assert_eq!(
        charges(
            "GenerateDataKeyPair",
            serde_json::json!({"KeyId": sym, "KeyPairSpec": "ECC_NIST_P256"})
        ),
        one(QuotaClass::DataKeyPair("ECC_NIST_P256".into()))
    );
    assert_eq!(
        charges(
            "GenerateRandom",
            serde_json::json!({"CustomKeyStoreId": "cks-1"})
        ),
        vec![
            QuotaCharge {
                class: QuotaClass::Symmetric,
                cost: 1
            },
            QuotaCharge {
                class: QuotaClass::CustomKeyStore("cks-1".into()),
                cost: 3
            },
        ]
    );
    assert_eq!(
        charges("CreateKey", serde_json::json!({})),
        one(QuotaClass::Operation("CreateKey".into()))
    );
}
