//! The grant half of authorisation: whether one of a key's grants allows an operation to the
//! caller with the request's encryption context.

use std::collections::BTreeMap;

use crate::context::Caller;
use crate::policy::ConditionContext;

/// What authorisation reads of a grant.
pub(crate) struct GrantTerms<'a> {
    /// The grantee principal ARN (a role's ARN also matches its sessions).
    pub(crate) grantee: &'a str,
    /// The operations it allows, without `kms:`.
    pub(crate) operations: &'a [String],
    /// EncryptionContextEquals.
    pub(crate) context_equals: Option<&'a BTreeMap<String, String>>,
    /// EncryptionContextSubset.
    pub(crate) context_subset: Option<&'a BTreeMap<String, String>>,
}

/// Whether `grantee` names the caller, or the role whose session the caller is.
pub(crate) fn grantee_matches(grantee: &str, caller: &Caller) -> bool {
    if grantee == caller.principal_arn {
        return true;
    }
    // A role ARN as grantee matches the role's sessions.
    caller
        .principal_arn
        .strip_prefix(&format!("arn:aws:sts::{}:assumed-role/", caller.account))
        .and_then(|r| r.split('/').next())
        .is_some_and(|role| grantee == format!("arn:aws:iam::{}:role/{role}", caller.account))
}

/// Whether one of `grants` allows `action` to the caller with this request's context.
pub(crate) fn any_allows<'a>(
    grants: impl IntoIterator<Item = GrantTerms<'a>>,
    caller: &Caller,
    action: &str,
    context: &ConditionContext,
) -> bool {
    let Some(op) = action.strip_prefix("kms:") else {
        return false;
    };
    let request_ctx: BTreeMap<String, String> = context
        .get("kms:EncryptionContextKeys")
        .unwrap_or_default()
        .iter()
        .filter_map(|k| {
            context
                .get(&format!("kms:EncryptionContext:{k}"))
                .and_then(|v| v.first())
                .map(|v| (k.clone(), v.clone()))
        })
        .collect();
    grants.into_iter().any(|g| {
        grantee_matches(g.grantee, caller)
            && g.operations.iter().any(|o| o == op)
            && g.context_equals.is_none_or(|eq| *eq == request_ctx)
            && g.context_subset
                .is_none_or(|sub| sub.iter().all(|(k, v)| request_ctx.get(k) == Some(v)))
    })
}
