//! The `xks-proxy` binary.

fn main() -> std::process::ExitCode {
    xks_proxy::cli::main()
}
