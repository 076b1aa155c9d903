//! The command line: `limpet [--config PATH]`, `limpet check`, `limpet
//! --version`, and the signals of a running limpet (SIGHUP reloads,
//! SIGTERM/SIGINT stop gracefully, SIGUSR1 reopens `log.file`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    #[arg(long, short, global = true, default_value = "lb.yaml")]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the configuration and exit: 0 if valid, 1 with the error.
    Check,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
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
    let code = rt.block_on(run(cfg));
    crate::logging::flush();
    code
}

async fn run(cfg: config::Config) -> ExitCode {
    use tokio::signal::unix::{SignalKind, signal};
    let limpet = match Limpet::start(cfg).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("limpet: {e}");
            return ExitCode::from(1);
        }
    };
    // SIGPIPE is ignored (Rust's runtime does so before `main`): a closed
    // pipe is an error on that write, never the end of limpet. Every other
    // signal an operator sends has a meaning below.
    let (Ok(mut hup), Ok(mut term), Ok(mut int), Ok(mut usr1)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::user_defined1()),
    ) else {
        eprintln!("limpet: cannot install signal handlers");
        return ExitCode::from(1);
    };
    loop {
        tokio::select! {
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
    tracing::info!("stopping: no new connections, waiting for in-flight requests");
    limpet.shutdown().await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}
