//! Prints an imported [`Lb`] as `lb.yaml`, in the order and shape of the
//! configuration reference, with each note as a `# import:` comment right
//! before the listener, pool or server it belongs to (or at the top). By
//! hand rather than through a YAML serializer: comments must sit between
//! keys, which serializers do not place. A string is written bare when YAML
//! reads it back as that same string, else JSON-quoted (a JSON string is a
//! valid YAML double-quoted scalar).

use std::fmt::Write;

use super::model::{Cookie, HealthCheck, JvmRoute, Lb, Learn, Listener, Place, Pool, Server};

/// The `lb.yaml` text; `source` names the imported file in the header.
pub fn yaml(lb: &Lb, source: &str, from: &str) -> String {
    let mut w = String::with_capacity(4096);
    let _ = writeln!(w, "# lb.yaml imported from {from} configuration {source}");
    let _ = writeln!(
        w,
        "# by `limpet import`. Check it with `limpet check --config lb.yaml`."
    );
    notes(&mut w, lb, &Place::Top, "");
    w.push('\n');
    w.push_str("listeners:\n");
    for l in &lb.listeners {
        listener(&mut w, lb, l);
    }
    if !lb.trusted_proxies.is_empty() {
        let list: Vec<String> = lb.trusted_proxies.iter().map(|p| scalar(p)).collect();
        let _ = writeln!(w, "\ntrusted_proxies: [{}]", list.join(", "));
    }
    let t = &lb.timeouts;
    let timeouts = [
        ("connect", &t.connect),
        ("request_header", &t.request_header),
        ("client_body", &t.client_body),
        ("backend_response", &t.backend_response),
        ("client_idle", &t.client_idle),
    ];
    if timeouts.iter().any(|(_, v)| v.is_some()) {
        w.push_str("\ntimeouts:\n");
        for (k, v) in timeouts {
            if let Some(v) = v {
                let _ = writeln!(w, "  {k}: {}", scalar(v));
            }
        }
    }
    if let Some(n) = lb.max_connections {
        let _ = writeln!(w, "\nlimits:\n  max_connections: {n}");
    }
    w.push_str("\npools:\n");
    for p in &lb.pools {
        pool(&mut w, lb, p);
    }
    w
}

fn notes(w: &mut String, lb: &Lb, place: &Place, indent: &str) {
    for n in lb.notes.iter().filter(|n| &n.place == place) {
        let text = n.text().replace(['\n', '\r'], " ");
        let _ = writeln!(w, "{indent}# import: {text}");
    }
}

fn listener(w: &mut String, lb: &Lb, l: &Listener) {
    notes(w, lb, &Place::Listener(l.name.clone()), "  ");
    let _ = writeln!(w, "  - name: {}", scalar(&l.name));
    let _ = writeln!(w, "    bind: {}", scalar(&l.bind));
    if let Some(p) = &l.pool {
        let _ = writeln!(w, "    pool: {}", scalar(p));
    }
    if !l.routes.is_empty() {
        w.push_str("    routes:\n");
        for r in &l.routes {
            let mut parts = Vec::new();
            if let Some(h) = &r.host {
                parts.push(format!("host: {}", scalar(h)));
            }
            if let Some(p) = &r.path_prefix {
                parts.push(format!("path_prefix: {}", scalar(p)));
            }
            parts.push(format!("pool: {}", scalar(&r.pool)));
            let _ = writeln!(w, "      - {{ {} }}", parts.join(", "));
        }
    }
    if let Some(t) = &l.tls {
        w.push_str("    tls:\n");
        let _ = writeln!(w, "      cert: {}", scalar(&t.cert));
        let _ = writeln!(w, "      key: {}", scalar(&t.key));
        if !t.sni.is_empty() {
            w.push_str("      sni:\n");
            for (c, k) in &t.sni {
                let _ = writeln!(w, "        - {{ cert: {}, key: {} }}", scalar(c), scalar(k));
            }
        }
    }
    if l.proxy_protocol {
        w.push_str("    proxy_protocol: true\n");
    }
    if l.redirect_https {
        w.push_str("    redirect_https: true\n");
    }
}

fn pool(w: &mut String, lb: &Lb, p: &Pool) {
    notes(w, lb, &Place::Pool(p.name.clone()), "  ");
    let _ = writeln!(w, "  {}:", scalar(&p.name));
    if let Some(b) = &p.balance {
        let _ = writeln!(w, "    balance: {b}");
    }
    if let Some(r) = p.retries {
        let _ = writeln!(w, "    retries: {r}");
    }
    if let Some(s) = &p.sticky {
        w.push_str("    sticky:\n");
        let _ = writeln!(w, "      mode: {}", s.mode);
        if let Some(o) = &s.on_server_down {
            let _ = writeln!(w, "      on_server_down: {o}");
        }
        if let Some(k) = &s.ip_hash_key {
            let _ = writeln!(w, "      ip_hash: {{ key: {k} }}");
        }
        if let Some(c) = &s.cookie {
            block(w, "cookie", &cookie_fields(c));
        }
        if let Some(j) = &s.jvm_route {
            block(w, "jvm_route", &jvm_fields(j));
        }
        if let Some(l) = &s.learn {
            block(w, "learn", &learn_fields(l));
        }
    }
    if let Some(h) = &p.health_check {
        block_at(w, "    ", "health_check", &check_fields(h));
    }
    if let Some((max_fails, fail_timeout)) = &p.passive {
        let _ = writeln!(
            w,
            "    passive: {{ max_fails: {max_fails}, fail_timeout: {} }}",
            scalar(fail_timeout)
        );
    }
    if let Some(s) = &p.slow_start {
        let _ = writeln!(w, "    slow_start: {}", scalar(s));
    }
    w.push_str("    servers:\n");
    for s in &p.servers {
        server(w, lb, &p.name, s);
    }
}

fn server(w: &mut String, lb: &Lb, pool: &str, s: &Server) {
    notes(
        w,
        lb,
        &Place::Server(pool.to_owned(), s.name.clone()),
        "      ",
    );
    let mut parts = vec![
        format!("name: {}", scalar(&s.name)),
        format!("address: {}", scalar(&s.address)),
    ];
    if let Some(weight) = s.weight {
        parts.push(format!("weight: {weight}"));
    }
    if let Some(r) = &s.route {
        parts.push(format!("route: {}", scalar(r)));
    }
    if let Some(st) = &s.state {
        parts.push(format!("state: {st}"));
    }
    if s.backup {
        parts.push("backup: true".to_owned());
    }
    if s.tls {
        let mut with = Vec::new();
        if let Some(ca) = &s.tls_ca {
            with.push(format!("ca: {}", scalar(ca)));
        }
        if let Some(n) = &s.tls_server_name {
            with.push(format!("server_name: {}", scalar(n)));
        }
        if with.is_empty() {
            parts.push("tls: true".to_owned());
        } else {
            parts.push(format!("tls: {{ {} }}", with.join(", ")));
        }
    }
    let _ = writeln!(w, "      - {{ {} }}", parts.join(", "));
}

/// `key:` and its fields, indented under `sticky:`.
fn block(w: &mut String, key: &str, fields: &[(&str, String)]) {
    block_at(w, "      ", key, fields);
}

fn block_at(w: &mut String, indent: &str, key: &str, fields: &[(&str, String)]) {
    if fields.is_empty() {
        return;
    }
    let _ = writeln!(w, "{indent}{key}:");
    for (k, v) in fields {
        let _ = writeln!(w, "{indent}  {k}: {v}");
    }
}

fn push<T: std::fmt::Display>(
    out: &mut Vec<(&'static str, String)>,
    key: &'static str,
    v: &Option<T>,
) {
    if let Some(v) = v {
        out.push((key, v.to_string()));
    }
}

fn push_str(out: &mut Vec<(&'static str, String)>, key: &'static str, v: &Option<String>) {
    if let Some(v) = v {
        out.push((key, scalar(v)));
    }
}

fn cookie_fields(c: &Cookie) -> Vec<(&'static str, String)> {
    let mut f = Vec::new();
    push_str(&mut f, "name", &c.name);
    push_str(&mut f, "path", &c.path);
    push_str(&mut f, "domain", &c.domain);
    push_str(&mut f, "max_age", &c.max_age);
    push(&mut f, "secure", &c.secure);
    push(&mut f, "http_only", &c.http_only);
    push_str(&mut f, "same_site", &c.same_site);
    push(&mut f, "indirect", &c.indirect);
    push(&mut f, "nocache", &c.nocache);
    f
}

fn jvm_fields(j: &JvmRoute) -> Vec<(&'static str, String)> {
    let mut f = Vec::new();
    push_str(&mut f, "cookie", &j.cookie);
    push_str(&mut f, "path_param", &j.path_param);
    push_str(&mut f, "separator", &j.separator);
    f
}

fn learn_fields(l: &Learn) -> Vec<(&'static str, String)> {
    let mut f = Vec::new();
    push_str(&mut f, "cookie", &l.cookie);
    push_str(&mut f, "path_param", &l.path_param);
    push(&mut f, "max_len", &l.max_len);
    push_str(&mut f, "idle_timeout", &l.idle_timeout);
    push(&mut f, "capacity", &l.capacity);
    push(&mut f, "request_learn", &l.request_learn);
    f
}

fn check_fields(h: &HealthCheck) -> Vec<(&'static str, String)> {
    let mut f = Vec::new();
    push_str(&mut f, "type", &h.kind);
    push_str(&mut f, "path", &h.path);
    push_str(&mut f, "method", &h.method);
    push_str(&mut f, "host", &h.host);
    push_str(&mut f, "expect_status", &h.expect_status);
    push_str(&mut f, "interval", &h.interval);
    push_str(&mut f, "timeout", &h.timeout);
    push(&mut f, "rise", &h.rise);
    push(&mut f, "fall", &h.fall);
    f
}

/// A string as a YAML scalar that reads back as the same string.
pub fn scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./".contains(&b))
        && !s.starts_with(['-', '.'])
        && s.parse::<f64>().is_err()
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n" | "~"
        );
    if plain {
        s.to_owned()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::model::{Note, Route, Sticky, Tls};

    #[test]
    fn strings_are_quoted_only_when_yaml_would_read_them_otherwise() {
        assert_eq!(scalar("app"), "app");
        assert_eq!(scalar("/static/"), "/static/");
        assert_eq!(scalar("10.0.0.1:8080"), "\"10.0.0.1:8080\"");
        assert_eq!(scalar("yes"), "\"yes\"");
        assert_eq!(scalar("8080"), "\"8080\"");
        assert_eq!(scalar("a b"), "\"a b\"");
        assert_eq!(scalar(".node1"), "\".node1\"");
        assert_eq!(scalar("q\"uote"), "\"q\\\"uote\"");
        assert_eq!(scalar(""), "\"\"");
    }

    #[test]
    fn a_written_model_passes_limpet_check_with_its_notes_in_place() {
        let lb = Lb {
            listeners: vec![Listener {
                name: "www".into(),
                bind: "127.0.0.1:8080".into(),
                pool: Some("app".into()),
                routes: vec![Route {
                    host: None,
                    path_prefix: Some("/static/".into()),
                    pool: "static".into(),
                }],
                tls: None::<Tls>,
                ..Listener::default()
            }],
            pools: vec![
                Pool {
                    name: "app".into(),
                    balance: Some("least_conn".into()),
                    sticky: Some(Sticky {
                        mode: "cookie".into(),
                        cookie: Some(Cookie {
                            name: Some("SERVERID".into()),
                            indirect: Some(true),
                            ..Cookie::default()
                        }),
                        ..Sticky::default()
                    }),
                    servers: vec![
                        Server {
                            name: "s1".into(),
                            address: "10.0.0.1:8080".into(),
                            route: Some("yes".into()),
                            weight: Some(3),
                            ..Server::default()
                        },
                        Server {
                            name: "s2".into(),
                            address: "10.0.0.2:8080".into(),
                            backup: true,
                            ..Server::default()
                        },
                    ],
                    ..Pool::default()
                },
                Pool {
                    name: "static".into(),
                    servers: vec![Server {
                        name: "st".into(),
                        address: "10.0.0.3:80".into(),
                        ..Server::default()
                    }],
                    ..Pool::default()
                },
            ],
            notes: vec![Note {
                file: "haproxy.cfg".into(),
                line: 12,
                directive: "http-request set-header X-A b".into(),
                why: "header rewriting is not carried over".into(),
                place: Place::Pool("app".into()),
            }],
            ..Lb::default()
        };
        let text = yaml(&lb, "haproxy.cfg", "HAProxy");
        assert!(
            text.contains("  # import: haproxy.cfg:12: http-request set-header X-A b — header rewriting is not carried over\n  app:\n"),
            "{text}"
        );
        let config = crate::config::parse(&text, std::path::Path::new("lb.yaml"))
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(config.pools[0].servers[0].route, "yes");
        assert!(config.pools[0].servers[1].backup);
        assert_eq!(config.pools[0].servers[0].weight, 3);
    }
}
