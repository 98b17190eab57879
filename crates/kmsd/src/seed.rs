//! Seed files (`kmsd serve --seed FILE`): deterministic fixtures for test suites. At every start
//! kmsd creates what the file lists and is missing (accounts, users with fixed access keys and
//! identity policies, keys with fixed ids and optionally fixed material, their aliases, tags,
//! policies and grants); what exists is left as it is, so restarting with the same file creates
//! no duplicates. Fixed key material is a test feature: it needs `--dev` or
//! `--allow-seeded-material`, and such keys are created with Origin EXTERNAL (imported
//! material), so DescribeKey never passes them off as generated ones.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use serde::Deserialize;
use zeroize::Zeroizing;

use kms_core::{Caller, Service};
use kms_types::{CreateAliasRequest, CreateGrantRequest, CreateKeyRequest, ErrorCode, Tag};

/// A seed file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedFile {
    /// Accounts to create (each with its `admin` user, as `kmsd admin create-account`).
    #[serde(default)]
    pub accounts: Vec<String>,
    /// Users, their identity policies and fixed access keys.
    #[serde(default)]
    pub users: Vec<SeedUser>,
    /// Keys with fixed ids.
    #[serde(default)]
    pub keys: Vec<SeedKey>,
}

/// A user of a seed file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedUser {
    /// Account (default: `--account-id`).
    pub account: Option<String>,
    /// User name.
    pub name: String,
    /// Identity policies by name (JSON documents).
    #[serde(default)]
    pub policies: BTreeMap<String, String>,
    /// Access keys with fixed ids and secrets.
    #[serde(default)]
    pub access_keys: Vec<SeedAccessKey>,
}

/// A fixed access key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedAccessKey {
    /// `AKIA...`.
    pub id: String,
    /// The secret access key.
    pub secret: Zeroizing<String>,
}

impl std::fmt::Debug for SeedAccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeedAccessKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A key of a seed file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedKey {
    /// Key id (UUID, or `mrk-` + 32 hex digits with `multi_region = true`).
    pub id: String,
    /// Account (default: `--account-id`).
    pub account: Option<String>,
    /// Region (default `us-east-1`).
    pub region: Option<String>,
    /// KeySpec (default SYMMETRIC_DEFAULT).
    pub key_spec: Option<String>,
    /// KeyUsage.
    pub key_usage: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Key policy (JSON; default: the default key policy).
    pub policy: Option<String>,
    /// Multi-Region primary key.
    #[serde(default)]
    pub multi_region: bool,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Aliases (`alias/...`).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Fixed key material: `material_hex` or `material_base64` (symmetric, HMAC), or
    /// `material_pem` (a PKCS#8 private key for asymmetric keys). Needs `--dev` or
    /// `--allow-seeded-material`.
    pub material_hex: Option<Zeroizing<String>>,
    /// See `material_hex`.
    pub material_base64: Option<Zeroizing<String>>,
    /// See `material_hex`.
    pub material_pem: Option<Zeroizing<String>>,
    /// Grants (created by name: the same name is not granted twice).
    #[serde(default)]
    pub grants: Vec<SeedGrant>,
}

/// A grant of a seeded key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedGrant {
    /// Grant name (what makes it idempotent).
    pub name: String,
    /// Grantee principal ARN.
    pub grantee: String,
    /// Operations.
    pub operations: Vec<String>,
    /// Retiring principal ARN.
    pub retiring: Option<String>,
}

/// Reads a seed file (TOML).
pub fn read(path: &Path) -> Result<SeedFile, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

impl SeedKey {
    /// The fixed material, decoded, if the file gives one.
    fn material(&self) -> Result<Option<Zeroizing<Vec<u8>>>, String> {
        let given = [
            self.material_hex.is_some(),
            self.material_base64.is_some(),
            self.material_pem.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(format!(
                "key {}: give one of material_hex, material_base64, material_pem",
                self.id
            ));
        }
        let bad = |e: String| format!("key {}: {e}", self.id);
        if let Some(h) = &self.material_hex {
            return hex::decode(h.trim())
                .map(|v| Some(Zeroizing::new(v)))
                .map_err(|e| bad(e.to_string()));
        }
        if let Some(b) = &self.material_base64 {
            return base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .map(|v| Some(Zeroizing::new(v)))
                .map_err(|e| bad(e.to_string()));
        }
        if let Some(p) = &self.material_pem {
            let block = pem::parse(p.as_bytes()).map_err(|e| bad(e.to_string()))?;
            if block.tag() != "PRIVATE KEY" {
                return Err(bad(format!(
                    "material_pem must be a PKCS#8 'PRIVATE KEY', not '{}'",
                    block.tag()
                )));
            }
            return Ok(Some(Zeroizing::new(block.into_contents())));
        }
        Ok(None)
    }
}

/// What applying a seed file did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SeedReport {
    /// Objects created this time.
    pub created: usize,
    /// Objects that existed already.
    pub existing: usize,
}

/// A caller acting as `account`'s admin in `region`, outside any request (authorisation is the
/// operator's: the seed file).
fn seed_caller(account: &str, region: &str, operation: &str) -> Caller {
    Caller {
        account: account.to_owned(),
        region: region.to_owned(),
        principal_arn: format!("arn:aws:iam::{account}:user/admin"),
        user_id: "kmsd-seed".into(),
        access_key_id: String::new(),
        request_id: uuid::Uuid::new_v4().to_string(),
        skip_authorization: true,
        operation: operation.to_owned(),
        ..Default::default()
    }
}

/// Creates what `seed` lists and is missing. `allow_material`: whether fixed key material may
/// be used (`--dev` or `--allow-seeded-material`).
pub async fn apply(
    service: &Service,
    seed: &SeedFile,
    default_account: &str,
    allow_material: bool,
) -> Result<SeedReport, String> {
    let mut report = SeedReport::default();
    let mut count = |created: bool| {
        if created {
            report.created += 1
        } else {
            report.existing += 1
        }
    };
    let e = |what: String| move |err: kms_types::KmsError| format!("seed: {what}: {err}");
    for account in &seed.accounts {
        let admin = format!("arn:aws:iam::{account}:user/admin");
        let exists = service
            .principal(&admin)
            .map_err(e(admin.clone()))?
            .is_some();
        if !exists {
            // The admin's random access key is not kept: give users fixed keys in the file.
            service
                .create_account(account)
                .await
                .map_err(e(format!("account {account}")))?;
        }
        count(!exists);
    }
    for u in &seed.users {
        let account = u.account.as_deref().unwrap_or(default_account);
        let arn = format!("arn:aws:iam::{account}:user/{}", u.name);
        let exists = service.principal(&arn).map_err(e(arn.clone()))?.is_some();
        if !exists {
            service
                .create_user(account, &u.name)
                .await
                .map_err(e(arn.clone()))?;
        }
        count(!exists);
        for (name, doc) in &u.policies {
            service
                .put_principal_policy(&arn, name, doc)
                .await
                .map_err(e(format!("{arn} policy {name}")))?;
        }
        for k in &u.access_keys {
            match service.import_access_key(&arn, &k.id, &k.secret).await {
                Ok(()) => count(true),
                Err(err) if err.code == ErrorCode::AlreadyExistsException => count(false),
                Err(err) => return Err(e(format!("access key {}", k.id))(err)),
            }
        }
    }
    for k in &seed.keys {
        let material = k.material()?;
        if material.is_some() && !allow_material {
            return Err(format!(
                "seed: key {} has fixed key material: that is a test feature, allowed only with --dev or --allow-seeded-material",
                k.id
            ));
        }
        let account = k.account.as_deref().unwrap_or(default_account);
        let region = k.region.as_deref().unwrap_or("us-east-1");
        let request = CreateKeyRequest {
            key_spec: k.key_spec.clone(),
            key_usage: k.key_usage.clone(),
            description: k.description.clone(),
            policy: k.policy.clone(),
            bypass_policy_lockout_safety_check: Some(true),
            multi_region: k.multi_region.then_some(true),
            tags: (!k.tags.is_empty()).then(|| {
                k.tags
                    .iter()
                    .map(|(key, value)| Tag {
                        tag_key: Some(key.clone()),
                        tag_value: Some(value.clone()),
                    })
                    .collect()
            }),
            ..Default::default()
        };
        let created = service
            .seed_key(
                &seed_caller(account, region, "CreateKey"),
                &k.id,
                request,
                material.as_deref().map(|m| m.as_slice()),
            )
            .await
            .map_err(e(format!("key {}", k.id)))?;
        count(created);
        for alias in &k.aliases {
            let caller = seed_caller(account, region, "CreateAlias");
            let r = CreateAliasRequest {
                alias_name: Some(alias.clone()),
                target_key_id: Some(k.id.to_ascii_lowercase()),
            };
            match service.create_alias(&caller, r).await {
                Ok(()) => count(true),
                Err(err) if err.code == ErrorCode::AlreadyExistsException => count(false),
                Err(err) => return Err(e(format!("alias {alias}"))(err)),
            }
        }
        for g in &k.grants {
            let caller = seed_caller(account, region, "CreateGrant");
            let r = CreateGrantRequest {
                key_id: Some(k.id.to_ascii_lowercase()),
                grantee_principal: Some(g.grantee.clone()),
                retiring_principal: g.retiring.clone(),
                operations: Some(g.operations.clone()),
                name: Some(g.name.clone()),
                ..Default::default()
            };
            service
                .create_grant(&caller, r)
                .await
                .map_err(e(format!("grant {} of key {}", g.name, k.id)))?;
        }
    }
    Ok(report)
}
