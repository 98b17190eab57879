//! An external key store end to end: kmsd <-> our xks-proxy over TLS on loopback (the proxy's
//! keys in SoftHSM2): create, connect, keys with double encryption, and the failures the issue
//! names: wrong credentials, a proxy that never answers, the kill switch, a key disabled in the
//! HSM, the proxy down.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{
    ConnectionStateType, OriginType, XksProxyAuthenticationCredentialType, XksProxyConnectivityType,
};
use common::Server;
use xks_proxy::testkit::{self, TestProxy, TestProxyOptions};

fn credential(akid: &str, secret: &str) -> XksProxyAuthenticationCredentialType {
    XksProxyAuthenticationCredentialType::builder()
        .access_key_id(akid)
        .raw_secret_access_key(secret)
        .build()
        .unwrap()
}

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

    // A key disabled in the HSM: operations fail until it is enabled again.
    proxy.key_command("disable-key", "key-1").unwrap();
    let err = decrypt().await.unwrap_err();
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
