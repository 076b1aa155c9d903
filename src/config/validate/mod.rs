//! Validation: the serde mirror of `lb.yaml` becomes the typed [`Config`], or
//! the first problem found is reported with its position. Every number and
//! duration has a documented range (docs/configuration.md), so whatever
//! `limpet check` accepts also runs. The global settings (trusted proxies,
//! timeouts, limits, workers, log, state_dir) are checked here; each
//! section with more to it has its own file.

mod admin;
mod checker;
mod listeners;
mod pool;
mod secret;
mod sticky;
mod tls;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ipnet::IpNet;

use super::file::{self, FileConfig, S};
use super::{Config, ConfigError, Limits, LogConfig, LogFormat, Timeouts};
use checker::{Checker, DAY, HOUR, MS, Span};

/// Most client connections one limpet accepts at once.
pub const MAX_CONNECTIONS: u64 = 1_000_000;

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
        pools,
    })
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
