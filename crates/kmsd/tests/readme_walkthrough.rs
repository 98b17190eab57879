//! The README's shell walkthroughs are a test: every ```sh block of README.md runs, in order, in
//! one `bash -euo pipefail` process, in a fresh directory, against the kmsd of this build (first
//! on PATH, with the `xks-proxy` of this build beside it), with the README's fixed ports
//! replaced by free ones. The line before a block may
//! hold an annotation:
//!
//! - `<!-- readme-test: skip (why) -->`: the block does not run (the test suite itself, a
//!   benchmark, a block that needs a service the test does not have);
//! - `<!-- readme-test: background (why) -->`: the block is the foreground
//!   `cargo run --release -p kmsd -- serve ...` start; the test runs the built `kmsd` with the
//!   same flags in the background and waits until it listens.
//!
//! Every other block runs, including blocks added later. The script keeps each README line at
//! its README line number, so a failure names the README line (`FAILED: README.md line N: cmd`).
//! Every process the script started is killed at the end (its process group).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The ports the README uses; each is replaced by a free one.
const README_PORTS: [u16; 6] = [4599, 4600, 4601, 4602, 4603, 8443];
/// The command the `background` annotation replaces by the built binary.
const CARGO_RUN_KMSD: &str = "cargo run --release -p kmsd -- ";
/// Tools the walkthrough calls (scripts/test.sh installs them).
const TOOLS: [&str; 7] = [
    "bash",
    "psql",
    "aws",
    "openssl",
    "softhsm2-util",
    "python3",
    "flock",
];
/// Upper bound of one run (it normally takes well under a minute).
const RUN_LIMIT: Duration = Duration::from_secs(300);
/// Where the test's replacement of the `background` block sends the server's log.
const SERVER_LOG: &str = "kmsd-serve.log";

/// Line 1 of the script: strict mode, and on the first failure (also inside a shell function
/// such as `kms`, hence `-E`; reported by the main shell only) the README line of the top-level
/// command that failed.
const SCRIPT_HEADER: &str = r#"set -Eeuo pipefail; trap '[ "$BASHPID" != "$$" ] || { n=${#BASH_LINENO[@]}; echo "FAILED: README.md line $([ "$n" -gt 1 ] && echo "${BASH_LINENO[n-2]}" || echo "$LINENO"): $BASH_COMMAND" >&2; }' ERR"#;

/// What the annotation before a block asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Directive {
    Run,
    Skip,
    Background,
}

/// One ```sh block of the README.
#[derive(Debug)]
struct Block {
    /// 0-based index of the opening fence line in the README.
    fence: usize,
    /// 0-based index of the closing fence line.
    end: usize,
    directive: Directive,
}

/// Reads the annotation on the line before a block; panics on an unknown one.
fn directive(previous_line: Option<&str>) -> Directive {
    let Some(line) = previous_line.map(str::trim) else {
        return Directive::Run;
    };
    let Some(rest) = line.strip_prefix("<!-- readme-test:") else {
        return Directive::Run;
    };
    let rest = rest.trim_start();
    assert!(
        line.ends_with("-->") && rest.contains('('),
        "README annotation `{line}`: expected `<!-- readme-test: skip|background (why) -->`"
    );
    if rest.starts_with("skip ") {
        Directive::Skip
    } else if rest.starts_with("background ") {
        Directive::Background
    } else {
        panic!("README annotation `{line}`: expected skip or background")
    }
}

/// Finds every ```sh block, in order.
fn sh_blocks(lines: &[&str]) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() == "```sh" {
            let end = (i + 1..lines.len())
                .find(|&j| lines[j].trim() == "```")
                .unwrap_or_else(|| panic!("README.md line {}: unclosed ```sh block", i + 1));
            let previous = i.checked_sub(1).map(|p| lines[p]);
            blocks.push(Block {
                fence: i,
                end,
                directive: directive(previous),
            });
            i = end;
        }
        i += 1;
    }
    blocks
}

/// Replaces the README's fixed ports (`:4599`, ...) by the free ones chosen for this run.
fn with_ports(line: &str, ports: &[(u16, u16)]) -> String {
    ports.iter().fold(line.to_owned(), |text, (readme, free)| {
        text.replace(&format!(":{readme}"), &format!(":{free}"))
    })
}

/// The `background` block's one command, run from the build: `kmsd serve ...` in the
/// background, then a wait (bounded by the server staying alive) until it listens.
fn background_start(block_lines: &[&str], ports: &[(u16, u16)], readme_line: usize) -> String {
    let [command] = block_lines else {
        panic!("README.md line {readme_line}: a `background` block must be one command");
    };
    let args = command
        .trim()
        .strip_prefix(CARGO_RUN_KMSD)
        .unwrap_or_else(|| {
            panic!("README.md line {readme_line}: a `background` block must start with `{CARGO_RUN_KMSD}`")
        });
    format!(
        "kmsd {} 2> {SERVER_LOG} & until grep -q 'kmsd listening on' {SERVER_LOG}; do kill -0 $! || exit 1; sleep 0.1; done",
        with_ports(args, ports)
    )
}

/// The bash script: README line N is script line N (blank outside the blocks that run), the
/// header on line 1, a marker on each opening fence line.
fn script(readme: &str, ports: &[(u16, u16)]) -> String {
    let lines: Vec<&str> = readme.lines().collect();
    let mut out = vec![String::new(); lines.len().max(1)];
    out[0] = SCRIPT_HEADER.to_owned();
    let blocks = sh_blocks(&lines);
    assert!(
        blocks.iter().any(|b| b.directive == Directive::Run),
        "README.md has no runnable ```sh block"
    );
    for block in &blocks {
        let readme_line = block.fence + 1;
        let body = &lines[block.fence + 1..block.end];
        match block.directive {
            Directive::Skip => {
                out[block.fence] = format!("echo '=== README.md line {readme_line}: skipped'");
            }
            Directive::Background => {
                out[block.fence] =
                    format!("echo \"=== README.md line {readme_line} (${{SECONDS}}s)\"");
                out[block.fence + 1] = background_start(body, ports, readme_line);
            }
            Directive::Run => {
                out[block.fence] =
                    format!("echo \"=== README.md line {readme_line} (${{SECONDS}}s)\"");
                for (offset, line) in body.iter().enumerate() {
                    out[block.fence + 1 + offset] = with_ports(line, ports);
                }
            }
        }
    }
    out.join("\n") + "\necho \"=== README walkthrough done (${SECONDS}s)\"\n"
}

/// Free loopback ports, one per README port (all held until every one is chosen).
fn free_ports() -> Vec<(u16, u16)> {
    let listeners: Vec<TcpListener> = README_PORTS
        .iter()
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    README_PORTS
        .iter()
        .zip(&listeners)
        .map(|(readme, l)| (*readme, l.local_addr().unwrap().port()))
        .collect()
}

/// Fails with a clear message when a tool the walkthrough calls is missing.
fn require_tools() {
    let missing: Vec<&str> = TOOLS
        .iter()
        .copied()
        .filter(|tool| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect();
    assert!(
        missing.is_empty(),
        "the README walkthrough needs {missing:?} on PATH (./scripts/test.sh installs them: the aws CLI with pip, softhsm2 and openssl with apt)"
    );
}

/// Starts `bash script` in `dir`, in its own process group, output to `log`, with the built
/// kmsd and xks-proxy first on PATH and no AWS_*/KMSD_* settings inherited from the caller.
fn spawn_script(dir: &Path, script: &Path, log: &Path) -> Child {
    let kmsd = PathBuf::from(env!("CARGO_BIN_EXE_kmsd"));
    let xks_proxy = xks_proxy::testkit::ensure_binary()
        .unwrap_or_else(|e| panic!("the README's XKS walkthrough needs xks-proxy: {e}"));
    let path = format!(
        "{}:{}:{}",
        kmsd.parent().unwrap().display(),
        xks_proxy.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let aws_config = dir.join("aws-config");
    std::fs::write(&aws_config, "[default]\ncli_follow_urlparam = false\n").unwrap();
    let log_file = File::create(log).unwrap();
    let mut command = Command::new("bash");
    command
        .arg(script)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .env("PATH", path)
        .env("AWS_CONFIG_FILE", &aws_config)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .process_group(0);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if overridden_setting(&name) {
            command.env_remove(name);
        }
    }
    command.spawn().unwrap()
}

/// Caller environment variables that would change what the walkthrough does (credentials,
/// Region, CA bundle, kmsd settings, a SoftHSM2 config): removed, except the test's own.
fn overridden_setting(name: &str) -> bool {
    // KMSD_TEST_POSTGRES names the suite's PostgreSQL server (the High availability walkthrough
    // creates its database there; CI's server may need a password).
    let own = name == "AWS_CONFIG_FILE"
        || name == "AWS_EC2_METADATA_DISABLED"
        || name == "KMSD_TEST_POSTGRES";
    (name.starts_with("AWS_") && !own) || name.starts_with("KMSD_") || name == "SOFTHSM2_CONF"
}

/// Waits for the script, at most `RUN_LIMIT`; `None` when it ran out of time.
fn wait_bounded(child: &mut Child) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + RUN_LIMIT;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// Ends every process of the script's group (the servers it started): SIGTERM, then SIGKILL
/// for whatever is left after 10 s.
fn kill_group(child: &mut Child) {
    use rustix::process::{kill_process_group, test_kill_process_group, Pid, Signal};
    let pgid = Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap();
    let _ = kill_process_group(pgid, Signal::TERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    while test_kill_process_group(pgid).is_ok() && Instant::now() < deadline {
        let _ = child.try_wait();
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = kill_process_group(pgid, Signal::KILL);
    let _ = child.wait();
}

fn readme() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn readme_shell_blocks_run_in_order() {
    require_tools();
    let dir = tempfile::tempdir().unwrap();
    let script_path = dir.path().join("readme-walkthrough.sh");
    std::fs::write(&script_path, script(&readme(), &free_ports())).unwrap();
    let log = dir.path().join("readme-walkthrough.log");
    let mut child = spawn_script(dir.path(), &script_path, &log);
    let status = wait_bounded(&mut child);
    kill_group(&mut child);
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    let server_log = std::fs::read_to_string(dir.path().join(SERVER_LOG)).unwrap_or_default();
    match status {
        Some(status) if status.success() => println!("{output}"),
        Some(status) => panic!(
            "the README walkthrough failed ({status}):\n{output}\n--- {SERVER_LOG} (the first server's log):\n{server_log}"
        ),
        None => panic!(
            "the README walkthrough did not finish within {RUN_LIMIT:?}:\n{output}\n--- {SERVER_LOG}:\n{server_log}"
        ),
    }
}

#[test]
fn annotations_and_ports_are_applied() {
    let readme = "# t\n\n<!-- readme-test: skip (recursion) -->\n```sh\n./scripts/test.sh\n```\n\
                  <!-- readme-test: background (the built binary) -->\n```sh\n\
                  cargo run --release -p kmsd -- serve --listen 127.0.0.1:4599\n```\n\
                  ```sh\necho http://127.0.0.1:4599\n```\n";
    let out = script(readme, &[(4599, 5001)]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("set -Eeuo pipefail"));
    assert_eq!(lines[3], "echo '=== README.md line 4: skipped'");
    assert_eq!(lines[4], "", "a skipped block does not run");
    assert!(lines[8].starts_with("kmsd serve --listen 127.0.0.1:5001 2> kmsd-serve.log & "));
    assert_eq!(
        lines[11], "echo http://127.0.0.1:5001",
        "README line 12 stays line 12"
    );
}
