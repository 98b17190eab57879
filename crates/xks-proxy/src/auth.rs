//! Request authentication (SigV4, service `kms-xks-proxy`) and secondary authorisation over
//! requestMetadata.

use kms_sigv4::RequestParts;
use serde_json::Value;

use crate::config::{Credential, KeyStore, RuleFile};

/// The SigV4 service name of the XKS Proxy API.
pub const SERVICE: &str = "kms-xks-proxy";

/// Verifies the request's SigV4 signature against the store's credentials. Returns the access
/// key id used; the error is a message for the 401 `AuthenticationFailedException` (never
/// containing a secret).
pub fn authenticate(
    store: &KeyStore,
    parts: &RequestParts<'_>,
    now_secs: i64,
) -> Result<String, String> {
    let (auth, cred) = authorization(store, &parts.headers)?;
    let amz_date = kms_sigv4::check_date(parts, &auth, now_secs).map_err(|e| e.message)?;
    kms_sigv4::verify(parts, &auth, &amz_date, &cred.secret).map_err(|e| e.message)?;
    Ok(auth.access_key_id)
}

/// The checks of [`authenticate`] that need only the headers (a well-formed Authorization
/// header for this service and the store's region, naming one of its access keys), made
/// before the body is read.
pub fn check_headers(store: &KeyStore, headers: &[(String, String)]) -> Result<(), String> {
    authorization(store, headers).map(|_| ())
}

fn authorization<'s>(
    store: &'s KeyStore,
    headers: &[(String, String)],
) -> Result<(kms_sigv4::ParsedAuth, &'s Credential), String> {
    let header = headers
        .iter()
        .find(|(n, _)| n == "authorization")
        .map(|(_, v)| v.as_str())
        .ok_or("missing Authorization header")?;
    let auth = kms_sigv4::parse_authorization(header).map_err(|e| e.message)?;
    if auth.service != SERVICE {
        return Err(format!(
            "credential scope service is {:?}, expected {SERVICE}",
            auth.service
        ));
    }
    if auth.region != store.region {
        return Err(format!(
            "credential scope region is {:?}, this key store accepts {:?}",
            auth.region, store.region
        ));
    }
    let cred = store
        .credentials
        .iter()
        .find(|c| c.access_key_id == auth.access_key_id)
        .ok_or_else(|| format!("unknown access key id {}", auth.access_key_id))?;
    Ok((auth, cred))
}

/// Glob match where `*` stands for any run of characters (also empty).
pub fn glob(pattern: &str, value: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    let (mut pi, mut vi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, vi));
            pi += 1;
        } else if pi < p.len() && p[pi] == v[vi] {
            pi += 1;
            vi += 1;
        } else if let Some((sp, sv)) = star {
            pi = sp + 1;
            vi = sv + 1;
            star = Some((sp, sv + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

fn field<'a>(metadata: &'a Value, name: &str) -> Option<&'a str> {
    metadata.get(name).and_then(Value::as_str)
}

fn matches_list(list: &Option<Vec<String>>, value: Option<&str>, use_glob: bool) -> bool {
    match list {
        None => true,
        Some(allowed) => value.is_some_and(|v| {
            allowed
                .iter()
                .any(|a| if use_glob { glob(a, v) } else { a == v })
        }),
    }
}

fn rule_allows(rule: &RuleFile, metadata: &Value) -> bool {
    matches_list(&rule.principals, field(metadata, "awsPrincipalArn"), true)
        && matches_list(&rule.operations, field(metadata, "kmsOperation"), false)
        && matches_list(&rule.kms_key_arns, field(metadata, "kmsKeyArn"), true)
        && matches_list(&rule.via_services, field(metadata, "kmsViaService"), false)
        && matches_list(&rule.source_vpcs, field(metadata, "awsSourceVpc"), false)
        && matches_list(&rule.source_vpces, field(metadata, "awsSourceVpce"), false)
}

fn rule_name(i: usize, r: &RuleFile) -> String {
    r.name.clone().unwrap_or_else(|| format!("rule #{}", i + 1))
}

/// The authorisation decision for a key operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No rule covers the key: allowed.
    NoRules,
    /// Allowed by the named rule.
    Allowed(String),
    /// Denied: the key has rules and none allows the request.
    Denied(String),
}

/// Evaluates the store's rules for a request on `external_key_id`.
pub fn authorize(store: &KeyStore, external_key_id: &str, metadata: &Value) -> Decision {
    let mut covered = false;
    for (i, r) in store.rules.iter().enumerate() {
        if !r.keys.iter().any(|k| k == "*" || k == external_key_id) {
            continue;
        }
        covered = true;
        if rule_allows(r, metadata) {
            return Decision::Allowed(rule_name(i, r));
        }
    }
    if covered {
        Decision::Denied(format!(
            "no authorisation rule of key store {:?} allows kmsOperation {:?} by {:?} on key {external_key_id}",
            store.name,
            field(metadata, "kmsOperation").unwrap_or_default(),
            field(metadata, "awsPrincipalArn").unwrap_or_default(),
        ))
    } else {
        Decision::NoRules
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn glob_matching() {
        assert!(glob("*", ""));
        assert!(glob(
            "arn:aws:iam::*:user/Alice",
            "arn:aws:iam::123:user/Alice"
        ));
        assert!(!glob(
            "arn:aws:iam::*:user/Alice",
            "arn:aws:iam::123:user/Alicex"
        ));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("a*b*c", "aXXbYY"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exac"));
    }

    fn store(rules: Vec<RuleFile>) -> KeyStore {
        KeyStore {
            name: "s".into(),
            uri_path: "/kms/xks/v1".into(),
            region: "us-east-1".into(),
            crypto_enabled: true,
            max_requests_per_second: None,
            credentials: vec![],
            keys: [("k".to_string(), "k".to_string()), ("o".into(), "o".into())].into(),
            rules,
        }
    }

    #[test]
    fn rules() {
        let s = store(vec![RuleFile {
            name: None,
            keys: vec!["k".into()],
            principals: Some(vec!["arn:aws:iam::1:user/Alice".into()]),
            operations: Some(vec!["Encrypt".into(), "Decrypt".into()]),
            kms_key_arns: None,
            via_services: None,
            source_vpcs: None,
            source_vpces: None,
        }]);
        let ok = json!({"awsPrincipalArn": "arn:aws:iam::1:user/Alice", "kmsOperation": "Encrypt", "extra": 1});
        assert_eq!(authorize(&s, "k", &ok), Decision::Allowed("rule #1".into()));
        let bob = json!({"awsPrincipalArn": "arn:aws:iam::1:user/Bob", "kmsOperation": "Encrypt"});
        assert!(matches!(authorize(&s, "k", &bob), Decision::Denied(_)));
        let op =
            json!({"awsPrincipalArn": "arn:aws:iam::1:user/Alice", "kmsOperation": "FutureOp"});
        assert!(matches!(authorize(&s, "k", &op), Decision::Denied(_)));
        assert_eq!(authorize(&s, "o", &bob), Decision::NoRules);
    }
}
