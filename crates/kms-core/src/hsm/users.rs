//! The cluster's crypto user, managed as the CloudHSM CLI manages users (`user create`,
//! `user list`, `user change-password`, `user delete`), through `kmsd hsm ...`.
//!
//! A PKCS#11 token has one normal user (`CKU_USER`), so a cluster has at most one crypto user,
//! and a key store logs in only as the one named `kmsuser`. The SO PIN of each token stands for
//! the admin's (crypto officer's) credentials. Every operation, refused or not, is recorded in
//! the cluster's audit log (never a password).

use kms_types::KmsError;
use serde::Serialize;
use zeroize::Zeroizing;

use super::cluster::{ClusterRecord, CryptoUser, MAX_FAILED_LOGINS};
use super::control::{internal, invalid, not_found};
use super::fleet::DeclaredHsm;
use crate::service::Service;

/// The crypto user a CloudHSM key store logs in as.
pub const KMS_USER: &str = "kmsuser";

/// Longest user name the CloudHSM CLI accepts.
const MAX_USER_NAME: usize = 31;

/// A user of a cluster's HSMs, as `kmsd hsm list-users` shows it (CloudHSM CLI `user list`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HsmUser {
    /// User name (lowercase).
    pub username: String,
    /// `admin` (the tokens' SO) or `crypto-user`.
    pub role: String,
    /// Locked out after too many failed logins (a crypto officer's password change unlocks).
    pub locked: bool,
    /// Created with two-factor authentication (a key store cannot log in as such a user).
    pub two_factor: bool,
    /// Consecutive failed logins.
    pub login_failures: u32,
}

/// A CloudHSM user name: 1 to 31 letters, digits or `_`, case-insensitive (kept lowercase).
pub fn normalize_user_name(name: &str) -> Result<String, KmsError> {
    if name.is_empty()
        || name.len() > MAX_USER_NAME
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(invalid(format!(
            "User name {name:?} is invalid: 1 to {MAX_USER_NAME} letters, digits or underscores"
        )));
    }
    Ok(name.to_ascii_lowercase())
}

/// A crypto user password: 7 to 32 alphanumeric characters (what a key store accepts).
fn check_password(password: &str) -> Result<(), KmsError> {
    if !(7..=32).contains(&password.len()) || !password.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(invalid(
            "The password must be 7 to 32 alphanumeric characters",
        ));
    }
    Ok(())
}

/// A password nobody knows, 32 alphanumeric characters.
fn unknowable_password() -> Result<Zeroizing<String>, KmsError> {
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let bytes = kms_crypto::random_bytes(32).map_err(internal)?;
    Ok(Zeroizing::new(
        bytes
            .iter()
            .map(|b| ALNUM[(*b as usize) % ALNUM.len()] as char)
            .collect(),
    ))
}

impl Service {
    fn users_cluster(&self, cluster_id: &str) -> Result<ClusterRecord, KmsError> {
        self.load_cluster(cluster_id)?
            .ok_or_else(|| not_found(format!("Cluster {cluster_id} not found")))
    }

    /// The cluster's crypto user if it is named `name`.
    fn named_user<'a>(c: &'a ClusterRecord, name: &str) -> Result<&'a CryptoUser, KmsError> {
        c.crypto_user
            .as_ref()
            .filter(|u| u.name == name)
            .ok_or_else(|| {
                not_found(format!(
                    "Cluster {} has no crypto user named {name}",
                    c.cluster_id
                ))
            })
    }

    /// Why the cluster's crypto user is logged in, if it is: a connected key store of the
    /// cluster (kmsd stays logged in while connected) or a management session (`kmsd hsm login`).
    fn user_logged_in(&self, c: &ClusterRecord) -> Result<Option<String>, KmsError> {
        if let Some(store) = self.all_key_stores()?.into_iter().find(|s| {
            s.cluster_id.as_deref() == Some(c.cluster_id.as_str())
                && (s.connection_state == "CONNECTED" || self.connections().get(&s.id).is_some())
        }) {
            return Ok(Some(format!(
                "custom key store {} is connected to the cluster and logged in as the crypto user: disconnect it first",
                store.id
            )));
        }
        let elsewhere = self
            .hsm_env()
            .is_some_and(|env| env.fleet.user_logged_in_elsewhere(&c.cluster_id));
        Ok(elsewhere.then(|| {
            "a management session (kmsd hsm login) is logged in as the crypto user".to_owned()
        }))
    }

    /// Every HSM of the cluster with its token's SO PIN.
    fn hsms_with_so_pins(
        &self,
        c: &ClusterRecord,
    ) -> Result<Vec<(DeclaredHsm, Zeroizing<String>)>, KmsError> {
        let env = self.hsm_env().ok_or_else(|| invalid("no HSMs declared"))?;
        if c.hsms.is_empty() {
            return Err(invalid(format!("Cluster {} has no HSM", c.cluster_id)));
        }
        let fleet = env.fleet.load().map_err(internal)?;
        c.hsms
            .iter()
            .map(|h| {
                let d = fleet.hsm(&h.token_label).cloned().ok_or_else(|| {
                    invalid(format!("HSM token {} is no longer declared", h.token_label))
                })?;
                let so = env
                    .fleet
                    .so_pin(&d)
                    .map_err(|e| invalid(format!("SO PIN of {}: {e}", d.token_label)))?;
                Ok((d, so))
            })
            .collect()
    }

    /// Sets the crypto user's password on every HSM as the admin (SO login, `C_InitPIN`). The
    /// PKCS#11 calls run off the async workers.
    async fn set_user_pin_everywhere(
        &self,
        hsms: Vec<(DeclaredHsm, Zeroizing<String>)>,
        password: Zeroizing<String>,
        also_prepare_cluster: bool,
    ) -> Result<(), KmsError> {
        let env = self.hsm_env().ok_or_else(|| invalid("no HSMs declared"))?;
        let driver = env.driver.clone();
        let result = tokio::task::spawn_blocking(move || {
            for (d, so) in &hsms {
                driver.create_user(d, so, &password)?;
            }
            if also_prepare_cluster {
                let pairs: Vec<(&DeclaredHsm, &str)> =
                    hsms.iter().map(|(d, so)| (d, so.as_str())).collect();
                driver.prepare_cluster(&pairs, &password)?;
            }
            Ok::<(), super::HsmFault>(())
        })
        .await
        .map_err(internal)?;
        result.map_err(|e| invalid(format!("The HSMs refused: {e}")))
    }

    /// Records a user operation in the cluster's log (only for a cluster that exists, so an
    /// unknown id never names a log).
    fn audit_user_op(
        &self,
        cluster_id: &str,
        event: &str,
        mut details: serde_json::Value,
        outcome: Result<(), &KmsError>,
    ) {
        if !matches!(self.load_cluster(cluster_id), Ok(Some(_))) {
            return;
        }
        if let (Err(e), Some(map)) = (outcome, details.as_object_mut()) {
            map.insert("errorMessage".into(), e.message.clone().into());
        }
        self.hsm_audit(cluster_id, event, details);
    }

    /// `kmsd hsm create-user` (CloudHSM `user create --role crypto-user`): creates the crypto
    /// user on every HSM of the cluster, and makes an initialised cluster ACTIVE. Refused when
    /// the cluster already has its (one) crypto user.
    pub async fn create_crypto_user(
        &self,
        cluster_id: &str,
        name: &str,
        password: &str,
        two_factor: bool,
    ) -> Result<(), KmsError> {
        let r = self
            .create_crypto_user_inner(cluster_id, name, password, two_factor)
            .await;
        self.audit_user_op(
            cluster_id,
            "CreateUser",
            serde_json::json!({"user": name, "twoFactor": two_factor}),
            r.as_ref().map(|_| ()),
        );
        let activated = r?;
        if let Some(c) = activated {
            self.backup_cluster(&c, "ActivateCluster").await;
        }
        Ok(())
    }

    /// Returns the cluster when this made it ACTIVE.
    async fn create_crypto_user_inner(
        &self,
        cluster_id: &str,
        name: &str,
        password: &str,
        two_factor: bool,
    ) -> Result<Option<ClusterRecord>, KmsError> {
        let name = normalize_user_name(name)?;
        check_password(password)?;
        let _guard = self.write_section().await?;
        let mut c = self.users_cluster(cluster_id)?;
        if let Some(u) = &c.crypto_user {
            return Err(invalid(format!(
                "Cluster {cluster_id} already has its crypto user {} (a PKCS#11 token holds one user: delete it first, or change its password)",
                u.name
            )));
        }
        let hsms = self.hsms_with_so_pins(&c)?;
        self.set_user_pin_everywhere(hsms, Zeroizing::new(password.to_owned()), true)
            .await?;
        c.crypto_user = Some(CryptoUser {
            name,
            two_factor,
            failed_logins: 0,
            password_sealed_hex: Some(self.seal_user_password(cluster_id, password)?),
        });
        let activated = c.state == "INITIALIZED";
        if activated {
            c.state = "ACTIVE".into();
            c.state_message = None;
        }
        self.commit(vec![Self::put_cluster(&c)?]).await?;
        Ok(activated.then_some(c))
    }

    /// `kmsd hsm list-users` (CloudHSM `user list`): the admin and the crypto user.
    pub fn list_crypto_users(&self, cluster_id: &str) -> Result<Vec<HsmUser>, KmsError> {
        let c = self.users_cluster(cluster_id)?;
        let mut users = vec![HsmUser {
            username: "admin".into(),
            role: "admin".into(),
            locked: false,
            two_factor: false,
            login_failures: 0,
        }];
        users.extend(c.crypto_user.iter().map(|u| HsmUser {
            username: u.name.clone(),
            role: "crypto-user".into(),
            locked: u.failed_logins >= MAX_FAILED_LOGINS,
            two_factor: u.two_factor,
            login_failures: u.failed_logins,
        }));
        self.audit_user_op(cluster_id, "ListUsers", serde_json::json!({}), Ok(()));
        Ok(users)
    }

    /// The name of the cluster's crypto user, if it has one (no audit record: for checks).
    pub fn cluster_crypto_user(&self, cluster_id: &str) -> Result<Option<String>, KmsError> {
        Ok(self.users_cluster(cluster_id)?.crypto_user.map(|u| u.name))
    }

    /// `kmsd hsm change-password` (CloudHSM `user change-password`, run by the admin): sets the
    /// crypto user's password on every HSM and unlocks a locked-out user. Refused while the user
    /// is logged in (a connected key store). The key stores of the cluster still hold the old
    /// password: give them the new one with UpdateCustomKeyStore (KeyStorePassword).
    pub async fn change_crypto_user_password(
        &self,
        cluster_id: &str,
        name: &str,
        password: &str,
    ) -> Result<(), KmsError> {
        let r = self
            .change_crypto_user_password_inner(cluster_id, name, password)
            .await;
        let unlocked = *r.as_ref().unwrap_or(&false);
        self.audit_user_op(
            cluster_id,
            "ChangeUserPassword",
            serde_json::json!({"user": name, "unlocked": unlocked}),
            r.as_ref().map(|_| ()),
        );
        r.map(|_| ())
    }

    /// Returns whether the user was locked out.
    async fn change_crypto_user_password_inner(
        &self,
        cluster_id: &str,
        name: &str,
        password: &str,
    ) -> Result<bool, KmsError> {
        let name = normalize_user_name(name)?;
        check_password(password)?;
        let _guard = self.write_section().await?;
        let mut c = self.users_cluster(cluster_id)?;
        Self::named_user(&c, &name)?;
        if let Some(why) = self.user_logged_in(&c)? {
            return Err(invalid(format!(
                "Cannot change the password of {name} while it is logged in: {why}"
            )));
        }
        let hsms = self.hsms_with_so_pins(&c)?;
        self.set_user_pin_everywhere(hsms, Zeroizing::new(password.to_owned()), false)
            .await?;
        let sealed = self.seal_user_password(cluster_id, password)?;
        let mut was_locked = false;
        if let Some(u) = c.crypto_user.as_mut() {
            was_locked = u.failed_logins >= MAX_FAILED_LOGINS;
            u.failed_logins = 0;
            u.password_sealed_hex = Some(sealed);
        }
        self.commit(vec![Self::put_cluster(&c)?]).await?;
        Ok(was_locked)
    }

    /// `kmsd hsm delete-user` (CloudHSM `user delete`): removes the crypto user, e.g. one
    /// created with two-factor authentication or under another name than `kmsuser`. Refused
    /// while it is logged in and while it owns keys (keys of a key store on the cluster or on a
    /// cluster sharing its backup history), as CloudHSM refuses. PKCS#11 cannot remove a token's
    /// user: its password on every HSM becomes a random one nobody keeps.
    pub async fn delete_crypto_user(&self, cluster_id: &str, name: &str) -> Result<(), KmsError> {
        let r = self.delete_crypto_user_inner(cluster_id, name).await;
        self.audit_user_op(
            cluster_id,
            "DeleteUser",
            serde_json::json!({"user": name}),
            r.as_ref().map(|_| ()),
        );
        r
    }

    async fn delete_crypto_user_inner(&self, cluster_id: &str, name: &str) -> Result<(), KmsError> {
        let name = normalize_user_name(name)?;
        let _guard = self.write_section().await?;
        let mut c = self.users_cluster(cluster_id)?;
        Self::named_user(&c, &name)?;
        if let Some(why) = self.user_logged_in(&c)? {
            return Err(invalid(format!(
                "Cannot delete {name} while it is logged in: {why}"
            )));
        }
        let owned = self.lineage_keys(&c)?.len();
        if owned > 0 {
            return Err(invalid(format!(
                "Cannot delete {name}: it owns {owned} keys (of the key store on this cluster's backup history); delete the KMS keys first, or change its password instead"
            )));
        }
        let hsms = self.hsms_with_so_pins(&c)?;
        self.set_user_pin_everywhere(hsms, unknowable_password()?, false)
            .await?;
        c.crypto_user = None;
        self.commit(vec![Self::put_cluster(&c)?]).await
    }
}
