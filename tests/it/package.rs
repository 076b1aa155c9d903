//! What the package ships besides the binary, produced by the real binary:
//! shell completions, generated from the same clap definition that parses
//! the command line.

use std::io::ErrorKind;
use std::path::Path;
use std::process::{Command, Output};

use crate::harness::temp_dir;

/// Runs the real `limpet` with `args` in an empty directory: no `lb.yaml`.
fn limpet_in_empty_dir(args: &[&str]) -> Output {
    let dir = temp_dir("package");
    let out = Command::new(env!("CARGO_BIN_EXE_limpet"))
        .args(args)
        .current_dir(&dir)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    out
}

/// The standard output of a successful `limpet args`.
fn stdout_of(args: &[&str]) -> String {
    let out = limpet_in_empty_dir(args);
    assert!(out.status.success(), "limpet {args:?}: {out:?}");
    assert!(out.stderr.is_empty(), "limpet {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `bash -c script`; None when there is no bash.
fn bash(script: &str, file: &Path) -> Option<Output> {
    match Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg("bash")
        .arg(file)
        .output()
    {
        Ok(out) => Some(out),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => panic!("cannot run bash: {e}"),
    }
}

#[test]
fn bash_completions_offer_the_subcommands_and_register_for_limpet() {
    let script = stdout_of(&["completions", "bash"]);
    assert!(script.contains("check"), "{script}");
    assert!(script.contains("completions"), "{script}");
    assert!(script.contains("--config"), "{script}");

    let dir = temp_dir("package-bash");
    let file = dir.join("limpet");
    std::fs::write(&file, &script).unwrap();
    let out = bash(r#"source "$1" && complete -p limpet"#, &file);
    let _ = std::fs::remove_dir_all(&dir);
    let Some(out) = out else {
        eprintln!("SKIPPED: bash not installed");
        return;
    };
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("limpet"),
        "{out:?}"
    );
}

#[test]
fn zsh_and_fish_completions_need_no_configuration_file() {
    let zsh = stdout_of(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef limpet"), "{zsh}");
    assert!(zsh.contains("check"), "{zsh}");
    let fish = stdout_of(&["completions", "fish"]);
    assert!(fish.contains("complete -c limpet"), "{fish}");
    assert!(fish.contains("check"), "{fish}");
}

#[test]
fn completions_for_an_unknown_shell_are_a_usage_error() {
    let out = limpet_in_empty_dir(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tcsh") && err.contains("bash"), "{err}");
}
