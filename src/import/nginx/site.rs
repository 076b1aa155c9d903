//! nginx `server` blocks → listeners: one listener per distinct `listen`
//! address; when several blocks share one, their `server_name`s become
//! host routes (the `default_server`, else the first, takes the rest);
//! `location` prefixes become path routes, `location /` the default pool;
//! `ssl` with certificates becomes `tls` (the default block's certificate
//! first, the others by SNI); a block that only answers `return 301
//! https://...` becomes `redirect_https`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use super::Cx;
use super::value::{Address, address};
use crate::import::directive::Directive;
use crate::import::model::lb_name;
use crate::import::model::{ImportError, Listener, Note, Place, Route, Tls};

struct Listen {
    addr: SocketAddr,
    ssl: bool,
    proxy_protocol: bool,
    default: bool,
}

/// One `server { }` block, read.
struct Site {
    listens: Vec<Listen>,
    hosts: Vec<String>,
    cert: Option<String>,
    key: Option<String>,
    redirect: bool,
    /// The pool of `location /`.
    root: Option<String>,
    /// `(path_prefix, pool)`, longest first.
    prefixes: Vec<(String, String)>,
    /// The notes of this block (their place is set once its listener is named).
    notes: std::ops::Range<usize>,
    /// Where the block starts, for the notes about the block as a whole.
    file: std::path::PathBuf,
    line: usize,
}

/// Every `server` block of the `http` contexts → `cx.lb.listeners`.
pub(super) fn listeners(
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
        sites.push(site(cx, d, cert.clone(), key.clone())?);
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

fn site(
    cx: &mut Cx,
    d: &Directive,
    cert: Option<String>,
    key: Option<String>,
) -> Result<Site, ImportError> {
    let first_note = cx.lb.notes.len();
    let mut s = Site {
        listens: Vec::new(),
        hosts: Vec::new(),
        cert: cert.map(|c| path(&cx.base, &c)),
        key: key.map(|k| path(&cx.base, &k)),
        redirect: false,
        root: None,
        prefixes: Vec::new(),
        notes: 0..0,
        file: d.file.to_path_buf(),
        line: d.line,
    };
    let mut ssl_on = false;
    for e in d.children() {
        let arg = e.args.first().map(String::as_str).unwrap_or("");
        match e.name.as_str() {
            "listen" => match listen(&e.args) {
                Some(l) => s.listens.push(l),
                None => cx.note(e, Place::Top, "limpet listens on IP:port only"),
            },
            "server_name" => {
                for n in &e.args {
                    hosts(cx, e, n, &mut s.hosts);
                }
            }
            "ssl_certificate" => s.cert = Some(path(&cx.base, arg)),
            "ssl_certificate_key" => s.key = Some(path(&cx.base, arg)),
            "ssl" => ssl_on = arg == "on",
            "return" => {
                if is_https_redirect(&e.args) {
                    s.redirect = true;
                } else {
                    cx.note(
                        e,
                        Place::Top,
                        "only `return 301|308 https://…` is carried over",
                    );
                }
            }
            "location" => location(cx, e, &mut s)?,
            _ => cx.common(e, Place::Top),
        }
    }
    if s.listens.is_empty() {
        s.listens.push(Listen {
            addr: SocketAddr::from(([0, 0, 0, 0], 80)),
            ssl: false,
            proxy_protocol: false,
            default: false,
        });
    }
    if ssl_on {
        for l in &mut s.listens {
            l.ssl = true;
        }
    }
    s.prefixes.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
    s.notes = first_note..cx.lb.notes.len();
    Ok(s)
}

fn is_https_redirect(args: &[String]) -> bool {
    matches!(
        args.first().map(String::as_str),
        Some("301" | "302" | "307" | "308")
    ) && args.get(1).is_some_and(|u| u.starts_with("https://"))
}

/// `server_name` entries → route hosts.
fn hosts(cx: &mut Cx, e: &Directive, n: &str, out: &mut Vec<String>) {
    let n = n.to_ascii_lowercase();
    if n.is_empty() || n == "_" {
        return;
    }
    let list = match n.strip_prefix('.') {
        Some(rest) => vec![rest.to_owned(), format!("*.{rest}")],
        None => vec![n.clone()],
    };
    let valid = |h: &str| {
        let name = h.strip_prefix("*.").unwrap_or(h);
        !name.is_empty()
            && name.split('.').all(|l| {
                !l.is_empty()
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
    };
    if list.iter().all(|h| valid(h)) {
        out.extend(list);
    } else {
        cx.note(
            e,
            Place::Top,
            &format!("`{n}`: only exact names and `*.` wildcards route"),
        );
    }
}

fn location(cx: &mut Cx, e: &Directive, s: &mut Site) -> Result<(), ImportError> {
    let prefix = match e.args.as_slice() {
        [p] if !p.starts_with('@') => p.clone(),
        [m, p] if m == "^~" => p.clone(),
        _ => {
            cx.note(
                e,
                Place::Top,
                "only prefix locations are carried over (exact, regex and named are not)",
            );
            return Ok(());
        }
    };
    let mut pool = None;
    for c in e.children() {
        match c.name.as_str() {
            "proxy_pass" => pool = proxy_pass(cx, c, &prefix)?,
            "return" if prefix == "/" && is_https_redirect(&c.args) => s.redirect = true,
            "location" => cx.note(c, Place::Top, "nested locations are not carried over"),
            "return" => cx.note(
                c,
                Place::Top,
                "only `return 301|308 https://…` is carried over",
            ),
            _ => cx.common(c, Place::Top),
        }
    }
    match pool {
        Some(p) if prefix == "/" => s.root = Some(p),
        Some(p) => s.prefixes.push((prefix, p)),
        None if s.redirect => {}
        None if e.children().iter().any(|c| c.name == "proxy_pass") => {}
        None => cx.note(
            e,
            Place::Top,
            "a location without proxy_pass is not carried over",
        ),
    }
    Ok(())
}

/// `proxy_pass http://UPSTREAM[/uri]` or `http://IP:port` → the pool.
fn proxy_pass(cx: &mut Cx, d: &Directive, prefix: &str) -> Result<Option<String>, ImportError> {
    let target = d.args.first().map(String::as_str).unwrap_or("");
    let (tls, rest) = match (
        target.strip_prefix("http://"),
        target.strip_prefix("https://"),
    ) {
        (Some(r), _) => (false, r),
        (_, Some(r)) => (true, r),
        _ => {
            cx.note(d, Place::Top, "only http:// and https:// are carried over");
            return Ok(None);
        }
    };
    let (host, uri) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if host.contains('$') {
        cx.note(
            d,
            Place::Top,
            "a target built from variables is not carried over",
        );
        return Ok(None);
    }
    if !uri.is_empty() && uri != prefix {
        cx.note(
            d,
            Place::Top,
            "the URI part is not carried: limpet forwards the path as received",
        );
    }
    let pool = match cx.upstreams.get(host) {
        Some(p) => p.clone(),
        None => match address(host, if tls { 443 } else { 80 }) {
            Address::Ip(a) => cx.address_pool(a),
            Address::Unix => {
                cx.note(d, Place::Top, "limpet reaches servers over TCP only");
                return Ok(None);
            }
            Address::Host if host.contains(':') => {
                cx.note(d, Place::Top, "write an upstream or the server's IP:port");
                return Ok(None);
            }
            Address::Host => {
                return Err(d.error(format!(
                    "proxy_pass to {host:?}: no such upstream, and not an address"
                )));
            }
        },
    };
    if tls && let Some(p) = cx.lb.pools.iter_mut().find(|p| p.name == pool) {
        for s in &mut p.servers {
            s.tls = true;
        }
    }
    Ok(Some(pool))
}

/// `listen ADDR [ssl] [proxy_protocol] [default_server] ...`.
fn listen(args: &[String]) -> Option<Listen> {
    let (addr, flags) = args.split_first()?;
    let addr = if let Ok(port) = addr.parse::<u16>() {
        SocketAddr::from(([0, 0, 0, 0], port))
    } else if let Some(port) = addr.strip_prefix("*:") {
        SocketAddr::from(([0, 0, 0, 0], port.parse().ok()?))
    } else {
        match address(addr, 80) {
            Address::Ip(a) => a,
            _ => return None,
        }
    };
    let has = |f: &str| flags.iter().any(|x| x == f);
    Some(Listen {
        addr,
        ssl: has("ssl"),
        proxy_protocol: has("proxy_protocol"),
        default: has("default_server") || has("default"),
    })
}

/// A certificate path as nginx reads it: relative to the configuration's
/// directory.
fn path(base: &Path, p: &str) -> String {
    base.join(p).display().to_string()
}
