//! The `limpet` binary; everything lives in the library (see `cli.rs`).

fn main() -> std::process::ExitCode {
    limpet::cli::main()
}
