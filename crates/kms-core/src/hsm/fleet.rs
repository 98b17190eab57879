//! What the operator declares: the HSMs (PKCS#11 tokens) kmsd may use, the subnets, and the
//! security group rules of clusters.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// One HSM: a PKCS#11 token in an availability zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredHsm {
    /// PKCS#11 module (shared library) path.
    pub module: String,
    /// Token label (tokens are found by label: slot ids change across restarts).
    pub token_label: String,
    /// Availability zone this HSM stands in, e.g. `us-east-1a`.
    pub availability_zone: String,
    /// File holding the token's SO PIN.
    #[serde(default)]
    pub so_pin_file: Option<String>,
    /// Environment variable holding the token's SO PIN.
    #[serde(default)]
    pub so_pin_env: Option<String>,
}

/// A backup-vault token: never an HSM of a cluster, it keeps the cluster wrapping key of one
/// backup history (lineage) once no HSM of that history holds it, so that the tokens of
/// deleted HSMs can be erased and the history's backups still restored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredVault {
    /// PKCS#11 module (shared library) path.
    pub module: String,
    /// Token label.
    pub token_label: String,
    /// File holding the token's SO PIN.
    #[serde(default)]
    pub so_pin_file: Option<String>,
    /// Environment variable holding the token's SO PIN.
    #[serde(default)]
    pub so_pin_env: Option<String>,
}

impl DeclaredVault {
    /// The vault as a token the driver opens (it stands in no availability zone).
    pub fn as_hsm(&self) -> DeclaredHsm {
        DeclaredHsm {
            module: self.module.clone(),
            token_label: self.token_label.clone(),
            availability_zone: String::new(),
            so_pin_file: self.so_pin_file.clone(),
            so_pin_env: self.so_pin_env.clone(),
        }
    }
}

/// A subnet clusters can be created in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredSubnet {
    /// `subnet-...`.
    pub id: String,
    /// Its availability zone.
    pub availability_zone: String,
    /// Private subnet (key stores need private subnets).
    #[serde(default = "yes")]
    pub private: bool,
}

fn yes() -> bool {
    true
}

/// One security group rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SgRule {
    /// `inbound` or `outbound`.
    pub direction: String,
    /// `tcp`.
    pub protocol: String,
    /// First port.
    pub from_port: u16,
    /// Last port.
    pub to_port: u16,
    /// `self` (the group itself) or a CIDR.
    pub peer: String,
}

/// The rules of one cluster's security group, overriding the default ones CloudHSM creates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredSecurityGroup {
    /// Cluster the group belongs to.
    pub cluster_id: String,
    /// Its rules.
    #[serde(default)]
    pub rules: Vec<SgRule>,
}

/// Everything the operator declared.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HsmFleet {
    /// HSMs.
    #[serde(default, rename = "hsm")]
    pub hsms: Vec<DeclaredHsm>,
    /// Subnets.
    #[serde(default, rename = "subnet")]
    pub subnets: Vec<DeclaredSubnet>,
    /// Security group overrides.
    #[serde(default, rename = "security_group")]
    pub security_groups: Vec<DeclaredSecurityGroup>,
    /// Backup-vault tokens.
    #[serde(default, rename = "backup_vault")]
    pub backup_vaults: Vec<DeclaredVault>,
}

impl HsmFleet {
    /// The rules of a cluster's security group: the declared override, or the default
    /// CloudHSM creates (TCP 2223-2225 inbound and outbound to itself).
    pub fn security_group_rules(&self, cluster_id: &str) -> Vec<SgRule> {
        match self
            .security_groups
            .iter()
            .find(|g| g.cluster_id == cluster_id)
        {
            Some(g) => g.rules.clone(),
            None => ["inbound", "outbound"]
                .iter()
                .map(|d| SgRule {
                    direction: (*d).into(),
                    protocol: "tcp".into(),
                    from_port: 2223,
                    to_port: 2225,
                    peer: "self".into(),
                })
                .collect(),
        }
    }

    /// Whether the group lets the HSMs talk to each other and to kmsd on 2223-2225 both ways.
    pub fn security_group_ok(&self, cluster_id: &str) -> bool {
        let rules = self.security_group_rules(cluster_id);
        ["inbound", "outbound"].iter().all(|d| {
            rules.iter().any(|r| {
                r.direction == *d
                    && r.protocol == "tcp"
                    && r.from_port <= 2223
                    && r.to_port >= 2225
                    && r.peer == "self"
            })
        })
    }

    /// A declared subnet by id.
    pub fn subnet(&self, id: &str) -> Option<&DeclaredSubnet> {
        self.subnets.iter().find(|s| s.id == id)
    }

    /// A declared HSM by token label.
    pub fn hsm(&self, token_label: &str) -> Option<&DeclaredHsm> {
        self.hsms.iter().find(|h| h.token_label == token_label)
    }

    /// A declared HSM or backup-vault token by label.
    pub fn token(&self, token_label: &str) -> Option<DeclaredHsm> {
        self.hsm(token_label).cloned().or_else(|| {
            self.backup_vaults
                .iter()
                .find(|v| v.token_label == token_label)
                .map(DeclaredVault::as_hsm)
        })
    }
}

/// Where the fleet declaration comes from; re-read at every control-plane decision so an
/// operator's change (a removed subnet or rule) takes effect at once.
pub trait FleetSource: Send + Sync {
    /// The current declaration.
    fn load(&self) -> Result<HsmFleet, String>;
    /// The SO PIN of a declared HSM (from its file or environment variable).
    fn so_pin(&self, hsm: &DeclaredHsm) -> Result<Zeroizing<String>, String>;
    /// Whether the crypto user of `cluster_id` is logged in by another client (a CloudHSM
    /// management session), which a key store connect must refuse with USER_LOGGED_IN.
    fn user_logged_in_elsewhere(&self, cluster_id: &str) -> bool;
}

/// A fixed fleet (tests, and deployments without HSMs).
#[derive(Debug, Default)]
pub struct StaticFleet {
    /// The declaration.
    pub fleet: std::sync::RwLock<HsmFleet>,
    /// SO PIN of every token.
    pub so_pin: String,
    /// Clusters whose user is "logged in elsewhere".
    pub logged_in_elsewhere: std::sync::RwLock<Vec<String>>,
}

impl FleetSource for StaticFleet {
    fn load(&self) -> Result<HsmFleet, String> {
        self.fleet
            .read()
            .map(|f| f.clone())
            .map_err(|_| "fleet lock poisoned".into())
    }
    fn so_pin(&self, _hsm: &DeclaredHsm) -> Result<Zeroizing<String>, String> {
        Ok(Zeroizing::new(self.so_pin.clone()))
    }
    fn user_logged_in_elsewhere(&self, cluster_id: &str) -> bool {
        self.logged_in_elsewhere
            .read()
            .map(|l| l.iter().any(|c| c == cluster_id))
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_security_group_is_valid_and_a_removed_rule_is_not() {
        let mut fleet = HsmFleet::default();
        assert!(fleet.security_group_ok("cluster-a"));
        let mut rules = fleet.security_group_rules("cluster-a");
        rules.retain(|r| r.direction == "inbound");
        fleet.security_groups.push(DeclaredSecurityGroup {
            cluster_id: "cluster-a".into(),
            rules,
        });
        assert!(!fleet.security_group_ok("cluster-a"));
        assert!(fleet.security_group_ok("cluster-b"));
    }

    #[test]
    fn parses_a_declaration() {
        let f: HsmFleet = serde_json::from_value(serde_json::json!({
            "hsm": [{"module": "/m.so", "token_label": "a", "availability_zone": "us-east-1a", "so_pin_env": "SO_A"}],
            "subnet": [{"id": "subnet-1", "availability_zone": "us-east-1a"}],
        }))
        .unwrap();
        assert!(f.subnet("subnet-1").unwrap().private);
        assert!(f.hsm("a").is_some());
        assert!(f.backup_vaults.is_empty());
        let f: HsmFleet = serde_json::from_value(serde_json::json!({
            "backup_vault": [{"module": "/m.so", "token_label": "vault", "so_pin_env": "SO_V"}],
        }))
        .unwrap();
        assert!(f.hsm("vault").is_none(), "a vault is no HSM");
        assert_eq!(
            f.token("vault").unwrap().so_pin_env.as_deref(),
            Some("SO_V")
        );
    }
}
