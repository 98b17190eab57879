//! The one way an unexpected failure becomes a client-facing error.

use kms_types::KmsError;

/// Logs `e` and answers KMSInternalException without its details (they may name internals).
pub(crate) fn internal<E: std::fmt::Display>(e: E) -> KmsError {
    tracing::error!(error = %e, "internal error");
    KmsError::internal("kmsd hit an internal error; the request was not carried out")
}
