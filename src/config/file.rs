//! The serde mirror of `lb.yaml`: exactly the file's shape, nothing checked
//! beyond types. Every struct denies unknown keys so that a typo is an error.
//! Fields whose value a later validation may reject are `Spanned` so the error
//! can name `file:line:column`. `validate.rs` turns this into [`super::Config`].

use indexmap::IndexMap;
use serde::Deserialize;
use serde_saphyr::Spanned;

pub type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listeners: S<Vec<ListenerFile>>,
    pub trusted_proxies: Option<Vec<S<String>>>,
    pub timeouts: Option<TimeoutsFile>,
    pub limits: Option<LimitsFile>,
    pub state_dir: Option<String>,
    pub workers: Option<S<Workers>>,
    pub log: Option<LogFile>,
    pub pools: S<IndexMap<S<String>, PoolFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Workers {
    Count(u64),
    Word(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerFile {
    pub name: S<String>,
    pub bind: S<String>,
    pub pool: Option<S<String>>,
    pub routes: Option<Vec<RouteFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    pub host: Option<S<String>>,
    pub path_prefix: Option<S<String>>,
    pub pool: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsFile {
    pub connect: Option<S<String>>,
    pub request_header: Option<S<String>>,
    pub backend_response: Option<S<String>>,
    pub client_idle: Option<S<String>>,
    pub shutdown_grace: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    pub max_connections: Option<S<u64>>,
    pub max_header_bytes: Option<S<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFile {
    pub level: Option<S<String>>,
    pub format: Option<S<String>>,
    pub access: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolFile {
    pub balance: Option<S<String>>,
    pub sticky: Option<StickyFile>,
    pub retries: Option<S<u64>>,
    pub health_check: Option<HealthCheckFile>,
    pub passive: Option<PassiveFile>,
    pub slow_start: Option<S<String>>,
    pub servers: S<Vec<ServerFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StatusSpec {
    Code(u64),
    Text(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckFile {
    #[serde(rename = "type")]
    pub kind: Option<S<String>>,
    pub path: Option<S<String>>,
    pub method: Option<S<String>>,
    pub host: Option<S<String>>,
    pub expect_status: Option<S<StatusSpec>>,
    pub interval: Option<S<String>>,
    pub timeout: Option<S<String>>,
    pub rise: Option<S<u64>>,
    pub fall: Option<S<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveFile {
    pub max_fails: Option<S<u64>>,
    pub fail_timeout: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StickyFile {
    pub mode: Option<S<String>>,
    pub on_server_down: Option<S<String>>,
    pub ip_hash: Option<IpHashFile>,
    pub cookie: Option<CookieFile>,
    pub jvm_route: Option<JvmRouteFile>,
    pub learn: Option<LearnFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpHashFile {
    pub key: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CookieFile {
    pub name: Option<S<String>>,
    pub path: Option<S<String>>,
    pub domain: Option<S<String>>,
    pub max_age: Option<S<String>>,
    pub secure: Option<bool>,
    pub http_only: Option<bool>,
    pub same_site: Option<S<String>>,
    pub indirect: Option<bool>,
    pub nocache: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JvmRouteFile {
    pub cookie: Option<S<String>>,
    pub path_param: Option<S<String>>,
    pub separator: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearnFile {
    pub cookie: Option<S<String>>,
    pub path_param: Option<S<String>>,
    pub max_len: Option<S<u64>>,
    pub idle_timeout: Option<S<String>>,
    pub request_learn: Option<bool>,
    pub capacity: Option<S<u64>>,
    pub persist: Option<bool>,
    pub store: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    pub name: S<String>,
    pub address: S<String>,
    pub weight: Option<S<u64>>,
    pub route: Option<S<String>>,
    pub state: Option<S<String>>,
}
