//! cookie: limpet inserts its own cookie naming the server's route (HAProxy
//! `cookie SERVERID insert indirect nocache`, Tengine `session_sticky`). The
//! `Set-Cookie` value of every server is built once per snapshot.

use http::header::{CACHE_CONTROL, HeaderValue, SET_COOKIE};

use crate::config::{CookieConfig, SameSite};
use crate::decision::{Affinity, Decision};
use crate::fields::Fields;
use crate::server::Servers;

use super::{Found, cookies};

#[derive(Debug, Clone)]
pub struct CookieMode {
    pub config: CookieConfig,
    /// The `Set-Cookie` header naming each server, by server index.
    set_cookie: Box<[HeaderValue]>,
}

impl CookieMode {
    pub fn new(config: &CookieConfig, servers: &Servers) -> CookieMode {
        let set_cookie = servers
            .iter()
            .map(|s| {
                let line = set_cookie_line(config, &s.route);
                HeaderValue::from_str(&line)
                    .unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
            })
            .collect();
        CookieMode {
            config: config.clone(),
            set_cookie,
        }
    }

    pub fn find(&self, servers: &Servers, key: u64, headers: &impl Fields) -> Found {
        let mut affinity = Affinity::None;
        for value in cookies::request_values(headers, &self.config.name) {
            // HAProxy's `maxidle`/`maxlife` append dates (`s1|date|date`):
            // the route is what comes before the first `|`, so a visitor
            // of an HAProxy being replaced keeps its server.
            let route = servers.by_route(value).or_else(|| {
                let bar = value.iter().position(|&b| b == b'|')?;
                servers.by_route(&value[..bar])
            });
            match route {
                Some(i) => {
                    affinity = Affinity::Server(i);
                    break;
                }
                None if servers.was_removed(value) => {
                    affinity = Affinity::Removed;
                    break;
                }
                None => affinity = Affinity::UnknownRoute,
            }
        }
        Found {
            affinity,
            key: Some(key),
            session: None,
            held: match affinity {
                Affinity::Server(i) => Some(i),
                _ => None,
            },
            recent: None,
            ..Found::default()
        }
    }

    /// `indirect`: the backend never sees our cookie.
    pub fn prepare(&self, headers: &mut impl Fields) {
        if self.config.indirect {
            cookies::strip(headers, &self.config.name);
        }
    }

    pub fn respond(&self, found: &Found, decision: Decision, headers: &mut impl Fields) {
        if self.config.indirect && found.held == Some(decision.server) {
            return;
        }
        let Some(value) = self.set_cookie.get(decision.server) else {
            return;
        };
        headers.append(SET_COOKIE, value.clone());
        if self.config.nocache {
            add_private(headers);
        }
    }
}

/// Adds `private` to the response's cache directives, keeping the backend's own.
fn add_private(headers: &mut impl Fields) {
    let existing: Vec<&str> = headers
        .all(&CACHE_CONTROL)
        .filter_map(|v| std::str::from_utf8(v).ok())
        .collect();
    if existing
        .iter()
        .flat_map(|v| v.split(','))
        .any(|d| d.trim().eq_ignore_ascii_case("private"))
    {
        return;
    }
    let mut joined = existing.join(", ");
    if !joined.is_empty() {
        joined.push_str(", ");
    }
    joined.push_str("private");
    if let Ok(v) = HeaderValue::from_str(&joined) {
        headers.replace(CACHE_CONTROL, Some(v));
    }
}

fn set_cookie_line(c: &CookieConfig, value: &str) -> String {
    use std::fmt::Write;
    let mut line = format!("{}={}; Path={}", c.name, value, c.path);
    if let Some(d) = &c.domain {
        let _ = write!(line, "; Domain={d}");
    }
    if let Some(age) = c.max_age {
        let _ = write!(line, "; Max-Age={}", age.as_secs());
    }
    if c.secure {
        line.push_str("; Secure");
    }
    if c.http_only {
        line.push_str("; HttpOnly");
    }
    line.push_str(match c.same_site {
        SameSite::Strict => "; SameSite=Strict",
        SameSite::Lax => "; SameSite=Lax",
        SameSite::None => "; SameSite=None",
    });
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use std::time::Duration;

    #[test]
    fn the_set_cookie_line_has_every_configured_attribute() {
        let c = CookieConfig {
            name: "SERVERID".into(),
            path: "/app".into(),
            domain: Some("example.com".into()),
            max_age: Some(Duration::from_secs(3600)),
            secure: true,
            http_only: true,
            same_site: SameSite::Strict,
            indirect: true,
            nocache: true,
        };
        assert_eq!(
            set_cookie_line(&c, "node2"),
            "SERVERID=node2; Path=/app; Domain=example.com; Max-Age=3600; Secure; HttpOnly; SameSite=Strict"
        );
    }

    #[test]
    fn private_is_added_to_the_backends_directives_once() {
        let mut h = HeaderMap::new();
        add_private(&mut h);
        assert_eq!(
            h.get(CACHE_CONTROL).map(|v| v.as_bytes()),
            Some(&b"private"[..])
        );
        let mut h = HeaderMap::new();
        h.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=60"));
        add_private(&mut h);
        add_private(&mut h);
        assert_eq!(
            h.get(CACHE_CONTROL).map(|v| v.as_bytes()),
            Some(&b"max-age=60, private"[..])
        );
    }
}
