//! The `xks-proxy` binary.

/// jemalloc instead of glibc's malloc: the request path allocates and frees many small
/// buffers on several threads, where glibc's arenas spent about a fifth of the worker threads'
/// CPU (BENCHMARKS.md, issue 16).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    xks_proxy::cli::main()
}
