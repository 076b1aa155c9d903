//! limpet — a sticky-session HTTP load balancer for stateful Java clusters.
//!
//! `workers` threads each run their own event loop ([`worker`]); each
//! accepts on its own copy of every listening socket and serves the
//! connection's requests on its own thread, with its own connections to
//! servers. HTTP/1.1 is served by limpet's own engine ([`proxy::h1`]: each
//! head parsed once and written on as received, with limpet's edits),
//! HTTP/2 (and HTTP/1 with `http1: hyper`) by hyper through
//! [`proxy::handle`]; both take the same steps, in the same files:
//!
//! ```text
//! worker: accept, connection limit, timers        worker.rs, listener/
//!   └─ proxy::h1::request / proxy::handle         proxy/h1/mod.rs, proxy/mod.rs
//!        the snapshot, as this worker sees it     proxy/local.rs
//!        client address (trusted_proxies, XFF)    proxy/client_addr.rs
//!        refuse what cannot be forwarded          h1/check.rs, proxy/check.rs
//!        pool (listener routes)                   proxy/route.rs
//!        affinity (Sticky::find)                  sticky/
//!        Pool::decide → server                    pool/mod.rs
//!        connect or reuse, send, retry elsewhere  proxy/h1/exchange.rs, proxy/forward.rs
//!          (one verdict on a failed attempt)      proxy/verdict.rs
//!        act on the response (Sticky::act_on)     sticky/, proxy/h1/answer.rs, proxy/headers.rs
//!        stream back; then log and count          proxy/h1/answer.rs, proxy/body.rs, proxy/end.rs
//! ```
//!
//! The layers, bottom up, with no cycles: `config`, `clock`, `path`,
//! `rendezvous`, `metrics` (counters), `h1` (limpet's own HTTP/1 codec) →
//! `decision`, `server` → `sticky` → `pool` → `runtime` (the snapshot) →
//! `proxy` → `listener` → `worker`; `health` and `admin` read the
//! snapshot; [`control`] applies configurations (start and reload) and
//! drives them all.
//!
//! Everything a request reads lives in one immutable [`runtime::Snapshot`]
//! behind an `ArcSwap`; [`Limpet::reload`] swaps in a new one and carries the
//! live state of servers over by name ([`admin`] serves metrics, the status
//! page and the API).

pub mod admin;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connect;
pub mod control;
pub mod decision;
pub mod discovery;
pub mod fields;
pub mod h1;
pub mod health;
pub mod import;
pub mod listener;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod path;
pub mod pool;
pub mod proxy;
pub mod rendezvous;
pub mod resources;
pub mod runtime;
pub mod server;
pub mod sticky;
pub mod systemd;
pub mod upgrade;
pub mod worker;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use config::Config;
pub use control::ApplyError;
use control::Control;
use runtime::Snapshot;

/// A running limpet: the handle to inspect, reload or stop it.
pub struct Limpet {
    control: Arc<Control>,
}

impl Limpet {
    /// Binds every listener of `config` (and the admin endpoint) and starts serving.
    pub async fn start(config: Config) -> Result<Limpet, ApplyError> {
        Limpet::start_with(config, HashMap::new()).await
    }

    /// Starts serving, using the given pre-bound sockets (by listener name,
    /// [`control::ADMIN_SOCKET`] for the admin endpoint) instead of binding
    /// those addresses. Tests bind `127.0.0.1:0` themselves so no port is
    /// ever re-bound.
    pub async fn start_with(
        config: Config,
        bound: HashMap<String, std::net::TcpListener>,
    ) -> Result<Limpet, ApplyError> {
        Limpet::start_upgraded(config, one_each(bound), &[]).await
    }

    /// Starts serving as the new process of an in-place upgrade: on the
    /// sockets the old process handed over (by listener name, every socket
    /// of each listener), with what it remembered, taken over before the
    /// first connection is accepted.
    pub async fn start_upgraded(
        config: Config,
        bound: control::Sockets,
        memory: &[memory::PoolMemory],
    ) -> Result<Limpet, ApplyError> {
        Ok(Limpet {
            control: Control::start(config, bound, memory).await?,
        })
    }

    /// Copies of the listening sockets (the address each was bound for,
    /// whether it is the admin endpoint's), for a new process.
    pub async fn sockets(&self) -> std::io::Result<Vec<(SocketAddr, bool, std::net::TcpListener)>> {
        self.control.sockets().await
    }

    /// The bound address of each listener, in configuration order.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.control.addrs()
    }

    /// The bound address of the listener named `name`.
    pub fn addr(&self, name: &str) -> Option<SocketAddr> {
        self.snapshot()
            .listeners
            .iter()
            .find(|l| &*l.name == name)
            .map(|l| l.addr)
    }

    /// Where the admin endpoint listens, if it does.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.snapshot().admin
    }

    /// The running snapshot (for inspection by tests).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.control.shared.snapshot.load_full()
    }

    /// Applies a new configuration (see [`control`] for what changes and
    /// what is kept). On error the running configuration stays.
    pub async fn reload(&self, config: Config) -> Result<(), ApplyError> {
        self.control.reload(config, control::Sockets::new()).await
    }

    /// Like [`Limpet::reload`], with pre-bound sockets for new listeners.
    pub async fn reload_with(
        &self,
        config: Config,
        bound: HashMap<String, std::net::TcpListener>,
    ) -> Result<(), ApplyError> {
        self.control.reload(config, one_each(bound)).await
    }

    /// Reads the configuration file again and applies it (SIGHUP).
    pub async fn reload_file(&self) -> Result<(), ApplyError> {
        self.control.reload_file().await
    }

    /// Stops accepting, lets in-flight requests finish within
    /// `timeouts.shutdown_grace`, writes the learned tables, and returns.
    pub async fn shutdown(self) {
        self.control.shutdown().await;
    }

    /// Writes the learned tables of pools with `persist: true` now.
    pub fn persist(&self) {
        control::persist_learned(&self.snapshot());
    }
}

/// One pre-bound socket per name, as the workers' sockets of that listener
/// (more join it with SO_REUSEPORT).
fn one_each(bound: HashMap<String, std::net::TcpListener>) -> control::Sockets {
    bound.into_iter().map(|(name, s)| (name, vec![s])).collect()
}
