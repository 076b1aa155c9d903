//! `limpet completions SHELL`: the completion script, generated from the
//! same clap definition that parses the command line, so it cannot go stale.

use clap::CommandFactory;
use clap_complete::Shell;

use super::Cli;

/// The completion script for `shell`, for a binary named `limpet`.
pub(super) fn render(shell: Shell) -> Vec<u8> {
    let mut script = Vec::new();
    // Writing to a Vec cannot fail (clap_complete panics only on a failed write).
    clap_complete::generate(shell, &mut Cli::command(), "limpet", &mut script);
    script
}
