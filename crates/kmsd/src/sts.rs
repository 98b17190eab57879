//! The one STS action kmsd answers: `GetCallerIdentity` (Query protocol, XML response).

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
        e.code.as_str(),
        xml_escape(&e.message),
        xml_escape(request_id)
    )
}
