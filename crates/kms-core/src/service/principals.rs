//! Principals and their access keys: the first-start admin, and the secret lookup SigV4 needs.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::{internal, Service};
use crate::iam::{random_id, secret_aad};
use crate::model::AccessKeyRecord;
use crate::store::WriteOp;
use kms_types::KmsError;

/// A newly created access key of the account admin, to hand to the operator once.
pub struct AdminCredentials {
    /// Access key id (`AKIA...`).
    pub access_key_id: String,
    /// Secret access key (shown once, stored sealed).
    pub secret_access_key: Zeroizing<String>,
    /// Principal ARN.
    pub principal_arn: String,
}

/// A verified-lookup result: the access key record and its secret.
pub struct AccessKeySecret {
    /// The record.
    pub record: AccessKeyRecord,
    /// The secret access key.
    pub secret: Zeroizing<String>,
}

impl Service {
    /// On first start for `account`: creates the admin user `arn:aws:iam::<account>:user/admin`
    /// with one access key, hands it to `persist` (which writes it for the operator) and only
    /// then commits it, so a crash in between leaves no key nobody knows. Returns the principal
    /// ARN, or `None` if the account already has its admin.
    pub async fn bootstrap_admin<F>(
        &self,
        account: &str,
        persist: F,
    ) -> Result<Option<String>, KmsError>
    where
        F: FnOnce(&AdminCredentials) -> std::io::Result<()>,
    {
        let marker = format!("admin-created:{account}");
        // Nodes starting together on one database: the first creates the admin, the others
        // find it.
        let section = self.write_section().await?;
        if self.store.get_meta(&marker).map_err(internal)?.is_some() {
            return Ok(None);
        }
        let access_key_id = random_id("AKIA", 16)?;
        let secret_raw = kms_crypto::random_bytes(30).map_err(internal)?;
        let secret = Zeroizing::new(base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            &secret_raw[..],
        ));
        let sealed = self
            .root
            .seal(&secret_aad(&access_key_id), secret.as_bytes())
            .map_err(internal)?;
        let principal_arn = format!("arn:aws:iam::{account}:user/admin");
        let record = AccessKeyRecord {
            access_key_id: access_key_id.clone(),
            account: account.to_owned(),
            principal_arn: principal_arn.clone(),
            user_id: random_id("AIDA", 17)?,
            sealed_secret_hex: hex::encode(sealed),
            created_ms: self.now_ms(),
            expires_ms: None,
            session_token_sha256: None,
            role_arn: None,
        };
        let creds = AdminCredentials {
            access_key_id,
            secret_access_key: secret,
            principal_arn: principal_arn.clone(),
        };
        persist(&creds).map_err(|e| internal(format!("writing the admin credentials: {e}")))?;
        self.commit(vec![
            WriteOp::PutAccessKey(record),
            WriteOp::PutMeta {
                name: marker,
                value: principal_arn.clone(),
            },
        ])
        .await?;
        drop(section);
        self.ensure_admin_user(account).await?;
        Ok(Some(principal_arn))
    }

    /// Drops an access key from the cache.
    pub(crate) fn forget_access_key(&self, access_key_id: &str) {
        if let Ok(mut c) = self.secret_cache.write() {
            c.remove(access_key_id);
        }
    }

    /// The record and secret of an access key, or `None` if kmsd does not know it.
    pub fn access_key_secret(
        &self,
        access_key_id: &str,
    ) -> Result<Option<Arc<AccessKeySecret>>, KmsError> {
        let now = std::time::Instant::now();
        if let Some((at, hit)) = self
            .secret_cache
            .read()
            .ok()
            .and_then(|c| c.get(access_key_id).cloned())
        {
            // Short-lived, so deleted keys stop working at once on a running server.
            if now.duration_since(at) < std::time::Duration::from_secs(1) {
                return Ok(Some(hit));
            }
        }
        let Some(record) = self.store.get_access_key(access_key_id).map_err(internal)? else {
            return Ok(None);
        };
        let sealed = hex::decode(&record.sealed_secret_hex).map_err(internal)?;
        let secret = self
            .root
            .open(&secret_aad(access_key_id), &sealed)
            .map_err(internal)?;
        let secret = Zeroizing::new(String::from_utf8(secret.to_vec()).map_err(internal)?);
        let entry = Arc::new(AccessKeySecret { record, secret });
        if let Ok(mut c) = self.secret_cache.write() {
            c.insert(access_key_id.to_owned(), (now, entry.clone()));
        }
        Ok(Some(entry))
    }
}
