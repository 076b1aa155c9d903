//! limpet — a sticky-session HTTP load balancer for stateful Java clusters.
//!
//! The data path of one request:
//!
//! ```text
//! listener (accept, limits, timers)                  listener/
//!   └─ proxy::handle                                 proxy/mod.rs
//!        client address (trusted_proxies, XFF)       proxy/client_addr.rs
//!        pool (listener routes)                      proxy/route.rs
//!        Pool::decide → server                       pool/mod.rs
//!        forward, retry a failed connect elsewhere   proxy/forward.rs
//!        response streamed back; access log on end   proxy/body.rs, proxy/completion.rs
//! ```
//!
//! Everything a request reads lives in one immutable [`runtime::Snapshot`]
//! behind an `ArcSwap`; [`Limpet::reload`] swaps in a new one and carries the
//! live state of servers over by name.

pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod health;
pub mod listener;
pub mod logging;
pub mod path;
pub mod pool;
pub mod proxy;
pub mod resources;
pub mod runtime;
pub mod sticky;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use config::Config;
use runtime::{Shared, Snapshot};

/// Why limpet could not start or reload.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr} (listener {name:?}): {source}")]
    Bind {
        name: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("listeners changed ({0}); changing listeners needs a restart")]
    ListenersChanged(String),
}

/// A running limpet: its listeners and the handle to reload or stop it.
pub struct Limpet {
    shared: Arc<Shared>,
    config: Config,
    addrs: Vec<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    checks: health::Checks,
}

impl Limpet {
    /// Binds every listener of `config` and starts serving.
    pub async fn start(config: Config) -> Result<Limpet, StartError> {
        Limpet::start_with(config, HashMap::new()).await
    }

    /// Starts serving, using the given pre-bound sockets (by listener name)
    /// instead of binding those listeners' addresses. Tests bind
    /// `127.0.0.1:0` themselves so no port is ever re-bound.
    pub async fn start_with(
        config: Config,
        mut bound: HashMap<String, std::net::TcpListener>,
    ) -> Result<Limpet, StartError> {
        let snapshot = Snapshot::build(&config, None);
        restore_learned(&snapshot, &config.state_dir);
        let shared = Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
        });
        let (stop, stop_rx) = watch::channel(false);
        let permits = Arc::new(Semaphore::new(config.limits.max_connections));
        let builder = Arc::new(listener::server_builder(&config));
        let mut addrs = Vec::new();
        let mut tasks = Vec::new();
        for (index, lc) in config.listeners.iter().enumerate() {
            let bind_err = |source| StartError::Bind {
                name: lc.name.clone(),
                addr: lc.bind,
                source,
            };
            let std_listener = match bound.remove(&lc.name) {
                Some(l) => {
                    l.set_nonblocking(true).map_err(bind_err)?;
                    l
                }
                None => listener::bind(lc.bind).map_err(bind_err)?,
            };
            let tcp = tokio::net::TcpListener::from_std(std_listener).map_err(bind_err)?;
            let addr = tcp.local_addr().map_err(bind_err)?;
            tracing::info!(listener = %lc.name, %addr, "listening");
            addrs.push(addr);
            tasks.push(tokio::spawn(listener::serve(listener::Serve {
                listener: tcp,
                index,
                shared: Arc::clone(&shared),
                builder: Arc::clone(&builder),
                permits: Arc::clone(&permits),
                stop: stop_rx.clone(),
                grace: config.timeouts.shutdown_grace,
            })));
        }
        let checks = health::Checks::start(&shared.snapshot.load());
        tasks.push(tokio::spawn(persist_periodically(
            Arc::clone(&shared),
            config.state_dir.clone(),
            stop_rx.clone(),
        )));
        Ok(Limpet {
            shared,
            config,
            addrs,
            stop,
            tasks,
            checks,
        })
    }

    /// The bound address of each listener, in configuration order.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The bound address of the listener named `name`.
    pub fn addr(&self, name: &str) -> Option<SocketAddr> {
        let i = self.config.listeners.iter().position(|l| l.name == name)?;
        self.addrs.get(i).copied()
    }

    /// The running snapshot (for inspection by the admin endpoint and tests).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.snapshot.load_full()
    }

    /// Swaps in a new configuration. Pools, servers, routes, timeouts and
    /// limits change at once; live server state is carried over by name.
    /// Listeners (names and binds) cannot change without a restart.
    pub fn reload(&mut self, config: Config) -> Result<(), StartError> {
        let old: Vec<(&str, SocketAddr)> = self
            .config
            .listeners
            .iter()
            .map(|l| (l.name.as_str(), l.bind))
            .collect();
        let new: Vec<(&str, SocketAddr)> = config
            .listeners
            .iter()
            .map(|l| (l.name.as_str(), l.bind))
            .collect();
        if old != new {
            return Err(StartError::ListenersChanged(format!(
                "{old:?} became {new:?}"
            )));
        }
        let previous = self.shared.snapshot.load_full();
        self.shared
            .snapshot
            .store(Arc::new(Snapshot::build(&config, Some(&previous))));
        self.config = config;
        Ok(())
    }

    /// Stops accepting, lets in-flight requests finish within
    /// `timeouts.shutdown_grace`, and returns.
    pub async fn shutdown(mut self) {
        self.checks.stop();
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        persist_learned(&self.shared.snapshot.load(), &self.config.state_dir);
    }

    /// Writes the learned tables of pools with `persist: true` now.
    pub fn persist(&self) {
        persist_learned(&self.shared.snapshot.load(), &self.config.state_dir);
    }
}

/// How often learned tables are written to `state_dir`.
pub const PERSIST_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

fn restore_learned(snapshot: &Snapshot, dir: &std::path::Path) {
    for pool in snapshot.pools.iter().filter(|p| p.persist) {
        let Some(table) = pool.sticky.learned() else {
            continue;
        };
        match sticky::persist::load(dir, &pool.name, table) {
            Ok(0) => {}
            Ok(n) => tracing::info!(pool = %pool.name, sessions = n, "learned sessions restored"),
            Err(e) => tracing::warn!(pool = %pool.name, "{e}"),
        }
    }
}

fn persist_learned(snapshot: &Snapshot, dir: &std::path::Path) {
    for pool in snapshot.pools.iter().filter(|p| p.persist) {
        let Some(table) = pool.sticky.learned() else {
            continue;
        };
        match sticky::persist::save(dir, &pool.name, table) {
            Ok(n) => tracing::debug!(pool = %pool.name, sessions = n, "learned sessions saved"),
            Err(e) => tracing::error!(pool = %pool.name, "{e}"),
        }
    }
}

async fn persist_periodically(
    shared: Arc<Shared>,
    dir: std::path::PathBuf,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(PERSIST_EVERY) => {}
            _ = stop.changed() => return,
        }
        let snapshot = shared.snapshot.load_full();
        let dir = dir.clone();
        // File writes and fsync block: keep them off the runtime's workers.
        let _ = tokio::task::spawn_blocking(move || persist_learned(&snapshot, &dir)).await;
    }
}
