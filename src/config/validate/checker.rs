//! The small checks every part of validation shares: durations and numbers
//! within their documented ranges, choices, names and addresses. Each error
//! names the key and says what is accepted, in one sentence.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::super::ConfigError;
use super::super::file::{Num, S};

pub struct Checker<'a> {
    pub path: &'a Path,
}

/// An inclusive range of durations a key accepts.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    pub min: Duration,
    pub max: Duration,
}

/// Highest accepted server weight (HAProxy's limit); keeps the smooth
/// round-robin schedule small.
pub const MAX_WEIGHT: u64 = 256;

pub const MS: Duration = Duration::from_millis(1);
pub const SEC: Duration = Duration::from_secs(1);
pub const HOUR: Duration = Duration::from_secs(3600);
pub const DAY: Duration = Duration::from_secs(86_400);

impl Span {
    pub const fn new(min: Duration, max: Duration) -> Span {
        Span { min, max }
    }
}

/// `1500ms` → "1500ms", `3600s` → "1h": the way the docs write limits.
pub fn show(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

impl Checker<'_> {
    pub fn err<T>(&self, spanned: &S<T>, key: &str, message: String) -> ConfigError {
        ConfigError::at(self.path, spanned.referenced, key, message)
    }

    /// A duration within `span`, or `default` when absent.
    pub fn duration(
        &self,
        value: &Option<S<String>>,
        key: &str,
        default: Duration,
        span: Span,
    ) -> Result<Duration, ConfigError> {
        let Some(s) = value else { return Ok(default) };
        let d = humantime::parse_duration(s.value.trim()).map_err(|_| {
            self.err(
                s,
                key,
                format!(
                    "`{key}` must be a duration such as 500ms, 2s, 5m or 5h, not {:?}.",
                    s.value
                ),
            )
        })?;
        if d < span.min || d > span.max {
            let low = if span.min.is_zero() {
                "0s".to_owned()
            } else {
                show(span.min)
            };
            return Err(self.err(
                s,
                key,
                format!(
                    "`{key}` must be between {low} and {}, not {:?}.",
                    show(span.max),
                    s.value
                ),
            ));
        }
        Ok(d)
    }

    /// A whole number within `min..=max`, or `default` when absent.
    pub fn number(
        &self,
        value: &Option<S<Num>>,
        key: &str,
        default: u64,
        min: u64,
        max: u64,
        hint: &str,
    ) -> Result<u64, ConfigError> {
        let Some(n) = value else { return Ok(default) };
        if n.value.0 < min || n.value.0 > max {
            let leaf = key.rsplit('.').next().unwrap_or(key);
            return Err(self.err(
                n,
                key,
                format!(
                    "`{leaf}` must be between {min} and {max}{hint}, not {}.",
                    n.value.0
                ),
            ));
        }
        Ok(n.value.0)
    }

    pub fn choice<T: Copy>(
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

    /// A cookie name, path parameter name or route: printable ASCII without
    /// spaces, `;`, `,`, `=`, quotes or backslashes.
    pub fn token(
        &self,
        value: &Option<S<String>>,
        key: &str,
        default: &str,
    ) -> Result<String, ConfigError> {
        let Some(s) = value else {
            return Ok(default.to_owned());
        };
        let ok = !s.value.is_empty()
            && s.value.len() <= 256
            && s.value
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b";,=\"\\".contains(&b));
        if !ok {
            return Err(self.err(
                s,
                key,
                format!("`{key}` must be 1 to 256 characters without spaces, `;`, `,`, `=` or quotes, not {:?}.", s.value),
            ));
        }
        Ok(s.value.clone())
    }

    /// Names of listeners, pools and servers appear in logs, metric labels,
    /// URLs of the admin API and state file names: letters, digits, `_`,
    /// `-` and `.`, not starting with `.`.
    pub fn name(&self, s: &S<String>, key: &str) -> Result<String, ConfigError> {
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

    /// An address to listen on: an IP address and a port, where port 0
    /// lets the system pick a free one (the "listening" log line names it;
    /// for tests and throw-away instances). A reload or an upgrade with the
    /// same `bind` keeps the port it got.
    pub fn bind_address(&self, s: &S<String>, key: &str) -> Result<SocketAddr, ConfigError> {
        self.socket_address(s, key)
    }

    /// An IP address and a port from 1 to 65535.
    pub fn address(&self, s: &S<String>, key: &str) -> Result<SocketAddr, ConfigError> {
        let addr = self.socket_address(s, key)?;
        if addr.port() == 0 {
            return Err(self.err(
                s,
                key,
                format!(
                    "`{key}` must name a port from 1 to 65535, not 0, in {:?}.",
                    s.value
                ),
            ));
        }
        Ok(addr)
    }

    /// A server's address: an IP address and port, or a host name and
    /// port (then `0.0.0.0:<port>` and the name, resolved later).
    pub fn server_address(
        &self,
        s: &S<String>,
        key: &str,
    ) -> Result<(SocketAddr, Option<String>), ConfigError> {
        let text = s.value.trim();
        if text.parse::<SocketAddr>().is_ok() {
            return self.address(s, key).map(|a| (a, None));
        }
        let host_port = text.rsplit_once(':').and_then(|(host, port)| {
            let port = port.parse::<u16>().ok().filter(|p| *p != 0)?;
            is_dns_name(host).then(|| (host.to_owned(), port))
        });
        match host_port {
            Some((host, port)) => Ok((SocketAddr::from(([0, 0, 0, 0], port)), Some(host))),
            None => Err(self.err(
                s,
                key,
                format!(
                    "`{key}` must be an IP address or a host name, and a port from 1 to 65535, such as 10.0.1.11:8080 or tomcat-1.internal:8080, not {:?}.",
                    s.value
                ),
            )),
        }
    }

    fn socket_address(&self, s: &S<String>, key: &str) -> Result<SocketAddr, ConfigError> {
        let addr: SocketAddr = s.value.trim().parse().map_err(|_| {
            self.err(
                s,
                key,
                format!(
                    "`{key}` must be an IP address and port such as 127.0.0.1:8080, not {:?}.",
                    s.value
                ),
            )
        })?;
        Ok(addr)
    }
}

/// A name DNS is asked for: letters, digits, `-`, `_` (SRV labels) and
/// dots, at most 253 characters.
pub fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}
