//! Test harness: starts the real `kmsd` binary and talks to it with aws-sdk-kms, the `aws` CLI
//! or raw HTTP.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running kmsd process with its own data dir.
pub struct Server {
    pub child: Child,
    /// Everything the server wrote to stderr so far.
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts kmsd on a fresh data dir (extra flags appended).
    pub fn start(extra: &[&str]) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let mut s = Server::start_in(&dir, extra);
        s._tmp = Some(tmp);
        s
    }

    /// Starts kmsd on `dir` (which may hold an earlier run's data).
    pub fn start_in(dir: &Path, extra: &[&str]) -> Server {
        Server::start_in_env(dir, extra, &[])
    }

    /// As [`Server::start_in`], with extra environment variables for the server only (tests
    /// running in parallel must not share them through the test process's environment).
    pub fn start_in_env(dir: &Path, extra: &[&str], vars: &[(&str, &Path)]) -> Server {
        Server::spawn(Command::new(env!("CARGO_BIN_EXE_kmsd")), dir, extra, vars)
    }

    /// Starts kmsd on a fresh data dir with its open-file limit (soft and hard) set to `limit`.
    pub fn start_with_open_file_limit(limit: u64, extra: &[&str]) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            &format!("ulimit -n {limit} && exec \"$0\" \"$@\""),
            env!("CARGO_BIN_EXE_kmsd"),
        ]);
        let mut s = Server::spawn(cmd, &dir, extra, &[]);
        s._tmp = Some(tmp);
        s
    }

    /// Runs `cmd serve ...` (cmd runs kmsd, possibly through a wrapper).
    fn spawn(mut cmd: Command, dir: &Path, extra: &[&str], vars: &[(&str, &Path)]) -> Server {
        let store = test_store(dir, extra);
        let mut child = cmd
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .args(extra)
            // Tests create keys faster than AWS's CreateKey quota allows; the quota tests pass
            // `--quotas` (the command line wins over the environment).
            .env("KMSD_QUOTAS", "off")
            .args(store.iter().flat_map(|url| ["--store", url.as_str()]))
            .envs(vars.iter().map(|(k, v)| (*k, *v)))
            .env(
                "KMSD_LOG",
                std::env::var("KMSD_TEST_LOG_LEVEL").unwrap_or_else(|_| "debug".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let log_writer = log.clone();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut l) = log_writer.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
                if !sent {
                    if let Some(a) = line.strip_prefix("kmsd listening on ") {
                        let _ = tx.send(a.trim().to_owned());
                        sent = true;
                    }
                }
                // Keep draining so the server never blocks on a full pipe.
                if std::env::var_os("KMSD_TEST_LOG").is_some() {
                    eprintln!("[kmsd] {line}");
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("kmsd did not start")
            .parse()
            .unwrap();
        Server {
            child,
            log,
            addr,
            data_dir: dir.to_path_buf(),
            _tmp: None,
        }
    }

    /// `--store URL` for `kmsd admin` on this server's data dir when the server runs on a
    /// test PostgreSQL database (`KMSD_TEST_STORE=postgres`); empty otherwise.
    pub fn store_args(&self) -> Vec<String> {
        store_args_of(&self.data_dir)
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// (access key id, secret) from DIR/admin-credentials.
    pub fn admin_credentials(&self) -> (String, String) {
        let text = std::fs::read_to_string(self.data_dir.join("admin-credentials")).unwrap();
        let get = |k: &str| {
            text.lines()
                .find_map(|l| {
                    l.strip_prefix(k)
                        .map(|v| v.trim_start_matches([' ', '=']).trim().to_owned())
                })
                .unwrap()
        };
        (get("aws_access_key_id"), get("aws_secret_access_key"))
    }

    /// An SDK client signed with the admin's credentials.
    pub fn client(&self) -> aws_sdk_kms::Client {
        let (a, s) = self.admin_credentials();
        self.client_with(&a, &s, "us-east-1")
    }

    /// An SDK client with the given credentials and region.
    pub fn client_with(&self, akid: &str, secret: &str, region: &str) -> aws_sdk_kms::Client {
        let conf = aws_sdk_kms::Config::builder()
            .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
            .region(aws_sdk_kms::config::Region::new(region.to_owned()))
            .endpoint_url(self.endpoint())
            .credentials_provider(aws_sdk_kms::config::Credentials::new(
                akid,
                secret,
                None,
                None,
                "kmsd-test",
            ))
            .retry_config(aws_sdk_kms::config::retry::RetryConfig::disabled())
            .build();
        aws_sdk_kms::Client::from_conf(conf)
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..100 {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// With `KMSD_TEST_STORE=postgres`, the `--store` of a server on `dir` that names none: a fresh
/// PostgreSQL database per data dir (on `KMSD_TEST_POSTGRES`), the same one when a test
/// restarts a server on the dir. The databases are kept so restarts find them, and listed in
/// [`CREATED_DATABASES`] for `scripts/test.sh` to drop after the run.
fn test_store(dir: &Path, extra: &[&str]) -> Option<String> {
    if std::env::var("KMSD_TEST_STORE").as_deref() != Ok("postgres") || extra.contains(&"--store") {
        return None;
    }
    std::fs::create_dir_all(dir).unwrap();
    let marker = dir.join(".kmsd-test-store");
    if let Ok(url) = std::fs::read_to_string(&marker) {
        return Some(url);
    }
    let db =
        kms_store::ScratchDatabase::create().expect("KMSD_TEST_STORE=postgres needs PostgreSQL");
    let url = db.url().to_owned();
    let mut list = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(Path::new(env!("CARGO_TARGET_TMPDIR")).join(CREATED_DATABASES))
        .unwrap();
    std::io::Write::write_all(&mut list, format!("{}\n", db.name()).as_bytes()).unwrap();
    std::mem::forget(db);
    std::fs::write(&marker, &url).unwrap();
    Some(url)
}

/// The file in the test binaries' temporary directory (`target/tmp`) naming, one a line, the
/// PostgreSQL databases [`test_store`] created and kept.
pub const CREATED_DATABASES: &str = "kmsd-test-databases";

/// [`Server::store_args`] for a data dir.
pub fn store_args_of(dir: &Path) -> Vec<String> {
    match std::fs::read_to_string(dir.join(".kmsd-test-store")) {
        Ok(url) => vec!["--store".into(), url],
        Err(_) => vec![],
    }
}

/// With `KMSD_TEST_STORE=postgres`, a `pg_dump --data-only` of the database of the server on
/// `dir`; `None` on SQLite (its database files are in `dir`).
pub fn postgres_dump(dir: &Path) -> Option<Vec<u8>> {
    let args = store_args_of(dir);
    let [_, url] = args.as_slice() else {
        return None;
    };
    let dump = Command::new("pg_dump")
        .args(["--data-only", url])
        .output()
        .unwrap();
    assert!(dump.status.success(), "pg_dump: {dump:?}");
    Some(dump.stdout)
}

/// Runs `kmsd admin --data-dir DIR STORE_ARGS ARGS...` and returns what it printed; panics
/// (with its stderr) if it fails.
pub fn kmsd_admin(data_dir: &Path, store_args: &[String], args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kmsd"))
        .arg("admin")
        .arg("--data-dir")
        .arg(data_dir)
        .args(store_args)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kmsd admin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A raw HTTP response.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
    pub fn error_type(&self) -> String {
        self.json()["__type"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// Sends raw bytes and reads the whole response (the request should say `Connection: close`).
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(bytes).await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .map_err(|_| std::io::ErrorKind::TimedOut)??;
    Ok(out)
}

/// Parses an HTTP/1.1 response with a Content-Length or read-to-close body.
pub fn parse_response(bytes: &[u8]) -> Option<RawResponse> {
    let text_end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..text_end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(a, b)| (a.trim().to_owned(), b.trim().to_owned()))
        })
        .collect();
    Some(RawResponse {
        status,
        headers,
        body: bytes[text_end + 4..].to_vec(),
    })
}

/// A signed (or, with `creds: None`, unsigned) KMS request over raw HTTP.
pub async fn kms_request(
    addr: SocketAddr,
    target: &str,
    body: &str,
    creds: Option<(&str, &str)>,
    now_secs: i64,
) -> RawResponse {
    let host = addr.to_string();
    let mut headers = vec![
        ("host".to_owned(), host),
        (
            "content-type".to_owned(),
            "application/x-amz-json-1.1".to_owned(),
        ),
        ("x-amz-target".to_owned(), target.to_owned()),
    ];
    if let Some((a, s)) = creds {
        let parts = kmsd::sigv4::RequestParts {
            method: "POST",
            path: "/",
            query: "",
            headers: headers.clone(),
            body: body.as_bytes(),
        };
        headers.extend(kmsd::sigv4::sign(&parts, a, s, "us-east-1", "kms", now_secs).unwrap());
    }
    send(addr, &headers, body.as_bytes()).await
}

/// Sends a POST / with the given headers (Content-Length and Connection added).
pub async fn send(addr: SocketAddr, headers: &[(String, String)], body: &[u8]) -> RawResponse {
    let mut req = String::from("POST / HTTP/1.1\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    ));
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    parse_response(&raw(addr, &bytes).await.unwrap()).unwrap()
}

/// Unix seconds now.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `--dev` only: moves the server clock forward and runs the deletion sweeper.
pub async fn advance_dev_clock(addr: SocketAddr, secs: i64) {
    let body = secs.to_string();
    let req = format!(
        "POST /_kmsd/dev/advance-clock HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let resp = parse_response(&raw(addr, req.as_bytes()).await.unwrap()).unwrap();
    assert_eq!(
        resp.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&resp.body)
    );
}

/// GET `path` from `addr` (one request, connection closed).
pub async fn get(addr: SocketAddr, path: &str) -> RawResponse {
    let req = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    parse_response(&raw(addr, req.as_bytes()).await.unwrap()).unwrap()
}

/// The admin listener's address, from the server's `kmsd admin listening on` line.
pub fn admin_addr(server: &Server) -> SocketAddr {
    for _ in 0..100 {
        if let Some(line) = server
            .log
            .lock()
            .unwrap()
            .lines()
            .find(|l| l.starts_with("kmsd admin listening on "))
        {
            return line
                .trim_start_matches("kmsd admin listening on ")
                .trim()
                .parse()
                .unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no admin listener line");
}

/// Creates a default (symmetric) key; returns its key id.
pub async fn new_key_id(kms: &aws_sdk_kms::Client) -> String {
    created_key_id(kms.create_key().send().await.unwrap())
}

/// The key id of a CreateKey answer.
pub fn created_key_id(out: aws_sdk_kms::operation::create_key::CreateKeyOutput) -> String {
    out.key_metadata().unwrap().key_id().to_owned()
}
