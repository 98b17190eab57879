//! `xks-proxy`: an implementation of the AWS KMS External Key Store (XKS) Proxy API v1
//! (specification 1.0.3) serving AES-256 keys held in a PKCS#11 token.
//!
//! See the crate README for the configuration reference and the API behaviour. Modules:
//! [`config`] (TOML), [`api`] (the four operations), [`auth`] (SigV4 and authorisation
//! rules), [`cipher`] (AAD construction and CDIV), [`key_state`] (key usage and disabled
//! keys), [`key_state_cache`] (key states remembered between calls), [`backend`] (the token), [`tls`], [`audit`], [`server`] and [`cli`]; [`testkit`]
//! starts the binary for integration tests.

pub mod api;
pub mod audit;
pub mod auth;
pub mod backend;
pub mod cipher;
pub mod cli;
pub mod config;
pub mod key_state;
pub mod key_state_cache;
pub mod server;
pub mod testkit;
pub mod tls;
