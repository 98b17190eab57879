//! `xks-proxy serve`: start-up, signal handling (SIGHUP reload, SIGTERM/SIGINT shutdown) and
//! the HTTPS server.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use axum::Router;
use kms_hsm::xks::XksTokenInfo;
use kms_hsm::HsmError;
use tokio::signal::unix::{signal, SignalKind};

use crate::api::{App, Runtime};
use crate::backend::Backend;
use crate::config::{Config, TlsSettings};
use crate::tls::SharedServerConfig;

/// Line printed to stderr once the proxy accepts connections (tests wait for it).
pub const READY_PREFIX: &str = "xks-proxy listening on ";
/// Line printed to stderr after a successful SIGHUP reload.
pub const RELOADED: &str = "xks-proxy reloaded configuration";
/// Line printed to stderr after a failed SIGHUP reload (the old configuration stays).
pub const RELOAD_FAILED: &str = "xks-proxy reload failed";

/// Runs the proxy until SIGTERM or SIGINT.
pub async fn run(config_path: PathBuf) -> Result<(), String> {
    let mut cfg = Config::load(&config_path)?;
    let pin = cfg.hsm.read_pin()?;
    let hsm_settings = cfg.hsm.clone();
    let backend = tokio::task::spawn_blocking(move || Backend::open(hsm_settings, pin))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("opening the HSM token {:?}: {e}", cfg.hsm.token.label))?;
    let backend = Arc::new(backend);
    let token_info = {
        let b = backend.clone();
        let label = cfg.hsm.token.label.clone();
        b.run(|hsm| hsm.xks_token_info()).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the token information");
            XksTokenInfo {
                label,
                manufacturer: "unknown".into(),
                model: "unknown".into(),
                serial: String::new(),
            }
        })
    };
    {
        // The health check key is checked (and created if allowed) once at start; on failure
        // the proxy does not start.
        let health = cfg.health.clone();
        backend
            .run(move |hsm| Ok(ensure_health_key(hsm, &health)))
            .await
            .map_err(|e| e.to_string())??;
    }

    let signing_key = crate::audit::load_or_create_signing_key(&cfg.audit_signing_key)?;
    let audit = crate::audit::start(&cfg.audit_dir, signing_key)?;

    let tls_settings = cfg.tls.clone();
    let tls: SharedServerConfig = Arc::new(RwLock::new(crate::tls::server_config(&tls_settings)?));
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| format!("binding {}: {e}", cfg.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;

    let listen = cfg.listen;
    let hsm_before = cfg.hsm.clone();
    let audit_dir = cfg.audit_dir.clone();
    let health = std::mem::take(&mut cfg.health);
    let limits = cfg.limits.clone();
    let runtime = Runtime::from_config(&mut cfg);
    let app = Arc::new(App::new(
        runtime,
        backend,
        audit.clone(),
        health,
        token_info,
        crate::api::BodyReading::from_limits(&limits),
    ));
    let router = Router::new()
        .fallback(crate::api::handle)
        .with_state(app.clone());

    let mut hup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let reload_app = app.clone();
    let reload_tls = tls.clone();
    let limits_before = limits.clone();
    let signals = tokio::spawn(async move {
        let mut tls_now = tls_settings;
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    match reload(&config_path, &reload_app, &reload_tls, &mut tls_now, listen, &hsm_before, &audit_dir, &limits_before) {
                        Ok(()) => {
                            tracing::info!("configuration reloaded");
                            eprintln!("{RELOADED}");
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "reload failed; the previous configuration stays in force");
                            eprintln!("{RELOAD_FAILED}: {e}");
                        }
                    }
                }
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        let _ = stop_tx.send(());
    });

    tracing::info!(%addr, "xks-proxy started");
    eprintln!("{READY_PREFIX}{addr}");
    crate::tls::serve(
        listener,
        tls,
        router,
        async {
            let _ = stop_rx.await;
        },
        limits.connection_limits(),
    )
    .await;
    signals.abort();
    audit.close().await;
    tracing::info!("xks-proxy stopped");
    Ok(())
}

/// Creates the deep-health-check key if it is missing (and allowed to).
fn ensure_health_key(hsm: &kms_hsm::Hsm, cfg: &crate::config::HealthFile) -> Result<(), String> {
    let label = &cfg.key_label;
    match hsm.xks_key_info(label) {
        Ok(Some(_)) => Ok(()),
        Ok(None) if cfg.create_key => match hsm.xks_generate_key(label) {
            Ok(()) | Err(HsmError::KeyAlreadyExists) => {
                tracing::info!(key_label = %label, "created the health check key");
                Ok(())
            }
            Err(e) => Err(format!("creating the health check key {label:?}: {e}")),
        },
        Ok(None) => {
            tracing::warn!(key_label = %label, "the health check key is missing: health reports UNAVAILABLE until it is created");
            Ok(())
        }
        Err(e) => Err(format!("reading the health check key {label:?}: {e}")),
    }
}

#[allow(clippy::too_many_arguments)]
fn reload(
    path: &Path,
    app: &App,
    tls: &SharedServerConfig,
    tls_now: &mut TlsSettings,
    listen: std::net::SocketAddr,
    hsm: &crate::config::HsmSettings,
    audit_dir: &Path,
    limits: &crate::config::LimitsFile,
) -> Result<(), String> {
    let mut cfg = Config::load(path)?;
    // TLS files are re-read even if their names did not change (certificate renewal).
    let new_tls = crate::tls::server_config(&cfg.tls)?;
    if cfg.listen != listen {
        tracing::warn!(old = %listen, new = %cfg.listen, "listen address changes need a restart");
    }
    if &cfg.hsm != hsm {
        tracing::warn!("[hsm] changes need a restart");
    }
    if cfg.audit_dir != audit_dir {
        tracing::warn!("[audit] changes need a restart");
    }
    if &cfg.limits != limits {
        tracing::warn!("[limits] changes need a restart");
    }
    {
        let mut g = tls.write().unwrap_or_else(|p| p.into_inner());
        *g = new_tls;
    }
    *tls_now = cfg.tls.clone();
    let rt = Runtime::from_config(&mut cfg);
    tracing::info!(
        crypto_enabled = rt.crypto_enabled,
        key_stores = rt.stores.len(),
        "new configuration in force"
    );
    app.set_runtime(rt);
    Ok(())
}
