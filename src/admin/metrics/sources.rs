//! Where servers come from: `limpet_servers{pool,source}` and
//! `limpet_dns_resolutions_total{pool,result}`.

use prometheus_client::encoding::DescriptorEncoder;

use super::{counter, gauge};
use crate::discovery::{Counters, Outcome};
use crate::runtime::Snapshot;

/// How many servers each pool has from each source (file, dns, api);
/// every source of every pool, zeros included, so a rule can watch one.
pub fn servers(enc: &mut DescriptorEncoder<'_>, snap: &Snapshot) -> Result<(), std::fmt::Error> {
    let mut counts = Vec::new();
    for p in &snap.pools {
        for source in ["file", "dns", "api"] {
            let n = p
                .servers
                .iter()
                .filter(|s| s.source.as_str() == source)
                .count();
            counts.push((vec![("pool", &*p.name), ("source", source)], n as f64));
        }
    }
    gauge(
        enc,
        "limpet_servers",
        "Servers of the pool by where they come from: file, dns (discover) or api (added at run time).",
        &counts,
    )
}

/// DNS lookups by pool and outcome.
pub fn resolutions(enc: &mut DescriptorEncoder<'_>, dns: &Counters) -> Result<(), std::fmt::Error> {
    let all = dns.all();
    let mut series = Vec::new();
    for (pool, counts) in &all {
        for o in Outcome::ALL {
            series.push((
                vec![("pool", pool.as_str()), ("result", o.as_str())],
                counts[o as usize],
            ));
        }
    }
    counter(
        enc,
        "limpet_dns_resolutions",
        "DNS lookups of server host names and discover, by pool and result (success, failure, nxdomain).",
        &series,
    )
}
