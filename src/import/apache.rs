//! Apache httpd (`mod_proxy_balancer`) → `lb.yaml`. [`conf`] reads the
//! grammar (includes expanded, `FILE:LINE` kept); this file walks it:
//! `Listen` and `<VirtualHost>` become listeners (several name-based vhosts
//! on one address become host routes), `ProxyPass` routes by path prefix,
//! `<Proxy balancer://…>` pools ([`balancer`]), an HTTPS redirect
//! `redirect_https`; everything else becomes a note.

pub mod balancer;
pub mod conf;

use std::path::Path;

use balancer::{Balancer, Member, RouteCookie};

use super::Options;
use super::directive::Directive;
use super::model::{ImportError, Lb, Listener, Note, Place, Pool, Route, Server, Tls, lb_name};

/// Reads `file` (and what it includes) into the model.
pub fn import(file: &Path, options: &Options) -> Result<Lb, ImportError> {
    let directives = conf::load(file)?;
    let mut walk = Walk::default();
    for d in &directives {
        walk.server(d, None, Scope::Main)?;
    }
    walk.finish(file, options)
}

/// Where a directive sits, for what it can mean.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    Main,
    /// The index of a vhost in `Walk::vhosts`.
    VHost(usize),
}

#[derive(Debug, Default)]
struct VHost {
    /// `IP:port` binds.
    addrs: Vec<String>,
    names: Vec<String>,
    ssl: Option<Directive>,
    cert: Option<String>,
    key: Option<String>,
    passes: Vec<Pass>,
    redirect: bool,
    /// Notes placed before its listener once that is named.
    notes: Vec<Note>,
    /// `RewriteCond`s waiting for their `RewriteRule`.
    conds: Vec<Directive>,
}

#[derive(Debug)]
struct Pass {
    path: String,
    target: String,
    at: Directive,
}

#[derive(Default)]
struct Walk {
    listens: Vec<String>,
    main: VHost,
    vhosts: Vec<VHost>,
    balancers: Vec<Balancer>,
    cookies: Vec<RouteCookie>,
    lb: Lb,
    timeout: Option<String>,
    proxy_timeout: Option<String>,
}

/// Global directives with no bearing on balancing: skipped silently.
const SILENT: &[&str] = &[
    "ServerRoot",
    "LoadModule",
    "LoadFile",
    "User",
    "Group",
    "PidFile",
    "ErrorLog",
    "LogLevel",
    "Mutex",
    "ServerAdmin",
    "ServerTokens",
    "ServerSignature",
    "DefaultRuntimeDir",
    "TypesConfig",
    "AddDefaultCharset",
    "HostnameLookups",
    "EnableSendfile",
    "EnableMMAP",
    "StartServers",
    "MinSpareThreads",
    "MaxSpareThreads",
    "ThreadLimit",
    "ThreadsPerChild",
    "ServerLimit",
    "MaxConnectionsPerChild",
    "MaxRequestsPerChild",
    "AccessFileName",
    "UseCanonicalName",
    "KeepAlive",
    "MaxKeepAliveRequests",
    "ProxyPreserveHost",
    "ProxyPassReverse",
    "ProxyVia",
    "RewriteEngine",
    "SSLProxyEngine",
    "SSLRandomSeed",
    "SSLSessionCache",
    "SSLSessionCacheTimeout",
    "SSLPassPhraseDialog",
    "NameVirtualHost",
];

impl Walk {
    fn vhost(&mut self, scope: Scope) -> &mut VHost {
        match scope {
            Scope::VHost(i) => &mut self.vhosts[i],
            Scope::Main => &mut self.main,
        }
    }

    /// A note placed before the scope's listener (or at the top).
    fn note(&mut self, d: &Directive, why: impl Into<String>, scope: Scope) {
        let note = d.note(why, Place::Top);
        match scope {
            Scope::Main => self.lb.notes.push(note),
            Scope::VHost(_) => self.vhost(scope).notes.push(note),
        }
    }

    /// One directive in server context; `location` is the enclosing
    /// `<Location>` path.
    fn server(
        &mut self,
        d: &Directive,
        location: Option<&str>,
        scope: Scope,
    ) -> Result<(), ImportError> {
        let name = d.name.to_ascii_lowercase();
        if SILENT.iter().any(|s| d.is(s)) {
            return Ok(());
        }
        match name.as_str() {
            "ifmodule" | "ifdefine" | "ifversion" => {
                for inner in d.children() {
                    self.server(inner, location, scope)?;
                }
            }
            "virtualhost" if scope == Scope::Main => {
                let i = self.vhosts.len();
                let addrs = d.args.iter().map(|a| bind(a)).collect();
                self.vhosts.push(VHost { addrs, ..VHost::default() });
                for inner in d.children() {
                    self.server(inner, None, Scope::VHost(i))?;
                }
                let left = std::mem::take(&mut self.vhosts[i].conds);
                for c in left {
                    self.note(&c, "a rewrite condition is not carried over", Scope::VHost(i));
                }
            }
            "location" if location.is_none() => {
                let path = d.arg(0).to_owned();
                for inner in d.children() {
                    self.server(inner, Some(&path), scope)?;
                }
            }
            "proxy" if d.arg(0).to_ascii_lowercase().starts_with("balancer://") => {
                let b = self.balancer(d.arg(0), d);
                for inner in d.children() {
                    if inner.is("BalancerMember") {
                        self.balancers[b].members.push(Member {
                            url: inner.arg(0).to_owned(),
                            params: balancer::params(&inner.args[1..]),
                            at: inner.clone(),
                        });
                    } else if inner.is("ProxySet") {
                        self.set(b, &inner.args, inner);
                    } else {
                        let pool = self.balancers[b].pool.clone();
                        self.lb.notes.push(inner.note(
                            "not carried over (limpet has no per-balancer access rules or options)",
                            Place::Pool(pool),
                        ));
                    }
                }
            }
            "balancermember" => {
                let b = self.balancer(d.arg(0), d);
                self.balancers[b].members.push(Member {
                    url: d.arg(1).to_owned(),
                    params: balancer::params(d.args.get(2..).unwrap_or(&[])),
                    at: d.clone(),
                });
            }
            "proxyset" => {
                let b = self.balancer(d.arg(0), d);
                self.set(b, d.args.get(1..).unwrap_or(&[]), d);
            }
            "listen" => self.listens.push(bind(d.arg(0))),
            "servername" | "serveralias" if scope != Scope::Main => {
                let names = d.args.iter().map(|n| host(n));
                self.vhost(scope).names.extend(names);
            }
            "servername" => {}
            "sslengine" if d.arg(0).eq_ignore_ascii_case("on") => {
                self.vhost(scope).ssl = Some(d.clone());
            }
            "sslengine" => {}
            "sslcertificatefile" => self.vhost(scope).cert = Some(d.arg(0).to_owned()),
            "sslcertificatekeyfile" => self.vhost(scope).key = Some(d.arg(0).to_owned()),
            "sslcertificatechainfile" => self.note(
                d,
                "limpet reads the chain from `cert`: append this file to the certificate file",
                scope,
            ),
            "sslprotocol" | "sslciphersuite" | "sslhonorcipherorder" => self.note(
                d,
                "limpet offers TLS 1.2 and 1.3 with rustls' safe defaults; not configurable",
                scope,
            ),
            "proxypass" => self.pass(d, location, scope),
            "proxyrequests" if !d.arg(0).eq_ignore_ascii_case("on") => {}
            "timeout" => self.timeout = Some(balancer::seconds(d.arg(0))),
            "proxytimeout" => self.proxy_timeout = Some(balancer::seconds(d.arg(0))),
            "keepalivetimeout" => self.lb.timeouts.client_idle = Some(balancer::seconds(d.arg(0))),
            "maxrequestworkers" | "maxclients" => match d.arg(0).parse::<u64>() {
                Ok(n) => self.lb.max_connections = Some(n),
                Err(_) => self.note(d, "not a number; not carried over", scope),
            },
            "remoteipinternalproxy" | "remoteiptrustedproxy" => {
                for a in &d.args {
                    if a.parse::<ipnet::IpNet>().is_ok() || a.parse::<std::net::IpAddr>().is_ok() {
                        self.lb.trusted_proxies.push(a.clone());
                    } else {
                        self.note(d, format!("{a} is not an address or a network; not carried over"), scope);
                    }
                }
            }
            "remoteipheader" if d.arg(0).eq_ignore_ascii_case("x-forwarded-for") => {}
            "redirect" | "redirectpermanent" | "redirectmatch" => {
                let (from, to) = match d.args.len() {
                    2 => (d.arg(0), d.arg(1)),
                    _ => (d.arg(1), d.arg(2)),
                };
                let whole = matches!(from, "/" | "^/(.*)$" | "^/(.*)" | "^(.*)$");
                if whole && to.starts_with("https://") && scope != Scope::Main {
                    self.vhost(scope).redirect = true;
                } else {
                    self.note(d, "only a redirect of every path to https:// is carried over (redirect_https)", scope);
                }
            }
            "rewritecond" => self.vhost(scope).conds.push(d.clone()),
            "rewriterule" => {
                let conds = std::mem::take(&mut self.vhost(scope).conds);
                let flags = d.arg(2).to_ascii_uppercase();
                let whole = matches!(d.arg(0), "^/(.*)$" | "^/(.*)" | "^/?(.*)" | "^(.*)$" | "^/?(.*)$" | "(.*)");
                if whole && d.arg(1).starts_with("https://") && flags.contains('R') && scope != Scope::Main {
                    self.vhost(scope).redirect = true;
                } else {
                    for c in conds {
                        self.note(&c, "a rewrite condition is not carried over", scope);
                    }
                    self.note(d, "URL rewriting is not carried over (only a redirect of every path to https://, as redirect_https)", scope);
                }
            }
            "header" => match RouteCookie::of(d) {
                Some(c) => self.cookies.push(c),
                None => self.note(d, "limpet does not rewrite response headers", scope),
            },
            "requestheader" => self.note(
                d,
                "limpet does not rewrite request headers (it sets X-Forwarded-For, -Proto and -Host itself)",
                scope,
            ),
            "logformat" | "customlog" | "transferlog" => self.note(
                d,
                "limpet writes its own access log (log.access, log.format text|json); the format is not carried over",
                scope,
            ),
            "documentroot" | "alias" | "scriptalias" => self.note(d, "limpet serves no files", scope),
            "directory" | "directorymatch" | "files" | "filesmatch" | "locationmatch" | "proxy"
            | "proxymatch" | "location" | "virtualhost" => self.note(
                d,
                "this section (and what it holds) is not carried over",
                scope,
            ),
            n if n.starts_with("auth") || n.starts_with("require") || matches!(n, "order" | "allow" | "deny" | "satisfy") => {
                self.note(d, "access control is not carried over (limpet has none)", scope)
            }
            n if n.starts_with("secrule") || n.starts_with("secaction") || n.starts_with("secrequest") || n.starts_with("secresponse") || n.starts_with("secaudit") || n.starts_with("secdata") || n.starts_with("sectmp") || n.starts_with("secdebug") => {
                self.note(d, "mod_security is not carried over (limpet has no WAF)", scope)
            }
            _ => self.note(d, "not carried over", scope),
        }
        Ok(())
    }

    /// The balancer named by `url` (created on first mention).
    fn balancer(&mut self, url: &str, at: &Directive) -> usize {
        let key = url.trim_end_matches('/').to_ascii_lowercase();
        if let Some(i) = self.balancers.iter().position(|b| b.url == key) {
            return i;
        }
        let pool = lb_name(key.strip_prefix("balancer://").unwrap_or(&key));
        self.balancers.push(Balancer {
            pool,
            url: key,
            at: Some(at.clone()),
            ..Balancer::default()
        });
        self.balancers.len() - 1
    }

    fn set(&mut self, b: usize, args: &[String], at: &Directive) {
        for (k, v) in balancer::params(args) {
            self.balancers[b].params.push((k, v, at.clone()));
        }
    }

    /// `ProxyPass PATH TARGET [k=v…]`, or `ProxyPass TARGET` in a `<Location PATH>`.
    fn pass(&mut self, d: &Directive, location: Option<&str>, scope: Scope) {
        let (path, target, rest) = match location {
            Some(p) => (
                p.to_owned(),
                d.arg(0).to_owned(),
                d.args.get(1..).unwrap_or(&[]),
            ),
            None => (
                d.arg(0).to_owned(),
                d.arg(1).to_owned(),
                d.args.get(2..).unwrap_or(&[]),
            ),
        };
        if target == "!" {
            self.note(
                d,
                "Apache served this path itself; limpet sends it to the pool like the rest",
                scope,
            );
            return;
        }
        if target.to_ascii_lowercase().starts_with("balancer://") {
            let name = target
                .get(11..)
                .unwrap_or("")
                .split('/')
                .next()
                .unwrap_or("")
                .to_owned();
            let b = self.balancer(&format!("balancer://{name}"), d);
            self.set(b, rest, d);
        } else if !rest.is_empty() {
            self.note(
                d,
                "parameters of a single-server ProxyPass are not carried over",
                scope,
            );
        }
        let backend_path = target
            .split_once("://")
            .map_or("/", |(_, r)| r.find('/').map_or("/", |i| &r[i..]));
        if backend_path.trim_end_matches('/') != path.trim_end_matches('/') {
            self.note(
                d,
                format!(
                    "the path is forwarded as received: Apache rewrote {path} to {backend_path}"
                ),
                scope,
            );
        }
        self.vhost(scope).passes.push(Pass {
            path,
            target,
            at: d.clone(),
        });
    }

    fn finish(mut self, file: &Path, options: &Options) -> Result<Lb, ImportError> {
        let mut pools: Vec<Pool> = Vec::new();
        for b in &self.balancers {
            pools.push(balancer::pool(b, &self.cookies, options, &mut self.lb)?);
        }
        if let Some(t) = self.proxy_timeout.take().or(self.timeout.take()) {
            self.lb.timeouts.backend_response = Some(t);
        }
        // The main server's ProxyPass apply in every vhost too (after its own).
        let main_passes: Vec<(String, String, Directive)> = self
            .main
            .passes
            .iter()
            .map(|p| (p.path.clone(), p.target.clone(), p.at.clone()))
            .collect();
        let mut vhosts = std::mem::take(&mut self.vhosts);
        for vh in &mut vhosts {
            for (path, target, at) in &main_passes {
                vh.passes.push(Pass {
                    path: path.clone(),
                    target: target.clone(),
                    at: at.clone(),
                });
            }
        }
        // Listen addresses no vhost covers are the main server's.
        let covered: Vec<String> = vhosts.iter().flat_map(|v| v.addrs.clone()).collect();
        let main = std::mem::take(&mut self.main);
        let mut listens = std::mem::take(&mut self.listens);
        listens.dedup();
        let bare: Vec<String> = listens
            .into_iter()
            .filter(|l| !covered.iter().any(|c| same_port(c, l)))
            .collect();
        if !bare.is_empty() && (!main.passes.is_empty() || main.redirect) {
            vhosts.push(VHost {
                addrs: bare,
                ..main
            });
        }
        // A vhost on one IP of a port that a `*` vhost also takes is served
        // by the wildcard listener (limpet binds a port once; its names
        // become host routes there, as Apache picks by name among them).
        let wildcards: Vec<String> = vhosts
            .iter()
            .flat_map(|v| v.addrs.iter())
            .filter(|a| a.starts_with("0.0.0.0:"))
            .cloned()
            .collect();
        for vh in &mut vhosts {
            for a in &mut vh.addrs {
                if !a.starts_with('[')
                    && let Some(w) = wildcards.iter().find(|w| same_port(w, a))
                {
                    a.clone_from(w);
                }
            }
            vh.addrs.dedup();
        }
        // Group by address, in order of first appearance.
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, vh) in vhosts.iter().enumerate() {
            for a in &vh.addrs {
                match groups.iter_mut().find(|(g, _)| g == a) {
                    Some((_, v)) => v.push(i),
                    None => groups.push((a.clone(), vec![i])),
                }
            }
        }
        for (addr, members) in groups {
            let listener = self.listener(&addr, &members, &vhosts, &mut pools, options)?;
            let place = Place::Listener(listener.name.clone());
            for &i in &members {
                for n in &vhosts[i].notes {
                    if !self
                        .lb
                        .notes
                        .iter()
                        .any(|m| m.line == n.line && m.file == n.file)
                    {
                        self.lb.notes.push(Note {
                            place: place.clone(),
                            ..n.clone()
                        });
                    }
                }
            }
            self.lb.listeners.push(listener);
        }
        if self.lb.listeners.is_empty() {
            return Err(ImportError::new(
                file,
                0,
                "no VirtualHost or Listen with a ProxyPass: nothing to balance",
            ));
        }
        self.lb.pools = pools;
        Ok(self.lb)
    }

    fn listener(
        &mut self,
        addr: &str,
        members: &[usize],
        vhosts: &[VHost],
        pools: &mut Vec<Pool>,
        options: &Options,
    ) -> Result<Listener, ImportError> {
        let mut l = Listener {
            bind: addr.to_owned(),
            ..Listener::default()
        };
        for &i in members {
            let vh = &vhosts[i];
            let Some(ssl) = &vh.ssl else { continue };
            let Some(cert) = vh.cert.clone() else {
                return Err(ssl.error("SSLEngine on without SSLCertificateFile"));
            };
            let key = vh.key.clone().unwrap_or_else(|| cert.clone());
            match &mut l.tls {
                None => {
                    l.tls = Some(Tls {
                        cert,
                        key,
                        sni: Vec::new(),
                    })
                }
                Some(t) if t.cert != cert && !t.sni.iter().any(|(c, _)| *c == cert) => {
                    t.sni.push((cert, key))
                }
                Some(_) => {}
            }
        }
        let port = addr.rsplit_once(':').map_or("", |(_, p)| p);
        let base = match (&l.tls, port) {
            (Some(_), "443") => "https".to_owned(),
            (Some(_), p) => format!("https-{p}"),
            (None, "80") => "http".to_owned(),
            (None, p) => format!("http-{p}"),
        };
        l.name = balancer::unique(&base, self.lb.listeners.iter().map(|l| l.name.as_str()));
        let redirecting: Vec<&usize> = members.iter().filter(|&&i| vhosts[i].redirect).collect();
        if !redirecting.is_empty() && l.tls.is_none() && redirecting.len() == members.len() {
            l.redirect_https = true;
        }
        let several = members.len() > 1;
        for &i in members {
            let vh = &vhosts[i];
            if vh.redirect && l.redirect_https {
                continue;
            }
            let hosts: Vec<Option<String>> = if several && !vh.names.is_empty() {
                vh.names.iter().cloned().map(Some).collect()
            } else {
                vec![None]
            };
            let mut root = None;
            for p in &vh.passes {
                let pool = self.target_pool(p, pools, options)?;
                if p.path.trim_end_matches('/').is_empty() {
                    root.get_or_insert(pool);
                    continue;
                }
                for h in &hosts {
                    push_route(
                        &mut l.routes,
                        Route {
                            host: h.clone(),
                            path_prefix: Some(p.path.clone()),
                            pool: pool.clone(),
                        },
                    );
                }
            }
            match root {
                Some(pool) if l.pool.is_none() => l.pool = Some(pool),
                Some(pool) => {
                    for h in &hosts {
                        push_route(
                            &mut l.routes,
                            Route {
                                host: h.clone(),
                                path_prefix: None,
                                pool: pool.clone(),
                            },
                        );
                    }
                }
                None => {}
            }
        }
        if l.pool.is_none() {
            let fallback = l
                .routes
                .first()
                .map(|r| r.pool.clone())
                .or_else(|| pools.first().map(|p| p.name.clone()));
            let Some(pool) = fallback else {
                return Err(ImportError::new(
                    "",
                    0,
                    format!("nothing is proxied on {addr}: no ProxyPass to a balancer or a server"),
                ));
            };
            let first = members.first().and_then(|&i| vhosts[i].passes.first());
            if let Some(p) = first.filter(|_| !l.redirect_https) {
                self.lb.notes.push(p.at.note(
                    format!("Apache answered paths no ProxyPass matched itself; limpet sends them to pool {pool}"),
                    Place::Listener(l.name.clone()),
                ));
            }
            l.pool = Some(pool);
        }
        // Routes that repeat the default pool for every host add nothing.
        let default = l.pool.clone();
        if l.routes.iter().all(|r| Some(&r.pool) == default.as_ref()) {
            l.routes.clear();
        }
        Ok(l)
    }

    /// The pool a `ProxyPass` target names: its balancer's, or a
    /// one-server pool for a plain URL.
    fn target_pool(
        &mut self,
        p: &Pass,
        pools: &mut Vec<Pool>,
        options: &Options,
    ) -> Result<String, ImportError> {
        let t = p.target.to_ascii_lowercase();
        if let Some(rest) = t.strip_prefix("balancer://") {
            return Ok(lb_name(rest.split('/').next().unwrap_or("")));
        }
        let (address, tls, ajp) = balancer::address(&p.target, &p.at, options)?;
        if let Some(pool) = pools.iter().find(|pl| {
            pl.servers.len() == 1 && pl.servers[0].address == address && pl.sticky.is_none()
        }) {
            return Ok(pool.name.clone());
        }
        let name = balancer::unique(
            &lb_name(&address.replace([':', '[', ']'], "-")),
            pools.iter().map(|p| p.name.as_str()),
        );
        if ajp {
            self.lb.notes.push(balancer::ajp_note(
                &p.at,
                options.http_port,
                Place::Server(name.clone(), name.clone()),
            ));
        }
        pools.push(Pool {
            name: name.clone(),
            servers: vec![Server {
                name: name.clone(),
                address,
                tls,
                ..Server::default()
            }],
            ..Pool::default()
        });
        Ok(name)
    }
}

fn push_route(routes: &mut Vec<Route>, r: Route) {
    if !routes.contains(&r) {
        routes.push(r);
    }
}

/// A host name of `ServerName`/`ServerAlias`, without scheme and port.
fn host(n: &str) -> String {
    let n = n.split_once("://").map_or(n, |(_, r)| r);
    let n = if n.starts_with('[') {
        n
    } else {
        n.split(':').next().unwrap_or(n)
    };
    n.to_ascii_lowercase()
}

/// `Listen` / `<VirtualHost>` address → `IP:port`: `*`, `_default_` and a
/// bare port mean every address; no port means 80.
fn bind(a: &str) -> String {
    let a = a.trim();
    let (h, p) = match a.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') && !h.is_empty() => (h, p),
        Some(("", p)) => ("*", p),
        _ if a.parse::<u16>().is_ok() => ("*", a),
        _ => (a, "80"),
    };
    let h = match h {
        "*" | "_default_" | "0.0.0.0" => "0.0.0.0",
        h => h,
    };
    format!("{h}:{p}")
}

fn same_port(a: &str, b: &str) -> bool {
    a.rsplit_once(':').map(|(_, p)| p) == b.rsplit_once(':').map(|(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_normalized() {
        assert_eq!(bind("*:80"), "0.0.0.0:80");
        assert_eq!(bind("443"), "0.0.0.0:443");
        assert_eq!(bind("10.0.0.5:8080"), "10.0.0.5:8080");
        assert_eq!(bind("_default_:443"), "0.0.0.0:443");
        assert_eq!(bind("[::]:80"), "[::]:80");
        assert_eq!(host("www.example.com:443"), "www.example.com");
    }
}
