//! What an imported configuration becomes: the keys of `lb.yaml`, as plain
//! values in the order they are written, plus the notes on what was not
//! carried over. Every source format fills this one model, and one writer
//! (`write.rs`) prints it; `limpet check` then reads it like any file.
//! A field left `None` is not written (limpet's default applies).

use std::path::PathBuf;

/// A whole `lb.yaml`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Lb {
    pub listeners: Vec<Listener>,
    pub trusted_proxies: Vec<String>,
    pub timeouts: Timeouts,
    pub max_connections: Option<u64>,
    pub pools: Vec<Pool>,
    /// What was not carried over, each near the key it belongs to.
    pub notes: Vec<Note>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Listener {
    pub name: String,
    /// `IP:port`.
    pub bind: String,
    pub pool: Option<String>,
    pub routes: Vec<Route>,
    pub tls: Option<Tls>,
    pub proxy_protocol: bool,
    pub redirect_https: bool,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Route {
    pub host: Option<String>,
    pub path_prefix: Option<String>,
    pub pool: String,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Tls {
    pub cert: String,
    /// The certificate file itself when the key is inside it (HAProxy's
    /// combined PEM).
    pub key: String,
    pub sni: Vec<(String, String)>,
}

/// Durations as `lb.yaml` writes them (`5s`, `500ms`).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Timeouts {
    pub connect: Option<String>,
    pub request_header: Option<String>,
    pub client_body: Option<String>,
    pub backend_response: Option<String>,
    pub client_idle: Option<String>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Pool {
    pub name: String,
    /// `round_robin`, `least_conn`, `random_two`.
    pub balance: Option<String>,
    pub sticky: Option<Sticky>,
    pub retries: Option<u32>,
    pub health_check: Option<HealthCheck>,
    /// `max_fails`, `fail_timeout`.
    pub passive: Option<(u32, String)>,
    pub slow_start: Option<String>,
    pub servers: Vec<Server>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Sticky {
    /// `ip_hash`, `cookie`, `jvm_route`, `learn`.
    pub mode: String,
    /// `redispatch` or `error`.
    pub on_server_down: Option<String>,
    /// `address` or `subnet`.
    pub ip_hash_key: Option<String>,
    pub cookie: Option<Cookie>,
    pub jvm_route: Option<JvmRoute>,
    pub learn: Option<Learn>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Cookie {
    pub name: Option<String>,
    pub path: Option<String>,
    pub domain: Option<String>,
    pub max_age: Option<String>,
    pub secure: Option<bool>,
    pub http_only: Option<bool>,
    /// `strict`, `lax`, `none`.
    pub same_site: Option<String>,
    pub indirect: Option<bool>,
    pub nocache: Option<bool>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct JvmRoute {
    pub cookie: Option<String>,
    pub path_param: Option<String>,
    pub separator: Option<String>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Learn {
    pub cookie: Option<String>,
    pub path_param: Option<String>,
    pub max_len: Option<u32>,
    pub idle_timeout: Option<String>,
    pub capacity: Option<u64>,
    pub request_learn: Option<bool>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct HealthCheck {
    /// `http` or `tcp`.
    pub kind: Option<String>,
    pub path: Option<String>,
    pub method: Option<String>,
    pub host: Option<String>,
    pub expect_status: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub rise: Option<u32>,
    pub fall: Option<u32>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Server {
    pub name: String,
    /// `IP:port`.
    pub address: String,
    pub weight: Option<u32>,
    pub route: Option<String>,
    /// `drain` or `disabled` (active is not written).
    pub state: Option<String>,
    pub backup: bool,
    pub tls: bool,
    /// With `tls`: the CA file that signs the server's certificate
    /// (`tls: { ca, server_name }`); `None` = the system's roots.
    pub tls_ca: Option<String>,
    /// With `tls`: the name sent as SNI and verified.
    pub tls_server_name: Option<String>,
}

/// A valid lb.yaml name for `raw` (1–64 of `A-Z a-z 0-9 _ - .`, not
/// starting with `.`): every other character becomes `-`, a leading `.`
/// becomes `_`, nothing becomes `unnamed`. One rule for every format.
pub fn lb_name(raw: &str) -> String {
    let mut n: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if n.starts_with('.') {
        n.replace_range(..1, "_");
    }
    if n.is_empty() {
        n.push_str("unnamed");
    }
    n
}

/// A directive that was not carried over (or carried over only in part).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub file: PathBuf,
    pub line: usize,
    /// The directive as written (trimmed, one line).
    pub directive: String,
    pub why: String,
    pub place: Place,
}

/// Where in the output a note is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// At the top of the file.
    Top,
    /// Before the listener of this name.
    Listener(String),
    /// Before the pool of this name.
    Pool(String),
    /// Before this server of this pool.
    Server(String, String),
}

impl Note {
    /// The comment line, `FILE:LINE: <directive> — <why>`.
    pub fn text(&self) -> String {
        format!(
            "{}:{}: {} — {}",
            self.file.display(),
            self.line,
            self.directive,
            self.why
        )
    }
}

/// A source that cannot be read or parsed: `FILE:LINE: why`.
#[derive(Debug, thiserror::Error)]
#[error("{}:{line}: {why}", file.display())]
pub struct ImportError {
    pub file: PathBuf,
    pub line: usize,
    pub why: String,
}

impl ImportError {
    pub fn new(file: impl Into<PathBuf>, line: usize, why: impl Into<String>) -> ImportError {
        ImportError {
            file: file.into(),
            line,
            why: why.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_made_valid() {
        use super::lb_name;
        assert_eq!(lb_name("app"), "app");
        assert_eq!(lb_name(".hidden"), "_hidden");
        assert_eq!(lb_name("my cluster/a"), "my-cluster-a");
        assert_eq!(lb_name(""), "unnamed");
        assert_eq!(lb_name(&"x".repeat(70)).len(), 64);
    }
}
