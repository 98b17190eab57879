//! An independent implementation in Python as a test peer: a script under tests/interop/ that
//! answers one JSON request per line with one JSON answer per line.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::Value;

/// A running peer script; killed when dropped.
pub struct PythonPeer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    needs: &'static str,
}

impl PythonPeer {
    /// Starts `tests/interop/<script>`; `needs` names the Python packages it imports (for the
    /// failure message: scripts/test.sh installs them).
    pub fn start(script: &str, needs: &'static str) -> PythonPeer {
        let mut child = Command::new("python3")
            .arg(format!(
                "{}/tests/interop/{script}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("python3 with {needs} is needed (scripts/test.sh installs it): {e}")
            });
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        PythonPeer {
            child,
            stdin,
            stdout,
            needs,
        }
    }

    /// Sends one request and reads its answer.
    pub fn call(&mut self, req: Value) -> Value {
        writeln!(self.stdin, "{req}").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|_| {
            panic!(
                "the Python peer failed on {} (are {} installed?)",
                req["op"], self.needs
            )
        })
    }
}

impl Drop for PythonPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
