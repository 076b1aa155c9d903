//! Apache httpd (`mod_proxy_balancer`) → `lb.yaml`. [`conf`] reads the
//! grammar (includes expanded, `FILE:LINE` kept); this file walks it:
//! `Listen` and `<VirtualHost>` (addresses read by [`address`]) are kept
//! for the listeners [`listener`] makes (several name-based vhosts on one
//! address become host routes), `ProxyPass` routes by path prefix
//! ([`pass`]), `<Proxy balancer://…>` pools ([`balancer`]), an HTTPS
//! redirect `redirect_https`; everything else becomes a note.

mod address;
pub mod balancer;
pub mod conf;
mod listener;
mod pass;

use std::path::Path;

use address::{bind, host};
use balancer::{Balancer, Member, RouteCookie};
use pass::Pass;

use super::Options;
use super::directive::Directive;
use super::model::{ImportError, Lb, Note, Place, Pool, lb_name};

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

/// One `<VirtualHost>` (or the main server), read.
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

/// The walk under way: what has been read, then the model.
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

    /// What was read → the model: the balancers' pools, the timeouts, the
    /// listeners.
    fn finish(mut self, file: &Path, options: &Options) -> Result<Lb, ImportError> {
        let mut pools: Vec<Pool> = Vec::new();
        for b in &self.balancers {
            pools.push(balancer::pool(b, &self.cookies, options, &mut self.lb)?);
        }
        if let Some(t) = self.proxy_timeout.take().or(self.timeout.take()) {
            self.lb.timeouts.backend_response = Some(t);
        }
        self.listeners(&mut pools, options)?;
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
}
