//! Building CloudTrail-shaped records.

use serde::ser::{Serialize, SerializeMap, Serializer};
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
/// (encryption contexts) kept verbatim. Consumes the body (its strings are moved, not copied).
pub fn redact_request(body: Value, redacted: &[&str]) -> Value {
    match body {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(k, _)| !redacted.contains(&k.as_str()))
                .map(|(k, v)| {
                    let v = if k.contains("EncryptionContext") {
                        v
                    } else {
                        redact_request(v, redacted)
                    };
                    (lower_camel(&k), v)
                })
                .collect::<Map<String, Value>>(),
        ),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|i| redact_request(i, redacted))
                .collect(),
        ),
        other => other,
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
    /// The CloudTrail JSON as a [`Value`] (the trail itself is written from the
    /// [`Serialize`] form, see [`crate::AuditLine::from_serialize`]).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    fn identity_kind(&self) -> Option<(&str, &str, &'static str)> {
        let (Some(arn), Some(account)) = (&self.principal_arn, &self.account) else {
            return None;
        };
        let kind = if arn.contains(":assumed-role/") {
            "AssumedRole"
        } else if arn.ends_with(":root") {
            "Root"
        } else {
            "IAMUser"
        };
        Some((arn, account, kind))
    }
}

/// `userIdentity` of an [`ApiCallRecord`].
struct UserIdentity<'a>(&'a ApiCallRecord);

impl Serialize for UserIdentity<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        match r.identity_kind() {
            Some((arn, account, kind)) => {
                m.serialize_entry("type", kind)?;
                m.serialize_entry("principalId", &r.principal_id)?;
                m.serialize_entry("arn", arn)?;
                m.serialize_entry("accountId", account)?;
                m.serialize_entry("accessKeyId", &r.access_key_id)?;
                if kind == "IAMUser" {
                    if let Some(name) = arn.rsplit('/').next() {
                        m.serialize_entry("userName", name)?;
                    }
                }
            }
            None => {
                m.serialize_entry("type", "Unknown")?;
                m.serialize_entry("accessKeyId", &r.access_key_id)?;
            }
        }
        m.end()
    }
}

/// One entry of `resources`: a KMS key.
struct Resource<'a>(&'a str);

impl Serialize for Resource<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("accountId", self.0.split(':').nth(4).unwrap_or_default())?;
        m.serialize_entry("type", "AWS::KMS::Key")?;
        m.serialize_entry("ARN", self.0)?;
        m.end()
    }
}

/// `tlsDetails`.
struct TlsDetails<'a>(&'a (String, String, String));

impl Serialize for TlsDetails<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (version, suite, host) = self.0;
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("tlsVersion", version)?;
        m.serialize_entry("cipherSuite", suite)?;
        m.serialize_entry("clientProvidedHostHeader", host)?;
        m.end()
    }
}

/// The CloudTrail record, member by member (no intermediate [`Value`]).
impl Serialize for ApiCallRecord {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("eventVersion", "1.08")?;
        m.serialize_entry("userIdentity", &UserIdentity(self))?;
        m.serialize_entry("eventTime", &event_time(self.time_ms))?;
        m.serialize_entry("eventSource", &self.event_source)?;
        m.serialize_entry("eventName", &self.event_name)?;
        m.serialize_entry("awsRegion", &self.region)?;
        m.serialize_entry("sourceIPAddress", &self.source_ip)?;
        m.serialize_entry("userAgent", &self.user_agent)?;
        if let Some(code) = &self.error_code {
            m.serialize_entry("errorCode", code)?;
            m.serialize_entry("errorMessage", &self.error_message)?;
        }
        m.serialize_entry("requestParameters", &self.request_parameters)?;
        m.serialize_entry("responseElements", &self.response_elements)?;
        m.serialize_entry("requestID", &self.request_id)?;
        m.serialize_entry("eventID", &self.event_id)?;
        m.serialize_entry("readOnly", &self.read_only)?;
        m.serialize_entry(
            "resources",
            &self
                .resources
                .iter()
                .map(|arn| Resource(arn))
                .collect::<Vec<_>>(),
        )?;
        m.serialize_entry("eventType", "AwsApiCall")?;
        m.serialize_entry("managementEvent", &true)?;
        let recipient = self
            .resources
            .first()
            .and_then(|a| a.split(':').nth(4))
            .or(self.account.as_deref());
        m.serialize_entry("recipientAccountId", &recipient)?;
        m.serialize_entry("eventCategory", "Management")?;
        if let Some(tls) = &self.tls {
            m.serialize_entry("tlsDetails", &TlsDetails(tls))?;
        }
        m.end()
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
        let r = redact_request(body, &["Plaintext", "GrantTokens", "AttestationDocument"]);
        assert_eq!(
            r,
            json!({
                "keyId": "alias/x",
                "encryptionContext": {"Tenant": "A", "Plaintext": "kept: a context key, not the member"},
                "recipient": {"keyEncryptionAlgorithm": "RSAES_OAEP_SHA_256"},
            })
        );
    }

    /// Every member, as CloudTrail names them (the form written before records were
    /// serialised without a `Value`).
    #[test]
    fn full_record_members() {
        let r = ApiCallRecord {
            time_ms: 1_700_000_000_000,
            event_name: "Decrypt".into(),
            event_source: "kms.amazonaws.com".into(),
            region: "eu-west-1".into(),
            access_key_id: Some("AKIDX".into()),
            source_ip: "10.0.0.1".into(),
            user_agent: "ua".into(),
            request_parameters: json!({"keyId": "k"}),
            error_code: Some("InvalidSignatureException".into()),
            error_message: Some("bad".into()),
            request_id: "rid".into(),
            event_id: "eid".into(),
            tls: Some((
                "TLSv1.3".into(),
                "TLS_AES_128_GCM_SHA256".into(),
                "h".into(),
            )),
            ..Default::default()
        };
        let line = crate::AuditLine::from_serialize(&r).unwrap();
        let v: Value = serde_json::from_slice(line.as_bytes()).unwrap();
        assert_eq!(
            v,
            json!({
                "eventVersion": "1.08",
                "userIdentity": {"type": "Unknown", "accessKeyId": "AKIDX"},
                "eventTime": "2023-11-14T22:13:20Z",
                "eventSource": "kms.amazonaws.com",
                "eventName": "Decrypt",
                "awsRegion": "eu-west-1",
                "sourceIPAddress": "10.0.0.1",
                "userAgent": "ua",
                "requestParameters": {"keyId": "k"},
                "responseElements": null,
                "requestID": "rid",
                "eventID": "eid",
                "readOnly": false,
                "resources": [],
                "eventType": "AwsApiCall",
                "managementEvent": true,
                "recipientAccountId": null,
                "eventCategory": "Management",
                "errorCode": "InvalidSignatureException",
                "errorMessage": "bad",
                "tlsDetails": {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256", "clientProvidedHostHeader": "h"},
            })
        );
        assert_eq!(r.to_json(), v);
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
