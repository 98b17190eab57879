//! Conformance of the real `xks-proxy` binary with the XKS Proxy API (spec 1.0.3) over TLS,
//! in front of a private SoftHSM2 token.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use common::{metadata, Client, Signer};
use serde_json::{json, Value};
use xks_proxy::testkit::{StoreSpec, TestProxy, TestProxyOptions, TEST_URI_PATH};

const BIN: &str = env!("CARGO_BIN_EXE_xks-proxy");

fn path(rest: &str) -> String {
    format!("{TEST_URI_PATH}/{rest}")
}

fn b64(v: &Value, name: &str) -> Vec<u8> {
    B64.decode(
        v[name]
            .as_str()
            .unwrap_or_else(|| panic!("{name} missing in {v}")),
    )
    .unwrap()
}

async fn encrypt(c: &Client, key: &str, pt: &[u8], aad: Option<&[u8]>, cdiv: bool) -> Value {
    let r = encrypt_response(c, key, pt, aad, cdiv).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/json"));
    r.json()
}

async fn encrypt_response(
    c: &Client,
    key: &str,
    pt: &[u8],
    aad: Option<&[u8]>,
    cdiv: bool,
) -> common::Resp {
    let mut body = json!({
        "requestMetadata": metadata("Encrypt"),
        "plaintext": B64.encode(pt),
        "encryptionAlgorithm": "AES_GCM",
    });
    if let Some(a) = aad {
        body["additionalAuthenticatedData"] = json!(B64.encode(a));
    }
    if cdiv {
        body["ciphertextDataIntegrityValueAlgorithm"] = json!("SHA_256");
    }
    c.xks(&path(&format!("keys/{key}/encrypt")), &body).await
}

fn decrypt_body(enc: &Value, aad: Option<&[u8]>) -> Value {
    let mut body = json!({
        "requestMetadata": metadata("Decrypt"),
        "ciphertext": enc["ciphertext"],
        "encryptionAlgorithm": "AES_GCM",
        "initializationVector": enc["initializationVector"],
        "authenticationTag": enc["authenticationTag"],
    });
    if let Some(m) = enc.get("ciphertextMetadata") {
        body["ciphertextMetadata"] = m.clone();
    }
    if let Some(a) = aad {
        body["additionalAuthenticatedData"] = json!(B64.encode(a));
    }
    body
}

async fn decrypt(c: &Client, key: &str, body: &Value) -> common::Resp {
    c.xks(&path(&format!("keys/{key}/decrypt")), body).await
}

async fn key_metadata(c: &Client, key: &str) -> common::Resp {
    c.xks(
        &path(&format!("keys/{key}/metadata")),
        &json!({"requestMetadata": metadata("CreateKey")}),
    )
    .await
}

fn assert_error(r: &common::Resp, status: u16, name: &str) {
    assert_eq!(
        (r.status, r.error_name().as_str()),
        (status, name),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let msg = r.json()["errorMessage"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        msg.len() < 512 && msg.bytes().all(|b| (0x20..=0x7e).contains(&b)),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    let mut opts = TestProxyOptions::new(&["foo", "bar", "ruled", "late"]);
    opts.create_keys = vec!["foo".into(), "bar".into(), "ruled".into()];
    opts.stores[0].extra_toml = r#"
[[key_store.rules]]
name = "alice-crypto"
keys = ["ruled"]
principals = ["arn:aws:iam::123456789012:user/Alice"]
operations = ["Encrypt", "Decrypt", "GenerateDataKey", "ReEncrypt"]
"#
    .into();
    let mut proxy = TestProxy::start(Path::new(BIN), opts).unwrap();
    let c = Client::new(&proxy, None);

    // Load-balancer ping.
    let r = c.raw("GET", "/ping", &[], b"").await.unwrap();
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, &b"pong from xks-proxy"[..])
    );

    // Health (deep check on the dedicated test key).
    let r = c
        .xks(
            &path("health"),
            &json!({"requestMetadata": {"kmsRequestId": "r-1", "kmsOperation": "CreateCustomKeyStore"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let h = r.json();
    assert!(h["xksProxyFleetSize"].as_u64().unwrap() > 0);
    for m in ["xksProxyVendor", "xksProxyModel", "ekmVendor"] {
        assert!(!h[m].as_str().unwrap().is_empty(), "{m}: {h}");
    }
    let fleet = h["ekmFleetDetails"].as_array().unwrap();
    assert!((1..=10).contains(&fleet.len()));
    assert_eq!(fleet[0]["healthStatus"], "ACTIVE", "{h}");
    assert!(fleet[0]["id"].is_string() && fleet[0]["model"].is_string());

    // GetKeyMetadata on an enabled key.
    let r = key_metadata(&c, "foo").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"keySpec": "AES_256", "keyUsage": ["ENCRYPT", "DECRYPT"], "keyStatus": "ENABLED"})
    );

    // Disabling in the HSM from another process is seen at once; crypto is refused.
    let out = proxy.key_command("disable-key", "bar").unwrap();
    assert!(out.contains("disabled"), "{out}");
    let r = key_metadata(&c, "bar").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["keyStatus"], "DISABLED");
    let r = c
        .xks(
            &path("keys/bar/encrypt"),
            &json!({"requestMetadata": metadata("Encrypt"), "plaintext": "AAAA", "encryptionAlgorithm": "AES_GCM"}),
        )
        .await;
    assert_error(&r, 400, "InvalidStateException");
    proxy.key_command("enable-key", "bar").unwrap();
    assert_eq!(key_metadata(&c, "bar").await.json()["keyStatus"], "ENABLED");
    let status = proxy.key_command("key-status", "bar").unwrap();
    assert!(
        status.contains("ENABLED") && status.contains("AES-256"),
        "{status}"
    );

    // A key created while the proxy runs is found.
    assert_error(&key_metadata(&c, "late").await, 404, "KeyNotFoundException");
    proxy.key_command("create-key", "late").unwrap();
    assert_eq!(key_metadata(&c, "late").await.status, 200);
    assert!(
        proxy.key_command("create-key", "late").is_err(),
        "duplicate create"
    );

    // Round trips: no AAD, AAD, CDIV.
    let enc = encrypt(&c, "foo", b"Hello World!", None, false).await;
    assert_eq!(b64(&enc, "ciphertext").len(), 12);
    assert_eq!(b64(&enc, "initializationVector").len(), 12);
    assert_eq!(b64(&enc, "authenticationTag").len(), 16);
    assert!(b64(&enc, "ciphertextMetadata").len() <= 20);
    assert!(enc.get("ciphertextDataIntegrityValue").is_none());
    let r = decrypt(&c, "foo", &decrypt_body(&enc, None)).await;
    assert_eq!(r.status, 200);
    assert_eq!(b64(&r.json(), "plaintext"), b"Hello World!");

    let aad = b"project=nile,department=marketing";
    // The spec's example body: kmsViaService, an unknown metadata member, an unknown kmsOperation.
    let body = json!({
        "requestMetadata": {
            "awsPrincipalArn": "arn:aws:iam::123456789012:user/Alice",
            "kmsKeyArn": "arn:aws:kms:us-east-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "kmsOperation": "SomeFutureOperation",
            "kmsRequestId": "4112f4d6-db54-4af4-ae30-c55a22a8dfae",
            "kmsViaService": "ebs",
            "someFutureField": {"x": 1},
        },
        "additionalAuthenticatedData": "cHJvamVjdD1uaWxlLGRlcGFydG1lbnQ9bWFya2V0aW5n",
        "plaintext": "SGVsbG8gV29ybGQh",
        "encryptionAlgorithm": "AES_GCM",
        "ciphertextDataIntegrityValueAlgorithm": "SHA_256",
    });
    let r = c.xks(&path("keys/foo/encrypt"), &body).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let enc = r.json();
    let expected = xks_proxy::cipher::cdiv(
        aad,
        &b64(&enc, "ciphertextMetadata"),
        &b64(&enc, "initializationVector"),
        &b64(&enc, "ciphertext"),
        &b64(&enc, "authenticationTag"),
    );
    assert_eq!(b64(&enc, "ciphertextDataIntegrityValue"), expected);
    let r = decrypt(&c, "foo", &decrypt_body(&enc, Some(aad))).await;
    assert_eq!(b64(&r.json(), "plaintext"), b"Hello World!");

    // Tampering: wrong AAD, missing AAD, tag, metadata, IV, another key.
    assert_error(
        &decrypt(&c, "foo", &decrypt_body(&enc, Some(b"project=nile"))).await,
        400,
        "InvalidCiphertextException",
    );
    assert_error(
        &decrypt(&c, "foo", &decrypt_body(&enc, None)).await,
        400,
        "InvalidCiphertextException",
    );
    let mut bad = decrypt_body(&enc, Some(aad));
    let mut tag = b64(&enc, "authenticationTag");
    tag[0] ^= 1;
    bad["authenticationTag"] = json!(B64.encode(&tag));
    assert_error(
        &decrypt(&c, "foo", &bad).await,
        400,
        "InvalidCiphertextException",
    );
    let mut bad = decrypt_body(&enc, Some(aad));
    bad["ciphertextMetadata"] = json!(B64.encode([2u8]));
    assert_error(
        &decrypt(&c, "foo", &bad).await,
        400,
        "InvalidCiphertextException",
    );
    let mut bad = decrypt_body(&enc, Some(aad));
    bad.as_object_mut().unwrap().remove("ciphertextMetadata");
    assert_error(
        &decrypt(&c, "foo", &bad).await,
        400,
        "InvalidCiphertextException",
    );
    let mut bad = decrypt_body(&enc, Some(aad));
    bad["initializationVector"] = json!(B64.encode([0u8; 8]));
    assert_error(
        &decrypt(&c, "foo", &bad).await,
        400,
        "InvalidCiphertextException",
    );
    assert_error(
        &decrypt(&c, "bar", &decrypt_body(&enc, Some(aad))).await,
        400,
        "InvalidCiphertextException",
    );

    // Spec minimum sizes: 4300-byte plaintext, 8192-byte AAD.
    let big: Vec<u8> = (0..4300u32).map(|i| (i % 251) as u8).collect();
    let big_aad = vec![b'a'; 8192];
    let enc = encrypt(&c, "foo", &big, Some(&big_aad), true).await;
    assert_eq!(b64(&enc, "ciphertext").len(), 4300);
    let r = decrypt(&c, "foo", &decrypt_body(&enc, Some(&big_aad))).await;
    assert_eq!(r.status, 200);
    assert_eq!(b64(&r.json(), "plaintext"), big);

    // Unknown key.
    assert_error(&key_metadata(&c, "nope").await, 404, "KeyNotFoundException");
    let r = c
        .xks(
            &path("keys/nope/encrypt"),
            &json!({"requestMetadata": metadata("Encrypt"), "plaintext": "AAAA", "encryptionAlgorithm": "AES_GCM"}),
        )
        .await;
    assert_error(&r, 404, "KeyNotFoundException");

    // Authentication failures.
    let body = json!({"requestMetadata": metadata("CreateKey")}).to_string();
    let p = path("keys/foo/metadata");
    let wrong_secret = Signer::with(
        xks_proxy::testkit::TEST_ACCESS_KEY_ID,
        "wrongSecretwrongSecretwrongSecretwrongSecret",
    );
    assert_error(
        &c.signed(&p, body.as_bytes(), &wrong_secret).await,
        401,
        "AuthenticationFailedException",
    );
    let stale = Signer {
        skew_secs: -400,
        ..Default::default()
    };
    assert_error(
        &c.signed(&p, body.as_bytes(), &stale).await,
        401,
        "AuthenticationFailedException",
    );
    let future = Signer {
        skew_secs: 400,
        ..Default::default()
    };
    assert_error(
        &c.signed(&p, body.as_bytes(), &future).await,
        401,
        "AuthenticationFailedException",
    );
    let within = Signer {
        skew_secs: -200,
        ..Default::default()
    };
    assert_eq!(c.signed(&p, body.as_bytes(), &within).await.status, 200);
    let service = Signer {
        service: "kms".into(),
        ..Default::default()
    };
    assert_error(
        &c.signed(&p, body.as_bytes(), &service).await,
        401,
        "AuthenticationFailedException",
    );
    let region = Signer {
        region: "eu-west-1".into(),
        ..Default::default()
    };
    assert_error(
        &c.signed(&p, body.as_bytes(), &region).await,
        401,
        "AuthenticationFailedException",
    );
    let unknown = Signer::with("AKIAUNKNOWNKEY234567", xks_proxy::testkit::TEST_SECRET);
    assert_error(
        &c.signed(&p, body.as_bytes(), &unknown).await,
        401,
        "AuthenticationFailedException",
    );
    let r = c
        .raw(
            "POST",
            &p,
            &[("content-type".into(), "application/json".into())],
            body.as_bytes(),
        )
        .await
        .unwrap();
    assert_error(&r, 401, "AuthenticationFailedException");
    // Body changed after signing.
    let headers = c.sign_headers(&p, body.as_bytes(), &Signer::default());
    let other = json!({"requestMetadata": metadata("Other")}).to_string();
    let r = c.raw("POST", &p, &headers, other.as_bytes()).await.unwrap();
    assert_error(&r, 401, "AuthenticationFailedException");

    // Methods and paths.
    let r = c.raw("GET", &path("health"), &[], b"").await.unwrap();
    assert_eq!(r.status, 405);
    let r = c
        .raw("GET", &path("keys/foo/encrypt"), &[], b"")
        .await
        .unwrap();
    assert_eq!(r.status, 405);
    for bad_path in [
        path("keys/foo/sign"),
        path("keys/foo"),
        path("healthz"),
        "/other/kms/xks/v1/health".to_string(),
        "/kms/xks/v1/health".to_string(),
        "/".to_string(),
    ] {
        let r = c
            .xks(&bad_path, &json!({"requestMetadata": metadata("Encrypt")}))
            .await;
        assert_error(&r, 404, "InvalidUriPathException");
    }

    // Validation.
    let r = c
        .signed(&path("keys/foo/encrypt"), b"{not json", &Signer::default())
        .await;
    assert_error(&r, 400, "ValidationException");
    let r = c
        .xks(
            &path("keys/foo/encrypt"),
            &json!({"requestMetadata": metadata("Encrypt"), "plaintext": "AAAA"}),
        )
        .await;
    assert_error(&r, 400, "ValidationException");
    let r = c
        .xks(
            &path("keys/foo/encrypt"),
            &json!({"requestMetadata": metadata("Encrypt"), "plaintext": "AAAA", "encryptionAlgorithm": "RSA"}),
        )
        .await;
    assert_error(&r, 400, "ValidationException");
    let r = c
        .xks(
            &path("keys/foo/encrypt"),
            &json!({"requestMetadata": metadata("Encrypt"), "plaintext": "!!", "encryptionAlgorithm": "AES_GCM"}),
        )
        .await;
    assert_error(&r, 400, "ValidationException");
    let r = c
        .xks(
            &path("keys/foo/metadata"),
            &json!({"requestMetadata": {"kmsRequestId": "x"}}),
        )
        .await;
    assert_error(&r, 400, "ValidationException");

    // Secondary authorisation.
    let enc = encrypt(&c, "ruled", b"for alice", None, false).await;
    let mut as_bob = decrypt_body(&enc, None);
    as_bob["requestMetadata"]["awsPrincipalArn"] = json!("arn:aws:iam::123456789012:user/Bob");
    assert_error(
        &decrypt(&c, "ruled", &as_bob).await,
        403,
        "AccessDeniedException",
    );
    assert_eq!(
        decrypt(&c, "ruled", &decrypt_body(&enc, None)).await.status,
        200
    );
    // CreateKey is not among the rule's operations.
    assert_error(
        &key_metadata(&c, "ruled").await,
        403,
        "AccessDeniedException",
    );
    // Health is exempt; other keys have no rules.
    assert_eq!(key_metadata(&c, "foo").await.status, 200);

    // Audit trail: written, verifiable, without plaintext.
    proxy.stop().unwrap();
    let audit = proxy.audit_dir();
    let public = std::fs::read(proxy.dir().join("xks-proxy-audit-key.pub.der")).unwrap();
    let report = kms_audit::verify_dir(&audit, Some(&public)).unwrap();
    assert!(report.records >= 40, "{report:?}");
    assert!(report.open_file.is_none(), "{report:?}");
    let mut all = String::new();
    for e in std::fs::read_dir(&audit).unwrap() {
        all.push_str(&std::fs::read_to_string(e.unwrap().path()).unwrap());
    }
    assert!(all.contains("4112f4d6-db54-4af4-ae30-c55a22a8dfae"));
    assert!(all.contains("\"errorName\":\"AccessDeniedException\""));
    for secret in [
        "SGVsbG8gV29ybGQh",
        "Hello World!",
        "Zm9yIGFsaWNl",
        xks_proxy::testkit::TEST_SECRET,
    ] {
        assert!(!all.contains(secret), "audit contains {secret}");
    }
    let log = proxy.log_lines().join("\n");
    assert!(
        log.contains("kms_request_id=4112f4d6-db54-4af4-ae30-c55a22a8dfae"),
        "{log}"
    );
    for secret in [
        "SGVsbG8gV29ybGQh",
        "Hello World!",
        xks_proxy::testkit::TEST_SECRET,
        xks_proxy::testkit::TEST_USER_PIN,
    ] {
        assert!(!log.contains(secret), "log contains {secret}");
    }
    // The CLI verifies it too.
    let out = std::process::Command::new(BIN)
        .args(["audit-verify", "--config"])
        .arg(&proxy.config_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_switch_and_credential_rotation() {
    const AKID_B: &str = "AKIAROTATEDKEYBBBBB2";
    const SECRET_B: &str = "rotatedSecretBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
    let opts = TestProxyOptions::new(&["k1"]);
    let mut proxy = TestProxy::start(Path::new(BIN), opts.clone()).unwrap();
    let c = Client::new(&proxy, None);
    let a = Signer::default();
    let b = Signer::with(AKID_B, SECRET_B);
    let enc_body = json!({"requestMetadata": metadata("Encrypt"), "plaintext": "AAAA", "encryptionAlgorithm": "AES_GCM"})
        .to_string();
    let md_body = json!({"requestMetadata": metadata("CreateKey")}).to_string();
    let health_body =
        json!({"requestMetadata": {"kmsRequestId": "h", "kmsOperation": "KmsHealthCheck"}})
            .to_string();
    let enc_p = path("keys/k1/encrypt");
    let md_p = path("keys/k1/metadata");
    assert_eq!(c.signed(&enc_p, enc_body.as_bytes(), &a).await.status, 200);
    assert_error(
        &c.signed(&md_p, md_body.as_bytes(), &b).await,
        401,
        "AuthenticationFailedException",
    );

    // Kill switch on + second credential added, by SIGHUP.
    let mut two = opts.clone();
    two.crypto_enabled = false;
    two.stores[0]
        .credentials
        .push((AKID_B.into(), SECRET_B.into()));
    proxy.reconfigure(two.clone()).unwrap();
    for s in [&a, &b] {
        assert_eq!(c.signed(&md_p, md_body.as_bytes(), s).await.status, 200);
        assert_error(
            &c.signed(&enc_p, enc_body.as_bytes(), s).await,
            400,
            "InvalidStateException",
        );
    }
    let r = c.signed(&path("health"), health_body.as_bytes(), &a).await;
    assert_eq!(r.status, 200);
    let dec = json!({"requestMetadata": metadata("Decrypt"), "ciphertext": "AAAA", "encryptionAlgorithm": "AES_GCM",
        "initializationVector": B64.encode([0u8; 12]), "authenticationTag": B64.encode([0u8; 16])}).to_string();
    assert_error(
        &c.signed(&path("keys/k1/decrypt"), dec.as_bytes(), &a).await,
        400,
        "InvalidStateException",
    );

    // Per-store kill switch.
    let mut store_off = two.clone();
    store_off.crypto_enabled = true;
    store_off.stores[0].crypto_enabled = false;
    proxy.reconfigure(store_off).unwrap();
    assert_error(
        &c.signed(&enc_p, enc_body.as_bytes(), &a).await,
        400,
        "InvalidStateException",
    );

    // Recovery, and the old credential retired.
    let mut only_b = opts.clone();
    only_b.stores[0].credentials = vec![(AKID_B.into(), SECRET_B.into())];
    proxy.reconfigure(only_b).unwrap();
    assert_eq!(c.signed(&enc_p, enc_body.as_bytes(), &b).await.status, 200);
    assert_error(
        &c.signed(&enc_p, enc_body.as_bytes(), &a).await,
        401,
        "AuthenticationFailedException",
    );

    // A broken configuration is refused; the one in force stays.
    std::fs::write(&proxy.config_path, "listen = ").unwrap();
    assert!(proxy.reload().is_err());
    assert_eq!(c.signed(&enc_p, enc_body.as_bytes(), &b).await.status, 200);
    proxy.stop().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls() {
    const KMS_CN: &str = "cks.kms.us-east-1.amazonaws.com";
    let mut opts = TestProxyOptions::new(&["m1"]);
    opts.client_cns = Some(vec![KMS_CN.into()]);
    opts.stores = vec![StoreSpec::new(&["m1"])];
    let mut proxy = TestProxy::start(Path::new(BIN), opts).unwrap();
    let (good_cert, good_key) = proxy.pki.client("kms", KMS_CN).unwrap();
    let (bad_cert, bad_key) = proxy.pki.client("other", "someone-else").unwrap();
    let body = json!({"requestMetadata": {"kmsRequestId": "h", "kmsOperation": "KmsHealthCheck"}});

    let good = Client::new(&proxy, Some((&good_cert, &good_key)));
    let r = good.xks(&path("health"), &body).await;
    assert_eq!(r.status, 200);

    for client in [
        Client::new(&proxy, None),
        Client::new(&proxy, Some((&bad_cert, &bad_key))),
    ] {
        let headers = client.sign_headers(
            &path("health"),
            body.to_string().as_bytes(),
            &Signer::default(),
        );
        let r = client
            .raw(
                "POST",
                &path("health"),
                &headers,
                body.to_string().as_bytes(),
            )
            .await;
        assert!(r.is_err(), "handshake should have been refused: {r:?}");
    }
    let log = proxy.log_lines().join("\n");
    assert!(log.contains("TLS handshake failed"), "{log}");

    // SIGHUP reloads the TLS settings too: now the other CN is accepted (for new connections).
    let mut opts = proxy.options.clone();
    opts.client_cns = Some(vec![KMS_CN.into(), "someone-else".into()]);
    proxy.reconfigure(opts).unwrap();
    let other = Client::new(&proxy, Some((&bad_cert, &bad_key)));
    assert_eq!(other.xks(&path("health"), &body).await.status, 200);
}

/// What kmsd's tests will do: find the binary through the testkit and start a proxy.
/// (`ensure_binary` would run a nested `cargo build`, which may relink the binary that the
/// other tests of this process are executing, so it is not exercised here.)
#[test]
fn testkit_locate_binary() {
    let bin = xks_proxy::testkit::locate_binary().unwrap();
    assert_eq!(
        bin.canonicalize().unwrap(),
        Path::new(BIN).canonicalize().unwrap()
    );
    let proxy = TestProxy::start(&bin, TestProxyOptions::new(&["kmsd-key"])).unwrap();
    assert!(proxy.endpoint().starts_with("https://localhost:"));
    assert_eq!(proxy.uri_path(), TEST_URI_PATH);
    assert!(proxy.ca_pem().is_file());
    let status = proxy.key_command("key-status", "kmsd-key").unwrap();
    assert!(status.contains("ENABLED"), "{status}");
}

/// Keys restricted to one usage or none, as AWS's test client checks them in its `-a` mode
/// (encrypt-only, decrypt-only, "impotent" keys), and how disabling differs from a usage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restricted_key_usage() {
    let keys = ["both", "encrypt_only", "decrypt_only", "impotent"];
    let proxy = TestProxy::start(Path::new(BIN), TestProxyOptions::new(&keys)).unwrap();
    let c = Client::new(&proxy, None);
    let aad: &[u8] = b"project=nile,department=marketing";
    let pt: &[u8] = b"plaintext\n";

    // A ciphertext under each key while it may still encrypt, then restrict the keys.
    let mut sealed = std::collections::HashMap::new();
    for k in keys {
        sealed.insert(k, encrypt(&c, k, pt, Some(aad), true).await);
    }
    for (k, usage) in [
        ("encrypt_only", "encrypt"),
        ("decrypt_only", "decrypt"),
        ("impotent", "none"),
    ] {
        proxy.set_key_usage(k, usage).unwrap();
    }

    // GetKeyMetadata reports the token key's usage; none of these keys is disabled.
    for (k, usage) in [
        ("both", json!(["ENCRYPT", "DECRYPT"])),
        ("encrypt_only", json!(["ENCRYPT"])),
        ("decrypt_only", json!(["DECRYPT"])),
        ("impotent", json!([])),
    ] {
        let r = key_metadata(&c, k).await;
        assert_eq!(r.status, 200, "{k}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(
            r.json(),
            json!({"keySpec": "AES_256", "keyUsage": usage, "keyStatus": "ENABLED"}),
            "{k}"
        );
    }

    // Encrypt-only: Encrypt succeeds (with and without AAD); Decrypt of its output, and
    // Encrypt with a CDIV (which needs a trial decryption), are InvalidKeyUsageException.
    for a in [None, Some(aad)] {
        let enc = encrypt(&c, "encrypt_only", pt, a, false).await;
        assert_error(
            &decrypt(&c, "encrypt_only", &decrypt_body(&enc, a)).await,
            400,
            "InvalidKeyUsageException",
        );
        assert_error(
            &encrypt_response(&c, "encrypt_only", pt, a, true).await,
            400,
            "InvalidKeyUsageException",
        );
    }
    assert_error(
        &decrypt(
            &c,
            "encrypt_only",
            &decrypt_body(&sealed["encrypt_only"], Some(aad)),
        )
        .await,
        400,
        "InvalidKeyUsageException",
    );

    // Decrypt-only and neither: every Encrypt is InvalidKeyUsageException.
    for k in ["decrypt_only", "impotent"] {
        for (a, cdiv) in [
            (Some(aad), false),
            (None, false),
            (Some(aad), true),
            (None, true),
        ] {
            assert_error(
                &encrypt_response(&c, k, pt, a, cdiv).await,
                400,
                "InvalidKeyUsageException",
            );
        }
    }
    // Decrypt-only decrypts; a key with neither usage does not.
    let r = decrypt(
        &c,
        "decrypt_only",
        &decrypt_body(&sealed["decrypt_only"], Some(aad)),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(b64(&r.json(), "plaintext"), pt);
    assert_error(
        &decrypt(
            &c,
            "impotent",
            &decrypt_body(&sealed["impotent"], Some(aad)),
        )
        .await,
        400,
        "InvalidKeyUsageException",
    );
    // The full key is unaffected.
    let r = decrypt(&c, "both", &decrypt_body(&sealed["both"], Some(aad))).await;
    assert_eq!(b64(&r.json(), "plaintext"), pt);

    // Disabling is not a usage: a disabled key keeps its usage, reports DISABLED and every
    // operation is InvalidStateException; enabling it restores exactly what it allowed.
    proxy.key_command("disable-key", "encrypt_only").unwrap();
    let status = proxy.key_command("key-status", "encrypt_only").unwrap();
    assert!(
        status.contains("DISABLED") && status.contains("encrypt=true, decrypt=false"),
        "{status}"
    );
    assert_eq!(
        key_metadata(&c, "encrypt_only").await.json(),
        json!({"keySpec": "AES_256", "keyUsage": ["ENCRYPT"], "keyStatus": "DISABLED"})
    );
    assert_error(
        &encrypt_response(&c, "encrypt_only", pt, None, false).await,
        400,
        "InvalidStateException",
    );
    assert_error(
        &decrypt(
            &c,
            "encrypt_only",
            &decrypt_body(&sealed["encrypt_only"], Some(aad)),
        )
        .await,
        400,
        "InvalidStateException",
    );
    proxy.key_command("enable-key", "encrypt_only").unwrap();
    assert_eq!(
        key_metadata(&c, "encrypt_only").await.json(),
        json!({"keySpec": "AES_256", "keyUsage": ["ENCRYPT"], "keyStatus": "ENABLED"})
    );
    encrypt(&c, "encrypt_only", pt, None, false).await;

    // Usage given back: the key with neither usage works again.
    proxy.set_key_usage("impotent", "encrypt,decrypt").unwrap();
    let r = decrypt(
        &c,
        "impotent",
        &decrypt_body(&sealed["impotent"], Some(aad)),
    )
    .await;
    assert_eq!(b64(&r.json(), "plaintext"), pt);
}

/// `hsm.calls = "inline"`: the same answers with the HSM called on the request's worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_hsm_calls() {
    let mut opts = TestProxyOptions::new(&["foo"]);
    opts.hsm_toml = "calls = \"inline\"\n".into();
    let proxy = TestProxy::start(Path::new(BIN), opts).unwrap();
    let c = Client::new(&proxy, None);
    let aad: &[u8] = b"project=nile";
    for _ in 0..20 {
        let enc = encrypt(&c, "foo", b"inline plaintext", Some(aad), true).await;
        let r = decrypt(&c, "foo", &decrypt_body(&enc, Some(aad))).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(b64(&r.json(), "plaintext"), b"inline plaintext");
    }
    assert_eq!(key_metadata(&c, "foo").await.status, 200);
    assert_error(&key_metadata(&c, "nope").await, 404, "KeyNotFoundException");
}

/// Key states are remembered for `hsm.key_state_max_age_ms`: a disable made by another process
/// is not seen by Encrypt while the remembered state is young, GetKeyMetadata reads the token
/// and refreshes it, and a refusal is never decided on a remembered state (an enable is seen
/// at the next call).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_states_are_remembered_for_their_maximum_age() {
    let mut opts = TestProxyOptions::new(&["kept", "fresh", "cdiv"]);
    opts.hsm_toml = "key_state_max_age_ms = 60000\n".into();
    let proxy = TestProxy::start(Path::new(BIN), opts).unwrap();
    let c = Client::new(&proxy, None);
    let pt: &[u8] = b"remembered";
    let sealed = encrypt(&c, "kept", pt, None, true).await;

    // Disabled by another process: the state read by the Encrypt above still allows.
    proxy.key_command("disable-key", "kept").unwrap();
    encrypt(&c, "kept", pt, None, true).await;
    let r = decrypt(&c, "kept", &decrypt_body(&sealed, None)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    // GetKeyMetadata reads the token; the calls after it are judged on what it read.
    assert_eq!(
        key_metadata(&c, "kept").await.json()["keyStatus"],
        "DISABLED"
    );
    assert_error(
        &encrypt_response(&c, "kept", pt, None, true).await,
        400,
        "InvalidStateException",
    );
    assert_error(
        &decrypt(&c, "kept", &decrypt_body(&sealed, None)).await,
        400,
        "InvalidStateException",
    );

    // Enabled by another process: the remembered refusal is checked against the token at once.
    proxy.key_command("enable-key", "kept").unwrap();
    encrypt(&c, "kept", pt, None, true).await;

    // A usage taken away is refused by the token itself, and reported as the usage, at once.
    encrypt(&c, "fresh", pt, None, true).await;
    proxy.set_key_usage("fresh", "decrypt").unwrap();
    assert_error(
        &encrypt_response(&c, "fresh", pt, None, false).await,
        400,
        "InvalidKeyUsageException",
    );
    proxy.set_key_usage("fresh", "encrypt").unwrap();
    encrypt(&c, "fresh", pt, None, false).await;
    let sealed = encrypt(&c, "fresh", pt, None, false).await;
    proxy.set_key_usage("fresh", "encrypt,decrypt").unwrap();
    // (the remembered encrypt-only state refuses Decrypt, so the token is asked again)
    let r = decrypt(&c, "fresh", &decrypt_body(&sealed, None)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    // Decrypt taken away while the remembered state allows both: an Encrypt asking for the
    // integrity value encrypts, its trial decryption is refused by the token, and that is
    // reported as the missing usage (not as a key manager failure).
    encrypt(&c, "cdiv", pt, None, true).await;
    proxy.set_key_usage("cdiv", "encrypt").unwrap();
    assert_error(
        &encrypt_response(&c, "cdiv", pt, None, true).await,
        400,
        "InvalidKeyUsageException",
    );
}

/// `hsm.key_state_max_age_ms = 0`: every call reads the key's state from the token, so a
/// disable by another process is seen at the next call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_states_read_at_every_call_with_a_zero_maximum_age() {
    let mut opts = TestProxyOptions::new(&["k"]);
    opts.hsm_toml = "key_state_max_age_ms = 0\n".into();
    let proxy = TestProxy::start(Path::new(BIN), opts).unwrap();
    let c = Client::new(&proxy, None);
    encrypt(&c, "k", b"x", None, true).await;
    proxy.key_command("disable-key", "k").unwrap();
    assert_error(
        &encrypt_response(&c, "k", b"x", None, true).await,
        400,
        "InvalidStateException",
    );
}
