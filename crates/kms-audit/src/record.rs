//! Building CloudTrail-shaped records.

use serde_json::{json, Map, Value};

/// ISO-8601 UTC time with seconds, as CloudTrail writes `eventTime`.
pub fn event_time(ms: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(fmt).ok())
        .unwrap_or_default()
}

fn lower_camel(name: &str) -> String {
    let mut c = name.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Turns a request (or response) body into CloudTrail's `requestParameters`: member names in
/// lowerCamelCase, members in `redacted` (blobs, secrets, grant tokens) removed, map members
/// (encryption contexts) kept verbatim.
pub fn redact_request(body: &Value, redacted: &[&str]) -> Value {
    match body {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                if redacted.contains(&k.as_str()) {
                    continue;
                }
                let v = if k.contains("EncryptionContext") {
                    v.clone()
                } else {
                    redact_request(v, redacted)
                };
                out.insert(lower_camel(k), v);
            }
            Value::Object(out)
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(|i| redact_request(i, redacted)).collect())
        }
        other => other.clone(),
    }
}

/// An API call, as the HTTP layer saw it.
#[derive(Debug, Clone, Default)]
pub struct ApiCallRecord {
    /// Time of the call (ms).
    pub time_ms: i64,
    /// Operation name (`Encrypt`), or `GetCallerIdentity` for STS.
    pub event_name: String,
    /// `kms.amazonaws.com` or `sts.amazonaws.com`.
    pub event_source: String,
    /// Region from the credential scope (empty if authentication failed before it was known).
    pub region: String,
    /// Caller account, if authenticated.
    pub account: Option<String>,
    /// Caller ARN, if authenticated.
    pub principal_arn: Option<String>,
    /// Caller unique id.
    pub principal_id: Option<String>,
    /// Access key id used.
    pub access_key_id: Option<String>,
    /// Client address.
    pub source_ip: String,
    /// User-Agent header.
    pub user_agent: String,
    /// Redacted request parameters.
    pub request_parameters: Value,
    /// Redacted response elements (`Value::Null` for data-plane and read-only calls).
    pub response_elements: Value,
    /// AWS error code on failure.
    pub error_code: Option<String>,
    /// Error message on failure.
    pub error_message: Option<String>,
    /// `x-amzn-RequestId`.
    pub request_id: String,
    /// Unique event id.
    pub event_id: String,
    /// Read-only call.
    pub read_only: bool,
    /// Key ARNs the call touched.
    pub resources: Vec<String>,
    /// (version, cipher suite, Host header) when the call came over TLS.
    pub tls: Option<(String, String, String)>,
}

impl ApiCallRecord {
    /// The CloudTrail JSON.
    pub fn to_json(&self) -> Value {
        let user_identity = match (&self.principal_arn, &self.account) {
            (Some(arn), Some(account)) => {
                let kind = if arn.contains(":assumed-role/") {
                    "AssumedRole"
                } else if arn.ends_with(":root") {
                    "Root"
                } else {
                    "IAMUser"
                };
                let mut u = json!({
                    "type": kind,
                    "principalId": self.principal_id,
                    "arn": arn,
                    "accountId": account,
                    "accessKeyId": self.access_key_id,
                });
                if kind == "IAMUser" {
                    if let Some(name) = arn.rsplit('/').next() {
                        u["userName"] = json!(name);
                    }
                }
                u
            }
            _ => json!({"type": "Unknown", "accessKeyId": self.access_key_id}),
        };
        let mut v = json!({
            "eventVersion": "1.08",
            "userIdentity": user_identity,
            "eventTime": event_time(self.time_ms),
            "eventSource": self.event_source,
            "eventName": self.event_name,
            "awsRegion": self.region,
            "sourceIPAddress": self.source_ip,
            "userAgent": self.user_agent,
            "requestParameters": self.request_parameters,
            "responseElements": self.response_elements,
            "requestID": self.request_id,
            "eventID": self.event_id,
            "readOnly": self.read_only,
            "resources": self.resources.iter().map(|arn| json!({
                "accountId": arn.split(':').nth(4).unwrap_or_default(),
                "type": "AWS::KMS::Key",
                "ARN": arn,
            })).collect::<Vec<_>>(),
            "eventType": "AwsApiCall",
            "managementEvent": true,
            "recipientAccountId": self.resources.first().and_then(|a| a.split(':').nth(4)).map(str::to_owned).or_else(|| self.account.clone()),
            "eventCategory": "Management",
        });
        if let Some(code) = &self.error_code {
            v["errorCode"] = json!(code);
            v["errorMessage"] = json!(self.error_message);
        }
        if let Some((version, suite, host)) = &self.tls {
            v["tlsDetails"] = json!({"tlsVersion": version, "cipherSuite": suite, "clientProvidedHostHeader": host});
        }
        v
    }
}

/// A lifecycle event kmsd performed itself (e.g. `DeleteKey` at the end of the waiting period).
#[derive(Debug, Clone)]
pub struct ServiceEventRecord {
    /// Time (ms).
    pub time_ms: i64,
    /// `DeleteKey`, `RotateKey`, ...
    pub event_name: String,
    /// Region of the key.
    pub region: String,
    /// Owner account.
    pub account: String,
    /// Key ARN.
    pub key_arn: String,
    /// Unique event id.
    pub event_id: String,
}

impl ServiceEventRecord {
    /// The CloudTrail JSON (`eventType: AwsServiceEvent`).
    pub fn to_json(&self) -> Value {
        json!({
            "eventVersion": "1.08",
            "userIdentity": {"accountId": self.account, "invokedBy": "kms.amazonaws.com"},
            "eventTime": event_time(self.time_ms),
            "eventSource": "kms.amazonaws.com",
            "eventName": self.event_name,
            "awsRegion": self.region,
            "sourceIPAddress": "kms.amazonaws.com",
            "userAgent": "kms.amazonaws.com",
            "requestParameters": null,
            "responseElements": null,
            "eventID": self.event_id,
            "readOnly": false,
            "resources": [{"accountId": self.account, "type": "AWS::KMS::Key", "ARN": self.key_arn}],
            "eventType": "AwsServiceEvent",
            "managementEvent": true,
            "recipientAccountId": self.account,
            "serviceEventDetails": {"keyId": self.key_arn.rsplit('/').next().unwrap_or_default()},
            "eventCategory": "Management",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_removes_secrets_and_keeps_contexts() {
        let body = json!({
            "KeyId": "alias/x",
            "Plaintext": "c2VjcmV0",
            "GrantTokens": ["tok"],
            "EncryptionContext": {"Tenant": "A", "Plaintext": "kept: a context key, not the member"},
            "Recipient": {"AttestationDocument": "AAAA", "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256"},
        });
        let r = redact_request(&body, &["Plaintext", "GrantTokens", "AttestationDocument"]);
        assert_eq!(
            r,
            json!({
                "keyId": "alias/x",
                "encryptionContext": {"Tenant": "A", "Plaintext": "kept: a context key, not the member"},
                "recipient": {"keyEncryptionAlgorithm": "RSAES_OAEP_SHA_256"},
            })
        );
    }

    #[test]
    fn record_shape() {
        let r = ApiCallRecord {
            time_ms: 1_700_000_000_000,
            event_name: "Encrypt".into(),
            event_source: "kms.amazonaws.com".into(),
            region: "us-east-1".into(),
            account: Some("111122223333".into()),
            principal_arn: Some("arn:aws:iam::111122223333:user/admin".into()),
            resources: vec!["arn:aws:kms:us-east-1:111122223333:key/k".into()],
            read_only: true,
            ..Default::default()
        };
        let v = r.to_json();
        assert_eq!(v["eventTime"], "2023-11-14T22:13:20Z");
        assert_eq!(v["userIdentity"]["type"], "IAMUser");
        assert_eq!(v["userIdentity"]["userName"], "admin");
        assert_eq!(v["resources"][0]["type"], "AWS::KMS::Key");
        assert_eq!(v["recipientAccountId"], "111122223333");
        assert!(v.get("errorCode").is_none());
    }
}
