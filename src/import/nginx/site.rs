//! One nginx `server { }` block, read: its `listen` addresses (`ssl`,
//! `proxy_protocol`, `default_server`), `server_name`s as route hosts, its
//! certificate, `location` prefixes with the pool each `proxy_pass` names
//! (an `upstream`, or a one-server pool for `IP:port`), and whether it only
//! answers `return 301 https://…`. [`super::listener`] then makes listeners
//! of the blocks; everything else in a block goes to the context walk
//! (`Cx::common`) or becomes a note.

use std::net::SocketAddr;
use std::path::Path;

use super::Cx;
use super::value::{Address, address};
use crate::import::directive::Directive;
use crate::import::model::{ImportError, Place};

/// One `listen` of a block.
pub(super) struct Listen {
    pub(super) addr: SocketAddr,
    pub(super) ssl: bool,
    pub(super) proxy_protocol: bool,
    pub(super) default: bool,
}

/// One `server { }` block, read.
pub(super) struct Site {
    pub(super) listens: Vec<Listen>,
    pub(super) hosts: Vec<String>,
    pub(super) cert: Option<String>,
    pub(super) key: Option<String>,
    pub(super) redirect: bool,
    /// The pool of `location /`.
    pub(super) root: Option<String>,
    /// `(path_prefix, pool)`, longest first.
    pub(super) prefixes: Vec<(String, String)>,
    /// The notes of this block (their place is set once its listener is named).
    pub(super) notes: std::ops::Range<usize>,
    /// Where the block starts, for the notes about the block as a whole.
    pub(super) file: std::path::PathBuf,
    pub(super) line: usize,
}

/// One `server { }` block; `cert` and `key` are the `http` context's.
pub(super) fn read(
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
