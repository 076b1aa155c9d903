//! The running instance behind a [`crate::Limpet`] handle: the bound
//! sockets, the admin endpoint, the health-check loops, the connection
//! limit, and the one function that applies a configuration — at start and
//! on every reload (SIGHUP or `POST /api/reload`). Applying is all or
//! nothing: new sockets are bound first, and if one cannot be, the running
//! configuration stays untouched.
//!
//! What a reload changes: pools, servers, routes, timeouts, limits
//! (`max_connections` included), `state_dir`, the log level and format,
//! health-check loops (restarted for added or changed servers, stopped for
//! removed ones), and listeners (added ones are bound; removed ones stop
//! accepting and close after their in-flight requests; unchanged ones keep
//! their sockets, so no connection is ever refused). What it keeps: learned
//! tables, jvm_route bindings, health, run-time states and counters of
//! everything that still exists.
//!
//! A listener has one socket per worker, bound with SO_REUSEPORT, and
//! they are never closed while it lives (`listener/sockets.rs` says why
//! and how): a reload keeps every socket of the listeners it keeps, also
//! when `workers` changes (that applies at the next upgrade); a removed
//! listener's accept loops take what is queued in its sockets before they
//! close them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

use crate::config::{self, Config};
use crate::memory::PoolMemory;
use crate::runtime::{Bound, Shared, Snapshot};
use crate::worker::{self, Workers};
use crate::{admin, health, listener, logging};

mod learned;
mod servers;
pub use learned::{PERSIST_EVERY, persist_learned};
use learned::{persist_periodically, restore_learned};

/// Why a configuration could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("cannot listen on {addr} (listener {name:?}): {source}")]
    Bind {
        name: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    #[error("cannot start the workers: {0}")]
    Workers(std::io::Error),
}

/// The name under which tests hand over a pre-bound admin socket.
pub const ADMIN_SOCKET: &str = "@admin";

/// Pre-bound sockets by listener name ([`ADMIN_SOCKET`] for the admin
/// endpoint): one a name from tests, a listener's group from an upgrade.
pub type Sockets = HashMap<String, Vec<std::net::TcpListener>>;

/// A listener's sockets, which the workers accept on.
#[derive(Debug)]
struct Accepting {
    id: u64,
    name: String,
    bind: SocketAddr,
    addr: SocketAddr,
    /// Cancelled to stop accepting (and when this is dropped).
    stop: DropGuard,
    /// Every worker's accept loop on these sockets, until its connections
    /// are closed.
    done: TaskTracker,
    /// Copies of the sockets, to hand to a new process (upgrade).
    sockets: Vec<std::net::TcpListener>,
}

/// The admin endpoint, served on the control runtime.
#[derive(Debug)]
struct Admin {
    bind: SocketAddr,
    addr: SocketAddr,
    /// Cancelled to stop serving (and when this is dropped).
    stop: DropGuard,
    task: JoinHandle<()>,
    /// A copy of the socket, to hand to a new process (upgrade).
    socket: std::net::TcpListener,
}

#[derive(Debug)]
struct State {
    config: Option<Config>,
    listeners: Vec<Accepting>,
    admin: Option<Admin>,
    checks: health::Checks,
    permits: Arc<Semaphore>,
    permits_total: usize,
    next_id: u64,
    workers: Option<Workers>,
    /// Servers added through the admin API, by pool.
    api: servers::ApiServers,
    /// What DNS said last (host names, `discover`).
    found: crate::discovery::Found,
    /// What the discovery task resolves.
    targets: tokio::sync::watch::Sender<Arc<crate::discovery::Targets>>,
}

/// The running instance.
#[derive(Debug)]
pub struct Control {
    pub shared: Arc<Shared>,
    state: Mutex<State>,
    /// Stops the periodic save of the learned tables (also when dropped).
    stop: DropGuard,
    persist: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Control {
    /// Starts serving `config`; `bound` are pre-bound sockets by listener
    /// name (tests bind `127.0.0.1:0` themselves; [`ADMIN_SOCKET`] for the
    /// admin endpoint).
    pub async fn start(
        config: Config,
        bound: Sockets,
        memory: &[PoolMemory],
    ) -> Result<Arc<Control>, ApplyError> {
        let empty = Snapshot::detached(&Config {
            listeners: Vec::new(),
            pools: Vec::new(),
            admin: None,
            ..config.clone()
        });
        let shared = Arc::new(Shared::new(empty));
        let workers = Workers::start(config.workers.unwrap_or_else(worker::auto), &shared)
            .map_err(ApplyError::Workers)?;
        let control = Arc::new(Control {
            shared,
            state: Mutex::new(State {
                config: None,
                listeners: Vec::new(),
                admin: None,
                checks: health::Checks::default(),
                permits: Arc::new(Semaphore::new(0)),
                permits_total: 0,
                next_id: 1,
                workers: Some(workers),
                api: servers::ApiServers::new(),
                found: crate::discovery::Found::default(),
                targets: tokio::sync::watch::Sender::new(Arc::default()),
            }),
            stop: CancellationToken::new().drop_guard(),
            persist: std::sync::Mutex::new(None),
        });
        control.discover(&config).await;
        control.apply(config, bound, memory).await?;
        let task = tokio::spawn(persist_periodically(
            Arc::clone(&control.shared),
            control.stop.token().clone(),
        ));
        if let Ok(mut p) = control.persist.lock() {
            *p = Some(task);
        }
        Ok(control)
    }

    /// Reads the configuration file again and applies it; counts the result.
    pub async fn reload_file(self: &Arc<Self>) -> Result<(), ApplyError> {
        let source = match &self.state.lock().await.config {
            Some(c) => c.source.clone(),
            None => return Ok(()),
        };
        let result = match config::load(&source) {
            Ok(config) => self.apply(config, Sockets::new(), &[]).await,
            Err(e) => Err(e.into()),
        };
        self.counted(result)
    }

    /// Applies `config` (already validated); counts the result.
    pub async fn reload(
        self: &Arc<Self>,
        config: Config,
        bound: Sockets,
    ) -> Result<(), ApplyError> {
        let result = self.apply(config, bound, &[]).await;
        self.counted(result)
    }

    fn counted(&self, result: Result<(), ApplyError>) -> Result<(), ApplyError> {
        self.shared.global.reloaded(result.is_ok());
        match &result {
            Ok(()) => tracing::info!("configuration reloaded"),
            Err(e) => tracing::error!("reload rejected: {e}; the running configuration stays"),
        }
        result
    }

    /// Applies `config`: at start (with what a process before this one
    /// remembered, after an upgrade) and on every reload.
    async fn apply(
        self: &Arc<Self>,
        config: Config,
        mut bound: Sockets,
        memory: &[PoolMemory],
    ) -> Result<(), ApplyError> {
        let mut st = self.state.lock().await;
        let first = st.config.is_none();

        // Sockets first: if one cannot be bound, nothing has changed yet.
        let mut fresh: Vec<(String, SocketAddr, Vec<std::net::TcpListener>)> = Vec::new();
        let wanted: Vec<(String, SocketAddr)> = config
            .listeners
            .iter()
            .map(|l| (l.name.clone(), l.bind))
            .chain(
                config
                    .admin
                    .as_ref()
                    .map(|a| (ADMIN_SOCKET.to_owned(), a.bind)),
            )
            .collect();
        for (name, bind) in &wanted {
            let running = if name == ADMIN_SOCKET {
                st.admin.as_ref().is_some_and(|a| a.bind == *bind)
            } else {
                st.listeners.iter().any(|l| l.bind == *bind)
            };
            if running {
                continue;
            }
            let bind_err = |source| ApplyError::Bind {
                name: name.clone(),
                addr: *bind,
                source,
            };
            let sockets = match bound.remove(name).filter(|s| !s.is_empty()) {
                Some(sockets) => {
                    for s in &sockets {
                        s.set_nonblocking(true).map_err(bind_err)?;
                    }
                    sockets
                }
                None => vec![listener::bind(*bind).map_err(bind_err)?],
            };
            fresh.push((name.clone(), *bind, sockets));
        }

        // Which socket serves which listener: unchanged binds keep theirs.
        let mut keep: Vec<Accepting> = Vec::new();
        let mut retire: Vec<Accepting> = Vec::new();
        for mut a in std::mem::take(&mut st.listeners) {
            match config.listeners.iter().find(|l| l.bind == a.bind) {
                Some(l) => {
                    a.name = l.name.clone();
                    keep.push(a);
                }
                None => retire.push(a),
            }
        }
        let mut start: Vec<u64> = Vec::new();
        let mut admin_socket = None;
        for (name, bind, mut sockets) in fresh {
            let addr = sockets[0].local_addr().unwrap_or(bind);
            if name == ADMIN_SOCKET {
                let socket = sockets.swap_remove(0);
                let copy = socket.try_clone().map_err(|source| ApplyError::Bind {
                    name: name.clone(),
                    addr: bind,
                    source,
                })?;
                admin_socket = Some((bind, addr, socket, copy));
                continue;
            }
            let id = st.next_id;
            st.next_id += 1;
            keep.push(Accepting {
                id,
                name,
                bind,
                addr,
                stop: CancellationToken::new().drop_guard(),
                done: TaskTracker::new(),
                sockets,
            });
            start.push(id);
        }
        let by_name: Bound = keep
            .iter()
            .map(|a| (a.name.clone(), (a.id, a.addr)))
            .collect();
        let admin_addr = match (&admin_socket, &st.admin, &config.admin) {
            (Some((_, addr, _, _)), _, _) => Some(*addr),
            (None, Some(a), Some(_)) => Some(a.addr),
            _ => None,
        };

        // The new world, with the live state of the old one, and the
        // servers added at run time.
        if first {
            st.api = servers::from_memory(memory);
        }
        servers::reconcile(&mut st.api, &config);
        self.resolve(&st, &config);
        let previous = self.shared.snapshot.load_full();
        let snapshot = Arc::new(Snapshot::build(
            &servers::effective(&config, &st.api, &st.found),
            (!first).then_some(&*previous),
            &by_name,
            admin_addr,
            &self.shared.slots,
        ));
        restore_learned(&snapshot, &previous, first);
        if !memory.is_empty() {
            let n = snapshot.recall(memory);
            tracing::info!(
                sessions = n,
                "took over the running state of the previous process"
            );
        }
        self.shared.publish(Arc::clone(&snapshot));

        // The workers accept on the new listeners, each on a socket of its
        // own, added to a listener's group only now that nothing can fail:
        // a socket that joins a group takes connections at once, and would
        // reset them if this process gave up. Retired listeners stop.
        let permits = Arc::clone(&st.permits);
        // All the sockets together must fit in one upgrade's handoff: the
        // new listeners share the room the kept ones leave.
        let mut held: usize = keep.iter().map(|a| a.sockets.len()).sum();
        let mut left = start.len();
        for id in start {
            if let (Some(a), Some(workers)) = (keep.iter_mut().find(|a| a.id == id), &st.workers) {
                let room = ROOM.saturating_sub(held) / left.max(1);
                let added = listener::group(&a.sockets, workers.len().min(a.sockets.len() + room));
                held += added.len();
                left -= 1;
                a.sockets.extend(added);
                tracing::info!(listener = %a.name, addr = %a.addr, workers = workers.len(), sockets = a.sockets.len(), "listening");
                if let Err(e) = workers.listen(id, &a.sockets, &permits, a.stop.token(), &a.done) {
                    tracing::error!(listener = %a.name, error = %e, "cannot hand the listener to the workers");
                }
            }
        }
        for a in retire {
            tracing::info!(addr = %a.addr, "listener removed: no new connections, in-flight requests finish");
            a.stop.token().cancel();
        }
        st.listeners = keep;

        match (admin_socket, config.admin.is_some()) {
            (Some((bind, addr, socket, copy)), _) => {
                if let Some(old) = st.admin.take() {
                    old.stop.token().cancel();
                }
                let listener =
                    TcpListener::from_std(socket).map_err(|source| ApplyError::Bind {
                        name: ADMIN_SOCKET.to_owned(),
                        addr: bind,
                        source,
                    })?;
                let stop = CancellationToken::new();
                tracing::info!(%addr, "admin endpoint listening");
                let reload: Arc<dyn admin::Reload> = Arc::clone(self) as Arc<dyn admin::Reload>;
                let task = tokio::spawn(admin::serve(admin::Endpoint {
                    listener,
                    shared: Arc::clone(&self.shared),
                    reload,
                    stop: stop.clone(),
                }));
                st.admin = Some(Admin {
                    bind,
                    addr,
                    stop: stop.drop_guard(),
                    task,
                    socket: copy,
                });
            }
            (None, false) => {
                if let Some(old) = st.admin.take() {
                    tracing::info!("admin endpoint removed");
                    old.stop.token().cancel();
                }
            }
            (None, true) => {}
        }

        st.checks.sync(&snapshot);
        resize(&mut st, config.limits.max_connections);
        if !first {
            logging::apply(&config.log);
        }
        if let Some(previous) = &st.config {
            if certificates_changed(previous, &config)
                && let Some(tickets) = config::tickets::shared()
            {
                tickets.renew();
                tracing::info!(
                    "certificates changed: TLS sessions resume only from new handshakes"
                );
            }
            if previous.workers != config.workers {
                tracing::warn!(
                    "`workers` changed: it applies after a restart or an upgrade (SIGUSR2), not a reload"
                );
            }
        }
        for w in &config.warnings {
            tracing::warn!("{}: {w}", config.source.display());
        }
        st.config = Some(config);
        Ok(())
    }

    /// Stops accepting everywhere, lets in-flight requests finish within
    /// `shutdown_grace`, and writes the learned tables.
    pub async fn shutdown(&self) {
        let grace = self.shared.snapshot.load().timeouts.shutdown_grace;
        let deadline = tokio::time::Instant::now() + grace;
        let mut st = self.state.lock().await;
        st.checks.stop();
        self.stop.token().cancel();
        let workers = st.workers.take();
        let mut listeners: Vec<Accepting> = st.listeners.drain(..).collect();
        for a in &mut listeners {
            a.stop.token().cancel();
            // The accept loops take what is queued in the sockets and let
            // go of their copies: with these gone too, the sockets close
            // then, and a client connecting afterwards is refused at once
            // rather than queued and reset when this process exits. After
            // an upgrade they stay open: the new process holds them.
            a.sockets.clear();
        }
        if let Some(admin) = st.admin.take() {
            admin.stop.token().cancel();
            let _ = admin.task.await;
        }
        drop(st);
        // Every worker's connections on every listener closed (within
        // shutdown_grace).
        for a in &listeners {
            a.done.close();
            a.done.wait().await;
        }
        if let Some(w) = workers {
            let _ = tokio::task::spawn_blocking(move || w.join()).await;
        }
        let persist = self.persist.lock().ok().and_then(|mut p| p.take());
        if let Some(t) = persist {
            t.abort();
        }
        learned::flush_stores(&self.shared.snapshot.load(), deadline).await;
        persist_learned(&self.shared.snapshot.load());
    }

    /// Copies of every listening socket with the address it was bound for
    /// and whether it is the admin endpoint's, to hand to a new process.
    pub async fn sockets(&self) -> std::io::Result<Vec<(SocketAddr, bool, std::net::TcpListener)>> {
        let st = self.state.lock().await;
        let mut all = Vec::new();
        for a in &st.listeners {
            for s in &a.sockets {
                all.push((a.bind, false, s.try_clone()?));
            }
        }
        if let Some(a) = &st.admin {
            all.push((a.bind, true, a.socket.try_clone()?));
        }
        Ok(all)
    }

    /// The address of each listener, in configuration order.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.shared
            .snapshot
            .load()
            .listeners
            .iter()
            .map(|l| l.addr)
            .collect()
    }
}

/// How many listener sockets there may be in all: as many as an upgrade
/// hands over in one message, with the admin's. A listener gets a socket
/// per worker while there is room, and its workers share fewer otherwise.
const ROOM: usize = crate::upgrade::wire::MAX_SOCKETS - 1;

/// Makes `max_connections` permits exist: more are added at once; fewer are
/// taken out as connections end (new connections wait until then).
fn resize(st: &mut State, total: usize) {
    if total > st.permits_total {
        st.permits.add_permits(total - st.permits_total);
    } else if total < st.permits_total {
        let excess = st.permits_total - total;
        let permits = Arc::clone(&st.permits);
        tokio::spawn(async move {
            if let Ok(p) = permits
                .acquire_many_owned(u32::try_from(excess).unwrap_or(u32::MAX))
                .await
            {
                p.forget();
            }
        });
    }
    st.permits_total = total;
}

/// Does any listener serve other certificates than before? Sessions
/// resumed from tickets of the old ones would outlive a renewal (a
/// compromised key, say), so the ticket keys start anew.
fn certificates_changed(previous: &Config, next: &Config) -> bool {
    let certs = |c: &Config| -> Vec<Arc<config::sni::Certs>> {
        c.listeners.iter().filter_map(|l| l.certs.clone()).collect()
    };
    let (before, after) = (certs(previous), certs(next));
    before.len() != after.len() || before.iter().zip(&after).any(|(a, b)| !a.same_chains(b))
}

impl admin::Reload for Control {
    fn reload(self: Arc<Self>) -> admin::ReloadFuture {
        Box::pin(async move { self.reload_file().await.map_err(|e| e.to_string()) })
    }

    fn add_server(
        self: Arc<Self>,
        pool: String,
        body: String,
        peer: SocketAddr,
    ) -> admin::ChangeFuture {
        Box::pin(async move { Control::add_server(&self, &pool, &body, peer).await })
    }

    fn remove_server(
        self: Arc<Self>,
        pool: String,
        server: String,
        peer: SocketAddr,
    ) -> admin::ChangeFuture {
        Box::pin(async move { Control::remove_server(&self, &pool, &server, peer).await })
    }
}
