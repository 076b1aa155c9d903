//! mod_jk (`workers.properties`) → `lb.yaml`. The file is Java properties
//! (read by the `java-properties` crate, which gives each line's number);
//! `worker.list` names the workers Apache mounts, a `type=lb` worker becomes
//! a pool whose `balance_workers` are its servers, `sticky_session` becomes
//! `jvm_route` with each member's `route`. mod_jk speaks AJP, so every
//! address takes `--http-port`. mod_jk has no listener of its own (it lives
//! inside Apache): one listener `http` on `0.0.0.0:8080` is written.

use std::path::Path;

use super::Options;
use super::model::{
    ImportError, JvmRoute, Lb, Listener, Note, Place, Pool, Server, Sticky, lb_name,
};

/// One `key=value` with its line.
#[derive(Debug, Clone)]
struct Prop {
    key: String,
    value: String,
    line: usize,
}

struct Props<'a> {
    file: &'a Path,
    all: Vec<Prop>,
    /// Indices of the properties carried over or noted already.
    used: Vec<bool>,
}

/// How deep `reference=` may chain (deeper is a loop).
const MAX_REFERENCE: usize = 8;

impl Props<'_> {
    /// The properties of worker `w`, its own first, then what it inherits
    /// through `reference=worker.T` (not overridden); marks them used.
    fn of(&mut self, w: &str) -> Vec<(String, Prop)> {
        let mut out: Vec<(String, Prop)> = Vec::new();
        let mut prefix = format!("worker.{w}.");
        for _ in 0..MAX_REFERENCE {
            let mut next = None;
            for (i, p) in self.all.iter().enumerate() {
                let Some(name) = p.key.strip_prefix(&prefix) else {
                    continue;
                };
                self.used[i] = true;
                if name == "reference" {
                    next = Some(format!("{}.", p.value.trim()));
                } else if !out.iter().any(|(n, _)| n == name) || name.starts_with("balance") {
                    out.push((name.to_owned(), p.clone()));
                }
            }
            match next {
                Some(n) if n != prefix => prefix = n,
                _ => break,
            }
        }
        out
    }

    fn note(&self, p: &Prop, why: impl Into<String>, place: Place) -> Note {
        Note {
            file: self.file.to_path_buf(),
            line: p.line,
            directive: format!("{}={}", p.key, p.value),
            why: why.into(),
            place,
        }
    }

    fn error(&self, p: &Prop, why: impl Into<String>) -> ImportError {
        ImportError::new(self.file, p.line, why)
    }
}

fn list(v: &str) -> impl Iterator<Item = String> + '_ {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "true" | "1" | "yes" | "on"
    )
}

/// Reads `file` into the model.
pub fn import(file: &Path, options: &Options) -> Result<Lb, ImportError> {
    let f = std::fs::File::open(file)
        .map_err(|e| ImportError::new(file, 0, format!("cannot read it: {e}")))?;
    let mut all = Vec::new();
    for line in java_properties::PropertiesIter::new(std::io::BufReader::new(f)) {
        let line = line.map_err(|e| {
            ImportError::new(
                file,
                e.line_number().unwrap_or(0),
                format!("not a properties file: {e}"),
            )
        })?;
        let n = line.line_number();
        if let java_properties::LineContent::KVPair(key, value) = line.consume_content() {
            all.push(Prop {
                key: key.trim().to_owned(),
                value: value.trim().to_owned(),
                line: n,
            });
        }
    }
    if !all.iter().any(|p| p.key.starts_with("worker.")) {
        return Err(ImportError::new(
            file,
            all.first().map_or(1, |p| p.line),
            "no worker.* property: not a mod_jk workers.properties",
        ));
    }
    let used = vec![false; all.len()];
    let mut props = Props { file, all, used };
    let mut lb = Lb::default();
    let lists: Vec<Prop> = props
        .all
        .iter()
        .filter(|p| p.key == "worker.list")
        .cloned()
        .collect();
    let Some(first_list) = lists.first().cloned() else {
        return Err(ImportError::new(
            file,
            1,
            "no worker.list: mod_jk would serve nothing",
        ));
    };
    for (i, p) in props.all.iter().enumerate() {
        if p.key == "worker.list" {
            props.used[i] = true;
        }
    }
    let names: Vec<String> = lists
        .iter()
        .flat_map(|p| list(&p.value).collect::<Vec<_>>())
        .collect();
    for name in &names {
        let own = props.of(name);
        let kind = own
            .iter()
            .find(|(n, _)| n == "type")
            .map_or("ajp13".to_owned(), |(_, p)| p.value.clone());
        match kind.as_str() {
            "lb" => {
                let pool = lb_pool(&mut props, name, own, options, &mut lb)?;
                lb.pools.push(pool);
            }
            "ajp13" | "ajp14" => {
                let pool_name = lb_name(name);
                let server = member(&mut props, name, &pool_name, options, &mut lb, &first_list)?;
                lb.pools.push(Pool { name: pool_name, servers: vec![server], ..Pool::default() });
            }
            "status" => lb.notes.push(props.note(
                &first_list,
                format!("worker {name} is mod_jk's status page: limpet's is the admin endpoint's /status (admin: in lb.yaml)"),
                Place::Top,
            )),
            other => lb.notes.push(props.note(
                &first_list,
                format!("worker {name} of type {other} is not carried over"),
                Place::Top,
            )),
        }
    }
    let Some(pool) = lb.pools.first().map(|p| p.name.clone()) else {
        return Err(props.error(
            &first_list,
            "worker.list names no lb or ajp13 worker: nothing to balance",
        ));
    };
    lb.notes.insert(0, props.note(
        &first_list,
        "mod_jk has no listener of its own (it lives inside Apache): listener http on 0.0.0.0:8080 is a placeholder; the JkMount rules are in Apache's configuration (import that file too: limpet import --from apache httpd.conf)",
        Place::Top,
    ));
    for other in lb.pools.iter().skip(1) {
        lb.notes.push(props.note(
            &first_list,
            format!("pool {} gets no traffic until a route names it (JkMount in Apache chose the worker by URL)", other.name),
            Place::Pool(other.name.clone()),
        ));
    }
    lb.listeners.push(Listener {
        name: "http".into(),
        bind: "0.0.0.0:8080".into(),
        pool: Some(pool),
        ..Listener::default()
    });
    for (i, p) in props.all.iter().enumerate() {
        if !props.used[i] {
            let why = if p.key.starts_with("worker.") {
                "a worker no listed worker uses; not carried over"
            } else {
                "not carried over"
            };
            lb.notes.push(props.note(p, why, Place::Top));
        }
    }
    // A template's property, inherited by several members, is noted once.
    let mut seen = std::collections::HashSet::new();
    lb.notes.retain(|n| seen.insert((n.line, n.why.clone())));
    Ok(lb)
}

fn lb_pool(
    props: &mut Props<'_>,
    name: &str,
    own: Vec<(String, Prop)>,
    options: &Options,
    lb: &mut Lb,
) -> Result<Pool, ImportError> {
    let pool_name = lb_name(name);
    let place = Place::Pool(pool_name.clone());
    let mut pool = Pool {
        name: pool_name.clone(),
        ..Pool::default()
    };
    let (mut sticky, mut force) = (true, false);
    let mut jvm = JvmRoute {
        cookie: Some("JSESSIONID".into()),
        path_param: Some("jsessionid".into()),
        separator: Some(".".into()),
    };
    let mut members = Vec::new();
    let mut first = None;
    for (prop, p) in &own {
        first.get_or_insert_with(|| p.clone());
        match prop.as_str() {
            "type" => {}
            "balance_workers" | "balanced_workers" => {
                members.extend(list(&p.value).map(|m| (m, p.clone())))
            }
            "sticky_session" => sticky = truthy(&p.value),
            "sticky_session_force" => force = truthy(&p.value),
            "session_cookie" => jvm.cookie = Some(p.value.clone()),
            "session_path" => jvm.path_param = Some(p.value.trim_start_matches(';').to_owned()),
            "method" => {
                let m = p.value.chars().next().unwrap_or('R').to_ascii_uppercase();
                pool.balance = Some(
                    if m == 'B' {
                        "least_conn"
                    } else {
                        "round_robin"
                    }
                    .into(),
                );
                if matches!(m, 'T' | 'S' | 'N') {
                    lb.notes.push(props.note(
                        p,
                        "no limpet equivalent; round_robin (smooth weighted, as method=R)",
                        place.clone(),
                    ));
                }
            }
            "retries" => pool.retries = p.value.parse::<u32>().ok().map(|r| r.min(16)),
            "recover_time" => match p.value.parse::<u64>() {
                Ok(s) if s > 0 => pool.passive = Some((1, format!("{s}s"))),
                _ => lb
                    .notes
                    .push(props.note(p, "not carried over", place.clone())),
            },
            _ => lb
                .notes
                .push(props.note(p, "not carried over", place.clone())),
        }
    }
    if members.is_empty() {
        let at = first.unwrap_or(Prop {
            key: format!("worker.{name}"),
            value: String::new(),
            line: 0,
        });
        return Err(props.error(&at, format!("lb worker {name} has no balance_workers")));
    }
    for (m, at) in members {
        let s = member(props, &m, &pool_name, options, lb, &at)?;
        pool.servers.push(s);
    }
    if sticky {
        pool.sticky = Some(Sticky {
            mode: "jvm_route".into(),
            on_server_down: force.then(|| "error".into()),
            jvm_route: Some(jvm),
            ..Sticky::default()
        });
    }
    Ok(pool)
}

/// An ajp13 worker as a server; `named_at` is where it is named.
fn member(
    props: &mut Props<'_>,
    name: &str,
    pool: &str,
    options: &Options,
    lb: &mut Lb,
    named_at: &Prop,
) -> Result<Server, ImportError> {
    let own = props.of(name);
    let server_name = lb_name(name);
    let place = Place::Server(pool.to_owned(), server_name.clone());
    let at = |k: &str| own.iter().find(|(n, _)| n == k).map(|(_, p)| p.clone());
    let Some(port) = options.http_port else {
        let p = at("port")
            .or_else(|| at("host"))
            .unwrap_or_else(|| named_at.clone());
        return Err(props.error(&p, format!(
            "worker {name} speaks AJP, which limpet does not: pass --http-port PORT, the port of each Tomcat's HTTP connector (see docs/migrating.md, \"From AJP to HTTP\")"
        )));
    };
    let host = at("host").map_or("localhost".to_owned(), |p| p.value);
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    };
    let mut s = Server {
        name: server_name,
        address: format!("{host}:{port}"),
        route: Some(name.to_owned()),
        ..Server::default()
    };
    let first = own
        .first()
        .map_or_else(|| named_at.clone(), |(_, p)| p.clone());
    lb.notes.push(props.note(
        &first,
        format!("AJP becomes HTTP to port {port} (--http-port): enable each Tomcat's HTTP connector and its RemoteIpValve, see docs/migrating.md \"From AJP to HTTP\""),
        place.clone(),
    ));
    for (prop, p) in &own {
        let ms = || match p.value.parse::<u64>() {
            Ok(n) if n > 0 => Some(format!("{n}ms")),
            _ => None,
        };
        match prop.as_str() {
            "type" | "host" | "port" => {}
            "route" | "jvm_route" => s.route = Some(p.value.clone()),
            "lbfactor" => s.weight = p.value.parse::<u32>().ok().map(|w| w.clamp(1, 256)),
            "activation" => {
                s.state = match p.value.chars().next().map(|c| c.to_ascii_uppercase()) {
                    Some('D') => Some("drain".into()),
                    Some('S') => Some("disabled".into()),
                    _ => None,
                }
            }
            "disabled" if truthy(&p.value) => s.state = Some("drain".into()),
            "stopped" if truthy(&p.value) => s.state = Some("disabled".into()),
            "connect_timeout" | "socket_connect_timeout" => match ms() {
                Some(t) => lb.timeouts.connect = Some(t),
                None => lb.notes.push(props.note(p, "not carried over", place.clone())),
            },
            "reply_timeout" => match ms() {
                Some(t) => lb.timeouts.backend_response = Some(t),
                None => lb.notes.push(props.note(p, "not carried over", place.clone())),
            },
            "distance" => lb.notes.push(props.note(p, "limpet has no distance groups; `backup: true` is the nearest (used only while no other server is usable)", place.clone())),
            "redirect" | "domain" => lb.notes.push(props.note(p, "failover is chosen by rendezvous hashing over the usable servers (on_server_down: redispatch), not by a named worker or domain", place.clone())),
            "ping_mode" | "ping_timeout" => lb.notes.push(props.note(p, "AJP CPing is not carried over; configure an HTTP health_check on the pool", place.clone())),
            _ => lb.notes.push(props.note(p, "not carried over", place.clone())),
        }
    }
    Ok(s)
}
