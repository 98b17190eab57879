//! The kmsd side: an `aws-sdk-kms` client built from the AWS credential chain, and the three
//! calls the plugin makes (DescribeKey for the key_id, Encrypt, Decrypt).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_kms::config::AppName;
use aws_sdk_kms::primitives::Blob;

use crate::args::PluginArgs;
use crate::errors::KmsError;

/// The encryption context key naming the cluster.
pub const CLUSTER_CONTEXT_KEY: &str = "kubernetes-cluster";

/// App name prefix in the User-Agent of every call (`app/k8s-kms` or `app/k8s-kms.uid.<uid>`).
const APP_NAME: &str = "k8s-kms";

/// Longest uid carried in the User-Agent (keeps the app name within the SDK's 50 characters).
const MAX_UID_CHARS: usize = 38;

/// kmsd reached through aws-sdk-kms, with the configured key, the keys kept for decryption and
/// the cluster's encryption context.
#[derive(Clone, Debug)]
pub struct KmsBackend {
    client: aws_sdk_kms::Client,
    key_id: String,
    decrypt_also: Vec<String>,
    context: HashMap<String, String>,
}

impl KmsBackend {
    /// Builds the client: endpoint and optional CA bundle from the flags, region and credentials
    /// from the AWS chain (environment, profiles, assume-role, ...).
    pub async fn from_args(args: &PluginArgs) -> Result<KmsBackend, String> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&args.endpoint)
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_secs(args.timeout_secs))
                    .connect_timeout(Duration::from_secs(args.timeout_secs))
                    .build(),
            );
        if let Some(name) = app_name("") {
            loader = loader.app_name(name);
        }
        if let Some(region) = &args.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(path) = &args.ca_bundle {
            loader = loader.http_client(http_client_trusting(path)?);
        }
        let shared = loader.load().await;
        let mut conf = aws_sdk_kms::config::Builder::from(&shared);
        if shared.region().is_none() {
            conf = conf.region(aws_sdk_kms::config::Region::new("us-east-1"));
        }
        Ok(KmsBackend {
            client: aws_sdk_kms::Client::from_conf(conf.build()),
            key_id: args.key_id.clone(),
            decrypt_also: args.decrypt_also.clone(),
            context: HashMap::from([(CLUSTER_CONTEXT_KEY.to_owned(), args.cluster_name.clone())]),
        })
    }

    /// The plugin's key_id for the configured key: its ARN, plus `@` and its current key
    /// material id when kmsd reports one, so it changes when the key is rotated (keys in custom
    /// key stores have no rotation and no material id: their ARN alone).
    pub async fn current_key_id(&self) -> Result<String, KmsError> {
        let out = self
            .client
            .describe_key()
            .key_id(&self.key_id)
            .send()
            .await
            .map_err(KmsError::from_sdk)?;
        let meta = out
            .key_metadata
            .ok_or_else(|| KmsError::unexpected("DescribeKey returned no KeyMetadata"))?;
        let arn = meta
            .arn
            .ok_or_else(|| KmsError::unexpected("DescribeKey returned no Arn"))?;
        Ok(match meta.current_key_material_id {
            Some(material) if !material.is_empty() => format!("{arn}@{material}"),
            _ => arn,
        })
    }

    /// Encrypts `plaintext` under the configured key with the cluster's encryption context,
    /// `uid` carried in the User-Agent so kmsd's audit record shows it.
    pub async fn encrypt(&self, plaintext: &[u8], uid: &str) -> Result<Vec<u8>, KmsError> {
        let out = self
            .client
            .encrypt()
            .key_id(&self.key_id)
            .plaintext(Blob::new(plaintext))
            .set_encryption_context(Some(self.context.clone()))
            .customize()
            .config_override(config_naming(uid))
            .send()
            .await
            .map_err(KmsError::from_sdk)?;
        out.ciphertext_blob
            .map(Blob::into_inner)
            .ok_or_else(|| KmsError::unexpected("Encrypt returned no CiphertextBlob"))
    }

    /// Decrypts under the configured key, then under each `--decrypt-also` key in turn while
    /// kmsd answers that the ciphertext is for another key (IncorrectKeyException).
    pub async fn decrypt(&self, ciphertext: &[u8], uid: &str) -> Result<Vec<u8>, KmsError> {
        let mut last = None;
        for key in std::iter::once(&self.key_id).chain(&self.decrypt_also) {
            match self.decrypt_under(key, ciphertext, uid).await {
                Ok(plaintext) => return Ok(plaintext),
                Err(e) if e.is_incorrect_key() => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| KmsError::unexpected("no key to decrypt with")))
    }

    async fn decrypt_under(
        &self,
        key: &str,
        ciphertext: &[u8],
        uid: &str,
    ) -> Result<Vec<u8>, KmsError> {
        let out = self
            .client
            .decrypt()
            .key_id(key)
            .ciphertext_blob(Blob::new(ciphertext))
            .set_encryption_context(Some(self.context.clone()))
            .customize()
            .config_override(config_naming(uid))
            .send()
            .await
            .map_err(KmsError::from_sdk)?;
        out.plaintext
            .map(Blob::into_inner)
            .ok_or_else(|| KmsError::unexpected("Decrypt returned no Plaintext"))
    }
}

/// A per-call configuration whose User-Agent app name carries `uid`.
fn config_naming(uid: &str) -> aws_sdk_kms::config::Builder {
    let mut conf = aws_sdk_kms::config::Builder::default();
    conf.set_app_name(app_name(uid));
    conf
}

/// `k8s-kms` or `k8s-kms.uid.<uid>`, the uid reduced to the characters an app name may hold.
fn app_name(uid: &str) -> Option<AppName> {
    let cleaned: String = uid
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_' || *c == '.')
        .take(MAX_UID_CHARS)
        .collect();
    let name = if cleaned.is_empty() {
        APP_NAME.to_owned()
    } else {
        format!("{APP_NAME}.uid.{cleaned}")
    };
    // Only characters AppName accepts remain, so this does not fail in practice.
    AppName::new(name).ok()
}

/// An HTTPS client that trusts the certificates of the PEM bundle at `path`.
fn http_client_trusting(
    path: &std::path::Path,
) -> Result<aws_sdk_kms::config::SharedHttpClient, String> {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
    let pem = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let context = TlsContext::builder()
        .with_trust_store(TrustStore::empty().with_pem_certificate(pem))
        .build()
        .map_err(|e| format!("CA bundle {}: {e}", path.display()))?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(context)
        .build_https())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_uid_goes_into_a_valid_app_name() {
        let name = |uid: &str| app_name(uid).unwrap().to_string();
        assert_eq!(name(""), "k8s-kms");
        let uid = "0b3c4f5e-1a2b-4c3d-8e9f-001122334455";
        assert_eq!(name(uid), format!("k8s-kms.uid.{uid}"));
        assert_eq!(name("a b/c\"d"), "k8s-kms.uid.abcd");
        assert!(name(&"x".repeat(200)).len() <= 50);
    }
}
