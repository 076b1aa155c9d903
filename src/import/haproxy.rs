//! HAProxy → `lb.yaml`. [`lex`] splits haproxy.cfg into sections of
//! numbered directives; each `frontend`/`backend`/`listen` sees the
//! directives of its `defaults` first (the last one above it, or the one it
//! names with `from`); [`backend`] turns a backend into a pool (balance,
//! cookie, servers, checks, stick tables) and [`frontend`] a frontend into
//! listeners (binds, TLS, routes from `use_backend` ACLs). A `listen`
//! section is both, under one name. Whatever is not carried over becomes a
//! [`Note`] at the listener, pool or server it belongs to; a directive
//! inherited from `defaults` is noted once, at the top.

mod acl;
mod backend;
mod check;
mod frontend;
mod lex;
mod server;
mod value;
mod why;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Options;
use super::model::{ImportError, Lb, Note, Place, Timeouts, lb_name};
use lex::{Kind, Line, Section};
use why::why_not;

/// Reads `file` (haproxy.cfg) into the model.
pub fn import(file: &Path, _options: &Options) -> Result<Lb, ImportError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| ImportError::new(file, 0, format!("cannot read it: {e}")))?;
    translate(&text, file)
}

/// haproxy.cfg's text (read from `file`) into the model.
fn translate(text: &str, file: &Path) -> Result<Lb, ImportError> {
    let sections = lex::sections(text, file)?;
    let mut cx = Cx::new(file);
    for s in sections.iter().filter(|s| s.kind == Kind::Global) {
        cx.global(s);
    }
    for s in sections.iter().filter(|s| s.kind == Kind::Other) {
        cx.note(
            &s.header,
            Place::Top,
            "this section is not carried over: limpet has no equivalent",
        );
    }
    let proxies = proxies(&sections, file)?;

    // Pools first, so that frontends can name them.
    let mut pools = Vec::new();
    let mut pool_names: HashMap<String, Option<String>> = HashMap::new();
    for p in proxies
        .iter()
        .filter(|p| matches!(p.kind, Kind::Backend | Kind::Listen))
    {
        let pool = if p.is_http() {
            let name = cx.unique_name(p.name, p.header, Place::Top, "pool");
            backend::pool(&mut cx, p, name)?
        } else {
            cx.note(p.header, Place::Top, &p.not_http());
            None
        };
        pool_names.insert(p.name.to_owned(), pool.as_ref().map(|q| q.name.clone()));
        pools.extend(pool);
    }
    let mut listeners = Vec::new();
    for p in proxies
        .iter()
        .filter(|p| matches!(p.kind, Kind::Frontend | Kind::Listen))
    {
        if !p.is_http() {
            if p.kind == Kind::Frontend {
                cx.note(p.header, Place::Top, &p.not_http());
            }
            continue;
        }
        listeners.extend(frontend::listeners(&mut cx, p, &pool_names)?);
    }
    let first = sections.first().map_or(0, |s| s.header.no);
    if pools.is_empty() {
        return Err(ImportError::new(
            file,
            first,
            "no HTTP backend or listen section with a server limpet can reach: nothing to balance",
        ));
    }
    if listeners.is_empty() {
        return Err(ImportError::new(
            file,
            first,
            "no HTTP frontend or listen section with a bind limpet can listen on",
        ));
    }
    Ok(cx.finish(listeners, pools))
}

/// A `frontend`, `backend` or `listen` section with what it inherits.
pub(crate) struct Proxy<'a> {
    pub kind: Kind,
    pub name: &'a str,
    pub header: &'a Line,
    /// Its defaults' directives first (`inherited`), then its own.
    pub lines: Vec<(&'a Line, bool)>,
}

impl Proxy<'_> {
    /// HAProxy's default mode is tcp: only `mode http` is carried over.
    fn is_http(&self) -> bool {
        self.lines
            .iter()
            .rev()
            .find(|(l, _)| l.word(0) == "mode")
            .is_some_and(|(l, _)| l.word(1) == "http")
    }

    fn not_http(&self) -> String {
        let default = if self.lines.iter().any(|(l, _)| l.word(0) == "mode") {
            ""
        } else {
            ", HAProxy's default"
        };
        format!(
            "a TCP-mode section (mode tcp{default}): limpet balances HTTP only, so {} is not carried over",
            self.name
        )
    }

    /// Where a note about `line` goes: at `own`, or at the top when the
    /// line came from `defaults` (noted once for every section using it).
    pub fn place(inherited: bool, own: Place) -> Place {
        if inherited { Place::Top } else { own }
    }
}

/// The sections that become listeners and pools, each with its defaults.
fn proxies<'a>(sections: &'a [Section], file: &Path) -> Result<Vec<Proxy<'a>>, ImportError> {
    let mut out = Vec::new();
    let mut last_defaults: Option<&Section> = None;
    for (i, s) in sections.iter().enumerate() {
        let defaults = match &s.from {
            Some(from) => Some(
                sections[..i]
                    .iter()
                    .rev()
                    .find(|d| d.kind == Kind::Defaults && &d.name == from)
                    .ok_or_else(|| {
                        ImportError::new(
                            file,
                            s.header.no,
                            format!("`from {from}` names no defaults section above it"),
                        )
                    })?,
            ),
            None => last_defaults,
        };
        match s.kind {
            Kind::Defaults => {
                // A defaults section `from` another starts from that one.
                last_defaults = Some(s);
                continue;
            }
            Kind::Frontend | Kind::Backend | Kind::Listen => {}
            Kind::Global | Kind::Other => continue,
        }
        let mut lines = Vec::new();
        let mut chain = Vec::new();
        let mut d = defaults;
        while let Some(sec) = d {
            if chain.len() > 16 {
                break;
            }
            chain.push(sec);
            d = sec.from.as_ref().and_then(|f| {
                sections
                    .iter()
                    .find(|x| x.kind == Kind::Defaults && &x.name == f)
            });
        }
        for sec in chain.iter().rev() {
            lines.extend(sec.body.iter().map(|l| (l, true)));
        }
        lines.extend(s.body.iter().map(|l| (l, false)));
        out.push(Proxy {
            kind: s.kind,
            name: &s.name,
            header: &s.header,
            lines,
        });
    }
    Ok(out)
}

/// What the backend's directives said, gathered before the pool is built.
#[derive(Default)]
pub struct Gathered<'a> {
    pub balance: Option<&'a Line>,
    pub cookie: Option<(&'a Line, bool)>,
    pub httpchk: Option<&'a Line>,
    pub check_send: Option<&'a Line>,
    pub check_expect: Option<&'a Line>,
    pub check_timeout: Option<&'a Line>,
    pub retries: Option<(&'a Line, bool)>,
    pub redispatch: bool,
    pub stick_table: Option<&'a Line>,
    pub stick_cookie: Option<(&'a Line, String)>,
    pub stick_src: Option<&'a Line>,
}

/// What the whole import gathers beside listeners and pools.
pub(crate) struct Cx<'a> {
    pub file: &'a Path,
    notes: Vec<Note>,
    names: HashSet<(&'static str, String)>,
    /// HAProxy timeout name → (value as written by lb.yaml, line).
    timeouts: HashMap<&'static str, (String, usize)>,
    pub crt_base: Option<PathBuf>,
    pub ca_base: Option<PathBuf>,
    global_maxconn: Option<u64>,
    pub frontend_maxconn: u64,
    pub trusted_proxies: Vec<String>,
    /// Every listener's address so far, with its name.
    pub binds: Vec<(std::net::SocketAddr, String)>,
}

impl<'a> Cx<'a> {
    fn new(file: &'a Path) -> Cx<'a> {
        Cx {
            file,
            notes: Vec::new(),
            names: HashSet::new(),
            timeouts: HashMap::new(),
            crt_base: None,
            ca_base: None,
            global_maxconn: None,
            frontend_maxconn: 0,
            trusted_proxies: Vec::new(),
            binds: Vec::new(),
        }
    }

    /// Notes `line` as not carried over (once per line and reason).
    pub fn note(&mut self, line: &Line, place: Place, why: &str) {
        if self
            .notes
            .iter()
            .any(|n| n.line == line.no && n.why == why && n.directive == line.text)
        {
            return;
        }
        self.notes.push(Note {
            file: self.file.to_path_buf(),
            line: line.no,
            directive: line.text.clone(),
            why: why.to_owned(),
            place,
        });
    }

    /// A valid lb.yaml name for `raw`, unique among names of `what`
    /// (listener, pool); noted when it had to change.
    pub fn unique_name(
        &mut self,
        raw: &str,
        line: &Line,
        place: Place,
        what: &'static str,
    ) -> String {
        let base = lb_name(raw);
        let mut name = base.clone();
        let mut n = 2;
        while !self.names.insert((what, name.clone())) {
            name = format!("{}-{n}", base.chars().take(60).collect::<String>());
            n += 1;
        }
        if name != raw {
            self.note(
                line,
                place,
                &format!("the {what} is named {name:?} (lb.yaml names are 1-64 letters, digits, `_`, `-`, `.` and unique)"),
            );
        }
        name
    }

    /// A `timeout` limpet has once for all: the first value wins, a
    /// different one later is noted.
    pub fn timeout(
        &mut self,
        which: &'static str,
        line: &Line,
        place: Place,
        span: (Duration, Duration),
    ) {
        let Some(v) = value::within(line.word(2), span.0, span.1) else {
            self.note(
                line,
                place,
                &format!(
                    "not a duration limpet accepts here ({} to {})",
                    value::show(span.0),
                    value::show(span.1)
                ),
            );
            return;
        };
        match self.timeouts.get(which) {
            None => {
                self.timeouts.insert(which, (v, line.no));
            }
            Some((old, _)) if *old == v => {}
            Some((old, at)) => {
                let why = format!(
                    "limpet's timeouts are global: `timeout {which}` stays {old} (line {at})"
                );
                self.note(line, place, &why);
            }
        }
    }

    pub fn resolve(base: &Option<PathBuf>, file: &str) -> String {
        match base {
            Some(b) if !file.starts_with('/') => b.join(file).display().to_string(),
            _ => file.to_owned(),
        }
    }

    fn global(&mut self, s: &Section) {
        for l in &s.body {
            match l.word(0) {
                "maxconn" => match l.word(1).parse::<u64>() {
                    Ok(n) if (1..=1_000_000).contains(&n) => self.global_maxconn = Some(n),
                    _ => self.note(
                        l,
                        Place::Top,
                        "not a connection limit limpet accepts (1 to 1000000)",
                    ),
                },
                "crt-base" => self.crt_base = Some(PathBuf::from(l.word(1))),
                "ca-base" => self.ca_base = Some(PathBuf::from(l.word(1))),
                _ => {
                    let why = why_not(&l.words);
                    self.note(l, Place::Top, why);
                }
            }
        }
    }

    fn finish(
        mut self,
        listeners: Vec<super::model::Listener>,
        pools: Vec<super::model::Pool>,
    ) -> Lb {
        // A note about a listener, pool or server that was not written
        // goes to the top, so that every note is in the output.
        for n in &mut self.notes {
            let written = match &n.place {
                Place::Top => true,
                Place::Listener(l) => listeners.iter().any(|x| &x.name == l),
                Place::Pool(p) => pools.iter().any(|x| &x.name == p),
                Place::Server(p, s) => pools
                    .iter()
                    .any(|x| &x.name == p && x.servers.iter().any(|y| &y.name == s)),
            };
            if !written {
                n.place = Place::Top;
            }
        }
        let t = |k: &str| self.timeouts.get(k).map(|(v, _)| v.clone());
        let frontend_maxconn =
            (self.frontend_maxconn > 0).then(|| self.frontend_maxconn.min(1_000_000));
        Lb {
            listeners,
            trusted_proxies: self.trusted_proxies.clone(),
            timeouts: Timeouts {
                connect: t("connect"),
                request_header: t("http-request"),
                client_body: None,
                backend_response: t("server"),
                client_idle: t("http-keep-alive").or_else(|| t("client")),
            },
            max_connections: self.global_maxconn.or(frontend_maxconn),
            pools,
            notes: self.notes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::select;

    fn lines(choices: &'static [&'static str]) -> impl Strategy<Value = String> + Clone {
        proptest::collection::vec(select(choices), 0..5).prop_map(|v| v.join("\n    "))
    }

    /// haproxy.cfg files made of the directives limpet reads, with values
    /// in and out of range, names defined or not.
    fn configs() -> impl Strategy<Value = String> {
        let global = lines(&[
            "maxconn 0",
            "maxconn 5000",
            "maxconn 9999999",
            "log /dev/log local0",
            "nbthread 2",
        ]);
        let defaults = lines(&[
            "mode http",
            "timeout connect 0",
            "timeout connect 2d",
            "timeout client 30s",
            "timeout server 5x",
            "timeout http-request 10s",
            "retries 40",
            "retries 2",
            "option redispatch",
            "balance source",
            "cookie S insert",
            "maxconn 100",
            "default-server inter 1 rise 0 fall 500 slowstart 2h",
        ]);
        let front = lines(&[
            "bind :80",
            "bind 127.0.0.1:80",
            "bind :::80",
            "bind *:0",
            "bind web.example:80",
            "bind :8080,:8081 accept-proxy",
            "bind 10.0.0.1:80-81",
            "default_backend b1",
            "default_backend b2",
            "use_backend b2 if { hdr(host) -i a.example }",
            "use_backend b1 if { path_beg static }",
            "use_backend b1 if { path_beg /a/../b }",
            "use_backend b2 if { hdr_dom(host) -i \"a b\" }",
            "use_backend b1 if h || p",
            "acl h hdr(host) -i x.example:8080",
            "acl p path_beg /p/",
            "acl p path -i /x",
            "use_backend b1 if h p",
            "use_backend b1",
            "use_backend %[req.hdr(host)]",
            "http-request redirect scheme https",
            "timeout client 1h",
            "tcp-request connection expect-proxy layer4 if { src 10.0.0.0/8 }",
            "tcp-request connection expect-proxy layer4 if { src nope }",
        ]);
        let back = lines(&[
            "balance leastconn",
            "balance random(3)",
            "balance uri",
            "balance source",
            "cookie S insert indirect nocache httponly secure domain a;b attr SameSite=Weird maxlife 0",
            "cookie \"a b\" insert",
            "cookie S prefix",
            "cookie S rewrite domain .x.example maxlife 2h",
            "option httpchk",
            "option httpchk GET",
            "option httpchk GET /h HTTP/1.1\\r\\nHost:\\ h",
            "http-check expect status 2xx",
            "http-check expect status 200-299,302",
            "http-check send meth POST uri /x hdr Host h",
            "timeout check 0",
            "retries 3",
            "stick-table type string len 99999 size 0 expire 90d",
            "stick on req.cook(J)",
            "appsession J len 52 timeout 3h",
            "stick on src",
            "server s1 10.0.0.1:80 check cookie a weight 0",
            "server s1 10.0.0.2:80 cookie a weight 300 backup",
            "server s2 10.0.0.3:0 disabled",
            "server s3 app.internal:80",
            "server s4 [::1]:8080 cookie \"a;b\" inter 5 rise 3 fall 2",
            "server s5 10.0.0.5:80 cookie a observe layer7 error-limit 3 on-error fastinter",
            "server .s6 10.0.0.6:80 slowstart 3h maxconn 5 send-proxy",
        ]);
        (global, defaults, front.clone(), front, back.clone(), back).prop_map(
            |(g, d, f1, f2, b1, b2)| {
                format!(
                    "global\n    {g}\ndefaults\n    mode http\n    {d}\nfrontend f1\n    {f1}\nfrontend f2\n    bind :90\n    default_backend b1\n    {f2}\nbackend b1\n    server base 10.0.0.9:80\n    {b1}\nbackend b2\n    server base 10.0.0.8:80\n    {b2}\n"
                )
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn what_is_imported_always_passes_limpet_check(text in configs()) {
            let file = Path::new("haproxy.cfg");
            if let Ok(lb) = translate(&text, file) {
                let yaml = crate::import::write::yaml(&lb, "haproxy.cfg", "HAProxy");
                if let Err(e) = crate::config::parse(&yaml, Path::new("lb.yaml")) {
                    prop_assert!(false, "{e}\n{text}\n{yaml}");
                }
            }
        }
    }
}
