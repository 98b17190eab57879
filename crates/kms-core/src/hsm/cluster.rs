//! HSM cluster records (what DescribeClusters shows, plus kmsd's private fields).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One HSM of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HsmRecord {
    /// `hsm-...`.
    pub hsm_id: String,
    /// Availability zone.
    pub availability_zone: String,
    /// Subnet of the cluster in that zone.
    pub subnet_id: String,
    /// `eni-...` (synthetic).
    pub eni_id: String,
    /// Synthetic private address.
    pub eni_ip: String,
    /// The declared token backing it.
    pub token_label: String,
    /// `ACTIVE`, `DEGRADED`, ...
    pub state: String,
    /// Why it is not ACTIVE.
    pub state_message: Option<String>,
}

/// The cluster's crypto user (`kmsuser`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CryptoUser {
    /// User name (`kmsuser`).
    pub name: String,
    /// Created with two-factor authentication (a key store cannot log in as such a user).
    pub two_factor: bool,
    /// Consecutive failed logins (kmsd provides the lockout PKCS#11 modules like SoftHSM2 lack).
    #[serde(default)]
    pub failed_logins: u32,
    /// The password the user was created (or restored) with, sealed under the root key (hex):
    /// what backups hold while no key store (which rotates it) is associated with the cluster.
    #[serde(default)]
    pub password_sealed_hex: Option<String>,
}

/// Failed logins after which the crypto user is locked out, as an HSM would.
pub const MAX_FAILED_LOGINS: u32 = 5;

/// An HSM cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRecord {
    /// Owning account.
    pub account: String,
    /// Region.
    pub region: String,
    /// `cluster-...`.
    pub cluster_id: String,
    /// CloudHSM cluster state.
    pub state: String,
    /// Why it is in that state.
    pub state_message: Option<String>,
    /// `hsm1.medium`, ...
    pub hsm_type: String,
    /// Creation time (ms).
    pub created_ms: i64,
    /// Availability zone -> subnet id.
    pub subnet_mapping: BTreeMap<String, String>,
    /// `sg-...`.
    pub security_group: String,
    /// `vpc-...`.
    pub vpc_id: String,
    /// HSMs.
    pub hsms: Vec<HsmRecord>,
    /// The cluster CSR (PEM) while uninitialised.
    pub csr_pem: String,
    /// SubjectPublicKeyInfo of the CSR key (hex).
    pub csr_spki_hex: String,
    /// The CSR private key sealed under the root key (hex).
    pub csr_key_sealed_hex: String,
    /// The signed cluster certificate (PEM), after InitializeCluster.
    pub cluster_certificate_pem: Option<String>,
    /// The owner's trust anchor (PEM), after InitializeCluster.
    pub trust_anchor_pem: Option<String>,
    /// Backup history: shared by clusters restored from each other's backups.
    pub lineage: String,
    /// The backup this cluster was restored from.
    pub source_backup_id: Option<String>,
    /// The crypto user, once created.
    pub crypto_user: Option<CryptoUser>,
}

impl ClusterRecord {
    /// ACTIVE HSMs.
    pub fn active_hsms(&self) -> impl Iterator<Item = &HsmRecord> {
        self.hsms.iter().filter(|h| h.state == "ACTIVE")
    }

    /// (hsm id, declaration) of every ACTIVE HSM that `fleet` declares.
    pub fn declared_active_hsms(
        &self,
        fleet: &super::HsmFleet,
    ) -> Vec<(String, super::DeclaredHsm)> {
        self.active_hsms()
            .filter_map(|h| {
                fleet
                    .hsm(&h.token_label)
                    .map(|d| (h.hsm_id.clone(), d.clone()))
            })
            .collect()
    }

    /// Number of distinct availability zones with an ACTIVE HSM.
    pub fn active_zones(&self) -> usize {
        let mut zones: Vec<&str> = self
            .active_hsms()
            .map(|h| h.availability_zone.as_str())
            .collect();
        zones.sort_unstable();
        zones.dedup();
        zones.len()
    }

    /// The cluster as the CloudHSM v2 API shows it.
    pub fn to_wire(&self) -> kms_types::cloudhsm::Cluster {
        use kms_types::cloudhsm as w;
        let initialized = self.cluster_certificate_pem.is_some();
        w::Cluster {
            cluster_id: Some(self.cluster_id.clone()),
            state: Some(self.state.clone()),
            state_message: self.state_message.clone(),
            hsm_type: Some(self.hsm_type.clone()),
            create_timestamp: Some(kms_types::Timestamp::from_millis(self.created_ms)),
            subnet_mapping: Some(self.subnet_mapping.clone()),
            security_group: Some(self.security_group.clone()),
            vpc_id: Some(self.vpc_id.clone()),
            source_backup_id: self.source_backup_id.clone(),
            backup_policy: Some("DEFAULT".into()),
            mode: Some("NON_FIPS".into()),
            network_type: Some("IPV4".into()),
            hsms: Some(
                self.hsms
                    .iter()
                    .map(|h| w::Hsm {
                        hsm_id: Some(h.hsm_id.clone()),
                        cluster_id: Some(self.cluster_id.clone()),
                        availability_zone: Some(h.availability_zone.clone()),
                        subnet_id: Some(h.subnet_id.clone()),
                        eni_id: Some(h.eni_id.clone()),
                        eni_ip: Some(h.eni_ip.clone()),
                        hsm_type: Some(self.hsm_type.clone()),
                        state: Some(h.state.clone()),
                        state_message: h.state_message.clone(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            certificates: Some(w::Certificates {
                cluster_csr: (!initialized).then(|| self.csr_pem.clone()),
                cluster_certificate: self.cluster_certificate_pem.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}
