//! The `sitec` binary: all the work is in the library; this only hands the
//! command line to `sitec::cli` and turns its answer into an exit code.

fn main() -> std::process::ExitCode {
    sitec::cli::main()
}
