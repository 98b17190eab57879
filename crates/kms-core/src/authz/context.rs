//! The condition context of a request: what the caller, the request and the key say, as the
//! policy language's condition keys (`aws:*`, `kms:*`).

use crate::context::Caller;
use crate::model::KeyRecord;
use crate::policy::ConditionContext;

/// The condition context of a request: the caller's, the request's, and the key's values.
pub(crate) fn condition_context(
    caller: &Caller,
    action: &str,
    key: Option<&KeyRecord>,
    tags: &std::collections::BTreeMap<String, String>,
    now_ms: i64,
) -> ConditionContext {
    let mut c = match &caller.request {
        Some(body) => super::conditions::request_conditions(action, body),
        None => ConditionContext::new(),
    };
    if let Some(ip) = caller.source_ip {
        c.set("aws:SourceIp", ip.to_string());
    }
    c.set("aws:SecureTransport", caller.secure_transport.to_string());
    c.set("aws:CurrentTime", kms_audit_time(now_ms));
    c.set("aws:EpochTime", (now_ms / 1000).to_string());
    c.set("aws:PrincipalArn", caller.principal_arn.clone());
    c.set("aws:PrincipalAccount", caller.account.clone());
    c.set("aws:userid", caller.user_id.clone());
    if let Some(name) = caller
        .principal_arn
        .strip_prefix(&format!("arn:aws:iam::{}:user/", caller.account))
    {
        c.set("aws:username", name.to_owned());
    }
    c.set("kms:CallerAccount", caller.account.clone());
    c.set("aws:ViaAWSService", "false");
    c.set("kms:GrantIsForAWSResource", "false");
    for (k, v) in tags {
        c.set(&format!("aws:PrincipalTag/{k}"), v.clone());
    }
    if let Some(k) = key {
        for (t, v) in &k.tags {
            c.set(&format!("aws:ResourceTag/{t}"), v.clone());
        }
        c.set("kms:KeySpec", k.key_spec.clone());
        c.set("kms:KeyUsage", k.key_usage.clone());
        c.set("kms:KeyOrigin", k.origin.clone());
        c.set("kms:MultiRegion", k.multi_region.to_string());
        if k.multi_region {
            let kind = if k.is_primary() { "PRIMARY" } else { "REPLICA" };
            c.set("kms:MultiRegionKeyType", kind.to_owned());
        }
    }
    c
}

fn kms_audit_time(ms: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(fmt).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn current_time_format() {
        assert_eq!(
            super::kms_audit_time(1_700_000_000_000),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(super::kms_audit_time(0), "1970-01-01T00:00:00Z");
    }
}
