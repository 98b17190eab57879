//! Status's health check: a real Encrypt/Decrypt round trip through kmsd plus DescribeKey for
//! the current key_id, its result reused for a few seconds (kube-apiserver polls Status).

use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::backend::KmsBackend;

/// The probe plaintext of the health round trip (not secret).
const PROBE: &[u8] = b"kmsd k8s-kms-plugin health probe";

/// The outcome of one health check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// `ok`, or why not.
    pub healthz: String,
    /// The current key_id (empty when it could not be learnt).
    pub key_id: String,
}

/// Runs health checks and remembers the last one for `ttl`.
#[derive(Debug)]
pub struct HealthCache {
    ttl: Duration,
    last: Mutex<Option<(Instant, Health)>>,
}

impl HealthCache {
    /// A cache that reuses a result for `ttl`.
    pub fn new(ttl: Duration) -> HealthCache {
        HealthCache {
            ttl,
            last: Mutex::new(None),
        }
    }

    /// The cached result if fresh, else a new check (concurrent callers wait for one check).
    pub async fn get(&self, kms: &KmsBackend) -> Health {
        let mut last = self.last.lock().await;
        if let Some((at, health)) = last.as_ref() {
            if at.elapsed() < self.ttl {
                return health.clone();
            }
        }
        let health = check(kms).await;
        *last = Some((Instant::now(), health.clone()));
        health
    }
}

/// One health check: key_id from DescribeKey, then Encrypt and Decrypt of a probe.
async fn check(kms: &KmsBackend) -> Health {
    let key_id = match kms.current_key_id().await {
        Ok(k) => k,
        Err(e) => return unhealthy(String::new(), &format!("DescribeKey: {e}")),
    };
    let ciphertext = match kms.encrypt(PROBE, "healthz").await {
        Ok(c) => c,
        Err(e) => return unhealthy(key_id, &format!("Encrypt: {e}")),
    };
    match kms.decrypt(&ciphertext, "healthz").await {
        Ok(p) if p == PROBE => Health {
            healthz: "ok".into(),
            key_id,
        },
        Ok(_) => unhealthy(key_id, "Decrypt returned other bytes than were encrypted"),
        Err(e) => unhealthy(key_id, &format!("Decrypt: {e}")),
    }
}

fn unhealthy(key_id: String, why: &str) -> Health {
    tracing::warn!("k8s-kms-plugin health check failed: {why}");
    Health {
        healthz: why.to_owned(),
        key_id,
    }
}
