//! Servers that come and go at run time. Those added through the admin API
//! (`POST /api/pools/{pool}/servers`) are kept here, beside the file's
//! configuration: a snapshot is built from both, so they survive reloads
//! (unless the file comes to define one of the same name: the file wins)
//! and upgrades (handed over with the rest of the running state).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::{Control, State};
use crate::admin::ServerChange;
use crate::config::{self, Config, ServerConfig, Source};
use crate::discovery::{Found, Targets};
use crate::memory::PoolMemory;
use crate::runtime::{Bound, Snapshot};

/// The API's servers, by pool name.
pub type ApiServers = BTreeMap<String, Vec<ServerConfig>>;

/// `config` with the servers that came at run time: the API's added to
/// their pools, then what DNS says (host names resolved, discovered
/// servers added unless the file or the API has their name or route).
pub fn effective<'a>(config: &'a Config, api: &ApiServers, found: &Found) -> Cow<'a, Config> {
    let dns = config
        .pools
        .iter()
        .any(|p| p.discover.is_some() || p.servers.iter().any(|s| s.host.is_some()));
    if !dns && api.values().all(Vec::is_empty) {
        return Cow::Borrowed(config);
    }
    let mut all = config.clone();
    for pool in &mut all.pools {
        if let Some(extra) = api.get(&pool.name) {
            pool.servers.extend(extra.iter().cloned());
        }
    }
    crate::discovery::apply(&mut all, found);
    Cow::Owned(all)
}

/// After a reload: an API server whose name the file now defines gives
/// way to the file's; one whose pool is gone goes too.
pub(super) fn reconcile(api: &mut ApiServers, config: &Config) {
    api.retain(|pool, servers| {
        let Some(pc) = config.pools.iter().find(|p| p.name == *pool) else {
            for s in servers.iter() {
                tracing::warn!(pool, server = %s.name, "the pool is gone from the configuration: the server added through the API goes with it");
            }
            return false;
        };
        servers.retain(|s| {
            let clash = pc.servers.iter().find(|f| f.name == s.name || f.route == s.route);
            if let Some(f) = clash {
                tracing::info!(pool, server = %s.name, file = %f.name, "the file now defines this server (or its route): the file's wins over the one added through the API");
            }
            clash.is_none()
        });
        !servers.is_empty()
    });
}

/// The API's servers a previous process handed over (an upgrade).
pub(super) fn from_memory(memory: &[PoolMemory]) -> ApiServers {
    let mut api = ApiServers::new();
    for pm in memory {
        for sm in &pm.servers {
            let Some(body) = &sm.api else {
                continue;
            };
            match config::api_server(body) {
                Ok(s) => api.entry(pm.name.clone()).or_default().push(s),
                Err(e) => {
                    tracing::warn!(pool = %pm.name, server = %sm.name, error = %e, "a server the previous process had from the API is not valid here: left out");
                }
            }
        }
    }
    api
}

impl Control {
    /// Starts the discovery task for `config`'s names, and what applies its
    /// findings; both end with the control (or at shutdown). Waits for the
    /// first round (bounded: a query's `timeout` per name, 10 s at most),
    /// so that the first snapshot has the servers DNS names: a session is
    /// never moved off a server only because its name was not asked yet.
    pub(super) async fn discover(self: &Arc<Self>, config: &Config) {
        let targets = Targets::of(config);
        let names = targets.hosts.len() + 2 * targets.discover.len();
        let wait = (targets.resolvers.timeout * (names as u32 + 1)).min(Duration::from_secs(10));
        let first = !targets.is_empty();
        let receiver = {
            let st = self.state.lock().await;
            st.targets.send_replace(Arc::new(targets));
            st.targets.subscribe()
        };
        let (out, mut found) = tokio::sync::mpsc::channel(4);
        tokio::spawn(crate::discovery::run(
            receiver,
            out,
            Arc::clone(&self.shared.dns),
        ));
        if first && let Ok(Some(now)) = tokio::time::timeout(wait, found.recv()).await {
            self.state.lock().await.found = now;
        }
        let control = Arc::downgrade(self);
        let stop = self.stop.token().clone();
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    () = stop.cancelled() => return,
                    next = found.recv() => next,
                };
                let (Some(next), Some(control)) = (next, control.upgrade()) else {
                    return;
                };
                control.found(next).await;
            }
        });
    }

    /// What DNS says now (the discovery task): a new snapshot.
    async fn found(&self, found: Found) {
        let mut st = self.state.lock().await;
        if self.stop.token().is_cancelled() {
            return;
        }
        st.found = found;
        self.rebuild(&mut st);
    }

    /// Tells the discovery task what to resolve, if that changed.
    /// (The API's servers' host names too.)
    pub(super) fn resolve(&self, st: &State, config: &Config) {
        let targets = Targets::of(&effective(config, &st.api, &Found::default()));
        if !st.targets.borrow().same(&targets) {
            st.targets.send_replace(Arc::new(targets));
        }
    }

    /// Adds the server `body` describes to `pool`; it takes requests (new
    /// sessions included) once up: at once without active checks, else
    /// after its first passing check.
    pub async fn add_server(
        &self,
        pool: &str,
        body: &str,
        peer: SocketAddr,
    ) -> Result<(), ServerChange> {
        let server = config::api_server(body).map_err(|e| ServerChange::Invalid(e.to_string()))?;
        let mut st = self.state.lock().await;
        let snap = self.shared.snapshot.load_full();
        let Some(running) = snap.pool(pool) else {
            return Err(ServerChange::NoPool(pool.to_owned()));
        };
        if let Some(other) = running
            .servers
            .iter()
            .find(|s| *s.name == *server.name || *s.route == *server.route)
        {
            return Err(ServerChange::Taken(if *other.name == *server.name {
                format!(
                    "pool {pool:?} has a server {:?} already ({})",
                    server.name,
                    other.source.as_str()
                )
            } else {
                format!(
                    "server {:?} of pool {pool:?} has the route {:?} already",
                    other.name, server.route
                )
            }));
        }
        tracing::info!(pool, server = %server.name, address = %server.address, by = %peer, "server added through the admin API");
        st.api.entry(pool.to_owned()).or_default().push(server);
        self.refresh(&mut st);
        Ok(())
    }

    /// Removes a server the API added: its sessions move as a dead
    /// server's do, each to its deterministic replacement.
    pub async fn remove_server(
        &self,
        pool: &str,
        server: &str,
        peer: SocketAddr,
    ) -> Result<(), ServerChange> {
        let mut st = self.state.lock().await;
        let snap = self.shared.snapshot.load_full();
        let Some(running) = snap.pool(pool) else {
            return Err(ServerChange::NoPool(pool.to_owned()));
        };
        let no_server = || ServerChange::NoServer {
            pool: pool.to_owned(),
            server: server.to_owned(),
        };
        let i = running.servers.by_name(server).ok_or_else(no_server)?;
        match running.servers[i].source {
            Source::Api(_) => {}
            Source::File => {
                return Err(ServerChange::NotOurs(format!(
                    "server {server:?} is defined in the configuration file: remove it there and reload"
                )));
            }
            Source::Dns => {
                return Err(ServerChange::NotOurs(format!(
                    "server {server:?} was found through DNS: it leaves when DNS stops naming it"
                )));
            }
        }
        let list = st.api.get_mut(pool).ok_or_else(no_server)?;
        list.retain(|s| s.name != server);
        if list.is_empty() {
            st.api.remove(pool);
        }
        tracing::info!(pool, server, by = %peer, "server removed through the admin API: its sessions move to their replacements");
        self.refresh(&mut st);
        Ok(())
    }

    /// After the API's servers changed: what to resolve (an API server may
    /// be named by host name), and a new snapshot.
    fn refresh(&self, st: &mut State) {
        if let Some(config) = &st.config {
            self.resolve(st, config);
        }
        self.rebuild(st);
    }

    /// Publishes a snapshot of the file's configuration and the run-time
    /// servers, keeping everything else as it runs.
    pub(super) fn rebuild(&self, st: &mut State) {
        let Some(config) = &st.config else {
            return;
        };
        let bound: Bound = st
            .listeners
            .iter()
            .map(|a| (a.name.clone(), (a.id, a.addr)))
            .collect();
        let previous = self.shared.snapshot.load_full();
        let snapshot = Arc::new(Snapshot::build(
            &effective(config, &st.api, &st.found),
            Some(&previous),
            &bound,
            st.admin.as_ref().map(|a| a.addr),
            &self.shared.slots,
        ));
        self.shared.publish(Arc::clone(&snapshot));
        st.checks.sync(&snapshot);
    }
}
