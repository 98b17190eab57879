//! Command line: `kmsd serve`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Parser, Subcommand};
use kms_core::{AdminCredentials, ManualClock, Service};

pub use crate::audit_cli::{audit_command, AuditCommand};
use crate::auth::AuthMode;
use crate::server::{router, AppState};

/// kmsd: a self-hosted key management service that speaks the AWS KMS API.
#[derive(Parser, Debug)]
#[command(name = "kmsd", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server.
    Serve(Box<ServeArgs>),
    /// Read and check the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Check the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage accounts, users, roles, access keys and identity policies.
    Admin {
        /// The server's data directory.
        #[arg(
            long,
            env = "KMSD_DATA_DIR",
            default_value = "./kmsd-data",
            global = true
        )]
        data_dir: PathBuf,
        /// The server's store: `sqlite` (the data dir's database) or a postgres:// URL.
        #[arg(long, env = "KMSD_STORE", global = true)]
        store: Option<String>,
        /// What to do.
        #[command(subcommand)]
        command: crate::admin_cli::AdminCommand,
    },
    /// Administer HSM clusters (the CloudHSM management utility's part).
    #[command(subcommand)]
    Hsm(HsmCommand),
    /// Serve the Kubernetes KMS v2 plugin API on a Unix socket, encrypting through a kmsd server.
    K8sKmsPlugin(Box<k8s_kms_plugin::PluginArgs>),
    /// Move the root key between a plaintext file and HSM protection.
    #[command(subcommand)]
    RootKey(crate::root_key::RootKeyCommand),
}

/// `kmsd hsm ...`
#[derive(Subcommand, Debug)]
pub enum HsmCommand {
    /// Create the crypto user on every HSM of a cluster (CloudHSM `user create --role
    /// crypto-user`), which makes an initialised cluster ACTIVE. A key store logs in only as
    /// `kmsuser`. Works on a stopped server's data dir, or through a running server.
    CreateUser {
        /// Where the command runs.
        #[command(flatten)]
        at: HsmTarget,
        /// The HSM declaration (TOML) the server uses.
        #[arg(long, env = "KMSD_HSM_CONFIG")]
        hsm_config: PathBuf,
        /// The cluster (`cluster-...`).
        #[arg(long)]
        cluster_id: String,
        /// Mark the user as protected by two-factor authentication (a key store cannot log in as it).
        #[arg(long)]
        two_factor: bool,
        /// User name (`kmsuser` for key stores): 1..31 letters, digits or `_`, case-insensitive.
        user: String,
        /// The user's password: 7..32 alphanumeric characters.
        password: String,
    },
    /// List the users of a cluster's HSMs (CloudHSM `user list`), as JSON: the admin and the
    /// crypto user, with whether it is locked out.
    ListUsers {
        /// Where the command runs.
        #[command(flatten)]
        at: HsmTarget,
        /// The HSM declaration (TOML) the server uses.
        #[arg(long, env = "KMSD_HSM_CONFIG")]
        hsm_config: PathBuf,
        /// The cluster (`cluster-...`).
        #[arg(long)]
        cluster_id: String,
    },
    /// Set the crypto user's password on every HSM as the admin (CloudHSM `user
    /// change-password`); also unlocks a locked-out user. Refused while a key store of the
    /// cluster is connected. Then give the store the password with UpdateCustomKeyStore.
    ChangePassword {
        /// Where the command runs.
        #[command(flatten)]
        at: HsmTarget,
        /// The HSM declaration (TOML) the server uses.
        #[arg(long, env = "KMSD_HSM_CONFIG")]
        hsm_config: PathBuf,
        /// The cluster (`cluster-...`).
        #[arg(long)]
        cluster_id: String,
        /// User name.
        user: String,
        /// The new password: 7..32 alphanumeric characters.
        password: String,
    },
    /// Delete the crypto user from every HSM (CloudHSM `user delete`). Refused while it is
    /// logged in (a connected key store, `kmsd hsm login`) and while it owns keys.
    DeleteUser {
        /// Where the command runs.
        #[command(flatten)]
        at: HsmTarget,
        /// The HSM declaration (TOML) the server uses.
        #[arg(long, env = "KMSD_HSM_CONFIG")]
        hsm_config: PathBuf,
        /// The cluster (`cluster-...`).
        #[arg(long)]
        cluster_id: String,
        /// User name.
        user: String,
    },
    /// Hold a management session as the crypto user of a cluster until interrupted: while it
    /// runs, key stores of that cluster cannot connect (USER_LOGGED_IN), as in CloudHSM.
    Login {
        /// Where the command runs.
        #[command(flatten)]
        at: HsmTarget,
        /// The cluster (`cluster-...`).
        #[arg(long)]
        cluster_id: String,
    },
}

/// The data dir and store a `kmsd hsm` command works on (as `kmsd admin`'s).
#[derive(clap::Args, Debug)]
pub struct HsmTarget {
    /// The server's data directory (its root key; the server's HSM administration socket when
    /// one runs on it).
    #[arg(long, env = "KMSD_DATA_DIR", default_value = "./kmsd-data")]
    pub data_dir: PathBuf,
    /// The server's store: `sqlite` (the data dir's database) or a postgres:// URL.
    #[arg(long, env = "KMSD_STORE")]
    pub store: Option<String>,
}

/// `kmsd config ...`
#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Check a configuration (file, environment and flags together) without starting: every key
    /// known, every value valid, TLS files loadable, data dir usable. Prints the effective settings.
    Check(Box<ServeArgs>),
}

/// `kmsd serve` flags.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on (host:port). Port 0 picks a free port; the chosen address is printed.
    #[arg(long, default_value = "127.0.0.1:4599", env = "KMSD_LISTEN")]
    pub listen: SocketAddr,
    /// Data directory for the embedded storage, the root key and admin-credentials (created if missing).
    #[arg(long, default_value = "./kmsd-data", env = "KMSD_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Where records live: `sqlite` (default: DATA_DIR/kmsd.sqlite3) or
    /// `postgres://user[:password]@host[:port]/db[?pool_size=16&statement_timeout_ms=5000]`,
    /// shared by every node of a cluster (each with its own data dir and the same root key).
    #[arg(long, env = "KMSD_STORE")]
    pub store: Option<String>,
    /// Account created on first start (12 digits); in --dev mode, the account every caller acts in.
    #[arg(long, default_value = "111122223333", env = "KMSD_ACCOUNT_ID", value_parser = parse_account)]
    pub account_id: String,
    /// Local-development mode: loopback only; any access key id/secret is accepted (signature
    /// format and date checked, value not verified) and acts as the account's admin.
    #[arg(long, env = "KMSD_DEV")]
    pub dev: bool,
    /// Allow plain HTTP on a non-loopback address (logs a warning). Use TLS instead.
    #[arg(long, env = "KMSD_INSECURE_HTTP")]
    pub insecure_http: bool,
    /// Serve HTTPS with this certificate chain (PEM). Needs --tls-key. Reloaded on SIGHUP.
    #[arg(long, env = "KMSD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM, PKCS#8/PKCS#1/SEC1) for --tls-cert. Reloaded on SIGHUP.
    #[arg(long, env = "KMSD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// How often the sweeper deletes keys whose waiting period has ended and rotates keys whose
    /// automatic rotation is due, in seconds.
    #[arg(long, default_value_t = 60, env = "KMSD_SWEEP_INTERVAL_SECS")]
    pub sweep_interval_secs: u64,
    /// Audit trail directory (default: DATA_DIR/audit).
    #[arg(long, env = "KMSD_AUDIT_DIR")]
    pub audit_dir: Option<PathBuf>,
    /// `sync`: a request is acknowledged only once its audit record is fsynced (group commit);
    /// `buffered`: records are fsynced per batch without holding the response, so a crash can
    /// lose the last milliseconds of records.
    #[arg(long, default_value = "sync", value_parser = ["sync", "buffered"], env = "KMSD_AUDIT_DURABILITY")]
    pub audit_durability: String,
    /// Roll audit files at this size (MiB).
    #[arg(long, default_value_t = 64, env = "KMSD_AUDIT_MAX_FILE_MIB")]
    pub audit_max_file_mib: u64,
    /// Roll audit files after this many seconds.
    #[arg(long, default_value_t = 3600, env = "KMSD_AUDIT_ROLL_SECS")]
    pub audit_roll_secs: u64,
    /// Remove closed audit files older than this many days (checked at each roll). kmsd
    /// verifies them first and records the removal, signed, in the trail. Default: keep all.
    #[arg(long, env = "KMSD_AUDIT_RETENTION_DAYS", value_parser = clap::value_parser!(u64).range(1..))]
    pub audit_retention_days: Option<u64>,
    /// Remove the oldest closed audit files while all of them together exceed this many bytes
    /// (same checks and record as --audit-retention-days). Default: no limit.
    #[arg(long, env = "KMSD_AUDIT_RETENTION_BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    pub audit_retention_bytes: Option<u64>,
    /// Log format: `human` or `json`. Level from `KMSD_LOG` or the config file's `log_level`
    /// (e.g. `debug`: one line per request; default `info`), re-read on SIGHUP.
    #[arg(long, default_value = "human", value_parser = ["human", "json"], env = "KMSD_LOG_FORMAT")]
    pub log_format: String,
    /// Serve /healthz, /readyz and /metrics (Prometheus) on this separate address.
    #[arg(long, env = "KMSD_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Do not lock memory with mlockall (by default kmsd tries, so key material is never swapped).
    #[arg(long, env = "KMSD_NO_MLOCK")]
    pub no_mlock: bool,
    /// Keep the root key wrapped by a non-extractable AES key in a PKCS#11 HSM:
    /// MODULE,TOKEN_LABEL,KEY_LABEL. The first start creates the key (if absent) and
    /// DATA_DIR/root.key.wrapped; the PIN comes from --root-key-pin-file or KMSD_ROOT_KEY_PIN.
    #[arg(long, env = "KMSD_ROOT_KEY_PKCS11")]
    pub root_key_pkcs11: Option<kms_hsm::RootKeyLocation>,
    /// File holding the user PIN of the --root-key-pkcs11 token.
    #[arg(long, env = "KMSD_ROOT_KEY_PIN_FILE", requires = "root_key_pkcs11")]
    pub root_key_pin_file: Option<PathBuf>,
    /// Request quotas: `aws` (AWS's default figures), `off`, or a TOML file of figures.
    /// Default: `aws`, but `off` with --dev.
    #[arg(long, env = "KMSD_QUOTAS")]
    pub quotas: Option<String>,
    /// HSM declaration (TOML): the PKCS#11 tokens, subnets and security group rules that
    /// CloudHSM-style key stores may use. Without it, kmsd has no HSM clusters.
    #[arg(long, env = "KMSD_HSM_CONFIG")]
    pub hsm_config: Option<PathBuf>,
    /// External key store client settings (TOML): CA bundle for proxies with private CAs, client
    /// certificates (mutual TLS), the addresses of endpoint hosts and VPC endpoint services, the
    /// per-call budget, the health-check interval.
    #[arg(long, env = "KMSD_XKS_CONFIG")]
    pub xks_config: Option<PathBuf>,
    /// Proxies or load balancers in front of kmsd whose `X-Forwarded-For` header is believed
    /// for `aws:SourceIp` and the audit trail's source address (comma-separated IPs).
    #[arg(long, env = "KMSD_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Seed file (TOML): accounts, users with fixed access keys, keys with fixed ids (and, with
    /// --dev or --allow-seeded-material, fixed material), aliases, tags, policies and grants,
    /// created at start when missing (a test feature: deterministic fixtures).
    #[arg(long, env = "KMSD_SEED")]
    pub seed: Option<PathBuf>,
    /// Allow fixed key material in the seed file outside --dev (keys whose material is known
    /// outside kmsd: for test environments only).
    #[arg(long, env = "KMSD_ALLOW_SEEDED_MATERIAL")]
    pub allow_seeded_material: bool,
    /// Seconds a client connection may stay open with no request in progress (before its
    /// first request, TLS handshake included, and between requests).
    #[arg(long, default_value_t = 60, env = "KMSD_IDLE_TIMEOUT_SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_secs: u64,
    /// Seconds a client has to send one request's headers.
    #[arg(long, default_value_t = 10, env = "KMSD_HEADER_TIMEOUT_SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_secs: u64,
    /// Seconds a client has to send one request's whole body.
    #[arg(long, default_value_t = 30, env = "KMSD_BODY_TIMEOUT_SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout_secs: u64,
    /// Most client connections open at once. A new connection beyond it closes the connection
    /// idle the longest (or is closed if none is idle). Lowered at start if the open-file limit
    /// would not allow it.
    #[arg(long, default_value_t = kms_serve::DEFAULT_MAX_CONNECTIONS, env = "KMSD_MAX_CONNECTIONS", value_parser = parse_positive)]
    pub max_connections: usize,
    /// Most connections open at once from one client address (IPv6: one /64), shed the same
    /// way; 0 for no per-address limit. Raise it when clients reach kmsd through a proxy.
    #[arg(long, default_value_t = kms_serve::DEFAULT_MAX_CONNECTIONS_PER_IP, env = "KMSD_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: usize,
    /// MiB that request bodies not yet authenticated may hold together (bodies past their
    /// first 16 KiB wait for room). At least 1.
    #[arg(long, default_value_t = 64, env = "KMSD_MAX_UNAUTHENTICATED_BODY_MIB", value_parser = parse_positive)]
    pub max_unauthenticated_body_mib: usize,
    /// Do not serve the web console at `/console/` (served by default: static files only; it
    /// calls the KMS API with the signed-in user's credentials).
    #[arg(long, env = "KMSD_NO_CONSOLE")]
    pub no_console: bool,
    /// Most keys kept in memory with their unsealed material (and as many alias targets);
    /// beyond it the least recently used are dropped and read again from the store when next
    /// used. At least 1.
    #[arg(long, default_value_t = kms_core::DEFAULT_KEY_CACHE_SIZE, env = "KMSD_KEY_CACHE_SIZE", value_parser = parse_positive)]
    pub key_cache_size: usize,
    /// This node's name in a cluster, written into every audit record as `kmsdNodeId`
    /// (default: the name kept in DATA_DIR/node-id, made at the first start).
    #[arg(long, env = "KMSD_NODE_ID", value_parser = parse_node_id)]
    pub node_id: Option<String>,
    /// TOML config file: any of these flags by long name with `_` (e.g. `data_dir = "/var/lib/kmsd"`,
    /// `log_level = "info"`). Command line and `KMSD_*` variables take precedence.
    #[arg(long, env = "KMSD_CONFIG")]
    pub config: Option<PathBuf>,
}

fn parse_positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("a whole number of at least 1".into()),
    }
}

impl ServeArgs {
    /// The connection limits these flags set.
    pub fn connection_limits(&self) -> kms_serve::ConnectionLimits {
        kms_serve::ConnectionLimits {
            header_read_timeout: std::time::Duration::from_secs(self.header_timeout_secs),
            idle_timeout: std::time::Duration::from_secs(self.idle_timeout_secs),
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
        }
    }
}

fn parse_account(s: &str) -> Result<String, String> {
    if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(s.to_owned())
    } else {
        Err("an account id is 12 digits".into())
    }
}

/// Writes the admin's access key as an AWS shared-credentials file (mode 0600), replacing any
/// earlier one atomically.
fn write_credentials_file(dir: &Path, c: &AdminCredentials) -> std::io::Result<()> {
    let text = zeroize::Zeroizing::new(format!(
        "# kmsd admin ({})\n[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
        c.principal_arn,
        c.access_key_id,
        c.secret_access_key.as_str()
    ));
    let tmp = dir.join("admin-credentials.tmp");
    let _ = std::fs::remove_file(&tmp);
    kms_crypto::write_private_file(&tmp, text.as_bytes())?;
    std::fs::rename(&tmp, dir.join("admin-credentials"))
}

type LogHandle =
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

fn init_logging(format: &str) -> Option<LogHandle> {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_env("KMSD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let result = if format == "json" {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .try_init()
    } else {
        registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init()
    };
    result.ok().map(|_| handle)
}

/// Human-readable logs on stderr at the `KMSD_LOG` level (default `info`), for the commands that
/// are not the server (e.g. `k8s-kms-plugin`).
pub fn init_plain_logging() {
    let _ = init_logging("human");
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received: finishing in-flight requests");
}

/// Runs `kmsd serve` until SIGTERM/SIGINT.
pub async fn serve(args: ServeArgs) -> Result<(), String> {
    let log_handle = init_logging(&args.log_format);
    crate::hygiene::harden(!args.no_mlock);
    let loopback = args.listen.ip().is_loopback();
    if args.dev && !loopback {
        return Err(format!(
            "--dev serves only loopback addresses; {} is not one",
            args.listen
        ));
    }
    let tls = args.tls_cert.is_some();
    if !loopback && !tls && !args.insecure_http {
        return Err(format!(
            "refusing plain HTTP on non-loopback address {}: give --tls-cert and --tls-key, or pass --insecure-http to accept the risk",
            args.listen
        ));
    }
    if args.insecure_http && !loopback && !tls {
        tracing::warn!(listen = %args.listen, "serving plain HTTP on a non-loopback address (--insecure-http): requests and keys travel unencrypted");
    }
    // One server per data dir and audit dir, locked before anything in them is read or
    // written; then the listeners are bound, so a start that fails (a busy port) has written
    // nothing: no key, no database, no audit record.
    let _data_lock = crate::dir_lock::DirLock::acquire(&args.data_dir, "data dir")?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&args.data_dir, std::fs::Permissions::from_mode(0o700));
    }
    let audit_dir = args
        .audit_dir
        .clone()
        .unwrap_or_else(|| args.data_dir.join("audit"));
    let _audit_lock = crate::dir_lock::DirLock::acquire(&audit_dir, "audit dir")?;
    let admin_listener = match args.admin_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("binding the admin listener {addr}: {e}"))?,
        ),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("binding {}: {e}", args.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;

    let quotas = crate::quota::from_setting(args.quotas.as_deref(), args.dev)?;
    tracing::info!(
        quotas = args
            .quotas
            .as_deref()
            .unwrap_or(if quotas.is_some() { "aws" } else { "off" }),
        "request quotas"
    );
    let root = crate::root_key::for_serve(
        &args.data_dir,
        args.root_key_pkcs11.as_ref(),
        args.root_key_pin_file.as_deref(),
    )?;
    let (store, store_name) = {
        let (spec, dir) = (args.store.clone(), args.data_dir.clone());
        tokio::task::spawn_blocking(move || kms_store::open_store(spec.as_deref(), &dir))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("opening the store: {e}"))?
    };
    tracing::info!(store = %store_name, "store open");
    let clock = Arc::new(ManualClock::default());
    let service = Arc::new(
        Service::new(store, Arc::new(root), clock.clone()).with_key_cache_size(args.key_cache_size),
    );
    service.verify_root_key().await.map_err(|e| e.message)?;

    let dir = args.data_dir.clone();
    let created = service
        .bootstrap_admin(&args.account_id, |c| write_credentials_file(&dir, c))
        .await
        .map_err(|e| e.to_string())?;
    service
        .ensure_admin_user(&args.account_id)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(arn) = created {
        tracing::info!(principal = %arn, file = %args.data_dir.join("admin-credentials").display(), "created the account admin and its access key");
    }
    if let Some(path) = &args.seed {
        let seed = crate::seed::read(path)?;
        let report = crate::seed::apply(
            &service,
            &seed,
            &args.account_id,
            args.dev || args.allow_seeded_material,
        )
        .await?;
        tracing::info!(file = %path.display(), created = report.created, existing = report.existing, "applied the seed file");
    }

    let auth = if args.dev {
        tracing::warn!(account = %args.account_id, "--dev mode: ANY access key is accepted and acts as this account's admin; never use this outside local development");
        AuthMode::Dev {
            account: args.account_id.clone(),
        }
    } else {
        AuthMode::Verify
    };
    let signing_key = crate::audit::load_or_create_signing_key(&service, &args.data_dir)?;
    let durability = if args.audit_durability == "buffered" {
        kms_audit::Durability::Buffered
    } else {
        kms_audit::Durability::Sync
    };
    let mut audit_config = kms_audit::WriterConfig::new(
        durability,
        args.audit_max_file_mib.saturating_mul(1024 * 1024),
        args.audit_roll_secs,
    );
    audit_config.retention = kms_audit::Retention {
        max_age_days: args.audit_retention_days,
        max_total_bytes: args.audit_retention_bytes,
    };
    audit_config.node_id = Some(match &args.node_id {
        Some(id) => id.clone(),
        None => node_id_of(&args.data_dir)?,
    });
    let audit = crate::audit::start_writer(&audit_dir, signing_key, audit_config)?;
    let xks = match &args.xks_config {
        Some(p) => crate::xks_transport::read_config(p)?,
        None => crate::xks_transport::XksConfig::default(),
    };
    let xks_health_every = std::time::Duration::from_secs(xks.health_check_interval_secs);
    let xks_unhealthy_after = xks.unhealthy_after_failed_checks;
    let metrics = Arc::new(crate::metrics::Metrics::new());
    service.enable_xks(Arc::new(crate::xks_transport::ObservedTransport::new(
        crate::xks_transport::HttpsTransport::new(xks)?,
        metrics.clone(),
    )));
    let cluster_audit = match &args.hsm_config {
        Some(path) => {
            crate::hsm_fleet::read_fleet(path)?;
            service.enable_hsm(
                Arc::new(crate::hsm_fleet::FileFleet::new(path, &args.data_dir)),
                Arc::new(crate::hsm_driver::Pkcs11Driver),
            );
            let key = crate::audit::load_or_create_signing_key(&service, &args.data_dir)?;
            let sink = Arc::new(crate::audit::ClusterAuditSink::new(
                &args.data_dir.join("hsm-audit"),
                key,
            ));
            service.set_hsm_audit_sink(sink.clone());
            Some(sink)
        }
        None => None,
    };
    // `kmsd hsm create-user` and the other crypto-user commands run here while serving.
    let hsm_admin = match &args.hsm_config {
        Some(_) => Some(AbortOnDrop(crate::hsm_admin::serve(
            &args.data_dir,
            service.clone(),
        )?)),
        None => None,
    };
    // Key stores CONNECTED (by this node before it stopped, or by another node) get this
    // node's proxy targets and HSM sessions (external ones before kmsd listens, CloudHSM ones
    // beside serving), then external key stores' proxies are health-checked periodically.
    // Connection changes made on other nodes are followed from the store's change log.
    service.restore_external_key_store_targets();
    let key_store_watch = {
        let s = service.clone();
        tokio::spawn(async move {
            s.restore_key_store_connections().await;
            crate::xks_health::run(s, xks_health_every, xks_unhealthy_after).await;
        })
    };
    let cluster_follow = tokio::spawn(crate::cluster_follow::run(
        service.clone(),
        std::time::Duration::from_secs(1),
    ));
    service.set_event_sink(Arc::new(crate::audit::AuditEventSink {
        writer: audit.clone(),
    }));
    let state = Arc::new(AppState {
        service: service.clone(),
        auth,
        clock,
        audit: audit.clone(),
        metrics,
        trusted_proxies: args.trusted_proxies.clone(),
        body_read_timeout: std::time::Duration::from_secs(args.body_timeout_secs),
        body_budget: kms_serve::BodyBudget::new(
            args.max_unauthenticated_body_mib
                .saturating_mul(1024 * 1024),
        ),
        quotas,
        audit_dir: audit_dir.clone(),
        console: !args.no_console,
    });
    let admin = match admin_listener {
        Some(l) => {
            let local = l.local_addr().map_err(|e| e.to_string())?;
            eprintln!("kmsd admin listening on {local}");
            let app = crate::admin::router(state.clone());
            Some(tokio::spawn(async move {
                let _ = axum::serve(l, app).await;
            }))
        }
        None => None,
    };
    // GetKeyLastUsage: last uses are kept in memory and written every few seconds (and at
    // shutdown), so tracking adds no database write to a request.
    let usage_flusher = {
        let service = service.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
            loop {
                tick.tick().await;
                if let Err(e) = service.flush_key_usage().await {
                    tracing::error!(error = %e, "writing key last usage failed");
                }
            }
        })
    };
    let sweeper = {
        let service = service.clone();
        let every = std::time::Duration::from_secs(args.sweep_interval_secs.max(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                // One node of a cluster runs the sweeps at a time (the write section makes
                // each deletion, rotation and expiry happen once regardless).
                if let Err(e) = service.run_cluster_jobs().await {
                    tracing::error!(error = %e, "sweeper lease failed");
                }
            }
        })
    };

    let app = router(state);
    let limits = args.connection_limits();
    let result = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let cert = Arc::new(crate::tls::ReloadableCert::load(cert, key)?);
            let config = crate::tls::server_config(cert.clone())?;
            let reloader = tokio::spawn(reload_on_sighup(
                Some(cert),
                args.config.clone(),
                log_handle.clone(),
            ));
            eprintln!("kmsd listening on {local}");
            crate::tls::serve(listener, Some(config), app, shutdown_signal(), limits).await;
            reloader.abort();
            Ok(())
        }
        _ => {
            let reloader = tokio::spawn(reload_on_sighup(
                None,
                args.config.clone(),
                log_handle.clone(),
            ));
            let _reloader = AbortOnDrop(reloader);
            eprintln!("kmsd listening on {local}");
            crate::tls::serve(listener, None, app, shutdown_signal(), limits).await;
            Ok(())
        }
    };
    sweeper.abort();
    usage_flusher.abort();
    key_store_watch.abort();
    cluster_follow.abort();
    if let Err(e) = service.flush_key_usage().await {
        tracing::error!(error = %e, "writing key last usage at shutdown failed");
    }
    if let Some(a) = admin {
        a.abort();
    }
    audit.close().await;
    drop(hsm_admin);
    if let Some(c) = cluster_audit {
        c.close().await;
    }
    tracing::info!("stopped");
    result
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// On every SIGHUP: reloads the TLS certificate and key, and the log level from the config file.
async fn reload_on_sighup(
    cert: Option<Arc<crate::tls::ReloadableCert>>,
    config: Option<PathBuf>,
    log: Option<LogHandle>,
) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            if let Some(cert) = &cert {
                match cert.reload() {
                    Ok(()) => tracing::info!("SIGHUP: reloaded the TLS certificate and key"),
                    Err(e) => {
                        tracing::error!(error = %e, "SIGHUP: TLS reload failed; keeping the current certificate")
                    }
                }
            }
            if let (Some(path), Some(log)) = (&config, &log) {
                match crate::config::log_level(path) {
                    Ok(Some(level)) => match tracing_subscriber::EnvFilter::try_new(&level) {
                        Ok(f) => {
                            let _ = log.reload(f);
                            tracing::info!(level, "SIGHUP: log level reloaded");
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "SIGHUP: invalid log_level in the config file")
                        }
                    },
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "SIGHUP: could not re-read the config file")
                    }
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (cert, config, log);
}

/// Runs `kmsd hsm ...`.
pub async fn hsm_command(cmd: HsmCommand) -> Result<(), String> {
    use crate::hsm_admin::{run, Request};
    let (at, hsm_config, req) = match cmd {
        HsmCommand::CreateUser {
            at,
            hsm_config,
            cluster_id,
            two_factor,
            user,
            password,
        } => (
            at,
            hsm_config,
            Request::CreateUser {
                cluster_id,
                user,
                password,
                two_factor,
            },
        ),
        HsmCommand::ListUsers {
            at,
            hsm_config,
            cluster_id,
        } => (at, hsm_config, Request::ListUsers { cluster_id }),
        HsmCommand::ChangePassword {
            at,
            hsm_config,
            cluster_id,
            user,
            password,
        } => (
            at,
            hsm_config,
            Request::ChangePassword {
                cluster_id,
                user,
                password,
            },
        ),
        HsmCommand::DeleteUser {
            at,
            hsm_config,
            cluster_id,
            user,
        } => (at, hsm_config, Request::DeleteUser { cluster_id, user }),
        HsmCommand::Login { at, cluster_id } => return hsm_login(&at, &cluster_id).await,
    };
    let out = run(&at.data_dir, at.store.as_deref(), &hsm_config, req).await?;
    match out.get("result").and_then(|r| r.as_str()) {
        Some(text) => println!("{text}"),
        None => println!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?
        ),
    }
    Ok(())
}

/// `kmsd hsm login`: holds the cluster's login lock until interrupted. Refuses a cluster that
/// does not exist or has no crypto user.
async fn hsm_login(at: &HsmTarget, cluster_id: &str) -> Result<(), String> {
    let user = crate::admin_cli::open(&at.data_dir, at.store.as_deref())
        .await?
        .cluster_crypto_user(cluster_id)
        .map_err(|e| e.message)?
        .ok_or_else(|| format!("Cluster {cluster_id} has no crypto user to log in as"))?;
    let fleet = crate::hsm_fleet::FileFleet::new(Path::new("/dev/null"), &at.data_dir);
    let lock = fleet.login_lock(cluster_id);
    if let Some(dir) = lock.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    std::fs::write(&lock, std::process::id().to_string()).map_err(|e| e.to_string())?;
    println!("logged in to {cluster_id} as its crypto user {user}; interrupt to log out");
    shutdown_signal().await;
    let _ = std::fs::remove_file(&lock);
    Ok(())
}

/// Runs `kmsd config check`.
pub fn config_command(cmd: ConfigCommand) -> Result<(), String> {
    let ConfigCommand::Check(args) = cmd;
    let args = *args;
    if !args.listen.ip().is_loopback() && args.tls_cert.is_none() && !args.insecure_http {
        return Err(format!(
            "listen {} is not loopback: set tls_cert and tls_key (or insecure_http)",
            args.listen
        ));
    }
    if args.dev && !args.listen.ip().is_loopback() {
        return Err("dev mode serves only loopback addresses".into());
    }
    if let (Some(c), Some(k)) = (&args.tls_cert, &args.tls_key) {
        crate::tls::ReloadableCert::load(c, k)?;
    }
    if let Ok(level) = std::env::var("KMSD_LOG") {
        tracing_subscriber::EnvFilter::try_new(&level)
            .map_err(|e| format!("log_level '{level}': {e}"))?;
    }
    if let Some(path) = &args.xks_config {
        // Loads the CA bundle and client certificates as `serve` would.
        crate::xks_transport::HttpsTransport::new(crate::xks_transport::read_config(path)?)?;
    }
    crate::quota::from_setting(args.quotas.as_deref(), args.dev)?;
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|e| format!("data_dir {}: {e}", args.data_dir.display()))?;
    let store = kms_store::describe_store(args.store.as_deref(), &args.data_dir)
        .map_err(|e| e.to_string())?;
    println!("configuration ok");
    println!("store = \"{store}\"");
    println!(
        "listen = \"{}\"\ndata_dir = \"{}\"\naccount_id = \"{}\"\ndev = {}\ninsecure_http = {}",
        args.listen,
        args.data_dir.display(),
        args.account_id,
        args.dev,
        args.insecure_http
    );
    if let (Some(c), Some(k)) = (&args.tls_cert, &args.tls_key) {
        println!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"",
            c.display(),
            k.display()
        );
    }
    if let Some(a) = args.admin_listen {
        println!("admin_listen = \"{a}\"");
    }
    println!(
        "audit_durability = \"{}\"\naudit_max_file_mib = {}\naudit_roll_secs = {}\nsweep_interval_secs = {}\nlog_format = \"{}\"",
        args.audit_durability, args.audit_max_file_mib, args.audit_roll_secs, args.sweep_interval_secs, args.log_format
    );
    if let Some(days) = args.audit_retention_days {
        println!("audit_retention_days = {days}");
    }
    if let Some(bytes) = args.audit_retention_bytes {
        println!("audit_retention_bytes = {bytes}");
    }
    if let Some(path) = &args.xks_config {
        println!("xks_config = \"{}\"", path.display());
    }
    println!(
        "idle_timeout_secs = {}\nheader_timeout_secs = {}\nbody_timeout_secs = {}\nmax_connections = {}\nmax_connections_per_ip = {}\nmax_unauthenticated_body_mib = {}",
        args.idle_timeout_secs,
        args.header_timeout_secs,
        args.body_timeout_secs,
        args.max_connections,
        args.max_connections_per_ip,
        args.max_unauthenticated_body_mib
    );
    Ok(())
}

/// A node name: 1 to 64 characters `A-Z a-z 0-9 . _ -`.
fn parse_node_id(s: &str) -> Result<String, String> {
    let ok = (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err("a node id is 1 to 64 characters A-Z a-z 0-9 . _ -".into())
    }
}

/// The node name kept in `DATA_DIR/node-id`, made (`node-` and 8 random hex digits) if missing.
fn node_id_of(data_dir: &std::path::Path) -> Result<String, String> {
    let path = data_dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(text) => parse_node_id(text.trim()).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let random: [u8; 4] = kms_crypto::random_array().map_err(|e| e.to_string())?;
            let id = format!("node-{}", hex::encode(random));
            std::fs::write(&path, format!("{id}\n"))
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
            Ok(id)
        }
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_args(extra: &[&str]) -> Result<ServeArgs, clap::Error> {
        let mut argv = vec!["kmsd", "serve"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv)?.command {
            Command::Serve(a) => Ok(*a),
            _ => unreachable!("parsed serve"),
        }
    }

    #[test]
    fn every_hsm_command_takes_the_store() {
        let url = "postgres://kmsd@db/kmsd";
        for argv in [
            &["hsm", "login", "--cluster-id", "cluster-x"][..],
            &[
                "hsm",
                "list-users",
                "--hsm-config",
                "h.toml",
                "--cluster-id",
                "c",
            ],
            &[
                "hsm",
                "delete-user",
                "--hsm-config",
                "h",
                "--cluster-id",
                "c",
                "u",
            ],
            &[
                "hsm",
                "create-user",
                "--hsm-config",
                "h",
                "--cluster-id",
                "c",
                "u",
                "p",
            ],
            &[
                "hsm",
                "change-password",
                "--hsm-config",
                "h",
                "--cluster-id",
                "c",
                "u",
                "p",
            ],
        ] {
            let mut full = vec!["kmsd"];
            full.extend_from_slice(argv);
            full.extend_from_slice(&["--store", url, "--data-dir", "d"]);
            let Command::Hsm(cmd) = Cli::try_parse_from(&full).unwrap().command else {
                unreachable!("parsed hsm");
            };
            let at = match cmd {
                HsmCommand::Login { at, .. }
                | HsmCommand::ListUsers { at, .. }
                | HsmCommand::DeleteUser { at, .. }
                | HsmCommand::CreateUser { at, .. }
                | HsmCommand::ChangePassword { at, .. } => at,
            };
            assert_eq!(at.store.as_deref(), Some(url), "{argv:?}");
            assert_eq!(at.data_dir, PathBuf::from("d"));
        }
    }

    #[test]
    fn connection_limits_have_documented_defaults_and_reject_zero() {
        let a = serve_args(&[]).unwrap();
        assert_eq!(
            a.connection_limits(),
            kms_serve::ConnectionLimits::default()
        );
        assert_eq!(a.body_timeout_secs, 30);
        assert_eq!(a.max_unauthenticated_body_mib, 64);
        let a = serve_args(&["--idle-timeout-secs", "2", "--max-connections-per-ip", "0"]).unwrap();
        assert_eq!(
            a.connection_limits().idle_timeout,
            std::time::Duration::from_secs(2)
        );
        assert_eq!(a.connection_limits().max_connections_per_ip, 0);
        for bad in [
            "--idle-timeout-secs",
            "--header-timeout-secs",
            "--body-timeout-secs",
            "--max-connections",
            "--max-unauthenticated-body-mib",
        ] {
            assert!(serve_args(&[bad, "0"]).is_err(), "{bad} 0");
        }
    }

    #[test]
    fn node_ids_are_short_plain_names() {
        assert_eq!(super::parse_node_id("node-a.1_x").unwrap(), "node-a.1_x");
        for bad in ["", "a b", "n/1", "é", &"x".repeat(65)] {
            assert!(super::parse_node_id(bad).is_err(), "{bad:?}");
        }
    }
}
