//! The running state that a client's next request depends on, as one
//! process hands it to the next in an in-place upgrade (`SIGUSR2`, see
//! [`crate::upgrade`]): for each pool, its sticky memory (learned sessions,
//! jvm_route failover bindings, ip_hash drain memory) and each server's
//! vitals (a state set through the admin API, the active checks' verdict,
//! a passive mark-down). Pools and servers are matched by name, as a reload
//! matches them; what the new configuration no longer has is dropped.

use serde::{Deserialize, Serialize};

use crate::runtime::Snapshot;
use crate::server::Vitals;
use crate::sticky::memory::Memory;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolMemory {
    pub name: String,
    #[serde(default)]
    pub sticky: Memory,
    #[serde(default)]
    pub servers: Vec<ServerMemory>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerMemory {
    pub name: String,
    /// A server added through the admin API: the body it was added with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    #[serde(flatten)]
    pub vitals: Vitals,
}

impl Snapshot {
    /// Everything this process remembers, pool by pool.
    pub fn memory(&self) -> Vec<PoolMemory> {
        self.pools
            .iter()
            .map(|p| PoolMemory {
                name: p.name.to_string(),
                sticky: p.sticky.memory(),
                servers: p
                    .servers
                    .iter()
                    .map(|s| ServerMemory {
                        name: s.name.to_string(),
                        api: match &s.source {
                            crate::config::Source::Api(body) => Some(body.to_string()),
                            _ => None,
                        },
                        vitals: s.live.vitals(),
                    })
                    .collect(),
            })
            .collect()
    }

    /// Takes over what another process remembered. Returns the number of
    /// sticky entries taken.
    pub fn recall(&self, memory: &[PoolMemory]) -> usize {
        let mut taken = 0;
        for pm in memory {
            let Some(pool) = self.pool(&pm.name) else {
                continue;
            };
            taken += pool.sticky.recall(&pm.sticky);
            for sm in &pm.servers {
                if let Some(i) = pool.servers.by_name(&sm.name) {
                    pool.servers[i].live.recall(&sm.vitals);
                }
            }
        }
        taken
    }
}
