//! The STS actions kmsd answers (Query protocol, XML responses): `GetCallerIdentity`, and
//! `AssumeRole` for kmsd's roles.

use kms_core::Caller;
use kms_types::KmsError;

/// Escapes text for XML content.
fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The `Action` of a Query-protocol body.
pub fn action(body: &[u8]) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v.into_owned())
}

/// One parameter of a Query-protocol body.
pub fn param(body: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// ISO 8601 UTC (`2026-11-23T20:00:00Z`), as STS writes `Expiration`.
fn iso8601(ms: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(fmt).ok())
        .unwrap_or_default()
}

/// The AssumeRole response document (it carries the session's secret: never log it).
pub fn assume_role(c: &kms_core::iam::TemporaryCredentials, request_id: &str) -> String {
    format!(
        "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <AssumeRoleResult>\n    <Credentials>\n      <AccessKeyId>{}</AccessKeyId>\n      <SecretAccessKey>{}</SecretAccessKey>\n      <SessionToken>{}</SessionToken>\n      <Expiration>{}</Expiration>\n    </Credentials>\n    <AssumedRoleUser>\n      <AssumedRoleId>{}</AssumedRoleId>\n      <Arn>{}</Arn>\n    </AssumedRoleUser>\n  </AssumeRoleResult>\n  <ResponseMetadata>\n    <RequestId>{}</RequestId>\n  </ResponseMetadata>\n</AssumeRoleResponse>\n",
        xml_escape(&c.access_key_id),
        xml_escape(c.secret_access_key.as_str()),
        xml_escape(c.session_token.as_str()),
        iso8601(c.expires_ms),
        xml_escape(&c.assumed_role_id),
        xml_escape(&c.assumed_role_arn),
        xml_escape(request_id)
    )
}

/// STS's name for an error code (`AccessDenied`, `ValidationError`, ...).
fn sts_code(code: kms_types::ErrorCode) -> &'static str {
    match code {
        kms_types::ErrorCode::AccessDeniedException => "AccessDenied",
        kms_types::ErrorCode::ValidationException => "ValidationError",
        kms_types::ErrorCode::UnrecognizedClientException => "InvalidClientTokenId",
        kms_types::ErrorCode::InvalidSignatureException => "SignatureDoesNotMatch",
        kms_types::ErrorCode::MissingAuthenticationTokenException => "MissingAuthenticationToken",
        kms_types::ErrorCode::IncompleteSignatureException => "IncompleteSignature",
        kms_types::ErrorCode::ExpiredTokenException => "ExpiredToken",
        other => other.as_str(),
    }
}

/// The HTTP status STS uses for an error: 403 for a refused caller (AccessDenied, an unknown
/// access key, a wrong or missing signature), as STS sends; otherwise the KMS rule (400 for
/// client errors, 5xx for faults).
pub fn status(code: kms_types::ErrorCode) -> u16 {
    use kms_types::ErrorCode::*;
    match code {
        AccessDeniedException
        | UnrecognizedClientException
        | InvalidSignatureException
        | MissingAuthenticationTokenException => 403,
        other => other.status(),
    }
}

/// The GetCallerIdentity response document.
pub fn get_caller_identity(caller: &Caller) -> String {
    format!(
        "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <GetCallerIdentityResult>\n    <Arn>{}</Arn>\n    <UserId>{}</UserId>\n    <Account>{}</Account>\n  </GetCallerIdentityResult>\n  <ResponseMetadata>\n    <RequestId>{}</RequestId>\n  </ResponseMetadata>\n</GetCallerIdentityResponse>\n",
        xml_escape(&caller.principal_arn),
        xml_escape(&caller.user_id),
        xml_escape(&caller.account),
        xml_escape(&caller.request_id)
    )
}

/// An STS error document.
pub fn error(e: &KmsError, request_id: &str) -> String {
    let kind = if e.code.status() >= 500 {
        "Receiver"
    } else {
        "Sender"
    };
    format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <Error>\n    <Type>{kind}</Type>\n    <Code>{}</Code>\n    <Message>{}</Message>\n  </Error>\n  <RequestId>{}</RequestId>\n</ErrorResponse>\n",
        sts_code(e.code),
        xml_escape(&e.message),
        xml_escape(request_id)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sts_names_and_statuses_are_what_sts_sends() {
        use kms_types::ErrorCode::*;
        assert_eq!(
            sts_code(UnrecognizedClientException),
            "InvalidClientTokenId"
        );
        assert_eq!(sts_code(InvalidSignatureException), "SignatureDoesNotMatch");
        assert_eq!(status(UnrecognizedClientException), 403);
        assert_eq!(status(AccessDeniedException), 403);
        assert_eq!(status(ValidationException), 400);
        assert_eq!(status(NotFoundException), 400);
        assert_eq!(status(KMSInternalException), 500);
    }
}
