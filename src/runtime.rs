//! The immutable runtime snapshot every request reads, behind one `ArcSwap`.
//! A reload builds a new snapshot from the new configuration and the running
//! one, carrying live state over by (pool, server) name: in-flight counts,
//! operator state and health survive; a server that left the file is gone.

use std::sync::Arc;

use arc_swap::ArcSwap;
use ipnet::IpNet;

use crate::config::{Config, Limits, Timeouts};
use crate::pool::Pool;
use crate::proxy::http_client::{self, HttpClient};

/// Process-wide state that outlives any one configuration.
#[derive(Debug)]
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
}

#[derive(Debug)]
pub struct Snapshot {
    /// In the configuration's order; connections refer to them by index.
    pub listeners: Vec<ListenerRt>,
    pub pools: Vec<Arc<Pool>>,
    pub trusted_proxies: Vec<IpNet>,
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub access_log: bool,
    pub client: HttpClient,
}

#[derive(Debug)]
pub struct ListenerRt {
    pub name: Arc<str>,
    pub routes: Vec<RouteRt>,
    pub default_pool: Option<Arc<Pool>>,
}

#[derive(Debug)]
pub struct RouteRt {
    pub host: Option<String>,
    pub path_prefix: Option<String>,
    pub pool: Arc<Pool>,
}

impl Snapshot {
    /// Builds the snapshot for `config`, re-linking state from `previous`.
    pub fn build(config: &Config, previous: Option<&Snapshot>) -> Snapshot {
        let pools: Vec<Arc<Pool>> = config
            .pools
            .iter()
            .map(|pc| {
                let old = previous.and_then(|p| p.pool(&pc.name));
                Arc::new(Pool::new(pc, old.map(|p| &**p)))
            })
            .collect();
        let listeners = config
            .listeners
            .iter()
            .map(|lc| ListenerRt {
                name: lc.name.as_str().into(),
                routes: lc
                    .routes
                    .iter()
                    .map(|r| RouteRt {
                        host: r.host.clone(),
                        path_prefix: r.path_prefix.clone(),
                        pool: Arc::clone(&pools[r.pool]),
                    })
                    .collect(),
                default_pool: lc.pool.map(|i| Arc::clone(&pools[i])),
            })
            .collect();
        let client = match previous {
            Some(p) if p.timeouts.connect == config.timeouts.connect => p.client.clone(),
            _ => http_client::build(config.timeouts.connect),
        };
        Snapshot {
            listeners,
            pools,
            trusted_proxies: config.trusted_proxies.clone(),
            timeouts: config.timeouts,
            limits: config.limits,
            access_log: config.log.access,
            client,
        }
    }

    pub fn pool(&self, name: &str) -> Option<&Arc<Pool>> {
        self.pools.iter().find(|p| &*p.name == name)
    }
}
