//! The error every KMS operation answers with: an AWS error code (`__type`) and a message.

/// Defines [`ErrorCode`] from one list: the variants, their `__type` strings and `ALL`.
macro_rules! error_codes {
    ($($code:ident,)+) => {
        /// AWS error codes kmsd emits: the model's exceptions plus the common errors of every
        /// AWS JSON service. `status()` is the HTTP status real AWS sends (400 for every client
        /// error, whatever the Smithy model's `httpError` trait says).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[allow(missing_docs)]
        pub enum ErrorCode {
            $($code,)+
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$code,)+];

            /// The `__type` string.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$code => stringify!($code),)+
                }
            }
        }
    };
}

error_codes! {
    AlreadyExistsException,
    CloudHsmClusterInUseException,
    CloudHsmClusterInvalidConfigurationException,
    CloudHsmClusterNotActiveException,
    CloudHsmClusterNotFoundException,
    CloudHsmClusterNotRelatedException,
    ConflictException,
    CustomKeyStoreHasCMKsException,
    CustomKeyStoreInvalidStateException,
    CustomKeyStoreNameInUseException,
    CustomKeyStoreNotFoundException,
    DependencyTimeoutException,
    DisabledException,
    DryRunOperationException,
    ExpiredImportTokenException,
    IncorrectKeyException,
    IncorrectKeyMaterialException,
    IncorrectTrustAnchorException,
    InvalidAliasNameException,
    InvalidArnException,
    InvalidCiphertextException,
    InvalidGrantIdException,
    InvalidGrantTokenException,
    InvalidImportTokenException,
    InvalidKeyUsageException,
    InvalidMarkerException,
    KMSInternalException,
    KMSInvalidMacException,
    KMSInvalidSignatureException,
    KMSInvalidStateException,
    KeyUnavailableException,
    LimitExceededException,
    MalformedPolicyDocumentException,
    NotFoundException,
    TagException,
    UnsupportedOperationException,
    XksKeyAlreadyInUseException,
    XksKeyInvalidConfigurationException,
    XksKeyNotFoundException,
    XksProxyIncorrectAuthenticationCredentialException,
    XksProxyInvalidConfigurationException,
    XksProxyInvalidResponseException,
    XksProxyUriEndpointInUseException,
    XksProxyUriInUseException,
    XksProxyUriUnreachableException,
    XksProxyVpcEndpointServiceInUseException,
    XksProxyVpcEndpointServiceInvalidConfigurationException,
    XksProxyVpcEndpointServiceNotFoundException,
    // CloudHSM v2 (BaldrApiService) errors.
    CloudHsmAccessDeniedException,
    CloudHsmInternalFailureException,
    CloudHsmInvalidRequestException,
    CloudHsmResourceLimitExceededException,
    CloudHsmResourceNotFoundException,
    CloudHsmServiceException,
    CloudHsmTagException,
    // Common errors of AWS JSON services (not in the KMS model).
    AccessDeniedException,
    ValidationException,
    ThrottlingException,
    UnrecognizedClientException,
    InvalidSignatureException,
    IncompleteSignatureException,
    MissingAuthenticationTokenException,
    ExpiredTokenException,
    UnknownOperationException,
    SerializationException,
    InternalFailure,
}

impl ErrorCode {
    /// The HTTP status real AWS sends: 400 for every client error (also those the Smithy model
    /// marks 404/409/412, which the endpoint does not follow), 500 for internal faults, 503 for
    /// DependencyTimeoutException. Recorded behaviour: `shared/reference/protocol.md` §4.2.
    pub fn status(self) -> u16 {
        use ErrorCode::*;
        match self {
            KMSInternalException
            | KeyUnavailableException
            | InternalFailure
            | CloudHsmInternalFailureException => 500,
            DependencyTimeoutException => 503,
            _ => 400,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error answer: `{"__type": code, "message": message}` with `code.status()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsError {
    /// The AWS error code.
    pub code: ErrorCode,
    /// A message for people. Never contains key material, plaintext or secrets.
    pub message: String,
}

impl KmsError {
    /// An error with a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        KmsError {
            code,
            message: message.into(),
        }
    }

    /// `KMSInternalException` with a message.
    pub fn internal(message: impl Into<String>) -> Self {
        KmsError::new(ErrorCode::KMSInternalException, message)
    }

    /// The message as sent on the wire: none for the three codes AWS answers without one
    /// (InvalidCiphertextException, KMSInvalidSignatureException, KMSInvalidMacException: a
    /// failed check says nothing about why), nor for an empty message. kmsd's own text stays in
    /// the server log and the audit record.
    pub fn wire_message(&self) -> Option<&str> {
        let silent = matches!(
            self.code,
            ErrorCode::InvalidCiphertextException
                | ErrorCode::KMSInvalidSignatureException
                | ErrorCode::KMSInvalidMacException
        );
        (!silent && !self.message.is_empty()).then_some(self.message.as_str())
    }

    /// The JSON body AWS sends for this error: `{"__type": ..., "message": ...}`, without
    /// `message` where [`KmsError::wire_message`] has none.
    pub fn to_body(&self) -> Vec<u8> {
        let body = match self.wire_message() {
            Some(m) => serde_json::json!({"__type": self.code.as_str(), "message": m}),
            None => serde_json::json!({"__type": self.code.as_str()}),
        };
        body.to_string().into_bytes()
    }
}

impl std::fmt::Display for KmsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for KmsError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_model_exception_has_a_code() {
        // The hand-written list must cover every exception the KMS and CloudHSM models name.
        let known: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        for e in crate::generated::EXCEPTIONS
            .iter()
            .chain(crate::cloudhsm::EXCEPTIONS)
        {
            assert!(known.contains(e), "{e} missing from ErrorCode");
        }
    }

    #[test]
    fn failed_checks_carry_no_message_on_the_wire() {
        for code in [
            ErrorCode::InvalidCiphertextException,
            ErrorCode::KMSInvalidSignatureException,
            ErrorCode::KMSInvalidMacException,
        ] {
            let body = KmsError::new(code, "why it failed").to_body();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v, serde_json::json!({"__type": code.as_str()}));
        }
        let body = KmsError::new(ErrorCode::NotFoundException, "Key 'x' does not exist").to_body();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["message"], "Key 'x' does not exist");
    }

    #[test]
    fn statuses_are_what_aws_sends_not_the_smithy_http_error_trait() {
        for code in ErrorCode::ALL {
            let expected = match code {
                ErrorCode::KMSInternalException
                | ErrorCode::KeyUnavailableException
                | ErrorCode::InternalFailure
                | ErrorCode::CloudHsmInternalFailureException => 500,
                ErrorCode::DependencyTimeoutException => 503,
                _ => 400,
            };
            assert_eq!(code.status(), expected, "{code}");
        }
        assert_eq!(ErrorCode::NotFoundException.status(), 400);
        assert_eq!(ErrorCode::KMSInvalidStateException.status(), 400);
        assert_eq!(ErrorCode::DryRunOperationException.status(), 400);
    }
}
