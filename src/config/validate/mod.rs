//! Validation: the serde mirror of `lb.yaml` becomes the typed [`Config`], or
//! the first problem found is reported with its position. Every number and
//! duration has a documented range (docs/configuration.md), so whatever
//! `limpet check` accepts also runs.

mod admin;
mod checker;
mod pool;
mod sticky;
mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;

use super::file::{self, FileConfig, S};
use super::{
    Config, ConfigError, Limits, ListenerConfig, LogConfig, LogFormat, PoolConfig, RouteConfig,
    StickyMode, Timeouts,
};
use checker::{Checker, DAY, HOUR, MS, Span};

/// Most client connections one limpet accepts at once.
pub const MAX_CONNECTIONS: u64 = 1_000_000;

pub fn validate(file: FileConfig, path: &Path) -> Result<Config, ConfigError> {
    let c = Checker { path };

    // Pools first: listeners and routes refer to them by name.
    if file.pools.value.is_empty() {
        return Err(c.err(
            &file.pools,
            "pools",
            "`pools` must name at least one pool.".into(),
        ));
    }
    let mut pools = Vec::with_capacity(file.pools.value.len());
    let mut pool_index: HashMap<String, usize> = HashMap::new();
    let mut roots = tls::Roots::new();
    let mut warnings = Vec::new();
    for (name, p) in &file.pools.value {
        let key = format!("pools.{}", name.value);
        let n = c.name(name, "pools")?;
        if pool_index.insert(n.clone(), pools.len()).is_some() {
            return Err(c.err(name, &key, format!("pool {n:?} is defined twice.")));
        }
        pools.push(pool::validate(&c, &key, n, p, &mut roots, &mut warnings)?);
    }

    let mut trusted_proxies = Vec::new();
    for (i, t) in file.trusted_proxies.iter().flatten().enumerate() {
        let v = t.value.trim();
        let net = v
            .parse::<IpNet>()
            .or_else(|_| v.parse::<std::net::IpAddr>().map(IpNet::from))
            .map_err(|_| {
                c.err(t, &format!("trusted_proxies[{i}]"), format!("`trusted_proxies` entries must be addresses or CIDR networks such as 10.0.0.0/8, not {:?}.", t.value))
            })?;
        trusted_proxies.push(net);
    }

    let listeners = listeners(
        &c,
        &file.listeners,
        &pool_index,
        Context {
            pools: &pools,
            trusted_proxies: &trusted_proxies,
        },
        &mut warnings,
    )?;
    let admin = match &file.admin {
        Some(a) => Some(admin::validate(&c, a.as_ref(), &listeners, &mut warnings)?),
        None => None,
    };

    let d = Timeouts::default();
    let t = file.timeouts.unwrap_or_default();
    let timeouts = Timeouts {
        connect: c.duration(
            &t.connect,
            "timeouts.connect",
            d.connect,
            Span::new(MS, HOUR),
        )?,
        request_header: c.duration(
            &t.request_header,
            "timeouts.request_header",
            d.request_header,
            Span::new(MS, HOUR),
        )?,
        client_body: c.duration(
            &t.client_body,
            "timeouts.client_body",
            d.client_body,
            Span::new(MS, DAY),
        )?,
        backend_response: c.duration(
            &t.backend_response,
            "timeouts.backend_response",
            d.backend_response,
            Span::new(MS, DAY),
        )?,
        client_idle: c.duration(
            &t.client_idle,
            "timeouts.client_idle",
            d.client_idle,
            Span::new(MS, DAY),
        )?,
        shutdown_grace: c.duration(
            &t.shutdown_grace,
            "timeouts.shutdown_grace",
            d.shutdown_grace,
            Span::new(std::time::Duration::ZERO, DAY),
        )?,
    };

    let dl = Limits::default();
    let lf = file.limits.unwrap_or_default();
    let limits = Limits {
        max_connections: c.number(
            &lf.max_connections,
            "limits.max_connections",
            dl.max_connections as u64,
            1,
            MAX_CONNECTIONS,
            "",
        )? as usize,
        max_header_bytes: c.number(
            &lf.max_header_bytes,
            "limits.max_header_bytes",
            dl.max_header_bytes as u64,
            1024,
            16 * 1024 * 1024,
            "",
        )? as usize,
        max_headers: c.number(
            &lf.max_headers,
            "limits.max_headers",
            dl.max_headers as u64,
            1,
            1000,
            "",
        )? as usize,
    };

    let workers = match &file.workers {
        None => None,
        Some(w) => match &w.value {
            file::Workers::Word(s) if s == "auto" => None,
            file::Workers::Count(n) if (1..=1024).contains(&n.0) => Some(n.0 as usize),
            _ => {
                return Err(c.err(
                    w,
                    "workers",
                    "`workers` must be `auto` or a number of threads from 1 to 1024.".into(),
                ));
            }
        },
    };

    let lf = file.log.unwrap_or_default();
    let level = c.choice(
        &lf.level,
        "log.level",
        &[
            ("error", "error"),
            ("warn", "warn"),
            ("info", "info"),
            ("debug", "debug"),
            ("trace", "trace"),
        ],
        "info",
    )?;
    let format = c.choice(
        &lf.format,
        "log.format",
        &[("text", LogFormat::Text), ("json", LogFormat::Json)],
        LogFormat::Text,
    )?;
    let log = LogConfig {
        level: level.to_owned(),
        format,
        access: file::flag(lf.access, true),
        file: log_file(&c, lf.file.as_ref())?,
    };

    let state_dir = match &file.state_dir {
        None => PathBuf::from("./state"),
        Some(s) => {
            let dir = PathBuf::from(s.value.trim());
            if s.value.trim().is_empty() {
                return Err(c.err(s, "state_dir", "`state_dir` must not be empty.".into()));
            }
            if dir.exists() && !dir.is_dir() {
                return Err(c.err(
                    s,
                    "state_dir",
                    format!("`state_dir` {:?} exists and is not a directory.", s.value),
                ));
            }
            dir
        }
    };

    Ok(Config {
        source: path.to_path_buf(),
        warnings,
        listeners,
        admin,
        trusted_proxies,
        timeouts,
        limits,
        state_dir,
        workers,
        log,
        pools,
    })
}

/// What listener validation looks at besides the listeners themselves.
#[derive(Clone, Copy)]
struct Context<'a> {
    pools: &'a [PoolConfig],
    trusted_proxies: &'a [IpNet],
}

fn listeners(
    c: &Checker<'_>,
    file: &S<Vec<file::ListenerFile>>,
    pool_index: &HashMap<String, usize>,
    cx: Context<'_>,
    warnings: &mut Vec<String>,
) -> Result<Vec<ListenerConfig>, ConfigError> {
    if file.value.is_empty() {
        return Err(c.err(
            file,
            "listeners",
            "`listeners` must name at least one listener.".into(),
        ));
    }
    let mut listeners: Vec<ListenerConfig> = Vec::new();
    let mut binds: HashMap<SocketAddr, String> = HashMap::new();
    for (i, l) in file.value.iter().enumerate() {
        let key = format!("listeners[{i}]");
        let name = c.name(&l.name, &format!("{key}.name"))?;
        if listeners.iter().any(|other| other.name == name) {
            return Err(c.err(
                &l.name,
                &key,
                format!("listener {name:?} is defined twice."),
            ));
        }
        let bind = c.address(&l.bind, &format!("{key}.bind"))?;
        if let Some((addr, other)) = binds.iter().find(|(addr, _)| conflicts(**addr, bind)) {
            return Err(c.err(
                &l.bind,
                &key,
                format!("listener {name:?} binds {bind}, which conflicts with listener {other:?} on {addr}."),
            ));
        }
        binds.insert(bind, name.clone());
        let pool = match &l.pool {
            Some(p) => Some(lookup_pool(c, pool_index, p, &format!("{key}.pool"))?),
            None => None,
        };
        let mut routes = Vec::new();
        for (j, r) in l.routes.iter().flatten().enumerate() {
            routes.push(route(c, r, &format!("{key}.routes[{j}]"), pool_index)?);
        }
        if pool.is_none() {
            return Err(c.err(
                &l.name,
                &key,
                format!(
                    "listener {name:?} needs a default `pool` for requests its routes do not match."
                ),
            ));
        }
        let (tls, certs) = match &l.tls {
            Some(t) => {
                let (config, certs) = tls::listener(c, t, &key, warnings)?;
                (Some(config), Some(certs))
            }
            None => (None, None),
        };
        let strict_sni = match &l.strict_sni {
            Some(f) if f.value.0 && certs.is_none() => {
                return Err(c.err(
                    f,
                    &format!("{key}.strict_sni"),
                    format!("listener {name:?} does not terminate TLS; `strict_sni` needs its `tls` block."),
                ));
            }
            Some(f) => f.value.0,
            None => false,
        };
        let redirect_https = file::flag(l.redirect_https, false);
        if redirect_https && tls.is_some() {
            return Err(c.err(
                &l.name,
                &format!("{key}.redirect_https"),
                format!("listener {name:?} terminates TLS itself; `redirect_https` belongs on a plain listener beside it."),
            ));
        }
        let proxy_protocol = match &l.proxy_protocol {
            Some(p) if p.value.0 && cx.trusted_proxies.is_empty() => {
                return Err(c.err(
                    p,
                    &format!("{key}.proxy_protocol"),
                    "`proxy_protocol: true` needs `trusted_proxies`: the addresses of the balancers allowed to send the header.".into(),
                ));
            }
            Some(p) => p.value.0,
            None => false,
        };
        let trust_forwarded_after_proxy = match &l.trust_forwarded_after_proxy {
            Some(f) if f.value.0 && !proxy_protocol => {
                return Err(c.err(
                    f,
                    &format!("{key}.trust_forwarded_after_proxy"),
                    "`trust_forwarded_after_proxy` applies to a `proxy_protocol: true` listener only.".into(),
                ));
            }
            Some(f) => f.value.0,
            None => false,
        };
        if tls.is_some() {
            let reachable = pool
                .into_iter()
                .chain(routes.iter().map(|r: &RouteConfig| r.pool));
            let mut warned = Vec::new();
            for i in reachable {
                let p = &cx.pools[i];
                if p.sticky.mode == StickyMode::Cookie
                    && !p.sticky.cookie.secure
                    && !warned.contains(&i)
                {
                    warned.push(i);
                    warnings.push(format!(
                        "pool {:?} is served over TLS by listener {name:?} but its sticky cookie {:?} lacks `secure: true`; browsers would also send it over plain HTTP.",
                        p.name, p.sticky.cookie.name
                    ));
                }
            }
        }
        listeners.push(ListenerConfig {
            name,
            bind,
            tls,
            redirect_https,
            proxy_protocol,
            trust_forwarded_after_proxy,
            certs,
            strict_sni,
            pool,
            routes,
        });
    }
    Ok(listeners)
}

/// `log.file`: a file in a directory that exists (it is created, or
/// appended to, when limpet starts).
fn log_file(c: &Checker<'_>, f: Option<&S<String>>) -> Result<Option<PathBuf>, ConfigError> {
    let Some(f) = f else { return Ok(None) };
    let path = PathBuf::from(f.value.trim());
    let dir = match path.parent() {
        Some(d) if d.as_os_str().is_empty() => Path::new("."),
        Some(d) => d,
        None => {
            return Err(c.err(f, "log.file", "`log.file` must name a file.".into()));
        }
    };
    if f.value.trim().is_empty() || path.file_name().is_none() {
        return Err(c.err(f, "log.file", "`log.file` must name a file.".into()));
    }
    if path.is_dir() {
        return Err(c.err(
            f,
            "log.file",
            format!(
                "`log.file` {:?} is a directory; name a file in it.",
                f.value
            ),
        ));
    }
    if !dir.is_dir() {
        return Err(c.err(
            f,
            "log.file",
            format!(
                "the directory of `log.file` {:?} does not exist; create it (writable by limpet's user).",
                f.value
            ),
        ));
    }
    Ok(Some(path))
}

fn route(
    c: &Checker<'_>,
    r: &file::RouteFile,
    rkey: &str,
    pool_index: &HashMap<String, usize>,
) -> Result<RouteConfig, ConfigError> {
    let host = match &r.host {
        Some(h) if !valid_route_host(&h.value) => {
            return Err(c.err(
                h,
                &format!("{rkey}.host"),
                format!(
                    "a route `host` must be a host name without port such as static.example.com or *.example.com, not {:?}.",
                    h.value
                ),
            ));
        }
        Some(h) => Some(h.value.to_ascii_lowercase()),
        None => None,
    };
    let path_prefix = match &r.path_prefix {
        Some(p) => {
            let v = &p.value;
            let printable = v.bytes().all(|b| b.is_ascii_graphic()) && !v.contains(['?', '#']);
            if !v.starts_with('/') || !printable {
                return Err(c.err(
                    p,
                    &format!("{rkey}.path_prefix"),
                    format!("`path_prefix` must start with `/` and contain no spaces, `?` or `#`, not {v:?}."),
                ));
            }
            let normal = crate::path::normalize(v);
            if normal != *v {
                return Err(c.err(
                    p,
                    &format!("{rkey}.path_prefix"),
                    format!("`path_prefix` {v:?} is matched against normalized paths and would never match; write it as {normal:?}."),
                ));
            }
            Some(v.clone())
        }
        None => None,
    };
    if host.is_none() && path_prefix.is_none() {
        return Err(c.err(
            &r.pool,
            rkey,
            "a route needs `host`, `path_prefix` or both.".into(),
        ));
    }
    let pool = lookup_pool(c, pool_index, &r.pool, &format!("{rkey}.pool"))?;
    Ok(RouteConfig {
        host,
        path_prefix,
        pool,
    })
}

/// A host name (letters, digits, `-`, `_`, dots), optionally `*.`-prefixed,
/// an IPv4 address, or a bracketed IPv6 address; never a port.
fn valid_route_host(h: &str) -> bool {
    if let Some(v6) = h.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    let name = h.strip_prefix("*.").unwrap_or(h);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Two binds conflict when they are the same, or one is the wildcard address
/// of the other's family on the same port.
pub(super) fn conflicts(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

fn lookup_pool(
    c: &Checker<'_>,
    index: &HashMap<String, usize>,
    name: &S<String>,
    key: &str,
) -> Result<usize, ConfigError> {
    index.get(&name.value).copied().ok_or_else(|| {
        c.err(
            name,
            key,
            format!("pool {:?} is not defined under `pools`.", name.value),
        )
    })
}
