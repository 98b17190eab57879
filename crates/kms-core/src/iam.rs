//! Principals: IAM-style users and roles of accounts, their access keys, identity policies and
//! temporary credentials of assumed roles. Managed by `kmsd admin ...`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use kms_types::{ErrorCode, KmsError};

use crate::model::AccessKeyRecord;
use crate::policy::{Policy, PolicyKind};
use crate::service::Service;
use crate::store::WriteOp;

/// Document kind of principals in the store (id = ARN).
pub const PRINCIPAL_DOC: &str = "iam-principal";

/// A user or role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrincipalRecord {
    /// `user` or `role`.
    pub kind: String,
    /// Account (12 digits).
    pub account: String,
    /// Name.
    pub name: String,
    /// `arn:aws:iam::<acct>:user/<name>` or `...:role/<name>`.
    pub arn: String,
    /// Unique id (`AIDA...` users, `AROA...` roles).
    pub id: String,
    /// Identity policies by name (JSON documents).
    #[serde(default)]
    pub policies: BTreeMap<String, String>,
    /// Tags (`aws:PrincipalTag/*`).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Roles: who may assume the role (principal ARNs or 12-digit account ids).
    #[serde(default)]
    pub trusted: Vec<String>,
    /// Creation time (ms).
    pub created_ms: i64,
}

/// Temporary credentials of an assumed role.
pub struct TemporaryCredentials {
    /// `ASIA...`.
    pub access_key_id: String,
    /// Secret.
    pub secret_access_key: Zeroizing<String>,
    /// Session token (`X-Amz-Security-Token`).
    pub session_token: Zeroizing<String>,
    /// Expiry (ms).
    pub expires_ms: i64,
    /// `arn:aws:sts::<acct>:assumed-role/<role>/<session>`.
    pub assumed_role_arn: String,
    /// `<role id>:<session>` (STS `AssumedRoleId`, the session's `aws:userid`).
    pub assumed_role_id: String,
}

/// The policy AWS calls AdministratorAccess: what each account's bootstrap admin gets.
pub const ADMINISTRATOR_ACCESS: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;

fn invalid(msg: impl Into<String>) -> KmsError {
    KmsError::new(ErrorCode::ValidationException, msg)
}

fn internal<E: std::fmt::Display>(e: E) -> KmsError {
    tracing::error!(error = %e, "principal management error");
    KmsError::internal("kmsd hit an internal error")
}

fn check_account(account: &str) -> Result<(), KmsError> {
    if account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(invalid(format!("'{account}' is not a 12-digit account id")))
    }
}

fn check_name(name: &str) -> Result<(), KmsError> {
    if !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
    {
        Ok(())
    } else {
        Err(invalid(format!(
            "'{name}' is not a valid IAM name (1..64 of A-Za-z0-9+=,.@_-)"
        )))
    }
}

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// Random identifier `prefix` + `len` base32 characters.
pub(crate) fn random_id(prefix: &str, len: usize) -> Result<String, KmsError> {
    let bytes = kms_crypto::random_bytes(len).map_err(internal)?;
    Ok(format!(
        "{prefix}{}",
        bytes
            .iter()
            .map(|b| BASE32[(*b & 31) as usize] as char)
            .collect::<String>()
    ))
}

/// AAD sealing an access key's secret.
pub(crate) fn secret_aad(access_key_id: &str) -> Vec<u8> {
    format!("kmsd-access-key|{access_key_id}").into_bytes()
}

impl Service {
    /// A principal by ARN.
    pub fn principal(&self, arn: &str) -> Result<Option<PrincipalRecord>, KmsError> {
        self.store()
            .get_doc(PRINCIPAL_DOC, arn)
            .map_err(internal)?
            .map(|b| serde_json::from_str(&b).map_err(internal))
            .transpose()
    }

    fn put_principal(p: &PrincipalRecord) -> Result<WriteOp, KmsError> {
        Ok(WriteOp::PutDoc {
            kind: PRINCIPAL_DOC.into(),
            id: p.arn.clone(),
            body: serde_json::to_string(p).map_err(internal)?,
        })
    }

    async fn create_principal(
        &self,
        kind: &str,
        account: &str,
        name: &str,
        policies: BTreeMap<String, String>,
        trusted: Vec<String>,
    ) -> Result<PrincipalRecord, KmsError> {
        check_account(account)?;
        check_name(name)?;
        let arn = format!("arn:aws:iam::{account}:{kind}/{name}");
        let _guard = self.write_section().await?;
        if self.principal(&arn)?.is_some() {
            return Err(KmsError::new(
                ErrorCode::AlreadyExistsException,
                format!("{arn} already exists"),
            ));
        }
        let p = PrincipalRecord {
            kind: kind.into(),
            account: account.into(),
            name: name.into(),
            arn,
            id: random_id(if kind == "user" { "AIDA" } else { "AROA" }, 17)?,
            policies,
            tags: BTreeMap::new(),
            trusted,
            created_ms: self.now_ms(),
        };
        self.commit(vec![Self::put_principal(&p)?]).await?;
        Ok(p)
    }

    /// Creates a user.
    pub async fn create_user(
        &self,
        account: &str,
        name: &str,
    ) -> Result<PrincipalRecord, KmsError> {
        self.create_principal("user", account, name, BTreeMap::new(), vec![])
            .await
    }

    /// Creates a role that the listed principals (ARNs or account ids) may assume.
    pub async fn create_role(
        &self,
        account: &str,
        name: &str,
        trusted: Vec<String>,
    ) -> Result<PrincipalRecord, KmsError> {
        if trusted.is_empty() {
            return Err(invalid(
                "a role needs at least one principal allowed to assume it",
            ));
        }
        self.create_principal("role", account, name, BTreeMap::new(), trusted)
            .await
    }

    /// Creates an account: its `admin` user with AdministratorAccess and an access key for it.
    pub async fn create_account(
        &self,
        account: &str,
    ) -> Result<(String, Zeroizing<String>), KmsError> {
        let admin = self
            .create_principal(
                "user",
                account,
                "admin",
                BTreeMap::from([(
                    "AdministratorAccess".to_owned(),
                    ADMINISTRATOR_ACCESS.to_owned(),
                )]),
                vec![],
            )
            .await?;
        self.create_access_key(&admin.arn).await
    }

    /// Makes sure an account's bootstrap admin user record exists (data dirs from before
    /// principals had records).
    pub async fn ensure_admin_user(&self, account: &str) -> Result<(), KmsError> {
        let arn = format!("arn:aws:iam::{account}:user/admin");
        if self.principal(&arn)?.is_none() {
            let policies = BTreeMap::from([(
                "AdministratorAccess".to_owned(),
                ADMINISTRATOR_ACCESS.to_owned(),
            )]);
            match self
                .create_principal("user", account, "admin", policies, vec![])
                .await
            {
                Ok(_) => {}
                Err(e) if e.code == ErrorCode::AlreadyExistsException => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Creates an access key for a user; returns (id, secret).
    pub async fn create_access_key(
        &self,
        user_arn: &str,
    ) -> Result<(String, Zeroizing<String>), KmsError> {
        let user = self
            .principal(user_arn)?
            .filter(|p| p.kind == "user")
            .ok_or_else(|| {
                KmsError::new(ErrorCode::NotFoundException, format!("No user {user_arn}"))
            })?;
        let access_key_id = random_id("AKIA", 16)?;
        let raw = kms_crypto::random_bytes(30).map_err(internal)?;
        let secret = Zeroizing::new(base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            &raw[..],
        ));
        self.put_access_key(&user, &access_key_id, &secret).await?;
        Ok((access_key_id, secret))
    }

    /// Stores an access key with a given id and secret for a user (seed files: fixed keys for
    /// test suites). Refuses an id that is already in use.
    pub async fn import_access_key(
        &self,
        user_arn: &str,
        access_key_id: &str,
        secret: &str,
    ) -> Result<(), KmsError> {
        let user = self
            .principal(user_arn)?
            .filter(|p| p.kind == "user")
            .ok_or_else(|| {
                KmsError::new(ErrorCode::NotFoundException, format!("No user {user_arn}"))
            })?;
        if self
            .store()
            .get_access_key(access_key_id)
            .map_err(internal)?
            .is_some()
        {
            return Err(KmsError::new(
                ErrorCode::AlreadyExistsException,
                format!("Access key {access_key_id} exists"),
            ));
        }
        self.put_access_key(&user, access_key_id, secret).await
    }

    async fn put_access_key(
        &self,
        user: &PrincipalRecord,
        access_key_id: &str,
        secret: &str,
    ) -> Result<(), KmsError> {
        let sealed = self
            .root_key()
            .seal(&secret_aad(access_key_id), secret.as_bytes())
            .map_err(internal)?;
        let record = AccessKeyRecord {
            access_key_id: access_key_id.to_owned(),
            account: user.account.clone(),
            principal_arn: user.arn.clone(),
            user_id: user.id.clone(),
            sealed_secret_hex: hex::encode(sealed),
            created_ms: self.now_ms(),
            expires_ms: None,
            session_token_sha256: None,
            role_arn: None,
        };
        self.commit(vec![WriteOp::PutAccessKey(record)]).await
    }

    /// Deletes an access key (the running server stops accepting it within a second).
    pub async fn delete_access_key(&self, access_key_id: &str) -> Result<(), KmsError> {
        if self
            .store()
            .get_access_key(access_key_id)
            .map_err(internal)?
            .is_none()
        {
            return Err(KmsError::new(
                ErrorCode::NotFoundException,
                format!("No access key {access_key_id}"),
            ));
        }
        self.commit(vec![WriteOp::DeleteAccessKey {
            access_key_id: access_key_id.into(),
        }])
        .await?;
        self.forget_access_key(access_key_id);
        Ok(())
    }

    /// Attaches (or replaces) an identity policy of a user or role.
    pub async fn put_principal_policy(
        &self,
        arn: &str,
        name: &str,
        document: &str,
    ) -> Result<(), KmsError> {
        Policy::parse(document, PolicyKind::Identity)
            .map_err(|e| KmsError::new(ErrorCode::MalformedPolicyDocumentException, e.0))?;
        let _guard = self.write_section().await?;
        let mut p = self.principal(arn)?.ok_or_else(|| {
            KmsError::new(ErrorCode::NotFoundException, format!("No principal {arn}"))
        })?;
        p.policies.insert(name.into(), document.into());
        self.commit(vec![Self::put_principal(&p)?]).await
    }

    /// Removes an identity policy.
    pub async fn delete_principal_policy(&self, arn: &str, name: &str) -> Result<(), KmsError> {
        let _guard = self.write_section().await?;
        let mut p = self.principal(arn)?.ok_or_else(|| {
            KmsError::new(ErrorCode::NotFoundException, format!("No principal {arn}"))
        })?;
        if p.policies.remove(name).is_none() {
            return Err(KmsError::new(
                ErrorCode::NotFoundException,
                format!("{arn} has no policy named {name}"),
            ));
        }
        self.commit(vec![Self::put_principal(&p)?]).await
    }

    /// Sets a principal tag (`aws:PrincipalTag/<key>`).
    pub async fn tag_principal(&self, arn: &str, key: &str, value: &str) -> Result<(), KmsError> {
        let _guard = self.write_section().await?;
        let mut p = self.principal(arn)?.ok_or_else(|| {
            KmsError::new(ErrorCode::NotFoundException, format!("No principal {arn}"))
        })?;
        p.tags.insert(key.into(), value.into());
        self.commit(vec![Self::put_principal(&p)?]).await
    }

    /// STS AssumeRole for an authenticated caller: the role's trust must name the caller, or
    /// name the caller's account and then the caller's identity policies must allow
    /// `sts:AssumeRole` on the role, as in AWS.
    pub async fn assume_role_for(
        &self,
        caller: &crate::Caller,
        role_arn: &str,
        session_name: &str,
        duration_secs: i64,
    ) -> Result<TemporaryCredentials, KmsError> {
        let denied = || {
            KmsError::new(
                ErrorCode::AccessDeniedException,
                format!(
                    "User: {} is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
                    caller.principal_arn
                ),
            )
        };
        let role = self
            .principal(role_arn)?
            .filter(|p| p.kind == "role")
            .ok_or_else(denied)?;
        let names_caller = role.trusted.contains(&caller.principal_arn);
        if !names_caller {
            self.authorize(caller, "sts:AssumeRole", None, role_arn)
                .map_err(|_| denied())?;
        }
        self.assume_role(role_arn, session_name, &caller.principal_arn, duration_secs)
            .await
            .map_err(|e| {
                if e.code == ErrorCode::AccessDeniedException {
                    denied()
                } else {
                    e
                }
            })
    }

    /// Assumes a role as `caller_arn` (must be trusted by the role), for `duration_secs`
    /// (900..43200).
    pub async fn assume_role(
        &self,
        role_arn: &str,
        session_name: &str,
        caller_arn: &str,
        duration_secs: i64,
    ) -> Result<TemporaryCredentials, KmsError> {
        if !(900..=43_200).contains(&duration_secs) {
            return Err(invalid("the session duration must be 900 to 43200 seconds"));
        }
        check_name(session_name)?;
        let role = self
            .principal(role_arn)?
            .filter(|p| p.kind == "role")
            .ok_or_else(|| {
                KmsError::new(ErrorCode::NotFoundException, format!("No role {role_arn}"))
            })?;
        let caller_account = caller_arn.split(':').nth(4).unwrap_or_default();
        if !role.trusted.iter().any(|t| {
            t == caller_arn
                || t == caller_account
                || *t == format!("arn:aws:iam::{caller_account}:root")
        }) {
            return Err(KmsError::new(
                ErrorCode::AccessDeniedException,
                format!("{caller_arn} is not allowed to assume {role_arn}"),
            ));
        }
        let access_key_id = random_id("ASIA", 16)?;
        let raw = kms_crypto::random_bytes(30).map_err(internal)?;
        let secret = Zeroizing::new(base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            &raw[..],
        ));
        let token_raw = kms_crypto::random_bytes(48).map_err(internal)?;
        let token = Zeroizing::new(base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            &token_raw[..],
        ));
        let sealed = self
            .root_key()
            .seal(&secret_aad(&access_key_id), secret.as_bytes())
            .map_err(internal)?;
        let expires_ms = self.now_ms() + duration_secs * 1000;
        let assumed = format!(
            "arn:aws:sts::{}:assumed-role/{}/{session_name}",
            role.account, role.name
        );
        self.commit(vec![WriteOp::PutAccessKey(AccessKeyRecord {
            access_key_id: access_key_id.clone(),
            account: role.account.clone(),
            principal_arn: assumed.clone(),
            user_id: format!("{}:{session_name}", role.id),
            sealed_secret_hex: hex::encode(sealed),
            created_ms: self.now_ms(),
            expires_ms: Some(expires_ms),
            session_token_sha256: Some(hex::encode(kms_crypto::sha256(token.as_bytes()))),
            role_arn: Some(role.arn.clone()),
        })])
        .await?;
        Ok(TemporaryCredentials {
            access_key_id,
            secret_access_key: secret,
            session_token: token,
            expires_ms,
            assumed_role_arn: assumed,
            assumed_role_id: format!("{}:{session_name}", role.id),
        })
    }

    /// Parsed identity policies of a principal (for sessions: of their role), cached briefly so
    /// `kmsd admin` changes reach a running server within a second.
    pub(crate) fn identity_policies(
        &self,
        principal_arn: &str,
    ) -> Result<Arc<IdentityView>, KmsError> {
        let now = std::time::Instant::now();
        if let Some((at, v)) = self
            .identity_cache
            .read()
            .ok()
            .and_then(|c| c.get(principal_arn).cloned())
        {
            if now.duration_since(at) < std::time::Duration::from_secs(1) {
                return Ok(v);
            }
        }
        let record = self.principal(principal_arn)?;
        let mut policies = Vec::new();
        for (name, text) in record
            .as_ref()
            .map(|r| r.policies.clone())
            .unwrap_or_default()
        {
            match Policy::parse(&text, PolicyKind::Identity) {
                Ok(p) => policies.push(p),
                Err(e) => {
                    tracing::error!(principal = principal_arn, policy = name, error = %e.0, "stored identity policy does not parse; ignoring it")
                }
            }
        }
        let view = Arc::new(IdentityView {
            policies,
            tags: record.map(|r| r.tags).unwrap_or_default(),
        });
        if let Ok(mut c) = self.identity_cache.write() {
            c.insert(principal_arn.to_owned(), (now, view.clone()));
        }
        Ok(view)
    }
}

/// What authorization needs to know of a principal.
pub struct IdentityView {
    /// Its identity policies.
    pub policies: Vec<Policy>,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
}
