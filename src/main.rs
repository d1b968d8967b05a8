//! The `rosterd` binary: everything lives in the library so tests can drive it too.

/// mimalloc rather than glibc's malloc: a full LDAP sync allocates and frees millions of small
/// values across threads, and glibc's per-thread arenas kept 150-250 MB more resident than the
/// heap ever held (BENCHMARKS.md, "LDAP sync"); malloc and free were also a quarter of its CPU.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    roster::cli::main()
}
