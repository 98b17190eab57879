//! An external key store end to end: kmsd <-> our xks-proxy over TLS on loopback (the proxy's
//! keys in SoftHSM2): create, connect, keys with double encryption, and the failures the issue
//! names: wrong credentials, a proxy that never answers, the kill switch, a key disabled in the
//! HSM, the proxy down; mutual TLS (client certificates global and per endpoint, missing or
//! refused); periodic health checks of a proxy that stops answering and comes back; the `aws`
//! CLI v1 with `cli_follow_urlparam = false`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/xks_lab.rs"]
mod xks_lab;

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{
    ConnectionStateType, OriginType, XksProxyAuthenticationCredentialType, XksProxyConnectivityType,
};
use common::Server;
use std::path::Path;
use std::time::{Duration, Instant};
use xks_lab::{create_xks_store, credential, store_state, toml_path, write_xks_config};
use xks_proxy::testkit::{self, TestProxy, TestProxyOptions};

#[tokio::test]
async fn external_key_store_against_our_proxy() {
    let bin = testkit::ensure_binary().unwrap();
    let mut proxy = TestProxy::start(&bin, TestProxyOptions::new(&["key-1", "key-2"])).unwrap();
    // A listener that accepts connections and never answers: the slow proxy.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let xks_config = tmp.path().join("xks.toml");
    std::fs::write(
        &xks_config,
        format!(
            "ca_bundle = \"{}\"\ntimeout_ms = 250\n[[endpoint]]\nhost = \"localhost\"\naddress = \"{}\"\n[[endpoint]]\nhost = \"slow.example\"\naddress = \"{silent_addr}\"\n",
            proxy.ca_pem().display(),
            proxy.addr()
        ),
    )
    .unwrap();
    let server = Server::start(&[
        "--xks-config",
        xks_config.to_str().unwrap(),
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    let kms = server.client();
    let (akid, secret) = proxy.credential();

    // Wrong credentials, and a proxy that never answers, are refused at creation.
    let create =
        |name: &'static str, endpoint: &'static str, cred: XksProxyAuthenticationCredentialType| {
            kms.create_custom_key_store()
                .custom_key_store_name(name)
                .custom_key_store_type(aws_sdk_kms::types::CustomKeyStoreType::ExternalKeyStore)
                .xks_proxy_connectivity(XksProxyConnectivityType::PublicEndpoint)
                .xks_proxy_uri_endpoint(endpoint)
                .xks_proxy_uri_path(proxy.uri_path())
                .xks_proxy_authentication_credential(cred)
                .send()
        };
    let err = create(
        "bad",
        "https://localhost",
        credential(&akid, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
    )
    .await
    .unwrap_err();
    assert!(
        err.as_service_error()
            .unwrap()
            .is_xks_proxy_incorrect_authentication_credential_exception(),
        "{err:?}"
    );
    let err = create("slow", "https://slow.example", credential(&akid, &secret))
        .await
        .unwrap_err();
    assert!(
        err.as_service_error()
            .unwrap()
            .is_xks_proxy_uri_unreachable_exception(),
        "{err:?}"
    );

    let store = create("xks", "https://localhost", credential(&akid, &secret))
        .await
        .unwrap()
        .custom_key_store_id()
        .unwrap()
        .to_owned();
    kms.connect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    let d = kms
        .describe_custom_key_stores()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    let entry = &d.custom_key_stores()[0];
    assert_eq!(
        entry.connection_state(),
        Some(&ConnectionStateType::Connected)
    );
    assert_eq!(
        entry.xks_proxy_configuration().unwrap().access_key_id(),
        Some(akid.as_str())
    );
    // The admin listener reports the connection state.
    let admin = common::admin_addr(&server);
    let metrics = String::from_utf8(common::get(admin, "/metrics").await.body).unwrap();
    assert!(
        metrics.contains(&format!("kmsd_custom_key_store_connection_state{{custom_key_store_id=\"{store}\",custom_key_store_type=\"EXTERNAL_KEY_STORE\",state=\"CONNECTED\"}} 1")),
        "{metrics}"
    );
    let ready = common::get(admin, "/readyz").await.json();
    assert_eq!(ready["customKeyStores"][&store], "CONNECTED", "{ready}");

    let err = kms
        .create_key()
        .origin(OriginType::ExternalKeyStore)
        .custom_key_store_id(&store)
        .xks_key_id("nope")
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error()
            .unwrap()
            .is_xks_key_not_found_exception(),
        "{err:?}"
    );
    let key = kms
        .create_key()
        .origin(OriginType::ExternalKeyStore)
        .custom_key_store_id(&store)
        .xks_key_id("key-1")
        .send()
        .await
        .unwrap();
    let meta = key.key_metadata().unwrap();
    assert_eq!(meta.xks_key_configuration().unwrap().id(), Some("key-1"));
    let key_id = meta.key_id().to_owned();

    let ct = kms
        .encrypt()
        .key_id(&key_id)
        .plaintext(Blob::new(b"outside".to_vec()))
        .encryption_context("a", "b")
        .send()
        .await
        .unwrap();
    let blob = ct.ciphertext_blob().unwrap().clone();
    let decrypt = || {
        kms.decrypt()
            .ciphertext_blob(blob.clone())
            .encryption_context("a", "b")
            .send()
    };
    assert_eq!(
        decrypt().await.unwrap().plaintext().unwrap().as_ref(),
        b"outside"
    );
    let dk = kms
        .generate_data_key()
        .key_id(&key_id)
        .number_of_bytes(32)
        .send()
        .await
        .unwrap();
    assert!(dk.ciphertext_blob().is_some());
    let other = common::new_key_id(&kms).await;
    kms.re_encrypt()
        .ciphertext_blob(blob.clone())
        .source_encryption_context("a", "b")
        .destination_key_id(&other)
        .send()
        .await
        .unwrap();
    // The proxy saw requestMetadata with our operation names.
    assert!(
        proxy.log_lines().iter().any(|l| l.contains("ReEncrypt")),
        "{:?}",
        proxy.log_lines()
    );

    // The kill switch: crypto refused, metadata still visible, recovery after switching back.
    let mut off = TestProxyOptions::new(&["key-1", "key-2"]);
    off.crypto_enabled = false;
    off.create_keys.clear();
    proxy.reconfigure(off).unwrap();
    let err = decrypt().await.unwrap_err();
    assert!(
        err.as_service_error()
            .unwrap()
            .is_kms_invalid_state_exception(),
        "{err:?}"
    );
    kms.describe_key().key_id(&key_id).send().await.unwrap();
    let on = TestProxyOptions {
        create_keys: vec![],
        ..TestProxyOptions::new(&["key-1", "key-2"])
    };
    proxy.reconfigure(on).unwrap();
    decrypt().await.unwrap();

    // A key disabled in the HSM: operations fail (once the proxy's remembered key state, at
    // most `hsm.key_state_max_age_ms` = 1 s old, is read again) until it is enabled again.
    proxy.key_command("disable-key", "key-1").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let err = loop {
        match decrypt().await {
            Err(e) => break e,
            Ok(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await
            }
            Ok(_) => panic!("the disabled key still decrypts after 10 s"),
        }
    };
    assert!(
        err.as_service_error()
            .unwrap()
            .is_kms_invalid_state_exception(),
        "{err:?}"
    );
    proxy.key_command("enable-key", "key-1").unwrap();
    decrypt().await.unwrap();

    // The proxy down: KMSInvalidState naming the cause; reconnecting fails NOT_REACHABLE.
    proxy.stop().unwrap();
    let err = decrypt().await.unwrap_err();
    let e = err.as_service_error().unwrap();
    assert!(e.is_kms_invalid_state_exception(), "{err:?}");
    assert!(
        e.meta().message().unwrap_or_default().contains("reachable"),
        "{err:?}"
    );
    kms.disconnect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    kms.connect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    let d = kms
        .describe_custom_key_stores()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    assert_eq!(
        d.custom_key_stores()[0].connection_state(),
        Some(&ConnectionStateType::Failed)
    );
    assert_eq!(
        d.custom_key_stores()[0]
            .connection_error_code()
            .map(|c| c.as_str()),
        Some("XKS_PROXY_NOT_REACHABLE")
    );
    drop(silent);
}

/// Polls `/readyz` until the store's proxy health satisfies `want` (at most 30 s); returns it.
async fn wait_for_proxy_health(
    admin: std::net::SocketAddr,
    store: &str,
    want: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = common::get(admin, "/readyz").await.json();
        let health = ready["externalKeyStoreProxies"][store].clone();
        if want(&health) {
            return health;
        }
        assert!(
            Instant::now() < deadline,
            "proxy health never matched: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Mutual TLS: the proxy requires client certificates (CA + accepted CN). kmsd presents the
/// per-endpoint certificate over the global one; a certificate the proxy refuses, or none at
/// all, fails with XKS_PROXY_INVALID_TLS_CONFIGURATION and a message saying what to fix.
#[tokio::test]
async fn mutual_tls_to_the_proxy() {
    let bin = testkit::ensure_binary().unwrap();
    let mut opts = TestProxyOptions::new(&["key-1"]);
    opts.client_cns = Some(vec!["kms.example".into()]);
    let proxy = TestProxy::start(&bin, opts).unwrap();
    let (good_cert, good_key) = proxy.pki.client("kms-client", "kms.example").unwrap();
    let (bad_cert, bad_key) = proxy.pki.client("intruder", "intruder.example").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let addr = proxy.addr();

    // 1. Global certificate refused by the proxy (wrong CN); localhost has its own good one.
    let cfg = write_xks_config(
        tmp.path(),
        "per-endpoint.toml",
        &proxy,
        &format!(
            "client_cert = {}\nclient_key = {}\n[[endpoint]]\nhost = \"localhost\"\naddress = \"{addr}\"\nclient_cert = {}\nclient_key = {}\n[[endpoint]]\nhost = \"127.0.0.1\"\naddress = \"{addr}\"\n",
            toml_path(&bad_cert),
            toml_path(&bad_key),
            toml_path(&good_cert),
            toml_path(&good_key),
        ),
    );
    let mut server = Server::start_in(&data, &["--xks-config", cfg.to_str().unwrap()]);
    let kms = server.client();
    let store = create_xks_store(&kms, &proxy, "mtls", "https://localhost")
        .await
        .unwrap();
    kms.connect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    assert_eq!(
        store_state(&kms, &store).await.0,
        ConnectionStateType::Connected
    );
    let key_id = xks_lab::create_key(&kms, &store, "key-1").await;
    let blob = kms
        .encrypt()
        .key_id(&key_id)
        .plaintext(Blob::new(b"mutual".to_vec()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob()
        .unwrap()
        .clone();
    let decrypt = |kms: aws_sdk_kms::Client| {
        let blob = blob.clone();
        async move { kms.decrypt().ciphertext_blob(blob).send().await }
    };
    assert_eq!(
        decrypt(kms.clone())
            .await
            .unwrap()
            .plaintext()
            .unwrap()
            .as_ref(),
        b"mutual"
    );
    // The global certificate (used for 127.0.0.1) is refused by the proxy.
    let err = create_xks_store(&kms, &proxy, "intruder", "https://127.0.0.1")
        .await
        .unwrap_err();
    let e = err.as_service_error().unwrap();
    assert!(e.is_xks_proxy_uri_unreachable_exception(), "{err:?}");
    assert!(
        e.meta()
            .message()
            .unwrap_or_default()
            .contains("rejected kmsd's client certificate"),
        "{err:?}"
    );
    assert!(server.terminate());

    // 2. Only a global certificate, the good one: used for every endpoint.
    let cfg = write_xks_config(
        tmp.path(),
        "global.toml",
        &proxy,
        &format!(
            "client_cert = {}\nclient_key = {}\n[[endpoint]]\nhost = \"localhost\"\naddress = \"{addr}\"\n",
            toml_path(&good_cert),
            toml_path(&good_key),
        ),
    );
    let mut server = Server::start_in(&data, &["--xks-config", cfg.to_str().unwrap()]);
    let kms = server.client();
    assert_eq!(
        decrypt(kms.clone())
            .await
            .unwrap()
            .plaintext()
            .unwrap()
            .as_ref(),
        b"mutual"
    );
    assert!(server.terminate());

    // 3. No client certificate at all: the store was CONNECTED and stays so, but its keys fail
    //    saying what is missing, the health checks notice, and reconnecting fails with
    //    XKS_PROXY_INVALID_TLS_CONFIGURATION.
    let cfg = write_xks_config(
        tmp.path(),
        "none.toml",
        &proxy,
        &format!("health_check_interval_secs = 1\n[[endpoint]]\nhost = \"localhost\"\naddress = \"{addr}\"\n"),
    );
    let server = Server::start_in(
        &data,
        &[
            "--xks-config",
            cfg.to_str().unwrap(),
            "--admin-listen",
            "127.0.0.1:0",
        ],
    );
    let kms = server.client();
    let err = decrypt(kms.clone()).await.unwrap_err();
    let e = err.as_service_error().unwrap();
    assert!(e.is_kms_invalid_state_exception(), "{err:?}");
    assert!(
        e.meta()
            .message()
            .unwrap_or_default()
            .contains("requires a client certificate"),
        "{err:?}"
    );
    let admin = common::admin_addr(&server);
    let health = wait_for_proxy_health(admin, &store, |h| h["healthy"] == false).await;
    assert_eq!(
        health["lastErrorCode"], "XKS_PROXY_INVALID_TLS_CONFIGURATION",
        "{health}"
    );
    kms.disconnect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    kms.connect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    assert_eq!(
        store_state(&kms, &store).await,
        (
            ConnectionStateType::Failed,
            Some("XKS_PROXY_INVALID_TLS_CONFIGURATION".to_owned())
        )
    );
}

/// Periodic health checks (every second here): a connected store whose proxy stops answering
/// is shown unhealthy in /readyz and /metrics while staying CONNECTED (as in AWS), and is
/// healthy again by itself once the proxy answers. Also: the `aws` CLI v1 creates the store
/// once `cli_follow_urlparam = false` stops it from fetching the endpoint URL.
#[tokio::test]
async fn health_checks_follow_a_proxy_that_stops_answering() {
    let bin = testkit::ensure_binary().unwrap();
    let proxy = TestProxy::start(&bin, TestProxyOptions::new(&["key-1"])).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_xks_config(
        tmp.path(),
        "xks.toml",
        &proxy,
        &format!(
            "health_check_interval_secs = 1\nunhealthy_after_failed_checks = 2\n[[endpoint]]\nhost = \"localhost\"\naddress = \"{}\"\n",
            proxy.addr()
        ),
    );
    let server = Server::start(&[
        "--xks-config",
        cfg.to_str().unwrap(),
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    let kms = server.client();
    let admin = common::admin_addr(&server);

    // The aws CLI v1 fetches https:// parameter values unless told not to.
    let (akid, secret) = proxy.credential();
    let aws_config = tmp.path().join("aws-config");
    let aws = |config: &Path, name: &str| {
        std::process::Command::new("aws")
            .args([
                "--endpoint-url",
                &server.endpoint(),
                "--region",
                "us-east-1",
                "--output",
                "json",
            ])
            .args([
                "kms",
                "create-custom-key-store",
                "--custom-key-store-name",
                name,
            ])
            .args(["--custom-key-store-type", "EXTERNAL_KEY_STORE"])
            .args(["--xks-proxy-connectivity", "PUBLIC_ENDPOINT"])
            .args(["--xks-proxy-uri-endpoint", "https://localhost"])
            .args(["--xks-proxy-uri-path", &proxy.uri_path()])
            .args([
                "--xks-proxy-authentication-credential",
                &format!("AccessKeyId={akid},RawSecretAccessKey={secret}"),
            ])
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                server.data_dir.join("admin-credentials"),
            )
            .env("AWS_CONFIG_FILE", config)
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .output()
            .expect("the `aws` CLI must be installed")
    };
    std::fs::write(&aws_config, "").unwrap();
    let out = aws(&aws_config, "cli");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Unable to retrieve https://localhost"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&aws_config, "[default]\ncli_follow_urlparam = false\n").unwrap();
    let out = aws(&aws_config, "cli");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let store = created["CustomKeyStoreId"].as_str().unwrap().to_owned();

    kms.connect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    let key_id = xks_lab::create_key(&kms, &store, "key-1").await;
    let blob = kms
        .encrypt()
        .key_id(&key_id)
        .plaintext(Blob::new(b"watched".to_vec()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob()
        .unwrap()
        .clone();
    let decrypt = || kms.decrypt().ciphertext_blob(blob.clone()).send();

    // Healthy, and the periodic checks reach the proxy as KmsHealthCheck.
    let health = wait_for_proxy_health(admin, &store, |h| h["healthy"] == true).await;
    assert_eq!(health["hsmCount"], 1, "{health}");
    proxy
        .wait_for_log("KmsHealthCheck", 0, Duration::from_secs(30))
        .unwrap();
    let metrics = String::from_utf8(common::get(admin, "/metrics").await.body).unwrap();
    for line in [
        format!("kmsd_xks_proxy_healthy{{custom_key_store_id=\"{store}\"}} 1"),
        format!("kmsd_xks_proxy_hsm_count{{custom_key_store_id=\"{store}\"}} 1"),
        format!("kmsd_xks_external_key_manager_states{{custom_key_store_id=\"{store}\",state=\"ACTIVE\"}} 1"),
        format!("kmsd_xks_proxy_request_duration_seconds_count{{custom_key_store_id=\"{store}\",xks_operation=\"Encrypt\"}} 1"),
    ] {
        assert!(metrics.contains(&line), "{line} missing in {metrics}");
    }

    // The proxy stops answering (SIGSTOP: connections are accepted, nothing comes back).
    let signal = |sig: &str| {
        assert!(std::process::Command::new("kill")
            .args([sig, &proxy.pid().to_string()])
            .status()
            .unwrap()
            .success());
    };
    signal("-STOP");
    let health = wait_for_proxy_health(admin, &store, |h| h["healthy"] == false).await;
    signal("-CONT");
    assert_eq!(health["lastErrorCode"], "XKS_PROXY_TIMED_OUT", "{health}");
    assert!(
        health["consecutiveFailedChecks"].as_u64().unwrap() >= 2,
        "{health}"
    );
    let metrics = String::from_utf8(common::get(admin, "/metrics").await.body).unwrap();
    assert!(
        metrics.contains(&format!(
            "kmsd_xks_proxy_requests_total{{custom_key_store_id=\"{store}\",xks_operation=\"GetHealthStatus\",error=\"TimedOut\"}}"
        )),
        "{metrics}"
    );
    // As in AWS, the store stays CONNECTED.
    assert_eq!(
        store_state(&kms, &store).await.0,
        ConnectionStateType::Connected
    );

    // Answering again: healthy by itself, keys usable.
    wait_for_proxy_health(admin, &store, |h| h["healthy"] == true).await;
    assert_eq!(
        decrypt().await.unwrap().plaintext().unwrap().as_ref(),
        b"watched"
    );
    let metrics = String::from_utf8(common::get(admin, "/metrics").await.body).unwrap();
    assert!(
        metrics.contains(&format!(
            "kmsd_xks_proxy_healthy{{custom_key_store_id=\"{store}\"}} 1"
        )),
        "{metrics}"
    );
}
