//! KMS custom key stores of type AWS_CLOUDHSM: Create, Describe, Connect, Disconnect, Update,
//! Delete, with AWS's validation, connection states and error codes.

use serde::{Deserialize, Serialize};

use kms_types::*;

use super::cluster::{ClusterRecord, MAX_FAILED_LOGINS};
use super::connection::Connection;
use super::driver::{HsmFault, HsmSession};
use super::users::KMS_USER;
use crate::context::Caller;
use crate::service::paging::{decode_marker, encode_marker, page_limit};
use crate::service::Service;

/// Custom key stores per account and Region.
const MAX_KEY_STORES: usize = 10;

/// A custom key store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyStoreRecord {
    /// Owning account.
    pub account: String,
    /// Region.
    pub region: String,
    /// `cks-` + 17 hex.
    pub id: String,
    /// Unique name in the account and Region.
    pub name: String,
    /// `AWS_CLOUDHSM` or `EXTERNAL_KEY_STORE`.
    pub store_type: String,
    /// Associated cluster (CloudHSM stores).
    pub cluster_id: Option<String>,
    /// The trust anchor given at creation (CloudHSM stores).
    pub trust_anchor_pem: Option<String>,
    /// `DISCONNECTED`, `CONNECTING`, `CONNECTED`, `DISCONNECTING`, `FAILED`.
    pub connection_state: String,
    /// Set when FAILED.
    pub connection_error_code: Option<String>,
    /// Creation time (ms).
    pub created_ms: i64,
    /// The current `kmsuser` password, sealed under the root key (hex).
    pub password_sealed_hex: Option<String>,
    /// A password a rotation was setting when it stopped (sealed, hex): tried when the
    /// current one fails, so a crash mid-rotation never loses the working password.
    #[serde(default)]
    pub pending_password_sealed_hex: Option<String>,
    /// External key stores: how to reach the proxy.
    #[serde(default)]
    pub xks: Option<crate::xks::XksStoreConfig>,
}

impl KeyStoreRecord {
    pub(crate) fn to_wire(&self) -> CustomKeyStoresListEntry {
        CustomKeyStoresListEntry {
            custom_key_store_id: Some(self.id.clone()),
            custom_key_store_name: Some(self.name.clone()),
            cloud_hsm_cluster_id: self.cluster_id.clone(),
            trust_anchor_certificate: self.trust_anchor_pem.clone(),
            connection_state: Some(self.connection_state.clone()),
            connection_error_code: (self.connection_state == "FAILED")
                .then(|| self.connection_error_code.clone())
                .flatten(),
            creation_date: Some(Timestamp::from_millis(self.created_ms)),
            custom_key_store_type: Some(self.store_type.clone()),
            xks_proxy_configuration: self.xks.as_ref().map(|x| XksProxyConfigurationType {
                connectivity: Some(x.connectivity.clone()),
                access_key_id: Some(SensitiveString::new(x.access_key_id.clone())),
                uri_endpoint: Some(x.uri_endpoint.clone()),
                uri_path: Some(x.uri_path.clone()),
                vpc_endpoint_service_name: x.vpc_endpoint_service_name.clone(),
                vpc_endpoint_service_owner: x.vpc_endpoint_service_owner.clone(),
            }),
        }
    }
}

fn err(code: ErrorCode, msg: impl Into<String>) -> KmsError {
    KmsError::new(code, msg)
}

fn internal<E: std::fmt::Display>(e: E) -> KmsError {
    tracing::error!(error = %e, "custom key store error");
    KmsError::internal("kmsd hit an internal error")
}

fn check_password(p: &str) -> Result<(), KmsError> {
    if !(7..=32).contains(&p.len()) || !p.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(err(
            ErrorCode::ValidationException,
            "KeyStorePassword must be the kmsuser password: 7 to 32 alphanumeric characters",
        ));
    }
    Ok(())
}

fn password_aad(store_id: &str) -> Vec<u8> {
    format!("kmsd-kmsuser-password|{store_id}").into_bytes()
}

/// A fresh random `kmsuser` password (32 alphanumeric characters).
fn new_password() -> Result<zeroize::Zeroizing<String>, KmsError> {
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let bytes = kms_crypto::random_bytes(32).map_err(internal)?;
    Ok(zeroize::Zeroizing::new(
        bytes
            .iter()
            .map(|b| ALNUM[(*b as usize) % ALNUM.len()] as char)
            .collect(),
    ))
}

/// Outcome of a connection attempt.
enum Connect {
    Connected(
        Vec<(String, std::sync::Arc<dyn HsmSession>)>,
        zeroize::Zeroizing<String>,
    ),
    Failed(&'static str),
}

impl Service {
    fn caller_key_store(&self, caller: &Caller, id: &str) -> Result<KeyStoreRecord, KmsError> {
        self.load_key_store(id)?
            .filter(|k| k.account == caller.account && k.region == caller.region)
            .ok_or_else(|| {
                err(
                    ErrorCode::CustomKeyStoreNotFoundException,
                    format!("Custom key store '{id}' does not exist"),
                )
            })
    }

    fn caller_key_stores(&self, caller: &Caller) -> Result<Vec<KeyStoreRecord>, KmsError> {
        Ok(self
            .all_key_stores()?
            .into_iter()
            .filter(|k| k.account == caller.account && k.region == caller.region)
            .collect())
    }

    pub(crate) fn seal_password(&self, store_id: &str, password: &str) -> Result<String, KmsError> {
        self.seal_text(&password_aad(store_id), password)
    }

    pub(crate) fn open_password(
        &self,
        store_id: &str,
        sealed_hex: &str,
    ) -> Result<zeroize::Zeroizing<String>, KmsError> {
        self.open_text(&password_aad(store_id), sealed_hex)
    }

    /// The configuration requirements AWS checks on a cluster for a key store: private subnets in
    /// two zones, the security group rules, two active HSMs in different zones.
    fn check_cluster_configuration(
        &self,
        c: &ClusterRecord,
        min_zones: usize,
    ) -> Result<(), KmsError> {
        let env = self.hsm_env().ok_or_else(|| internal("no HSMs declared"))?;
        let fleet = env.fleet.load().map_err(internal)?;
        let invalid = |why: String| {
            err(
                ErrorCode::CloudHsmClusterInvalidConfigurationException,
                format!("Cluster {} {why}", c.cluster_id),
            )
        };
        let private_zones = c
            .subnet_mapping
            .values()
            .filter(|s| fleet.subnet(s).is_some_and(|s| s.private))
            .count();
        if private_zones < 2 {
            return Err(invalid(
                "needs private subnets in at least two Availability Zones".into(),
            ));
        }
        if !fleet.security_group_ok(&c.cluster_id) {
            return Err(invalid(format!(
                "security group {} must allow inbound and outbound TCP 2223-2225 to itself",
                c.security_group
            )));
        }
        if c.active_zones() < min_zones {
            return Err(invalid(format!(
                "needs at least two active HSMs in different Availability Zones (it has {} active, in {} zones)",
                c.active_hsms().count(),
                c.active_zones()
            )));
        }
        Ok(())
    }

    /// The checks shared by CreateCustomKeyStore and UpdateCustomKeyStore on a cluster.
    fn check_cluster_for_store(
        &self,
        caller: &Caller,
        cluster_id: &str,
        this_store: Option<&str>,
    ) -> Result<ClusterRecord, KmsError> {
        let c = self
            .load_cluster(cluster_id)?
            .filter(|c| c.account == caller.account && c.region == caller.region)
            .ok_or_else(|| {
                err(
                    ErrorCode::CloudHsmClusterNotFoundException,
                    format!("Cluster {cluster_id} not found"),
                )
            })?;
        if c.state != "ACTIVE" {
            return Err(err(
                ErrorCode::CloudHsmClusterNotActiveException,
                format!("Cluster {cluster_id} is {}, not ACTIVE", c.state),
            ));
        }
        for store in self.caller_key_stores(caller)? {
            if Some(store.id.as_str()) == this_store {
                continue;
            }
            let Some(other) = store
                .cluster_id
                .as_deref()
                .and_then(|id| self.load_cluster(id).ok().flatten())
            else {
                continue;
            };
            if other.cluster_id == c.cluster_id || other.lineage == c.lineage {
                return Err(err(
                    ErrorCode::CloudHsmClusterInUseException,
                    format!("Cluster {cluster_id} is already associated with (or shares backup history with the cluster of) custom key store {}", store.id),
                ));
            }
        }
        self.check_cluster_configuration(&c, 2)?;
        Ok(c)
    }

    /// CreateCustomKeyStore.
    pub async fn create_custom_key_store(
        &self,
        caller: &Caller,
        r: CreateCustomKeyStoreRequest,
    ) -> Result<CreateCustomKeyStoreResponse, KmsError> {
        let store_type = r
            .custom_key_store_type
            .clone()
            .unwrap_or_else(|| "AWS_CLOUDHSM".into());
        if store_type == "EXTERNAL_KEY_STORE" {
            return self.create_xks_store(caller, r).await;
        }
        if r.xks_proxy_uri_endpoint.is_some()
            || r.xks_proxy_uri_path.is_some()
            || r.xks_proxy_authentication_credential.is_some()
            || r.xks_proxy_connectivity.is_some()
            || r.xks_proxy_vpc_endpoint_service_name.is_some()
        {
            return Err(err(
                ErrorCode::ValidationException,
                "XksProxy* parameters are valid only for EXTERNAL_KEY_STORE key stores",
            ));
        }
        let (Some(cluster_id), Some(anchor), Some(password)) = (
            r.cloud_hsm_cluster_id.as_deref(),
            r.trust_anchor_certificate.as_deref(),
            r.key_store_password.as_ref(),
        ) else {
            return Err(err(
                ErrorCode::ValidationException,
                "An AWS_CLOUDHSM key store needs CloudHsmClusterId, TrustAnchorCertificate and KeyStorePassword",
            ));
        };
        check_password(password.expose())?;
        // customerCA.crt is one certificate: a file with another one appended is refused.
        let Some(given) = kms_crypto::x509::single_certificate_der(anchor) else {
            return Err(err(
                ErrorCode::IncorrectTrustAnchorException,
                "TrustAnchorCertificate must hold exactly one PEM certificate: the content of the customerCA.crt the cluster was initialized with",
            ));
        };
        if self.hsm_env().is_none() {
            return Err(err(
                ErrorCode::CloudHsmClusterNotFoundException,
                format!("Cluster {cluster_id} not found (this kmsd declares no HSMs)"),
            ));
        }
        let name = r.custom_key_store_name.clone().unwrap_or_default();
        let _guard = self.write_section().await?;
        let stores = self.caller_key_stores(caller)?;
        if let Some(same) = stores.iter().find(|s| s.name == name) {
            // Retrying a create with identical properties returns the existing (disconnected) store.
            let same_password = same
                .password_sealed_hex
                .as_deref()
                .map(|h| self.open_password(&same.id, h))
                .transpose()?;
            if same.connection_state == "DISCONNECTED"
                && same.cluster_id.as_deref() == Some(cluster_id)
                && same
                    .trust_anchor_pem
                    .as_deref()
                    .and_then(kms_crypto::x509::first_certificate_der)
                    .as_ref()
                    == Some(&given)
                && same_password.as_deref().map(String::as_str) == Some(password.expose())
            {
                return Ok(CreateCustomKeyStoreResponse {
                    custom_key_store_id: Some(same.id.clone()),
                });
            }
            return Err(err(
                ErrorCode::CustomKeyStoreNameInUseException,
                format!("A custom key store named '{name}' already exists"),
            ));
        }
        if stores.len() >= MAX_KEY_STORES {
            return Err(err(
                ErrorCode::LimitExceededException,
                format!(
                    "An account can have at most {MAX_KEY_STORES} custom key stores in a Region"
                ),
            ));
        }
        let c = self.check_cluster_for_store(caller, cluster_id, None)?;
        let theirs = c
            .trust_anchor_pem
            .as_deref()
            .and_then(kms_crypto::x509::first_certificate_der);
        if theirs.as_ref() != Some(&given) {
            return Err(err(ErrorCode::IncorrectTrustAnchorException, format!("The trust anchor certificate is not the one cluster {cluster_id} was initialized with")));
        }
        let id = format!(
            "cks-{}",
            &hex::encode(kms_crypto::random_array::<9>().map_err(internal)?)[..17]
        );
        let record = KeyStoreRecord {
            account: caller.account.clone(),
            region: caller.region.clone(),
            id: id.clone(),
            name,
            store_type,
            cluster_id: Some(cluster_id.to_owned()),
            trust_anchor_pem: Some(anchor.to_owned()),
            connection_state: "DISCONNECTED".into(),
            connection_error_code: None,
            created_ms: self.now_ms(),
            password_sealed_hex: Some(self.seal_password(&id, password.expose())?),
            pending_password_sealed_hex: None,
            xks: None,
        };
        self.commit(vec![Self::put_key_store(&record)?]).await?;
        Ok(CreateCustomKeyStoreResponse {
            custom_key_store_id: Some(id),
        })
    }

    /// DescribeCustomKeyStores.
    pub async fn describe_custom_key_stores(
        &self,
        caller: &Caller,
        r: DescribeCustomKeyStoresRequest,
    ) -> Result<DescribeCustomKeyStoresResponse, KmsError> {
        if r.custom_key_store_id.is_some() && r.custom_key_store_name.is_some() {
            return Err(err(
                ErrorCode::ValidationException,
                "Specify CustomKeyStoreId or CustomKeyStoreName, not both",
            ));
        }
        let limit = page_limit(r.limit, 1000, 100)?;
        let after = decode_marker(r.marker.as_deref())?;
        let mut stores = self.caller_key_stores(caller)?;
        stores.sort_by(|a, b| a.id.cmp(&b.id));
        if let Some(id) = &r.custom_key_store_id {
            stores.retain(|s| &s.id == id);
            if stores.is_empty() {
                return Err(err(
                    ErrorCode::CustomKeyStoreNotFoundException,
                    format!("Custom key store '{id}' does not exist"),
                ));
            }
        }
        if let Some(name) = &r.custom_key_store_name {
            stores.retain(|s| &s.name == name);
            if stores.is_empty() {
                return Err(err(
                    ErrorCode::CustomKeyStoreNotFoundException,
                    format!("No custom key store is named '{name}'"),
                ));
            }
        }
        let rest: Vec<_> = stores
            .into_iter()
            .filter(|s| after.as_deref().is_none_or(|a| s.id.as_str() > a))
            .collect();
        let truncated = rest.len() > limit;
        let page: Vec<_> = rest.into_iter().take(limit).collect();
        Ok(DescribeCustomKeyStoresResponse {
            next_marker: if truncated {
                page.last().map(|s| encode_marker(&s.id))
            } else {
                None
            },
            truncated: Some(truncated),
            custom_key_stores: Some(page.iter().map(KeyStoreRecord::to_wire).collect()),
        })
    }

    /// ConnectCustomKeyStore. Runs the connection to the end before answering (AWS answers at
    /// once and connects in the background; clients poll DescribeCustomKeyStores either way).
    pub async fn connect_custom_key_store(
        &self,
        caller: &Caller,
        r: ConnectCustomKeyStoreRequest,
    ) -> Result<(), KmsError> {
        let id = r.custom_key_store_id.unwrap_or_default();
        let _guard = self.write_section().await?;
        let store = self.caller_key_store(caller, &id)?;
        match store.connection_state.as_str() {
            // Connected by this or another node (which rotated the password once): this node
            // opens its own sessions if it has none yet.
            "CONNECTED" => {
                if let Err(why) = self.follow_key_store(&store).await {
                    tracing::warn!(custom_key_store = %id, why, "the key store is CONNECTED but this node could not open its sessions");
                    self.connections().retry_later();
                }
                return Ok(());
            }
            "DISCONNECTING" | "FAILED" => {
                return Err(err(
                    ErrorCode::CustomKeyStoreInvalidStateException,
                    format!(
                        "Custom key store {id} is {}: disconnect it before connecting again",
                        store.connection_state
                    ),
                ))
            }
            _ => {}
        }
        if store.store_type == "EXTERNAL_KEY_STORE" {
            return self.connect_xks_store(caller, store).await;
        }
        self.connect_store(store).await
    }

    /// Connects a key store: logs in and rotates the password. Must be called with the write
    /// lock held.
    pub(crate) async fn connect_store(&self, mut store: KeyStoreRecord) -> Result<(), KmsError> {
        let env = self.hsm_env().ok_or_else(|| internal("no HSMs declared"))?;
        let cluster_id = store.cluster_id.clone().unwrap_or_default();
        let cluster = self.load_cluster(&cluster_id)?;
        let outcome = match cluster {
            None => Connect::Failed("CLUSTER_NOT_FOUND"),
            Some(mut c) => {
                if c.state != "ACTIVE" {
                    return Err(err(
                        ErrorCode::CloudHsmClusterNotActiveException,
                        format!("Cluster {cluster_id} is {}, not ACTIVE", c.state),
                    ));
                }
                let fleet = env.fleet.load().map_err(internal)?;
                if !fleet.security_group_ok(&c.cluster_id) {
                    return Err(err(
                        ErrorCode::CloudHsmClusterInvalidConfigurationException,
                        format!("Cluster {cluster_id}: security group {} must allow inbound and outbound TCP 2223-2225 to itself", c.security_group),
                    ));
                }
                let outcome = self
                    .login_cluster(&mut store, &mut c, &fleet, env.clone())
                    .await?;
                self.commit(vec![Self::put_cluster(&c)?]).await?;
                outcome
            }
        };
        match outcome {
            Connect::Connected(sessions, password) => {
                store.connection_state = "CONNECTED".into();
                store.connection_error_code = None;
                store.password_sealed_hex = Some(self.seal_password(&store.id, &password)?);
                store.pending_password_sealed_hex = None;
                self.connections().insert(
                    &store.id,
                    std::sync::Arc::new(Connection::new(cluster_id.clone(), sessions)),
                );
                self.hsm_audit(
                    &cluster_id,
                    "Connect",
                    serde_json::json!({"customKeyStoreId": store.id}),
                );
            }
            Connect::Failed(code) => {
                store.connection_state = "FAILED".into();
                store.connection_error_code = Some(code.into());
                self.hsm_audit(
                    &cluster_id,
                    "ConnectFailed",
                    serde_json::json!({"customKeyStoreId": store.id, "connectionErrorCode": code}),
                );
            }
        }
        self.commit(vec![Self::put_key_store(&store)?]).await
    }

    /// Logs in as the crypto user on every active HSM and rotates its password. Updates the
    /// cluster's failed-login counter and the store's pending password as it goes.
    async fn login_cluster(
        &self,
        store: &mut KeyStoreRecord,
        c: &mut ClusterRecord,
        fleet: &super::HsmFleet,
        env: super::super::service::HsmEnv,
    ) -> Result<Connect, KmsError> {
        if c.subnet_mapping.values().any(|s| fleet.subnet(s).is_none()) {
            return Ok(Connect::Failed("SUBNET_NOT_FOUND"));
        }
        let active = c.declared_active_hsms(fleet);
        if active.is_empty() {
            return Ok(Connect::Failed("INSUFFICIENT_CLOUDHSM_HSMS"));
        }
        // A key store logs in as `kmsuser` only: a crypto user of any other name is no user.
        let Some(user) = c.crypto_user.clone().filter(|u| u.name == KMS_USER) else {
            return Ok(Connect::Failed("USER_NOT_FOUND"));
        };
        if user.failed_logins >= MAX_FAILED_LOGINS {
            return Ok(Connect::Failed("USER_LOCKED_OUT"));
        }
        if user.two_factor {
            // A key store cannot present a second factor.
            return Ok(Connect::Failed("INVALID_CREDENTIALS"));
        }
        if env.fleet.user_logged_in_elsewhere(&c.cluster_id) {
            return Ok(Connect::Failed("USER_LOGGED_IN"));
        }
        let mut candidates = Vec::new();
        if let Some(h) = &store.password_sealed_hex {
            candidates.push(self.open_password(&store.id, h)?);
        }
        if let Some(h) = &store.pending_password_sealed_hex {
            candidates.push(self.open_password(&store.id, h)?);
        }
        // A cluster restored from a backup has the crypto user's password of the backup's
        // time, which kmsd kept until a store first logs in there: tried last, so a store moved
        // to a related cluster connects without a password reset.
        if c.source_backup_id.is_some() {
            if let Some(p) = self.cluster_user_password(c)? {
                if !candidates.iter().any(|x| **x == *p) {
                    candidates.push(p);
                }
            }
        }
        let old_passwords = candidates.clone();
        // Log in everywhere (blocking PKCS#11 calls off the async workers).
        let driver = env.driver.clone();
        let logins = tokio::task::spawn_blocking(move || {
            active
                .into_iter()
                .map(|(hsm_id, d)| {
                    let mut last = HsmFault::PinIncorrect;
                    for (i, pw) in candidates.iter().enumerate() {
                        match driver.login(&d, pw) {
                            Ok(s) => return (hsm_id, Ok((s, i))),
                            Err(HsmFault::PinIncorrect) => last = HsmFault::PinIncorrect,
                            Err(e) => return (hsm_id, Err(e)),
                        }
                    }
                    (hsm_id, Err(last))
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(internal)?;
        let mut sessions = Vec::new();
        let mut faults = Vec::new();
        for (hsm_id, r) in logins {
            match r {
                Ok((s, which)) => sessions.push((hsm_id, s, which)),
                Err(e) => faults.push(e),
            }
        }
        if sessions.is_empty() {
            let code = if faults.contains(&HsmFault::PinLocked) {
                "USER_LOCKED_OUT"
            } else if faults.contains(&HsmFault::UserNotFound) {
                "USER_NOT_FOUND"
            } else if faults.contains(&HsmFault::UserLoggedIn) {
                "USER_LOGGED_IN"
            } else if faults.contains(&HsmFault::PinIncorrect) {
                if let Some(u) = c.crypto_user.as_mut() {
                    u.failed_logins += 1;
                }
                "INVALID_CREDENTIALS"
            } else if faults.iter().all(|f| matches!(f, HsmFault::Unreachable(_))) {
                "NETWORK_ERRORS"
            } else {
                "INTERNAL_ERROR"
            };
            self.hsm_audit(
                &c.cluster_id,
                "LoginFailed",
                serde_json::json!({"user": user.name, "connectionErrorCode": code}),
            );
            return Ok(Connect::Failed(code));
        }
        if let Some(u) = c.crypto_user.as_mut() {
            u.failed_logins = 0;
            if c.source_backup_id.is_some() {
                // The store rotates the password now and holds it from here on.
                u.password_sealed_hex = None;
            }
        }
        self.hsm_audit(
            &c.cluster_id,
            "Login",
            serde_json::json!({"user": user.name, "hsms": sessions.len()}),
        );

        // Rotate the password: record the new one as pending first, so a crash in the middle of
        // C_SetPIN leaves a password that works on every HSM.
        let new = new_password()?;
        store.pending_password_sealed_hex = Some(self.seal_password(&store.id, &new)?);
        self.commit(vec![Self::put_key_store(store)?]).await?;
        let rotate_new = new.clone();
        let rotated = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for (hsm_id, s, which) in sessions {
                let old = &old_passwords[which];
                match s.change_pin(old, &rotate_new) {
                    Ok(()) => out.push((hsm_id, s, None)),
                    Err(e) => out.push((hsm_id, s, Some(e))),
                }
            }
            out
        })
        .await
        .map_err(internal)?;
        if let Some((_, _, Some(e))) = rotated.iter().find(|(_, _, e)| e.is_some()) {
            tracing::error!(cluster = %c.cluster_id, error = %e, "kmsuser password rotation failed on an HSM");
            for (_, s, _) in &rotated {
                s.logout();
            }
            return Ok(Connect::Failed("INTERNAL_ERROR"));
        }
        self.hsm_audit(
            &c.cluster_id,
            "ChangePassword",
            serde_json::json!({"user": user.name, "hsms": rotated.len()}),
        );
        Ok(Connect::Connected(
            rotated.into_iter().map(|(id, s, _)| (id, s)).collect(),
            new,
        ))
    }

    /// DisconnectCustomKeyStore.
    pub async fn disconnect_custom_key_store(
        &self,
        caller: &Caller,
        r: DisconnectCustomKeyStoreRequest,
    ) -> Result<(), KmsError> {
        let id = r.custom_key_store_id.unwrap_or_default();
        let _guard = self.write_section().await?;
        let mut store = self.caller_key_store(caller, &id)?;
        if matches!(
            store.connection_state.as_str(),
            "DISCONNECTED" | "DISCONNECTING"
        ) {
            return Err(err(
                ErrorCode::CustomKeyStoreInvalidStateException,
                format!("Custom key store {id} is {}", store.connection_state),
            ));
        }
        self.connections().remove(&id);
        self.unregister_xks_target(&id);
        store.connection_state = "DISCONNECTED".into();
        store.connection_error_code = None;
        self.commit(vec![Self::put_key_store(&store)?]).await?;
        if let Some(c) = &store.cluster_id {
            self.hsm_audit(c, "Disconnect", serde_json::json!({"customKeyStoreId": id}));
        }
        Ok(())
    }

    /// UpdateCustomKeyStore (CloudHSM key stores).
    pub async fn update_custom_key_store(
        &self,
        caller: &Caller,
        r: UpdateCustomKeyStoreRequest,
    ) -> Result<(), KmsError> {
        let id = r.custom_key_store_id.clone().unwrap_or_default();
        let _guard = self.write_section().await?;
        let mut store = self.caller_key_store(caller, &id)?;
        if store.store_type == "EXTERNAL_KEY_STORE" {
            return self.update_xks_store(caller, store, r).await;
        }
        if r.xks_proxy_uri_endpoint.is_some()
            || r.xks_proxy_uri_path.is_some()
            || r.xks_proxy_authentication_credential.is_some()
            || r.xks_proxy_connectivity.is_some()
            || r.xks_proxy_vpc_endpoint_service_name.is_some()
        {
            return Err(err(
                ErrorCode::ValidationException,
                "XksProxy* parameters apply only to external key stores",
            ));
        }
        let disconnected = store.connection_state == "DISCONNECTED";
        if (r.key_store_password.is_some() || r.cloud_hsm_cluster_id.is_some()) && !disconnected {
            return Err(err(
                ErrorCode::CustomKeyStoreInvalidStateException,
                format!("Custom key store {id} must be DISCONNECTED to change its password or cluster (it is {})", store.connection_state),
            ));
        }
        if let Some(name) = &r.new_custom_key_store_name {
            if self
                .caller_key_stores(caller)?
                .iter()
                .any(|s| &s.name == name && s.id != id)
            {
                return Err(err(
                    ErrorCode::CustomKeyStoreNameInUseException,
                    format!("A custom key store named '{name}' already exists"),
                ));
            }
        }
        if let Some(p) = &r.key_store_password {
            check_password(p.expose())?;
        }
        if let Some(new_cluster) = &r.cloud_hsm_cluster_id {
            let old_lineage = store
                .cluster_id
                .as_deref()
                .and_then(|c| self.load_cluster(c).ok().flatten())
                .map(|c| c.lineage);
            let candidate = self
                .load_cluster(new_cluster)?
                .filter(|c| c.account == caller.account && c.region == caller.region)
                .ok_or_else(|| {
                    err(
                        ErrorCode::CloudHsmClusterNotFoundException,
                        format!("Cluster {new_cluster} not found"),
                    )
                })?;
            if old_lineage.as_deref() != Some(candidate.lineage.as_str()) {
                return Err(err(
                    ErrorCode::CloudHsmClusterNotRelatedException,
                    format!("Cluster {new_cluster} does not share backup history with the key store's cluster"),
                ));
            }
            self.check_cluster_for_store(caller, new_cluster, Some(&id))?;
            store.cluster_id = Some(new_cluster.clone());
        }
        if let Some(name) = r.new_custom_key_store_name {
            store.name = name;
        }
        if let Some(p) = r.key_store_password {
            store.password_sealed_hex = Some(self.seal_password(&id, p.expose())?);
            store.pending_password_sealed_hex = None;
        }
        self.commit(vec![Self::put_key_store(&store)?]).await
    }

    /// DeleteCustomKeyStore: DISCONNECTED and holding no keys.
    pub async fn delete_custom_key_store(
        &self,
        caller: &Caller,
        r: DeleteCustomKeyStoreRequest,
    ) -> Result<(), KmsError> {
        let id = r.custom_key_store_id.unwrap_or_default();
        let _guard = self.write_section().await?;
        let store = self.caller_key_store(caller, &id)?;
        if store.connection_state != "DISCONNECTED" {
            return Err(err(
                ErrorCode::CustomKeyStoreInvalidStateException,
                format!(
                    "Custom key store {id} must be DISCONNECTED to be deleted (it is {})",
                    store.connection_state
                ),
            ));
        }
        let keys = self
            .store()
            .keys_in_custom_key_store(&id)
            .map_err(internal)?;
        if !keys.is_empty() {
            return Err(err(ErrorCode::CustomKeyStoreHasCMKsException, format!("Custom key store {id} still holds {} KMS keys (including keys pending deletion)", keys.len())));
        }
        let mut writes = vec![crate::store::WriteOp::DeleteDoc {
            kind: super::KEY_STORE_DOC.into(),
            id: id.clone(),
        }];
        // The store rotated the crypto user's password: the cluster keeps the last one, so
        // later backups and HSM syncs can still log in.
        if let (Some(mut c), Some(sealed)) = (
            store
                .cluster_id
                .as_deref()
                .map(|c| self.load_cluster(c))
                .transpose()?
                .flatten(),
            store.password_sealed_hex.as_deref(),
        ) {
            let password = self.open_password(&id, sealed)?;
            if let Some(u) = c.crypto_user.as_mut() {
                u.password_sealed_hex = Some(self.seal_user_password(&c.cluster_id, &password)?);
                writes.push(Self::put_cluster(&c)?);
            }
        }
        self.commit(writes).await
    }

    /// Gives the external key stores that were CONNECTED when kmsd stopped their proxy targets
    /// back. No network: proxies are stateless HTTPS, so a connected store only needs its target.
    /// Called before kmsd listens, so no request sees such a store as not connected.
    pub fn restore_external_key_store_targets(&self) {
        let Ok(stores) = self.all_key_stores() else {
            return;
        };
        for store in stores
            .iter()
            .filter(|s| s.connection_state == "CONNECTED" && s.store_type == "EXTERNAL_KEY_STORE")
        {
            match self.xks_target(store) {
                Ok(t) => self.register_xks_target(&store.id, t),
                Err(e) => {
                    tracing::error!(custom_key_store = %store.id, error = %e, "could not restore the external key store")
                }
            }
        }
    }

    /// Opens, at start-up, the sessions of the CloudHSM key stores that are CONNECTED (logging
    /// in to the HSMs takes time, so this runs beside serving). The password is not rotated
    /// again: the node that connected the store did, and other nodes may be using it.
    pub async fn restore_key_store_connections(&self) {
        let Ok(stores) = self.all_key_stores() else {
            return;
        };
        for mut store in stores
            .into_iter()
            .filter(|s| s.connection_state == "CONNECTED" && s.store_type == "AWS_CLOUDHSM")
        {
            let _guard = match self.write_section().await {
                Ok(g) => g,
                Err(e) => {
                    tracing::error!(custom_key_store = %store.id, error = %e, "could not restore the key store connection");
                    continue;
                }
            };
            if self.hsm_env().is_none() {
                // Started without its HSM declaration: this kmsd cannot reach the cluster, so
                // the store is not connected and must not say it is.
                tracing::error!(custom_key_store = %store.id, "the key store was connected but this kmsd declares no HSMs (--hsm-config): it is FAILED with NETWORK_ERRORS");
                store.connection_state = "FAILED".into();
                store.connection_error_code = Some("NETWORK_ERRORS".into());
                let saved = match Self::put_key_store(&store) {
                    Ok(w) => self.commit(vec![w]).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = saved {
                    tracing::error!(custom_key_store = %store.id, error = %e, "could not record the key store's state");
                }
                continue;
            }
            if let Err(why) = self.follow_key_store(&store).await {
                tracing::error!(custom_key_store = %store.id, why, "could not open the sessions of the connected key store; trying again shortly");
                self.connections().retry_later();
            }
        }
    }

    /// The HSM connection of a key store, or why its keys are unavailable.
    pub(crate) fn key_store_connection(
        &self,
        store_id: &str,
    ) -> Result<std::sync::Arc<Connection>, KmsError> {
        self.connections().get(store_id).ok_or_else(|| {
            err(
                ErrorCode::KMSInvalidStateException,
                format!("The key is unavailable: its custom key store {store_id} is not connected"),
            )
        })
    }
}
