//! Records for store tests (the backends' unit tests and the conformance suite).

use std::collections::BTreeMap;

use kms_core::model::KeyRecord;

/// A symmetric key record with nothing but its identity, state and deletion date set.
pub fn sample_key(
    account: &str,
    region: &str,
    key_id: &str,
    state: &str,
    deletion_date_ms: Option<i64>,
) -> KeyRecord {
    KeyRecord {
        account: account.into(),
        region: region.into(),
        key_id: key_id.into(),
        created_ms: 1,
        description: String::new(),
        key_spec: "SYMMETRIC_DEFAULT".into(),
        key_usage: "ENCRYPT_DECRYPT".into(),
        origin: "AWS_KMS".into(),
        state: state.into(),
        deletion_date_ms,
        pending_window_days: None,
        policy: "{}".into(),
        tags: BTreeMap::new(),
        materials: vec![],
        multi_region: false,
        public_key_hex: None,
        custom_key_store_id: None,
        cloud_hsm_cluster_id: None,
        xks_key_id: None,
        rotation: None,
        primary_region: None,
        replica_regions: vec![],
    }
}
