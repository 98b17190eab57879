//! A Kubernetes KMS v2 plugin backed by kmsd: kube-apiserver talks gRPC (`k8s.io/kms/apis/v2`)
//! over a Unix socket; the plugin calls kmsd's KMS API (Encrypt, Decrypt, DescribeKey) like any
//! AWS client, so key policies, grants, the audit trail and custom key stores apply unchanged.

pub mod args;
pub mod backend;
pub mod errors;
pub mod health;
pub mod service;
pub mod socket;

pub use args::PluginArgs;

/// Code generated from `proto/api.proto` (package `v2`): messages, server and client.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("v2");
}

/// The plugin API version reported by Status (matches `apiVersion: v2` in EncryptionConfiguration).
pub const API_VERSION: &str = "v2";

/// Runs the plugin until SIGINT or SIGTERM: checks and binds the socket, builds the KMS client
/// from the AWS credential chain, serves gRPC, and removes the socket on the way out.
pub async fn run(args: PluginArgs) -> Result<(), String> {
    let listener = socket::bind(&args.socket, args.socket_mode()?)?;
    let kms = backend::KmsBackend::from_args(&args).await?;
    let plugin = service::Plugin::new(kms, args.health_cache());
    eprintln!(
        "k8s-kms-plugin listening on {} (key {}, kmsd {})",
        args.socket.display(),
        args.key_id,
        args.endpoint
    );
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(
                proto::key_management_service_server::KeyManagementServiceServer::new(plugin),
            )
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            }),
    );
    shutdown_signal().await;
    let _ = stop.send(());
    // Connections get GOAWAY and in-flight calls may finish, but a client that keeps its
    // connection open does not hold the plugin up for longer than this.
    let served = tokio::time::timeout(GRACEFUL_SHUTDOWN, server).await;
    let _ = std::fs::remove_file(&args.socket);
    match served {
        Ok(Ok(result)) => result.map_err(|e| format!("serving gRPC: {e}")),
        Ok(Err(e)) => Err(format!("the gRPC server task failed: {e}")),
        Err(_) => Ok(()),
    }
}

/// How long in-flight calls may take to finish after SIGTERM/SIGINT.
const GRACEFUL_SHUTDOWN: std::time::Duration = std::time::Duration::from_secs(5);

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
