//! The XKS API v1 calls and their JSON shapes.

use std::sync::Arc;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::json;
use zeroize::Zeroizing;

use super::{XksFault, XksTransport};

/// Where and how to reach one key store's proxy.
#[derive(Clone)]
pub struct XksTarget {
    /// The external key store (`cks-...`) this target belongs to (metrics and logs).
    pub custom_key_store_id: String,
    /// `https://host`.
    pub uri_endpoint: String,
    /// `/prefix/kms/xks/v1`.
    pub uri_path: String,
    /// `PUBLIC_ENDPOINT` or `VPC_ENDPOINT_SERVICE`.
    pub connectivity: String,
    /// VPC endpoint service name (VPC connectivity).
    pub vpc_endpoint_service_name: Option<String>,
    /// SigV4 access key id.
    pub access_key_id: Zeroizing<String>,
    /// SigV4 secret.
    pub secret: Zeroizing<String>,
    /// Region of the key store (SigV4 scope).
    pub region: String,
}

impl XksTarget {
    /// Whether `other` reaches the same proxy the same way (endpoint, path, connectivity and
    /// credential).
    pub fn same_proxy(&self, other: &XksTarget) -> bool {
        self.custom_key_store_id == other.custom_key_store_id
            && self.uri_endpoint == other.uri_endpoint
            && self.uri_path == other.uri_path
            && self.connectivity == other.connectivity
            && self.vpc_endpoint_service_name == other.vpc_endpoint_service_name
            && *self.access_key_id == *other.access_key_id
            && *self.secret == *other.secret
            && self.region == other.region
    }
}

impl std::fmt::Debug for XksTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XksTarget")
            .field("custom_key_store_id", &self.custom_key_store_id)
            .field("uri_endpoint", &self.uri_endpoint)
            .field("uri_path", &self.uri_path)
            .finish_non_exhaustive()
    }
}

/// GetKeyMetadata answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyMetadata {
    /// `AES_256`.
    pub key_spec: String,
    /// e.g. `["ENCRYPT","DECRYPT"]`.
    pub key_usage: Vec<String>,
    /// `ENABLED` / `DISABLED`.
    pub key_status: String,
}

/// Encrypt answer, decoded.
#[derive(Debug, Clone)]
pub struct Encrypted {
    /// Ciphertext.
    pub ciphertext: Vec<u8>,
    /// IV (12 or 16 bytes).
    pub iv: Vec<u8>,
    /// 16-byte tag.
    pub tag: Vec<u8>,
    /// Optional vendor metadata (≤ 20 bytes).
    pub metadata: Vec<u8>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EncryptResponse {
    ciphertext: String,
    initialization_vector: String,
    authentication_tag: String,
    #[serde(default)]
    ciphertext_metadata: Option<String>,
    #[serde(default)]
    ciphertext_data_integrity_value: Option<String>,
}

#[derive(Deserialize)]
struct DecryptResponse {
    plaintext: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HealthResponse {
    xks_proxy_fleet_size: i64,
    #[allow(dead_code)]
    xks_proxy_vendor: String,
    #[allow(dead_code)]
    xks_proxy_model: String,
    #[allow(dead_code)]
    ekm_vendor: String,
    ekm_fleet_details: Vec<EkmDetail>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EkmDetail {
    #[allow(dead_code)]
    id: String,
    #[allow(dead_code)]
    model: String,
    health_status: String,
}

/// What a proxy's GetHealthStatus answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyHealth {
    /// `xksProxyFleetSize`: proxy instances behind the endpoint.
    pub proxy_fleet_size: i64,
    /// `healthStatus` of each external key manager (HSM) in `ekmFleetDetails`:
    /// `ACTIVE`, `DEGRADED` or `UNAVAILABLE`.
    pub ekm_health: Vec<String>,
}

impl ProxyHealth {
    /// How many external key managers report `status`.
    pub fn ekm_count(&self, status: &str) -> usize {
        self.ekm_health.iter().filter(|s| *s == status).count()
    }
}

/// requestMetadata of a call.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestMetadata {
    /// The KMS request id.
    pub kms_request_id: String,
    /// The KMS operation that caused the call.
    pub kms_operation: String,
    /// Caller ARN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws_principal_arn: Option<String>,
    /// KMS key ARN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms_key_arn: Option<String>,
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn unb64(s: &str, what: &str) -> Result<Vec<u8>, XksFault> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|_| XksFault::InvalidResponse(format!("{what} is not base64")))
}

/// The XKS API v1 over a transport.
#[derive(Clone)]
pub struct XksClient {
    transport: Arc<dyn XksTransport>,
}

impl XksClient {
    /// A client over `transport`.
    pub fn new(transport: Arc<dyn XksTransport>) -> Self {
        XksClient { transport }
    }

    fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, XksFault> {
        serde_json::from_slice(body).map_err(|e| XksFault::InvalidResponse(e.to_string()))
    }

    /// GetHealthStatus as the proxy answered it (every key manager may be UNAVAILABLE).
    pub async fn health_status(
        &self,
        t: &XksTarget,
        meta: RequestMetadata,
    ) -> Result<ProxyHealth, XksFault> {
        let body = serde_json::to_vec(&json!({"requestMetadata": meta}))
            .map_err(|e| XksFault::InvalidResponse(e.to_string()))?;
        let out: HealthResponse = Self::parse(&self.transport.call(t, "/health", body).await?)?;
        if out.ekm_fleet_details.is_empty() || out.ekm_fleet_details.len() > 10 {
            return Err(XksFault::InvalidResponse(
                "ekmFleetDetails must have 1 to 10 entries".into(),
            ));
        }
        Ok(ProxyHealth {
            proxy_fleet_size: out.xks_proxy_fleet_size,
            ekm_health: out
                .ekm_fleet_details
                .into_iter()
                .map(|e| e.health_status)
                .collect(),
        })
    }

    /// GetHealthStatus; an answer where every key manager is UNAVAILABLE counts as unreachable.
    pub async fn health(
        &self,
        t: &XksTarget,
        meta: RequestMetadata,
    ) -> Result<ProxyHealth, XksFault> {
        let health = self.health_status(t, meta).await?;
        if health.ekm_count("UNAVAILABLE") == health.ekm_health.len() {
            return Err(XksFault::Unreachable(
                "every external key manager is UNAVAILABLE".into(),
            ));
        }
        Ok(health)
    }

    /// GetKeyMetadata.
    pub async fn key_metadata(
        &self,
        t: &XksTarget,
        key_id: &str,
        meta: RequestMetadata,
    ) -> Result<KeyMetadata, XksFault> {
        let body = serde_json::to_vec(&json!({"requestMetadata": meta}))
            .map_err(|e| XksFault::InvalidResponse(e.to_string()))?;
        Self::parse(
            &self
                .transport
                .call(t, &format!("/keys/{key_id}/metadata"), body)
                .await?,
        )
    }

    /// Encrypt with AES_GCM, asking for (and checking) the ciphertext data integrity value.
    pub async fn encrypt(
        &self,
        t: &XksTarget,
        key_id: &str,
        meta: RequestMetadata,
        plaintext: &[u8],
        aad: &[u8],
    ) -> Result<Encrypted, XksFault> {
        let body = serde_json::to_vec(&json!({
            "requestMetadata": meta,
            "plaintext": b64(plaintext),
            "encryptionAlgorithm": "AES_GCM",
            "additionalAuthenticatedData": b64(aad),
            "ciphertextDataIntegrityValueAlgorithm": "SHA_256",
        }))
        .map_err(|e| XksFault::InvalidResponse(e.to_string()))?;
        let out: EncryptResponse = Self::parse(
            &self
                .transport
                .call(t, &format!("/keys/{key_id}/encrypt"), body)
                .await?,
        )?;
        let e = Encrypted {
            ciphertext: unb64(&out.ciphertext, "ciphertext")?,
            iv: unb64(&out.initialization_vector, "initializationVector")?,
            tag: unb64(&out.authentication_tag, "authenticationTag")?,
            metadata: out
                .ciphertext_metadata
                .as_deref()
                .map(|m| unb64(m, "ciphertextMetadata"))
                .transpose()?
                .unwrap_or_default(),
        };
        if !matches!(e.iv.len(), 12 | 16)
            || e.tag.len() != 16
            || e.metadata.len() > 20
            || e.ciphertext.len() != plaintext.len()
        {
            return Err(XksFault::InvalidResponse(
                "encrypt response sizes are outside the specification".into(),
            ));
        }
        let cdiv = out.ciphertext_data_integrity_value.ok_or_else(|| {
            XksFault::InvalidResponse("ciphertextDataIntegrityValue missing".into())
        })?;
        if unb64(&cdiv, "ciphertextDataIntegrityValue")? != cdiv_of(aad, &e).to_vec() {
            return Err(XksFault::InvalidResponse(
                "ciphertextDataIntegrityValue does not match".into(),
            ));
        }
        Ok(e)
    }

    /// Decrypt with AES_GCM.
    pub async fn decrypt(
        &self,
        t: &XksTarget,
        key_id: &str,
        meta: RequestMetadata,
        e: &Encrypted,
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, XksFault> {
        let mut req = json!({
            "requestMetadata": meta,
            "ciphertext": b64(&e.ciphertext),
            "encryptionAlgorithm": "AES_GCM",
            "initializationVector": b64(&e.iv),
            "authenticationTag": b64(&e.tag),
            "additionalAuthenticatedData": b64(aad),
        });
        if !e.metadata.is_empty() {
            req["ciphertextMetadata"] = json!(b64(&e.metadata));
        }
        let body =
            serde_json::to_vec(&req).map_err(|e| XksFault::InvalidResponse(e.to_string()))?;
        let out: DecryptResponse = Self::parse(
            &self
                .transport
                .call(t, &format!("/keys/{key_id}/decrypt"), body)
                .await?,
        )?;
        let pt = Zeroizing::new(unb64(&out.plaintext, "plaintext")?);
        if pt.len() != e.ciphertext.len() {
            return Err(XksFault::InvalidResponse(
                "plaintext length differs from ciphertext length".into(),
            ));
        }
        Ok(pt)
    }
}

/// CDIV: SHA-256(aad || metadata || iv || ciphertext || tag).
pub fn cdiv_of(aad: &[u8], e: &Encrypted) -> [u8; 32] {
    let mut h = kms_crypto::Sha256Context::new();
    for part in [aad, &e.metadata, &e.iv, &e.ciphertext, &e.tag] {
        h.update(part);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CDIV test vector of the XKS proxy API specification.
    #[test]
    fn spec_cdiv_vector() {
        let d = |s: &str| base64::engine::general_purpose::STANDARD.decode(s).unwrap();
        let e = Encrypted {
            ciphertext: d("ghxkK1txeDNn3q8Y"),
            iv: d("HMrlRw85cAJUd5Ax"),
            tag: d("vBxN2ncH1oEkR8WVXpmyYQ=="),
            metadata: b"key_version=1".to_vec(),
        };
        assert_eq!(
            b64(&cdiv_of(b"project=nile,department=marketing", &e)),
            "qHA/ImC9h5HsLRXqCyPmWgYx7tzyoTplzILbP0fPXsc="
        );
    }
}
