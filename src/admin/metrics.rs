//! `GET /metrics`: every metric of the contract, read from the running
//! snapshot at scrape time by a prometheus-client [`Collector`], so the
//! request path never touches a registry, a label map or a lock. Labels
//! carry only names from `lb.yaml` and fixed values.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

mod sources;

use crate::config::ServerState;
use crate::metrics::{Histogram, OUTCOMES, RequestStats, process};
use crate::runtime::Shared;

/// The collector of everything limpet counts.
#[derive(Debug)]
pub struct Limpet {
    shared: Arc<Shared>,
}

/// A registry holding limpet's collector, ready to encode.
pub fn registry(shared: Arc<Shared>) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(Limpet { shared }));
    r
}

/// The Prometheus text exposition (0.0.4) of everything, or OpenMetrics
/// when `openmetrics` (the scraper asked for it).
pub fn encode(registry: &Registry, openmetrics: bool) -> Result<String, std::fmt::Error> {
    let mut out = String::with_capacity(16 * 1024);
    if openmetrics {
        prometheus_client::encoding::text::encode(&mut out, registry)?;
    } else {
        prometheus_client::encoding::prometheus_text::encode(&mut out, registry)?;
    }
    Ok(out)
}

fn counter(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: &[(Vec<(&str, &str)>, u64)],
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in series {
        ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn gauge(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: &[(Vec<(&str, &str)>, f64)],
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in series {
        ConstGauge::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

/// Every (pool, server) request series: the servers' own, the pool's
/// requests answered before a server was chosen (`server=""`), and those
/// answered before any pool was (`pool=""`).
fn request_series(shared: &crate::runtime::Snapshot) -> Vec<(&str, &str, &RequestStats)> {
    let mut v = Vec::new();
    for pool in &shared.pools {
        for s in pool.servers.iter() {
            v.push((&*pool.name, &*s.name, &s.live.stats));
        }
        v.push((&*pool.name, "", &pool.stats.unplaced));
    }
    v.push(("", "", &*shared.unrouted));
    v
}

impl Collector for Limpet {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let snap = self.shared.snapshot.load_full();
        let series = request_series(&snap);

        let codes: Vec<(u16, String)> = (100..600).map(|c| (c, c.to_string())).collect();
        let mut requests = Vec::new();
        for (pool, server, stats) in &series {
            for (code, n) in stats.by_code() {
                let text = codes[usize::from(code - 100)].1.as_str();
                requests.push((
                    vec![("pool", *pool), ("server", *server), ("code", text)],
                    n,
                ));
            }
        }
        counter(
            &mut enc,
            "limpet_requests",
            "Requests answered, by pool, server and status (499: the client went away).",
            &requests,
        )?;

        let mut m = enc.encode_descriptor(
            "limpet_request_duration_seconds",
            "Time from the request's arrival to the end of its response.",
            None,
            MetricType::Histogram,
        )?;
        for (pool, server, stats) in &series {
            let Histogram {
                buckets,
                sum,
                count,
            } = stats.histogram();
            if count == 0 && server.is_empty() {
                continue;
            }
            // The encoder sums the buckets itself: hand it each bucket's own count.
            let mut below = 0;
            let buckets: Vec<(f64, u64)> = buckets
                .into_iter()
                .map(|(le, cumulative)| {
                    let own = cumulative - below;
                    below = cumulative;
                    (le, own)
                })
                .collect();
            let labels = [("pool", *pool), ("server", *server)];
            m.encode_family(&labels)?
                .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                    sum, count, &buckets, None,
                )?;
        }

        let mut decisions = Vec::new();
        for pool in &snap.pools {
            for o in OUTCOMES {
                decisions.push((
                    vec![
                        ("pool", &*pool.name),
                        ("mode", pool.mode.as_str()),
                        ("outcome", o.as_str()),
                    ],
                    pool.stats.decisions(o),
                ));
            }
        }
        counter(
            &mut enc,
            "limpet_sticky_decisions",
            "Sticky decisions by outcome: hit, new, redispatch, unknown_route.",
            &decisions,
        )?;

        let servers: Vec<_> = snap
            .pools
            .iter()
            .flat_map(|p| p.servers.iter().map(move |s| (&*p.name, s)))
            .collect();
        let up: Vec<_> = servers
            .iter()
            .map(|(p, s)| {
                (
                    vec![("pool", *p), ("server", &*s.name)],
                    f64::from(u8::from(s.resolved && s.live.is_up())),
                )
            })
            .collect();
        gauge(
            &mut enc,
            "limpet_server_up",
            "1 when the server is up (health checks and passive checks), else 0.",
            &up,
        )?;

        sources::servers(&mut enc, &snap)?;

        let mut states = Vec::new();
        for (p, s) in &servers {
            let now = s.live.state();
            for st in [
                ServerState::Active,
                ServerState::Drain,
                ServerState::Disabled,
            ] {
                states.push((
                    vec![("pool", *p), ("server", &*s.name), ("state", st.as_str())],
                    f64::from(u8::from(now == st)),
                ));
            }
        }
        gauge(
            &mut enc,
            "limpet_server_state",
            "1 for the state the server is in: active, drain or disabled.",
            &states,
        )?;

        let active: Vec<_> = servers
            .iter()
            .map(|(p, s)| {
                (
                    vec![("pool", *p), ("server", &*s.name)],
                    f64::from(s.live.active()),
                )
            })
            .collect();
        gauge(
            &mut enc,
            "limpet_server_active_requests",
            "Requests in flight on the server.",
            &active,
        )?;

        let mut checks = Vec::new();
        for (p, s) in &servers {
            let c = &s.live.checks;
            for (result, n) in [("success", &c.success), ("failure", &c.failure)] {
                checks.push((
                    vec![("pool", *p), ("server", &*s.name), ("result", result)],
                    n.load(Ordering::Relaxed),
                ));
            }
        }
        counter(
            &mut enc,
            "limpet_health_checks",
            "Active health checks by result.",
            &checks,
        )?;

        let learned: Vec<_> = snap
            .pools
            .iter()
            .filter_map(|p| {
                p.sticky
                    .learned()
                    .map(|t| (vec![("pool", &*p.name)], t.len() as f64))
            })
            .collect();
        gauge(
            &mut enc,
            "limpet_learned_sessions",
            "Sessions in the learned table (learn mode).",
            &learned,
        )?;

        let stores: Vec<_> = snap
            .pools
            .iter()
            .filter_map(|p| p.sticky.store().map(|s| (&*p.name, s)))
            .collect();
        let up: Vec<_> = stores
            .iter()
            .map(|(p, s)| (vec![("pool", *p)], if s.is_up() { 1.0 } else { 0.0 }))
            .collect();
        gauge(
            &mut enc,
            "limpet_store_up",
            "1 while the shared session store (learn.store) is reachable.",
            &up,
        )?;
        let errors: Vec<_> = stores
            .iter()
            .map(|(p, s)| (vec![("pool", *p)], s.stats.errors.load(Ordering::Relaxed)))
            .collect();
        counter(
            &mut enc,
            "limpet_store_errors",
            "Failed or timed-out store commands and health checks, and writes dropped.",
            &errors,
        )?;
        let mut lookups = Vec::new();
        for (p, s) in &stores {
            let st = &s.stats;
            for (result, n) in [
                ("hit", &st.lookup_hit),
                ("miss", &st.lookup_miss),
                ("error", &st.lookup_error),
                ("skipped", &st.lookup_skipped),
                ("miss_cached", &st.lookup_miss_cached),
                ("corrected", &st.corrected),
            ] {
                lookups.push((
                    vec![("pool", *p), ("result", result)],
                    n.load(Ordering::Relaxed),
                ));
            }
        }
        counter(
            &mut enc,
            "limpet_store_lookups",
            "Sessions looked up in the shared store on a local miss, by result.",
            &lookups,
        )?;

        let conns: Vec<_> = snap
            .listeners
            .iter()
            .map(|l| (vec![("listener", &*l.name)], l.stats.active() as f64))
            .collect();
        gauge(
            &mut enc,
            "limpet_connections_active",
            "Client connections open on the listener.",
            &conns,
        )?;

        let expiry: Vec<(Vec<(&str, &str)>, f64)> = snap
            .listeners
            .iter()
            .flat_map(|l| {
                l.certs.iter().flat_map(move |certs| {
                    certs.all().map(move |c| {
                        (
                            vec![("listener", &*l.name), ("certificate", c.file.as_str())],
                            c.not_after as f64,
                        )
                    })
                })
            })
            .collect();
        gauge(
            &mut enc,
            "limpet_tls_certificate_expiry_seconds",
            "The notAfter of each certificate a TLS listener serves, Unix seconds.",
            &expiry,
        )?;

        sources::resolutions(&mut enc, &self.shared.dns)?;

        let g = &self.shared.global;
        counter(
            &mut enc,
            "limpet_config_reloads",
            "Configuration reloads (SIGHUP or the admin API) by result.",
            &[
                (
                    vec![("result", "success")],
                    g.reload_success.load(Ordering::Relaxed),
                ),
                (
                    vec![("result", "failure")],
                    g.reload_failure.load(Ordering::Relaxed),
                ),
            ],
        )?;

        gauge(
            &mut enc,
            "limpet_build_info",
            "Always 1; the version is in the label.",
            &[(vec![("version", env!("CARGO_PKG_VERSION"))], 1.0)],
        )?;

        counter(
            &mut enc,
            "limpet_log_lines_dropped",
            "Log lines dropped because the log could not keep up.",
            &[(vec![], crate::logging::dropped_lines())],
        )?;

        let p = process::read();
        counter_f64(
            &mut enc,
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            p.cpu_seconds,
        )?;
        gauge(
            &mut enc,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            &[(vec![], p.resident_bytes as f64)],
        )?;
        gauge(
            &mut enc,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            &[(vec![], p.virtual_bytes as f64)],
        )?;
        gauge(
            &mut enc,
            "process_open_fds",
            "Number of open file descriptors.",
            &[(vec![], p.open_fds as f64)],
        )?;
        gauge(
            &mut enc,
            "process_max_fds",
            "Maximum number of open file descriptors.",
            &[(vec![], p.max_fds as f64)],
        )?;
        gauge(
            &mut enc,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            &[(vec![], p.start_time_seconds)],
        )?;
        Ok(())
    }
}

fn counter_f64(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    v: f64,
) -> Result<(), std::fmt::Error> {
    let m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(v).encode(m)
}
