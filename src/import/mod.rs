//! `limpet import`: another balancer's configuration translated into
//! `lb.yaml`, so that moving to limpet logs nobody out. One module per
//! source format (`haproxy.rs`, `nginx.rs`, `apache.rs`, `mod_jk.rs`), each
//! reading its own grammar (with `FILE:LINE` for every directive; nginx and
//! httpd into one [`directive::Directive`]) into the one [`model::Lb`]; one
//! writer ([`write`]) prints it with a `# import:` comment for everything
//! not carried over.
//!
//! Exit codes: 0 everything carried over; 2 a valid `lb.yaml` was printed,
//! but something was not carried over (listed on stderr too), or a file it
//! names (a certificate) is not on this machine to check; 1 the input
//! cannot be read or parsed (`FILE:LINE: why` on stderr, nothing on stdout).

pub mod apache;
pub mod directive;
pub mod haproxy;
pub mod mod_jk;
pub mod model;
pub mod nginx;
pub mod write;

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use model::{ImportError, Lb};

/// The formats `limpet import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Haproxy,
    Nginx,
    Apache,
    #[value(name = "mod_jk")]
    ModJk,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Haproxy => "HAProxy",
            Format::Nginx => "nginx",
            Format::Apache => "Apache httpd",
            Format::ModJk => "mod_jk",
        }
    }
}

/// What every format needs besides its file.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// The Tomcat HTTP connector's port, for servers the source reaches
    /// over AJP (mod_jk, `ajp://` balancer members): limpet speaks HTTP.
    pub http_port: Option<u16>,
}

/// Reads `file` as `format` into the model.
pub fn import(file: &Path, format: Format, options: &Options) -> Result<Lb, ImportError> {
    match format {
        Format::Haproxy => haproxy::import(file, options),
        Format::Nginx => nginx::import(file, options),
        Format::Apache => apache::import(file, options),
        Format::ModJk => mod_jk::import(file, options),
    }
}

/// Guesses the format from the file's name, then from its content.
pub fn detect(file: &Path, text: &str) -> Option<Format> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if name.contains("haproxy") {
        return Some(Format::Haproxy);
    }
    if name.contains("workers") && name.ends_with(".properties") {
        return Some(Format::ModJk);
    }
    if name.contains("nginx") {
        return Some(Format::Nginx);
    }
    if name.contains("httpd") || name.contains("apache") {
        return Some(Format::Apache);
    }
    let lines = || {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
    };
    if lines().any(|l| l.starts_with("worker.")) {
        return Some(Format::ModJk);
    }
    if lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("<proxy") || l.starts_with("<virtualhost") || l.starts_with("proxypass")
    }) {
        return Some(Format::Apache);
    }
    if lines()
        .any(|l| l.starts_with("upstream ") || l.starts_with("http {") || l.starts_with("http{"))
    {
        return Some(Format::Nginx);
    }
    if lines().any(|l| {
        ["frontend ", "backend ", "listen ", "defaults"]
            .iter()
            .any(|k| l.starts_with(k))
    }) {
        return Some(Format::Haproxy);
    }
    None
}

/// `limpet import`: prints `lb.yaml` on stdout, the notes on stderr.
pub fn run(file: &Path, from: Option<Format>, options: &Options) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("limpet: {}:0: cannot read it: {e}", file.display());
            return ExitCode::from(1);
        }
    };
    let Some(format) = from.or_else(|| detect(file, &text)) else {
        eprintln!(
            "limpet: {}:0: not a configuration limpet recognizes; name it with --from haproxy|nginx|apache|mod_jk",
            file.display()
        );
        return ExitCode::from(1);
    };
    let lb = match import(file, format, options) {
        Ok(lb) => lb,
        Err(e) => {
            eprintln!("limpet: {e}");
            return ExitCode::from(1);
        }
    };
    let text = write::yaml(&lb, &file.display().to_string(), format.name());
    // What is printed must load: a translation limpet itself refuses is a
    // bug here, said as such rather than printed. A file it names that this
    // machine lacks (a certificate, when importing away from the old
    // balancer's host) is not: `limpet check` reads it where limpet runs.
    // The environment's LIMPET_HTTP1 is no part of the translation.
    let mut unverified = false;
    match crate::config::parse_with_env(&text, Path::new("lb.yaml"), None) {
        Ok(_) => {}
        Err(crate::config::ConfigError::Invalid { message, .. })
            if message.starts_with("cannot read the ") =>
        {
            eprintln!(
                "limpet: import: the output names a file this machine does not have: {message} Run `limpet check` where limpet will run."
            );
            unverified = true;
        }
        Err(e) => {
            eprintln!(
                "limpet: {}:0: the translation is not a valid lb.yaml ({e}); please report this with the file",
                file.display()
            );
            return ExitCode::from(1);
        }
    }
    let mut out = std::io::stdout().lock();
    if out
        .write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        return ExitCode::from(1);
    }
    for n in &lb.notes {
        eprintln!("limpet: import: {}", n.text());
    }
    if lb.notes.is_empty() && !unverified {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_is_guessed_from_the_name_then_the_content() {
        let p = Path::new;
        assert_eq!(
            detect(p("/etc/haproxy/haproxy.cfg"), ""),
            Some(Format::Haproxy)
        );
        assert_eq!(detect(p("/etc/nginx/nginx.conf"), ""), Some(Format::Nginx));
        assert_eq!(
            detect(p("/etc/httpd/conf/httpd.conf"), ""),
            Some(Format::Apache)
        );
        assert_eq!(
            detect(p("conf/workers.properties"), ""),
            Some(Format::ModJk)
        );
        assert_eq!(
            detect(
                p("lb.cfg"),
                "global\n  maxconn 100\ndefaults\n  mode http\n"
            ),
            Some(Format::Haproxy)
        );
        assert_eq!(
            detect(p("site.conf"), "upstream app {\n server 10.0.0.1;\n}\n"),
            Some(Format::Nginx)
        );
        assert_eq!(
            detect(p("site.conf"), "<Proxy \"balancer://app\">\n</Proxy>\n"),
            Some(Format::Apache)
        );
        assert_eq!(
            detect(p("x.txt"), "# workers\nworker.list=lb\n"),
            Some(Format::ModJk)
        );
        assert_eq!(detect(p("x.txt"), "hello\n"), None);
    }
}
