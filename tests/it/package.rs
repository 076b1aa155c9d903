//! What the package ships besides the binary, produced by the real binary:
//! shell completions and the man page, generated from the same clap
//! definition that parses the command line.

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

#[test]
fn the_man_page_has_every_command_and_signal_and_renders_without_warnings() {
    let page = stdout_of(&["man"]);
    assert!(page.starts_with(".TH LIMPET 1 "), "{page}");
    for needle in [
        ".SH SYNOPSIS",
        ".SH OPTIONS",
        "\\-\\-config",
        "limpet check",
        "limpet completions",
        "SIGHUP",
        "SIGTERM",
        ".SH \"EXIT STATUS\"",
        "/etc/limpet/lb.yaml",
        env!("CARGO_PKG_VERSION"),
    ] {
        assert!(page.contains(needle), "no {needle:?} in\n{page}");
    }
    // One page: no limpet-check(1) that nobody ships, no hidden command.
    assert!(!page.contains("limpet\\-check("), "{page}");
    assert!(!page.contains("limpet man"), "{page}");

    let dir = temp_dir("package-man");
    let file = dir.join("limpet.1");
    std::fs::write(&file, &page).unwrap();
    let out = Command::new("man")
        .args(["--warnings", "-l"])
        .arg(&file)
        .env("MANWIDTH", "80")
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    let out = match out {
        Ok(out) => out,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            eprintln!("SKIPPED: man not installed");
            return;
        }
        Err(e) => panic!("cannot run man: {e}"),
    };
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("SIGNALS"), "{text}");
}
