//! kmsd: the HTTP front of the service. A request goes
//! [`server`] (listener, body, request id) -> [`auth`] (SigV4, caller) -> KMS JSON dispatch in
//! `kms_core::Service` or STS in [`sts`] -> response with AWS's framing.

pub use kms_sigv4 as sigv4;

pub mod admin;
pub mod admin_cli;
pub mod audit;
pub mod audit_api;
pub mod audit_cli;
pub mod auth;
pub mod cbor;
pub mod cli;
pub mod client_ip;
pub mod cluster_follow;
pub mod config;
pub mod console;
pub mod dir_lock;
pub mod hsm_admin;
pub mod hsm_driver;
pub mod hsm_fleet;
pub mod hygiene;
pub mod metrics;
pub mod quota;
pub mod root_key;
pub mod seed;
pub mod server;
pub mod sts;
pub mod tls;
pub mod xks_health;
pub mod xks_metrics;
pub mod xks_transport;
