//! `<Proxy balancer://NAME>` with its `BalancerMember`s and `ProxySet`
//! parameters (and a `ProxyPass` target's own ones) → one pool: members
//! become servers (`loadfactor` → weight, `status=` → backup/drain/disabled,
//! `route=` → route), `lbmethod` → balance, `stickysession` → `jvm_route`,
//! or `cookie` mode when the vhost sets `ROUTEID=.%{BALANCER_WORKER_ROUTE}e`.

use crate::import::Options;
use crate::import::directive::Directive;
use crate::import::model::{
    Cookie, ImportError, JvmRoute, Lb, Note, Place, Pool, Server, Sticky, lb_name,
};

/// A balancer as written, gathered from wherever its pieces are.
#[derive(Debug, Default)]
pub struct Balancer {
    /// `NAME` of `balancer://NAME`, as the pool's name.
    pub pool: String,
    /// `balancer://name`, lowercase, to match references.
    pub url: String,
    pub members: Vec<Member>,
    /// `key=value` of `ProxySet` / `ProxyPass`, with where each was written.
    pub params: Vec<(String, String, Directive)>,
    /// Where it is first named (its `<Proxy>` or first member).
    pub at: Option<Directive>,
}

#[derive(Debug)]
pub struct Member {
    pub url: String,
    pub params: Vec<(String, String)>,
    pub at: Directive,
}

/// A cookie the configuration sets with the balancer's route:
/// `Header add Set-Cookie "NAME=.%{BALANCER_WORKER_ROUTE}e; path=P" env=BALANCER_ROUTE_CHANGED`.
#[derive(Debug, Clone)]
pub struct RouteCookie {
    pub name: String,
    pub path: Option<String>,
    pub secure: bool,
    pub http_only: bool,
}

impl RouteCookie {
    /// The cookie if `d` is such a `Header` line.
    pub fn of(d: &Directive) -> Option<RouteCookie> {
        let action = d.arg(0).to_ascii_lowercase();
        let (header, value) = match action.as_str() {
            "add" | "set" | "append" => (d.arg(1), d.arg(2)),
            "always" | "onsuccess" => (d.arg(2), d.arg(3)),
            _ => return None,
        };
        if !header.eq_ignore_ascii_case("set-cookie") {
            return None;
        }
        let mut attrs = value.split(';').map(str::trim);
        let (name, v) = attrs.next()?.split_once('=')?;
        if v != ".%{BALANCER_WORKER_ROUTE}e" {
            return None;
        }
        let mut c = RouteCookie {
            name: name.trim().to_owned(),
            path: None,
            secure: false,
            http_only: false,
        };
        for a in attrs {
            let (k, v) = a.split_once('=').unwrap_or((a, ""));
            match k.trim().to_ascii_lowercase().as_str() {
                "path" => c.path = Some(v.trim().to_owned()),
                "secure" => c.secure = true,
                "httponly" => c.http_only = true,
                _ => {}
            }
        }
        Some(c)
    }
}

/// `key=value` arguments (keys lowercased); a word without `=` is skipped.
pub fn params(args: &[String]) -> Vec<(String, String)> {
    args.iter()
        .filter_map(|a| a.split_once('='))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect()
}

/// A server's address from a member URL: `http://h:p/…`, `https://…`
/// (`tls: true`), `ajp://…` (the HTTP connector's port from `--http-port`).
pub fn address(
    url: &str,
    at: &Directive,
    options: &Options,
) -> Result<(String, bool, bool), ImportError> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| at.error(format!("{url}: not a URL")))?;
    let hostport = rest.split('/').next().unwrap_or("");
    let scheme = scheme.to_ascii_lowercase();
    let has_port = hostport
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.contains(']'));
    let host = if has_port {
        hostport.rsplit_once(':').map_or(hostport, |(h, _)| h)
    } else {
        hostport
    };
    if host.is_empty() {
        return Err(at.error(format!("{url}: no host")));
    }
    let with = |port: String| format!("{host}:{port}");
    let given = has_port.then(|| hostport.rsplit_once(':').map_or("", |(_, p)| p).to_owned());
    match scheme.as_str() {
        "http" | "h2c" => Ok((with(given.unwrap_or_else(|| "80".into())), false, false)),
        "https" | "h2" => Ok((with(given.unwrap_or_else(|| "443".into())), true, false)),
        "ajp" => match options.http_port {
            Some(p) => Ok((with(p.to_string()), false, true)),
            None => Err(at.error(format!(
                "{url} speaks AJP, which limpet does not: pass --http-port PORT, the port of each Tomcat's HTTP connector (see docs/migrating.md, \"From AJP to HTTP\")"
            ))),
        },
        _ => Err(at.error(format!(
            "{url}: limpet balances HTTP servers, not {scheme}://"
        ))),
    }
}

/// The note for a server reached over AJP before.
pub fn ajp_note(at: &Directive, port: Option<u16>, place: Place) -> Note {
    at.note(
        format!(
            "AJP becomes HTTP to port {} (--http-port): enable each Tomcat's HTTP connector and its RemoteIpValve, see docs/migrating.md \"From AJP to HTTP\"",
            port.unwrap_or(0)
        ),
        place,
    )
}

/// What `status=+H-D…` says: (backup, state, notes on the other flags).
fn status(flags: &str) -> (bool, Option<&'static str>, Vec<char>) {
    let (mut backup, mut state, mut other) = (false, None, Vec::new());
    let mut on = true;
    for c in flags.chars() {
        match c.to_ascii_uppercase() {
            '+' => on = true,
            '-' => on = false,
            'H' | 'R' => backup = on,
            'D' | 'S' | 'E' if on => state = Some("disabled"),
            'N' if on => state = Some("drain"),
            'D' | 'S' | 'E' | 'N' => state = None,
            c => other.push(c),
        }
    }
    (backup, state, other)
}

/// The pool for `b`; timeouts and notes go into `lb`.
pub fn pool(
    b: &Balancer,
    cookies: &[RouteCookie],
    options: &Options,
    lb: &mut Lb,
) -> Result<Pool, ImportError> {
    let place = Place::Pool(b.pool.clone());
    let mut pool = Pool {
        name: b.pool.clone(),
        ..Pool::default()
    };
    let mut sticky: Option<(String, &Directive)> = None;
    let mut separator = None;
    let mut nofailover = false;
    for (k, v, at) in &b.params {
        match k.as_str() {
            "lbmethod" => {
                pool.balance = Some(match v.to_ascii_lowercase().as_str() {
                    "bybusyness" => "least_conn".into(),
                    "byrequests" => "round_robin".into(),
                    other => {
                        lb.notes.push(at.note(
                            format!("lbmethod={other} has no limpet equivalent; round_robin (smooth weighted, as byrequests)"),
                            place.clone(),
                        ));
                        "round_robin".into()
                    }
                });
            }
            "stickysession" => sticky = Some((v.clone(), at)),
            "stickysessionsep" => separator = Some(v.clone()),
            "nofailover" => nofailover = v.eq_ignore_ascii_case("on"),
            "maxattempts" => pool.retries = Some(v.parse::<u32>().unwrap_or(1).min(16)),
            "retry" => match v.parse::<u64>() {
                Ok(s) if s > 0 => pool.passive = Some((1, format!("{s}s"))),
                _ => lb.notes.push(at.note(
                    format!("retry={v}: a failed member is retried at once; limpet waits passive.fail_timeout (10s)"),
                    place.clone(),
                )),
            },
            "connectiontimeout" => lb.timeouts.connect = Some(seconds(v)),
            "scolonpathdelim" | "route" | "loadfactor" | "status" => {}
            "timeout" => lb.notes.push(at.note(
                "the balancer's wait for a free member: limpet does not queue requests (timeouts.backend_response is the server's time to answer)",
                place.clone(),
            )),
            _ => lb.notes.push(at.note(
                format!("{k}={v} is not carried over"),
                place.clone(),
            )),
        }
    }
    let cookie = sticky.as_ref().and_then(|(s, _)| {
        cookies
            .iter()
            .find(|c| c.name == s.split('|').next().unwrap_or(""))
    });
    for m in &b.members {
        let (address, tls, ajp) = address(&m.url, &m.at, options)?;
        let mut server = Server {
            address: address.clone(),
            tls,
            ..Server::default()
        };
        let mut server_notes = Vec::new();
        for (k, v) in &m.params {
            match k.as_str() {
                "route" => server.route = Some(v.clone()),
                "loadfactor" => match v.parse::<f64>() {
                    Ok(f) if f >= 1.0 => server.weight = Some((f.round() as u32).min(256)),
                    _ => server_notes.push(format!("loadfactor={v}: weight 1")),
                },
                "status" => {
                    let (backup, state, other) = status(v);
                    server.backup = backup;
                    server.state = state.map(str::to_owned);
                    if !other.is_empty() {
                        server_notes.push(format!(
                            "status flags {} are not carried over",
                            other.iter().collect::<String>()
                        ));
                    }
                }
                "retry" => match v.parse::<u64>() {
                    Ok(s) if s > 0 => pool.passive = Some((1, format!("{s}s"))),
                    _ => server_notes.push(format!("retry={v} is not carried over")),
                },
                "connectiontimeout" => lb.timeouts.connect = Some(seconds(v)),
                "timeout" => server_notes.push(format!(
                    "timeout={v}: limpet's response timeout is one for all servers (timeouts.backend_response)"
                )),
                _ => server_notes.push(format!("{k}={v} is not carried over")),
            }
        }
        let base = server
            .route
            .clone()
            .unwrap_or_else(|| address.replace([':', '[', ']'], "-"));
        server.name = unique(
            &lb_name(&base),
            pool.servers.iter().map(|s| s.name.as_str()),
        );
        if cookie.is_some() {
            server.route = Some(format!(
                ".{}",
                server.route.as_deref().unwrap_or(&server.name)
            ));
        }
        let at = Place::Server(pool.name.clone(), server.name.clone());
        if ajp {
            lb.notes
                .push(ajp_note(&m.at, options.http_port, at.clone()));
        }
        for why in server_notes {
            lb.notes.push(m.at.note(why, at.clone()));
        }
        pool.servers.push(server);
    }
    if let Some((s, at)) = sticky {
        let (c, p) = s.split_once('|').unwrap_or((&s, &s));
        let on_server_down = nofailover.then(|| "error".to_owned());
        if let Some(rc) = cookie {
            pool.sticky = Some(Sticky {
                mode: "cookie".into(),
                on_server_down,
                cookie: Some(Cookie {
                    name: Some(rc.name.clone()),
                    path: rc.path.clone(),
                    secure: rc.secure.then_some(true),
                    http_only: Some(rc.http_only),
                    ..Cookie::default()
                }),
                ..Sticky::default()
            });
        } else if b
            .members
            .iter()
            .any(|m| m.params.iter().any(|(k, _)| k == "route"))
        {
            let path_param = if p.eq_ignore_ascii_case("jsessionid") {
                "jsessionid".to_owned()
            } else {
                p.to_owned()
            };
            pool.sticky = Some(Sticky {
                mode: "jvm_route".into(),
                on_server_down,
                jvm_route: Some(JvmRoute {
                    cookie: Some(c.to_owned()),
                    path_param: Some(path_param),
                    separator: Some(separator.unwrap_or_else(|| ".".into())),
                }),
                ..Sticky::default()
            });
        } else {
            lb.notes.push(at.note(
                "no member has a route=, so Apache could not stick either; no affinity",
                place.clone(),
            ));
        }
    }
    if pool.servers.is_empty() {
        let why = format!("balancer://{} has no BalancerMember", b.pool);
        return Err(match &b.at {
            Some(d) => d.error(why),
            None => ImportError::new("", 0, why),
        });
    }
    Ok(pool)
}

/// `N` seconds as a duration (`5s`); anything else as written.
pub fn seconds(v: &str) -> String {
    match v.trim().parse::<u64>() {
        Ok(n) => format!("{n}s"),
        Err(_) => v.trim().to_owned(),
    }
}

/// `base`, or `base-2`, `base-3`… if taken.
pub fn unique<'a>(base: &str, taken: impl Iterator<Item = &'a str> + Clone) -> String {
    let mut n = 1;
    let mut candidate = base.to_owned();
    while taken.clone().any(|t| t == candidate) {
        n += 1;
        candidate = format!("{base}-{n}");
    }
    candidate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_flags_become_backup_and_states() {
        assert_eq!(status("+H"), (true, None, vec![]));
        assert_eq!(status("+D"), (false, Some("disabled"), vec![]));
        assert_eq!(status("+N"), (false, Some("drain"), vec![]));
        assert_eq!(status("+H+E"), (true, Some("disabled"), vec![]));
        assert_eq!(status("+I"), (false, None, vec!['I']));
    }

    #[test]
    fn names_are_made_acceptable() {
        assert_eq!(unique("a", ["a", "a-2"].into_iter()), "a-3");
    }
}
