//! `limpet import` from HAProxy: the fixtures under
//! `tests/fixtures/import/haproxy/` translated key by key, every
//! `# import:` comment naming its FILE:LINE, the exit codes of the real
//! binary, and a cutover drill: browsers logged in through a real HAProxy
//! keep their server and their session through limpet.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use limpet::config::{Balance, CheckKind, Config, SameSite, ServerState, StickyMode};
use limpet::import::model::Lb;
use limpet::import::{Options, haproxy, write};

use crate::harness::{self, eventually, server_of};
use crate::pki::Ca;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/import/haproxy");

/// The fixture `name`, with `@CERTS@` pointing at freshly made
/// certificates: combined PEMs (certificate + key, as HAProxy reads them),
/// a directory of them, and a CA for the servers' TLS.
fn fixture(name: &str) -> PathBuf {
    let dir = harness::temp_dir("import-haproxy");
    let ca = Ca::new("test CA");
    for (file, host) in [
        ("shop.pem", "shop.example"),
        ("static.pem", "static.shop.example"),
        ("certs/a.pem", "a.corp.example"),
        ("certs/b.pem", "b.corp.example"),
    ] {
        let leaf = ca.leaf(&[host]);
        let path = dir.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        harness::write_mode(&path, &format!("{}{}", leaf.cert_pem, leaf.key_pem), 0o600);
    }
    ca.write(&dir, "internal-ca.pem");
    let text = std::fs::read_to_string(Path::new(FIXTURES).join(name)).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text.replace("@CERTS@", &dir.display().to_string())).unwrap();
    path
}

/// The model, the printed lb.yaml, and limpet's own reading of it.
fn imported(path: &Path) -> (Lb, String, Config) {
    let lb = haproxy::import(path, &Options::default()).unwrap_or_else(|e| panic!("{e}"));
    let yaml = write::yaml(&lb, &path.display().to_string(), "HAProxy");
    let config = limpet::config::parse(&yaml, Path::new("lb.yaml"))
        .unwrap_or_else(|e| panic!("the output does not pass limpet check: {e}\n{yaml}"));
    (lb, yaml, config)
}

/// The line number of the first line of `path` that contains `text`.
fn line_of(path: &Path, text: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .position(|l| l.contains(text))
        .unwrap_or_else(|| panic!("{text:?} not in {}", path.display()))
        + 1
}

/// The `# import:` comment for `directive`, asserted to name its FILE:LINE.
fn comment<'a>(yaml: &'a str, path: &Path, directive: &str) -> &'a str {
    let at = format!(
        "# import: {}:{}: {directive}",
        path.display(),
        line_of(path, directive)
    );
    yaml.lines()
        .find(|l| l.trim_start().starts_with(&at))
        .unwrap_or_else(|| panic!("no comment {at:?} in\n{yaml}"))
}

fn pool<'a>(c: &'a Config, name: &str) -> &'a limpet::config::PoolConfig {
    c.pools.iter().find(|p| p.name == name).unwrap()
}

fn server<'a>(p: &'a limpet::config::PoolConfig, name: &str) -> &'a limpet::config::ServerConfig {
    p.servers.iter().find(|s| s.name == name).unwrap()
}

#[test]
fn the_shop_keeps_its_cookie_routes_tls_checks_and_timeouts() {
    let path = fixture("shop.cfg");
    let (lb, yaml, c) = imported(&path);

    // One listener per bind: plain :80 redirects, :443 terminates TLS with
    // the combined PEMs (first default, the next by SNI).
    let names: Vec<&str> = c.listeners.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["www", "www-443"]);
    let (plain, tls) = (&c.listeners[0], &c.listeners[1]);
    assert_eq!(plain.bind.to_string(), "0.0.0.0:80");
    assert!(plain.redirect_https && plain.tls.is_none());
    assert_eq!(tls.bind.to_string(), "0.0.0.0:443");
    assert!(!tls.redirect_https && tls.tls.is_some());
    let t = lb.listeners[1].tls.as_ref().unwrap();
    assert!(t.cert.ends_with("/shop.pem") && t.key == t.cert, "{t:?}");
    assert_eq!(t.sni.len(), 1);
    assert!(t.sni[0].0.ends_with("/static.pem") && t.sni[0].1 == t.sni[0].0);

    // Routes in the order of the use_backend rules.
    let pool_name = |i: usize| c.pools[i].name.as_str();
    assert_eq!(pool_name(plain.pool.unwrap()), "app");
    let routes: Vec<(Option<&str>, Option<&str>, &str)> = plain
        .routes
        .iter()
        .map(|r| {
            (
                r.host.as_deref(),
                r.path_prefix.as_deref(),
                pool_name(r.pool),
            )
        })
        .collect();
    assert_eq!(
        routes,
        [
            (Some("static.shop.example"), None, "static"),
            (None, Some("/static/"), "static"),
            (None, Some("/api/"), "api"),
            (Some("old.shop.example"), None, "legacy"),
            (Some("*.old.shop.example"), None, "legacy"),
        ]
    );
    assert_eq!(tls.routes.len(), 5);

    // Timeouts and limits from global and defaults.
    assert_eq!(c.timeouts.connect, Duration::from_secs(5));
    assert_eq!(c.timeouts.request_header, Duration::from_secs(10));
    assert_eq!(c.timeouts.backend_response, Duration::from_secs(60));
    assert_eq!(c.timeouts.client_idle, Duration::from_secs(15));
    assert_eq!(c.limits.max_connections, 20_000);

    // The pool the browsers hold a cookie for: every attribute carried.
    let app = pool(&c, "app");
    assert_eq!(app.balance, Balance::LeastConn);
    assert_eq!(app.retries, 3);
    assert_eq!(app.sticky.mode, StickyMode::Cookie);
    assert_eq!(
        app.sticky.on_server_down,
        limpet::config::OnServerDown::Redispatch
    );
    let k = &app.sticky.cookie;
    assert_eq!(k.name, "SERVERID");
    assert_eq!(k.domain.as_deref(), Some("shop.example"));
    assert_eq!(k.path, "/");
    assert!(k.secure && k.http_only && k.indirect && k.nocache);
    assert_eq!(k.same_site, SameSite::Strict);
    let routes: Vec<(&str, &str)> = app
        .servers
        .iter()
        .map(|s| (s.name.as_str(), s.route.as_str()))
        .collect();
    assert_eq!(
        routes,
        [
            ("tomcat1", "t1"),
            ("tomcat2", "t2"),
            ("tomcat3", "t3"),
            ("sorry", "sorry")
        ]
    );
    assert_eq!(server(app, "tomcat1").weight, 100);
    assert_eq!(server(app, "tomcat2").weight, 50);
    assert_eq!(server(app, "tomcat3").state, ServerState::Disabled);
    assert!(server(app, "sorry").backup && !server(app, "tomcat1").backup);
    assert_eq!(server(app, "tomcat1").address.to_string(), "10.0.1.11:8080");
    let h = app.health_check.as_ref().unwrap();
    assert_eq!(
        (h.kind, h.method.as_str(), h.path.as_str()),
        (CheckKind::Http, "GET", "/health")
    );
    assert_eq!(h.expect_status, [(200, 200)]);
    assert_eq!((h.interval, h.rise, h.fall), (Duration::from_secs(3), 2, 4));
    assert_eq!(app.slow_start, Duration::from_secs(30));

    // The other cookie pool keeps HAProxy's defaults (no httponly, no secure).
    let api = pool(&c, "api");
    assert_eq!(api.balance, Balance::RoundRobin);
    let k = &api.sticky.cookie;
    assert!(!k.secure && !k.http_only && k.indirect && k.nocache);
    assert_eq!(server(api, "api2").route, "a2");
    let h = api.health_check.as_ref().unwrap();
    assert_eq!((h.method.as_str(), h.path.as_str()), ("HEAD", "/api/ping"));
    assert_eq!(pool(&c, "static").balance, Balance::RandomTwo);
    assert_eq!(pool(&c, "static").sticky.mode, StickyMode::None);
    assert!(pool(&c, "static").health_check.is_none());

    // What is not carried over is said, at its place, with FILE:LINE.
    for top in [
        "log /dev/log local0",
        "daemon",
        "stats socket",
        "option  httplog",
        "listen stats",
        "stats enable",
    ] {
        let line = comment(&yaml, &path, top);
        assert!(line.starts_with("# import:"), "not at the top: {line}");
    }
    for at_listener in [
        "http-request set-header X-Forwarded-Port",
        "http-request deny",
        "use_backend app if { hdr(user-agent)",
        "compression algo gzip",
    ] {
        assert!(comment(&yaml, &path, at_listener).starts_with("  # import:"));
    }
    assert!(comment(&yaml, &path, "errorfile 503").contains("limpet answers its own"));
    assert!(comment(&yaml, &path, "server api1").starts_with("      # import:"));
    assert!(comment(&yaml, &path, "server api1").contains("`maxconn 200`"));
    let before_app = yaml.find("  # import: ").unwrap() < yaml.find("  app:\n").unwrap();
    assert!(before_app);
    assert!(!yaml.contains("— the listener"), "{yaml}");
    assert_eq!(lb.notes.len(), yaml.matches("# import: ").count());
}

#[test]
fn the_intranet_keeps_defaults_from_named_sections_learn_mode_and_proxy_protocol() {
    let path = fixture("intranet.cfg");
    let (lb, yaml, c) = imported(&path);

    let names: Vec<&str> = c.listeners.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["hr", "reports.corp", "api_front"]);
    let hr = &c.listeners[0];
    assert_eq!(hr.bind.to_string(), "10.20.0.5:80");
    assert!(hr.proxy_protocol);
    assert_eq!(
        c.trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["10.20.0.2/32", "10.20.0.3/32"]
    );
    assert_eq!(c.pools[hr.pool.unwrap()].name, "hr");
    assert_eq!(c.listeners[1].bind.to_string(), "0.0.0.0:8081");
    // A directory of certificates: each file, the first the default.
    let t = lb.listeners[2].tls.as_ref().unwrap();
    assert!(t.cert.ends_with("certs/a.pem") && t.sni[0].0.ends_with("certs/b.pem"));
    assert!(comment(&yaml, &path, "bind :8443 ssl crt").contains("is a directory"));

    // `defaults tomcat from base`: the timeouts of base, the checks of tomcat.
    assert_eq!(c.timeouts.connect, Duration::from_secs(3));
    assert_eq!(c.timeouts.backend_response, Duration::from_secs(120));
    assert_eq!(c.timeouts.client_idle, Duration::from_secs(30));
    assert_eq!(c.limits.max_connections, 4000);
    let hrp = pool(&c, "hr");
    let h = hrp.health_check.as_ref().unwrap();
    assert_eq!(
        (h.method.as_str(), h.path.as_str(), h.host.as_deref()),
        ("HEAD", "/hr/alive", Some("hr.corp.example"))
    );
    assert_eq!((h.interval, h.rise, h.fall), (Duration::from_secs(5), 3, 2));
    assert_eq!(
        (hrp.passive.max_fails, hrp.passive.fail_timeout),
        (5, Duration::from_secs(10))
    );

    // The stick table becomes learn mode, sized and timed like the table.
    assert_eq!(hrp.sticky.mode, StickyMode::Learn);
    let l = &hrp.sticky.learn;
    assert_eq!(
        (l.cookie.as_str(), l.max_len, l.capacity),
        ("JSESSIONID", 52, 204_800)
    );
    assert_eq!(l.idle_timeout, Duration::from_secs(30 * 60));
    assert!(
        comment(&yaml, &path, "stick on req.cook(JSESSIONID)").contains("only in HAProxy's memory")
    );
    let names: Vec<&str> = hrp.servers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["hr-a", "hr-b", "hr-c"]);
    assert_eq!(server(hrp, "hr-c").state, ServerState::Drain);
    assert!(comment(&yaml, &path, "server \"hr c\"").contains("named \"hr-c\""));
    assert!(comment(&yaml, &path, "server hr-dns").contains("a host name"));

    let reports = pool(&c, "reports");
    assert_eq!(reports.sticky.mode, StickyMode::IpHash);
    assert!(server(reports, "rep2").backup);
    assert!(comment(&yaml, &path, "balance source").contains("cannot be carried"));
    let api = pool(&c, "api");
    assert_eq!(api.retries, 2);
    let tls = server(api, "api1").tls.as_ref().unwrap();
    assert_eq!(
        tls.server_name,
        rustls::pki_types::ServerName::try_from("api.corp.example").unwrap()
    );
    assert!(tls.identity.contains("internal-ca.pem"), "{}", tls.identity);

    for top in [
        "nbthread 4",
        "lua-load",
        "userlist admins",
        "timeout queue 30s",
        "default-server inter 5s fastinter 1s",
        "listen mysql",
    ] {
        assert!(comment(&yaml, &path, top).starts_with("# import:"), "{top}");
    }
    assert!(comment(&yaml, &path, "http-request lua.cors").starts_with("  # import:"));
    assert!(!c.pools.iter().any(|p| p.name == "mysql"));
}

#[test]
fn a_file_with_everything_carried_over_has_no_notes() {
    let path = fixture("carried.cfg");
    let (lb, yaml, c) = imported(&path);
    assert!(lb.notes.is_empty(), "{yaml}");
    assert!(!yaml.contains("# import:"));
    let app = pool(&c, "app");
    let k = &app.sticky.cookie;
    assert!(
        !k.http_only && !k.secure && k.indirect && k.nocache,
        "{yaml}"
    );
    assert_eq!(server(app, "node2").route, "node2");
    let prefixes: Vec<&str> = c.listeners[0]
        .routes
        .iter()
        .filter_map(|r| r.path_prefix.as_deref())
        .collect();
    assert_eq!(prefixes, ["/static/", "/assets/"]);
}

fn import_cmd(args: &[&str], file: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_limpet"))
        .arg("import")
        .args(args)
        .arg(file)
        .output()
        .unwrap()
}

#[test]
fn the_binary_exits_0_when_carried_2_with_notes_and_1_for_garbage() {
    let carried = fixture("carried.cfg");
    let out = import_cmd(&[], &carried);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).unwrap();
    limpet::config::parse(&yaml, Path::new("lb.yaml")).unwrap();

    let shop = fixture("shop.cfg");
    let out = import_cmd(&[], &shop);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    let at = format!(
        "{}:{}: compression algo gzip",
        shop.display(),
        line_of(&shop, "compression")
    );
    assert!(err.contains(&at), "{err}");
    let check = shop.with_file_name("lb.yaml");
    std::fs::write(&check, &out.stdout).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_limpet"))
        .args(["check", "--config"])
        .arg(&check)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let dir = harness::temp_dir("import-haproxy-bad");
    let bad = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let cases = [
        (
            bad(
                "nginx.conf",
                "user nginx;\nhttp {\n  upstream app { server 10.0.0.1; }\n}\n",
            ),
            1,
        ),
        (
            bad(
                "quote.cfg",
                "defaults\n  mode http\nbackend app\n  server s1 \"10.0.0.1:80\n",
            ),
            4,
        ),
        (
            bad("orphan.cfg", "  # no section yet\n  maxconn 10\nglobal\n"),
            2,
        ),
        (
            bad(
                "unknown.cfg",
                "defaults\n mode http\nfrontend f\n bind :80\n use_backend nope if { path_beg /x }\nbackend app\n server s 10.0.0.1:80\n",
            ),
            5,
        ),
        (
            bad(
                "noaddr.cfg",
                "defaults\n mode http\nfrontend f\n bind :80\n default_backend app\nbackend app\n server s1\n",
            ),
            7,
        ),
        (
            bad(
                "dns.cfg",
                "defaults\n mode http\nfrontend f\n bind :80\n default_backend app\nbackend app\n server s1 app.internal:8080\n",
            ),
            6,
        ),
    ];
    for (file, line) in cases {
        let out = import_cmd(&["--from", "haproxy"], &file);
        assert_eq!(out.status.code(), Some(1), "{}: {out:?}", file.display());
        assert!(out.stdout.is_empty(), "{}", file.display());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("{}:{line}: ", file.display())),
            "{err}"
        );
    }
}

/// HAProxy in the foreground, killed when dropped.
struct Haproxy(std::process::Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The value of cookie `name` among a response's `Set-Cookie` lines.
fn set_cookie(res: &reqwest::Response, name: &str) -> Option<String> {
    harness::set_cookies(res).iter().find_map(|l| {
        let (pair, _) = l.split_once(';').unwrap_or((l, ""));
        let (k, v) = pair.split_once('=')?;
        (k.trim() == name).then(|| v.trim().to_owned())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_logged_in_through_haproxy_stay_on_their_server_through_limpet() {
    let exe = Path::new("/usr/sbin/haproxy");
    if !exe.exists() {
        assert!(
            std::env::var_os("LIMPET_REQUIRE_OLD_BALANCERS").is_none(),
            "/usr/sbin/haproxy is missing and LIMPET_REQUIRE_OLD_BALANCERS is set"
        );
        println!("SKIPPED: no /usr/sbin/haproxy");
        return;
    }
    let nodes = harness::nodes(3).await;
    let port = harness::closed_port();
    let servers: String = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| format!("    server {} {} cookie c{}\n", n.route(), n.addr(), i + 1))
        .collect();
    let dir = harness::temp_dir("haproxy-drill");
    let cfg = dir.join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n    maxconn 200\n\ndefaults\n    mode http\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\n\n\
             frontend www\n    bind {port}\n    default_backend app\n\n\
             backend app\n    balance roundrobin\n    cookie SERVERID insert indirect nocache\n{servers}"
        ),
    )
    .unwrap();
    let _haproxy = Haproxy(
        Command::new(exe)
            .arg("-f")
            .arg(&cfg)
            .arg("-db")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = harness::client();
    let old = format!("http://{port}/cart");
    assert!(
        eventually(Duration::from_secs(10), || async {
            client
                .get(&old)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await,
        "HAProxy did not answer on {port}"
    );

    // Six browsers log in through HAProxy (round robin: two per node) and
    // use their session twice more.
    let mut sessions = Vec::new();
    for _ in 0..6 {
        let res = client.get(&old).send().await.unwrap();
        let serverid = set_cookie(&res, "SERVERID").expect("HAProxy set SERVERID");
        let jsessionid = set_cookie(&res, "JSESSIONID").expect("the node set JSESSIONID");
        let cookie = format!("SERVERID={serverid}; JSESSIONID={jsessionid}");
        let mut last = serde_json::Value::Null;
        for _ in 0..2 {
            let res = client
                .get(&old)
                .header("cookie", &cookie)
                .send()
                .await
                .unwrap();
            last = res.json().await.unwrap();
        }
        assert_eq!(last["session"].as_str(), Some(jsessionid.as_str()));
        sessions.push((cookie, server_of(&last), last["counter"].as_u64().unwrap()));
    }
    let mut spread: Vec<&str> = sessions.iter().map(|(_, s, _)| s.as_str()).collect();
    spread.sort_unstable();
    spread.dedup();
    assert_eq!(spread.len(), 3, "{sessions:?}");

    // The same haproxy.cfg, imported; the same cookies, sent to limpet.
    let lb = haproxy::import(&cfg, &Options::default()).unwrap();
    assert!(lb.notes.is_empty(), "{:?}", lb.notes);
    let yaml = write::yaml(&lb, "haproxy.cfg", "HAProxy");
    let limpet = harness::Lb::start(&yaml).await;
    for (cookie, server, counter) in &sessions {
        let res = client
            .get(limpet.url("/cart"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert!(
            set_cookie(&res, "SERVERID").is_none(),
            "limpet re-issued SERVERID for {cookie}"
        );
        let v: serde_json::Value = res.json().await.unwrap();
        assert_eq!(&server_of(&v), server, "{cookie} moved");
        assert_eq!(
            v["counter"].as_u64(),
            Some(counter + 1),
            "{cookie}: the session did not continue: {v}"
        );
        assert_eq!(v["new_session"].as_bool(), Some(false));
    }
    limpet.shutdown().await;
}

#[test]
fn a_certificate_missing_on_this_machine_still_prints_the_translation_with_exit_2() {
    // Importing on a workstation: the old balancer's files are elsewhere.
    let dir = crate::harness::temp_dir("import-missing-cert");
    let cfg = dir.join("haproxy.cfg");
    std::fs::write(
        &cfg,
        "defaults\n    mode http\nfrontend web\n    bind 127.0.0.1:8443 ssl crt /etc/haproxy/certs/absent.pem\n    default_backend app\nbackend app\n    server s1 10.0.0.1:8080\n",
    )
    .unwrap();
    let out = import_cmd(&[], &cfg);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let yaml = String::from_utf8(out.stdout).unwrap();
    assert!(yaml.contains("/etc/haproxy/certs/absent.pem"), "{yaml}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("names a file this machine does not have"),
        "{stderr}"
    );
}

#[test]
fn accept_proxy_is_carried_only_where_the_frontend_names_its_sources_in_either_order() {
    let dir = crate::harness::temp_dir("import-accept-proxy");
    let open = "frontend open\n    bind 127.0.0.1:8081 accept-proxy\n    default_backend app\n";
    let named = "frontend named\n    bind 127.0.0.1:8082 accept-proxy\n    tcp-request connection expect-proxy layer4 if { src 10.0.0.5 }\n    default_backend app\n";
    let tail = "backend app\n    server s1 10.0.0.1:8080\n";
    for (i, order) in [[open, named], [named, open]].iter().enumerate() {
        let cfg = dir.join(format!("haproxy-{i}.cfg"));
        std::fs::write(
            &cfg,
            format!("defaults\n    mode http\n{}{}{tail}", order[0], order[1]),
        )
        .unwrap();
        let lb = limpet::import::import(&cfg, limpet::import::Format::Haproxy, &Default::default())
            .unwrap();
        let pp = |name: &str| {
            lb.listeners
                .iter()
                .find(|l| l.name == name)
                .unwrap()
                .proxy_protocol
        };
        assert!(!pp("open"), "order {i}");
        assert!(pp("named"), "order {i}");
        assert!(
            lb.notes
                .iter()
                .any(|n| n.why.contains("accept-proxy is not carried over")),
            "order {i}: {:?}",
            lb.notes
        );
    }
}
