//! Active and passive checks of a pool: `option httpchk` (or `http-check
//! send`), `http-check expect status`, the checked servers' `inter`,
//! `rise`, `fall`, `timeout check`; `observe`/`error-limit`, `slowstart`.

use std::time::Duration;

use super::lex::Line;
use super::server::Params;
use super::value;
use super::{Cx, Gathered};
use crate::import::model::{HealthCheck, Place, Pool, lb_name};

const MS: Duration = Duration::from_millis(1);
const HOUR: Duration = Duration::from_secs(3600);

/// Active checks are per pool in limpet: the first checked server's
/// `inter`/`rise`/`fall` stand for all.
pub fn checks(cx: &mut Cx<'_>, g: &Gathered<'_>, servers: &[(&Line, Params)], pool: &mut Pool) {
    let here = Place::Pool(pool.name.clone());
    let checked: Vec<&(&Line, Params)> = servers.iter().filter(|(_, p)| p.check).collect();
    let Some((_, first)) = checked.first() else {
        if let Some(l) = g.httpchk {
            cx.note(l, here, "no server has `check`: no active checks");
        }
        return;
    };
    let mut h = HealthCheck {
        kind: Some(if g.httpchk.is_some() { "http" } else { "tcp" }.into()),
        ..HealthCheck::default()
    };
    if let Some(l) = g.httpchk {
        let args = &l.words[2..];
        let (method, uri, version) = match args {
            [] => (None, None, None),
            [u] => (None, Some(u), None),
            [m, u] => (Some(m), Some(u), None),
            [m, u, v, ..] => (Some(m), Some(u), Some(v)),
        };
        h.method = Some(method.map_or("OPTIONS", String::as_str).to_owned());
        h.path = Some(uri.map_or("/", String::as_str).to_owned());
        h.host = version.and_then(|v| {
            v.split("\r\n")
                .find_map(|hdr| {
                    hdr.split_once(':')
                        .filter(|(k, _)| k.eq_ignore_ascii_case("host"))
                })
                .map(|(_, v)| v.trim().to_owned())
        });
    }
    if let Some(l) = g.check_send {
        let arg = |k: &str| {
            l.words
                .iter()
                .position(|w| w == k)
                .and_then(|i| l.words.get(i + 1))
                .cloned()
        };
        h.method = arg("meth").or(h.method);
        h.path = arg("uri").or(h.path);
        if let Some(i) = l.words.iter().position(|w| w == "hdr")
            && l.word(i + 1).eq_ignore_ascii_case("host")
        {
            h.host = Some(l.word(i + 2).to_owned());
        }
    }
    let probe = g.check_send.or(g.httpchk);
    if let (Some(l), Some(path)) = (probe, &h.path)
        && (!path.starts_with('/') || !path.bytes().all(|b| b.is_ascii_graphic()))
    {
        cx.note(
            l,
            here.clone(),
            "the check's URI is not a request path: limpet's check asks for /",
        );
        h.path = Some("/".into());
    }
    if let (Some(l), Some(m)) = (probe, &h.method)
        && http::Method::from_bytes(m.as_bytes()).is_err()
    {
        cx.note(
            l,
            here.clone(),
            "the check's method is not an HTTP method: limpet's check uses GET",
        );
        h.method = Some("GET".into());
    }
    if let Some(l) = g.check_expect {
        match (l.word(2), l.word(3)) {
            ("status", codes) if status_list(codes) => h.expect_status = Some(codes.to_owned()),
            _ => cx.note(
                l,
                here.clone(),
                "only `http-check expect status CODES` is carried over",
            ),
        }
    }
    h.interval = first
        .inter
        .as_deref()
        .and_then(|v| value::within(v, Duration::from_millis(10), HOUR));
    h.rise = first
        .rise
        .as_deref()
        .and_then(|v| v.parse().ok())
        .filter(|n| (1..=100).contains(n));
    h.fall = first
        .fall
        .as_deref()
        .and_then(|v| v.parse().ok())
        .filter(|n| (1..=100).contains(n));
    if let Some(l) = g.check_timeout {
        h.timeout = value::within(l.word(2), MS, HOUR);
    }
    for (l, p) in servers {
        let at = Place::Server(pool.name.clone(), lb_name(l.word(1)));
        if !p.check {
            cx.note(
                l,
                at,
                "no `check` here, but limpet checks every server of a pool that has checks",
            );
        } else if (&p.inter, &p.rise, &p.fall) != (&first.inter, &first.rise, &first.fall) {
            cx.note(l, at, "check timing differs from the pool's first checked server; limpet's checks are per pool");
        }
    }
    pool.health_check = Some(h);
}

/// `slowstart` and `observe`/`error-limit`/`on-error` of the first server
/// that has them stand for the pool.
pub fn traffic(cx: &mut Cx<'_>, servers: &[(&Line, Params)], pool: &mut Pool) {
    if let Some((l, v)) = servers
        .iter()
        .find_map(|(l, p)| Some((l, p.slowstart.as_ref()?)))
    {
        pool.slow_start = value::within(v, Duration::ZERO, HOUR);
        if pool.slow_start.is_none() {
            cx.note(
                l,
                Place::Pool(pool.name.clone()),
                "limpet's slow_start is at most 1h",
            );
        }
    }
    if let Some((l, p)) = servers.iter().find(|(_, p)| p.observe) {
        pool.passive = Some((p.error_limit.unwrap_or(10), "10s".into()));
        if p.on_error.as_deref().is_some_and(|e| e != "mark-down") {
            let at = Place::Server(pool.name.clone(), lb_name(l.word(1)));
            cx.note(l, at, "passive checks: after error-limit failures limpet marks the server down for fail_timeout, as `on-error mark-down` does");
        }
    }
}

/// `200`, `200-399`, `200,302`: what `expect_status` reads.
fn status_list(codes: &str) -> bool {
    !codes.is_empty()
        && codes.split(',').all(|part| {
            part.split('-').count() <= 2
                && part
                    .split('-')
                    .all(|n| n.len() == 3 && n.bytes().all(|b| b.is_ascii_digit()))
        })
}
