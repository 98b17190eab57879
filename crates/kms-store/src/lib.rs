//! Storage backends for kmsd: [`SqliteStore`], the embedded default, and [`PostgresStore`],
//! which many kmsd nodes share.

pub mod fixtures;
mod postgres;
mod scratch;
mod sqlite;

use std::path::Path;
use std::sync::Arc;

use kms_core::{Store, StoreError};

pub use postgres::{PostgresSettings, PostgresStore};
pub use scratch::{ScratchDatabase, DEFAULT_TEST_POSTGRES, TEST_POSTGRES_ENV};
pub use sqlite::SqliteStore;

/// Checks a store spec without connecting; returns its description (never a password).
pub fn describe_store(spec: Option<&str>, data_dir: &Path) -> Result<String, StoreError> {
    match spec.map(str::trim).filter(|s| !s.is_empty()) {
        None | Some("sqlite") => Ok(format!(
            "sqlite {}",
            data_dir.join("kmsd.sqlite3").display()
        )),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => Ok(
            format!("postgres {}", PostgresSettings::parse(url)?.describe()),
        ),
        Some(_) => Err(StoreError(
            "store: give `sqlite` or a postgres://user@host/db URL".into(),
        )),
    }
}

/// Opens the store `spec` names: `None` or `sqlite` for `kmsd.sqlite3` in `data_dir`, a
/// `postgres://` (or `postgresql://`) URL for PostgreSQL. Returns the store and a description
/// for logs (never a password).
pub fn open_store(
    spec: Option<&str>,
    data_dir: &Path,
) -> Result<(Arc<dyn Store>, String), StoreError> {
    match spec.map(str::trim).filter(|s| !s.is_empty()) {
        None | Some("sqlite") => Ok((
            Arc::new(SqliteStore::open_in(data_dir)?),
            format!("sqlite {}", data_dir.join("kmsd.sqlite3").display()),
        )),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let settings = PostgresSettings::parse(url)?;
            let description = format!("postgres {}", settings.describe());
            Ok((Arc::new(PostgresStore::connect(&settings)?), description))
        }
        Some(_) => Err(StoreError(
            "store: give `sqlite` or a postgres://user@host/db URL".into(),
        )),
    }
}
