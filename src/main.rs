//! The `sitec` binary: all the work is in the library; this only hands the
//! command line to `sitec::cli` and turns its answer into an exit code.

/// mimalloc instead of glibc's malloc: the balancer's request path allocates
/// and frees a few small blocks per request (parsed heads, the rewritten
/// heads, the boxed exchange future), and glibc's bins, consolidation and
/// trimming cost more than the parsing itself there (callgrind under the
/// balancer bench; see benches/balancer/README.md). `sitec check` gains too:
/// its millions of small syntax-tree allocations cost 17% fewer
/// instructions than with glibc (benches/README.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    sitec::cli::main()
}
