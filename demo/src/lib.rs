//! A demo backend that behaves like a Tomcat node with a session counter.
//!
//! [`DemoNode`] is shared by the `examples/demo.rs` program, the integration
//! tests and the benches. It serves HTTP/1.1 and h2c (prior knowledge) on a
//! local port, hands out `JSESSIONID` cookies of the form
//! `<32 uppercase hex>.<jvmRoute>`, counts requests per session, re-suffixes
//! sessions that fail over from another node (like Tomcat's
//! `JvmRouteBinderValve`), and can be stopped, restarted, made unhealthy or
//! made to reset every connection, so that the balancer's failure handling
//! can be exercised without a JVM.
//!
//! Every response carries an `x-demo-node: <route>` header. Special paths
//! (path parameters such as `;jsessionid=` are ignored for routing):
//!
//! * `/health`: status set by [`DemoNode::set_health`], body `ok` or `fail`;
//! * `/logout`: ends the session and expires the cookie;
//! * `/slow?ms=N`: waits `N` ms before answering;
//! * `/stream?chunks=N&size=M`: streams `N` chunks of `M` bytes of `x`;
//! * `/echo`: streams the request body back;
//! * `/set-cookies`: adds `Set-Cookie: a=1` and `b=2`;
//! * `/status/NNN`: answers with status `NNN`;
//! * `/static/...`: like a static file, never creates or touches a session;
//! * any request with an `Upgrade` header: `101`, then echoes raw bytes;
//! * anything else: a JSON description of the request (session, counter,
//!   method, path, body size and checksum, headers).

pub mod control;
mod handlers;
mod serve;
mod session;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use http::header::HeaderValue;

use serve::{Generation, bind, spawn_server};
use session::SessionMap;

/// Name of the header every response carries with the node's route.
pub const NODE_HEADER: &str = "x-demo-node";

/// Binds `addr` without listening: connections to it are refused.
fn hold(addr: SocketAddr) -> io::Result<tokio::net::TcpSocket> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A test backend behaving like a Tomcat node with `jvmRoute` = `route`.
pub struct DemoNode {
    shared: Arc<Shared>,
    addr: SocketAddr,
    generation: Mutex<Option<Arc<Generation>>>,
    /// While stopped: the port, bound but not listening, so connections are
    /// refused and no other program can take it before a restart.
    placeholder: Mutex<Option<tokio::net::TcpSocket>>,
}

impl fmt::Debug for DemoNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DemoNode")
            .field("route", &self.shared.route)
            .field("addr", &self.addr)
            .field("running", &self.is_running())
            .finish()
    }
}

impl DemoNode {
    /// Bind `127.0.0.1:0` and serve. `route` is the node's jvmRoute, e.g. "node1".
    pub async fn start(route: &str) -> io::Result<DemoNode> {
        Self::start_on(route, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
    }

    /// Bind `addr` (port 0 picks a free port) and serve.
    pub async fn start_on(route: &str, addr: SocketAddr) -> io::Result<DemoNode> {
        Self::start_with(route, addr, SessionMap::default())
    }

    /// Start one node per route on `127.0.0.1:0`, all sharing ONE session
    /// store (like Tomcat's DeltaManager replication): a session created on
    /// one node is known to all, and a request for it on another node
    /// continues its counter and re-suffixes the id with that node's route.
    pub async fn start_cluster(routes: &[&str]) -> io::Result<Vec<DemoNode>> {
        let sessions = SessionMap::default();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        routes
            .iter()
            .map(|route| Self::start_with(route, addr, Arc::clone(&sessions)))
            .collect()
    }

    fn start_with(route: &str, addr: SocketAddr, sessions: SessionMap) -> io::Result<DemoNode> {
        let listener = bind(addr)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            route: route.to_owned(),
            route_header: HeaderValue::from_str(route).ok(),
            sessions,
            health: AtomicU16::new(200),
            reset_mode: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            health_checks: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
        });
        let generation = spawn_server(Arc::clone(&shared), listener);
        Ok(DemoNode {
            shared,
            addr,
            generation: Mutex::new(Some(generation)),
            placeholder: Mutex::new(None),
        })
    }

    /// The address the node listens on (kept across stop/restart).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The node's jvmRoute.
    pub fn route(&self) -> &str {
        &self.shared.route
    }

    /// Whether the node is currently listening (not stopped).
    pub fn is_running(&self) -> bool {
        lock(&self.generation).is_some()
    }

    /// Close the listener AND every open connection (like a killed JVM):
    /// after it returns, connects to `addr` are refused.
    pub async fn stop(&self) {
        let generation = lock(&self.generation).take();
        if let Some(generation) = generation {
            let mut tasks = generation.close();
            tasks.shutdown().await;
            *lock(&self.placeholder) = hold(self.addr).ok();
        }
    }

    /// Start again on the same address after [`stop`](Self::stop). Sessions
    /// are kept unless [`forget_sessions`](Self::forget_sessions) was called.
    /// Does nothing if the node is running.
    pub async fn restart(&self) -> io::Result<()> {
        let mut generation = lock(&self.generation);
        if generation.is_none() {
            drop(lock(&self.placeholder).take());
            let listener = bind(self.addr)?;
            *generation = Some(spawn_server(Arc::clone(&self.shared), listener));
        }
        Ok(())
    }

    /// Drop every session in this node's store (for nodes started with
    /// [`start_cluster`](Self::start_cluster) the store is shared, so this
    /// clears the whole cluster's sessions).
    pub fn forget_sessions(&self) {
        self.shared.sessions.clear();
    }

    /// Number of sessions in this node's store.
    pub fn session_count(&self) -> usize {
        self.shared.sessions.len()
    }

    /// Status code `/health` returns (default 200; invalid codes give 500).
    pub fn set_health(&self, status: u16) {
        self.shared.health.store(status, Ordering::SeqCst);
    }

    /// When true: accept connections, read the request head, then reset the
    /// connection (`SO_LINGER` 0 then close) without any response, like a
    /// dying JVM. Applies to already open connections at their next request.
    pub fn set_reset_mode(&self, on: bool) {
        self.shared.reset_mode.store(on, Ordering::SeqCst);
    }

    /// Number of requests served (excluding `/health` and reset requests).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Number of `/health` probes answered.
    pub fn health_checks(&self) -> u64 {
        self.shared.health_checks.load(Ordering::SeqCst)
    }

    /// Number of requests currently being handled (until the response head
    /// is returned).
    pub fn in_flight(&self) -> u64 {
        self.shared.in_flight.load(Ordering::SeqCst)
    }
}

impl Drop for DemoNode {
    fn drop(&mut self) {
        let generation = self
            .generation
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(generation) = generation {
            // Dropping a JoinSet aborts every task in it.
            drop(generation.close());
        }
    }
}

/// State shared by all connections of a node.
struct Shared {
    route: String,
    route_header: Option<HeaderValue>,
    sessions: SessionMap,
    health: AtomicU16,
    reset_mode: AtomicBool,
    requests: AtomicU64,
    health_checks: AtomicU64,
    in_flight: AtomicU64,
}
