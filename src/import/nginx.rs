//! nginx → `lb.yaml`. [`parse`] reads `nginx.conf` and what it includes
//! into directives that remember their FILE:LINE; [`upstream`] turns each
//! `upstream` block into a pool (servers, balance, sticky mode, passive
//! limits); [`site`] reads each `server` block and [`listener`] makes
//! listeners of them (one per distinct `listen` address, routes by
//! `server_name` and location prefix, TLS, redirects); [`value`] reads times
//! and addresses. This file walks the main and `http` contexts: global
//! timeouts, limits and trusted proxies, and a note for every directive that
//! is not carried over.

mod listener;
pub mod parse;
mod site;
mod upstream;
mod value;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Options;
use super::directive::Directive;
use super::model::{ImportError, Lb, Note, Place, Pool};
use value::{duration, server_name, show};

/// Directives that change nothing a balancer in front of Tomcat does
/// (processes, files, MIME types, kernel tuning): skipped without a note.
const IRRELEVANT: &[&str] = &[
    "user",
    "worker_processes",
    "worker_rlimit_nofile",
    "worker_cpu_affinity",
    "worker_priority",
    "pid",
    "daemon",
    "master_process",
    "lock_file",
    "pcre_jit",
    "timer_resolution",
    "working_directory",
    "load_module",
    "use",
    "multi_accept",
    "accept_mutex",
    "accept_mutex_delay",
    "sendfile",
    "tcp_nopush",
    "tcp_nodelay",
    "types",
    "default_type",
    "types_hash_max_size",
    "types_hash_bucket_size",
    "server_names_hash_bucket_size",
    "server_names_hash_max_size",
    "variables_hash_max_size",
    "variables_hash_bucket_size",
    "map_hash_max_size",
    "map_hash_bucket_size",
    "server_tokens",
    "client_body_temp_path",
    "proxy_temp_path",
    "fastcgi_temp_path",
    "uwsgi_temp_path",
    "scgi_temp_path",
    "proxy_http_version",
    "real_ip_recursive",
    "ssl_session_cache",
    "ssl_session_timeout",
    "ssl_session_tickets",
    "ssl_prefer_server_ciphers",
    "zone",
];

/// The headers limpet sets itself (Host is kept; X-Forwarded-* set;
/// WebSocket upgrades tunnelled): `proxy_set_header` of these is carried.
const STANDARD_HEADERS: &[&str] = &[
    "host",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "upgrade",
    "connection",
];

/// Reads `file` (and its includes) into the model.
pub fn import(file: &Path, _options: &Options) -> Result<Lb, ImportError> {
    let top = parse::load(file)?;
    let base = file.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut cx = Cx {
        lb: Lb::default(),
        base,
        upstreams: HashMap::new(),
        maps: Vec::new(),
        set: HashMap::new(),
    };
    let mut http = Vec::new();
    for d in &top {
        match d.name.as_str() {
            "http" => http.push(d),
            "events" => {
                for e in d.children() {
                    match e.name.as_str() {
                        "worker_connections" => {
                            match e.args.first().and_then(|a| a.parse::<u64>().ok()) {
                                Some(n) if (1..=1_000_000).contains(&n) => {
                                    cx.lb.max_connections = Some(n);
                                }
                                _ => cx.note(e, Place::Top, "not a number from 1 to 1000000"),
                            }
                        }
                        n if IRRELEVANT.contains(&n) => {}
                        _ => cx.note(e, Place::Top, "not carried over"),
                    }
                }
            }
            "stream" | "mail" => cx.note(d, Place::Top, "limpet balances HTTP only"),
            _ => cx.other(d, Place::Top),
        }
    }
    let Some(first) = http.first() else {
        return Err(ImportError::new(
            file,
            1,
            "no `http` block: not an nginx configuration limpet can import",
        ));
    };
    for h in &http {
        for d in h.children() {
            match d.name.as_str() {
                "upstream" => {
                    let pool = upstream::pool(&mut cx, d)?;
                    let raw = d.args.first().cloned().unwrap_or_default();
                    cx.upstreams.insert(raw, pool.name.clone());
                    cx.lb.pools.push(pool);
                }
                "map" => cx.maps.push(Map::read(d)),
                _ => {}
            }
        }
    }
    upstream::sticky_routes(&mut cx, &http);
    let mut servers = Vec::new();
    for h in &http {
        for d in h.children() {
            match d.name.as_str() {
                "upstream" | "map" => {}
                "server" => servers.push(d),
                _ => cx.common(d, Place::Top),
            }
        }
    }
    listener::build(&mut cx, &http, &servers)?;
    for m in std::mem::take(&mut cx.maps) {
        if !m.used && !m.to.eq_ignore_ascii_case("$connection_upgrade") {
            cx.lb.notes.push(Note {
                file: m.file,
                line: m.line,
                directive: m.text,
                why: "maps are not carried over".into(),
                place: Place::Top,
            });
        }
    }
    let retries = cx.set.get("retries").cloned();
    if let Some(r) = retries.and_then(|r| r.parse::<u32>().ok()) {
        for p in &mut cx.lb.pools {
            p.retries.get_or_insert(r);
        }
    }
    if cx.lb.pools.is_empty() {
        return Err(first.error("no `upstream` and no `proxy_pass`: nothing to balance"));
    }
    Ok(cx.lb)
}

/// A `map $from $to { ... }` block, kept for `sticky route`.
pub(crate) struct Map {
    pub from: String,
    pub to: String,
    /// The patterns (left column) of its entries.
    pub patterns: Vec<String>,
    pub used: bool,
    file: PathBuf,
    line: usize,
    text: String,
}

impl Map {
    fn read(d: &Directive) -> Map {
        Map {
            from: d.args.first().cloned().unwrap_or_default(),
            to: d.args.get(1).cloned().unwrap_or_default(),
            patterns: d.children().iter().map(|e| e.name.clone()).collect(),
            used: false,
            file: d.file.to_path_buf(),
            line: d.line,
            text: d.text.clone(),
        }
    }
}

/// The translation under way.
pub(crate) struct Cx {
    pub lb: Lb,
    /// The main file's directory: `include`s and relative certificate
    /// paths are read from there.
    pub base: PathBuf,
    /// Upstream name as written → pool name.
    pub upstreams: HashMap<String, String>,
    pub maps: Vec<Map>,
    /// Settings with one global value in `lb.yaml` (`timeouts.*`,
    /// `retries`) → the value, to note a second, different one.
    set: HashMap<&'static str, String>,
}

impl Cx {
    pub fn note(&mut self, d: &Directive, place: Place, why: &str) {
        self.lb.notes.push(d.note(why, place));
    }

    /// A directive of the `http`, `server` or `location` context that is
    /// not about pools and listeners: global settings, or a note.
    pub fn common(&mut self, d: &Directive, place: Place) {
        let arg = d.args.first().map(String::as_str).unwrap_or("");
        match d.name.as_str() {
            "proxy_connect_timeout" => self.timeout(d, place, "connect"),
            "proxy_read_timeout" => self.timeout(d, place, "backend_response"),
            "client_header_timeout" => self.timeout(d, place, "request_header"),
            "client_body_timeout" => self.timeout(d, place, "client_body"),
            "keepalive_timeout" => {
                self.timeout(d, place.clone(), "client_idle");
                if d.args.len() > 1 {
                    self.note(d, place, "the `Keep-Alive: timeout=` header is not sent");
                }
            }
            "set_real_ip_from" => match arg.parse::<ipnet::IpNet>() {
                Ok(n) => self.trust(n.to_string()),
                Err(_) => match arg.parse::<IpAddr>() {
                    Ok(ip) => self.trust(ipnet::IpNet::from(ip).to_string()),
                    Err(_) => self.note(d, place, "only addresses and CIDR ranges are carried"),
                },
            },
            "real_ip_header" => {
                if !matches!(
                    arg.to_ascii_lowercase().as_str(),
                    "x-forwarded-for" | "proxy_protocol"
                ) {
                    self.note(
                        d,
                        place,
                        "limpet reads the client address from X-Forwarded-For or the PROXY header",
                    );
                }
            }
            "proxy_next_upstream_tries" => match arg.parse::<u32>() {
                Ok(n) if (1..=17).contains(&n) => {
                    self.once(d, place, "retries", (n - 1).to_string());
                }
                _ => self.note(
                    d,
                    place,
                    "limpet retries 0 to 16 times (0 = unlimited is not)",
                ),
            },
            "proxy_set_header" => {
                if !STANDARD_HEADERS.contains(&arg.to_ascii_lowercase().as_str()) {
                    self.note(
                        d,
                        place,
                        "limpet sets only Host, X-Forwarded-For/-Proto/-Host",
                    );
                }
            }
            "proxy_pass"
            | "return"
            | "server_name"
            | "listen"
            | "ssl_certificate"
            | "ssl_certificate_key"
            | "location"
            | "ssl" => {}
            _ => self.other(d, place),
        }
    }

    /// Any other directive: skipped when irrelevant, else a note saying why.
    pub fn other(&mut self, d: &Directive, place: Place) {
        let name = d.name.as_str();
        if IRRELEVANT.contains(&name) {
            return;
        }
        let why = match name {
            "add_header" | "more_set_headers" | "proxy_hide_header" | "proxy_pass_header" => {
                "limpet does not rewrite response headers"
            }
            "rewrite" | "proxy_redirect" | "sub_filter" => "limpet does not rewrite URLs or bodies",
            n if n.starts_with("proxy_cache") || n == "expires" => "limpet does not cache",
            n if n.starts_with("limit_") => "limpet does not limit request rates",
            n if n.starts_with("gzip") || n.starts_with("brotli") => "limpet does not compress",
            "access_log" | "error_log" | "log_format" | "open_log_file_cache" => {
                "limpet logs to stderr or `log.file`, in its own format"
            }
            n if n.starts_with("auth_") || n == "allow" || n == "deny" || n == "satisfy" => {
                "limpet does not control access"
            }
            n if n.starts_with("ssl_") => "limpet serves TLS 1.2/1.3 with rustls' defaults",
            "root" | "alias" | "index" | "try_files" | "autoindex" | "error_page" => {
                "limpet serves no files of its own"
            }
            "resolver" | "resolver_timeout" => "see `resolvers` in lb.yaml",
            "client_max_body_size" => "limpet does not limit the body size",
            n if n.starts_with("proxy_buffer") || n.starts_with("proxy_busy") => {
                "limpet streams without configurable buffers"
            }
            "proxy_send_timeout" => "limpet has no timeout for sending to a server",
            "proxy_next_upstream" => "limpet retries connect failures only",
            "if" | "set" => "variables and conditions are not carried over",
            _ => "not carried over",
        };
        self.note(d, place, why);
    }

    fn trust(&mut self, net: String) {
        if !self.lb.trusted_proxies.contains(&net) {
            self.lb.trusted_proxies.push(net);
        }
    }

    fn timeout(&mut self, d: &Directive, place: Place, key: &'static str) {
        let arg = d.args.first().map(String::as_str).unwrap_or("");
        let max = match key {
            "connect" | "request_header" => Duration::from_secs(3600),
            _ => Duration::from_secs(86_400),
        };
        match duration(arg) {
            Some(t) if !t.is_zero() && t <= max => self.once(d, place, key, show(t)),
            _ => self.note(
                d,
                place,
                &format!("`timeouts.{key}` takes 1ms to {}", show(max)),
            ),
        }
    }

    /// Sets a global value; a second, different one is noted.
    fn once(&mut self, d: &Directive, place: Place, key: &'static str, value: String) {
        match self.set.get(key) {
            Some(v) if *v != value => {
                let why = format!("limpet has one `{key}` for everything; {v} kept");
                return self.note(d, place, &why);
            }
            Some(_) => return,
            None => {}
        }
        self.set.insert(key, value.clone());
        let t = &mut self.lb.timeouts;
        let slot = match key {
            "connect" => &mut t.connect,
            "backend_response" => &mut t.backend_response,
            "request_header" => &mut t.request_header,
            "client_body" => &mut t.client_body,
            "client_idle" => &mut t.client_idle,
            _ => return,
        };
        *slot = Some(value);
    }

    /// A pool of one server for `proxy_pass http://IP:port`.
    pub fn address_pool(&mut self, addr: SocketAddr) -> String {
        let name = server_name(addr);
        if !self.lb.pools.iter().any(|p| p.name == name) {
            self.lb.pools.push(Pool {
                name: name.clone(),
                servers: vec![super::model::Server {
                    name: name.clone(),
                    address: addr.to_string(),
                    ..Default::default()
                }],
                ..Pool::default()
            });
        }
        name
    }
}
