//! `limpet man`: the man page, limpet(1). The synopsis, options and commands
//! come from the clap definition that parses the command line; the sections
//! an operator looks for in a man page (signals, exit status, files) are
//! written here. The package build runs it and ships the output as limpet.1.

use std::io::{self, Write};

use clap::CommandFactory;
use clap_mangen::Man;
use clap_mangen::roff::{Inline, Roff, bold, italic, roman};

use super::Cli;

/// Writes the whole page, in roff, to `out`.
pub(super) fn write(out: &mut dyn Write) -> io::Result<()> {
    let cmd = Cli::command();
    let man = Man::new(cmd.clone());
    // By hand: clap_mangen leaves the empty date argument unquoted, which
    // shifts the source and manual names into the wrong fields of `.TH`.
    let version = env!("CARGO_PKG_VERSION");
    writeln!(
        out,
        ".TH LIMPET 1 \"\" \"limpet {version}\" \"User Commands\""
    )?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    prose(out, "DESCRIPTION", DESCRIPTION)?;
    man.render_options_section(out)?;
    commands(out, &cmd)?;
    prose(out, "SIGNALS", SIGNALS)?;
    prose(out, "EXIT STATUS", EXIT_STATUS)?;
    prose(out, "ENVIRONMENT", ENVIRONMENT)?;
    prose(out, "FILES", FILES)?;
    prose(out, "SEE ALSO", SEE_ALSO)?;
    man.render_version_section(out)
}

/// The subcommands on this one page (clap_mangen would point to a
/// limpet-check(1) page per subcommand, which nobody ships).
fn commands(out: &mut dyn Write, cmd: &clap::Command) -> io::Result<()> {
    let mut roff = Roff::new();
    roff.control("SH", ["COMMANDS"]);
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        let mut usage = vec![bold(format!("limpet {}", sub.get_name()))];
        let mut values = Vec::new();
        for arg in sub.get_positionals() {
            let name = arg.get_id().as_str().to_uppercase();
            usage.extend([roman(" "), italic(name.as_str())]);
            let possible: Vec<String> = arg
                .get_possible_values()
                .iter()
                .filter(|v| !v.is_hide_set())
                .map(|v| v.get_name().to_owned())
                .collect();
            if !possible.is_empty() {
                values.push(format!("{name}: {}.", possible.join(", ")));
            }
        }
        roff.control("TP", []).text(usage);
        let about = sub.get_long_about().or_else(|| sub.get_about());
        let about = about.map(ToString::to_string).unwrap_or_default();
        roff.text([roman(about)]);
        for line in values {
            roff.control("br", []).text([roman(line)]);
        }
    }
    roff.to_writer(out)
}

/// A section of paragraphs separated by blank lines; a paragraph whose
/// first line is `TAG\t…` is a tagged paragraph (a term and its meaning).
fn prose(out: &mut dyn Write, title: &str, text: &str) -> io::Result<()> {
    let mut roff = Roff::new();
    roff.control("SH", [title]);
    for paragraph in text.split("\n\n") {
        let paragraph = paragraph.trim().replace('\n', " ");
        match paragraph.split_once('\t') {
            Some((term, meaning)) => {
                roff.control("TP", []).text(styled(term));
                roff.text(styled(meaning));
            }
            None => {
                roff.control("PP", []).text(styled(&paragraph));
            }
        }
    }
    roff.to_writer(out)
}

/// `` `bold` `` and `<italic>` spans in otherwise roman text.
fn styled(text: &str) -> Vec<Inline> {
    let mut inlines = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(['`', '<']) {
        let close = if rest[start..].starts_with('`') {
            '`'
        } else {
            '>'
        };
        let Some(len) = rest[start + 1..].find(close) else {
            break;
        };
        if start > 0 {
            inlines.push(roman(&rest[..start]));
        }
        let span = &rest[start + 1..start + 1 + len];
        inlines.push(if close == '`' {
            bold(span)
        } else {
            italic(span)
        });
        rest = &rest[start + 2 + len..];
    }
    if !rest.is_empty() {
        inlines.push(roman(rest));
    }
    inlines
}

const DESCRIPTION: &str = "
limpet is a sticky-session HTTP load balancer for stateful Java web
applications (Tomcat, Jetty, WildFly) that keep a user's session in the
memory of one server. It sends every request of a session to the server that
holds it: by client address (ip_hash), by its own cookie (cookie), by
Tomcat's jvmRoute suffix (jvm_route) or by a table learned from the servers'
Set-Cookie (learn). When that server dies, the session moves to one
deterministic replacement.

With no command, limpet reads its configuration file (`--config`, by
default <lb.yaml> in the working directory), binds its listeners and serves
until it is stopped. A file that is not valid is refused with an error that
names the file, line and column, and limpet exits 1.
";

const SIGNALS: &str = "
`SIGHUP`\tReload the configuration file. A file that is not valid is
rejected and logged, and the running configuration stays; a valid one is
applied entirely, keeping learned sessions, server health and counters.

`SIGTERM`, `SIGINT`\tStop accepting connections, let in-flight requests
finish within <timeouts.shutdown_grace>, write the learned session tables to
<state_dir>, and exit 0.

`SIGUSR1`\tOpen <log.file> again by its name (logrotate). Ignored without
<log.file>.

`SIGUSR2`\tUpgrade in place: start the binary now at limpet's path with the
same arguments, hand it the listening sockets, learned sessions, bindings,
server health and run-time states, and once it serves, finish the in-flight
requests and exit 0. If the new process cannot start, this one keeps serving
and logs why. A second `SIGUSR2` during an upgrade is ignored.

`SIGPIPE`\tIgnored.
";

const EXIT_STATUS: &str = "
`0`\tStopped by a signal after a clean shutdown; `check` found the file
valid; `completions` printed its script; `import` carried everything over.

`1`\tThe configuration file is not valid or cannot be read (the error names
file:line:column), limpet could not start (a listener address cannot be
bound), `import` could not read or parse its file, or the output could not
be written.

`2`\tThe command line is wrong; or `import` printed a valid lb.yaml but
could not carry everything over (each loss is a `# import:` comment in it
and a line on stderr).
";

const ENVIRONMENT: &str = "
`RUST_LOG`\tOverrides <log.level> of the configuration file, with the
syntax of tracing-subscriber's EnvFilter (for example <limpet=debug>).

`NOTIFY_SOCKET`\tSet by systemd (`Type=notify`): limpet reports `READY=1`
there once it serves, and after an upgrade the new process reports its
`MAINPID`.

`LIMPET_HTTP1`\t<limpet> or <hyper>: the HTTP/1 engine when lb.yaml has no
<http1> key (the file's key wins). <hyper> falls back to the previous
engine for one release.

`LIMPET_UPGRADE_SOCKET`\tSet by limpet itself for the process an upgrade
starts; never set it by hand.
";

const FILES: &str = "
</etc/limpet/lb.yaml>\tThe configuration of the packaged service,
limpet.service. Check it with `limpet check --config /etc/limpet/lb.yaml`
before `systemctl reload limpet`.

</var/lib/limpet>\tThe packaged service's working and state directory
(<state_dir>): learned session tables persist here across restarts. The
only place the service may write to.

</usr/share/doc/limpet>\tThe full documentation: README.md and, in docs/,
configuration.md (every key of lb.yaml, its default and range),
operations.md, admin-api.md, metrics.md, security.md, tls.md and
high-availability.md.
";

const SEE_ALSO: &str = "
`systemctl`(1), `journalctl`(1), `systemd.service`(5)
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn styled_marks_bold_and_italic_spans_and_leaves_the_rest_roman() {
        assert_eq!(
            styled("see `check` in <lb.yaml> now"),
            [
                roman("see "),
                bold("check"),
                roman(" in "),
                italic("lb.yaml"),
                roman(" now")
            ]
        );
        assert_eq!(styled("`check`"), [bold("check")]);
        // Underscores are text, and so is an unmatched mark.
        assert_eq!(styled("ip_hash <x"), [roman("ip_hash <x")]);
    }
}
