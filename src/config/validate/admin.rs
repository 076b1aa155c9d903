//! Validation of the `admin` section: where it listens (never on a proxy
//! listener's address), the token file, which must exist, hold a token and
//! not be readable by everyone, and the host names it answers to.

use std::net::SocketAddr;

use super::super::file::{AdminFile, S};
use super::super::{AdminConfig, ConfigError, ListenerConfig, Token};
use super::checker::Checker;
use super::secret::read_secret;

/// The admin endpoint's address when the section does not say.
pub const DEFAULT_BIND: &str = "127.0.0.1:9090";

pub fn validate(
    c: &Checker<'_>,
    file: Option<&AdminFile>,
    listeners: &[ListenerConfig],
    warnings: &mut Vec<String>,
) -> Result<AdminConfig, ConfigError> {
    let default = AdminFile::default();
    let file = file.unwrap_or(&default);
    let bind = match &file.bind {
        Some(b) => {
            let addr = c.bind_address(b, "admin.bind")?;
            if let Some(l) = listeners
                .iter()
                .find(|l| super::listeners::conflicts(l.bind, addr))
            {
                return Err(c.err(
                    b,
                    "admin.bind",
                    format!(
                        "the admin endpoint binds {addr}, which conflicts with listener {:?} on {}; give it its own port.",
                        l.name, l.bind
                    ),
                ));
            }
            addr
        }
        None => {
            let addr: SocketAddr = DEFAULT_BIND
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 9090)));
            if let Some(l) = listeners
                .iter()
                .find(|l| super::listeners::conflicts(l.bind, addr))
            {
                return Err(ConfigError::at(
                    c.path,
                    serde_saphyr::Location::UNKNOWN,
                    "admin.bind",
                    format!(
                        "the admin endpoint's default address {addr} conflicts with listener {:?}; set `admin.bind`.",
                        l.name
                    ),
                ));
            }
            addr
        }
    };
    let token = match &file.token_file {
        Some(t) => Some(Token::new(read_secret(
            c,
            t,
            "admin.token_file",
            "token",
            warnings,
        )?)),
        None => None,
    };
    if token.is_none() && !bind.ip().is_loopback() {
        warnings.push(format!(
            "the admin endpoint binds {bind}, which is not a loopback address, and has no `admin.token_file`: whoever reaches it can change server states and reload; set a token."
        ));
    }
    let mut hosts = Vec::new();
    for (i, h) in file.hosts.iter().flatten().enumerate() {
        hosts.push(host(c, h, &format!("admin.hosts[{i}]"))?);
    }
    Ok(AdminConfig { bind, token, hosts })
}

/// An `admin.hosts` entry: a host name, in lower case. IP literals need no
/// entry (the endpoint always answers to them), and a wildcard would let
/// any name of a zone an attacker controls through.
fn host(c: &Checker<'_>, h: &S<String>, key: &str) -> Result<String, ConfigError> {
    let v = h.value.trim();
    let ip = v.parse::<std::net::IpAddr>().is_ok()
        || v.strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .is_some_and(|r| r.parse::<std::net::Ipv6Addr>().is_ok());
    let problem = if ip {
        "the admin endpoint always answers to IP addresses; list only names"
    } else if v.starts_with("*.") {
        "no wildcard: list each name"
    } else if !super::listeners::valid_route_host(v) {
        "it must be a host name such as limpet-admin.example.net, without a port or a scheme"
    } else {
        return Ok(v.to_ascii_lowercase());
    };
    Err(c.err(
        h,
        key,
        format!("`admin.hosts` entry {:?}: {problem}.", h.value),
    ))
}
