//! A `frontend` (or the front half of a `listen`) → listeners, one per
//! `bind` address: TLS from `ssl crt`, `accept-proxy`, the HTTPS redirect,
//! and routes from `use_backend … if` conditions on the Host header
//! (`hdr(host)`, `hdr_dom(host)`) and the path (`path_beg`), written inline
//! (`{ … }`) or as named `acl`s.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::acl::{Match, acl, routes_of, src_of};
use super::backend::{is_back_only, is_front_only};
use super::lex::{Kind, Line};
use super::value;
use super::{Cx, Proxy, why_not};
use crate::import::model::{ImportError, Listener, Place, Route, Tls};

const MS: Duration = Duration::from_millis(1);
const HOUR: Duration = Duration::from_secs(3600);

/// Options of `bind` that take a value.
const BIND_VALUE: &[&str] = &[
    "crt",
    "crt-list",
    "alpn",
    "npn",
    "ciphers",
    "ciphersuites",
    "curves",
    "ecdhe",
    "ssl-min-ver",
    "ssl-max-ver",
    "ca-file",
    "crl-file",
    "verify",
    "name",
    "process",
    "thread",
    "interface",
    "mss",
    "backlog",
    "maxconn",
    "tcp-ut",
    "user",
    "group",
    "mode",
    "uid",
    "gid",
    "level",
    "severity-output",
    "nice",
    "id",
    "namespace",
    "crt-ignore-err",
    "ca-ignore-err",
    "sigalgs",
    "client-sigalgs",
    "proto",
    "quic-cc-algo",
    "ca-verify-file",
    "ocsp-update",
    "label",
];

/// The plain listeners a frontend's directives are gathered into.
struct Bind<'a> {
    line: &'a Line,
    addr: SocketAddr,
    tls: Option<Tls>,
    proxy_protocol: bool,
}

pub fn listeners(
    cx: &mut Cx<'_>,
    p: &Proxy<'_>,
    pools: &HashMap<String, Option<String>>,
) -> Result<Vec<Listener>, ImportError> {
    let base = cx.unique_name(p.name, p.header, Place::Top, "listener");
    let here = Place::Listener(base.clone());
    let mut acls: HashMap<&str, Result<Vec<Match>, String>> = HashMap::new();
    let mut binds = Vec::new();
    let mut routes = Vec::new();
    let mut pool: Option<String> = None;
    let mut redirect = false;
    let mut proxy_from: Vec<String> = Vec::new();
    if p.kind == Kind::Listen {
        pool = pools.get(p.name).cloned().flatten();
        if p.header.words.len() > 2 && p.header.word(2) != "from" {
            bind(cx, p.header, &here, &mut binds);
        }
    }
    for &(l, inherited) in &p.lines {
        let place = Proxy::place(inherited, here.clone());
        let front = is_front_only(l) || matches!(l.word(0), "acl" | "mode");
        if p.kind == Kind::Frontend && is_back_only(l) {
            if !inherited {
                cx.note(
                    l,
                    place,
                    "a backend directive in a frontend: HAProxy ignores it too",
                );
            }
            continue;
        }
        if !front && p.kind == Kind::Listen {
            continue; // the backend half read it
        }
        match (l.word(0), l.word(1)) {
            ("mode", _) => {}
            ("bind", _) => bind(cx, l, &place, &mut binds),
            ("acl", name) => {
                let m = acl(&l.words[2..]);
                let slot = acls.entry(name).or_insert_with(|| Ok(Vec::new()));
                match m {
                    Ok(more) => {
                        if let Ok(all) = slot {
                            all.extend(more);
                        }
                    }
                    Err(why) => *slot = Err(why),
                }
            }
            ("default_backend", name) => {
                pool = target(cx, l, name, pools, &place)?;
            }
            ("use_backend", name) => {
                let Some(to) = target(cx, l, name, pools, &place)? else {
                    continue;
                };
                let cond = &l.words[2..];
                if cond.is_empty() {
                    pool.get_or_insert(to);
                    continue;
                }
                match routes_of(cond, &acls) {
                    Ok(found) => {
                        routes.extend(found.into_iter().map(|(host, path_prefix)| Route {
                            host,
                            path_prefix,
                            pool: to.clone(),
                        }))
                    }
                    Err(why) => cx.note(
                        l,
                        place,
                        &format!("not carried over: {why} (limpet routes by host and path prefix)"),
                    ),
                }
            }
            ("http-request", "redirect") => {
                let rest: Vec<&str> = l.words[2..].iter().map(String::as_str).collect();
                match rest.as_slice() {
                    ["scheme", "https"]
                    | ["scheme", "https", "unless", "{", "ssl_fc", "}"]
                    | ["scheme", "https", "if", "!{", "ssl_fc", "}"]
                    | ["scheme", "https", "if", "!", "{", "ssl_fc", "}"] => redirect = true,
                    _ => cx.note(
                        l,
                        place,
                        "only `redirect scheme https` (unless ssl_fc) is carried over",
                    ),
                }
            }
            ("maxconn", n) => match n.parse::<u64>() {
                Ok(n) => cx.frontend_maxconn = cx.frontend_maxconn.saturating_add(n),
                Err(_) => cx.note(l, place, "not a number"),
            },
            ("timeout", which @ ("client" | "http-request" | "http-keep-alive")) => {
                let which = match which {
                    "client" => "client",
                    "http-request" => "http-request",
                    _ => "http-keep-alive",
                };
                let span = if which == "http-request" {
                    (MS, HOUR)
                } else {
                    (MS, 24 * HOUR)
                };
                cx.timeout(which, l, place, span);
            }
            ("tcp-request", "connection") if l.word(2) == "expect-proxy" => {
                match src_of(&l.words[3..], &acls) {
                    Some(nets) => proxy_from.extend(nets),
                    None => cx.note(l, place, "only `expect-proxy layer4 if { src NETWORKS }` is carried over (as trusted_proxies)"),
                }
            }
            ("option", "forwardfor") if l.words.len() == 2 => {}
            ("option", "forwardfor") => cx.note(
                l,
                place,
                "limpet always appends to X-Forwarded-For (no `except`, no other header name)",
            ),
            ("option", "http-keep-alive") => {}
            _ => {
                let why = why_not(&l.words);
                cx.note(l, place, why);
            }
        }
    }
    // The sources this frontend itself names: accept-proxy is carried over
    // only with them, whatever other frontends (earlier or later) trust.
    let own_sources = !proxy_from.is_empty();
    if own_sources {
        for n in proxy_from {
            if !cx.trusted_proxies.contains(&n) {
                cx.trusted_proxies.push(n);
            }
        }
        for b in &mut binds {
            b.proxy_protocol = true;
        }
    }
    let pool = match pool {
        Some(p) => p,
        None => match routes.first() {
            Some(r) => {
                let why = format!(
                    "HAProxy answered 503 when no rule matched; limpet needs a default pool, so those requests go to {}",
                    r.pool
                );
                cx.note(p.header, here.clone(), &why);
                r.pool.clone()
            }
            None => {
                cx.note(
                    p.header,
                    Place::Top,
                    "no backend: this frontend is not carried over",
                );
                return Ok(Vec::new());
            }
        },
    };
    let mut out = Vec::new();
    for b in binds {
        if let Some((_, other)) = cx.binds.iter().find(|(a, _)| conflicts(*a, b.addr)) {
            let why = format!("this address conflicts with listener {other:?}: not carried over");
            cx.note(b.line, here.clone(), &why);
            continue;
        }
        let name = if out.is_empty() {
            base.clone()
        } else {
            let name = format!("{base}-{}", b.addr.port());
            cx.unique_name(&name, b.line, here.clone(), "listener")
        };
        cx.binds.push((b.addr, name.clone()));
        if b.proxy_protocol && !own_sources {
            cx.note(b.line, Place::Listener(name.clone()), "accept-proxy is not carried over: limpet believes a PROXY header only from trusted_proxies, which this frontend does not name (`tcp-request connection expect-proxy layer4 if { src … }`); add them and `proxy_protocol: true`");
        }
        out.push(Listener {
            name,
            bind: b.addr.to_string(),
            pool: Some(pool.clone()),
            routes: routes.clone(),
            redirect_https: redirect && b.tls.is_none(),
            proxy_protocol: b.proxy_protocol && own_sources,
            tls: b.tls,
        });
    }
    if out.is_empty() {
        cx.note(
            p.header,
            Place::Top,
            "no `bind` limpet can listen on: this frontend is not carried over",
        );
    }
    Ok(out)
}

/// Two binds that cannot both listen (as `limpet check` says).
fn conflicts(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// The pool a `default_backend`/`use_backend` names; an unknown backend
/// is an error, a TCP one a note.
fn target(
    cx: &mut Cx<'_>,
    l: &Line,
    name: &str,
    pools: &HashMap<String, Option<String>>,
    place: &Place,
) -> Result<Option<String>, ImportError> {
    if name.contains("%[") {
        cx.note(
            l,
            place.clone(),
            "a backend chosen by a sample expression is not carried over",
        );
        return Ok(None);
    }
    match pools.get(name) {
        Some(Some(pool)) => Ok(Some(pool.clone())),
        Some(None) => {
            cx.note(
                l,
                place.clone(),
                "that backend is not carried over (see its note)",
            );
            Ok(None)
        }
        None => Err(ImportError::new(
            cx.file,
            l.no,
            format!("`{}` names no backend {name:?}", l.word(0)),
        )),
    }
}

fn bind<'a>(cx: &mut Cx<'_>, l: &'a Line, place: &Place, binds: &mut Vec<Bind<'a>>) {
    let (addrs, opts) = if l.word(0) == "listen" {
        (l.word(2), &l.words[3..])
    } else {
        (l.word(1), &l.words[2..])
    };
    let mut ssl = false;
    let mut crts = Vec::new();
    let mut proxy = false;
    let mut skipped = Vec::new();
    let mut i = 0;
    while let Some(k) = opts.get(i).map(String::as_str) {
        let v = if BIND_VALUE.contains(&k) {
            i += 1;
            opts.get(i).map_or("", String::as_str)
        } else {
            ""
        };
        i += 1;
        match k {
            "ssl" => ssl = true,
            "crt" => crts.push(Cx::resolve(&cx.crt_base, v)),
            "accept-proxy" => proxy = true,
            "alpn" | "v4v6" => {}
            _ if v.is_empty() => skipped.push(k.to_owned()),
            _ => skipped.push(format!("{k} {v}")),
        }
    }
    if !skipped.is_empty() {
        let list: Vec<String> = skipped.iter().map(|s| format!("`{s}`")).collect();
        cx.note(l, place.clone(), &format!("bind options {} are not carried over (limpet's TLS: rustls defaults, TLS 1.2 and 1.3)", list.join(", ")));
    }
    let tls = if ssl {
        certificates(cx, l, place, crts)
    } else {
        None
    };
    if ssl && tls.is_none() {
        return cx.note(
            l,
            place.clone(),
            "`ssl` without a certificate file limpet can use: this bind is not carried over",
        );
    }
    for a in addrs.split(',') {
        match value::address(a) {
            Ok(addr) if !binds.iter().any(|b| b.addr == addr) => binds.push(Bind {
                line: l,
                addr,
                tls: tls.clone(),
                proxy_protocol: proxy,
            }),
            Ok(_) => {}
            Err(why) => cx.note(
                l,
                place.clone(),
                &format!("bind {a} is not carried over: {why}"),
            ),
        }
    }
}

/// `crt` files: the first is the default certificate, the others are
/// chosen by SNI; a directory is expanded to the files it holds now.
fn certificates(cx: &mut Cx<'_>, l: &Line, place: &Place, crts: Vec<String>) -> Option<Tls> {
    let mut files = Vec::new();
    for c in crts {
        let path = std::path::Path::new(&c);
        if !path.is_dir() {
            files.push(c);
            continue;
        }
        let mut found: Vec<String> = std::fs::read_dir(path)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.is_file()
                    && !p.extension().is_some_and(|e| {
                        ["key", "ocsp", "issuer", "sctl"].contains(&e.to_string_lossy().as_ref())
                    })
            })
            .map(|p| p.display().to_string())
            .collect();
        found.sort();
        cx.note(l, place.clone(), &format!("crt {c} is a directory: its {} files as of this import are listed; a certificate added there later needs an `sni` entry", found.len()));
        files.extend(found);
    }
    let mut files = files.into_iter();
    let first = files.next()?;
    Some(Tls {
        cert: first.clone(),
        key: first,
        sni: files.map(|f| (f.clone(), f)).collect(),
    })
}
