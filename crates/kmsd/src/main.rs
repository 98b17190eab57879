//! The `kmsd` binary.

use clap::Parser;
use kmsd::cli::{audit_command, serve, Cli, Command};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Audit(cmd) => audit_command(cmd),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kmsd: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
