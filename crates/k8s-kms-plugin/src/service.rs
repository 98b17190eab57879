//! The gRPC `v2.KeyManagementService` served to kube-apiserver.

use std::time::Duration;

use tonic::{Request, Response, Status};

use crate::backend::KmsBackend;
use crate::health::HealthCache;
use crate::proto::key_management_service_server::KeyManagementService;
use crate::proto::{
    DecryptRequest, DecryptResponse, EncryptRequest, EncryptResponse, StatusRequest, StatusResponse,
};

/// The plugin: kmsd behind the KMS v2 API.
#[derive(Debug)]
pub struct Plugin {
    kms: KmsBackend,
    health: HealthCache,
}

impl Plugin {
    /// A plugin calling `kms`, reusing health checks for `health_ttl`.
    pub fn new(kms: KmsBackend, health_ttl: Duration) -> Plugin {
        Plugin {
            kms,
            health: HealthCache::new(health_ttl),
        }
    }
}

#[tonic::async_trait]
impl KeyManagementService for Plugin {
    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let health = self.health.get(&self.kms).await;
        Ok(Response::new(StatusResponse {
            version: crate::API_VERSION.to_owned(),
            healthz: health.healthz,
            key_id: health.key_id,
        }))
    }

    async fn encrypt(
        &self,
        request: Request<EncryptRequest>,
    ) -> Result<Response<EncryptResponse>, Status> {
        let req = request.into_inner();
        // The key_id is learnt before encrypting: if a rotation happens in between, the DEK is
        // labelled with the older key_id and kube-apiserver re-seeds sooner, never later.
        let key_id = self.kms.current_key_id().await.map_err(|e| {
            tracing::warn!(uid = %req.uid, "Encrypt: DescribeKey failed: {e}");
            e.to_status()
        })?;
        let ciphertext = self
            .kms
            .encrypt(&req.plaintext, &req.uid)
            .await
            .map_err(|e| {
                tracing::warn!(uid = %req.uid, "Encrypt failed: {e}");
                e.to_status()
            })?;
        Ok(Response::new(EncryptResponse {
            ciphertext,
            key_id,
            annotations: Default::default(),
        }))
    }

    async fn decrypt(
        &self,
        request: Request<DecryptRequest>,
    ) -> Result<Response<DecryptResponse>, Status> {
        let req = request.into_inner();
        let plaintext = self
            .kms
            .decrypt(&req.ciphertext, &req.uid)
            .await
            .map_err(|e| {
                tracing::warn!(uid = %req.uid, key_id = %req.key_id, "Decrypt failed: {e}");
                e.to_status()
            })?;
        Ok(Response::new(DecryptResponse { plaintext }))
    }
}
