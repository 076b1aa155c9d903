//! nginx `server` blocks → listeners: one listener per distinct `listen`
//! address; when several blocks share one, their `server_name`s become
//! host routes (the `default_server`, else the first, takes the rest);
//! `location` prefixes become path routes, `location /` the default pool;
//! `ssl` with certificates becomes `tls` (the default block's certificate
//! first, the others by SNI); a block that only answers `return 301
//! https://...` becomes `redirect_https`. Each block is read by
//! [`super::site`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::Cx;
use super::site::{self, Listen, Site};
use crate::import::directive::Directive;
use crate::import::model::lb_name;
use crate::import::model::{ImportError, Listener, Note, Place, Route, Tls};

/// Every `server` block of the `http` contexts → `cx.lb.listeners`.
pub(super) fn build(
    cx: &mut Cx,
    http: &[&Directive],
    servers: &[&Directive],
) -> Result<(), ImportError> {
    let inherited = |name: &str| {
        http.iter()
            .flat_map(|h| h.children())
            .find(|d| d.name == name)
            .and_then(|d| d.args.first().cloned())
    };
    let (cert, key) = (
        inherited("ssl_certificate"),
        inherited("ssl_certificate_key"),
    );
    let mut sites = Vec::new();
    for d in servers {
        sites.push(site::read(cx, d, cert.clone(), key.clone())?);
    }
    // Distinct addresses in order of appearance; a specific address on a
    // port that a wildcard also takes is served by the wildcard.
    let all: Vec<SocketAddr> = sites
        .iter()
        .flat_map(|s| s.listens.iter().map(|l| l.addr))
        .collect();
    let key_of = |a: SocketAddr| {
        let wild = SocketAddr::new(
            if a.is_ipv4() {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            } else {
                IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
            },
            a.port(),
        );
        if all.contains(&wild) { wild } else { a }
    };
    let mut keys: Vec<SocketAddr> = Vec::new();
    for a in &all {
        let k = key_of(*a);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    for k in keys {
        let members: Vec<(usize, &Listen)> = sites
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.listens
                    .iter()
                    .find(|l| key_of(l.addr) == k)
                    .map(|l| (i, l))
            })
            .collect();
        listener(cx, &sites, k, &members);
    }
    Ok(())
}

fn listener(cx: &mut Cx, sites: &[Site], bind: SocketAddr, members: &[(usize, &Listen)]) {
    let ssl = members.iter().any(|(_, l)| l.ssl);
    let scheme = if ssl { "https" } else { "http" };
    let base = match bind.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => format!("{scheme}-{}", bind.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => format!("{scheme}-v6-{}", bind.port()),
        ip => lb_name(&format!("{scheme}-{ip}-{}", bind.port())),
    };
    let mut name = base.clone();
    let mut n = 2;
    while cx.lb.listeners.iter().any(|l| l.name == name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    let here = Place::Listener(name.clone());
    let default = members
        .iter()
        .find(|(_, l)| l.default)
        .or_else(|| members.first())
        .map(|(i, _)| *i);
    let Some(default) = default else { return };
    for (i, _) in members {
        for note in &mut cx.lb.notes[sites[*i].notes.clone()] {
            if note.place == Place::Top {
                note.place = here.clone();
            }
        }
    }
    let mut l = Listener {
        name: name.clone(),
        bind: bind.to_string(),
        proxy_protocol: members.iter().any(|(_, l)| l.proxy_protocol),
        ..Listener::default()
    };
    let shared = members.len() > 1;
    let mut order: Vec<usize> = members
        .iter()
        .map(|(i, _)| *i)
        .filter(|i| *i != default)
        .collect();
    order.push(default);
    for i in order {
        let s = &sites[i];
        let hosts: Vec<Option<String>> = if shared && i != default {
            s.hosts.iter().cloned().map(Some).collect()
        } else {
            vec![None]
        };
        for host in hosts {
            for (prefix, pool) in &s.prefixes {
                l.routes.push(Route {
                    host: host.clone(),
                    path_prefix: Some(prefix.clone()),
                    pool: pool.clone(),
                });
            }
            if let (Some(h), Some(root)) = (&host, &s.root) {
                l.routes.push(Route {
                    host: Some(h.clone()),
                    path_prefix: None,
                    pool: root.clone(),
                });
            }
        }
    }
    let d = &sites[default];
    l.pool = d.root.clone();
    l.redirect_https = members.iter().all(|(i, _)| sites[*i].redirect) && !ssl;
    if l.redirect_https || l.pool.is_none() {
        l.pool = l
            .routes
            .first()
            .map(|r| r.pool.clone())
            .or_else(|| cx.lb.listeners.first().and_then(|o| o.pool.clone()))
            .or_else(|| cx.lb.pools.first().map(|p| p.name.clone()));
    }
    let Some(pool) = l.pool.clone() else {
        note_at(
            cx,
            d,
            &here,
            "server { … }",
            "not carried over: no proxy_pass to a pool",
        );
        return orphan(cx, &here);
    };
    if d.root.is_none() && !l.redirect_https {
        note_at(
            cx,
            d,
            &here,
            "location / { … }",
            &format!("missing: requests no route matches go to {pool}"),
        );
    }
    if l.proxy_protocol && cx.lb.trusted_proxies.is_empty() {
        l.proxy_protocol = false;
        note_at(
            cx,
            d,
            &here,
            "listen … proxy_protocol",
            "not carried: limpet needs the L4 balancer's address in set_real_ip_from",
        );
    }
    if ssl {
        let Some((cert, key)) = d.cert.clone().zip(d.key.clone()) else {
            note_at(
                cx,
                d,
                &here,
                "listen … ssl",
                "not carried over: no ssl_certificate and ssl_certificate_key",
            );
            return orphan(cx, &here);
        };
        let mut tls = Tls {
            cert,
            key,
            sni: Vec::new(),
        };
        for (i, _) in members {
            if let (Some(c), Some(k)) = (&sites[*i].cert, &sites[*i].key)
                && *c != tls.cert
                && !tls.sni.iter().any(|(o, _)| o == c)
            {
                tls.sni.push((c.clone(), k.clone()));
            }
        }
        l.tls = Some(tls);
    }
    cx.lb.listeners.push(l);
}

/// The notes of a listener that is not written go to the top.
fn orphan(cx: &mut Cx, place: &Place) {
    for n in cx.lb.notes.iter_mut().filter(|n| &n.place == place) {
        n.place = Place::Top;
    }
}

fn note_at(cx: &mut Cx, site: &Site, place: &Place, directive: &str, why: &str) {
    cx.lb.notes.push(Note {
        file: site.file.clone(),
        line: site.line,
        directive: directive.into(),
        why: why.into(),
        place: place.clone(),
    });
}
