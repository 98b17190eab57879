//! The error every KMS operation answers with: an AWS error code (`__type`) and a message.

/// Defines [`ErrorCode`] from one list: the variants, their `__type` strings and `ALL`.
macro_rules! error_codes {
    ($($code:ident,)+) => {
        /// AWS error codes kmsd emits: the model's exceptions plus the common errors of every
        /// AWS JSON service. `status()` is the HTTP status from the Smithy model's `httpError`
        /// traits.
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
    /// HTTP status (Smithy `httpError`; 400 for the rest).
    pub fn status(self) -> u16 {
        use ErrorCode::*;
        match self {
            AlreadyExistsException
            | ConflictException
            | DisabledException
            | KMSInvalidStateException => 409,
            NotFoundException => 404,
            DryRunOperationException => 412,
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

    /// The JSON body AWS sends for this error.
    pub fn to_body(&self) -> Vec<u8> {
        serde_json::json!({"__type": self.code.as_str(), "message": self.message})
            .to_string()
            .into_bytes()
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
    fn statuses_follow_the_smithy_model() {
        assert_eq!(ErrorCode::NotFoundException.status(), 404);
        assert_eq!(ErrorCode::KMSInvalidStateException.status(), 409);
        assert_eq!(ErrorCode::DryRunOperationException.status(), 412);
        assert_eq!(ErrorCode::DependencyTimeoutException.status(), 503);
        assert_eq!(ErrorCode::ThrottlingException.status(), 400);
    }
}
