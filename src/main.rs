//! The `rosterd` binary: everything lives in the library so tests can drive it too.

/// mimalloc rather than glibc's malloc: a full LDAP sync allocates and frees millions of small
/// values across threads, and glibc's per-thread arenas kept 150-250 MB more resident than the
/// heap ever held (BENCHMARKS.md, "LDAP sync"); malloc and free were also a quarter of its CPU.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    no_transparent_huge_pages();
    roster::cli::main()
}

/// No transparent huge pages for this process. mimalloc asks the kernel for them on its memory
/// (`madvise`), and a huge page is resident whole once any byte of it is touched: a first full
/// sync of 100,000 members peaked at 269-292 MB resident with them and 235-246 MB without, at
/// the same speed (BENCHMARKS.md, "LDAP sync"). The flag covers every mapping of the process,
/// also those mimalloc made before `main`.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE sets a flag on this process's memory map; it takes no pointers.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}
