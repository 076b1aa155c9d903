//! A `server` line (after the `default-server` lines above it) → a
//! server: address, weight (0 = drain), `backup`, `disabled`, its cookie
//! value as its route, and TLS (`ssl`, `ca-file`, `sni str(…)`).

use super::Cx;
use super::lex::Line;
use super::value;
use crate::import::model::{ImportError, Place, Server, lb_name};

/// Server options that take a value (the value is skipped with them).
const WITH_VALUE: &[&str] = &[
    "weight",
    "cookie",
    "inter",
    "fastinter",
    "downinter",
    "rise",
    "fall",
    "port",
    "addr",
    "maxconn",
    "minconn",
    "maxqueue",
    "slowstart",
    "error-limit",
    "on-error",
    "observe",
    "ca-file",
    "crt",
    "sni",
    "verify",
    "id",
    "track",
    "agent-port",
    "agent-inter",
    "agent-send",
    "agent-addr",
    "check-sni",
    "ciphers",
    "ciphersuites",
    "alpn",
    "check-alpn",
    "proto",
    "resolvers",
    "init-addr",
    "resolve-prefer",
    "resolve-opts",
    "resolve-net",
    "on-marked-down",
    "on-marked-up",
    "pool-max-conn",
    "pool-purge-delay",
    "pool-low-conn",
    "max-reuse",
    "source",
    "redir",
    "namespace",
    "tcp-ut",
    "ws",
    "ssl-min-ver",
    "ssl-max-ver",
    "crl-file",
    "proxy-v2-options",
    "usesrc",
    "log-proto",
    "shard",
    "hash-key",
    "guid",
    "check-proto",
    "set-proxy-v2-tlv-fmt",
    "curves",
    "sigalgs",
    "client-sigalgs",
    "verifyhost",
];

/// A server's options after `default-server` and its own line.
#[derive(Debug, Clone, Default)]
pub struct Params {
    pub weight: Option<u32>,
    pub backup: bool,
    pub disabled: bool,
    pub check: bool,
    pub cookie: Option<String>,
    pub inter: Option<String>,
    pub rise: Option<String>,
    pub fall: Option<String>,
    pub ssl: bool,
    pub verify_none: bool,
    pub ca_file: Option<String>,
    pub sni: Option<String>,
    pub slowstart: Option<String>,
    pub observe: bool,
    pub error_limit: Option<u32>,
    pub on_error: Option<String>,
}

impl Params {
    /// Applies `opts`; returns those not carried over, as written.
    pub fn apply(
        &mut self,
        opts: &[String],
        cx: &Cx<'_>,
        line: &Line,
    ) -> Result<Vec<String>, ImportError> {
        let mut skipped = Vec::new();
        let mut i = 0;
        while let Some(k) = opts.get(i) {
            let k = k.as_str();
            let v = if WITH_VALUE.contains(&k) {
                i += 1;
                opts.get(i).cloned().ok_or_else(|| {
                    ImportError::new(
                        cx.file,
                        line.no,
                        format!("server option `{k}` needs a value"),
                    )
                })?
            } else {
                String::new()
            };
            i += 1;
            match k {
                "weight" => {
                    self.weight = Some(v.parse().map_err(|_| {
                        ImportError::new(cx.file, line.no, format!("`weight {v}` is not a number"))
                    })?);
                }
                "backup" => self.backup = true,
                "no-backup" => self.backup = false,
                "disabled" => self.disabled = true,
                "enabled" => self.disabled = false,
                "check" => self.check = true,
                "no-check" => self.check = false,
                "cookie" => self.cookie = Some(v),
                "inter" => self.inter = Some(v),
                "rise" => self.rise = Some(v),
                "fall" => self.fall = Some(v),
                "ssl" => self.ssl = true,
                "no-ssl" => self.ssl = false,
                "verify" => self.verify_none = v == "none",
                "ca-file" => self.ca_file = Some(v),
                "sni" => self.sni = Some(v),
                "slowstart" => self.slowstart = Some(v),
                "observe" => self.observe = v != "none",
                "error-limit" => self.error_limit = v.parse().ok(),
                "on-error" => self.on_error = Some(v),
                _ if v.is_empty() => skipped.push(k.to_owned()),
                _ => skipped.push(format!("{k} {v}")),
            }
        }
        Ok(skipped)
    }
}

#[allow(clippy::too_many_arguments)]
pub fn server(
    cx: &mut Cx<'_>,
    pool: &str,
    l: &Line,
    p: &Params,
    cookie_mode: bool,
    routes: &mut std::collections::HashSet<String>,
    names: &mut std::collections::HashSet<String>,
) -> Option<Server> {
    let mut name = lb_name(l.word(1));
    while !names.insert(name.clone()) {
        name = format!("{}-2", name.chars().take(60).collect::<String>());
    }
    let at = Place::Server(pool.to_owned(), name.clone());
    if name != l.word(1) {
        cx.note(l, at.clone(), &format!("the server is named {name:?} (lb.yaml names are 1-64 letters, digits, `_`, `-`, `.`)"));
    }
    let address = match value::address(l.word(2)) {
        Ok(a) => a.to_string(),
        Err(why) => {
            cx.note(
                l,
                Place::Pool(pool.to_owned()),
                &format!("server skipped: its address is {why}"),
            );
            return None;
        }
    };
    let mut s = Server {
        name: name.clone(),
        address,
        ..Server::default()
    };
    match p.weight {
        Some(0) => s.state = Some("drain".into()),
        Some(w) if w > 256 => cx.note(l, at.clone(), "limpet weights go up to 256"),
        Some(w) if w != 1 => s.weight = Some(w),
        _ => {}
    }
    if p.disabled {
        s.state = Some("disabled".into());
    }
    s.backup = p.backup;
    let route = match &p.cookie {
        Some(v) if !value::token(v) => {
            cx.note(
                l,
                at.clone(),
                "this cookie value is not a route limpet accepts: the server's name is its route",
            );
            None
        }
        Some(v) if cookie_mode => Some(v.clone()),
        Some(_) => None,
        None if cookie_mode => {
            cx.note(
                l,
                at.clone(),
                "HAProxy set no cookie for this server; limpet's cookie names it by its name",
            );
            None
        }
        None => None,
    };
    let route = route.unwrap_or_else(|| name.clone());
    if !routes.insert(route.clone()) {
        cx.note(l, at.clone(), "another server of this pool has the same cookie value: routes must be unique, this one is named after the server");
        s.route = None;
        routes.insert(name);
    } else if route != s.name {
        s.route = Some(route);
    }
    if p.ssl {
        s.tls = true;
        s.tls_ca = p
            .ca_file
            .as_ref()
            .filter(|f| *f != "@system-ca")
            .map(|f| Cx::resolve(&cx.ca_base, f));
        match p
            .sni
            .as_deref()
            .map(|v| v.strip_prefix("str(").and_then(|x| x.strip_suffix(')')))
        {
            None => {}
            Some(Some(name)) => s.tls_server_name = Some(name.to_owned()),
            Some(None) => cx.note(
                l,
                at.clone(),
                "only a fixed `sni str(NAME)` is carried over",
            ),
        }
        if p.verify_none {
            cx.note(l, at.clone(), "`verify none` is not carried over: limpet verifies the server's certificate (give it `tls: { ca: FILE }`)");
        }
    }
    Some(s)
}
