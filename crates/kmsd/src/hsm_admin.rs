//! `kmsd hsm` crypto-user commands (create-user, list-users, change-password, delete-user),
//! run by the process that owns the data dir.
//!
//! Beside a running server the command is sent to it over a Unix socket in its data dir
//! (`DATA_DIR/hsm-admin.sock`, mode 0600 in the 0700 data dir), and the server runs it itself:
//! its PKCS#11 modules then see the new or changed user at once (SoftHSM2 reads a token's PINs
//! only when the module is initialised, which a server holding sessions cannot redo), and its
//! write lock orders the change with the control plane. Without a running server the command
//! takes the data dir's lock and runs in this process on the server's store (`--store`, as
//! `kmsd admin`), recording in the cluster's audit log as the server would.

use std::path::Path;
use std::sync::Arc;

use kms_core::Service;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use zeroize::Zeroize;

/// The socket's file name in the data dir.
pub const SOCKET: &str = "hsm-admin.sock";

/// Longest request line accepted (a request is a few hundred bytes).
const MAX_REQUEST: u64 = 16 * 1024;

/// A crypto-user command.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// Create the crypto user on every HSM of the cluster.
    CreateUser {
        /// `cluster-...`.
        cluster_id: String,
        /// User name.
        user: String,
        /// Its password.
        password: String,
        /// Created with two-factor authentication.
        two_factor: bool,
    },
    /// The cluster's users.
    ListUsers {
        /// `cluster-...`.
        cluster_id: String,
    },
    /// Set the crypto user's password (unlocks a locked-out user).
    ChangePassword {
        /// `cluster-...`.
        cluster_id: String,
        /// User name.
        user: String,
        /// The new password.
        password: String,
    },
    /// Delete the crypto user.
    DeleteUser {
        /// `cluster-...`.
        cluster_id: String,
        /// User name.
        user: String,
    },
}

impl Drop for Request {
    fn drop(&mut self) {
        if let Request::CreateUser { password, .. } | Request::ChangePassword { password, .. } =
            self
        {
            password.zeroize();
        }
    }
}

/// The answer: the command's output (JSON) or why it failed.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Reply {
    Ok(serde_json::Value),
    Error(String),
}

/// Runs a command on `service` and returns its output.
pub async fn execute(service: &Service, req: &Request) -> Result<serde_json::Value, String> {
    let done = |what: String| serde_json::json!({ "result": what });
    match req {
        Request::CreateUser {
            cluster_id,
            user,
            password,
            two_factor,
        } => {
            service
                .create_crypto_user(cluster_id, user, password, *two_factor)
                .await
                .map_err(|e| e.message)?;
            Ok(done(format!(
                "created crypto user {user} on every HSM of {cluster_id}"
            )))
        }
        Request::ListUsers { cluster_id } => {
            let users = service
                .list_crypto_users(cluster_id)
                .map_err(|e| e.message)?;
            Ok(serde_json::json!({ "users": users }))
        }
        Request::ChangePassword {
            cluster_id,
            user,
            password,
        } => {
            service
                .change_crypto_user_password(cluster_id, user, password)
                .await
                .map_err(|e| e.message)?;
            Ok(done(format!(
                "changed the password of {user} on every HSM of {cluster_id}; give it to the cluster's key store with UpdateCustomKeyStore --key-store-password"
            )))
        }
        Request::DeleteUser { cluster_id, user } => {
            service
                .delete_crypto_user(cluster_id, user)
                .await
                .map_err(|e| e.message)?;
            Ok(done(format!(
                "deleted crypto user {user} from every HSM of {cluster_id}"
            )))
        }
    }
}

/// Serves crypto-user commands on `DATA_DIR/hsm-admin.sock` until the task is aborted. Called
/// by `kmsd serve` (holding the data dir's lock, so a leftover socket file is its own).
pub fn serve(
    data_dir: &Path,
    service: Arc<Service>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let path = data_dir.join(SOCKET);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("removing {}: {e}", path.display())),
    }
    let listener =
        UnixListener::bind(&path).map_err(|e| format!("binding {}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("restricting {}: {e}", path.display()))?;
    }
    Ok(tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let service = service.clone();
                    tokio::spawn(async move {
                        if let Err(e) = answer(stream, &service).await {
                            tracing::warn!(error = %e, "HSM administration request failed");
                        }
                    });
                }
                Err(e) => {
                    tracing::error!(error = %e, "HSM administration socket failed");
                    return;
                }
            }
        }
    }))
}

/// Reads one request line, runs it, writes one reply line.
async fn answer(stream: UnixStream, service: &Service) -> Result<(), String> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let read_result = BufReader::new(read.take(MAX_REQUEST))
        .read_line(&mut line)
        .await;
    let reply = match read_result {
        Err(e) => Reply::Error(format!("reading the request: {e}")),
        Ok(_) => match serde_json::from_str::<Request>(&line) {
            Err(e) => Reply::Error(format!("malformed request: {e}")),
            Ok(req) => match execute(service, &req).await {
                Ok(v) => Reply::Ok(v),
                Err(e) => Reply::Error(e),
            },
        },
    };
    line.zeroize();
    let mut out = serde_json::to_vec(&reply).map_err(|e| e.to_string())?;
    out.push(b'\n');
    write.write_all(&out).await.map_err(|e| e.to_string())
}

/// Sends a request to the server holding `data_dir`.
async fn send(data_dir: &Path, req: &Request) -> Result<serde_json::Value, String> {
    let path = data_dir.join(SOCKET);
    let stream = UnixStream::connect(&path).await.map_err(|e| {
        format!(
            "a kmsd server holds {} but its HSM administration socket {} does not answer ({e}): is it running with --hsm-config?",
            data_dir.display(),
            path.display()
        )
    })?;
    let (read, mut write) = stream.into_split();
    let mut body = serde_json::to_vec(req).map_err(|e| e.to_string())?;
    body.push(b'\n');
    let sent = write.write_all(&body).await;
    body.zeroize();
    sent.map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(read)
        .read_line(&mut line)
        .await
        .map_err(|e| e.to_string())?;
    match serde_json::from_str::<Reply>(&line) {
        Ok(Reply::Ok(v)) => Ok(v),
        Ok(Reply::Error(e)) => Err(e),
        Err(e) => Err(format!("unreadable answer from the server: {e}")),
    }
}

/// Runs `req` where it belongs: in the running server (over its socket), or here with the data
/// dir locked when no server holds it, on `store` (default: the data dir's SQLite database; or
/// a `postgres://` URL, whose cluster-wide write section orders the change with every node).
pub async fn run(
    data_dir: &Path,
    store: Option<&str>,
    hsm_config: &Path,
    req: Request,
) -> Result<serde_json::Value, String> {
    let lock = match crate::dir_lock::DirLock::acquire(data_dir, "data dir") {
        Ok(lock) => lock,
        // A server holds the data dir: it runs the command.
        Err(_) => return send(data_dir, &req).await,
    };
    let service = crate::admin_cli::open(data_dir, store).await?;
    crate::hsm_fleet::read_fleet(hsm_config)?;
    service.enable_hsm(
        Arc::new(crate::hsm_fleet::FileFleet::new(hsm_config, data_dir)),
        Arc::new(crate::hsm_driver::Pkcs11Driver),
    );
    let key = crate::audit::load_or_create_signing_key(&service, data_dir)?;
    let sink = Arc::new(crate::audit::ClusterAuditSink::new(
        &data_dir.join("hsm-audit"),
        key,
    ));
    service.set_hsm_audit_sink(sink.clone());
    let out = execute(&service, &req).await;
    sink.close().await;
    drop(lock);
    out
}
