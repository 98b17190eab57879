//! Test support: start a real `xks-proxy` process over TLS in front of a private SoftHSM2
//! token, for this crate's integration tests and for kmsd's (which talk to it as an external
//! key store). Uses only the standard library plus the `openssl` and `softhsm2-util` commands.
//!
//! ```no_run
//! use xks_proxy::testkit::{TestProxy, TestProxyOptions};
//! let bin = xks_proxy::testkit::ensure_binary().unwrap();
//! let proxy = TestProxy::start(&bin, TestProxyOptions::new(&["key-1", "key-2"])).unwrap();
//! // proxy.endpoint() = "https://localhost:PORT", proxy.uri_path() = "/example/kms/xks/v1",
//! // proxy.ca_pem() = the CA bundle to trust, proxy.credential() = (access key id, secret).
//! ```
//!
//! Everything lives in one temporary directory removed on drop; the proxy is stopped on drop.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::server::{READY_PREFIX, RELOADED, RELOAD_FAILED};

/// The SoftHSM2 module on Debian/Ubuntu.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// SO PIN of test tokens.
pub const TEST_SO_PIN: &str = "1234567890";
/// User PIN of test tokens.
pub const TEST_USER_PIN: &str = "xks-test-pin-1";
/// A valid test access key id (20 characters A-Z2-7).
pub const TEST_ACCESS_KEY_ID: &str = "AKIAXKSPROXYTESTKEY2";
/// A valid test secret (44 characters).
pub const TEST_SECRET: &str = "xksProxyTestSecretKey0123456789abcdefABCDEF=";
/// SigV4 region of the test key store.
pub const TEST_REGION: &str = "us-east-1";
/// URI path of the test key store.
pub const TEST_URI_PATH: &str = "/example/kms/xks/v1";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A directory removed (recursively) on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `$TMPDIR/<prefix>-<pid>-<n>`.
    pub fn new(prefix: &str) -> std::io::Result<TempDir> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let p = std::env::temp_dir().join(format!("{prefix}-{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p)?;
        Ok(TempDir(p))
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("running {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Certificates made with `openssl`: a CA, a server certificate for `localhost` and
/// `127.0.0.1`, and client certificates on demand.
#[derive(Debug, Clone)]
pub struct TestPki {
    dir: PathBuf,
}

impl TestPki {
    /// Creates the CA (`ca.pem`, `ca.key`) and the server certificate (`server.pem`,
    /// `server.key`, SAN `DNS:localhost, IP:127.0.0.1`) in `dir`.
    pub fn create(dir: &Path) -> Result<TestPki, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let pki = TestPki {
            dir: dir.to_path_buf(),
        };
        run(Command::new("openssl")
            .current_dir(dir)
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args([
                "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            ])
            .args(["-subj", "/CN=xks-proxy test CA"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]))?;
        pki.issue(
            "server",
            "localhost",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
        )?;
        Ok(pki)
    }

    fn issue(&self, name: &str, cn: &str, ext: &str) -> Result<(), String> {
        let dir = &self.dir;
        run(Command::new("openssl")
            .current_dir(dir)
            .args([
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
            ])
            .args([
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ])
            .args(["-subj", &format!("/CN={cn}")]))?;
        std::fs::write(dir.join(format!("{name}.ext")), ext).map_err(|e| e.to_string())?;
        run(Command::new("openssl")
            .current_dir(dir)
            .args([
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
            ])
            .args(["-CAkey", "ca.key", "-CAcreateserial", "-days", "2"])
            .args([
                "-out",
                &format!("{name}.pem"),
                "-extfile",
                &format!("{name}.ext"),
            ]))?;
        Ok(())
    }

    /// Issues a client certificate with subject `CN=<cn>`: returns (cert PEM path, key PEM path).
    pub fn client(&self, name: &str, cn: &str) -> Result<(PathBuf, PathBuf), String> {
        self.issue(
            name,
            cn,
            "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
        )?;
        Ok((
            self.dir.join(format!("{name}.pem")),
            self.dir.join(format!("{name}.key")),
        ))
    }

    /// The CA certificate (PEM): the bundle clients must trust.
    pub fn ca_pem(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    /// The server certificate (PEM).
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }
    /// The server key (PEM).
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }
}

/// A private SoftHSM2 configuration (own token directory) with one initialised token.
#[derive(Debug, Clone)]
pub struct TestSoftHsm {
    /// The `softhsm2.conf` to pass as `SOFTHSM2_CONF`.
    pub conf: PathBuf,
    /// Token label.
    pub label: String,
}

impl TestSoftHsm {
    /// Writes `dir/softhsm2.conf` (token dir `dir/tokens`) and initialises token `label` with
    /// [`TEST_SO_PIN`] and [`TEST_USER_PIN`] through `softhsm2-util`.
    pub fn create(dir: &Path, label: &str) -> Result<TestSoftHsm, String> {
        let tokens = dir.join("tokens");
        std::fs::create_dir_all(&tokens).map_err(|e| e.to_string())?;
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                tokens.display()
            ),
        )
        .map_err(|e| e.to_string())?;
        run(Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &conf)
            .args(["--init-token", "--free", "--label", label])
            .args(["--so-pin", TEST_SO_PIN, "--pin", TEST_USER_PIN]))?;
        Ok(TestSoftHsm {
            conf,
            label: label.to_owned(),
        })
    }
}

/// One key store of a test configuration.
#[derive(Debug, Clone)]
pub struct StoreSpec {
    /// Name.
    pub name: String,
    /// URI path.
    pub uri_path: String,
    /// Region.
    pub region: String,
    /// (access key id, secret) pairs.
    pub credentials: Vec<(String, String)>,
    /// External key ids (token label = id).
    pub keys: Vec<String>,
    /// Per-store kill switch.
    pub crypto_enabled: bool,
    /// Extra TOML appended after the store (e.g. `[[key_store.rules]]` tables).
    pub extra_toml: String,
}

impl StoreSpec {
    /// A store at [`TEST_URI_PATH`], region [`TEST_REGION`], with the test credential.
    pub fn new(keys: &[&str]) -> StoreSpec {
        StoreSpec {
            name: "test".into(),
            uri_path: TEST_URI_PATH.into(),
            region: TEST_REGION.into(),
            credentials: vec![(TEST_ACCESS_KEY_ID.into(), TEST_SECRET.into())],
            keys: keys.iter().map(|k| (*k).to_owned()).collect(),
            crypto_enabled: true,
            extra_toml: String::new(),
        }
    }
}

/// Options of [`TestProxy::start`].
#[derive(Debug, Clone)]
pub struct TestProxyOptions {
    /// Key stores.
    pub stores: Vec<StoreSpec>,
    /// Keys to create in the token before the proxy starts (default: every store key).
    pub create_keys: Vec<String>,
    /// Global kill switch.
    pub crypto_enabled: bool,
    /// Require client certificates with one of these CNs (mutual TLS).
    pub client_cns: Option<Vec<String>>,
    /// `health.cache_secs`.
    pub health_cache_secs: u64,
    /// Keys of the `[limits]` table (TOML lines), if any.
    pub limits_toml: String,
    /// More keys of the `[hsm]` table (TOML lines), if any.
    pub hsm_toml: String,
}

impl TestProxyOptions {
    /// One store ([`StoreSpec::new`]) serving `keys`, all created in the token.
    pub fn new(keys: &[&str]) -> TestProxyOptions {
        TestProxyOptions {
            stores: vec![StoreSpec::new(keys)],
            create_keys: keys.iter().map(|k| (*k).to_owned()).collect(),
            crypto_enabled: true,
            client_cns: None,
            health_cache_secs: 5,
            limits_toml: String::new(),
            hsm_toml: String::new(),
        }
    }
}

fn toml_str(s: &str) -> String {
    format!("{s:?}")
}

/// The configuration text for `opts`, with file paths under `dir`.
pub fn config_toml(
    opts: &TestProxyOptions,
    pki: &TestPki,
    hsm: &TestSoftHsm,
    dir: &Path,
) -> String {
    let mut t = String::new();
    t.push_str("listen = \"127.0.0.1:0\"\n");
    t.push_str(&format!("crypto_enabled = {}\n\n", opts.crypto_enabled));
    t.push_str("[tls]\n");
    t.push_str(&format!(
        "cert = {}\n",
        toml_str(&pki.server_cert().display().to_string())
    ));
    t.push_str(&format!(
        "key = {}\n",
        toml_str(&pki.server_key().display().to_string())
    ));
    if let Some(cns) = &opts.client_cns {
        t.push_str(&format!(
            "client_ca = {}\n",
            toml_str(&pki.ca_pem().display().to_string())
        ));
        let list: Vec<String> = cns.iter().map(|c| toml_str(c)).collect();
        t.push_str(&format!("client_cns = [{}]\n", list.join(", ")));
    }
    t.push_str("\n[hsm]\n");
    t.push_str(&format!("module = {}\n", toml_str(SOFTHSM_MODULE)));
    t.push_str(&format!("token_label = {}\n", toml_str(&hsm.label)));
    t.push_str(&format!(
        "pin_file = {}\n{}\n",
        toml_str(&dir.join("pin").display().to_string()),
        opts.hsm_toml
    ));
    t.push_str(&format!(
        "[health]\ncache_secs = {}\n\n",
        opts.health_cache_secs
    ));
    t.push_str(&format!(
        "[audit]\ndir = {}\n\n",
        toml_str(&dir.join("audit").display().to_string())
    ));
    if !opts.limits_toml.is_empty() {
        t.push_str(&format!("[limits]\n{}\n\n", opts.limits_toml));
    }
    for s in &opts.stores {
        t.push_str("[[key_store]]\n");
        t.push_str(&format!("name = {}\n", toml_str(&s.name)));
        t.push_str(&format!("uri_path = {}\n", toml_str(&s.uri_path)));
        t.push_str(&format!("region = {}\n", toml_str(&s.region)));
        t.push_str(&format!("crypto_enabled = {}\n", s.crypto_enabled));
        let keys: Vec<String> = s.keys.iter().map(|k| toml_str(k)).collect();
        t.push_str(&format!("keys = [{}]\n", keys.join(", ")));
        for (akid, secret) in &s.credentials {
            t.push_str("[[key_store.credentials]]\n");
            t.push_str(&format!("access_key_id = {}\n", toml_str(akid)));
            t.push_str(&format!("secret_access_key = {}\n", toml_str(secret)));
        }
        t.push_str(&s.extra_toml);
        t.push('\n');
    }
    t
}

/// Finds the `xks-proxy` binary: `$XKS_PROXY_BIN`, else `target/<profile>/xks-proxy` next to
/// the running test executable (`target/<profile>/deps/...`). Inside this crate's own tests use
/// `env!("CARGO_BIN_EXE_xks-proxy")` instead. Build it first with `cargo build -p xks-proxy`
/// (`cargo test --workspace` builds it too).
pub fn locate_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("XKS_PROXY_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut dir = exe.parent().map(Path::to_path_buf);
    while let Some(d) = dir {
        let candidate = d.join("xks-proxy");
        if candidate.is_file() {
            return Ok(candidate);
        }
        dir = d.parent().map(Path::to_path_buf);
        if d.file_name().is_some_and(|n| n == "target") {
            break;
        }
    }
    Err("xks-proxy binary not found: run `cargo build -p xks-proxy` or set XKS_PROXY_BIN".into())
}

static BUILT: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();

/// The `xks-proxy` binary for tests of other crates (kmsd): `$XKS_PROXY_BIN` if set, else
/// builds it once per process with `$CARGO build -p xks-proxy --bin xks-proxy` (cargo sets
/// `CARGO` for tests it runs; nested builds do not dead-lock on the target directory) and
/// returns the executable cargo reports, else falls back to [`locate_binary`].
pub fn ensure_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("XKS_PROXY_BIN") {
        return Ok(PathBuf::from(p));
    }
    BUILT
        .get_or_init(|| {
            let Some(cargo) = std::env::var_os("CARGO") else {
                return locate_binary();
            };
            let out = Command::new(cargo)
                .args(["build", "-p", "xks-proxy", "--bin", "xks-proxy"])
                .args(["--message-format", "json-render-diagnostics"])
                .stderr(Stdio::inherit())
                .output()
                .map_err(|e| format!("running cargo build -p xks-proxy: {e}"))?;
            if !out.status.success() {
                return Err(format!("cargo build -p xks-proxy failed ({})", out.status));
            }
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|v| {
                    v["reason"] == "compiler-artifact" && v["target"]["name"] == "xks-proxy"
                })
                .find_map(|v| v["executable"].as_str().map(PathBuf::from))
                .map_or_else(locate_binary, Ok)
        })
        .clone()
}

#[derive(Default)]
struct LogState {
    lines: Vec<String>,
}

/// A running `xks-proxy serve` process (killed on drop).
pub struct TestProxy {
    bin: PathBuf,
    child: Child,
    addr: std::net::SocketAddr,
    log: Arc<(Mutex<LogState>, Condvar)>,
    /// SoftHSM2 configuration of its token.
    pub hsm: TestSoftHsm,
    /// Certificates.
    pub pki: TestPki,
    /// The configuration file.
    pub config_path: PathBuf,
    /// The options it was started with.
    pub options: TestProxyOptions,
    dir: TempDir,
}

impl std::fmt::Debug for TestProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestProxy")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl TestProxy {
    /// Creates a temporary directory with certificates, a SoftHSM2 token (label `xks-test`),
    /// the keys of `opts.create_keys` and a configuration file, then starts the proxy on
    /// `127.0.0.1:0` and waits (at most 30 s) until it listens.
    pub fn start(bin: &Path, opts: TestProxyOptions) -> Result<TestProxy, String> {
        let dir = TempDir::new("xks-proxy-test").map_err(|e| e.to_string())?;
        let pki = TestPki::create(&dir.path().join("pki"))?;
        let hsm = TestSoftHsm::create(&dir.path().join("softhsm"), "xks-test")?;
        std::fs::write(dir.path().join("pin"), format!("{TEST_USER_PIN}\n"))
            .map_err(|e| e.to_string())?;
        let config_path = dir.path().join("xks-proxy.toml");
        std::fs::write(&config_path, config_toml(&opts, &pki, &hsm, dir.path()))
            .map_err(|e| e.to_string())?;
        for k in &opts.create_keys {
            cli(bin, &hsm, &["create-key", "--config"], &config_path, k)?;
        }
        let mut child = Command::new(bin)
            .args(["serve", "--config"])
            .arg(&config_path)
            .env("SOFTHSM2_CONF", &hsm.conf)
            .env(
                "RUST_LOG",
                std::env::var("XKS_PROXY_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let log: Arc<(Mutex<LogState>, Condvar)> = Arc::default();
        let log2 = log.clone();
        let echo = std::env::var_os("XKS_PROXY_TEST_ECHO").is_some();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if echo {
                    eprintln!("[xks-proxy] {line}");
                }
                let (m, c) = &*log2;
                m.lock().unwrap_or_else(|p| p.into_inner()).lines.push(line);
                c.notify_all();
            }
        });
        let mut proxy = TestProxy {
            bin: bin.to_path_buf(),
            child,
            addr: "127.0.0.1:0".parse().map_err(|_| "addr")?,
            log,
            hsm,
            pki,
            config_path,
            options: opts,
            dir,
        };
        let line = proxy.wait_for_log(READY_PREFIX, 0, Duration::from_secs(30))?;
        proxy.addr = line
            .trim_start_matches(READY_PREFIX)
            .trim()
            .parse()
            .map_err(|e| format!("bad ready line {line:?}: {e}"))?;
        Ok(proxy)
    }

    /// The listening address (`127.0.0.1:PORT`).
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// `https://localhost:PORT` (the certificate is valid for `localhost` and `127.0.0.1`).
    pub fn endpoint(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// The first store's URI path (XksProxyUriPath).
    pub fn uri_path(&self) -> String {
        self.options
            .stores
            .first()
            .map(|s| s.uri_path.clone())
            .unwrap_or_default()
    }

    /// The first store's first credential (access key id, secret).
    pub fn credential(&self) -> (String, String) {
        self.options
            .stores
            .first()
            .and_then(|s| s.credentials.first().cloned())
            .unwrap_or_default()
    }

    /// The CA bundle (PEM) to trust.
    pub fn ca_pem(&self) -> PathBuf {
        self.pki.ca_pem()
    }

    /// The temporary directory (config, audit dir `audit/`, pki, softhsm).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The audit directory.
    pub fn audit_dir(&self) -> PathBuf {
        self.dir.path().join("audit")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every stderr line so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .lines
            .clone()
    }

    /// Waits for a stderr line containing `needle` at index ≥ `from`; returns it.
    pub fn wait_for_log(
        &self,
        needle: &str,
        from: usize,
        timeout: Duration,
    ) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        let (m, c) = &*self.log;
        let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(l) = g.lines.iter().skip(from).find(|l| l.contains(needle)) {
                return Ok(l.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(format!(
                    "no log line containing {needle:?} within {timeout:?}; log:\n{}",
                    g.lines.join("\n")
                ));
            }
            g = c
                .wait_timeout(g, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    fn signal(&self, sig: &str) -> Result<(), String> {
        run(Command::new("kill").args([sig, &self.child.id().to_string()])).map(|_| ())
    }

    /// Rewrites the configuration file with `opts` and sends SIGHUP; waits for the reload.
    pub fn reconfigure(&mut self, opts: TestProxyOptions) -> Result<(), String> {
        std::fs::write(
            &self.config_path,
            config_toml(&opts, &self.pki, &self.hsm, self.dir.path()),
        )
        .map_err(|e| e.to_string())?;
        self.options = opts;
        self.reload()
    }

    /// Sends SIGHUP and waits until the proxy reports the reload (error if it failed).
    pub fn reload(&self) -> Result<(), String> {
        let from = self.log_lines().len();
        self.signal("-HUP")?;
        let deadline = Duration::from_secs(10);
        let start = Instant::now();
        loop {
            let lines = self.log_lines();
            if let Some(l) = lines
                .iter()
                .skip(from)
                .find(|l| l.starts_with(RELOADED) || l.starts_with(RELOAD_FAILED))
            {
                return if l.starts_with(RELOADED) {
                    Ok(())
                } else {
                    Err(l.clone())
                };
            }
            if start.elapsed() > deadline {
                return Err("no reload acknowledgement".into());
            }
            let _ = self.wait_for_log("xks-proxy re", from, Duration::from_millis(200));
        }
    }

    /// Runs `xks-proxy <command> --config <file> <external-key-id>` (create-key, disable-key,
    /// enable-key, key-status) against this proxy's token; returns stdout.
    pub fn key_command(&self, command: &str, external_key_id: &str) -> Result<String, String> {
        cli(
            &self.bin,
            &self.hsm,
            &[command, "--config"],
            &self.config_path,
            external_key_id,
        )
    }

    /// Runs `xks-proxy set-key-usage --usage <usage> --config <file> <external-key-id>`
    /// (`usage`: `encrypt,decrypt`, `encrypt`, `decrypt` or `none`); returns stdout.
    pub fn set_key_usage(&self, external_key_id: &str, usage: &str) -> Result<String, String> {
        cli(
            &self.bin,
            &self.hsm,
            &["set-key-usage", "--usage", usage, "--config"],
            &self.config_path,
            external_key_id,
        )
    }

    /// Sends SIGTERM and waits for the process to exit (the audit file gets its signed digest).
    pub fn stop(&mut self) -> Result<(), String> {
        self.signal("-TERM")?;
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return if status.success() {
                    Ok(())
                } else {
                    Err(format!("xks-proxy exited with {status}"))
                };
            }
            if start.elapsed() > Duration::from_secs(15) {
                let _ = self.child.kill();
                return Err("xks-proxy did not stop within 15 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn cli(
    bin: &Path,
    hsm: &TestSoftHsm,
    args: &[&str],
    config: &Path,
    id: &str,
) -> Result<String, String> {
    run(Command::new(bin)
        .args(args)
        .arg(config)
        .arg(id)
        .env("SOFTHSM2_CONF", &hsm.conf)
        .env("RUST_LOG", "warn"))
}
