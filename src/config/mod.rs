//! Configuration: `lb.yaml` is parsed into a serde mirror ([`file`]), then
//! validated into the typed [`Config`] below. `limpet check`, start-up and a
//! reload all go through [`load`], so they accept and reject the same files.

mod error;
pub mod file;
mod server;
pub mod sni;
mod store;
pub mod tickets;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

pub use error::ConfigError;
pub use server::{Discover, DiscoverKind, Resolvers, ServerConfig, Source};
pub use store::{SentinelTarget, StoreConfig, StoreTarget};

/// Reads, parses and validates the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Parses and validates configuration text; `path` names it in errors and
/// is where a reload reads it again. [`HTTP1_ENV`] is read here, so every
/// caller (start, reload, `limpet check`, the tests) sees it.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let http1 = std::env::var_os(HTTP1_ENV).map(|v| v.to_string_lossy().into_owned());
    parse_with_env(text, path, http1.as_deref())
}

/// [`parse`] with the value of [`HTTP1_ENV`] given instead of read: for
/// callers whose answer must not depend on the environment, and for tests.
pub fn parse_with_env(
    text: &str,
    path: &Path,
    http1_env: Option<&str>,
) -> Result<Config, ConfigError> {
    let file: file::FileConfig =
        serde_saphyr::from_str(text).map_err(|e| ConfigError::syntax(path, &e))?;
    validate::validate(file, path, http1_env)
}

/// A server added through the admin API, from its JSON body: the same
/// rules as a server in the file.
pub fn api_server(body: &str) -> Result<ServerConfig, ConfigError> {
    validate::api::server(body)
}

/// The environment variable that picks [`Http1`] when the file has no
/// `http1:` key: CI runs the tests on both engines, and an operator can
/// fall back without editing the file.
pub const HTTP1_ENV: &str = "LIMPET_HTTP1";

/// The validated configuration. Pools are kept in file order; listeners and
/// routes refer to pools by index.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from (a reload reads it again).
    pub source: PathBuf,
    /// Things that work but that the operator should know (`limpet check`
    /// prints them, start and reload log them).
    pub warnings: Vec<String>,
    pub listeners: Vec<ListenerConfig>,
    pub admin: Option<AdminConfig>,
    pub trusted_proxies: Vec<IpNet>,
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub state_dir: PathBuf,
    /// Runtime worker threads; `None` = one per CPU.
    pub workers: Option<usize>,
    pub log: LogConfig,
    /// The engine that serves HTTP/1 on the listeners.
    pub http1: Http1,
    /// DNS for server host names and `discover`.
    pub resolvers: Resolvers,
    pub pools: Vec<PoolConfig>,
}

/// Which HTTP/1 engine serves proxied HTTP/1.1 (`http1:` in `lb.yaml`, or
/// [`HTTP1_ENV`]). HTTP/2 and the admin endpoint are hyper's either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Http1 {
    /// limpet's own codec (`h1`): the received header bytes are forwarded
    /// with limpet's edits spliced in.
    #[default]
    Limpet,
    /// hyper's server, the previous engine, kept as a fallback for one
    /// release.
    Hyper,
}

/// The admin endpoint: metrics, status page, API.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub bind: SocketAddr,
    /// Required for the state-changing calls when set.
    pub token: Option<Token>,
    /// Host names (lower case) the endpoint answers to besides IP literals
    /// and `localhost`: the guard against DNS rebinding.
    pub hosts: Vec<String>,
}

/// The admin token (from `admin.token_file`), kept as its SHA-256 digest.
/// Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Token([u8; 32]);

impl Token {
    pub fn new(secret: String) -> Token {
        Token(sha256(secret.as_bytes()))
    }

    /// Compares the digests in constant time (`subtle`): the time depends
    /// on neither the token's contents nor its length, since every digest
    /// has the same length (comparing the tokens themselves would stop
    /// early on a length mismatch and tell an attacker the length).
    pub fn matches(&self, offered: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        self.0[..].ct_eq(&sha256(offered)[..]).into()
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub name: String,
    pub bind: SocketAddr,
    /// TLS termination: the certificates, ready to serve (they were read and
    /// checked when the file was loaded).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Answer every request with 308 to `https://`.
    pub redirect_https: bool,
    /// Expect a PROXY protocol v1/v2 header from a trusted peer first.
    pub proxy_protocol: bool,
    /// Behind a PROXY header, believe a trusted client's `X-Forwarded-*`
    /// (the L4 balancer fronts trusted L7 proxies); else the PROXY source
    /// is the client, as nginx's `real_ip_header proxy_protocol`.
    pub trust_forwarded_after_proxy: bool,
    /// The certificates of `tls`, as SNI picks them.
    pub certs: Option<Arc<sni::Certs>>,
    /// `strict_sni`: a request's `Host` must be among the names of the
    /// certificate its connection negotiated (421 otherwise).
    pub strict_sni: bool,
    /// Index into [`Config::pools`]; `None` when the routes must cover every request.
    pub pool: Option<usize>,
    pub routes: Vec<RouteConfig>,
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Lower-case host without port. A leading `*.` matches any subdomain.
    pub host: Option<String>,
    pub path_prefix: Option<String>,
    pub pool: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub request_header: Duration,
    /// Longest pause between two reads of a request body (then 408).
    pub client_body: Duration,
    /// From the last byte of the request body sent (or the last progress of
    /// an upload the server is reading) to the first byte of the response.
    pub backend_response: Duration,
    pub client_idle: Duration,
    pub shutdown_grace: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(3),
            request_header: Duration::from_secs(10),
            client_body: Duration::from_secs(60),
            backend_response: Duration::from_secs(60),
            client_idle: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub max_header_bytes: usize,
    /// Header fields a request may have (each repetition counts; HTTP/2's
    /// cookie crumbs count as the one `Cookie` field they are joined into).
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            max_header_bytes: 65_536,
            max_headers: 100,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    /// A `tracing` level name: error, warn, info, debug, trace.
    pub level: String,
    pub format: LogFormat,
    pub access: bool,
    /// Append here instead of stderr; reopened on SIGUSR1 (logrotate).
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    LeastConn,
    RandomTwo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    Active,
    Drain,
    Disabled,
}

impl ServerState {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerState::Active => "active",
            ServerState::Drain => "drain",
            ServerState::Disabled => "disabled",
        }
    }
}

#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub name: String,
    pub balance: Balance,
    pub sticky: StickyConfig,
    pub retries: u32,
    pub health_check: Option<HealthCheckConfig>,
    pub passive: PassiveConfig,
    pub slow_start: Duration,
    /// More servers from DNS.
    pub discover: Option<Discover>,
    pub servers: Vec<ServerConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckKind {
    Http,
    Tcp,
}

/// Active health checks of a pool's servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckConfig {
    pub kind: CheckKind,
    pub path: String,
    pub method: http::Method,
    pub host: Option<String>,
    /// Inclusive status ranges that count as healthy.
    pub expect_status: Vec<(u16, u16)>,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
}

impl HealthCheckConfig {
    pub fn expects(&self, status: u16) -> bool {
        self.expect_status
            .iter()
            .any(|&(lo, hi)| (lo..=hi).contains(&status))
    }
}

/// Failures seen on real traffic (nginx `max_fails` / `fail_timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassiveConfig {
    /// 0 = passive checks off.
    pub max_fails: u32,
    pub fail_timeout: Duration,
}

impl Default for PassiveConfig {
    fn default() -> Self {
        PassiveConfig {
            max_fails: 1,
            fail_timeout: Duration::from_secs(10),
        }
    }
}

/// How limpet speaks TLS to a server.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub client: Arc<rustls::ClientConfig>,
    /// Sent as SNI (a name) and verified against the certificate.
    pub server_name: rustls::pki_types::ServerName<'static>,
    /// What sets this apart from another TLS setting for the same address
    /// (the CA file, a hash of the roots it holds, and the name), for
    /// connection reuse and for keeping a health check across a reload.
    pub identity: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StickyMode {
    None,
    IpHash,
    Cookie,
    JvmRoute,
    Learn,
}

impl StickyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            StickyMode::None => "none",
            StickyMode::IpHash => "ip_hash",
            StickyMode::Cookie => "cookie",
            StickyMode::JvmRoute => "jvm_route",
            StickyMode::Learn => "learn",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnServerDown {
    Redispatch,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpHashKey {
    Address,
    Subnet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

#[derive(Debug, Clone)]
pub struct CookieConfig {
    pub name: String,
    pub path: String,
    pub domain: Option<String>,
    pub max_age: Option<Duration>,
    pub secure: bool,
    pub http_only: bool,
    pub same_site: SameSite,
    pub indirect: bool,
    pub nocache: bool,
}

#[derive(Debug, Clone)]
pub struct JvmRouteConfig {
    pub cookie: String,
    pub path_param: String,
    pub separator: String,
}

#[derive(Debug, Clone)]
pub struct LearnConfig {
    pub cookie: String,
    pub path_param: String,
    pub max_len: usize,
    pub idle_timeout: Duration,
    pub request_learn: bool,
    pub capacity: u64,
    pub persist: bool,
    /// The shared table (Redis), if the learned sessions are shared.
    pub store: Option<Arc<StoreConfig>>,
}

#[derive(Debug, Clone)]
pub struct StickyConfig {
    pub mode: StickyMode,
    pub on_server_down: OnServerDown,
    pub ip_hash_key: IpHashKey,
    pub cookie: CookieConfig,
    pub jvm_route: JvmRouteConfig,
    pub learn: LearnConfig,
}

#[cfg(test)]
mod tests {
    use super::Token;

    #[test]
    fn a_token_matches_itself_only() {
        let t = Token::new("s3cret-token".to_owned());
        assert!(t.matches(b"s3cret-token"));
        for other in [
            &b""[..],
            b"s3cret",
            b"s3cret-token!",
            b"s3cret-tokeN",
            b"S3cret-token",
        ] {
            assert!(!t.matches(other), "{other:?}");
        }
    }
}
