//! The `rosterd` binary: everything lives in the library so tests can drive it too.

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    roster::cli::main()
}
