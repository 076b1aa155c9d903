//! What the package ships besides the binary, produced by the real binary:
//! shell completions and the man page, generated from the same clap
//! definition that parses the command line; the default configuration.
//!
//! The Debian package itself is checked when `LIMPET_DEB` names it
//! (`.ci/run` builds it with `pkg/build-deb` and sets it): unpacked into a
//! scratch root, its limpet runs and accepts its `/etc/limpet/lb.yaml`,
//! its unit passes `systemd-analyze verify`, its sysusers.d and tmpfiles.d
//! files create the user and the state directory in that root.
//!
//! A check whose tool (bash, man, systemd-analyze, systemd-sysusers) is not
//! installed is skipped, unless `LIMPET_REQUIRE_PACKAGE_TOOLS` is set (then
//! it fails).

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

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

/// Runs `cmd` and returns its output; None when its program is not
/// installed.
fn run(cmd: &mut Command) -> Option<Output> {
    match cmd.output() {
        Ok(out) => Some(out),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => panic!("cannot run {cmd:?}: {e}"),
    }
}

/// Runs `cmd` and asserts it succeeds with nothing on stderr; None when its
/// program is not installed.
fn run_clean(cmd: &mut Command) -> Option<Output> {
    let out = run(cmd)?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?}: {out:?}");
    assert!(err.trim().is_empty(), "{cmd:?}:\n{err}");
    Some(out)
}

/// Says that a check is skipped because `tool` is not installed; fails
/// instead when `LIMPET_REQUIRE_PACKAGE_TOOLS` is set.
fn skip_without(tool: &str) {
    if std::env::var_os("LIMPET_REQUIRE_PACKAGE_TOOLS").is_some() {
        panic!("{tool} not installed, and LIMPET_REQUIRE_PACKAGE_TOOLS is set");
    }
    eprintln!("SKIPPED: {tool} not installed");
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
    let out = run_clean(
        Command::new("bash")
            .args(["-c", r#"source "$1" && complete -p limpet"#, "bash"])
            .arg(&file),
    );
    let _ = std::fs::remove_dir_all(&dir);
    let Some(out) = out else {
        skip_without("bash");
        return;
    };
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
    let out = run_clean(Command::new("man").args(["--warnings", "-l"]).arg(&file));
    let _ = std::fs::remove_dir_all(&dir);
    let Some(out) = out else {
        skip_without("man");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("SIGNALS"), "{text}");
}

#[test]
fn the_packaged_default_configuration_passes_limpet_check_without_a_warning() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("pkg/debian/lb.yaml");
    let out = limpet_in_empty_dir(&["check", "--config", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
}

/// The package named by `LIMPET_DEB`, unpacked once per run into the
/// target's temporary directory: (root, control directory). None when
/// `LIMPET_DEB` is not set.
fn unpacked() -> Option<&'static (PathBuf, PathBuf)> {
    static UNPACKED: OnceLock<Option<(PathBuf, PathBuf)>> = OnceLock::new();
    UNPACKED
        .get_or_init(|| {
            let deb = PathBuf::from(std::env::var_os("LIMPET_DEB")?);
            assert!(deb.is_file(), "LIMPET_DEB={} is not a file", deb.display());
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("deb");
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let (root, control) = (dir.join("root"), dir.join("control"));
            for (what, into) in [("-x", &root), ("-e", &control)] {
                run_clean(Command::new("dpkg-deb").arg(what).arg(&deb).arg(into))
                    .expect("dpkg-deb is needed to check LIMPET_DEB");
            }
            Some((root, control))
        })
        .as_ref()
}

macro_rules! unpacked_or_skip {
    () => {
        match unpacked() {
            Some(dirs) => dirs,
            None => {
                eprintln!("SKIPPED: LIMPET_DEB not set (pkg/build-deb builds the package)");
                return;
            }
        }
    };
}

#[test]
fn the_package_installs_limpet_its_config_man_page_and_completions() {
    let (root, control) = unpacked_or_skip!();
    for file in [
        "usr/bin/limpet",
        "etc/limpet/lb.yaml",
        "usr/lib/systemd/system/limpet.service",
        "usr/lib/sysusers.d/limpet.conf",
        "usr/lib/tmpfiles.d/limpet.conf",
        "usr/share/man/man1/limpet.1.gz",
        "usr/share/bash-completion/completions/limpet",
        "usr/share/zsh/vendor-completions/_limpet",
        "usr/share/fish/vendor_completions.d/limpet.fish",
        "usr/share/doc/limpet/copyright",
        "usr/share/doc/limpet/README.md",
        "usr/share/doc/limpet/docs/configuration.md",
    ] {
        assert!(root.join(file).is_file(), "the package has no /{file}");
    }

    let limpet = root.join("usr/bin/limpet");
    let out = run_clean(Command::new(&limpet).arg("--version")).unwrap();
    let version = format!("limpet {}\n", env!("CARGO_PKG_VERSION"));
    assert_eq!(String::from_utf8_lossy(&out.stdout), version);
    let config = root.join("etc/limpet/lb.yaml");
    run_clean(
        Command::new(&limpet)
            .args(["check", "--config"])
            .arg(config),
    );
    let conffiles = std::fs::read_to_string(control.join("conffiles")).unwrap();
    assert_eq!(conffiles.trim(), "/etc/limpet/lb.yaml");

    // The shipped completions are what this limpet prints: the package is
    // not stale.
    for (shell, file) in [
        ("bash", "usr/share/bash-completion/completions/limpet"),
        ("zsh", "usr/share/zsh/vendor-completions/_limpet"),
        ("fish", "usr/share/fish/vendor_completions.d/limpet.fish"),
    ] {
        let shipped = std::fs::read_to_string(root.join(file)).unwrap();
        assert_eq!(shipped, stdout_of(&["completions", shell]), "{file}");
    }
    let page = root.join("usr/share/man/man1/limpet.1.gz");
    let out = run_clean(Command::new("gzip").arg("-dc").arg(page)).expect("gzip");
    assert_eq!(String::from_utf8(out.stdout).unwrap(), stdout_of(&["man"]));
}

#[test]
fn the_packaged_unit_is_the_example_unit_with_usr_bin_and_passes_systemd_analyze() {
    let (root, _) = unpacked_or_skip!();
    let unit = std::fs::read_to_string(root.join("usr/lib/systemd/system/limpet.service")).unwrap();
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/systemd/limpet.service"),
    )
    .unwrap();
    let expected: String = example
        .lines()
        .map(|l| {
            let l = if l.starts_with("Exec") {
                l.replace("/usr/local/bin/limpet", "/usr/bin/limpet")
            } else {
                l.to_owned()
            };
            l + "\n"
        })
        .collect();
    assert_eq!(unit, expected);
    for exec in [
        "ExecStartPre=/usr/bin/limpet check --config /etc/limpet/lb.yaml",
        "ExecStart=/usr/bin/limpet --config /etc/limpet/lb.yaml",
    ] {
        assert!(unit.lines().any(|l| l == exec), "no {exec} in\n{unit}");
    }

    // systemd-analyze wants the binary where the unit says: verify a copy
    // that points into the scratch root (a --root would need all of systemd
    // in there too).
    let dir = temp_dir("deb-unit");
    let copy = dir.join("limpet.service");
    let limpet = root.join("usr/bin/limpet");
    std::fs::write(
        &copy,
        unit.replace("/usr/bin/limpet", limpet.to_str().unwrap()),
    )
    .unwrap();
    let verified = run_clean(Command::new("systemd-analyze").arg("verify").arg(&copy));
    let _ = std::fs::remove_dir_all(&dir);
    if verified.is_none() {
        skip_without("systemd-analyze");
    }
}

#[test]
fn the_package_creates_the_limpet_user_and_its_state_directory() {
    let (root, control) = unpacked_or_skip!();
    // The maintainer scripts are valid sh; postinst runs the sysusers.d and
    // tmpfiles.d files, postrm removes the state on purge only.
    for script in ["postinst", "prerm", "postrm"] {
        run_clean(Command::new("sh").arg("-n").arg(control.join(script))).expect("sh");
    }
    let postinst = std::fs::read_to_string(control.join("postinst")).unwrap();
    assert!(postinst.contains("systemd-sysusers"), "{postinst}");
    assert!(postinst.contains("limpet.conf"), "{postinst}");
    assert!(!postinst.contains("#DEBHELPER#"), "{postinst}");
    // A package upgrade upgrades a running limpet in place, never restarts it.
    assert!(postinst.contains("--signal=USR2"), "{postinst}");
    assert!(!postinst.contains("try-restart"), "{postinst}");
    let prerm = std::fs::read_to_string(control.join("prerm")).unwrap_or_default();
    assert!(
        !prerm.contains("upgrade"),
        "stopped on remove only: {prerm}"
    );
    let postrm = std::fs::read_to_string(control.join("postrm")).unwrap();
    assert!(postrm.contains("purge"), "{postrm}");

    // What postinst does, done in the scratch root.
    let root_arg = format!("--root={}", root.display());
    let sysusers = root.join("usr/lib/sysusers.d/limpet.conf");
    // It says what it creates on stderr.
    let Some(out) = run(Command::new("systemd-sysusers")
        .arg(&root_arg)
        .arg(sysusers))
    else {
        skip_without("systemd-sysusers");
        return;
    };
    assert!(out.status.success(), "{out:?}");
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    let user: Vec<&str> = passwd
        .lines()
        .find(|l| l.starts_with("limpet:"))
        .unwrap_or_else(|| panic!("no limpet in\n{passwd}"))
        .split(':')
        .collect();
    assert_eq!(
        user[5..],
        ["/var/lib/limpet", "/usr/sbin/nologin"],
        "{user:?}"
    );
    let uid: u32 = user[2].parse().unwrap();
    assert!(uid < 1000, "a system user: {user:?}");

    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED: the state directory's owner (needs root)");
        return;
    }
    let tmpfiles = root.join("usr/lib/tmpfiles.d/limpet.conf");
    run_clean(
        Command::new("systemd-tmpfiles")
            .args(["--create", &root_arg])
            .arg(tmpfiles),
    )
    .expect("systemd-tmpfiles comes with systemd-sysusers");
    use std::os::unix::fs::MetadataExt;
    let state = std::fs::metadata(root.join("var/lib/limpet")).unwrap();
    assert!(state.is_dir());
    assert_eq!(state.uid(), uid);
    assert_eq!(state.mode() & 0o777, 0o750);
}
