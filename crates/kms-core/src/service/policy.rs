//! Key policies: GetKeyPolicy, PutKeyPolicy, ListKeyPolicies, the default policy, and the
//! document checks done before storing one. (Enforcement is the authorisation layer's job.)

use kms_types::*;

use super::paging::{decode_marker, page_limit, page_of};
use super::Service;
use crate::context::Caller;

/// The key policy size quota, in bytes.
const MAX_POLICY_BYTES: usize = 32_768;

/// The policy AWS gives a key created without one, formatted as AWS formats it.
pub(super) fn default_key_policy(account: &str) -> String {
    format!(
        "{{\n  \"Version\" : \"2012-10-17\",\n  \"Id\" : \"key-default-1\",\n  \"Statement\" : [ {{\n    \"Sid\" : \"Enable IAM User Permissions\",\n    \"Effect\" : \"Allow\",\n    \"Principal\" : {{\n      \"AWS\" : \"arn:aws:iam::{account}:root\"\n    }},\n    \"Action\" : \"kms:*\",\n    \"Resource\" : \"*\"\n  }} ]\n}}"
    )
}

fn malformed(why: &str) -> KmsError {
    KmsError::new(
        ErrorCode::MalformedPolicyDocumentException,
        format!("The new key policy is not valid: {why}"),
    )
}

/// Size quota and document shape: a JSON object whose `Statement` is an object or a non-empty
/// list of objects, each with `Effect` Allow/Deny.
pub(super) fn check_policy_document(policy: &str) -> Result<(), KmsError> {
    if policy.len() > MAX_POLICY_BYTES {
        return Err(KmsError::new(
            ErrorCode::LimitExceededException,
            format!(
                "The key policy is {} bytes; the quota is {MAX_POLICY_BYTES} bytes",
                policy.len()
            ),
        ));
    }
    crate::policy::Policy::parse(policy, crate::policy::PolicyKind::Key)
        .map_err(|e| malformed(&e.0))?;
    Ok(())
}

fn check_policy_name(name: Option<&str>) -> Result<(), KmsError> {
    match name {
        None | Some("default") => Ok(()),
        Some(other) => Err(KmsError::new(
            ErrorCode::NotFoundException,
            format!(
                "Policy name '{other}' does not exist: the only valid policy name is 'default'"
            ),
        )),
    }
}

impl Service {
    /// GetKeyPolicy.
    pub async fn get_key_policy(
        &self,
        caller: &Caller,
        r: GetKeyPolicyRequest,
    ) -> Result<GetKeyPolicyResponse, KmsError> {
        check_policy_name(r.policy_name.as_deref())?;
        let k = self.resolve_cached(caller, r.key_id.as_deref().unwrap_or_default(), false)?;
        Ok(GetKeyPolicyResponse {
            policy: Some(k.record.policy.clone()),
            policy_name: Some("default".into()),
        })
    }

    /// PutKeyPolicy: allowed in every key state.
    pub async fn put_key_policy(
        &self,
        caller: &Caller,
        r: PutKeyPolicyRequest,
    ) -> Result<(), KmsError> {
        check_policy_name(r.policy_name.as_deref())?;
        let policy = r.policy.unwrap_or_default();
        check_policy_document(&policy)?;
        let bypass = r.bypass_policy_lockout_safety_check == Some(true);
        self.update_key(caller, r.key_id.as_deref().unwrap_or_default(), |k| {
            if !bypass {
                self.check_lockout(caller, &policy, k)?;
            }
            k.policy = policy;
            Ok(vec![])
        })
        .await
        .map(|_| ())
    }

    /// ListKeyPolicies: always `["default"]`.
    pub async fn list_key_policies(
        &self,
        caller: &Caller,
        r: ListKeyPoliciesRequest,
    ) -> Result<ListKeyPoliciesResponse, KmsError> {
        let limit = page_limit(r.limit, 1000, 100)?;
        let after = decode_marker(r.marker.as_deref())?;
        self.resolve_cached(caller, r.key_id.as_deref().unwrap_or_default(), false)?;
        let (page, next) = page_of(
            vec!["default".to_owned()],
            after.as_deref(),
            limit,
            Clone::clone,
        );
        Ok(ListKeyPoliciesResponse {
            policy_names: Some(page),
            truncated: Some(next.is_some()),
            next_marker: next,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_is_valid_json_granting_the_account() {
        let p = default_key_policy("111122223333");
        check_policy_document(&p).unwrap();
        assert!(p.contains("\"AWS\" : \"arn:aws:iam::111122223333:root\""));
    }

    #[test]
    fn policy_checks() {
        assert_eq!(
            check_policy_document("nope").unwrap_err().code,
            ErrorCode::MalformedPolicyDocumentException
        );
        assert_eq!(
            check_policy_document("{}").unwrap_err().code,
            ErrorCode::MalformedPolicyDocumentException
        );
        assert_eq!(
            check_policy_document(r#"{"Statement":[{"Effect":"Maybe","Principal":"*","Action":"kms:*","Resource":"*"}]}"#)
                .unwrap_err()
                .code,
            ErrorCode::MalformedPolicyDocumentException
        );
        let big = format!(
            r#"{{"Statement":{{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Sid":"{}"}}}}"#,
            "x".repeat(40_000)
        );
        assert_eq!(
            check_policy_document(&big).unwrap_err().code,
            ErrorCode::LimitExceededException
        );
        check_policy_document(
            r#"{"Statement":{"Effect":"Deny","Principal":"*","Action":"kms:*","Resource":"*"}}"#,
        )
        .unwrap();
    }
}
