//! Validation of the `listeners` section: each listener's bind (no two
//! conflicting), TLS and PROXY protocol settings, its default pool and its
//! routes (host and path prefix to a pool).

use std::collections::HashMap;
use std::net::SocketAddr;

use ipnet::IpNet;

use super::super::file::{self, S};
use super::super::{ConfigError, ListenerConfig, PoolConfig, RouteConfig, StickyMode};
use super::checker::Checker;
use super::tls;

/// What listener validation looks at besides the listeners themselves.
#[derive(Clone, Copy)]
pub(super) struct Context<'a> {
    pub pools: &'a [PoolConfig],
    pub trusted_proxies: &'a [IpNet],
}

pub(super) fn validate(
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
        let bind = c.bind_address(&l.bind, &format!("{key}.bind"))?;
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
pub(super) fn valid_route_host(h: &str) -> bool {
    if let Some(v6) = h.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    let name = h.strip_prefix("*.").unwrap_or(h);
    !name.ends_with('.') && super::checker::is_dns_name(name)
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
