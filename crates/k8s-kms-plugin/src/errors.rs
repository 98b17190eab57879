//! kmsd call failures and the gRPC status each becomes.

use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};

/// A failed call to kmsd: the KMS error code when kmsd answered, and a message without secrets.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct KmsError {
    /// The KMS error code (`AccessDeniedException`, ...) when kmsd answered with one; None when
    /// kmsd could not be reached or the answer made no sense.
    pub code: Option<String>,
    /// What went wrong, for logs and the gRPC status message.
    pub message: String,
    /// Whether kmsd was not reached (connection, timeout): the caller may retry.
    pub unreachable: bool,
}

impl KmsError {
    /// Classifies an SDK error.
    pub fn from_sdk<E, R>(err: SdkError<E, R>) -> KmsError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        match &err {
            SdkError::ServiceError(service) => {
                let e = service.err();
                KmsError {
                    code: e.code().map(str::to_owned),
                    message: format!(
                        "kmsd: {}: {}",
                        e.code().unwrap_or("error"),
                        e.message().unwrap_or("")
                    ),
                    unreachable: false,
                }
            }
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => KmsError {
                code: None,
                message: format!(
                    "kmsd unreachable: {}",
                    aws_sdk_kms::error::DisplayErrorContext(&err)
                ),
                unreachable: true,
            },
            _ => KmsError {
                code: None,
                message: format!(
                    "kmsd call failed: {}",
                    aws_sdk_kms::error::DisplayErrorContext(&err)
                ),
                unreachable: false,
            },
        }
    }

    /// An answer from kmsd that lacks what the API promises.
    pub fn unexpected(message: &str) -> KmsError {
        KmsError {
            code: None,
            message: format!("kmsd: {message}"),
            unreachable: false,
        }
    }

    /// kmsd says the ciphertext was made under another key.
    pub fn is_incorrect_key(&self) -> bool {
        self.code.as_deref() == Some("IncorrectKeyException")
    }

    /// The gRPC status kube-apiserver sees.
    pub fn to_status(&self) -> tonic::Status {
        let code = match self.code.as_deref() {
            _ if self.unreachable => tonic::Code::Unavailable,
            Some("AccessDeniedException") => tonic::Code::PermissionDenied,
            Some(
                "InvalidCiphertextException" | "IncorrectKeyException" | "ValidationException",
            ) => tonic::Code::InvalidArgument,
            Some("NotFoundException") => tonic::Code::NotFound,
            Some(
                "DisabledException"
                | "KMSInvalidStateException"
                | "KeyUnavailableException"
                | "CustomKeyStoreInvalidStateException"
                | "XksKeyInvalidConfigurationException"
                | "XksKeyNotFoundException"
                | "XksProxyUriUnreachableException"
                | "XksProxyInvalidResponseException"
                | "XksProxyInvalidConfigurationException"
                | "CloudHsmClusterInvalidConfigurationException",
            ) => tonic::Code::FailedPrecondition,
            Some(
                "ThrottlingException" | "LimitExceededException" | "DependencyTimeoutException",
            ) => tonic::Code::Unavailable,
            _ => tonic::Code::Internal,
        };
        tonic::Status::new(code, self.message.clone())
    }
}
