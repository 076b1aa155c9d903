//! Validation: the serde mirror of `lb.yaml` becomes the typed [`Config`], or
//! the first problem found is reported with its position. Every number and
//! duration has a documented range (docs/configuration.md), so whatever
//! `limpet check` accepts also runs. The global settings (trusted proxies,
//! timeouts, limits, workers, log, state_dir, http1) are checked here; each
//! section with more to it has its own file.

mod admin;
pub mod api;
mod checker;
mod dns;
mod listeners;
mod pool;
mod secret;
mod sticky;
mod store;
mod tls;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ipnet::IpNet;

use super::file::{self, FileConfig, S};
use super::{Config, ConfigError, HTTP1_ENV, Http1, Limits, LogConfig, LogFormat, Timeouts};
use checker::{Checker, DAY, HOUR, MS, Span};

/// Most client connections one limpet accepts at once.
pub const MAX_CONNECTIONS: u64 = 1_000_000;

/// `http1_env` is the value of [`HTTP1_ENV`], if set.
pub fn validate(
    file: FileConfig,
    path: &Path,
    http1_env: Option<&str>,
) -> Result<Config, ConfigError> {
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
    let mut roots = tls::Roots::new();
    let mut warnings = Vec::new();
    for (name, p) in &file.pools.value {
        let key = format!("pools.{}", name.value);
        let n = c.name(name, "pools")?;
        if pool_index.insert(n.clone(), pools.len()).is_some() {
            return Err(c.err(name, &key, format!("pool {n:?} is defined twice.")));
        }
        pools.push(pool::validate(&c, &key, n, p, &mut roots, &mut warnings)?);
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

    let listeners = listeners::validate(
        &c,
        &file.listeners,
        &pool_index,
        listeners::Context {
            pools: &pools,
            trusted_proxies: &trusted_proxies,
        },
        &mut warnings,
    )?;
    let admin = match &file.admin {
        Some(a) => Some(admin::validate(&c, a.as_ref(), &listeners, &mut warnings)?),
        None => None,
    };

    let d = Timeouts::default();
    let t = file.timeouts.unwrap_or_default();
    let timeouts = Timeouts {
        connect: c.duration(
            &t.connect,
            "timeouts.connect",
            d.connect,
            Span::new(MS, HOUR),
        )?,
        request_header: c.duration(
            &t.request_header,
            "timeouts.request_header",
            d.request_header,
            Span::new(MS, HOUR),
        )?,
        client_body: c.duration(
            &t.client_body,
            "timeouts.client_body",
            d.client_body,
            Span::new(MS, DAY),
        )?,
        backend_response: c.duration(
            &t.backend_response,
            "timeouts.backend_response",
            d.backend_response,
            Span::new(MS, DAY),
        )?,
        client_idle: c.duration(
            &t.client_idle,
            "timeouts.client_idle",
            d.client_idle,
            Span::new(MS, DAY),
        )?,
        shutdown_grace: c.duration(
            &t.shutdown_grace,
            "timeouts.shutdown_grace",
            d.shutdown_grace,
            Span::new(std::time::Duration::ZERO, DAY),
        )?,
    };

    let dl = Limits::default();
    let lf = file.limits.unwrap_or_default();
    let limits = Limits {
        max_connections: c.number(
            &lf.max_connections,
            "limits.max_connections",
            dl.max_connections as u64,
            1,
            MAX_CONNECTIONS,
            "",
        )? as usize,
        max_header_bytes: c.number(
            &lf.max_header_bytes,
            "limits.max_header_bytes",
            dl.max_header_bytes as u64,
            1024,
            16 * 1024 * 1024,
            "",
        )? as usize,
        max_headers: c.number(
            &lf.max_headers,
            "limits.max_headers",
            dl.max_headers as u64,
            1,
            1000,
            "",
        )? as usize,
    };

    let workers = match &file.workers {
        None => None,
        Some(w) => match &w.value {
            file::Workers::Word(s) if s == "auto" => None,
            file::Workers::Count(n) if (1..=1024).contains(&n.0) => Some(n.0 as usize),
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
        access: file::flag(lf.access, true),
        file: log_file(&c, lf.file.as_ref())?,
    };

    let http1 = http1(&c, &file.http1, http1_env)?;
    let resolvers = dns::resolvers(&c, file.resolvers.as_ref())?;

    let state_dir = match &file.state_dir {
        None => PathBuf::from("./state"),
        Some(s) => {
            let dir = PathBuf::from(s.value.trim());
            if s.value.trim().is_empty() {
                return Err(c.err(s, "state_dir", "`state_dir` must not be empty.".into()));
            }
            if dir.exists() && !dir.is_dir() {
                return Err(c.err(
                    s,
                    "state_dir",
                    format!("`state_dir` {:?} exists and is not a directory.", s.value),
                ));
            }
            dir
        }
    };

    Ok(Config {
        source: path.to_path_buf(),
        warnings,
        listeners,
        admin,
        trusted_proxies,
        timeouts,
        limits,
        state_dir,
        workers,
        log,
        http1,
        resolvers,
        pools,
    })
}

/// The values of `http1:` and of [`HTTP1_ENV`].
const HTTP1: &[(&str, Http1)] = &[("limpet", Http1::Limpet), ("hyper", Http1::Hyper)];

/// `http1:` if the file has it, else the environment's `env`, else limpet's
/// own engine. An invalid `env` is an error even when the file decides: it
/// is a mistake either way, and would surface the day the key is removed.
fn http1(
    c: &Checker<'_>,
    value: &Option<S<String>>,
    env: Option<&str>,
) -> Result<Http1, ConfigError> {
    let default = match env {
        None => Http1::default(),
        Some(v) => HTTP1
            .iter()
            .find(|(name, _)| *name == v)
            .map(|(_, h)| *h)
            .ok_or_else(|| ConfigError::Env {
                name: HTTP1_ENV,
                expected: "limpet or hyper",
                value: v.to_owned(),
            })?,
    };
    c.choice(value, "http1", HTTP1, default)
}

/// `log.file`: a file in a directory that exists (it is created, or
/// appended to, when limpet starts).
fn log_file(c: &Checker<'_>, f: Option<&S<String>>) -> Result<Option<PathBuf>, ConfigError> {
    let Some(f) = f else { return Ok(None) };
    let path = PathBuf::from(f.value.trim());
    let dir = match path.parent() {
        Some(d) if d.as_os_str().is_empty() => Path::new("."),
        Some(d) => d,
        None => {
            return Err(c.err(f, "log.file", "`log.file` must name a file.".into()));
        }
    };
    if f.value.trim().is_empty() || path.file_name().is_none() {
        return Err(c.err(f, "log.file", "`log.file` must name a file.".into()));
    }
    if path.is_dir() {
        return Err(c.err(
            f,
            "log.file",
            format!(
                "`log.file` {:?} is a directory; name a file in it.",
                f.value
            ),
        ));
    }
    if !dir.is_dir() {
        return Err(c.err(
            f,
            "log.file",
            format!(
                "the directory of `log.file` {:?} does not exist; create it (writable by limpet's user).",
                f.value
            ),
        ));
    }
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{ConfigError, Http1, parse_with_env};

    const GOOD: &str = "\
listeners: [{ name: a, bind: 127.0.0.1:1, pool: p }]
pools:
  p:
    servers: [{ name: s, address: 127.0.0.1:2 }]
";

    fn http1(key: Option<&str>, env: Option<&str>) -> Result<Http1, ConfigError> {
        let yaml = match key {
            Some(v) => format!("{GOOD}http1: {v}\n"),
            None => GOOD.to_owned(),
        };
        parse_with_env(&yaml, Path::new("lb.yaml"), env).map(|c| c.http1)
    }

    #[test]
    fn without_key_or_environment_http1_is_limpets_own() {
        assert_eq!(http1(None, None).unwrap(), Http1::Limpet);
        assert_eq!(Http1::default(), Http1::Limpet);
    }

    #[test]
    fn the_key_picks_either_engine() {
        assert_eq!(http1(Some("limpet"), None).unwrap(), Http1::Limpet);
        assert_eq!(http1(Some("hyper"), None).unwrap(), Http1::Hyper);
    }

    #[test]
    fn a_bad_value_is_an_error_at_its_position_naming_the_values() {
        for bad in ["fast", "Hyper", "\"\"", "1"] {
            let e = http1(Some(bad), None).unwrap_err().to_string();
            assert!(e.starts_with("lb.yaml:5:8: "), "{e}");
            assert!(
                e.contains("`http1` must be one of limpet, hyper, not "),
                "{e}"
            );
        }
    }

    #[test]
    fn the_environment_gives_the_default_when_the_file_has_no_key() {
        assert_eq!(http1(None, Some("hyper")).unwrap(), Http1::Hyper);
        assert_eq!(http1(None, Some("limpet")).unwrap(), Http1::Limpet);
    }

    #[test]
    fn the_files_key_wins_over_the_environment() {
        assert_eq!(http1(Some("limpet"), Some("hyper")).unwrap(), Http1::Limpet);
        assert_eq!(http1(Some("hyper"), Some("limpet")).unwrap(), Http1::Hyper);
    }

    #[test]
    fn a_bad_environment_value_is_an_error_even_when_the_file_decides() {
        for key in [None, Some("limpet")] {
            for bad in ["fast", "", "HYPER", " hyper"] {
                let e = http1(key, Some(bad)).unwrap_err();
                assert!(matches!(e, ConfigError::Env { .. }), "{e:?}");
                let e = e.to_string();
                assert!(
                    e.starts_with("LIMPET_HTTP1: expected limpet or hyper, not "),
                    "{e}"
                );
                assert!(e.contains(&format!("{bad:?}")), "{e}");
            }
        }
    }
}
