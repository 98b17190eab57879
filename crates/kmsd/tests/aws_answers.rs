//! kmsd answers as real AWS KMS answers: HTTP status, `__type` and message, word for word, for
//! every situation of `shared/reference/aws-recorded-errors.md` that kmsd can produce; the
//! credential scope's Region is validated; and the SigV4 rules that stop a request from being
//! changed in transit. Raw HTTP, so the status and the exact body are what is checked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine;
use common::{RawResponse, Server};
use serde_json::{json, Value};

const ACCOUNT: &str = "111122223333";
const REGION: &str = "us-east-1";

/// A signed request to `target` with `body`, in `region` for SigV4 service `service`.
async fn signed(
    server: &Server,
    service: &str,
    region: &str,
    target: &str,
    body: &str,
) -> RawResponse {
    let (a, s) = server.admin_credentials();
    let headers = vec![
        ("host".to_owned(), server.addr.to_string()),
        (
            "content-type".to_owned(),
            "application/x-amz-json-1.1".to_owned(),
        ),
        ("x-amz-target".to_owned(), target.to_owned()),
    ];
    let parts = kmsd::sigv4::RequestParts {
        method: "POST",
        path: "/",
        query: "",
        headers: headers.clone(),
        body: body.as_bytes(),
    };
    let mut all = headers;
    all.extend(kmsd::sigv4::sign(&parts, &a, &s, region, service, common::now_secs()).unwrap());
    common::send(server.addr, &all, body.as_bytes()).await
}

/// A KMS call in us-east-1.
async fn kms(server: &Server, op: &str, body: Value) -> RawResponse {
    signed(
        server,
        "kms",
        REGION,
        &format!("TrentService.{op}"),
        &body.to_string(),
    )
    .await
}

/// A KMS call that must succeed; returns its JSON.
async fn ok(server: &Server, op: &str, body: Value) -> Value {
    let r = kms(server, op, body).await;
    assert_eq!(r.status, 200, "{op}: {}", String::from_utf8_lossy(&r.body));
    r.json()
}

/// Asserts an error answer: HTTP `status`, `__type` and the exact message (`None`: the body
/// has no `message` member at all, as AWS sends for failed checks).
fn assert_answer(r: &RawResponse, status: u16, code: &str, message: Option<&str>) {
    let body = r.json();
    assert_eq!(
        (r.status, r.error_type().as_str()),
        (status, code),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(
        body.get("message").and_then(Value::as_str),
        message,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    if message.is_none() {
        assert_eq!(body, json!({ "__type": code }), "no other member");
    }
}

async fn create_key(server: &Server, body: Value) -> (String, String) {
    let v = ok(server, "CreateKey", body).await;
    (
        v["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned(),
        v["KeyMetadata"]["Arn"].as_str().unwrap().to_owned(),
    )
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn key_identifiers_get_aws_not_found_answers_with_http_400() {
    let server = Server::start(&[]);
    let unknown = "1234abcd-12ab-34cd-56ef-1234567890ab";
    let r = kms(&server, "DescribeKey", json!({ "KeyId": unknown })).await;
    let arn = format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/{unknown}");
    assert_answer(
        &r,
        400,
        "NotFoundException",
        Some(&format!("Key '{arn}' does not exist")),
    );
    // The same message for a key ARN of this Region and for mrk- ids.
    let r = kms(&server, "DescribeKey", json!({ "KeyId": arn })).await;
    assert_answer(
        &r,
        400,
        "NotFoundException",
        Some(&format!("Key '{arn}' does not exist")),
    );
    let mrk = "mrk-1234abcd12ab34cd56ef1234567890ab";
    let r = kms(&server, "DescribeKey", json!({ "KeyId": mrk })).await;
    assert_answer(
        &r,
        400,
        "NotFoundException",
        Some(&format!(
            "Key 'arn:aws:kms:{REGION}:{ACCOUNT}:key/{mrk}' does not exist"
        )),
    );
    for bad in [
        "fake-key-id",
        "1234abcd12ab34cd56ef1234567890ab",
        "mrk-fake-key-id",
        "key_id",
    ] {
        let r = kms(&server, "DescribeKey", json!({ "KeyId": bad })).await;
        assert_answer(
            &r,
            400,
            "NotFoundException",
            Some(&format!("Invalid keyId '{bad}'")),
        );
    }
    // A key that exists, named by its ARN in another Region.
    let (id, _) = create_key(&server, json!({})).await;
    let other = format!("arn:aws:kms:us-west-2:{ACCOUNT}:key/{id}");
    let r = kms(&server, "DescribeKey", json!({ "KeyId": other })).await;
    assert_answer(&r, 400, "NotFoundException", Some("Invalid arn us-west-2"));
    // Looked up by id from another Region: the ARN of the caller's Region.
    let r = signed(
        &server,
        "kms",
        "eu-west-1",
        "TrentService.DescribeKey",
        &json!({ "KeyId": id }).to_string(),
    )
    .await;
    assert_answer(
        &r,
        400,
        "NotFoundException",
        Some(&format!(
            "Key 'arn:aws:kms:eu-west-1:{ACCOUNT}:key/{id}' does not exist"
        )),
    );
}

#[tokio::test]
async fn modeled_client_errors_are_http_400_whatever_the_smithy_model_says() {
    let server = Server::start(&[]);
    let (id, arn) = create_key(&server, json!({})).await;
    ok(
        &server,
        "CreateAlias",
        json!({ "AliasName": "alias/dup", "TargetKeyId": id }),
    )
    .await;
    let r = kms(
        &server,
        "CreateAlias",
        json!({ "AliasName": "alias/dup", "TargetKeyId": id }),
    )
    .await;
    assert_eq!(
        (r.status, r.error_type().as_str()),
        (400, "AlreadyExistsException")
    );

    let r = kms(
        &server,
        "Encrypt",
        json!({ "KeyId": id, "Plaintext": b64(b"x"), "DryRun": true }),
    )
    .await;
    assert_answer(
        &r,
        400,
        "DryRunOperationException",
        Some("The request would have succeeded, but the DryRun option is set."),
    );

    ok(&server, "DisableKey", json!({ "KeyId": id })).await;
    let r = kms(&server, "RotateKeyOnDemand", json!({ "KeyId": id })).await;
    assert_answer(
        &r,
        400,
        "DisabledException",
        Some(&format!("{arn} is disabled.")),
    );
    ok(
        &server,
        "ScheduleKeyDeletion",
        json!({ "KeyId": id, "PendingWindowInDays": 7 }),
    )
    .await;
    let r = kms(
        &server,
        "Encrypt",
        json!({ "KeyId": id, "Plaintext": b64(b"x") }),
    )
    .await;
    assert_eq!(
        (r.status, r.error_type().as_str()),
        (400, "KMSInvalidStateException")
    );
}

#[tokio::test]
async fn failed_checks_carry_no_message() {
    let server = Server::start(&[]);
    let (id, _) = create_key(&server, json!({})).await;
    let ct = ok(
        &server,
        "Encrypt",
        json!({ "KeyId": id, "Plaintext": b64(b"secret"), "EncryptionContext": {"a": "b"} }),
    )
    .await["CiphertextBlob"]
        .as_str()
        .unwrap()
        .to_owned();
    // Without the encryption context, and tampered.
    let r = kms(&server, "Decrypt", json!({ "CiphertextBlob": ct })).await;
    assert_answer(&r, 400, "InvalidCiphertextException", None);
    let mut raw = base64::engine::general_purpose::STANDARD
        .decode(&ct)
        .unwrap();
    let last = raw.len() - 1;
    raw[last] ^= 1;
    let r = kms(
        &server,
        "Decrypt",
        json!({ "CiphertextBlob": b64(&raw), "EncryptionContext": {"a": "b"} }),
    )
    .await;
    assert_answer(&r, 400, "InvalidCiphertextException", None);

    let (sig_key, _) = create_key(
        &server,
        json!({ "KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY" }),
    )
    .await;
    let r = kms(
        &server,
        "Verify",
        json!({ "KeyId": sig_key, "Message": b64(b"m"), "Signature": b64(&[0x30, 0x06, 2, 1, 1, 2, 1, 1]), "SigningAlgorithm": "ECDSA_SHA_256" }),
    )
    .await;
    assert_answer(&r, 400, "KMSInvalidSignatureException", None);

    let (mac_key, _) = create_key(
        &server,
        json!({ "KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC" }),
    )
    .await;
    let r = kms(
        &server,
        "VerifyMac",
        json!({ "KeyId": mac_key, "Message": b64(b"m"), "Mac": b64(&[0u8; 32]), "MacAlgorithm": "HMAC_SHA_256" }),
    )
    .await;
    assert_answer(&r, 400, "KMSInvalidMacException", None);

    let (agree_key, _) = create_key(
        &server,
        json!({ "KeySpec": "ECC_NIST_P256", "KeyUsage": "KEY_AGREEMENT" }),
    )
    .await;
    let r = kms(
        &server,
        "DeriveSharedSecret",
        json!({ "KeyId": agree_key, "KeyAgreementAlgorithm": "ECDH", "PublicKey": b64(b"not a key") }),
    )
    .await;
    assert_answer(&r, 400, "ValidationException", None);
}

#[tokio::test]
async fn cryptographic_misuse_gets_aws_messages() {
    let server = Server::start(&[]);
    let (sym, _) = create_key(&server, json!({})).await;
    let (sig_key, sig_arn) = create_key(
        &server,
        json!({ "KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY" }),
    )
    .await;
    let r = kms(
        &server,
        "Encrypt",
        json!({ "KeyId": sig_key, "Plaintext": b64(b"x") }),
    )
    .await;
    assert_answer(
        &r,
        400,
        "InvalidKeyUsageException",
        Some(&format!(
            "{sig_arn} key usage is SIGN_VERIFY which is not valid for Encrypt."
        )),
    );
    let (_, sym_arn) = create_key(&server, json!({})).await;
    let r = kms(
        &server,
        "Sign",
        json!({ "KeyId": sym_arn, "Message": b64(b"x"), "SigningAlgorithm": "ECDSA_SHA_256" }),
    )
    .await;
    assert_answer(
        &r,
        400,
        "InvalidKeyUsageException",
        Some(&format!(
            "{sym_arn} key usage is ENCRYPT_DECRYPT which is not valid for Sign."
        )),
    );
    let r = kms(
        &server,
        "Sign",
        json!({ "KeyId": sig_key, "Message": b64(&[0u8; 31]), "MessageType": "DIGEST", "SigningAlgorithm": "ECDSA_SHA_256" }),
    )
    .await;
    assert_answer(
        &r,
        400,
        "ValidationException",
        Some("Digest is invalid length for algorithm ECDSA_SHA_256."),
    );

    let (mac_key, _) = create_key(
        &server,
        json!({ "KeySpec": "HMAC_224", "KeyUsage": "GENERATE_VERIFY_MAC" }),
    )
    .await;
    let r = kms(
        &server,
        "GenerateMac",
        json!({ "KeyId": mac_key, "Message": b64(b"m"), "MacAlgorithm": "HMAC_SHA_256" }),
    )
    .await;
    assert_answer(
        &r,
        400,
        "InvalidKeyUsageException",
        Some("Algorithm HMAC_SHA_256 is incompatible with key spec HMAC_224."),
    );

    let (rsa, _) = create_key(
        &server,
        json!({ "KeySpec": "RSA_2048", "KeyUsage": "ENCRYPT_DECRYPT" }),
    )
    .await;
    for (alg, max) in [("RSAES_OAEP_SHA_256", 190), ("RSAES_OAEP_SHA_1", 214)] {
        let fits = kms(
            &server,
            "Encrypt",
            json!({ "KeyId": rsa, "Plaintext": b64(&vec![1u8; max]), "EncryptionAlgorithm": alg }),
        )
        .await;
        assert_eq!(fits.status, 200, "{alg} {max}");
        let r = kms(
            &server,
            "Encrypt",
            json!({ "KeyId": rsa, "Plaintext": b64(&vec![1u8; max + 1]), "EncryptionAlgorithm": alg }),
        )
        .await;
        assert_answer(
            &r,
            400,
            "ValidationException",
            Some(&format!(
                "Algorithm {alg} and key spec RSA_2048 cannot encrypt data larger than {max} bytes."
            )),
        );
    }

    // Decrypt naming another key than the ciphertext's.
    let ct = ok(
        &server,
        "Encrypt",
        json!({ "KeyId": sym, "Plaintext": b64(b"x") }),
    )
    .await["CiphertextBlob"]
        .clone();
    let (other, _) = create_key(&server, json!({})).await;
    let r = kms(
        &server,
        "Decrypt",
        json!({ "KeyId": other, "CiphertextBlob": ct }),
    )
    .await;
    assert_answer(
        &r,
        400,
        "IncorrectKeyException",
        Some("The key ID in the request does not identify a CMK that can perform this operation."),
    );

    let r = kms(&server, "GenerateRandom", json!({})).await;
    assert_answer(
        &r,
        400,
        "ValidationException",
        Some("NumberOfBytes is required."),
    );
    let r = kms(&server, "GenerateRandom", json!({ "NumberOfBytes": 0 })).await;
    assert_answer(&r, 400, "ValidationException", Some("1 validation error detected: Value '0' at 'numberOfBytes' failed to satisfy constraint: Member must have value greater than or equal to 1"));
    let r = kms(&server, "GenerateRandom", json!({ "NumberOfBytes": 1025 })).await;
    assert_answer(&r, 400, "ValidationException", Some("1 validation error detected: Value '1025' at 'numberOfBytes' failed to satisfy constraint: Member must have value less than or equal to 1024"));
    let r = kms(
        &server,
        "Encrypt",
        json!({ "KeyId": sym, "Plaintext": b64(&[0u8; 4097]) }),
    )
    .await;
    assert_answer(&r, 400, "ValidationException", Some("1 validation error detected: Value at 'plaintext' failed to satisfy constraint: Member must have length less than or equal to 4096"));

    let r = kms(&server, "CreateKey", json!({ "KeySpec": "RSA_2048" })).await;
    assert_answer(
        &r,
        400,
        "ValidationException",
        Some("You must specify a KeyUsage value for all KMS keys except for symmetric encryption keys."),
    );
    let r = kms(
        &server,
        "CreateKey",
        json!({ "KeySpec": "RSA_2048", "KeyUsage": "KEY_AGREEMENT" }),
    )
    .await;
    assert_answer(
        &r,
        400,
        "ValidationException",
        Some("KeyUsage KEY_AGREEMENT is not compatible with KeySpec RSA_2048"),
    );
}

#[tokio::test]
async fn aliases_and_tags_follow_aws_rules_and_messages() {
    let server = Server::start(&[]);
    let (id, _) = create_key(&server, json!({})).await;
    let r = kms(
        &server,
        "CreateAlias",
        json!({ "AliasName": "orders", "TargetKeyId": id }),
    )
    .await;
    assert_answer(&r, 400, "ValidationException", Some("Alias must start with the prefix \"alias/\". Please see https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html"));
    let r = kms(
        &server,
        "CreateAlias",
        json!({ "AliasName": "alias/x:y", "TargetKeyId": id }),
    )
    .await;
    assert_answer(
        &r,
        400,
        "ValidationException",
        Some("alias/x:y contains invalid characters for an alias"),
    );
    ok(
        &server,
        "CreateAlias",
        json!({ "AliasName": "alias/Team_A/orders-2", "TargetKeyId": id }),
    )
    .await;

    let tag = |k: &str| json!({ "TagKey": k, "TagValue": "v" });
    let r = kms(
        &server,
        "TagResource",
        json!({ "KeyId": id, "Tags": [tag("AWS:x")] }),
    )
    .await;
    assert_answer(
        &r,
        400,
        "TagException",
        Some("Tags beginning with aws: are reserved"),
    );
    let r = kms(
        &server,
        "TagResource",
        json!({ "KeyId": id, "Tags": [tag("a"), tag("a")] }),
    )
    .await;
    assert_answer(&r, 400, "TagException", Some("Duplicate tag keys"));
    let many: Vec<Value> = (0..51).map(|i| tag(&format!("k{i}"))).collect();
    let r = kms(&server, "TagResource", json!({ "KeyId": id, "Tags": many })).await;
    assert_answer(&r, 400, "TagException", Some("Too many tags"));
    let r = kms(&server, "CreateKey", json!({ "Tags": many })).await;
    assert_answer(&r, 400, "TagException", Some("Too many tags"));
    let long = "k".repeat(129);
    let r = kms(
        &server,
        "TagResource",
        json!({ "KeyId": id, "Tags": [tag(&long)] }),
    )
    .await;
    assert_answer(&r, 400, "ValidationException", Some(&format!("1 validation error detected: Value '{long}' at 'tags.1.member.tagKey' failed to satisfy constraint: Member must have length less than or equal to 128")));
}

#[tokio::test]
async fn rotation_grants_and_success_shapes_match_aws() {
    let server = Server::start(&[]);
    let (id, arn) = create_key(&server, json!({})).await;
    let v = ok(&server, "RotateKeyOnDemand", json!({ "KeyId": id })).await;
    assert_eq!(v, json!({ "KeyId": arn }));
    let (hmac, _) = create_key(
        &server,
        json!({ "KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC" }),
    )
    .await;
    let r = kms(&server, "RotateKeyOnDemand", json!({ "KeyId": hmac })).await;
    assert_answer(&r, 400, "UnsupportedOperationException", None);
    for _ in 1..25 {
        ok(&server, "RotateKeyOnDemand", json!({ "KeyId": id })).await;
    }
    let r = kms(&server, "RotateKeyOnDemand", json!({ "KeyId": id })).await;
    assert_answer(&r, 400, "LimitExceededException", Some(&format!("The on-demand rotations limit has been reached for the given keyId. No more on-demand rotations can be performed for this key: {arn}")));

    // Rotation status while pending deletion: false, and back after cancelling.
    ok(&server, "EnableKeyRotation", json!({ "KeyId": id })).await;
    ok(
        &server,
        "ScheduleKeyDeletion",
        json!({ "KeyId": id, "PendingWindowInDays": 7 }),
    )
    .await;
    let v = ok(&server, "GetKeyRotationStatus", json!({ "KeyId": id })).await;
    assert_eq!(v["KeyRotationEnabled"], false, "{v}");
    ok(&server, "CancelKeyDeletion", json!({ "KeyId": id })).await;
    let v = ok(&server, "GetKeyRotationStatus", json!({ "KeyId": id })).await;
    assert_eq!(v["KeyRotationEnabled"], true, "{v}");

    // RetireGrant with a key id (not only an ARN) and a GrantId.
    let (key, _) = create_key(&server, json!({})).await;
    for key_ref in [
        key.clone(),
        format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/{key}"),
    ] {
        let g = ok(
            &server,
            "CreateGrant",
            json!({ "KeyId": key, "GranteePrincipal": format!("arn:aws:iam::{ACCOUNT}:user/admin"), "Operations": ["Encrypt"] }),
        )
        .await;
        let grant_id = g["GrantId"].as_str().unwrap();
        ok(
            &server,
            "RetireGrant",
            json!({ "KeyId": key_ref, "GrantId": grant_id }),
        )
        .await;
    }
    let grants = ok(&server, "ListGrants", json!({ "KeyId": key })).await;
    assert_eq!(grants["Grants"], json!([]), "{grants}");
}

#[tokio::test]
async fn the_credential_scope_region_must_be_a_region() {
    let server = Server::start(&[]);
    let long = format!("us-{}-1", "a".repeat(296));
    for bad in [
        "*",
        "us-east-1:444455556666",
        "US-EAST-1",
        long.as_str(),
        "useast1",
        "us-east-123",
    ] {
        let r = signed(&server, "kms", bad, "TrentService.CreateKey", "{}").await;
        assert_answer(
            &r,
            400,
            "InvalidSignatureException",
            Some("Credential should be scoped to a valid region."),
        );
    }
    for good in [
        "us-gov-west-1",
        "cn-north-1",
        "eu-central-2",
        "us-isob-east-1",
    ] {
        let r = signed(&server, "kms", good, "TrentService.CreateKey", "{}").await;
        assert_eq!(
            r.status,
            200,
            "{good}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(r.json()["KeyMetadata"]["Arn"]
            .as_str()
            .unwrap()
            .starts_with(&format!("arn:aws:kms:{good}:{ACCOUNT}:key/")));
    }
    // No key was made under a malformed Region.
    let keys = ok(&server, "ListKeys", json!({})).await;
    assert_eq!(keys["Keys"], json!([]));
}

#[tokio::test]
async fn sigv4_must_cover_the_operation_and_use_lowercase_hex() {
    let server = Server::start(&[]);
    let (a, s) = server.admin_credentials();
    let host = ("host".to_owned(), server.addr.to_string());
    let ct = (
        "content-type".to_owned(),
        "application/x-amz-json-1.1".to_owned(),
    );
    let target = (
        "x-amz-target".to_owned(),
        "TrentService.CreateKey".to_owned(),
    );
    let sign = |headers: &[(String, String)]| {
        let parts = kmsd::sigv4::RequestParts {
            method: "POST",
            path: "/",
            query: "",
            headers: headers.to_vec(),
            body: b"{}",
        };
        kmsd::sigv4::sign(&parts, &a, &s, REGION, "kms", common::now_secs()).unwrap()
    };
    // Signed without X-Amz-Target (then added): the operation could be swapped in transit.
    for (signed_headers, extra) in [
        (vec![host.clone(), ct.clone()], target.clone()),
        (vec![host.clone(), target.clone()], ct.clone()),
    ] {
        let mut all = signed_headers.clone();
        all.extend(sign(&signed_headers));
        all.push(extra.clone());
        let r = common::send(server.addr, &all, b"{}").await;
        assert_answer(
            &r,
            400,
            "InvalidSignatureException",
            Some(&format!("The {} header must be signed.", extra.0)),
        );
    }
    // The right signature in uppercase hex.
    let headers = vec![host.clone(), ct.clone(), target.clone()];
    let mut all = headers.clone();
    for (n, v) in sign(&headers) {
        if n == "authorization" {
            let (head, sig) = v.rsplit_once("Signature=").unwrap();
            all.push((n, format!("{head}Signature={}", sig.to_ascii_uppercase())));
        } else {
            all.push((n, v));
        }
    }
    let r = common::send(server.addr, &all, b"{}").await;
    assert_eq!(
        (r.status, r.error_type().as_str()),
        (400, "InvalidSignatureException")
    );
    // The lowercase original works.
    let mut all = headers.clone();
    all.extend(sign(&headers));
    assert_eq!(common::send(server.addr, &all, b"{}").await.status, 200);
}

#[tokio::test]
async fn cloudhsm_and_sts_errors_use_aws_statuses() {
    let server = Server::start(&[]);
    let r = signed(
        &server,
        "cloudhsm",
        REGION,
        "BaldrApiService.DeleteCluster",
        &json!({ "ClusterId": "cluster-234abcdefgh" }).to_string(),
    )
    .await;
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.error_type().starts_with("CloudHsm"), "{}", r.error_type());

    // STS: an unknown access key is 403 InvalidClientTokenId, as STS sends.
    let body = "Action=GetCallerIdentity&Version=2011-06-15";
    let headers = vec![
        ("host".to_owned(), server.addr.to_string()),
        (
            "content-type".to_owned(),
            "application/x-www-form-urlencoded; charset=utf-8".to_owned(),
        ),
    ];
    let parts = kmsd::sigv4::RequestParts {
        method: "POST",
        path: "/",
        query: "",
        headers: headers.clone(),
        body: body.as_bytes(),
    };
    let mut all = headers;
    all.extend(
        kmsd::sigv4::sign(
            &parts,
            "AKIAUNKNOWNUNKNOWN00",
            "secret",
            REGION,
            "sts",
            common::now_secs(),
        )
        .unwrap(),
    );
    let r = common::send(server.addr, &all, body.as_bytes()).await;
    assert_eq!(r.status, 403);
    assert!(
        String::from_utf8_lossy(&r.body).contains("<Code>InvalidClientTokenId</Code>"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
}
