//! External key stores against an in-process fake proxy: validation, connection error codes,
//! key checks at CreateKey, double encryption and how proxy failures surface.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use kms_types::{ErrorCode, KmsError};
use serde_json::{json, Value};

use super::{XksFault, XksTarget, XksTransport};
use crate::{Caller, ManualClock, MemStore, Service};

#[derive(Default)]
struct FakeProxy {
    keys: Mutex<HashMap<String, ([u8; 32], &'static str)>>,
    fault: Mutex<Option<XksFault>>,
    seen: Mutex<Vec<Value>>,
    /// healthStatus of the one key manager GetHealthStatus reports (default ACTIVE).
    ekm_status: Mutex<Option<&'static str>>,
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}
fn unb64(v: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap_or_default())
        .unwrap_or_default()
}

impl FakeProxy {
    fn answer(&self, suffix: &str, body: &[u8]) -> Result<Vec<u8>, XksFault> {
        if let Some(f) = self.fault.lock().unwrap().clone() {
            return Err(f);
        }
        let req: Value = serde_json::from_slice(body).unwrap();
        self.seen
            .lock()
            .unwrap()
            .push(req["requestMetadata"].clone());
        if suffix == "/health" {
            let status = self.ekm_status.lock().unwrap().unwrap_or("ACTIVE");
            return Ok(json!({"xksProxyFleetSize": 1, "xksProxyVendor": "test", "xksProxyModel": "fake", "ekmVendor": "mem",
                "ekmFleetDetails": [{"id": "e1", "model": "m", "healthStatus": status}]}).to_string().into_bytes());
        }
        let parts: Vec<&str> = suffix.trim_start_matches("/keys/").split('/').collect();
        let (id, op) = (parts[0], parts[1]);
        let keys = self.keys.lock().unwrap();
        let Some((key, status)) = keys.get(id).copied() else {
            return Err(XksFault::Proxy {
                status: 404,
                name: "KeyNotFoundException".into(),
            });
        };
        let cipher = kms_crypto::AesGcmKey::new(&key).unwrap();
        match op {
            "metadata" => Ok(json!({"keySpec": "AES_256", "keyUsage": ["ENCRYPT", "DECRYPT"], "keyStatus": status}).to_string().into_bytes()),
            _ if status != "ENABLED" => Err(XksFault::Proxy { status: 400, name: "InvalidStateException".into() }),
            "encrypt" => {
                let aad = unb64(&req["additionalAuthenticatedData"]);
                let (iv, ct) = cipher.seal(&aad, &unb64(&req["plaintext"])).unwrap();
                let (c, tag) = ct.split_at(ct.len() - 16);
                let e = super::client::Encrypted { ciphertext: c.to_vec(), iv: iv.to_vec(), tag: tag.to_vec(), metadata: vec![] };
                Ok(json!({"ciphertext": b64(c), "initializationVector": b64(&iv), "authenticationTag": b64(tag),
                    "ciphertextDataIntegrityValue": b64(&super::client::cdiv_of(&aad, &e))}).to_string().into_bytes())
            }
            "decrypt" => {
                let mut ct = unb64(&req["ciphertext"]);
                ct.extend(unb64(&req["authenticationTag"]));
                match cipher.open(&unb64(&req["initializationVector"]), &unb64(&req["additionalAuthenticatedData"]), &ct) {
                    Ok(pt) => Ok(json!({"plaintext": b64(&pt)}).to_string().into_bytes()),
                    Err(_) => Err(XksFault::Proxy { status: 400, name: "InvalidCiphertextException".into() }),
                }
            }
            _ => Err(XksFault::Proxy { status: 404, name: "InvalidUriPathException".into() }),
        }
    }
}

struct Transport(Arc<FakeProxy>);

impl XksTransport for Transport {
    fn call<'a>(
        &'a self,
        _t: &'a XksTarget,
        suffix: &'a str,
        body: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, XksFault>> + Send + 'a>> {
        Box::pin(async move { self.0.answer(suffix, &body) })
    }
}

fn setup() -> (Service, Arc<FakeProxy>, Caller) {
    let proxy = Arc::new(FakeProxy::default());
    proxy
        .keys
        .lock()
        .unwrap()
        .insert("ext-1".into(), ([1; 32], "ENABLED"));
    proxy
        .keys
        .lock()
        .unwrap()
        .insert("ext-2".into(), ([2; 32], "ENABLED"));
    proxy
        .keys
        .lock()
        .unwrap()
        .insert("ext-off".into(), ([3; 32], "DISABLED"));
    let root = Arc::new(kms_crypto::RootKey::from_bytes(&[4u8; 32]).unwrap());
    let svc = Service::new(
        Arc::new(MemStore::default()),
        root,
        Arc::new(ManualClock::default()),
    );
    svc.enable_xks(Arc::new(Transport(proxy.clone())));
    let caller = Caller {
        account: "111122223333".into(),
        region: "us-east-1".into(),
        principal_arn: "arn:aws:iam::111122223333:user/alice".into(),
        user_id: "AIDA".into(),
        access_key_id: "AKIA".into(),
        source_ip: None,
        request_id: "req-1".into(),
        operation: String::new(),
        resources: Default::default(),
        skip_authorization: true,
        ..Default::default()
    };
    (svc, proxy, caller)
}

async fn kms(svc: &Service, c: &Caller, op: &str, body: Value) -> Result<Value, KmsError> {
    let out = svc.dispatch(c, op, body.to_string().as_bytes()).await?;
    Ok(serde_json::from_slice(&out).unwrap_or(Value::Null))
}

fn store_body(name: &str, path: &str) -> Value {
    json!({
        "CustomKeyStoreName": name, "CustomKeyStoreType": "EXTERNAL_KEY_STORE", "XksProxyConnectivity": "PUBLIC_ENDPOINT",
        "XksProxyUriEndpoint": "https://xks.example.com", "XksProxyUriPath": path,
        "XksProxyAuthenticationCredential": {"AccessKeyId": "ABCDEFGHIJKLMNOPQRST", "RawSecretAccessKey": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}
    })
}

#[tokio::test]
async fn create_connect_and_double_encryption() {
    let (svc, proxy, c) = setup();
    let id = kms(
        &svc,
        &c,
        "CreateCustomKeyStore",
        store_body("xks", "/kms/xks/v1"),
    )
    .await
    .unwrap()["CustomKeyStoreId"]
        .as_str()
        .unwrap()
        .to_owned();
    let err = kms(
        &svc,
        &c,
        "CreateCustomKeyStore",
        store_body("xks2", "/kms/xks/v1"),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::XksProxyUriInUseException);
    let d = kms(
        &svc,
        &c,
        "DescribeCustomKeyStores",
        json!({"CustomKeyStoreId": id}),
    )
    .await
    .unwrap();
    let cfg = &d["CustomKeyStores"][0]["XksProxyConfiguration"];
    assert_eq!(cfg["AccessKeyId"], "ABCDEFGHIJKLMNOPQRST");
    assert!(
        !d.to_string().contains("c2VjcmV0"),
        "the secret is never shown"
    );
    let err = kms(
        &svc,
        &c,
        "CreateKey",
        json!({"Origin": "EXTERNAL_KEY_STORE", "CustomKeyStoreId": id, "XksKeyId": "ext-1"}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::CustomKeyStoreInvalidStateException);
    kms(
        &svc,
        &c,
        "ConnectCustomKeyStore",
        json!({"CustomKeyStoreId": id}),
    )
    .await
    .unwrap();

    for (xks_key, code) in [
        ("nope", ErrorCode::XksKeyNotFoundException),
        ("ext-off", ErrorCode::XksKeyInvalidConfigurationException),
    ] {
        let err = kms(
            &svc,
            &c,
            "CreateKey",
            json!({"Origin": "EXTERNAL_KEY_STORE", "CustomKeyStoreId": id, "XksKeyId": xks_key}),
        )
        .await
        .unwrap_err();
        assert_eq!(err.code, code);
    }
    let k = kms(
        &svc,
        &c,
        "CreateKey",
        json!({"Origin": "EXTERNAL_KEY_STORE", "CustomKeyStoreId": id, "XksKeyId": "ext-1"}),
    )
    .await
    .unwrap();
    assert_eq!(k["KeyMetadata"]["XksKeyConfiguration"]["Id"], "ext-1");
    assert_eq!(k["KeyMetadata"]["Origin"], "EXTERNAL_KEY_STORE");
    let key = k["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    let err = kms(
        &svc,
        &c,
        "CreateKey",
        json!({"Origin": "EXTERNAL_KEY_STORE", "CustomKeyStoreId": id, "XksKeyId": "ext-1"}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::XksKeyAlreadyInUseException);

    let ct = kms(
        &svc,
        &c,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": b64(b"double"), "EncryptionContext": {"t": "1"}}),
    )
    .await
    .unwrap();
    let meta = proxy.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(meta["kmsOperation"], "Encrypt");
    assert_eq!(
        meta["awsPrincipalArn"],
        "arn:aws:iam::111122223333:user/alice"
    );
    assert_eq!(meta["kmsRequestId"], "req-1");
    assert!(meta["kmsKeyArn"].as_str().unwrap().ends_with(&key));
    let pt = kms(
        &svc,
        &c,
        "Decrypt",
        json!({"CiphertextBlob": ct["CiphertextBlob"], "EncryptionContext": {"t": "1"}}),
    )
    .await
    .unwrap();
    assert_eq!(pt["Plaintext"], b64(b"double"));
    let err = kms(
        &svc,
        &c,
        "Decrypt",
        json!({"CiphertextBlob": ct["CiphertextBlob"]}),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.code,
        ErrorCode::InvalidCiphertextException,
        "the context is bound by kmsd's own layer"
    );

    // Neither side alone decrypts: with the proxy's key replaced, decryption fails.
    proxy
        .keys
        .lock()
        .unwrap()
        .insert("ext-1".into(), ([9; 32], "ENABLED"));
    let err = kms(
        &svc,
        &c,
        "Decrypt",
        json!({"CiphertextBlob": ct["CiphertextBlob"], "EncryptionContext": {"t": "1"}}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::KMSInvalidStateException);
    proxy
        .keys
        .lock()
        .unwrap()
        .insert("ext-1".into(), ([1; 32], "ENABLED"));

    // Proxy failures during crypto: KMSInvalidState naming the cause; a throttle is throttling.
    *proxy.fault.lock().unwrap() = Some(XksFault::Timeout);
    let err = kms(
        &svc,
        &c,
        "GenerateDataKey",
        json!({"KeyId": key, "KeySpec": "AES_256"}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::KMSInvalidStateException);
    assert!(err.message.contains("timed out"), "{}", err.message);
    *proxy.fault.lock().unwrap() = Some(XksFault::Proxy {
        status: 429,
        name: "ThrottlingException".into(),
    });
    let err = kms(
        &svc,
        &c,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": b64(b"x")}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::ThrottlingException);
    *proxy.fault.lock().unwrap() = None;

    // Unsupported for these keys.
    let err = kms(&svc, &c, "CreateKey", json!({"Origin": "EXTERNAL_KEY_STORE", "CustomKeyStoreId": id, "XksKeyId": "ext-2", "KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC"})).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::UnsupportedOperationException);
    let err = kms(
        &svc,
        &c,
        "GenerateRandom",
        json!({"NumberOfBytes": 8, "CustomKeyStoreId": id}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::UnsupportedOperationException);

    // Disconnected: Unavailable.
    kms(
        &svc,
        &c,
        "DisconnectCustomKeyStore",
        json!({"CustomKeyStoreId": id}),
    )
    .await
    .unwrap();
    let d = kms(&svc, &c, "DescribeKey", json!({"KeyId": key}))
        .await
        .unwrap();
    assert_eq!(d["KeyMetadata"]["KeyState"], "Unavailable");
}

#[tokio::test]
async fn creation_and_connection_errors() {
    let (svc, proxy, c) = setup();
    let cases = [
        (
            XksFault::Unreachable("refused".into()),
            ErrorCode::XksProxyUriUnreachableException,
            "XKS_PROXY_NOT_REACHABLE",
        ),
        (
            XksFault::Timeout,
            ErrorCode::XksProxyUriUnreachableException,
            "XKS_PROXY_TIMED_OUT",
        ),
        (
            XksFault::Tls("bad cert".into()),
            ErrorCode::XksProxyUriUnreachableException,
            "XKS_PROXY_INVALID_TLS_CONFIGURATION",
        ),
        (
            XksFault::Proxy {
                status: 401,
                name: "AuthenticationFailedException".into(),
            },
            ErrorCode::XksProxyIncorrectAuthenticationCredentialException,
            "INVALID_CREDENTIALS",
        ),
        (
            XksFault::Proxy {
                status: 404,
                name: "InvalidUriPathException".into(),
            },
            ErrorCode::XksProxyInvalidConfigurationException,
            "XKS_PROXY_INVALID_CONFIGURATION",
        ),
        (
            XksFault::Proxy {
                status: 403,
                name: "AccessDeniedException".into(),
            },
            ErrorCode::XksProxyInvalidResponseException,
            "XKS_PROXY_ACCESS_DENIED",
        ),
        (
            XksFault::InvalidResponse("junk".into()),
            ErrorCode::XksProxyInvalidResponseException,
            "XKS_PROXY_INVALID_RESPONSE",
        ),
        (
            XksFault::VpcServiceNotFound("svc".into()),
            ErrorCode::XksProxyVpcEndpointServiceNotFoundException,
            "XKS_VPC_ENDPOINT_SERVICE_NOT_FOUND",
        ),
        (
            XksFault::Proxy {
                status: 500,
                name: "InternalException".into(),
            },
            ErrorCode::XksProxyInvalidResponseException,
            "XKS_PROXY_INVALID_RESPONSE",
        ),
    ];
    let id = kms(
        &svc,
        &c,
        "CreateCustomKeyStore",
        store_body("ok", "/a/kms/xks/v1"),
    )
    .await
    .unwrap()["CustomKeyStoreId"]
        .as_str()
        .unwrap()
        .to_owned();
    for (i, (fault, create_code, connect_code)) in cases.into_iter().enumerate() {
        *proxy.fault.lock().unwrap() = Some(fault.clone());
        let err = kms(
            &svc,
            &c,
            "CreateCustomKeyStore",
            store_body(&format!("s{i}"), &format!("/p{i}/kms/xks/v1")),
        )
        .await
        .unwrap_err();
        assert_eq!(err.code, create_code, "{fault:?}");
        kms(
            &svc,
            &c,
            "ConnectCustomKeyStore",
            json!({"CustomKeyStoreId": id}),
        )
        .await
        .unwrap();
        let d = kms(
            &svc,
            &c,
            "DescribeCustomKeyStores",
            json!({"CustomKeyStoreId": id}),
        )
        .await
        .unwrap();
        assert_eq!(d["CustomKeyStores"][0]["ConnectionState"], "FAILED");
        assert_eq!(
            d["CustomKeyStores"][0]["ConnectionErrorCode"], connect_code,
            "{fault:?}"
        );
        kms(
            &svc,
            &c,
            "DisconnectCustomKeyStore",
            json!({"CustomKeyStoreId": id}),
        )
        .await
        .unwrap();
    }
    *proxy.fault.lock().unwrap() = None;
    // Credential rotation while connected; endpoint changes need a disconnect.
    kms(
        &svc,
        &c,
        "ConnectCustomKeyStore",
        json!({"CustomKeyStoreId": id}),
    )
    .await
    .unwrap();
    kms(&svc, &c, "UpdateCustomKeyStore", json!({"CustomKeyStoreId": id, "XksProxyAuthenticationCredential": {"AccessKeyId": "ZYXWVUTSRQPONMLKJIHG", "RawSecretAccessKey": "bmV3c2VjcmV0bmV3c2VjcmV0bmV3c2VjcmV0bmV3c2VjcmV0bmV3"}})).await.unwrap();
    let err = kms(
        &svc,
        &c,
        "UpdateCustomKeyStore",
        json!({"CustomKeyStoreId": id, "XksProxyUriEndpoint": "https://other.example.com"}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::CustomKeyStoreInvalidStateException);
    let d = kms(
        &svc,
        &c,
        "DescribeCustomKeyStores",
        json!({"CustomKeyStoreId": id}),
    )
    .await
    .unwrap();
    assert_eq!(
        d["CustomKeyStores"][0]["XksProxyConfiguration"]["AccessKeyId"],
        "ZYXWVUTSRQPONMLKJIHG"
    );
    // VPC connectivity needs its service name, PUBLIC must not have one.
    let mut vpc = store_body("vpc", "/v/kms/xks/v1");
    vpc["XksProxyConnectivity"] = json!("VPC_ENDPOINT_SERVICE");
    assert_eq!(
        kms(&svc, &c, "CreateCustomKeyStore", vpc)
            .await
            .unwrap_err()
            .code,
        ErrorCode::ValidationException
    );
}

/// Periodic health checks: a connected store whose proxy stops answering turns unhealthy after
/// the threshold, stays CONNECTED (as in AWS), and is healthy again at the first passing check.
#[tokio::test]
async fn periodic_health_checks_track_connected_proxies() {
    let (svc, proxy, c) = setup();
    let id = kms(
        &svc,
        &c,
        "CreateCustomKeyStore",
        store_body("xks", "/kms/xks/v1"),
    )
    .await
    .unwrap()["CustomKeyStoreId"]
        .as_str()
        .unwrap()
        .to_owned();
    // Not connected: nothing to check.
    svc.check_xks_proxy(&id, 2).await;
    assert!(svc.xks_proxy_health().is_empty());
    assert!(svc.connected_external_key_stores().is_empty());
    kms(
        &svc,
        &c,
        "ConnectCustomKeyStore",
        json!({"CustomKeyStoreId": id}),
    )
    .await
    .unwrap();
    assert_eq!(svc.connected_external_key_stores(), vec![id.clone()]);
    // Connect's own health check is the first report.
    let report = svc.xks_proxy_health()[0].clone();
    assert!(report.healthy);
    assert_eq!(report.last_answer.unwrap().ekm_health, vec!["ACTIVE"]);

    svc.check_xks_proxy(&id, 2).await;
    let last = proxy.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last["kmsOperation"], "KmsHealthCheck");
    assert!(last["kmsRequestId"].as_str().is_some_and(|r| !r.is_empty()));

    *proxy.fault.lock().unwrap() = Some(XksFault::Timeout);
    svc.check_xks_proxy(&id, 2).await;
    assert!(
        svc.xks_proxy_health()[0].healthy,
        "one failure is below the threshold"
    );
    svc.check_xks_proxy(&id, 2).await;
    let report = svc.xks_proxy_health()[0].clone();
    assert!(!report.healthy);
    assert_eq!(report.consecutive_failures, 2);
    assert_eq!(
        report.last_error_code.as_deref(),
        Some("XKS_PROXY_TIMED_OUT")
    );
    let d = kms(
        &svc,
        &c,
        "DescribeCustomKeyStores",
        json!({"CustomKeyStoreId": id}),
    )
    .await
    .unwrap();
    assert_eq!(d["CustomKeyStores"][0]["ConnectionState"], "CONNECTED");

    // Answering again, but with every key manager UNAVAILABLE: still failing.
    *proxy.fault.lock().unwrap() = None;
    *proxy.ekm_status.lock().unwrap() = Some("UNAVAILABLE");
    svc.check_xks_proxy(&id, 2).await;
    let report = svc.xks_proxy_health()[0].clone();
    assert!(!report.healthy);
    assert_eq!(
        report.last_error_code.as_deref(),
        Some("XKS_PROXY_NOT_REACHABLE")
    );
    assert_eq!(report.last_answer.unwrap().ekm_health, vec!["UNAVAILABLE"]);

    // Recovers by itself at the first passing check.
    *proxy.ekm_status.lock().unwrap() = Some("DEGRADED");
    svc.check_xks_proxy(&id, 2).await;
    let report = svc.xks_proxy_health()[0].clone();
    assert!(report.healthy);
    assert_eq!(report.consecutive_failures, 0);
    assert_eq!(report.last_error, None);

    // Disconnected: forgotten, and no longer checked.
    kms(
        &svc,
        &c,
        "DisconnectCustomKeyStore",
        json!({"CustomKeyStoreId": id}),
    )
    .await
    .unwrap();
    assert!(svc.xks_proxy_health().is_empty());
    let calls = proxy.seen.lock().unwrap().len();
    svc.check_xks_proxy(&id, 2).await;
    assert_eq!(proxy.seen.lock().unwrap().len(), calls);
}

/// A second node on the same store follows the first's connect, proxy path change and
/// disconnect of an external key store (its own proxy target, built from the record).
#[tokio::test]
async fn a_second_node_follows_the_store_record() {
    let (a, proxy, c) = setup();
    let root = Arc::new(kms_crypto::RootKey::from_bytes(&[4u8; 32]).unwrap());
    let b = Service::new(a.store().clone(), root, Arc::new(ManualClock::default()));
    b.enable_xks(Arc::new(Transport(proxy)));
    let id = kms(
        &a,
        &c,
        "CreateCustomKeyStore",
        store_body("xks", "/kms/xks/v1"),
    )
    .await
    .unwrap()["CustomKeyStoreId"]
        .as_str()
        .unwrap()
        .to_owned();
    let on = |op: &'static str, extra: Value| {
        let mut body = json!({ "CustomKeyStoreId": id });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        kms(&a, &c, op, body)
    };
    let path_on_b = || async {
        b.sync_changes_async().await.unwrap();
        b.connected_xks_target(&id).ok().map(|t| t.uri_path.clone())
    };
    assert_eq!(path_on_b().await, None);
    on("ConnectCustomKeyStore", json!({})).await.unwrap();
    assert_eq!(path_on_b().await.as_deref(), Some("/kms/xks/v1"));
    on(
        "UpdateCustomKeyStore",
        json!({"XksProxyUriPath": "/p2/kms/xks/v1"}),
    )
    .await
    .unwrap();
    assert_eq!(path_on_b().await.as_deref(), Some("/p2/kms/xks/v1"));
    on("DisconnectCustomKeyStore", json!({})).await.unwrap();
    assert_eq!(path_on_b().await, None);
}
