//! The command line: `limpet [--config PATH]`, `limpet check`, `limpet
//! --version`, `limpet completions SHELL`, and the signals of a running
//! limpet (SIGHUP reloads, SIGTERM/SIGINT stop gracefully, SIGUSR1 reopens
//! `log.file`, SIGUSR2 upgrades in place).

mod completions;
mod man;

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use clap_complete::Shell;

use crate::Limpet;
use crate::config;

#[derive(Debug, Parser)]
#[command(
    name = "limpet",
    version,
    about = "A sticky-session HTTP load balancer"
)]
pub struct Cli {
    /// Path of the configuration file.
    #[arg(
        long,
        short,
        global = true,
        default_value = "lb.yaml",
        value_name = "PATH"
    )]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the configuration and exit: 0 if valid, 1 with the error.
    Check,
    /// Print the completion script for SHELL on stdout.
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the man page (roff) on stdout: what the package ships as limpet.1.
    #[command(hide = true)]
    Man,
    /// Translate an HAProxy, nginx, Apache or mod_jk configuration into
    /// lb.yaml on stdout; what is not carried over is listed on stderr
    /// (exit 2); an unreadable file is exit 1.
    Import {
        /// The source's format (default: guessed from the file's name and content).
        #[arg(long, value_enum)]
        from: Option<crate::import::Format>,
        /// The Tomcat HTTP connector's port, for servers the source reaches over AJP.
        #[arg(long, value_name = "PORT")]
        http_port: Option<u16>,
        /// The configuration file to translate.
        file: PathBuf,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // These print what the package ships; they read no configuration.
    match &cli.command {
        Some(Command::Completions { shell }) => {
            return print(|out| out.write_all(&completions::render(*shell)));
        }
        Some(Command::Man) => return print(man::write),
        Some(Command::Import {
            from,
            http_port,
            file,
        }) => {
            let options = crate::import::Options {
                http_port: *http_port,
            };
            return crate::import::run(file, *from, &options);
        }
        Some(Command::Check) | None => {}
    }
    let cfg = match config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("limpet: {e}");
            return ExitCode::from(1);
        }
    };
    if let Some(Command::Check) = cli.command {
        for w in &cfg.warnings {
            eprintln!("limpet: warning: {}: {w}", cli.config.display());
        }
        println!("{}: configuration is valid", cli.config.display());
        return ExitCode::SUCCESS;
    }
    // The binary's own path, read now: once a package manager has renamed a
    // new file over it, /proc/self/exe names the deleted old one.
    let exe = std::env::current_exe().ok();
    // Started by a running limpet (SIGUSR2): take its sockets and memory.
    let inherited = match std::env::var_os(crate::upgrade::ENV) {
        Some(name) => match crate::upgrade::take_over(&name, &cfg) {
            Ok(i) => Some(i),
            Err(e) => {
                eprintln!("limpet: cannot take over from the running process: {e}");
                return ExitCode::from(1);
            }
        },
        None => None,
    };
    if let Err(e) = crate::logging::init(&cfg.log) {
        eprintln!(
            "limpet: cannot open the log file {:?}: {e}",
            cfg.log.file.as_deref().unwrap_or(std::path::Path::new(""))
        );
        return ExitCode::from(1);
    }
    crate::resources::raise_nofile(cfg.limits.max_connections);
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = cfg.workers {
        rt.worker_threads(n);
    }
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("limpet: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = rt.block_on(run(cfg, exe, inherited));
    crate::logging::flush();
    code
}

/// Runs `write` on stdout; a closed pipe or a full disk is exit 1, not a panic.
fn print(write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> ExitCode {
    let mut out = io::stdout().lock();
    match write(&mut out).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("limpet: cannot write to stdout: {e}");
            ExitCode::from(1)
        }
    }
}

/// An in-place upgrade under way: the new process starting.
type Upgrading<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<u32, crate::upgrade::UpgradeError>> + 'a>,
>;

async fn run(
    cfg: config::Config,
    exe: Option<std::path::PathBuf>,
    inherited: Option<crate::upgrade::Inherited>,
) -> ExitCode {
    use tokio::signal::unix::{SignalKind, signal};
    // SIGPIPE is ignored (Rust's runtime does so before `main`): a closed
    // pipe is an error on that write, never the end of limpet. Every other
    // signal an operator sends has a meaning below. The handlers are in place
    // before the listeners and READY=1: a signal sent as soon as limpet
    // serves (a SIGHUP from a unit's ExecReload, a test's SIGTERM) is never
    // met by the default action, which would kill it.
    let (Ok(mut hup), Ok(mut term), Ok(mut int), Ok(mut usr1), Ok(mut usr2)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::user_defined1()),
        signal(SignalKind::user_defined2()),
    ) else {
        eprintln!("limpet: cannot install signal handlers");
        return ExitCode::from(1);
    };
    let started = match inherited {
        Some(mut i) => {
            let bound = std::mem::take(&mut i.bound);
            let memory = std::mem::take(&mut i.memory);
            match Limpet::start_upgraded(cfg, bound, &memory).await {
                Ok(l) => {
                    i.ready();
                    tracing::info!(
                        "upgrade: serving; the previous process finishes its requests and exits"
                    );
                    Ok(l)
                }
                Err(e) => {
                    i.failed(&e.to_string());
                    Err(e)
                }
            }
        }
        None => Limpet::start(cfg)
            .await
            .inspect(|_| crate::systemd::notify("READY=1")),
    };
    let limpet = match started {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("limpet: {e}");
            return ExitCode::from(1);
        }
    };
    // An upgrade under way (SIGUSR2): the new process being started.
    let mut upgrade: Option<Upgrading<'_>> = None;
    loop {
        tokio::select! {
            _ = usr2.recv() => {
                match (&upgrade, &exe) {
                    (Some(_), _) => tracing::warn!("SIGUSR2 ignored: an upgrade is already under way"),
                    (None, None) => tracing::error!("upgrade impossible: limpet could not find its own binary at start"),
                    (None, Some(path)) => upgrade = Some(Box::pin(crate::upgrade::hand_over(&limpet, path))),
                }
            }
            done = async {
                match upgrade.as_mut() {
                    Some(f) => f.await,
                    None => std::future::pending().await,
                }
            }, if upgrade.is_some() => {
                upgrade = None;
                match done {
                    Ok(pid) => {
                        tracing::info!(pid, "upgrade: the new process serves; this one stops accepting and finishes its requests");
                        break;
                    }
                    Err(e) => tracing::error!("upgrade failed: {e}; this process keeps serving"),
                }
            }
            // The outcome is logged and counted by the reload itself.
            _ = hup.recv() => { let _ = limpet.reload_file().await; }
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = usr1.recv() => {
                if crate::logging::reopen() {
                    tracing::info!("SIGUSR1: reopening the log file");
                } else {
                    tracing::debug!("SIGUSR1 ignored: no log.file to reopen");
                }
            }
        }
    }
    // A SIGTERM during an upgrade ends it here; a new process that took
    // over already serves on.
    drop(upgrade);
    tracing::info!("stopping: no new connections, waiting for in-flight requests");
    limpet.shutdown().await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}
