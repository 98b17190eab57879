//! Authorisation as AWS KMS decides it: explicit deny anywhere wins; otherwise the key policy must
//! allow the caller directly (same account), or allow its account root — delegating to IAM, so
//! one of the caller's identity policies must allow too; cross-account calls need both the key
//! policy and the caller's identity policy; a grant allows its operations to its grantee.
//!
//! [`Authorizer::decide`] is the decision over (caller, action, key, condition context); what
//! it needs to know beyond them (identity policies, alias names, grants, the time) it asks
//! through [`Facts`], which the service answers from the registry and the store, so the rules
//! here never touch storage. The policy language itself is [`crate::policy`].

mod conditions;
mod context;
pub(crate) mod grants;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use kms_types::{ErrorCode, KmsError};

use crate::context::Caller;
use crate::iam::IdentityView;
use crate::model::KeyRecord;
use crate::policy::{ConditionContext, Policy, PolicyKind, Principal, Request};

use context::condition_context;

/// What a decision may need to look up, answered by the service.
pub(crate) trait Facts {
    /// The parsed identity policies and tags of a principal (a session: of its role).
    fn identity_policies(&self, principal_arn: &str) -> Result<Arc<IdentityView>, KmsError>;
    /// The names of the aliases pointing at `key` (at most 50, as kms:ResourceAliases).
    fn alias_names_of(&self, key: &KeyRecord) -> Result<Vec<String>, KmsError>;
    /// Whether a grant of `key` allows `action` to the caller with this context (see
    /// [`grants::any_allows`]).
    fn grant_allows(
        &self,
        caller: &Caller,
        action: &str,
        key: &KeyRecord,
        context: &ConditionContext,
    ) -> bool;
    /// Now, in milliseconds since the epoch (aws:CurrentTime, aws:EpochTime).
    fn now_ms(&self) -> i64;
}

/// Decides authorisation; keeps parsed key policies by document text.
#[derive(Default)]
pub(crate) struct Authorizer {
    /// Parsed key policies by document text.
    key_policies: RwLock<HashMap<String, Arc<Policy>>>,
}

/// Operations authorised by the caller's identity policies alone (no key resource).
pub(crate) fn is_iam_only(op: &str) -> bool {
    matches!(
        op,
        "CreateKey"
            | "ListKeys"
            | "ListAliases"
            | "GenerateRandom"
            | "ListRetirableGrants"
            | "CreateCustomKeyStore"
            | "DescribeCustomKeyStores"
            | "ConnectCustomKeyStore"
            | "DisconnectCustomKeyStore"
            | "UpdateCustomKeyStore"
            | "DeleteCustomKeyStore"
    )
}

fn denied(caller: &Caller, action: &str, resource: &str, why: &str) -> KmsError {
    KmsError::new(
        ErrorCode::AccessDeniedException,
        format!(
            "User: {} is not authorized to perform: {action} on resource: {resource} {why}",
            caller.principal_arn
        ),
    )
}

/// The principal as policies see it.
fn principal_of(caller: &Caller) -> Principal {
    let role_arn = caller
        .principal_arn
        .strip_prefix(&format!("arn:aws:sts::{}:assumed-role/", caller.account))
        .and_then(|rest| {
            rest.split('/')
                .next()
                .map(|role| format!("arn:aws:iam::{}:role/{role}", caller.account))
        });
    Principal {
        arn: caller.principal_arn.clone(),
        account: caller.account.clone(),
        role_arn,
    }
}

/// The condition key that lists a key's aliases.
const RESOURCE_ALIASES: &str = "kms:ResourceAliases";

impl Authorizer {
    /// Decides whether `caller` may perform `action` on `key` (None: an IAM-only action on
    /// `resource`): the AWS rules over the key policy, the caller's identity policies, the
    /// key's grants and the condition context, all read from `facts`.
    pub(crate) fn decide(
        &self,
        facts: &dyn Facts,
        caller: &Caller,
        action: &str,
        key: Option<&KeyRecord>,
        resource: &str,
    ) -> Result<(), KmsError> {
        if caller.skip_authorization {
            return Ok(());
        }
        let policy_owner = caller.principal_arn.clone();
        let identity = facts.identity_policies(&role_or_self(caller, &policy_owner))?;
        let key_policy = key.map(|k| self.key_policy(k)).transpose()?;
        let policies = || {
            key_policy
                .iter()
                .map(|p| p.as_ref())
                .chain(identity.policies.iter())
        };
        // Building the condition context costs a dozen allocations per request: only when a
        // policy reads it (grants, checked last, build their own).
        let reads_context = policies().any(Policy::reads_context);
        let mut context = if reads_context {
            condition_context(caller, action, key, &identity.tags, facts.now_ms())
        } else {
            ConditionContext::new()
        };
        if let Some(k) = key {
            // kms:ResourceAliases costs a store read: only when some policy reads it.
            if policies().any(|p| p.uses_condition_key(RESOURCE_ALIASES)) {
                context.set_many(RESOURCE_ALIASES, facts.alias_names_of(k)?);
            }
        }
        let principal = principal_of(caller);
        let req = Request {
            principal: &principal,
            action,
            resource,
            context: &context,
        };
        let mut id_allow = false;
        for p in &identity.policies {
            let e = p.evaluate(&req);
            if e.explicit_deny.is_some() {
                return Err(denied(
                    caller,
                    action,
                    resource,
                    "with an explicit deny in an identity-based policy",
                ));
            }
            id_allow |= e.allow;
        }
        let (Some(key), Some(key_policy)) = (key, key_policy) else {
            return if id_allow {
                Ok(())
            } else {
                Err(denied(
                    caller,
                    action,
                    resource,
                    &format!("because no identity-based policy allows the {action} action"),
                ))
            };
        };
        let e = key_policy.evaluate(&req);
        if e.explicit_deny.is_some() {
            return Err(denied(
                caller,
                action,
                resource,
                "with an explicit deny in a resource-based policy",
            ));
        }
        let same_account = caller.account == key.account;
        let allowed = (e.allow_principal && (same_account || id_allow))
            || (e.allow_account && id_allow)
            || if reads_context {
                facts.grant_allows(caller, action, key, &context)
            } else {
                let full =
                    condition_context(caller, action, Some(key), &identity.tags, facts.now_ms());
                facts.grant_allows(caller, action, key, &full)
            };
        if allowed {
            return Ok(());
        }
        if e.allow_account && !id_allow {
            return Err(denied(
                caller,
                action,
                resource,
                &format!("because no identity-based policy allows the {action} action"),
            ));
        }
        Err(denied(
            caller,
            action,
            resource,
            &format!("because no resource-based policy allows the {action} action"),
        ))
    }

    /// The parsed key policy (cached with the key until the key changes).
    fn key_policy(&self, key: &KeyRecord) -> Result<Arc<Policy>, KmsError> {
        if let Some(hit) = self
            .key_policies
            .read()
            .ok()
            .and_then(|c| c.get(&key.policy).cloned())
        {
            return Ok(hit);
        }
        let p = Arc::new(Policy::parse(&key.policy, PolicyKind::Key).map_err(|e| {
            tracing::error!(key = %key.arn(), error = %e.0, "stored key policy does not parse");
            KmsError::internal("the key's policy could not be evaluated")
        })?);
        if let Ok(mut c) = self.key_policies.write() {
            if c.len() > 10_000 {
                c.clear();
            }
            c.insert(key.policy.clone(), p.clone());
        }
        Ok(p)
    }

    /// The lockout safety check: a new key policy must let the caller call PutKeyPolicy.
    pub(crate) fn check_lockout(
        &self,
        facts: &dyn Facts,
        caller: &Caller,
        policy: &str,
        key: &KeyRecord,
    ) -> Result<(), KmsError> {
        let parsed = Policy::parse(policy, PolicyKind::Key)
            .map_err(|e| KmsError::new(ErrorCode::MalformedPolicyDocumentException, e.0))?;
        let identity = facts.identity_policies(&role_or_self(caller, &caller.principal_arn))?;
        let context = condition_context(
            caller,
            "kms:PutKeyPolicy",
            Some(key),
            &identity.tags,
            facts.now_ms(),
        );
        let principal = principal_of(caller);
        let resource = key.arn();
        let req = Request {
            principal: &principal,
            action: "kms:PutKeyPolicy",
            resource: &resource,
            context: &context,
        };
        let e = parsed.evaluate(&req);
        let id_allow = identity.policies.iter().any(|p| p.evaluate(&req).allow);
        let ok = e.explicit_deny.is_none()
            && ((e.allow_principal && caller.account == key.account)
                || (e.allow_account && id_allow));
        if ok || caller.skip_authorization {
            Ok(())
        } else {
            Err(KmsError::new(
                ErrorCode::MalformedPolicyDocumentException,
                "The new key policy will not allow you to update the key policy in the future (lockout safety check). Set BypassPolicyLockoutSafetyCheck to override.",
            ))
        }
    }
}

/// Sessions are governed by their role's identity policies.
fn role_or_self(caller: &Caller, arn: &str) -> String {
    principal_of(caller)
        .role_arn
        .unwrap_or_else(|| arn.to_owned())
}

#[cfg(test)]
mod tests;
