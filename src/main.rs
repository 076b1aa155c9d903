//! The `limpet` binary; everything lives in the library (see `cli.rs`).

/// mimalloc rather than glibc's malloc: per-thread free lists and pages
/// suit a worker per core that allocates and frees the same few sizes for
/// every request (benches/compare/results-2026-12-05-allocator*.md: 6-8%
/// less user CPU per request, resident memory within half a megabyte).
/// Set here, in the binary only: the library sets no allocator, so
/// tests/alloc.rs counts allocations with one of its own (dhat).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    limpet::cli::main()
}
