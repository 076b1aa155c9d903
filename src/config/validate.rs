//! Validation: the serde mirror of `lb.yaml` becomes the typed [`Config`], or
//! the first problem found is reported with its position.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use super::file::{self, FileConfig, S};
use super::{
    Balance, CheckKind, Config, ConfigError, CookieConfig, HealthCheckConfig, IpHashKey,
    JvmRouteConfig, LearnConfig, Limits, ListenerConfig, LogConfig, LogFormat, OnServerDown,
    PassiveConfig, PoolConfig, RouteConfig, SameSite, ServerConfig, ServerState, StickyConfig,
    StickyMode, Timeouts,
};

/// Highest accepted server weight (HAProxy's limit); keeps the smooth
/// round-robin schedule small.
pub const MAX_WEIGHT: u64 = 256;

struct Checker<'a> {
    path: &'a Path,
}

impl Checker<'_> {
    fn err<T>(&self, spanned: &S<T>, key: &str, message: String) -> ConfigError {
        ConfigError::at(self.path, spanned.referenced, key, message)
    }

    fn duration(
        &self,
        value: &Option<S<String>>,
        key: &str,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match value {
            None => Ok(default),
            Some(s) => humantime::parse_duration(s.value.trim()).map_err(|_| {
                self.err(
                    s,
                    key,
                    format!(
                        "`{key}` must be a duration such as 500ms, 2s, 5m or 5h, not {:?}.",
                        s.value
                    ),
                )
            }),
        }
    }

    fn choice<T: Copy>(
        &self,
        value: &Option<S<String>>,
        key: &str,
        choices: &[(&str, T)],
        default: T,
    ) -> Result<T, ConfigError> {
        let Some(s) = value else { return Ok(default) };
        choices
            .iter()
            .find(|(name, _)| *name == s.value)
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
                self.err(
                    s,
                    key,
                    format!(
                        "`{key}` must be one of {}, not {:?}.",
                        names.join(", "),
                        s.value
                    ),
                )
            })
    }

    fn non_empty(&self, s: &S<String>, key: &str) -> Result<String, ConfigError> {
        if s.value.trim().is_empty() {
            return Err(self.err(s, key, format!("`{key}` must not be empty.")));
        }
        Ok(s.value.clone())
    }

    fn token(
        &self,
        value: &Option<S<String>>,
        key: &str,
        default: &str,
    ) -> Result<String, ConfigError> {
        let Some(s) = value else {
            return Ok(default.to_owned());
        };
        let ok = !s.value.is_empty()
            && s.value
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b";,=\"\\".contains(&b));
        if !ok {
            return Err(self.err(
                s,
                key,
                format!("`{key}` must be a non-empty name without spaces, `;`, `,`, `=` or quotes, not {:?}.", s.value),
            ));
        }
        Ok(s.value.clone())
    }

    /// Names of listeners, pools and servers appear in logs, metric labels,
    /// URLs of the admin API and state file names: letters, digits, `_`,
    /// `-` and `.`, not starting with `.`.
    fn name(&self, s: &S<String>, key: &str) -> Result<String, ConfigError> {
        let v = &s.value;
        let ok = !v.is_empty()
            && v.len() <= 64
            && !v.starts_with('.')
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
        if !ok {
            return Err(self.err(
                s,
                key,
                format!("a name must be 1 to 64 letters, digits, `_`, `-` or `.` (not starting with `.`), not {v:?}."),
            ));
        }
        Ok(v.clone())
    }

    fn address(&self, s: &S<String>, key: &str) -> Result<SocketAddr, ConfigError> {
        s.value.trim().parse().map_err(|_| {
            self.err(
                s,
                key,
                format!(
                    "`{key}` must be an IP address and port such as 127.0.0.1:8080, not {:?}.",
                    s.value
                ),
            )
        })
    }
}

pub fn validate(file: FileConfig, path: &Path) -> Result<Config, ConfigError> {
    let c = Checker { path };

    // Pools first: listeners and routes refer to them by name.
    if file.pools.value.is_empty() {
        return Err(c.err(
            &file.pools,
            "pools",
            "`pools` must name at least one pool.".into(),
        ));
    }
    let mut pools = Vec::with_capacity(file.pools.value.len());
    let mut pool_index: HashMap<String, usize> = HashMap::new();
    for (name, pool) in &file.pools.value {
        let key = format!("pools.{}", name.value);
        let n = c.name(name, "pools")?;
        if pool_index.insert(n.clone(), pools.len()).is_some() {
            return Err(c.err(name, &key, format!("pool {n:?} is defined twice.")));
        }
        pools.push(validate_pool(&c, &key, n, pool)?);
    }

    if file.listeners.value.is_empty() {
        return Err(c.err(
            &file.listeners,
            "listeners",
            "`listeners` must name at least one listener.".into(),
        ));
    }
    let mut listeners: Vec<ListenerConfig> = Vec::new();
    let mut binds: HashMap<SocketAddr, String> = HashMap::new();
    for (i, l) in file.listeners.value.iter().enumerate() {
        let key = format!("listeners[{i}]");
        let name = c.name(&l.name, &format!("{key}.name"))?;
        if listeners.iter().any(|other| other.name == name) {
            return Err(c.err(
                &l.name,
                &key,
                format!("listener {name:?} is defined twice."),
            ));
        }
        let bind = c.address(&l.bind, &format!("{key}.bind"))?;
        if let Some((addr, other)) = binds.iter().find(|(addr, _)| conflicts(**addr, bind)) {
            return Err(c.err(
                &l.bind,
                &key,
                format!("listener {name:?} binds {bind}, which conflicts with listener {other:?} on {addr}."),
            ));
        }
        binds.insert(bind, name.clone());
        let pool = match &l.pool {
            Some(p) => Some(lookup_pool(&c, &pool_index, p, &format!("{key}.pool"))?),
            None => None,
        };
        let mut routes = Vec::new();
        for (j, r) in l.routes.iter().flatten().enumerate() {
            let rkey = format!("{key}.routes[{j}]");
            let host = match &r.host {
                Some(h) => Some(
                    c.non_empty(h, &format!("{rkey}.host"))?
                        .to_ascii_lowercase(),
                ),
                None => None,
            };
            let path_prefix = match &r.path_prefix {
                Some(p) if !p.value.starts_with('/') => {
                    return Err(c.err(
                        p,
                        &rkey,
                        format!("`path_prefix` must start with `/`, not {:?}.", p.value),
                    ));
                }
                Some(p) => Some(p.value.clone()),
                None => None,
            };
            if host.is_none() && path_prefix.is_none() {
                return Err(c.err(
                    &r.pool,
                    &rkey,
                    "a route needs `host`, `path_prefix` or both.".into(),
                ));
            }
            let pool = lookup_pool(&c, &pool_index, &r.pool, &format!("{rkey}.pool"))?;
            routes.push(RouteConfig {
                host,
                path_prefix,
                pool,
            });
        }
        if pool.is_none() {
            return Err(c.err(
                &l.name,
                &key,
                format!(
                    "listener {name:?} needs a default `pool` for requests its routes do not match."
                ),
            ));
        }
        listeners.push(ListenerConfig {
            name,
            bind,
            pool,
            routes,
        });
    }

    let mut trusted_proxies = Vec::new();
    for (i, t) in file.trusted_proxies.iter().flatten().enumerate() {
        let v = t.value.trim();
        let net = v
            .parse::<IpNet>()
            .or_else(|_| v.parse::<std::net::IpAddr>().map(IpNet::from))
            .map_err(|_| {
                c.err(t, &format!("trusted_proxies[{i}]"), format!("`trusted_proxies` entries must be addresses or CIDR networks such as 10.0.0.0/8, not {:?}.", t.value))
            })?;
        trusted_proxies.push(net);
    }

    let d = Timeouts::default();
    let t = file.timeouts.unwrap_or_default();
    let timeouts = Timeouts {
        connect: positive(&c, &t.connect, "timeouts.connect", d.connect)?,
        request_header: positive(
            &c,
            &t.request_header,
            "timeouts.request_header",
            d.request_header,
        )?,
        backend_response: positive(
            &c,
            &t.backend_response,
            "timeouts.backend_response",
            d.backend_response,
        )?,
        client_idle: positive(&c, &t.client_idle, "timeouts.client_idle", d.client_idle)?,
        shutdown_grace: c.duration(
            &t.shutdown_grace,
            "timeouts.shutdown_grace",
            d.shutdown_grace,
        )?,
    };

    let dl = Limits::default();
    let lf = file.limits.unwrap_or_default();
    let limits = Limits {
        max_connections: match &lf.max_connections {
            None => dl.max_connections,
            Some(v) if v.value == 0 => {
                return Err(c.err(
                    v,
                    "limits.max_connections",
                    "`max_connections` must be at least 1.".into(),
                ));
            }
            Some(v) => usize::try_from(v.value).unwrap_or(usize::MAX),
        },
        max_header_bytes: match &lf.max_header_bytes {
            None => dl.max_header_bytes,
            Some(v) if !(1024..=16 * 1024 * 1024).contains(&v.value) => {
                return Err(c.err(
                    v,
                    "limits.max_header_bytes",
                    "`max_header_bytes` must be between 1024 and 16777216.".into(),
                ));
            }
            Some(v) => usize::try_from(v.value).unwrap_or(usize::MAX),
        },
    };

    let workers = match &file.workers {
        None => None,
        Some(w) => match &w.value {
            file::Workers::Word(s) if s == "auto" => None,
            file::Workers::Count(n) if (1..=1024).contains(n) => Some(*n as usize),
            _ => {
                return Err(c.err(
                    w,
                    "workers",
                    "`workers` must be `auto` or a number of threads from 1 to 1024.".into(),
                ));
            }
        },
    };

    let lf = file.log.unwrap_or_default();
    let level = c.choice(
        &lf.level,
        "log.level",
        &[
            ("error", "error"),
            ("warn", "warn"),
            ("info", "info"),
            ("debug", "debug"),
            ("trace", "trace"),
        ],
        "info",
    )?;
    let format = c.choice(
        &lf.format,
        "log.format",
        &[("text", LogFormat::Text), ("json", LogFormat::Json)],
        LogFormat::Text,
    )?;
    let log = LogConfig {
        level: level.to_owned(),
        format,
        access: lf.access.unwrap_or(true),
    };

    Ok(Config {
        listeners,
        trusted_proxies,
        timeouts,
        limits,
        state_dir: PathBuf::from(file.state_dir.unwrap_or_else(|| "./state".to_owned())),
        workers,
        log,
        pools,
    })
}

fn positive(
    c: &Checker<'_>,
    v: &Option<S<String>>,
    key: &str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let d = c.duration(v, key, default)?;
    match v {
        Some(s) if d.is_zero() => Err(c.err(s, key, format!("`{key}` must be longer than zero."))),
        _ => Ok(d),
    }
}

/// Two binds conflict when they are the same, or one is the wildcard address
/// of the other's family on the same port.
fn conflicts(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

fn lookup_pool(
    c: &Checker<'_>,
    index: &HashMap<String, usize>,
    name: &S<String>,
    key: &str,
) -> Result<usize, ConfigError> {
    index.get(&name.value).copied().ok_or_else(|| {
        c.err(
            name,
            key,
            format!("pool {:?} is not defined under `pools`.", name.value),
        )
    })
}

fn validate_pool(
    c: &Checker<'_>,
    key: &str,
    name: String,
    p: &file::PoolFile,
) -> Result<PoolConfig, ConfigError> {
    let balance = c.choice(
        &p.balance,
        &format!("{key}.balance"),
        &[
            ("round_robin", Balance::RoundRobin),
            ("least_conn", Balance::LeastConn),
            ("random_two", Balance::RandomTwo),
        ],
        Balance::RoundRobin,
    )?;
    let retries = match &p.retries {
        None => 2,
        Some(r) if r.value > 16 => {
            return Err(c.err(
                r,
                &format!("{key}.retries"),
                "`retries` must be between 0 and 16.".into(),
            ));
        }
        Some(r) => r.value as u32,
    };
    if p.servers.value.is_empty() {
        return Err(c.err(
            &p.servers,
            &format!("{key}.servers"),
            format!("pool {name:?} has no servers; it needs at least one."),
        ));
    }
    let mut servers: Vec<ServerConfig> = Vec::new();
    let mut routes = HashSet::new();
    for (i, s) in p.servers.value.iter().enumerate() {
        let skey = format!("{key}.servers[{i}]");
        let sname = c.name(&s.name, &format!("{skey}.name"))?;
        if servers.iter().any(|o| o.name == sname) {
            return Err(c.err(
                &s.name,
                &skey,
                format!("server {sname:?} appears twice in pool {name:?}."),
            ));
        }
        let address = c.address(&s.address, &format!("{skey}.address"))?;
        let weight = match &s.weight {
            None => 1,
            Some(w) if w.value == 0 || w.value > MAX_WEIGHT => {
                return Err(c.err(
                    w,
                    &format!("{skey}.weight"),
                    format!("`weight` must be between 1 and {MAX_WEIGHT} (use `state: drain` or `disabled` to take a server out), not {}.", w.value),
                ));
            }
            Some(w) => w.value as u32,
        };
        let route = c.token(&s.route, &format!("{skey}.route"), &sname)?;
        if !routes.insert(route.clone()) {
            let at = s.route.as_ref().unwrap_or(&s.name);
            return Err(c.err(at, &skey, format!("route {route:?} is used by two servers of pool {name:?}; routes must be unique.")));
        }
        let state = c.choice(
            &s.state,
            &format!("{skey}.state"),
            &[
                ("active", ServerState::Active),
                ("drain", ServerState::Drain),
                ("disabled", ServerState::Disabled),
            ],
            ServerState::Active,
        )?;
        servers.push(ServerConfig {
            name: sname,
            address,
            weight,
            route,
            state,
        });
    }
    let sticky = validate_sticky(c, key, p.sticky.as_ref())?;
    let health_check = match &p.health_check {
        Some(h) => Some(validate_health(c, &format!("{key}.health_check"), h)?),
        None => None,
    };
    let dp = PassiveConfig::default();
    let pf = p.passive.as_ref();
    let passive = PassiveConfig {
        max_fails: match pf.and_then(|p| p.max_fails.as_ref()) {
            None => dp.max_fails,
            Some(m) if m.value > 1000 => {
                return Err(c.err(
                    m,
                    &format!("{key}.passive.max_fails"),
                    "`max_fails` must be between 0 (off) and 1000.".into(),
                ));
            }
            Some(m) => m.value as u32,
        },
        fail_timeout: positive(
            c,
            &pf.and_then(|p| p.fail_timeout.clone()),
            &format!("{key}.passive.fail_timeout"),
            dp.fail_timeout,
        )?,
    };
    let slow_start = c.duration(&p.slow_start, &format!("{key}.slow_start"), Duration::ZERO)?;
    Ok(PoolConfig {
        name,
        balance,
        sticky,
        retries,
        health_check,
        passive,
        slow_start,
        servers,
    })
}

fn validate_health(
    c: &Checker<'_>,
    key: &str,
    h: &file::HealthCheckFile,
) -> Result<HealthCheckConfig, ConfigError> {
    let k = |sub: &str| format!("{key}.{sub}");
    let kind = c.choice(
        &h.kind,
        &k("type"),
        &[("http", CheckKind::Http), ("tcp", CheckKind::Tcp)],
        CheckKind::Http,
    )?;
    let path = match &h.path {
        Some(p)
            if !p.value.starts_with('/') || p.value.parse::<http::uri::PathAndQuery>().is_err() =>
        {
            return Err(c.err(
                p,
                &k("path"),
                format!(
                    "`path` must be a request path starting with `/`, not {:?}.",
                    p.value
                ),
            ));
        }
        Some(p) => p.value.clone(),
        None => "/health".to_owned(),
    };
    let method = match &h.method {
        Some(m) => m
            .value
            .parse::<http::Method>()
            .ok()
            .filter(|_| m.value.bytes().all(|b| b.is_ascii_uppercase()))
            .ok_or_else(|| {
                c.err(
                    m,
                    &k("method"),
                    format!(
                        "`method` must be an HTTP method such as GET or HEAD, not {:?}.",
                        m.value
                    ),
                )
            })?,
        None => http::Method::GET,
    };
    let host = match &h.host {
        Some(v) if http::HeaderValue::from_str(&v.value).is_err() || v.value.is_empty() => {
            return Err(c.err(
                v,
                &k("host"),
                format!(
                    "`host` must be a valid Host header value, not {:?}.",
                    v.value
                ),
            ));
        }
        Some(v) => Some(v.value.clone()),
        None => None,
    };
    let expect_status = match &h.expect_status {
        None => vec![(200, 399)],
        Some(s) => {
            let text = match &s.value {
                file::StatusSpec::Code(n) => n.to_string(),
                file::StatusSpec::Text(t) => t.clone(),
            };
            parse_status_ranges(&text).ok_or_else(|| {
                c.err(s, &k("expect_status"), format!("`expect_status` must be a code, a range or a comma list of them such as \"200-299,302\", not {text:?}."))
            })?
        }
    };
    let interval = positive(c, &h.interval, &k("interval"), Duration::from_secs(2))?;
    let timeout = positive(c, &h.timeout, &k("timeout"), Duration::from_secs(1))?;
    let count = |v: &Option<S<u64>>, name: &str, default: u32| -> Result<u32, ConfigError> {
        match v {
            None => Ok(default),
            Some(n) if n.value == 0 || n.value > 100 => {
                Err(c.err(n, &k(name), format!("`{name}` must be between 1 and 100.")))
            }
            Some(n) => Ok(n.value as u32),
        }
    };
    Ok(HealthCheckConfig {
        kind,
        path,
        method,
        host,
        expect_status,
        interval,
        timeout,
        rise: count(&h.rise, "rise", 2)?,
        fall: count(&h.fall, "fall", 3)?,
    })
}

/// `"200"`, `"200-399"`, `"200-299,302"` → inclusive ranges of codes 100–599.
pub fn parse_status_ranges(text: &str) -> Option<Vec<(u16, u16)>> {
    let code = |s: &str| {
        s.trim()
            .parse::<u16>()
            .ok()
            .filter(|c| (100..=599).contains(c))
    };
    text.split(',')
        .map(|part| match part.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi) = (code(lo)?, code(hi)?);
                (lo <= hi).then_some((lo, hi))
            }
            None => code(part).map(|c| (c, c)),
        })
        .collect()
}

fn validate_sticky(
    c: &Checker<'_>,
    key: &str,
    s: Option<&file::StickyFile>,
) -> Result<StickyConfig, ConfigError> {
    let default = file::StickyFile::default();
    let s = s.unwrap_or(&default);
    let k = |sub: &str| format!("{key}.sticky.{sub}");
    let mode = c.choice(
        &s.mode,
        &k("mode"),
        &[
            ("none", StickyMode::None),
            ("ip_hash", StickyMode::IpHash),
            ("cookie", StickyMode::Cookie),
            ("jvm_route", StickyMode::JvmRoute),
            ("learn", StickyMode::Learn),
        ],
        StickyMode::None,
    )?;
    let on_server_down = c.choice(
        &s.on_server_down,
        &k("on_server_down"),
        &[
            ("redispatch", OnServerDown::Redispatch),
            ("error", OnServerDown::Error),
        ],
        OnServerDown::Redispatch,
    )?;
    let ip = s.ip_hash.as_ref();
    let ip_hash_key = c.choice(
        &ip.and_then(|i| i.key.clone()),
        &k("ip_hash.key"),
        &[
            ("address", IpHashKey::Address),
            ("subnet", IpHashKey::Subnet),
        ],
        IpHashKey::Address,
    )?;

    let cd = file::CookieFile::default();
    let cf = s.cookie.as_ref().unwrap_or(&cd);
    let cookie = CookieConfig {
        name: c.token(&cf.name, &k("cookie.name"), "SERVERID")?,
        path: match &cf.path {
            Some(p) if !p.value.starts_with('/') || p.value.contains([';', ',', ' ']) => {
                return Err(c.err(
                    p,
                    &k("cookie.path"),
                    format!(
                        "`path` must start with `/` and contain no `;`, `,` or spaces, not {:?}.",
                        p.value
                    ),
                ));
            }
            Some(p) => p.value.clone(),
            None => "/".to_owned(),
        },
        domain: match &cf.domain {
            Some(d) => Some(c.token(&Some(d.clone()), &k("cookie.domain"), "")?),
            None => None,
        },
        max_age: match &cf.max_age {
            Some(_) => Some(c.duration(&cf.max_age, &k("cookie.max_age"), Duration::ZERO)?),
            None => None,
        },
        secure: cf.secure.unwrap_or(false),
        http_only: cf.http_only.unwrap_or(true),
        same_site: c.choice(
            &cf.same_site,
            &k("cookie.same_site"),
            &[
                ("strict", SameSite::Strict),
                ("lax", SameSite::Lax),
                ("none", SameSite::None),
            ],
            SameSite::Lax,
        )?,
        indirect: cf.indirect.unwrap_or(true),
        nocache: cf.nocache.unwrap_or(true),
    };
    if cookie.same_site == SameSite::None && !cookie.secure {
        let at = cf
            .same_site
            .as_ref()
            .map(|s| s.referenced)
            .unwrap_or(serde_saphyr::Location::UNKNOWN);
        return Err(ConfigError::at(
            c.path,
            at,
            &k("cookie.same_site"),
            "`same_site: none` needs `secure: true`; browsers reject such cookies otherwise."
                .into(),
        ));
    }

    let jd = file::JvmRouteFile::default();
    let jf = s.jvm_route.as_ref().unwrap_or(&jd);
    let jvm_route = JvmRouteConfig {
        cookie: c.token(&jf.cookie, &k("jvm_route.cookie"), "JSESSIONID")?,
        path_param: c.token(&jf.path_param, &k("jvm_route.path_param"), "jsessionid")?,
        separator: match &jf.separator {
            Some(sep) if sep.value.is_empty() || sep.value.contains([';', '=', ',', ' ']) => {
                return Err(c.err(sep, &k("jvm_route.separator"), format!("`separator` must be non-empty and contain no `;`, `=`, `,` or spaces, not {:?}.", sep.value)));
            }
            Some(sep) => sep.value.clone(),
            None => ".".to_owned(),
        },
    };

    let ld = file::LearnFile::default();
    let lf = s.learn.as_ref().unwrap_or(&ld);
    let learn = LearnConfig {
        cookie: c.token(&lf.cookie, &k("learn.cookie"), "JSESSIONID")?,
        path_param: c.token(&lf.path_param, &k("learn.path_param"), "jsessionid")?,
        max_len: match &lf.max_len {
            None => 64,
            Some(v) if v.value == 0 || v.value > 4096 => {
                return Err(c.err(
                    v,
                    &k("learn.max_len"),
                    "`max_len` must be between 1 and 4096.".into(),
                ));
            }
            Some(v) => v.value as usize,
        },
        idle_timeout: positive(
            c,
            &lf.idle_timeout,
            &k("learn.idle_timeout"),
            Duration::from_secs(5 * 3600),
        )?,
        request_learn: lf.request_learn.unwrap_or(true),
        capacity: match &lf.capacity {
            None => 1_000_000,
            Some(v) if v.value == 0 => {
                return Err(c.err(
                    v,
                    &k("learn.capacity"),
                    "`capacity` must be at least 1.".into(),
                ));
            }
            Some(v) => v.value,
        },
        persist: lf.persist.unwrap_or(true),
        store: match &lf.store {
            Some(st) => {
                return Err(c.err(st, &k("learn.store"), "`store` (a shared session table) is not supported by this version of limpet yet; remove it.".into()));
            }
            None => None,
        },
    };
    Ok(StickyConfig {
        mode,
        on_server_down,
        ip_hash_key,
        cookie,
        jvm_route,
        learn,
    })
}
