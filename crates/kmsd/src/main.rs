//! The `kmsd` binary.

use clap::Parser;
use kmsd::cli::{audit_command, config_command, hsm_command, serve, Cli, Command};

/// jemalloc instead of glibc's malloc: the request path allocates and frees many small
/// buffers on several threads, where glibc's arenas spent about a fifth of the worker threads'
/// CPU (BENCHMARKS.md, issue 16).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    // The config file becomes KMSD_* variables before anything else runs (no threads yet).
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(path) = kmsd::config::path_from(&args) {
        if let Err(e) = kmsd::config::apply(&path) {
            eprintln!("kmsd: {e}");
            return std::process::ExitCode::FAILURE;
        }
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(serve(*args)),
            Err(e) => Err(format!("starting the runtime: {e}")),
        },
        Command::Audit(cmd) => audit_command(cmd),
        Command::Admin {
            data_dir,
            store,
            command,
        } => match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(kmsd::admin_cli::run(data_dir, store, command)),
            Err(e) => Err(format!("starting the runtime: {e}")),
        },
        Command::Hsm(cmd) => match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(hsm_command(cmd)),
            Err(e) => Err(format!("starting the runtime: {e}")),
        },
        Command::Config(cmd) => config_command(cmd),
        Command::RootKey(cmd) => {
            kmsd::cli::init_plain_logging();
            kmsd::root_key::root_key_command(cmd)
        }
        Command::K8sKmsPlugin(args) => {
            kmsd::cli::init_plain_logging();
            match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(k8s_kms_plugin::run(*args)),
                Err(e) => Err(format!("starting the runtime: {e}")),
            }
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kmsd: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
