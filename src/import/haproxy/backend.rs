//! A `backend` (or the back half of a `listen`) → a pool: `balance`,
//! `cookie` (the affinity a browser carries across the cutover), servers
//! with `default-server`, active checks (`option httpchk`, `http-check`),
//! passive checks (`observe`), `retries`/`option redispatch`, and stick
//! tables, whose affinity cannot be carried (it lived in HAProxy's memory).

use std::time::Duration;

use super::check::{checks, traffic};
use super::lex::{Kind, Line};
use super::server::{Params, server};
use super::value;
use super::{Cx, Gathered, Proxy, why_not};
use crate::import::model::{Cookie, ImportError, Learn, Place, Pool, Sticky, lb_name};

const MS: Duration = Duration::from_millis(1);
const HOUR: Duration = Duration::from_secs(3600);

/// Directives that belong to a frontend: a backend inheriting them from
/// `defaults` ignores them, as HAProxy does.
pub fn is_front_only(l: &Line) -> bool {
    matches!(
        l.word(0),
        "bind" | "default_backend" | "use_backend" | "maxconn" | "monitor-uri"
    ) || (l.word(0) == "timeout"
        && matches!(
            l.word(1),
            "client" | "http-request" | "http-keep-alive" | "client-fin"
        ))
        || (l.word(0) == "tcp-request" && l.word(1) == "connection")
        || (l.word(0) == "http-request" && l.word(1) == "redirect")
}

/// Directives that belong to a backend: a frontend inheriting them from
/// `defaults` ignores them.
pub fn is_back_only(l: &Line) -> bool {
    matches!(
        l.word(0),
        "balance"
            | "cookie"
            | "server"
            | "default-server"
            | "http-check"
            | "retries"
            | "stick-table"
            | "stick"
            | "appsession"
            | "hash-type"
            | "fullconn"
            | "server-template"
            | "hash-balance-factor"
            | "load-server-state-from-file"
    ) || (l.word(0) == "timeout"
        && matches!(
            l.word(1),
            "connect" | "server" | "check" | "queue" | "tunnel" | "server-fin"
        ))
        || (l.word(0) == "option"
            && matches!(
                l.word(1),
                "httpchk"
                    | "redispatch"
                    | "persist"
                    | "allbackups"
                    | "tcp-check"
                    | "ssl-hello-chk"
                    | "log-health-checks"
                    | "abortonclose"
                    | "prefer-last-server"
            ))
}

pub fn pool(cx: &mut Cx<'_>, p: &Proxy<'_>, name: String) -> Result<Option<Pool>, ImportError> {
    let here = Place::Pool(name.clone());
    let mut g = Gathered::default();
    let mut defaults = Params::default();
    let mut servers: Vec<(&Line, Params)> = Vec::new();
    for &(l, inherited) in &p.lines {
        let place = Proxy::place(inherited, here.clone());
        if is_front_only(l) || l.word(0) == "acl" || l.word(0) == "mode" {
            // The frontend half (of a listen, or of defaults) reads these.
            if p.kind == Kind::Backend && !inherited && l.word(0) != "acl" && l.word(0) != "mode" {
                cx.note(
                    l,
                    place,
                    "a frontend directive in a backend: HAProxy ignores it too",
                );
            }
            continue;
        }
        match (l.word(0), l.word(1)) {
            ("balance", _) => g.balance = Some(l),
            ("cookie", _) => g.cookie = Some((l, inherited)),
            ("server", _) => {
                if l.words.len() < 3 {
                    return Err(ImportError::new(
                        cx.file,
                        l.no,
                        "a server needs a name and an address",
                    ));
                }
                let mut params = defaults.clone();
                let skipped = params.apply(&l.words[3..], cx, l)?;
                if !skipped.is_empty() {
                    let sname = lb_name(l.word(1));
                    cx.note(
                        l,
                        Place::Server(name.clone(), sname),
                        &skipped_why(&skipped),
                    );
                }
                servers.push((l, params));
            }
            ("default-server", _) => {
                let skipped = defaults.apply(&l.words[1..], cx, l)?;
                if !skipped.is_empty() {
                    cx.note(l, place, &skipped_why(&skipped));
                }
            }
            ("option", "httpchk") => g.httpchk = Some(l),
            ("option", "redispatch") => g.redispatch = true,
            ("option", "forwardfor" | "http-keep-alive") if l.words.len() == 2 => {}
            ("http-check", "send") => g.check_send = Some(l),
            ("http-check", "expect") => g.check_expect = Some(l),
            ("timeout", "check") => g.check_timeout = Some(l),
            ("timeout", "connect") => cx.timeout("connect", l, place, (MS, HOUR)),
            ("timeout", "server") => cx.timeout("server", l, place, (MS, 24 * HOUR)),
            ("retries", _) => g.retries = Some((l, inherited)),
            ("stick-table", _) => g.stick_table = Some(l),
            ("stick", _) | ("appsession", _) => stick(cx, &mut g, l, place),
            _ => {
                let why = why_not(&l.words);
                cx.note(l, place, why);
            }
        }
    }
    let mut pool = Pool {
        name: name.clone(),
        ..Pool::default()
    };
    balance(cx, &g, &mut pool);
    cookie(cx, &g, &mut pool);
    learn(cx, &g, &mut pool);
    if let (Some(s), true) = (pool.sticky.as_mut(), g.redispatch) {
        s.on_server_down = Some("redispatch".into());
    }
    if let Some((l, inherited)) = g.retries {
        match l.word(1).parse::<u32>() {
            Ok(n) if n <= 16 => pool.retries = Some(n),
            _ => cx.note(
                l,
                Proxy::place(inherited, here.clone()),
                "limpet retries 0 to 16 times",
            ),
        }
    }
    let cookie_mode = pool.sticky.as_ref().is_some_and(|s| s.mode == "cookie");
    let mut routes = std::collections::HashSet::new();
    let mut names = std::collections::HashSet::new();
    for (l, params) in &servers {
        if let Some(s) = server(cx, &name, l, params, cookie_mode, &mut routes, &mut names) {
            pool.servers.push(s);
        }
    }
    if servers.is_empty() {
        cx.note(
            p.header,
            Place::Top,
            "no `server`: no pool is made of this section",
        );
        return Ok(None);
    }
    if pool.servers.is_empty() {
        return Err(ImportError::new(
            cx.file,
            p.header.no,
            format!(
                "{} has no server limpet can reach (IP:port): a pool needs at least one",
                p.name
            ),
        ));
    }
    checks(cx, &g, &servers, &mut pool);
    traffic(cx, &servers, &mut pool);
    Ok(Some(pool))
}

fn skipped_why(skipped: &[String]) -> String {
    let list: Vec<String> = skipped.iter().map(|s| format!("`{s}`")).collect();
    format!("server options {} are not carried over", list.join(", "))
}

fn stick<'a>(cx: &mut Cx<'_>, g: &mut Gathered<'a>, l: &'a Line, place: Place) {
    let why = "this affinity lived only in HAProxy's memory (a stick table): sessions cannot be carried over; see \"Affinity that lived only in the old balancer's memory\" in docs/migrating.md";
    cx.note(l, place.clone(), why);
    if l.word(0) == "appsession" {
        g.stick_cookie = Some((l, l.word(1).to_owned()));
        return;
    }
    let fetch = l.word(2);
    let arg = fetch
        .split_once('(')
        .and_then(|(f, rest)| Some((f, rest.split_once(')')?.0)));
    match arg {
        Some(("cookie" | "req.cook" | "res.cook" | "set-cookie" | "req.cook_val", c))
            if !c.is_empty() =>
        {
            g.stick_cookie = Some((l, c.to_owned()));
        }
        _ if fetch == "src" => g.stick_src = Some(l),
        _ => {}
    }
}

fn balance(cx: &mut Cx<'_>, g: &Gathered<'_>, pool: &mut Pool) {
    let Some(l) = g.balance else { return };
    let here = Place::Pool(pool.name.clone());
    match l.word(1) {
        "roundrobin" | "static-rr" => pool.balance = Some("round_robin".into()),
        "leastconn" => pool.balance = Some("least_conn".into()),
        "random" | "random(2)" => pool.balance = Some("random_two".into()),
        r if r.starts_with("random(") => {
            pool.balance = Some("random_two".into());
            cx.note(l, here, "limpet's random draws two servers and takes the less loaded");
        }
        "source" if g.cookie.is_none() => {
            pool.sticky = Some(Sticky {
                mode: "ip_hash".into(),
                ip_hash_key: Some("address".into()),
                ..Sticky::default()
            });
            cx.note(l, here, "ip_hash keeps a client on one server, but not on the one HAProxy's hash chose: placement lived in HAProxy's hash and cannot be carried (see docs/migrating.md)");
        }
        _ => cx.note(l, here, "this balance algorithm is not carried over: limpet balances round_robin, least_conn or random_two"),
    }
}

fn cookie(cx: &mut Cx<'_>, g: &Gathered<'_>, pool: &mut Pool) {
    let Some((l, inherited)) = g.cookie else {
        return;
    };
    let place = Proxy::place(inherited, Place::Pool(pool.name.clone()));
    let name = l.word(1);
    if !value::token(name) {
        return cx.note(l, place, "not a cookie name limpet accepts");
    }
    let mut c = Cookie {
        name: Some(name.to_owned()),
        secure: Some(false),
        http_only: Some(false),
        indirect: Some(false),
        nocache: Some(false),
        ..Cookie::default()
    };
    let mut skipped = Vec::new();
    let mut mode = "rewrite";
    let mut i = 2;
    while let Some(k) = l.words.get(i).map(String::as_str) {
        let v = l.word(i + 1).to_owned();
        i += 1;
        match k {
            "insert" | "rewrite" | "prefix" => mode = k,
            "indirect" => c.indirect = Some(true),
            "nocache" => c.nocache = Some(true),
            "httponly" => c.http_only = Some(true),
            "secure" => c.secure = Some(true),
            "domain" if c.domain.is_none() && value::token(v.trim_start_matches('.')) => {
                i += 1;
                c.domain = Some(v.trim_start_matches('.').to_owned());
            }
            "maxlife" => {
                i += 1;
                c.max_age = value::within(&v, Duration::from_secs(1), 400 * 24 * HOUR);
                skipped.push(format!("maxlife {v}"));
            }
            "attr" if same_site(&v).is_some() => {
                i += 1;
                c.same_site = same_site(&v);
            }
            "domain" | "maxidle" | "attr" => {
                i += 1;
                skipped.push(format!("{k} {v}"));
            }
            _ => skipped.push(k.to_owned()),
        }
    }
    if mode == "prefix" {
        return cx.note(l, place, "prefix mode is not carried over: limpet does not prefix the application's cookie, and a prefixed cookie names no route limpet knows");
    }
    if mode == "rewrite" {
        cx.note(l, place.clone(), "rewrite mode becomes insert: limpet sets its own cookie of this name, so the application must not set one");
    }
    if !skipped.is_empty() {
        let list: Vec<String> = skipped.iter().map(|s| format!("`{s}`")).collect();
        let why = format!(
            "cookie options {} are not carried over (the dates HAProxy appended to the value with maxidle/maxlife, `s1|…`, are ignored: such visitors keep their server)",
            list.join(", ")
        );
        cx.note(l, place, &why);
    }
    if let Some(b) = g.balance.filter(|b| b.word(1) == "source") {
        cx.note(
            b,
            Place::Pool(pool.name.clone()),
            "the cookie carries the affinity; limpet places new visitors round_robin",
        );
    }
    pool.sticky = Some(Sticky {
        mode: "cookie".into(),
        cookie: Some(c),
        ..Sticky::default()
    });
}

fn learn(cx: &mut Cx<'_>, g: &Gathered<'_>, pool: &mut Pool) {
    if pool.sticky.is_some() {
        return;
    }
    if let Some((_, name)) = &g.stick_cookie {
        let table = g.stick_table.or(g.stick_cookie.as_ref().map(|(l, _)| *l));
        let arg = |k: &str| {
            table.and_then(|t| {
                let i = t.words.iter().position(|w| w == k)?;
                t.words.get(i + 1).cloned()
            })
        };
        let expire = arg("expire").or_else(|| arg("timeout"));
        pool.sticky = Some(Sticky {
            mode: "learn".into(),
            learn: Some(Learn {
                cookie: Some(name.clone()),
                max_len: arg("len")
                    .and_then(|v| v.parse::<u32>().ok())
                    .filter(|n| (1..=4096).contains(n)),
                idle_timeout: expire
                    .and_then(|e| value::within(&e, Duration::from_millis(100), 30 * 24 * HOUR)),
                capacity: arg("size")
                    .and_then(|v| value::size(&v))
                    .filter(|n| (1..=100_000_000).contains(n)),
                ..Learn::default()
            }),
            ..Sticky::default()
        });
    } else if let Some(l) = g.stick_src {
        pool.sticky = Some(Sticky {
            mode: "ip_hash".into(),
            ip_hash_key: Some("address".into()),
            ..Sticky::default()
        });
        cx.note(l, Place::Pool(pool.name.clone()), "stick on src becomes ip_hash: a client stays on one server, though not necessarily the one HAProxy's table held");
    }
}

/// `samesite=Lax` → `lax`.
fn same_site(attr: &str) -> Option<String> {
    let (k, v) = attr.split_once('=')?;
    let v = v.to_ascii_lowercase();
    (k.eq_ignore_ascii_case("samesite") && matches!(v.as_str(), "strict" | "lax" | "none"))
        .then_some(v)
}
