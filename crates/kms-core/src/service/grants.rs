//! Grants: CreateGrant, ListGrants, ListRetirableGrants, RetireGrant, RevokeGrant, grant tokens,
//! and the grant check of authorisation.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use kms_types::*;

use super::keys::check_enabled;
use super::paging::{decode_marker, encode_marker, page_limit};
use super::{dry_run_succeeded, internal, ts, Service};
use crate::authz::grants;
use crate::context::Caller;
use crate::model::KeyRecord;
use crate::policy::ConditionContext;
use crate::store::WriteOp;

/// Document kind of grants (id = grant id).
pub(crate) const GRANT_DOC: &str = "grant";
/// Grants per key.
const MAX_GRANTS_PER_KEY: usize = 50_000;
const TOKEN_PREFIX: &str = "kmsd-grant-token-v1:";

/// A grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct GrantRecord {
    grant_id: String,
    key_arn: String,
    key_region: String,
    key_id: String,
    name: Option<String>,
    grantee: String,
    retiring: Option<String>,
    operations: Vec<String>,
    context_equals: Option<BTreeMap<String, String>>,
    context_subset: Option<BTreeMap<String, String>>,
    issuing_account: String,
    created_ms: i64,
}

fn err(code: ErrorCode, msg: impl Into<String>) -> KmsError {
    KmsError::new(code, msg)
}

/// Grant operations valid for a key of this spec and usage.
fn valid_operations(k: &KeyRecord) -> &'static [&'static str] {
    match (k.key_spec.as_str(), k.key_usage.as_str()) {
        ("SYMMETRIC_DEFAULT", _) => &[
            "Decrypt",
            "Encrypt",
            "GenerateDataKey",
            "GenerateDataKeyWithoutPlaintext",
            "ReEncryptFrom",
            "ReEncryptTo",
            "CreateGrant",
            "RetireGrant",
            "DescribeKey",
            "GenerateDataKeyPair",
            "GenerateDataKeyPairWithoutPlaintext",
        ],
        (_, "GENERATE_VERIFY_MAC") => &[
            "GenerateMac",
            "VerifyMac",
            "CreateGrant",
            "RetireGrant",
            "DescribeKey",
        ],
        (_, "SIGN_VERIFY") => &[
            "Sign",
            "Verify",
            "GetPublicKey",
            "CreateGrant",
            "RetireGrant",
            "DescribeKey",
        ],
        (_, "KEY_AGREEMENT") => &[
            "DeriveSharedSecret",
            "GetPublicKey",
            "CreateGrant",
            "RetireGrant",
            "DescribeKey",
        ],
        (_, "ENCAPSULATE_DECAPSULATE") => &[
            "Encapsulate",
            "Decapsulate",
            "GetPublicKey",
            "CreateGrant",
            "RetireGrant",
            "DescribeKey",
        ],
        _ => &[
            "Encrypt",
            "Decrypt",
            "ReEncryptFrom",
            "ReEncryptTo",
            "GetPublicKey",
            "CreateGrant",
            "RetireGrant",
            "DescribeKey",
        ],
    }
}

/// Operations that take an encryption context (the only ones a constrained grant may allow).
const CONTEXT_OPERATIONS: &[&str] = &[
    "Decrypt",
    "Encrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "ReEncryptFrom",
    "ReEncryptTo",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "CreateGrant",
    "RetireGrant",
];

fn make_token(grant_id: &str) -> Result<String, KmsError> {
    let nonce = kms_crypto::random_array::<16>().map_err(internal)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("{TOKEN_PREFIX}{grant_id}:{}", hex::encode(nonce))))
}

/// The grant id a token names, or InvalidGrantTokenException.
fn token_grant_id(token: &str) -> Result<String, KmsError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.strip_prefix(TOKEN_PREFIX)
                .and_then(|r| r.split(':').next())
                .map(str::to_owned)
        })
        .filter(|id| id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| {
            err(
                ErrorCode::InvalidGrantTokenException,
                "The grant token is not valid",
            )
        })
}

/// Checks the format of the grant tokens of a request. Grants take effect at once in kmsd (no
/// eventual consistency), so a valid token adds nothing beyond the grant itself.
pub(crate) fn check_grant_tokens(tokens: Option<&Vec<String>>) -> Result<(), KmsError> {
    for t in tokens.into_iter().flatten() {
        token_grant_id(t)?;
    }
    Ok(())
}

impl Service {
    fn grants_of_key(&self, key: &KeyRecord) -> Result<Vec<GrantRecord>, KmsError> {
        let arn = key.arn();
        Ok(self
            .store()
            .list_docs(GRANT_DOC)
            .map_err(internal)?
            .into_iter()
            .filter_map(|(_, b)| serde_json::from_str::<GrantRecord>(&b).ok())
            .filter(|g| g.key_arn == arn)
            .collect())
    }

    /// Whether a grant of `key` allows `action` to the caller with this request's context.
    pub(crate) fn grant_allows(
        &self,
        caller: &Caller,
        action: &str,
        key: &KeyRecord,
        context: &ConditionContext,
    ) -> bool {
        let Ok(grants) = self.grants_of_key(key) else {
            return false;
        };
        grants::any_allows(
            grants.iter().map(|g| grants::GrantTerms {
                grantee: &g.grantee,
                operations: &g.operations,
                context_equals: g.context_equals.as_ref(),
                context_subset: g.context_subset.as_ref(),
            }),
            caller,
            action,
            context,
        )
    }

    /// CreateGrant.
    pub async fn create_grant(
        &self,
        caller: &Caller,
        r: CreateGrantRequest,
    ) -> Result<CreateGrantResponse, KmsError> {
        check_grant_tokens(r.grant_tokens.as_ref())?;
        if r.grantee_service_principal.is_some()
            || r.retiring_service_principal.is_some()
            || r.constraints
                .as_ref()
                .is_some_and(|c| c.source_arn.is_some())
        {
            return Err(err(
                ErrorCode::UnsupportedOperationException,
                "kmsd does not support service-principal grants or SourceArn constraints",
            ));
        }
        let grantee = r.grantee_principal.clone().ok_or_else(|| {
            err(
                ErrorCode::ValidationException,
                "GranteePrincipal is required",
            )
        })?;
        let k = self.resolve_cached(caller, r.key_id.as_deref().unwrap_or_default(), false)?;
        check_enabled(&k.record)?;
        let operations = r.operations.clone().unwrap_or_default();
        if operations.is_empty() {
            return Err(err(
                ErrorCode::ValidationException,
                "Operations must name at least one operation",
            ));
        }
        let valid = valid_operations(&k.record);
        if let Some(bad) = operations.iter().find(|o| !valid.contains(&o.as_str())) {
            return Err(err(
                ErrorCode::ValidationException,
                format!(
                    "Grant operation {bad} is not valid for {} ({} {})",
                    k.record.arn(),
                    k.record.key_spec,
                    k.record.key_usage
                ),
            ));
        }
        let (equals, subset) = match &r.constraints {
            Some(c) => {
                if let Some(bad) = operations
                    .iter()
                    .find(|o| !CONTEXT_OPERATIONS.contains(&o.as_str()))
                {
                    return Err(err(
                        ErrorCode::ValidationException,
                        format!("Encryption context constraints do not apply to {bad}"),
                    ));
                }
                if k.record.key_spec != "SYMMETRIC_DEFAULT" {
                    return Err(err(
                        ErrorCode::ValidationException,
                        "Encryption context constraints apply only to symmetric encryption keys",
                    ));
                }
                for m in [&c.encryption_context_equals, &c.encryption_context_subset]
                    .into_iter()
                    .flatten()
                {
                    if m.len() > 8 || m.values().any(|v| v.chars().count() > 384) {
                        return Err(err(ErrorCode::ValidationException, "A grant constraint has at most 8 pairs, each value at most 384 characters"));
                    }
                }
                (
                    c.encryption_context_equals.clone(),
                    c.encryption_context_subset.clone(),
                )
            }
            None => (None, None),
        };
        if r.dry_run == Some(true) {
            return Err(dry_run_succeeded());
        }
        let _guard = self.write_section().await?;
        let existing = self.grants_of_key(&k.record)?;
        if let Some(name) = &r.name {
            if let Some(g) = existing.iter().find(|g| {
                g.name.as_deref() == Some(name)
                    && g.grantee == grantee
                    && g.operations == operations
                    && g.retiring == r.retiring_principal
                    && g.context_equals == equals
                    && g.context_subset == subset
            }) {
                // Retrying with the same Name returns the same grant (with a new token).
                return Ok(CreateGrantResponse {
                    grant_id: Some(g.grant_id.clone()),
                    grant_token: Some(make_token(&g.grant_id)?),
                });
            }
        }
        if existing.len() >= MAX_GRANTS_PER_KEY {
            return Err(err(
                ErrorCode::LimitExceededException,
                format!("{} already has {MAX_GRANTS_PER_KEY} grants", k.record.arn()),
            ));
        }
        let grant_id = hex::encode(kms_crypto::random_array::<32>().map_err(internal)?);
        let g = GrantRecord {
            grant_id: grant_id.clone(),
            key_arn: k.record.arn(),
            key_region: k.record.region.clone(),
            key_id: k.record.key_id.clone(),
            name: r.name.clone(),
            grantee,
            retiring: r.retiring_principal.clone(),
            operations,
            context_equals: equals,
            context_subset: subset,
            issuing_account: format!("arn:aws:iam::{}:root", k.record.account),
            created_ms: self.now_ms(),
        };
        self.commit(vec![WriteOp::PutDoc {
            kind: GRANT_DOC.into(),
            id: grant_id.clone(),
            body: serde_json::to_string(&g).map_err(internal)?,
        }])
        .await?;
        Ok(CreateGrantResponse {
            grant_token: Some(make_token(&grant_id)?),
            grant_id: Some(grant_id),
        })
    }

    fn to_entry(g: &GrantRecord) -> GrantListEntry {
        GrantListEntry {
            key_id: Some(g.key_arn.clone()),
            grant_id: Some(g.grant_id.clone()),
            name: g.name.clone(),
            creation_date: Some(ts(g.created_ms)),
            grantee_principal: Some(g.grantee.clone()),
            retiring_principal: g.retiring.clone(),
            issuing_account: Some(g.issuing_account.clone()),
            operations: Some(g.operations.clone()),
            constraints: (g.context_equals.is_some() || g.context_subset.is_some()).then(|| {
                GrantConstraints {
                    encryption_context_equals: g.context_equals.clone(),
                    encryption_context_subset: g.context_subset.clone(),
                    source_arn: None,
                }
            }),
            grantee_service_principal: None,
            retiring_service_principal: None,
        }
    }

    fn grant_page(
        grants: Vec<GrantRecord>,
        limit: Option<i32>,
        marker: Option<&str>,
    ) -> Result<ListGrantsResponse, KmsError> {
        let limit = page_limit(limit, 100, 50)?;
        let after = decode_marker(marker)?;
        let mut grants: Vec<_> = grants
            .into_iter()
            .filter(|g| after.as_deref().is_none_or(|a| g.grant_id.as_str() > a))
            .collect();
        grants.sort_by(|a, b| a.grant_id.cmp(&b.grant_id));
        let truncated = grants.len() > limit;
        grants.truncate(limit);
        Ok(ListGrantsResponse {
            next_marker: if truncated {
                grants.last().map(|g| encode_marker(&g.grant_id))
            } else {
                None
            },
            truncated: Some(truncated),
            grants: Some(grants.iter().map(Self::to_entry).collect()),
        })
    }

    /// ListGrants.
    pub async fn list_grants(
        &self,
        caller: &Caller,
        r: ListGrantsRequest,
    ) -> Result<ListGrantsResponse, KmsError> {
        if let Some(id) = &r.grant_id {
            if id.len() != 64 {
                return Err(err(
                    ErrorCode::InvalidGrantIdException,
                    format!("'{id}' is not a grant id"),
                ));
            }
        }
        let k = self.resolve_cached(caller, r.key_id.as_deref().unwrap_or_default(), false)?;
        let grants: Vec<GrantRecord> = self
            .grants_of_key(&k.record)?
            .into_iter()
            .filter(|g| r.grant_id.as_deref().is_none_or(|id| g.grant_id == id))
            .filter(|g| {
                r.grantee_principal
                    .as_deref()
                    .is_none_or(|p| g.grantee == p)
            })
            .collect();
        Self::grant_page(grants, r.limit, r.marker.as_deref())
    }

    /// ListRetirableGrants: grants of the caller's account's keys that name this retiring principal.
    pub async fn list_retirable_grants(
        &self,
        caller: &Caller,
        r: ListRetirableGrantsRequest,
    ) -> Result<ListGrantsResponse, KmsError> {
        let retiring = r.retiring_principal.clone().unwrap_or_default();
        let prefix = format!("arn:aws:kms:{}:{}:key/", caller.region, caller.account);
        let grants: Vec<GrantRecord> = self
            .store()
            .list_docs(GRANT_DOC)
            .map_err(internal)?
            .into_iter()
            .filter_map(|(_, b)| serde_json::from_str::<GrantRecord>(&b).ok())
            .filter(|g| {
                g.key_arn.starts_with(&prefix) && g.retiring.as_deref() == Some(retiring.as_str())
            })
            .collect();
        Self::grant_page(grants, r.limit, r.marker.as_deref())
    }

    fn load_grant(&self, grant_id: &str) -> Result<Option<GrantRecord>, KmsError> {
        self.store()
            .get_doc(GRANT_DOC, grant_id)
            .map_err(internal)?
            .map(|b| serde_json::from_str(&b).map_err(internal))
            .transpose()
    }

    /// RetireGrant: by token, or by key ARN and grant id; by the retiring principal, the grantee
    /// (if the grant allows RetireGrant) or the account that owns the key.
    pub async fn retire_grant(
        &self,
        caller: &Caller,
        r: RetireGrantRequest,
    ) -> Result<(), KmsError> {
        let grant_id = match (&r.grant_token, &r.grant_id) {
            (Some(t), _) => token_grant_id(t)?,
            (None, Some(id)) => {
                if r.key_id.is_none() {
                    return Err(err(
                        ErrorCode::ValidationException,
                        "RetireGrant needs GrantToken, or KeyId and GrantId",
                    ));
                }
                id.clone()
            }
            (None, None) => {
                return Err(err(
                    ErrorCode::ValidationException,
                    "RetireGrant needs GrantToken, or KeyId and GrantId",
                ))
            }
        };
        let g = self.load_grant(&grant_id)?.ok_or_else(|| {
            err(
                ErrorCode::NotFoundException,
                format!("Grant {grant_id} does not exist"),
            )
        })?;
        if let Some(key) = r.key_id.as_deref() {
            // A key ARN, or a key id of the caller's Region (AWS accepts both with GrantId).
            let names_grant_key = match crate::ids::parse_key_ref(key, false)? {
                crate::ids::KeyRef::Id(id) => {
                    g.key_arn.ends_with(&format!(":key/{id}"))
                        && g.key_arn.split(':').nth(3) == Some(caller.region.as_str())
                }
                _ => key == g.key_arn,
            };
            if !names_grant_key {
                return Err(err(
                    ErrorCode::NotFoundException,
                    format!("Grant {grant_id} is not a grant of {key}"),
                ));
            }
        }
        let owner_account = g.key_arn.split(':').nth(4).unwrap_or_default();
        let allowed = g.retiring.as_deref() == Some(caller.principal_arn.as_str())
            || (grants::grantee_matches(&g.grantee, caller)
                && g.operations.iter().any(|o| o == "RetireGrant"))
            || (caller.account == owner_account
                && self
                    .authorize(caller, "kms:RetireGrant", None, &g.key_arn)
                    .is_ok())
            || caller.skip_authorization;
        if !allowed {
            return Err(err(
                ErrorCode::AccessDeniedException,
                format!(
                    "User: {} is not authorized to retire grant {grant_id}",
                    caller.principal_arn
                ),
            ));
        }
        if r.dry_run == Some(true) {
            return Err(dry_run_succeeded());
        }
        self.commit(vec![WriteOp::DeleteDoc {
            kind: GRANT_DOC.into(),
            id: grant_id,
        }])
        .await
    }

    /// RevokeGrant.
    pub async fn revoke_grant(
        &self,
        caller: &Caller,
        r: RevokeGrantRequest,
    ) -> Result<(), KmsError> {
        let k = self.resolve_cached(caller, r.key_id.as_deref().unwrap_or_default(), false)?;
        let grant_id = r.grant_id.clone().unwrap_or_default();
        let g = self
            .load_grant(&grant_id)?
            .filter(|g| g.key_arn == k.record.arn())
            .ok_or_else(|| {
                err(
                    ErrorCode::NotFoundException,
                    format!("Grant {grant_id} does not exist on {}", k.record.arn()),
                )
            })?;
        if r.dry_run == Some(true) {
            return Err(dry_run_succeeded());
        }
        self.commit(vec![WriteOp::DeleteDoc {
            kind: GRANT_DOC.into(),
            id: g.grant_id,
        }])
        .await
    }

    /// The writes deleting every grant of a key (the key is being deleted).
    pub(crate) fn delete_grants_of(&self, key: &KeyRecord) -> Result<Vec<WriteOp>, KmsError> {
        Ok(self
            .grants_of_key(key)?
            .into_iter()
            .map(|g| WriteOp::DeleteDoc {
                kind: GRANT_DOC.into(),
                id: g.grant_id,
            })
            .collect())
    }
}
