//! An nginx `upstream` block → a pool: its servers (weight, `backup`,
//! `down`, `route=`), `max_fails`/`fail_timeout` as passive limits, the
//! balance method, and the sticky mode — nginx Plus `sticky cookie` with
//! the MD5 routes nginx itself puts in the cookie, `sticky route` as
//! `jvm_route`, `sticky learn` as `learn`, `ip_hash` as `ip_hash`.

use md5::{Digest, Md5};

use super::Cx;
use super::value::{Address, address, duration, server_name, show};
use crate::import::directive::Directive;
use crate::import::model::lb_name;
use crate::import::model::{Cookie, ImportError, JvmRoute, Learn, Place, Pool, Server, Sticky};

/// The pool for `upstream NAME { ... }`.
pub(super) fn pool(cx: &mut Cx, d: &Directive) -> Result<Pool, ImportError> {
    let raw = d.args.first().map(String::as_str).unwrap_or("");
    let name = lb_name(raw);
    let here = || Place::Pool(name.clone());
    if name != raw {
        cx.note(
            d,
            here(),
            &format!("renamed to {name}: not a valid lb.yaml name"),
        );
    }
    let mut p = Pool {
        name: name.clone(),
        ..Pool::default()
    };
    let mut passive: Option<(String, String)> = None;
    let mut cookie_mode = false;
    for e in d.children() {
        let args: Vec<&str> = e.args.iter().map(String::as_str).collect();
        match (e.name.as_str(), args.as_slice()) {
            ("server", [addr, params @ ..]) => {
                let Some(s) = server(cx, e, &name, addr, params, &mut passive) else {
                    continue;
                };
                let clash = |n: &str| p.servers.iter().any(|o: &Server| o.name == n);
                let mut unique = s.name.clone();
                let mut i = 2;
                while clash(&unique) {
                    unique = format!("{}-{i}", s.name);
                    i += 1;
                }
                p.servers.push(Server { name: unique, ..s });
            }
            ("least_conn", []) => p.balance = Some("least_conn".into()),
            ("random", ["two", ..]) => p.balance = Some("random_two".into()),
            ("random", _) => {
                p.balance = Some("random_two".into());
                cx.note(e, here(), "random_two: the less busy of two random servers");
            }
            ("ip_hash", []) => {
                p.sticky = Some(ip_hash("subnet"));
                cx.note(
                    e,
                    here(),
                    "placement cannot be carried (the hash differs): clients may move once",
                );
            }
            ("hash", [key, "consistent"])
                if matches!(*key, "$remote_addr" | "$binary_remote_addr") =>
            {
                p.sticky = Some(ip_hash("address"));
                cx.note(e, here(), "ip_hash: placement cannot be carried (the hash differs): clients may move once");
            }
            ("sticky", ["cookie", cookie_name, attrs @ ..]) => {
                p.sticky = Some(sticky_cookie(cx, e, &name, cookie_name, attrs));
                cookie_mode = true;
            }
            ("sticky", ["route", ..]) => {
                // Filled in by `sticky_routes`, once the maps are known.
                p.sticky = Some(Sticky {
                    mode: "jvm_route".into(),
                    ..Sticky::default()
                });
            }
            ("sticky", ["learn", attrs @ ..]) => p.sticky = Some(learn(cx, e, &name, attrs)),
            ("zone", _) => {}
            ("keepalive", _) => cx.note(
                e,
                here(),
                "limpet keeps its own idle connections to each server",
            ),
            _ => cx.other(e, here()),
        }
    }
    if p.servers.is_empty() {
        return Err(d.error(format!(
            "upstream {raw:?} has no server limpet can reach by IP:port"
        )));
    }
    if cookie_mode {
        for s in &mut p.servers {
            s.route = Some(md5_route(&s.address));
        }
    }
    if let Some((fails, timeout)) = passive {
        p.passive = Some((fails.parse().unwrap_or(1), timeout));
    }
    Ok(p)
}

/// One `server ADDR params...;` line; `None` (with a note) when limpet
/// cannot reach it.
fn server(
    cx: &mut Cx,
    e: &Directive,
    pool: &str,
    addr: &str,
    params: &[&str],
    passive: &mut Option<(String, String)>,
) -> Option<Server> {
    let ip = match address(addr, 80) {
        Address::Ip(a) => a,
        Address::Unix => {
            cx.note(
                e,
                Place::Pool(pool.into()),
                "skipped: limpet reaches servers over TCP only",
            );
            return None;
        }
        Address::Host => {
            cx.note(
                e,
                Place::Pool(pool.into()),
                "skipped: write the server's IP:port",
            );
            return None;
        }
    };
    let mut s = Server {
        name: server_name(ip),
        address: ip.to_string(),
        ..Server::default()
    };
    let (mut fails, mut timeout) = (None, None);
    let mut dropped = Vec::new();
    for p in params {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        match k {
            "weight" => match v.parse::<u32>() {
                Ok(w) if (1..=256).contains(&w) => s.weight = Some(w).filter(|w| *w != 1),
                _ => dropped.push(*p),
            },
            "max_fails" => fails = Some(v.to_owned()),
            "fail_timeout" => timeout = duration(v).filter(|t| !t.is_zero()).map(show),
            "backup" => s.backup = true,
            "down" => s.state = Some("disabled".into()),
            "drain" => s.state = Some("drain".into()),
            "route" if !v.is_empty() => {
                s.route = Some(v.to_owned());
                s.name = lb_name(v);
            }
            _ => dropped.push(*p),
        }
    }
    if fails.is_some() || timeout.is_some() {
        let mine = (
            fails.unwrap_or_else(|| "1".into()),
            timeout.unwrap_or_else(|| "10s".into()),
        );
        match passive {
            None => *passive = Some(mine),
            Some(first) if *first != mine => cx.note(
                e,
                Place::Server(pool.into(), s.name.clone()),
                "passive limits are per pool in limpet; the first server's are kept",
            ),
            Some(_) => {}
        }
    }
    if !dropped.is_empty() {
        let why = format!("not carried over: {}", dropped.join(" "));
        cx.note(e, Place::Server(pool.into(), s.name.clone()), &why);
    }
    Some(s)
}

fn ip_hash(key: &str) -> Sticky {
    Sticky {
        mode: "ip_hash".into(),
        ip_hash_key: Some(key.into()),
        ..Sticky::default()
    }
}

/// nginx Plus `sticky cookie NAME [expires=] [domain=] [path=] [httponly]
/// [secure] [samesite=]`: our cookie, with nginx's own values as routes.
fn sticky_cookie(cx: &mut Cx, e: &Directive, pool: &str, name: &str, attrs: &[&str]) -> Sticky {
    let mut c = Cookie {
        name: Some(name.to_owned()),
        http_only: Some(false),
        secure: Some(false),
        ..Cookie::default()
    };
    for a in attrs {
        let (k, v) = a.split_once('=').unwrap_or((a, ""));
        match k {
            "expires" if v == "max" => c.max_age = Some("400d".into()),
            "expires" => match duration(v).filter(|t| t.as_secs() >= 1) {
                Some(t) => c.max_age = Some(show(t)),
                None => cx.note(
                    e,
                    Place::Pool(pool.into()),
                    "`expires` not carried: session cookie",
                ),
            },
            "domain" => c.domain = Some(v.to_owned()),
            "path" => c.path = Some(v.to_owned()),
            "httponly" => c.http_only = Some(true),
            "secure" => c.secure = Some(true),
            "samesite" => c.same_site = Some(v.to_ascii_lowercase()),
            _ => cx.note(
                e,
                Place::Pool(pool.into()),
                &format!("`{a}` not carried over"),
            ),
        }
    }
    Sticky {
        mode: "cookie".into(),
        cookie: Some(c),
        ..Sticky::default()
    }
}

/// nginx Plus `sticky learn create=$upstream_cookie_X lookup=$cookie_X
/// zone=... [timeout=T]`: `learn` mode on cookie X.
fn learn(cx: &mut Cx, e: &Directive, pool: &str, attrs: &[&str]) -> Sticky {
    let mut l = Learn {
        // nginx forgets a session after 10 minutes unless told otherwise.
        idle_timeout: Some("10m".into()),
        ..Learn::default()
    };
    for a in attrs {
        let (k, v) = a.split_once('=').unwrap_or((a, ""));
        match k {
            "lookup" => l.cookie = v.strip_prefix("$cookie_").map(cookie_name),
            "create" if l.cookie.is_none() => {
                l.cookie = v.strip_prefix("$upstream_cookie_").map(cookie_name);
            }
            "timeout" => l.idle_timeout = duration(v).map(show),
            _ => {}
        }
    }
    cx.note(
        e,
        Place::Pool(pool.into()),
        "learn: the sessions nginx learned cannot be carried; each is learned again from its next request",
    );
    Sticky {
        mode: "learn".into(),
        learn: Some(l),
        ..Sticky::default()
    }
}

/// nginx's `$cookie_jsessionid` reads the cookie JSESSIONID (names match
/// case-insensitively there, exactly in limpet): Tomcat's spelling.
fn cookie_name(var: &str) -> String {
    if var.eq_ignore_ascii_case("jsessionid") {
        "JSESSIONID".into()
    } else {
        var.to_owned()
    }
}

/// The route nginx Plus `sticky cookie` writes for a server: the lowercase
/// hex MD5 of its `IP:port`.
pub fn md5_route(address: &str) -> String {
    Md5::digest(address.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `sticky route $a $b;` → `jvm_route`: the cookie and the path parameter
/// are read from the maps that fill those variables.
pub(super) fn sticky_routes(cx: &mut Cx, http: &[&Directive]) {
    for h in http {
        for u in h.children().iter().filter(|u| u.name == "upstream") {
            let Some(e) = u
                .children()
                .iter()
                .find(|e| e.name == "sticky" && e.args.first().is_some_and(|a| a == "route"))
            else {
                continue;
            };
            let raw = u.args.first().cloned().unwrap_or_default();
            let Some(pool) = cx.upstreams.get(&raw).cloned() else {
                continue;
            };
            let mut j = JvmRoute::default();
            for var in e.args.iter().skip(1) {
                let Some(m) = cx.maps.iter_mut().find(|m| &m.to == var) else {
                    continue;
                };
                m.used = true;
                if let Some(c) = m.from.strip_prefix("$cookie_") {
                    j.cookie = Some(cookie_name(c));
                } else if let Some(param) = m.patterns.iter().find_map(|p| path_param(p)) {
                    j.path_param = Some(param);
                }
            }
            if j.cookie.is_none() {
                cx.note(
                    e,
                    Place::Pool(pool.clone()),
                    "no map from a cookie found: the session cookie is assumed to be JSESSIONID",
                );
            }
            if let Some(p) = cx.lb.pools.iter_mut().find(|p| p.name == pool)
                && let Some(s) = &mut p.sticky
            {
                s.jvm_route = Some(j);
            }
        }
    }
}

/// `~jsessionid=.+\.(?P<route>\w+)$` → `jsessionid`.
fn path_param(pattern: &str) -> Option<String> {
    let (before, _) = pattern.split_once('=')?;
    let name: String = before
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_route_is_the_md5_of_ip_port() {
        // echo -n 127.0.0.1:8080 | md5sum
        assert_eq!(
            md5_route("127.0.0.1:8080"),
            "5958c386bf5e9109ac10d2a628645aea"
        );
        assert_eq!(md5_route("10.0.0.1:80"), "1484b8b3753313249a03bcfd7b96938d");
        assert_eq!(
            path_param("~jsessionid=.+\\.(?P<route>\\w+)$").as_deref(),
            Some("jsessionid")
        );
    }
}
