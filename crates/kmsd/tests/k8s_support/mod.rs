//! Shared by the k8s plugin tests: start `kmsd k8s-kms-plugin` against a test kmsd and drive it
//! with a gRPC client generated from the same KMS v2 proto, over its Unix socket.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_kms_plugin::proto::key_management_service_client::KeyManagementServiceClient;
use k8s_kms_plugin::proto::{DecryptRequest, EncryptRequest, StatusRequest, StatusResponse};
use tonic::transport::Channel;

use crate::common::Server;

/// A running plugin process; killed on drop.
pub struct Plugin {
    pub child: Child,
    pub socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Plugin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The plugin command with the admin's credentials from the server's shared credentials file
/// (the AWS chain, as in production) and nothing from the caller's environment.
pub fn plugin_command(
    server_data_dir: &Path,
    endpoint: &str,
    socket: &Path,
    extra: &[&str],
) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kmsd"));
    cmd.arg("k8s-kms-plugin")
        .arg("--socket")
        .arg(socket)
        .args([
            "--endpoint",
            endpoint,
            "--health-cache-secs",
            "0",
            "--timeout-secs",
            "5",
        ])
        .args(extra)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            server_data_dir.join("admin-credentials"),
        )
        .env("AWS_CONFIG_FILE", server_data_dir.join("no-aws-config"))
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// Starts the plugin against `server` with `extra` flags; waits until it listens.
pub fn start_plugin(server: &Server, extra: &[&str]) -> Plugin {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o750)).unwrap();
    let socket = dir.path().join("kms.sock");
    let cmd = plugin_command(&server.data_dir, &server.endpoint(), &socket, extra);
    spawn_plugin(cmd, socket, dir)
}

/// Spawns a prepared plugin command serving `socket` (in `dir`); waits until it listens.
pub fn spawn_plugin(mut cmd: Command, socket: PathBuf, dir: tempfile::TempDir) -> Plugin {
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stderr).lines().map_while(Result::ok);
        let mut seen = String::new();
        for line in lines.by_ref() {
            if line.starts_with("k8s-kms-plugin listening on ") {
                let _ = tx.send(Ok(()));
                break;
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        let _ = tx.send(Err(seen));
        // Keep draining so the plugin never blocks on a full pipe.
        for line in lines {
            if std::env::var_os("KMSD_TEST_LOG").is_some() {
                eprintln!("[plugin] {line}");
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(())) => {}
        other => panic!("the plugin did not start: {other:?}"),
    }
    Plugin {
        child,
        socket,
        _dir: dir,
    }
}

/// A KMS v2 gRPC client over the plugin's Unix socket.
pub async fn connect(socket: &Path) -> KeyManagementServiceClient<Channel> {
    let socket = socket.to_path_buf();
    let channel = tonic::transport::Endpoint::try_from("http://[::1]:50051")
        .unwrap()
        .timeout(Duration::from_secs(30))
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
        .unwrap();
    KeyManagementServiceClient::new(channel)
}

pub async fn status(client: &mut KeyManagementServiceClient<Channel>) -> StatusResponse {
    client.status(StatusRequest {}).await.unwrap().into_inner()
}

pub async fn encrypt(
    client: &mut KeyManagementServiceClient<Channel>,
    plaintext: &[u8],
    uid: &str,
) -> (Vec<u8>, String) {
    let out = client
        .encrypt(EncryptRequest {
            plaintext: plaintext.to_vec(),
            uid: uid.into(),
        })
        .await
        .unwrap()
        .into_inner();
    (out.ciphertext, out.key_id)
}

pub async fn decrypt(
    client: &mut KeyManagementServiceClient<Channel>,
    ciphertext: &[u8],
    key_id: &str,
) -> Result<Vec<u8>, tonic::Status> {
    client
        .decrypt(DecryptRequest {
            ciphertext: ciphertext.to_vec(),
            uid: "decrypt-uid".into(),
            key_id: key_id.into(),
            annotations: Default::default(),
        })
        .await
        .map(|r| r.into_inner().plaintext)
}
