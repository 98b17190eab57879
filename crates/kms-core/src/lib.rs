//! The kmsd service: one method per KMS operation, the key model and its state rules, the
//! ciphertext envelope, and the storage trait. It never touches sockets or SQL directly.
//!
//! A request reaches [`Service::dispatch`] with an authenticated [`Caller`], the operation name
//! and the raw JSON body; it returns the JSON answer or a [`KmsError`].

mod authz;
mod backends;
mod context;
pub mod envelope;
mod error;
pub mod hsm;
pub mod iam;
mod ids;
pub mod jobs;
pub mod model;
pub mod policy;
mod registry;
mod service;
pub mod spec;
pub mod store;
pub mod xks;

pub use context::{Caller, Clock, EventSink, HsmAuditSink, ManualClock, SystemClock};
pub use kms_types::{ErrorCode, KmsError};
pub use registry::DEFAULT_KEY_CACHE_SIZE;
pub use service::dispatch::{is_model_operation, SUPPORTED_OPERATIONS};
pub use service::quota::{QuotaCharge, QuotaClass};
pub use service::{AccessKeySecret, AdminCredentials, Service};
pub use store::{
    Change, ChangeBatch, MemStore, Store, StoreError, StoreGuard, WriteOp, CHANGE_LOG_RETAINED,
    KEY_LAST_USAGE_DOC,
};
