//! An external key store proxy for tests: our `xks-proxy` (testkit), kmsd's `--xks-config`
//! for it, and the key store made on it through the SDK.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use aws_sdk_kms::types::{
    ConnectionStateType, XksProxyAuthenticationCredentialType, XksProxyConnectivityType,
};
use xks_proxy::testkit::TestProxy;

/// An XKS proxy authentication credential.
pub fn credential(akid: &str, secret: &str) -> XksProxyAuthenticationCredentialType {
    XksProxyAuthenticationCredentialType::builder()
        .access_key_id(akid)
        .raw_secret_access_key(secret)
        .build()
        .unwrap()
}

/// `p` as a TOML string.
pub fn toml_path(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

/// Writes an xks config with `ca_bundle` plus `body`; returns its path.
pub fn write_xks_config(dir: &Path, name: &str, proxy: &TestProxy, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!("ca_bundle = {}\n{body}", toml_path(&proxy.ca_pem())),
    )
    .unwrap();
    path
}

/// CreateCustomKeyStore of an external key store on `proxy` at `endpoint`: its id.
pub async fn create_xks_store(
    kms: &aws_sdk_kms::Client,
    proxy: &TestProxy,
    name: &str,
    endpoint: &str,
) -> Result<
    String,
    aws_sdk_kms::error::SdkError<
        aws_sdk_kms::operation::create_custom_key_store::CreateCustomKeyStoreError,
    >,
> {
    let (akid, secret) = proxy.credential();
    kms.create_custom_key_store()
        .custom_key_store_name(name)
        .custom_key_store_type(aws_sdk_kms::types::CustomKeyStoreType::ExternalKeyStore)
        .xks_proxy_connectivity(XksProxyConnectivityType::PublicEndpoint)
        .xks_proxy_uri_endpoint(endpoint)
        .xks_proxy_uri_path(proxy.uri_path())
        .xks_proxy_authentication_credential(credential(&akid, &secret))
        .send()
        .await
        .map(|o| o.custom_key_store_id().unwrap().to_owned())
}

/// A new key in external key store `store` backed by the proxy's key `xks_key_id`: its id.
pub async fn create_key(kms: &aws_sdk_kms::Client, store: &str, xks_key_id: &str) -> String {
    let key = kms
        .create_key()
        .origin(aws_sdk_kms::types::OriginType::ExternalKeyStore)
        .custom_key_store_id(store)
        .xks_key_id(xks_key_id);
    crate::common::created_key_id(key.send().await.unwrap())
}

/// (ConnectionState, ConnectionErrorCode) of a key store.
pub async fn store_state(
    kms: &aws_sdk_kms::Client,
    store: &str,
) -> (ConnectionStateType, Option<String>) {
    let d = kms
        .describe_custom_key_stores()
        .custom_key_store_id(store)
        .send()
        .await
        .unwrap();
    let e = &d.custom_key_stores()[0];
    (
        e.connection_state().unwrap().clone(),
        e.connection_error_code().map(|c| c.as_str().to_owned()),
    )
}
