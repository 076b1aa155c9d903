//! Validation of one pool: balance, retries, servers, health checks,
//! passive checks and slow start (the sticky block is in `sticky.rs`).

use std::collections::HashSet;
use std::time::Duration;

use super::super::file;
use super::super::{
    Balance, CheckKind, ConfigError, HealthCheckConfig, PassiveConfig, PoolConfig, ServerConfig,
    ServerState, Source,
};
use super::checker::{Checker, DAY, HOUR, MAX_WEIGHT, MS, Span};

/// One server (`skey` names it in errors).
pub fn server(
    c: &Checker<'_>,
    skey: &str,
    s: &file::ServerFile,
    roots: &mut super::tls::Roots,
    source: Source,
) -> Result<ServerConfig, ConfigError> {
    let name = c.name(&s.name, &format!("{skey}.name"))?;
    let (address, host) = c.server_address(&s.address, &format!("{skey}.address"))?;
    let weight = c.number(
        &s.weight,
        &format!("{skey}.weight"),
        1,
        1,
        MAX_WEIGHT,
        " (use `state: drain` or `disabled` to take a server out)",
    )? as u32;
    let route = c.token(&s.route, &format!("{skey}.route"), &name)?;
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
    let tls = match &s.tls {
        Some(t) => super::tls::server(
            c,
            t,
            address,
            host.as_deref(),
            &format!("{skey}.tls"),
            roots,
        )?,
        None => None,
    };
    Ok(ServerConfig {
        name,
        address,
        weight,
        route,
        state,
        tls,
        backup: file::flag(s.backup, false),
        source,
        resolved: host.is_none(),
        host: host.map(Into::into),
        others: Vec::new(),
    })
}

pub fn validate(
    c: &Checker<'_>,
    key: &str,
    name: String,
    p: &file::PoolFile,
    roots: &mut super::tls::Roots,
    warnings: &mut Vec<String>,
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
    let retries = c.number(&p.retries, &format!("{key}.retries"), 2, 0, 16, "")? as u32;
    let discover = match &p.discover {
        Some(d) => Some(super::dns::discover(
            c,
            &format!("{key}.discover"),
            d,
            roots,
        )?),
        None => None,
    };
    let listed = p.servers.as_ref().map_or(&[][..], |s| &s.value[..]);
    if listed.is_empty() && discover.is_none() {
        let message =
            format!("pool {name:?} has no servers; it needs at least one, or `discover`.");
        return Err(match &p.servers {
            Some(s) => c.err(s, &format!("{key}.servers"), message),
            None => ConfigError::at(
                c.path,
                serde_saphyr::Location::UNKNOWN,
                &format!("{key}.servers"),
                message,
            ),
        });
    }
    let mut servers: Vec<ServerConfig> = Vec::new();
    let mut routes = HashSet::new();
    for (i, s) in listed.iter().enumerate() {
        let skey = format!("{key}.servers[{i}]");
        let server = server(c, &skey, s, roots, Source::File)?;
        if servers.iter().any(|o| o.name == server.name) {
            return Err(c.err(
                &s.name,
                &skey,
                format!("server {:?} appears twice in pool {name:?}.", server.name),
            ));
        }
        if !routes.insert(server.route.clone()) {
            let at = s.route.as_ref().unwrap_or(&s.name);
            return Err(c.err(
                at,
                &skey,
                format!(
                    "route {:?} is used by two servers of pool {name:?}; routes must be unique.",
                    server.route
                ),
            ));
        }
        servers.push(server);
    }
    let sticky = super::sticky::validate(c, key, p.sticky.as_ref(), warnings)?;
    let health_check = match &p.health_check {
        Some(h) => Some(health(c, &format!("{key}.health_check"), h)?),
        None => None,
    };
    let dp = PassiveConfig::default();
    let pf = p.passive.as_ref();
    let passive = PassiveConfig {
        max_fails: c.number(
            &pf.and_then(|p| p.max_fails.clone()),
            &format!("{key}.passive.max_fails"),
            u64::from(dp.max_fails),
            0,
            1000,
            " (0 turns passive checks off)",
        )? as u32,
        fail_timeout: c.duration(
            &pf.and_then(|p| p.fail_timeout.clone()),
            &format!("{key}.passive.fail_timeout"),
            dp.fail_timeout,
            Span::new(MS, DAY),
        )?,
    };
    let slow_start = c.duration(
        &p.slow_start,
        &format!("{key}.slow_start"),
        Duration::ZERO,
        Span::new(Duration::ZERO, HOUR),
    )?;
    Ok(PoolConfig {
        name,
        balance,
        sticky,
        retries,
        health_check,
        passive,
        slow_start,
        discover,
        servers,
    })
}

fn health(
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
            .filter(|_| m.value.bytes().all(|b| b.is_ascii_uppercase()) && m.value != "CONNECT")
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
        Some(v)
            if v.value.is_empty()
                || http::uri::Authority::try_from(v.value.as_str()).is_err()
                || v.value.contains('@') =>
        {
            return Err(c.err(
                v,
                &k("host"),
                format!(
                    "`host` must be a host name, with an optional port, for the Host header, not {:?}.",
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
                file::StatusSpec::Code(n) => n.0.to_string(),
                file::StatusSpec::Text(t) => t.clone(),
            };
            parse_status_ranges(&text).ok_or_else(|| {
                c.err(s, &k("expect_status"), format!("`expect_status` must be a code, a range or a comma list of them such as \"200-299,302\", not {text:?}."))
            })?
        }
    };
    let interval = c.duration(
        &h.interval,
        &k("interval"),
        Duration::from_secs(2),
        Span::new(Duration::from_millis(10), HOUR),
    )?;
    let timeout = c.duration(
        &h.timeout,
        &k("timeout"),
        Duration::from_secs(1),
        Span::new(MS, HOUR),
    )?;
    Ok(HealthCheckConfig {
        kind,
        path,
        method,
        host,
        expect_status,
        interval,
        timeout,
        rise: c.number(&h.rise, &k("rise"), 2, 1, 100, "")? as u32,
        fall: c.number(&h.fall, &k("fall"), 3, 1, 100, "")? as u32,
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
