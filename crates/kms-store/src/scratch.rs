//! Throwaway PostgreSQL databases for tests: each created fresh on a server and dropped (with
//! its connections) when the value drops.

use std::sync::atomic::{AtomicU32, Ordering};

use kms_core::StoreError;
use tokio_postgres::NoTls;

/// The environment variable naming the PostgreSQL server tests use (a URL whose database
/// they may connect to and create databases from).
pub const TEST_POSTGRES_ENV: &str = "KMSD_TEST_POSTGRES";
/// The server tests use when [`TEST_POSTGRES_ENV`] is unset.
pub const DEFAULT_TEST_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A database created for one test and dropped afterwards.
pub struct ScratchDatabase {
    admin_url: String,
    name: String,
    url: String,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Runs `f` on a runtime of its own on another thread (callable from sync and async code).
fn on_thread<T: Send + 'static>(
    f: impl std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Result<T, StoreError> {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError(e.to_string()))?
            .block_on(f)
    })
    .join()
    .map_err(|_| StoreError("scratch database thread panicked".into()))?
}

async fn admin_exec(admin_url: String, sql: String) -> Result<(), StoreError> {
    let config: tokio_postgres::Config = admin_url
        .parse()
        .map_err(|e| StoreError(format!("{TEST_POSTGRES_ENV}: {e}")))?;
    let (client, conn) =
        tokio::time::timeout(std::time::Duration::from_secs(5), config.connect(NoTls))
            .await
            .map_err(|_| StoreError(format!("PostgreSQL at {admin_url} did not answer")))?
            .map_err(|e| StoreError(format!("PostgreSQL at {admin_url}: {e}")))?;
    let driver = tokio::spawn(conn);
    let r = client
        .batch_execute(&sql)
        .await
        .map_err(|e| StoreError(format!("{sql}: {e}")));
    drop(client);
    let _ = driver.await;
    r
}

impl ScratchDatabase {
    /// The server URL from [`TEST_POSTGRES_ENV`] or the default.
    pub fn server_url() -> String {
        std::env::var(TEST_POSTGRES_ENV).unwrap_or_else(|_| DEFAULT_TEST_POSTGRES.to_owned())
    }

    /// Whether tests must fail rather than skip when PostgreSQL is unreachable (`CI` or
    /// `KMSD_REQUIRE_PG` set).
    pub fn required() -> bool {
        std::env::var_os("CI").is_some() || std::env::var_os("KMSD_REQUIRE_PG").is_some()
    }

    /// Creates a fresh database on the test server.
    pub fn create() -> Result<Self, StoreError> {
        let admin_url = Self::server_url();
        let name = format!(
            "kmsd_t{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        );
        on_thread(admin_exec(
            admin_url.clone(),
            format!("CREATE DATABASE {name}"),
        ))?;
        let (base, query) = match admin_url.split_once('?') {
            Some((b, q)) => (b, format!("?{q}")),
            None => (admin_url.as_str(), String::new()),
        };
        let server = base
            .rsplit_once('/')
            .map(|(s, _)| s)
            .filter(|s| s.contains("://") && !s.ends_with('/'))
            .unwrap_or(base);
        let url = format!("{server}/{name}{query}");
        Ok(ScratchDatabase {
            admin_url,
            name,
            url,
        })
    }

    /// Creates a fresh database, or `None` when PostgreSQL is unreachable and not
    /// [`required`](Self::required) (the caller skips, saying so). Panics when required and
    /// unreachable.
    pub fn create_or_skip(test: &str) -> Option<Self> {
        match Self::create() {
            Ok(db) => Some(db),
            Err(e) if !Self::required() => {
                eprintln!("SKIPPED {test}: PostgreSQL unreachable ({e}); set {TEST_POSTGRES_ENV}");
                None
            }
            Err(e) => panic!("{test}: PostgreSQL is required here (CI/KMSD_REQUIRE_PG) but: {e}"),
        }
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let _ = on_thread(admin_exec(
            self.admin_url.clone(),
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        ));
    }
}
