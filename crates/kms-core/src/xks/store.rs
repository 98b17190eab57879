//! External key store management: Create, Connect, Update with AWS's validation and errors.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use kms_types::*;

use super::client::{RequestMetadata, XksTarget};
use super::XksFault;
use crate::context::Caller;
use crate::hsm::keystore::KeyStoreRecord;
use crate::service::Service;

/// How an external key store reaches its proxy (stored with the key store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct XksStoreConfig {
    /// `PUBLIC_ENDPOINT` or `VPC_ENDPOINT_SERVICE`.
    pub connectivity: String,
    /// `https://host`.
    pub uri_endpoint: String,
    /// `/.../kms/xks/v1`.
    pub uri_path: String,
    /// VPC endpoint service name.
    pub vpc_endpoint_service_name: Option<String>,
    /// VPC endpoint service owner account.
    pub vpc_endpoint_service_owner: Option<String>,
    /// Credential access key id (shown by DescribeCustomKeyStores).
    pub access_key_id: String,
    /// Credential secret, sealed under the root key (hex); never shown.
    pub secret_sealed_hex: String,
}

fn err(code: ErrorCode, msg: impl Into<String>) -> KmsError {
    KmsError::new(code, msg)
}

fn internal<E: std::fmt::Display>(e: E) -> KmsError {
    tracing::error!(error = %e, "external key store error");
    KmsError::internal("kmsd hit an internal error")
}

fn secret_aad(store_id: &str) -> Vec<u8> {
    format!("kmsd-xks-credential|{store_id}").into_bytes()
}

/// What a proxy failure means for Create/UpdateCustomKeyStore.
pub(crate) fn store_error(f: &XksFault) -> KmsError {
    let msg = format!("The external key store proxy check failed: {f}");
    match f {
        XksFault::Unreachable(_) | XksFault::Timeout | XksFault::Tls(_) => {
            err(ErrorCode::XksProxyUriUnreachableException, msg)
        }
        XksFault::VpcServiceNotFound(_) => {
            err(ErrorCode::XksProxyVpcEndpointServiceNotFoundException, msg)
        }
        XksFault::Proxy { name, .. } => match name.as_str() {
            "AuthenticationFailedException" => err(
                ErrorCode::XksProxyIncorrectAuthenticationCredentialException,
                msg,
            ),
            "InvalidUriPathException" => err(ErrorCode::XksProxyInvalidConfigurationException, msg),
            "DependencyTimeoutException" | "ThrottlingException" => {
                err(ErrorCode::XksProxyUriUnreachableException, msg)
            }
            _ => err(ErrorCode::XksProxyInvalidResponseException, msg),
        },
        XksFault::InvalidResponse(_) => err(ErrorCode::XksProxyInvalidResponseException, msg),
    }
}

/// The ConnectionErrorCode for a failed health check at connect.
pub(crate) fn connection_error_code(f: &XksFault) -> &'static str {
    match f {
        XksFault::Unreachable(_) => "XKS_PROXY_NOT_REACHABLE",
        XksFault::Timeout => "XKS_PROXY_TIMED_OUT",
        XksFault::Tls(_) => "XKS_PROXY_INVALID_TLS_CONFIGURATION",
        XksFault::VpcServiceNotFound(_) => "XKS_VPC_ENDPOINT_SERVICE_NOT_FOUND",
        XksFault::InvalidResponse(_) => "XKS_PROXY_INVALID_RESPONSE",
        XksFault::Proxy { name, .. } => match name.as_str() {
            "AuthenticationFailedException" => "INVALID_CREDENTIALS",
            "AccessDeniedException" => "XKS_PROXY_ACCESS_DENIED",
            "InvalidUriPathException" => "XKS_PROXY_INVALID_CONFIGURATION",
            "DependencyTimeoutException" | "ThrottlingException" => "XKS_PROXY_NOT_REACHABLE",
            _ => "XKS_PROXY_INVALID_RESPONSE",
        },
    }
}

impl Service {
    /// The target of an external key store (unsealing its credential).
    pub(crate) fn xks_target(&self, store: &KeyStoreRecord) -> Result<XksTarget, KmsError> {
        let x = store
            .xks
            .as_ref()
            .ok_or_else(|| internal("external key store without proxy configuration"))?;
        let sealed = hex::decode(&x.secret_sealed_hex).map_err(internal)?;
        let secret = self
            .root_key()
            .open(&secret_aad(&store.id), &sealed)
            .map_err(internal)?;
        Ok(XksTarget {
            custom_key_store_id: store.id.clone(),
            uri_endpoint: x.uri_endpoint.clone(),
            uri_path: x.uri_path.clone(),
            connectivity: x.connectivity.clone(),
            vpc_endpoint_service_name: x.vpc_endpoint_service_name.clone(),
            access_key_id: Zeroizing::new(x.access_key_id.clone()),
            secret: Zeroizing::new(String::from_utf8(secret.to_vec()).map_err(internal)?),
            region: store.region.clone(),
        })
    }

    fn health_meta(caller: &Caller, op: &str) -> RequestMetadata {
        RequestMetadata {
            kms_request_id: caller.request_id.clone(),
            kms_operation: op.into(),
            aws_principal_arn: None,
            kms_key_arn: None,
        }
    }

    fn check_xks_uniqueness(
        &self,
        caller: &Caller,
        id: Option<&str>,
        x: &XksStoreConfig,
    ) -> Result<(), KmsError> {
        for other in self
            .all_key_stores()?
            .into_iter()
            .filter(|s| s.account == caller.account && s.region == caller.region)
        {
            if Some(other.id.as_str()) == id {
                continue;
            }
            let Some(o) = &other.xks else { continue };
            if o.uri_endpoint == x.uri_endpoint && o.uri_path == x.uri_path {
                return Err(err(
                    ErrorCode::XksProxyUriInUseException,
                    format!(
                        "{}{} is already used by custom key store {}",
                        x.uri_endpoint, x.uri_path, other.id
                    ),
                ));
            }
            if o.uri_endpoint == x.uri_endpoint
                && (o.connectivity == "VPC_ENDPOINT_SERVICE"
                    || x.connectivity == "VPC_ENDPOINT_SERVICE")
            {
                return Err(err(
                    ErrorCode::XksProxyUriEndpointInUseException,
                    format!(
                        "{} is already the endpoint of custom key store {}",
                        x.uri_endpoint, other.id
                    ),
                ));
            }
            if x.vpc_endpoint_service_name.is_some()
                && o.vpc_endpoint_service_name == x.vpc_endpoint_service_name
            {
                return Err(err(
                    ErrorCode::XksProxyVpcEndpointServiceInUseException,
                    format!(
                        "The VPC endpoint service is already used by custom key store {}",
                        other.id
                    ),
                ));
            }
        }
        Ok(())
    }

    /// CreateCustomKeyStore for EXTERNAL_KEY_STORE.
    pub(crate) async fn create_xks_store(
        &self,
        caller: &Caller,
        r: CreateCustomKeyStoreRequest,
    ) -> Result<CreateCustomKeyStoreResponse, KmsError> {
        let client = self.xks_client().ok_or_else(|| {
            err(
                ErrorCode::UnsupportedOperationException,
                "this kmsd has no external key store client",
            )
        })?;
        if r.cloud_hsm_cluster_id.is_some()
            || r.trust_anchor_certificate.is_some()
            || r.key_store_password.is_some()
        {
            return Err(err(ErrorCode::ValidationException, "CloudHsmClusterId, TrustAnchorCertificate and KeyStorePassword apply only to AWS_CLOUDHSM key stores"));
        }
        let (Some(connectivity), Some(endpoint), Some(path), Some(cred)) = (
            r.xks_proxy_connectivity.clone(),
            r.xks_proxy_uri_endpoint.clone(),
            r.xks_proxy_uri_path.clone(),
            r.xks_proxy_authentication_credential.clone(),
        ) else {
            return Err(err(
                ErrorCode::ValidationException,
                "An EXTERNAL_KEY_STORE needs XksProxyConnectivity, XksProxyUriEndpoint, XksProxyUriPath and XksProxyAuthenticationCredential",
            ));
        };
        let (Some(akid), Some(secret)) = (cred.access_key_id, cred.raw_secret_access_key) else {
            return Err(err(
                ErrorCode::ValidationException,
                "XksProxyAuthenticationCredential needs AccessKeyId and RawSecretAccessKey",
            ));
        };
        let vpc = connectivity == "VPC_ENDPOINT_SERVICE";
        if vpc != r.xks_proxy_vpc_endpoint_service_name.is_some() {
            return Err(err(
                ErrorCode::ValidationException,
                "XksProxyVpcEndpointServiceName is required with VPC_ENDPOINT_SERVICE connectivity and not allowed with PUBLIC_ENDPOINT",
            ));
        }
        let name = r.custom_key_store_name.clone().unwrap_or_default();
        let _guard = self.write_section().await?;
        let stores: Vec<KeyStoreRecord> = self
            .all_key_stores()?
            .into_iter()
            .filter(|s| s.account == caller.account && s.region == caller.region)
            .collect();
        if stores.iter().any(|s| s.name == name) {
            return Err(err(
                ErrorCode::CustomKeyStoreNameInUseException,
                format!("A custom key store named '{name}' already exists"),
            ));
        }
        if stores.len() >= 10 {
            return Err(err(
                ErrorCode::LimitExceededException,
                "An account can have at most 10 custom key stores in a Region",
            ));
        }
        let id = format!(
            "cks-{}",
            &hex::encode(kms_crypto::random_array::<9>().map_err(internal)?)[..17]
        );
        let sealed = self
            .root_key()
            .seal(&secret_aad(&id), secret.expose().as_bytes())
            .map_err(internal)?;
        let config = XksStoreConfig {
            connectivity,
            uri_endpoint: endpoint,
            uri_path: path,
            vpc_endpoint_service_name: r.xks_proxy_vpc_endpoint_service_name.clone(),
            vpc_endpoint_service_owner: r
                .xks_proxy_vpc_endpoint_service_owner
                .clone()
                .or_else(|| vpc.then(|| caller.account.clone())),
            access_key_id: akid.expose().to_owned(),
            secret_sealed_hex: hex::encode(sealed),
        };
        self.check_xks_uniqueness(caller, None, &config)?;
        let record = KeyStoreRecord {
            account: caller.account.clone(),
            region: caller.region.clone(),
            id: id.clone(),
            name,
            store_type: "EXTERNAL_KEY_STORE".into(),
            cluster_id: None,
            trust_anchor_pem: None,
            connection_state: "DISCONNECTED".into(),
            connection_error_code: None,
            created_ms: self.now_ms(),
            password_sealed_hex: None,
            pending_password_sealed_hex: None,
            xks: Some(config),
        };
        // The proxy must answer a health check before the store exists.
        let target = self.xks_target(&record)?;
        client
            .health(&target, Self::health_meta(caller, "CreateCustomKeyStore"))
            .await
            .map_err(|f| store_error(&f))?;
        self.commit(vec![Self::put_key_store(&record)?]).await?;
        Ok(CreateCustomKeyStoreResponse {
            custom_key_store_id: Some(id),
        })
    }

    /// Connects an external key store: a health check, then CONNECTED or FAILED.
    pub(crate) async fn connect_xks_store(
        &self,
        caller: &Caller,
        mut store: KeyStoreRecord,
    ) -> Result<(), KmsError> {
        let client = self
            .xks_client()
            .ok_or_else(|| internal("no external key store client"))?;
        let target = self.xks_target(&store)?;
        match client
            .health(&target, Self::health_meta(caller, "ConnectCustomKeyStore"))
            .await
        {
            Ok(answer) => {
                store.connection_state = "CONNECTED".into();
                store.connection_error_code = None;
                self.register_xks_target(&store.id, target);
                self.record_xks_health(&store.id, answer);
            }
            Err(f) => {
                tracing::info!(custom_key_store = %store.id, fault = %f, "external key store connection failed");
                store.connection_state = "FAILED".into();
                store.connection_error_code = Some(connection_error_code(&f).into());
            }
        }
        self.commit(vec![Self::put_key_store(&store)?]).await
    }

    /// UpdateCustomKeyStore for an external key store.
    pub(crate) async fn update_xks_store(
        &self,
        caller: &Caller,
        mut store: KeyStoreRecord,
        r: UpdateCustomKeyStoreRequest,
    ) -> Result<(), KmsError> {
        if r.key_store_password.is_some() || r.cloud_hsm_cluster_id.is_some() {
            return Err(err(
                ErrorCode::ValidationException,
                "KeyStorePassword and CloudHsmClusterId apply only to AWS_CLOUDHSM key stores",
            ));
        }
        let connected = store.connection_state == "CONNECTED";
        let disconnected = store.connection_state == "DISCONNECTED";
        let needs_disconnect = r.xks_proxy_uri_endpoint.is_some()
            || r.xks_proxy_connectivity.is_some()
            || r.xks_proxy_vpc_endpoint_service_name.is_some()
            || r.xks_proxy_vpc_endpoint_service_owner.is_some();
        if needs_disconnect && !disconnected {
            return Err(err(
                ErrorCode::CustomKeyStoreInvalidStateException,
                format!("Custom key store {} must be DISCONNECTED to change its endpoint, connectivity or VPC endpoint service (it is {})", store.id, store.connection_state),
            ));
        }
        if let Some(name) = &r.new_custom_key_store_name {
            if self.all_key_stores()?.iter().any(|s| {
                s.account == caller.account
                    && s.region == caller.region
                    && &s.name == name
                    && s.id != store.id
            }) {
                return Err(err(
                    ErrorCode::CustomKeyStoreNameInUseException,
                    format!("A custom key store named '{name}' already exists"),
                ));
            }
        }
        let mut x = store
            .xks
            .clone()
            .ok_or_else(|| internal("external key store without proxy configuration"))?;
        let mut proxy_changed = false;
        if let Some(c) = r.xks_proxy_connectivity.clone() {
            x.connectivity = c;
            proxy_changed = true;
        }
        if let Some(e) = r.xks_proxy_uri_endpoint.clone() {
            x.uri_endpoint = e;
            proxy_changed = true;
        }
        if let Some(p) = r.xks_proxy_uri_path.clone() {
            x.uri_path = p;
            proxy_changed = true;
        }
        if let Some(n) = r.xks_proxy_vpc_endpoint_service_name.clone() {
            x.vpc_endpoint_service_name = Some(n);
            proxy_changed = true;
        }
        if let Some(o) = r.xks_proxy_vpc_endpoint_service_owner.clone() {
            x.vpc_endpoint_service_owner = Some(o);
        }
        if x.connectivity == "PUBLIC_ENDPOINT" {
            x.vpc_endpoint_service_name = None;
            x.vpc_endpoint_service_owner = None;
        } else if x.vpc_endpoint_service_name.is_none() {
            return Err(err(
                ErrorCode::ValidationException,
                "VPC_ENDPOINT_SERVICE connectivity needs XksProxyVpcEndpointServiceName",
            ));
        }
        if let Some(cred) = r.xks_proxy_authentication_credential.clone() {
            let (Some(akid), Some(secret)) = (cred.access_key_id, cred.raw_secret_access_key)
            else {
                return Err(err(ErrorCode::ValidationException, "XksProxyAuthenticationCredential needs both AccessKeyId and RawSecretAccessKey"));
            };
            x.access_key_id = akid.expose().to_owned();
            x.secret_sealed_hex = hex::encode(
                self.root_key()
                    .seal(&secret_aad(&store.id), secret.expose().as_bytes())
                    .map_err(internal)?,
            );
            proxy_changed = true;
        }
        self.check_xks_uniqueness(caller, Some(&store.id), &x)?;
        store.xks = Some(x);
        if let Some(name) = r.new_custom_key_store_name {
            store.name = name;
        }
        if proxy_changed {
            if let Some(client) = self.xks_client() {
                let target = self.xks_target(&store)?;
                let answer = client
                    .health(&target, Self::health_meta(caller, "UpdateCustomKeyStore"))
                    .await
                    .map_err(|f| store_error(&f))?;
                if connected {
                    self.register_xks_target(&store.id, target);
                    self.record_xks_health(&store.id, answer);
                }
            }
        }
        self.commit(vec![Self::put_key_store(&store)?]).await
    }

    /// Registers the target of a connected external key store (its health starts unknown).
    pub(crate) fn register_xks_target(&self, store_id: &str, target: XksTarget) {
        if let Ok(mut m) = self.xks_targets.write() {
            m.insert(store_id.to_owned(), Arc::new(target));
            self.forget_xks_health(store_id);
        }
    }

    /// Forgets the target of a disconnected external key store, and its health.
    pub(crate) fn unregister_xks_target(&self, store_id: &str) {
        if let Ok(mut m) = self.xks_targets.write() {
            m.remove(store_id);
            self.forget_xks_health(store_id);
        }
    }

    /// Ids of the external key stores with a target on this node.
    pub(crate) fn xks_target_ids(&self) -> Vec<String> {
        self.xks_targets
            .read()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The target of a connected external key store, or why its keys are unavailable.
    pub(crate) fn connected_xks_target(&self, store_id: &str) -> Result<Arc<XksTarget>, KmsError> {
        self.xks_targets.read().ok().and_then(|m| m.get(store_id).cloned()).ok_or_else(|| {
            err(ErrorCode::KMSInvalidStateException, format!("The key is unavailable: its external key store {store_id} is not connected"))
        })
    }
}
