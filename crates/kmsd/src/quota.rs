//! Request quotas (`--quotas aws|off|FILE`): a token bucket per (quota, Region, account or
//! custom key store), refilled at the quota's rate and holding one second's worth, so a request
//! beyond it gets AWS's `ThrottlingException` (HTTP 400, "Rate exceeded"), which SDKs retry.
//!
//! Which quota a request draws on is decided by kms-core ([`kms_core::QuotaClass`]); the
//! figures are a [`QuotaTable`]: AWS's documented defaults ([`QuotaTable::aws`]), optionally
//! overridden by a TOML file. The buckets are [`governor`] GCRA rate limiters, one keyed limiter
//! per (quota, Region) keyed by account (or key store id).
//!
//! Across a cluster every node enforces `rate / nodes` (the file's `nodes`), so N nodes behind
//! a balancer that spreads requests evenly admit about the quota together.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use kms_core::QuotaCharge;
use kms_types::{ErrorCode, KmsError};

/// The message AWS sends with `ThrottlingException`.
pub const THROTTLED_MESSAGE: &str = "Rate exceeded";

/// Regions whose symmetric cryptographic-operations quota is 20,000/s (AWS documentation).
const SYMMETRIC_20K: &[&str] = &[
    "us-east-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-northeast-1",
    "eu-central-1",
    "eu-west-2",
];
/// Regions whose symmetric cryptographic-operations quota is 100,000/s.
const SYMMETRIC_100K: &[&str] = &["us-east-1", "us-west-2", "eu-west-1"];

/// AWS's default request quotas (requests per second), by quota name. Cryptographic
/// operations: the KMS Developer Guide's "Request quotas" page; the other figures: its
/// per-operation table. All are adjustable in AWS and here (a quota file).
const AWS_DEFAULTS: &[(&str, f64)] = &[
    ("symmetric", 10_000.0),
    ("rsa", 1_000.0),
    ("ecc", 1_000.0),
    ("ml-dsa", 1_000.0),
    ("custom-key-store", 1_800.0),
    ("GenerateDataKeyPair:RSA_2048", 1.0),
    ("GenerateDataKeyPair:RSA_3072", 0.5),
    ("GenerateDataKeyPair:RSA_4096", 0.1),
    ("GenerateDataKeyPair:ECC_NIST_P256", 25.0),
    ("GenerateDataKeyPair:ECC_NIST_P384", 10.0),
    ("GenerateDataKeyPair:ECC_NIST_P521", 5.0),
    ("GenerateDataKeyPair:ECC_SECG_P256K1", 25.0),
    ("CancelKeyDeletion", 5.0),
    ("ConnectCustomKeyStore", 5.0),
    ("CreateAlias", 5.0),
    ("CreateCustomKeyStore", 5.0),
    ("CreateGrant", 50.0),
    ("CreateKey", 5.0),
    ("DeleteAlias", 5.0),
    ("DeleteCustomKeyStore", 5.0),
    ("DeleteImportedKeyMaterial", 5.0),
    ("DescribeCustomKeyStores", 5.0),
    ("DescribeKey", 2_000.0),
    ("DisableKey", 5.0),
    ("DisableKeyRotation", 5.0),
    ("DisconnectCustomKeyStore", 5.0),
    ("EnableKey", 5.0),
    ("EnableKeyRotation", 5.0),
    ("GetKeyPolicy", 30.0),
    ("GetKeyRotationStatus", 30.0),
    ("GetParametersForImport", 0.25),
    ("GetPublicKey", 5.0),
    ("ImportKeyMaterial", 5.0),
    ("ListAliases", 100.0),
    ("ListGrants", 100.0),
    ("ListKeyPolicies", 100.0),
    ("ListKeys", 100.0),
    ("ListResourceTags", 100.0),
    ("ListRetirableGrants", 5.0),
    ("PutKeyPolicy", 5.0),
    ("RetireGrant", 15.0),
    ("RevokeGrant", 15.0),
    ("ScheduleKeyDeletion", 5.0),
    ("TagResource", 5.0),
    ("UntagResource", 5.0),
    ("UpdateAlias", 5.0),
    ("UpdateCustomKeyStore", 5.0),
    ("UpdateKeyDescription", 5.0),
];

/// Quota names that are not operation names.
const CLASS_NAMES: &[&str] = &[
    "symmetric",
    "rsa",
    "ecc",
    "ml-dsa",
    "ml-kem",
    "custom-key-store",
];

/// Requests-per-second figures by quota name, with per-Region overrides. A quota without a
/// figure is not limited.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuotaTable {
    rates: HashMap<String, f64>,
    regions: HashMap<String, HashMap<String, f64>>,
    nodes: u32,
}

/// The quota file (`--quotas FILE`).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct QuotaFile {
    /// `aws` (the default) or `none`: the figures the file starts from.
    #[serde(default)]
    preset: Option<String>,
    /// Nodes sharing the quotas; each enforces 1/nodes of every figure.
    #[serde(default)]
    nodes: Option<u32>,
    /// Requests per second by quota name.
    #[serde(default)]
    rates: HashMap<String, f64>,
    /// Per-Region figures, over `rates`.
    #[serde(default)]
    regions: HashMap<String, HashMap<String, f64>>,
}

fn check_name(name: &str) -> Result<(), String> {
    let known = CLASS_NAMES.contains(&name)
        || name
            .strip_prefix("GenerateDataKeyPair:")
            .is_some_and(|spec| !spec.is_empty())
        || kms_core::is_model_operation(name);
    if known {
        Ok(())
    } else {
        Err(format!(
            "unknown quota {name:?} (one of {}, GenerateDataKeyPair:<KeyPairSpec>, or a KMS operation name)",
            CLASS_NAMES.join(", ")
        ))
    }
}

fn check_rate(name: &str, rate: f64) -> Result<(), String> {
    if rate.is_finite() && rate > 0.0 {
        Ok(())
    } else {
        Err(format!(
            "quota {name:?}: the rate must be a positive number of requests per second"
        ))
    }
}

impl QuotaTable {
    /// AWS's documented defaults, with the Regions whose symmetric quota is higher.
    pub fn aws() -> QuotaTable {
        let mut regions: HashMap<String, HashMap<String, f64>> = HashMap::new();
        for (list, rate) in [(SYMMETRIC_20K, 20_000.0), (SYMMETRIC_100K, 100_000.0)] {
            for r in list {
                regions
                    .entry((*r).to_owned())
                    .or_default()
                    .insert("symmetric".into(), rate);
            }
        }
        QuotaTable {
            rates: AWS_DEFAULTS
                .iter()
                .map(|(n, r)| ((*n).to_owned(), *r))
                .collect(),
            regions,
            nodes: 1,
        }
    }

    /// Parses a quota file (see the README's "Request quotas").
    pub fn from_toml(text: &str) -> Result<QuotaTable, String> {
        let file: QuotaFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut table = match file.preset.as_deref() {
            None | Some("aws") => QuotaTable::aws(),
            Some("none") => QuotaTable {
                nodes: 1,
                ..QuotaTable::default()
            },
            Some(other) => {
                return Err(format!("preset must be \"aws\" or \"none\", not {other:?}"))
            }
        };
        if let Some(n) = file.nodes {
            if n == 0 {
                return Err("nodes must be at least 1".into());
            }
            table.nodes = n;
        }
        for (name, rate) in file.rates {
            check_name(&name)?;
            check_rate(&name, rate)?;
            // A figure for every Region replaces the preset's Regional figures of that quota.
            for per_region in table.regions.values_mut() {
                per_region.remove(&name);
            }
            table.rates.insert(name, rate);
        }
        for (region, rates) in file.regions {
            for (name, rate) in rates {
                check_name(&name)?;
                check_rate(&name, rate)?;
                table
                    .regions
                    .entry(region.clone())
                    .or_default()
                    .insert(name, rate);
            }
        }
        Ok(table)
    }

    /// This node's figure for quota `name` in `region` (the cluster figure / nodes).
    pub fn rate(&self, name: &str, region: &str) -> Option<f64> {
        let rate = self
            .regions
            .get(region)
            .and_then(|r| r.get(name))
            .or_else(|| self.rates.get(name))?;
        Some(rate / f64::from(self.nodes.max(1)))
    }
}

/// `--quotas` value: `off`, `aws`, or a quota file; without it, `aws` unless `--dev`.
pub fn from_setting(setting: Option<&str>, dev: bool) -> Result<Option<Arc<Quotas>>, String> {
    let table = match setting {
        Some("off") => None,
        None if dev => None,
        None | Some("aws") => Some(QuotaTable::aws()),
        Some(path) => {
            let text = std::fs::read_to_string(Path::new(path))
                .map_err(|e| format!("reading the quota file {path}: {e}"))?;
            Some(QuotaTable::from_toml(&text).map_err(|e| format!("quota file {path}: {e}"))?)
        }
    };
    Ok(table.map(|t| Arc::new(Quotas::new(t))))
}

type Limiter = DefaultKeyedRateLimiter<String>;

/// The quotas in force: the figures and the token buckets.
#[derive(Debug)]
pub struct Quotas {
    table: QuotaTable,
    /// (quota name, Region) -> buckets by account (or key store id), created on first use.
    limiters: Mutex<HashMap<(String, String), Arc<Limiter>>>,
}

/// A GCRA quota of `rate` per second holding one second's worth (at least one request).
fn governor_quota(rate: f64) -> Option<Quota> {
    let period = Duration::from_secs_f64(1.0 / rate);
    let burst = NonZeroU32::new((rate.floor() as u32).max(1))?;
    Some(Quota::with_period(period)?.allow_burst(burst))
}

impl Quotas {
    /// Quotas with these figures.
    pub fn new(table: QuotaTable) -> Quotas {
        Quotas {
            table,
            limiters: Mutex::new(HashMap::new()),
        }
    }

    /// The figures.
    pub fn table(&self) -> &QuotaTable {
        &self.table
    }

    fn limiter(&self, name: &str, region: &str) -> Option<Arc<Limiter>> {
        let rate = self.table.rate(name, region)?;
        let mut map = self.limiters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = map.get(&(name.to_owned(), region.to_owned())) {
            return Some(l.clone());
        }
        let l = Arc::new(RateLimiter::keyed(governor_quota(rate)?));
        map.insert((name.to_owned(), region.to_owned()), l.clone());
        Some(l)
    }

    /// Takes `charges` from the caller's buckets, or answers `ThrottlingException` if one of
    /// them is empty.
    pub fn admit(
        &self,
        account: &str,
        region: &str,
        charges: &[QuotaCharge],
    ) -> Result<(), KmsError> {
        for charge in charges {
            let name = charge.class.name();
            let Some(limiter) = self.limiter(&name, region) else {
                continue;
            };
            let owner = charge.class.owner(account).to_owned();
            let n = NonZeroU32::new(charge.cost.max(1)).unwrap_or(NonZeroU32::MIN);
            // A cost above the bucket (e.g. 3 on a 1/s quota) is charged as a full bucket.
            let admitted = match limiter.check_key_n(&owner, n) {
                Ok(r) => r.is_ok(),
                Err(_) => limiter.check_key(&owner).is_ok(),
            };
            if !admitted {
                tracing::debug!(quota = %name, region, "request throttled");
                return Err(KmsError::new(
                    ErrorCode::ThrottlingException,
                    THROTTLED_MESSAGE,
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kms_core::QuotaClass;

    fn charge(class: QuotaClass) -> Vec<QuotaCharge> {
        vec![QuotaCharge { class, cost: 1 }]
    }

    #[test]
    fn aws_preset_has_the_documented_figures() {
        let t = QuotaTable::aws();
        assert_eq!(t.rate("symmetric", "ca-central-1"), Some(10_000.0));
        assert_eq!(t.rate("symmetric", "eu-west-2"), Some(20_000.0));
        assert_eq!(t.rate("symmetric", "us-east-1"), Some(100_000.0));
        assert_eq!(t.rate("rsa", "us-east-1"), Some(1_000.0));
        assert_eq!(t.rate("CreateKey", "us-east-1"), Some(5.0));
        assert_eq!(t.rate("GetParametersForImport", "us-east-1"), Some(0.25));
        assert_eq!(t.rate("ml-kem", "us-east-1"), None);
    }

    #[test]
    fn a_file_overrides_the_preset_per_region_and_shares_across_nodes() {
        let t = QuotaTable::from_toml(
            "nodes = 2\n[rates]\nsymmetric = 50\nCreateKey = 2\n[regions.eu-west-1]\nrsa = 8\n",
        )
        .unwrap();
        // A figure for every Region replaces the preset's Regional ones.
        assert_eq!(t.rate("symmetric", "us-east-1"), Some(25.0));
        assert_eq!(t.rate("CreateKey", "eu-west-1"), Some(1.0));
        assert_eq!(t.rate("rsa", "eu-west-1"), Some(4.0));
        assert_eq!(t.rate("rsa", "us-east-1"), Some(500.0));
        let none = QuotaTable::from_toml("preset = \"none\"\n[rates]\nListKeys = 1\n").unwrap();
        assert_eq!(none.rate("symmetric", "us-east-1"), None);
        assert_eq!(none.rate("ListKeys", "us-east-1"), Some(1.0));
        for bad in [
            "[rates]\nsymetric = 5\n",
            "[rates]\nCreateKey = 0\n",
            "preset = \"fast\"\n",
            "nodes = 0\n",
            "rate = 5\n",
        ] {
            assert!(QuotaTable::from_toml(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_readme_example_parses() {
        let readme = include_str!("../../../README.md");
        let start = readme.find("```toml\npreset = \"aws\"").unwrap() + "```toml\n".len();
        let text = &readme[start..start + readme[start..].find("```").unwrap()];
        let t = QuotaTable::from_toml(text).unwrap();
        assert!((t.rate("CreateKey", "us-east-1").unwrap() - 10.0 / 3.0).abs() < 1e-9);
        assert!((t.rate("symmetric", "eu-west-1").unwrap() - 50_000.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn a_burst_beyond_the_bucket_is_throttled_per_account_and_class() {
        let q = Quotas::new(
            QuotaTable::from_toml("preset = \"none\"\n[rates]\nsymmetric = 3\nCreateKey = 1\n")
                .unwrap(),
        );
        let sym = charge(QuotaClass::Symmetric);
        for _ in 0..3 {
            q.admit("111111111111", "us-east-1", &sym).unwrap();
        }
        let e = q.admit("111111111111", "us-east-1", &sym).unwrap_err();
        assert_eq!(e.code, ErrorCode::ThrottlingException);
        assert_eq!(e.code.status(), 400);
        assert_eq!(e.message, "Rate exceeded");
        // Another account, another Region, another quota: their own buckets.
        q.admit("222222222222", "us-east-1", &sym).unwrap();
        q.admit("111111111111", "eu-west-1", &sym).unwrap();
        q.admit(
            "111111111111",
            "us-east-1",
            &charge(QuotaClass::Operation("CreateKey".into())),
        )
        .unwrap();
        // Unlimited quotas are not counted.
        for _ in 0..100 {
            q.admit("111111111111", "us-east-1", &charge(QuotaClass::Rsa))
                .unwrap();
        }
    }

    #[test]
    fn custom_key_store_quota_is_per_store_and_weighted() {
        let q = Quotas::new(
            QuotaTable::from_toml("preset = \"none\"\n[rates]\ncustom-key-store = 3\n").unwrap(),
        );
        let gdk = vec![QuotaCharge {
            class: QuotaClass::CustomKeyStore("cks-a".into()),
            cost: 3,
        }];
        q.admit("111111111111", "us-east-1", &gdk).unwrap();
        // The store's bucket is empty for every account.
        assert!(q.admit("222222222222", "us-east-1", &gdk).is_err());
        let other = vec![QuotaCharge {
            class: QuotaClass::CustomKeyStore("cks-b".into()),
            cost: 1,
        }];
        q.admit("222222222222", "us-east-1", &other).unwrap();
    }

    #[test]
    fn the_setting_chooses_off_aws_or_a_file() {
        assert!(from_setting(Some("off"), false).unwrap().is_none());
        assert!(from_setting(None, true).unwrap().is_none());
        assert_eq!(
            from_setting(None, false).unwrap().unwrap().table(),
            &QuotaTable::aws()
        );
        assert!(from_setting(Some("aws"), true).unwrap().is_some());
        assert!(from_setting(Some("/no/such/file.toml"), false).is_err());
    }
}
