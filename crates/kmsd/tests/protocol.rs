//! Wire-level behaviour over raw HTTP: authentication errors, framing, validation, and that no
//! malformed input brings the server down.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{kms_request, now_secs, send, Server};

#[tokio::test]
async fn authentication_errors_are_awss() {
    let server = Server::start(&[]);
    let (a, s) = server.admin_credentials();
    let addr = server.addr;

    let r = kms_request(addr, "TrentService.ListKeys", "{}", None, now_secs()).await;
    assert_eq!(
        (r.status, r.error_type().as_str()),
        (400, "MissingAuthenticationTokenException")
    );
    assert!(r.header("x-amzn-RequestId").is_some_and(|v| v.len() == 36));

    let r = kms_request(
        addr,
        "TrentService.ListKeys",
        "{}",
        Some((&a, "wrong")),
        now_secs(),
    )
    .await;
    assert_eq!(r.error_type(), "InvalidSignatureException");
    let r = kms_request(
        addr,
        "TrentService.ListKeys",
        "{}",
        Some(("AKIANOPE", &s)),
        now_secs(),
    )
    .await;
    assert_eq!(r.error_type(), "UnrecognizedClientException");
    let r = kms_request(
        addr,
        "TrentService.ListKeys",
        "{}",
        Some((&a, &s)),
        now_secs() - 600,
    )
    .await;
    assert_eq!(r.error_type(), "InvalidSignatureException");
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .starts_with("Signature expired"));
    let r = kms_request(
        addr,
        "TrentService.ListKeys",
        "{}",
        Some((&a, &s)),
        now_secs() + 600,
    )
    .await;
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .starts_with("Signature not yet current"));

    let r = kms_request(
        addr,
        "TrentService.ListKeys",
        "{}",
        Some((&a, &s)),
        now_secs(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/x-amz-json-1.1"));
    assert!(r.header("date").is_some());
    assert_eq!(
        r.json(),
        serde_json::json!({"Keys": [], "Truncated": false})
    );

    let r = kms_request(addr, "TrentService.Nope", "{}", Some((&a, &s)), now_secs()).await;
    assert_eq!(r.error_type(), "UnknownOperationException");
    let r = kms_request(addr, "Other.ListKeys", "{}", Some((&a, &s)), now_secs()).await;
    assert_eq!(r.error_type(), "UnknownOperationException");
    let r = kms_request(
        addr,
        "TrentService.GetParametersForImport",
        "{}",
        Some((&a, &s)),
        now_secs(),
    )
    .await;
    // Served now (imported key material): a missing required member is the model's error.
    assert_eq!(r.error_type(), "ValidationException");

    // Malformed Authorization headers.
    let host = addr.to_string();
    for auth in [
        "AWS4-HMAC-SHA256",
        "Basic Zm9vOmJhcg==",
        "AWS4-HMAC-SHA256 Credential=x, SignedHeaders=host, Signature=00",
    ] {
        let r = send(
            addr,
            &[
                ("host".into(), host.clone()),
                ("x-amz-target".into(), "TrentService.ListKeys".into()),
                ("x-amz-date".into(), "20260101T000000Z".into()),
                ("authorization".into(), auth.into()),
            ],
            b"{}",
        )
        .await;
        assert_eq!(r.error_type(), "IncompleteSignatureException", "{auth}");
    }
}

#[tokio::test]
async fn validation_serialization_and_unknown_members() {
    let server = Server::start(&[]);
    let (a, s) = server.admin_credentials();
    let creds = Some((a.as_str(), s.as_str()));
    let addr = server.addr;

    let r = kms_request(addr, "TrentService.Encrypt", "{not json", creds, now_secs()).await;
    assert_eq!(r.error_type(), "SerializationException");
    let r = kms_request(
        addr,
        "TrentService.Encrypt",
        r#"{"KeyId":5,"Plaintext":"aGk="}"#,
        creds,
        now_secs(),
    )
    .await;
    assert_eq!(r.error_type(), "SerializationException");
    let r = kms_request(
        addr,
        "TrentService.Encrypt",
        r#"{"KeyId":"alias/x","Plaintext":"@@@"}"#,
        creds,
        now_secs(),
    )
    .await;
    assert_eq!(r.error_type(), "SerializationException");
    let r = kms_request(
        addr,
        "TrentService.Encrypt",
        r#"{"KeyId":"alias/x"}"#,
        creds,
        now_secs(),
    )
    .await;
    assert_eq!(r.error_type(), "ValidationException");
    assert_eq!(
        r.json()["message"],
        "1 validation error detected: Value null at 'plaintext' failed to satisfy constraint: Member must not be null"
    );
    let big = base64_of(&vec![0u8; 4097]);
    let r = kms_request(
        addr,
        "TrentService.Encrypt",
        &format!(r#"{{"KeyId":"alias/x","Plaintext":"{big}"}}"#),
        creds,
        now_secs(),
    )
    .await;
    assert_eq!(r.error_type(), "ValidationException");
    let r = kms_request(
        addr,
        "TrentService.GenerateRandom",
        r#"{"NumberOfBytes":1025}"#,
        creds,
        now_secs(),
    )
    .await;
    assert_eq!(r.error_type(), "ValidationException");
    let r = kms_request(
        addr,
        "TrentService.TagResource",
        r#"{"KeyId":"k","Tags":[{"TagKey":"a","TagValue":"b","Scope":"all"}]}"#,
        creds,
        now_secs(),
    )
    .await;
    assert_eq!(r.error_type(), "ValidationException", "{:?}", r.json());
    assert!(r.json()["message"].as_str().unwrap().contains("'Scope'"));
    let r = kms_request(
        addr,
        "TrentService.CreateKey",
        r#"{"Description":"x","MysteryField":true}"#,
        creds,
        now_secs(),
    )
    .await;
    assert_eq!(r.error_type(), "ValidationException");
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("'MysteryField'"));
    let r = kms_request(
        addr,
        "TrentService.ScheduleKeyDeletion",
        r#"{"KeyId":"1234abcd-12ab-34cd-56ef-1234567890ab","PendingWindowInDays":3}"#,
        creds,
        now_secs(),
    )
    .await;
    assert_eq!(r.error_type(), "ValidationException");
    let r = kms_request(
        addr,
        "TrentService.DescribeKey",
        r#"{"KeyId":"1234abcd-12ab-34cd-56ef-1234567890ab"}"#,
        creds,
        now_secs(),
    )
    .await;
    assert_eq!(
        (r.status, r.error_type().as_str()),
        (400, "NotFoundException")
    );
    // An empty body is accepted as {} for operations without required members.
    let r = kms_request(addr, "TrentService.ListAliases", "", creds, now_secs()).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn sts_get_caller_identity() {
    let server = Server::start(&[]);
    let (a, s) = server.admin_credentials();
    let addr = server.addr;
    let body = "Action=GetCallerIdentity&Version=2011-06-15";
    let mut headers = vec![
        ("host".to_owned(), addr.to_string()),
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
    headers.extend(kmsd::sigv4::sign(&parts, &a, &s, "us-east-1", "sts", now_secs()).unwrap());
    let r = send(addr, &headers, body.as_bytes()).await;
    let text = String::from_utf8(r.body).unwrap();
    assert_eq!(r.status, 200, "{text}");
    assert!(text.contains("<Account>111122223333</Account>"));
    assert!(text.contains("<Arn>arn:aws:iam::111122223333:user/admin</Arn>"));
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Garbage at every layer: the server answers or closes, never dies, and keeps serving.
#[tokio::test]
async fn malformed_requests_never_crash_the_server() {
    let server = Server::start(&[]);
    let (a, s) = server.admin_credentials();
    let addr = server.addr;
    let mut cases: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"GARBAGE\r\n\r\n".to_vec(),
        b"POST / HTTP/1.1\r\n\r\n".to_vec(),
        b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 99999999999999999999\r\n\r\n".to_vec(),
        b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nabc".to_vec(),
        b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n".to_vec(),
        format!("POST / HTTP/1.1\r\nhost: x\r\nx-amz-target: {}\r\n\r\n", "A".repeat(70_000)).into_bytes(),
        b"GET /../../etc/passwd HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_vec(),
        b"POST / HTTP/1.1\r\nhost: x\r\nauthorization: AWS4-HMAC-SHA256 Credential=\xff\xfe/\r\nconnection: close\r\ncontent-length: 0\r\n\r\n".to_vec(),
    ];
    // Oversized body (2 MiB).
    let mut big = b"POST / HTTP/1.1\r\nhost: x\r\nx-amz-target: TrentService.Encrypt\r\nconnection: close\r\ncontent-length: 2097152\r\n\r\n".to_vec();
    big.extend(std::iter::repeat_n(b'{', 2 * 1024 * 1024));
    cases.push(big);
    // Truncated and mutated signed JSON bodies.
    let good = r#"{"KeyId":"alias/x","Plaintext":"aGVsbG8=","EncryptionContext":{"a":"b"}}"#;
    for cut in 0..good.len() {
        let body = &good[..cut];
        let r = kms_request(
            addr,
            "TrentService.Encrypt",
            body,
            Some((&a, &s)),
            now_secs(),
        )
        .await;
        assert!(r.status >= 400 && r.status < 500, "cut {cut}: {}", r.status);
    }
    for weird in [
        r#"[]"#,
        r#"null"#,
        r#""str""#,
        r#"{"KeyId":null,"Plaintext":null}"#,
        r#"{"KeyId":{"a":1}}"#,
        r#"{"KeyId":"\ud800"}"#,
        r#"{"EncryptionContext":{"a":1}}"#,
        r#"{"GrantTokens":"x"}"#,
        r#"{"KeyId":"arn:aws:kms:::key/"}"#,
        r#"{"KeyId":"arn:aws:kms:us-east-1:111122223333:alias/"}"#,
    ] {
        for op in [
            "Encrypt",
            "Decrypt",
            "CreateKey",
            "ListKeys",
            "CreateAlias",
            "TagResource",
            "GenerateDataKey",
        ] {
            let r = kms_request(
                addr,
                &format!("TrentService.{op}"),
                weird,
                Some((&a, &s)),
                now_secs(),
            )
            .await;
            assert!(
                r.status >= 400 && r.status < 500,
                "{op} {weird}: {} {:?}",
                r.status,
                r.json()
            );
        }
    }
    // Incomplete requests make the server wait for more bytes; send them all at once and give
    // each a bounded wait.
    let tasks: Vec<_> = cases
        .into_iter()
        .map(|c| {
            tokio::spawn(async move {
                tokio::time::timeout(std::time::Duration::from_secs(3), common::raw(addr, &c)).await
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    let r = kms_request(
        addr,
        "TrentService.ListKeys",
        "{}",
        Some((&a, &s)),
        now_secs(),
    )
    .await;
    assert_eq!(r.status, 200, "server still serves after the garbage");
}
