//! The serde mirror of `lb.yaml`: exactly the file's shape, nothing checked
//! beyond types. Every struct denies unknown keys so that a typo is an error.
//! Fields whose value a later validation may reject are `Spanned` so the error
//! can name `file:line:column`. `validate.rs` turns this into [`super::Config`].

use indexmap::IndexMap;
use serde::Deserialize;
use serde_saphyr::Spanned;

pub type S<T> = Spanned<T>;

/// A whole number written as a YAML number. A quoted number (`weight: '5'`)
/// is text, not a number, and is rejected: an operator who quoted it may have
/// meant something else, and `limpet check` must not guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Num(pub u64);

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Num, D::Error> {
        d.deserialize_any(NumVisitor)
    }
}

struct NumVisitor;

impl serde::de::Visitor<'_> for NumVisitor {
    type Value = Num;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a whole number without quotes")
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Num, E> {
        Ok(Num(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Num, E> {
        u64::try_from(v)
            .map(Num)
            .map_err(|_| E::custom(format!("expected a whole number of 0 or more, found {v}")))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Num, E> {
        Err(E::custom(format!(
            "expected a whole number without quotes, found the text {v:?}"
        )))
    }
}

/// `true` or `false` written as a YAML boolean; quoted text is rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag(pub bool);

/// The flag's value, or `default` when the key is absent.
pub fn flag(value: Option<Flag>, default: bool) -> bool {
    value.map(|f| f.0).unwrap_or(default)
}

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Flag, D::Error> {
        d.deserialize_any(FlagVisitor)
    }
}

struct FlagVisitor;

impl serde::de::Visitor<'_> for FlagVisitor {
    type Value = Flag;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("true or false without quotes")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Flag, E> {
        Ok(Flag(v))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Flag, E> {
        Err(E::custom(format!(
            "expected true or false without quotes, found the text {v:?}"
        )))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listeners: S<Vec<ListenerFile>>,
    /// `Some(None)`: the section is there but empty (`admin:`), which
    /// enables the admin listener with its defaults.
    #[serde(default, deserialize_with = "present")]
    pub admin: Option<Option<AdminFile>>,
    pub trusted_proxies: Option<Vec<S<String>>>,
    pub timeouts: Option<TimeoutsFile>,
    pub limits: Option<LimitsFile>,
    pub state_dir: Option<S<String>>,
    pub workers: Option<S<Workers>>,
    pub log: Option<LogFile>,
    pub http1: Option<S<String>>,
    pub resolvers: Option<ResolversFile>,
    pub pools: S<IndexMap<S<String>, PoolFile>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolversFile {
    pub nameservers: Option<Vec<S<String>>>,
    pub interval: Option<S<String>>,
    pub timeout: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoverFile {
    pub srv: Option<S<String>>,
    pub a: Option<S<String>>,
    pub port: Option<S<Num>>,
    pub weight: Option<S<Num>>,
    pub tls: Option<S<ServerTlsFile>>,
    pub backup: Option<Flag>,
    pub max_servers: Option<S<Num>>,
}

/// A key that is present, even with no value.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminFile {
    pub bind: Option<S<String>>,
    pub token_file: Option<S<String>>,
    pub hosts: Option<Vec<S<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "`workers` must be `auto` or a number")]
pub enum Workers {
    Count(Num),
    Word(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerFile {
    pub name: S<String>,
    pub bind: S<String>,
    pub pool: Option<S<String>>,
    pub routes: Option<Vec<RouteFile>>,
    pub proxy_protocol: Option<S<Flag>>,
    pub tls: Option<ListenerTlsFile>,
    pub redirect_https: Option<Flag>,
    pub strict_sni: Option<S<Flag>>,
    pub trust_forwarded_after_proxy: Option<S<Flag>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTlsFile {
    pub cert: S<String>,
    pub key: S<String>,
    pub sni: Option<Vec<CertPairFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertPairFile {
    pub cert: S<String>,
    pub key: S<String>,
}

/// `tls: true` on a server, or `tls: { ca: FILE, server_name: NAME }`.
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "`tls` of a server is true, false or { ca: FILE, server_name: NAME }"
)]
pub enum ServerTlsFile {
    On(Flag),
    With(ServerTlsOptions),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsOptions {
    pub ca: Option<String>,
    pub server_name: Option<String>,
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
    pub client_body: Option<S<String>>,
    pub client_idle: Option<S<String>>,
    pub shutdown_grace: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    pub max_connections: Option<S<Num>>,
    pub max_header_bytes: Option<S<Num>>,
    pub max_headers: Option<S<Num>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFile {
    pub level: Option<S<String>>,
    pub format: Option<S<String>>,
    pub access: Option<Flag>,
    pub file: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolFile {
    pub balance: Option<S<String>>,
    pub sticky: Option<StickyFile>,
    pub retries: Option<S<Num>>,
    pub health_check: Option<HealthCheckFile>,
    pub passive: Option<PassiveFile>,
    pub slow_start: Option<S<String>>,
    pub discover: Option<S<DiscoverFile>>,
    pub servers: Option<S<Vec<ServerFile>>>,
}

#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "`expect_status` is a status code, a range or a comma list (\"200-299,302\")"
)]
pub enum StatusSpec {
    Code(Num),
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
    pub rise: Option<S<Num>>,
    pub fall: Option<S<Num>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveFile {
    pub max_fails: Option<S<Num>>,
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
    pub secure: Option<Flag>,
    pub http_only: Option<Flag>,
    pub same_site: Option<S<String>>,
    pub indirect: Option<Flag>,
    pub nocache: Option<Flag>,
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
    pub max_len: Option<S<Num>>,
    pub idle_timeout: Option<S<String>>,
    pub request_learn: Option<Flag>,
    pub capacity: Option<S<Num>>,
    pub persist: Option<Flag>,
    pub store: Option<S<String>>,
    pub store_password_file: Option<S<String>>,
    pub store_timeout: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    pub name: S<String>,
    pub address: S<String>,
    pub weight: Option<S<Num>>,
    pub route: Option<S<String>>,
    pub state: Option<S<String>>,
    pub tls: Option<S<ServerTlsFile>>,
    pub backup: Option<Flag>,
}
