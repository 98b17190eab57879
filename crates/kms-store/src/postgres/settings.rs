//! Connection settings of the PostgreSQL store: the URL and kmsd's own parameters.

use std::time::Duration;

use kms_core::StoreError;

/// Connection settings: a `postgres://` URL plus kmsd's own query parameters
/// `pool_size` (default 16) and `statement_timeout_ms` (default 5000).
#[derive(Clone)]
pub struct PostgresSettings {
    pub(super) config: tokio_postgres::Config,
    /// Most connections in the pool.
    pub pool_size: usize,
    /// Longest a statement may run (waiting for the write section: 12 times this).
    pub statement_timeout: Duration,
}

impl std::fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("PostgresSettings")
            .field("database", &self.describe())
            .field("pool_size", &self.pool_size)
            .field("statement_timeout", &self.statement_timeout)
            .finish()
    }
}

impl PostgresSettings {
    /// Parses `postgres://user[:password]@host[:port]/db[?params]`.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut pool_size = 16usize;
        let mut statement_timeout_ms = 5000u64;
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "pool_size" => {
                    pool_size = v.parse().ok().filter(|n| *n >= 3).ok_or_else(|| {
                        StoreError(
                            "store URL: pool_size must be a whole number of at least 3 (a job lease, the write section and its writes hold one each)".into(),
                        )
                    })?
                }
                "statement_timeout_ms" => {
                    statement_timeout_ms = v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                        StoreError(
                            "store URL: statement_timeout_ms must be a whole number of at least 1"
                                .into(),
                        )
                    })?
                }
                _ => rest.push(pair),
            }
        }
        let url = if rest.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError(format!("store URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(3));
        }
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(10));
        config.application_name("kmsd");
        let options = format!(
            "{} -c statement_timeout={statement_timeout_ms}",
            config.get_options().unwrap_or("")
        );
        config.options(options.trim());
        Ok(PostgresSettings {
            config,
            pool_size,
            statement_timeout: Duration::from_millis(statement_timeout_ms),
        })
    }

    /// `host:port/db as user`, for logs (no password).
    pub fn describe(&self) -> String {
        let host = self
            .config
            .get_hosts()
            .first()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(h) => h.clone(),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .unwrap_or_default();
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!(
            "{host}:{port}/{} as {}",
            self.config.get_dbname().unwrap_or(""),
            self.config.get_user().unwrap_or("")
        )
    }
}
