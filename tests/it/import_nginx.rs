//! `limpet import` from nginx: realistic configurations (includes, globs,
//! TLS, nginx Plus sticky modes) carried over key by key, the notes that
//! name FILE:LINE, the exit codes of the real binary, and a cutover drill
//! with a real nginx in front of the same demo nodes as limpet.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use limpet::config::{Balance, Config, IpHashKey, ServerState, StickyMode};
use limpet::import::model::Lb;
use limpet::import::{Options, nginx};

use crate::harness::{self, eventually};
use crate::pki::Ca;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/import/nginx")
        .join(name)
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// The shop fixture in a temp dir, with the certificates it names.
fn shop() -> PathBuf {
    let dir = harness::temp_dir("import-nginx-shop");
    copy_tree(&fixture("shop"), &dir);
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let ca = Ca::new("shop CA");
    ca.leaf(&["shop.example", "www.shop.example"])
        .write(&certs, "shop");
    ca.leaf(&["api.shop.example"]).write(&certs, "api");
    dir
}

/// Imports `conf`, writes it, and loads what was written as limpet would.
fn translate(conf: &Path) -> (Lb, String, Config) {
    let lb = nginx::import(conf, &Options::default()).unwrap_or_else(|e| panic!("{e}"));
    let text = limpet::import::write::yaml(&lb, &conf.display().to_string(), "nginx");
    let config = limpet::config::parse(&text, Path::new("lb.yaml"))
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    (lb, text, config)
}

fn pool<'a>(c: &'a Config, name: &str) -> &'a limpet::config::PoolConfig {
    c.pools
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no pool {name}"))
}

fn pool_name(c: &Config, i: usize) -> &str {
    &c.pools[i].name
}

#[test]
fn the_shop_is_carried_over_listener_by_listener_and_pool_by_pool() {
    let dir = shop();
    let (_, text, c) = translate(&dir.join("nginx.conf"));

    // Listeners: the redirect on :80, then :443 shared by two server blocks.
    assert_eq!(c.listeners.len(), 2, "{text}");
    let http = &c.listeners[0];
    assert_eq!(http.name, "http-80");
    assert_eq!(http.bind.to_string(), "0.0.0.0:80");
    assert!(http.redirect_https);
    assert!(http.tls.is_none());
    let https = &c.listeners[1];
    assert_eq!(https.name, "https-443");
    assert_eq!(https.bind.to_string(), "0.0.0.0:443");
    assert!(!https.redirect_https);
    assert_eq!(pool_name(&c, https.pool.unwrap()), "shop_app");
    let routes: Vec<(Option<&str>, Option<&str>, &str)> = https
        .routes
        .iter()
        .map(|r| {
            (
                r.host.as_deref(),
                r.path_prefix.as_deref(),
                pool_name(&c, r.pool),
            )
        })
        .collect();
    assert_eq!(
        routes,
        [
            (Some("api.shop.example"), Some("/v1/"), "checkout"),
            (Some("api.shop.example"), None, "shop_app"),
            (None, Some("/checkout/"), "checkout"),
            (None, Some("/static/"), "static_files"),
        ],
        "{text}"
    );
    let certs = https.certs.as_ref().expect("tls");
    assert_eq!(
        certs.sni.len(),
        1,
        "the api block's certificate is served by SNI"
    );
    assert!(
        text.contains(&format!("cert: {}", dir.join("certs/shop.crt").display())),
        "{text}"
    );

    // Global settings from the http and events contexts.
    assert_eq!(c.timeouts.client_idle, Duration::from_secs(75));
    assert_eq!(c.timeouts.request_header, Duration::from_secs(15));
    assert_eq!(c.timeouts.client_body, Duration::from_secs(30));
    assert_eq!(c.timeouts.connect, Duration::from_secs(2));
    assert_eq!(c.timeouts.backend_response, Duration::from_secs(120));
    assert_eq!(c.limits.max_connections, 4096);
    assert_eq!(
        c.trusted_proxies,
        ["10.0.0.0/8".parse::<ipnet::IpNet>().unwrap()]
    );

    // sticky route with its maps → jvm_route on each server's route=.
    let app = pool(&c, "shop_app");
    assert_eq!(app.sticky.mode, StickyMode::JvmRoute);
    assert_eq!(app.sticky.jvm_route.cookie, "JSESSIONID");
    assert_eq!(app.sticky.jvm_route.path_param, "jsessionid");
    assert_eq!(app.retries, 2, "proxy_next_upstream_tries 3 = 2 retries");
    assert_eq!(app.passive.max_fails, 3);
    assert_eq!(app.passive.fail_timeout, Duration::from_secs(30));
    let s: Vec<(&str, String, &str, u32, bool)> = app
        .servers
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                s.address.to_string(),
                s.route.as_str(),
                s.weight,
                s.backup,
            )
        })
        .collect();
    assert_eq!(
        s,
        [
            ("tc1", "10.0.1.11:8080".into(), "tc1", 1, false),
            ("tc2", "10.0.1.12:8080".into(), "tc2", 2, false),
            ("tc3", "10.0.1.13:8080".into(), "tc3", 1, true),
        ]
    );

    // sticky cookie → cookie mode whose routes are nginx Plus' MD5 values.
    let checkout = pool(&c, "checkout");
    assert_eq!(checkout.balance, Balance::LeastConn);
    assert_eq!(checkout.sticky.mode, StickyMode::Cookie);
    let cookie = &checkout.sticky.cookie;
    assert_eq!(cookie.name, "srv_id");
    assert_eq!(cookie.max_age, Some(Duration::from_secs(3600)));
    assert_eq!(cookie.domain.as_deref(), Some("shop.example"));
    assert_eq!(cookie.path, "/");
    assert!(cookie.http_only && cookie.secure);
    // echo -n 127.0.0.1:8080 | md5sum
    assert_eq!(checkout.servers[2].address.to_string(), "127.0.0.1:8080");
    assert_eq!(
        checkout.servers[2].route,
        "5958c386bf5e9109ac10d2a628645aea"
    );
    assert_eq!(checkout.servers[1].state, ServerState::Disabled);
    assert_eq!(checkout.servers[0].state, ServerState::Active);

    // `server 10.0.3.31;` is port 80.
    let st = pool(&c, "static_files");
    assert_eq!(st.servers[0].address.to_string(), "10.0.3.31:80");
    assert_eq!(st.balance, Balance::RoundRobin);
    assert_eq!(st.sticky.mode, StickyMode::None);

    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn what_the_shop_cannot_carry_is_a_comment_naming_its_own_file_and_line() {
    let dir = shop();
    let (lb, text, _) = translate(&dir.join("nginx.conf"));
    let at = |file: &str, line: usize, rest: &str| {
        format!("# import: {}:{line}: {rest}", dir.join(file).display())
    };
    for (file, line, rest, before) in [
        (
            "nginx.conf",
            18,
            "access_log /var/log/nginx/access.log main; — limpet logs",
            "listeners:",
        ),
        (
            "nginx.conf",
            19,
            "gzip on; — limpet does not compress",
            "listeners:",
        ),
        (
            "conf.d/shop.conf",
            9,
            "add_header Strict-Transport-Security \"max-age=31536000\" always; — limpet does not rewrite response headers",
            "  - name: https-443",
        ),
        (
            "conf.d/shop.conf",
            18,
            "limit_req zone=checkout burst=20;",
            "  - name: https-443",
        ),
        (
            "conf.d/shop.conf",
            26,
            "location ~* \\.(png|jpg|css)$ { … } — only prefix locations",
            "  - name: https-443",
        ),
        (
            "conf.d/api.conf",
            7,
            "auth_basic \"API\"; — limpet does not control access",
            "  - name: https-443",
        ),
        // A directive of a snippet included from an included file.
        (
            "snippets/proxy.conf",
            4,
            "proxy_set_header X-Request-Id $request_id;",
            "  - name: https-443",
        ),
        ("upstreams.conf", 8, "keepalive 32;", "  shop_app:"),
        (
            "upstreams.conf",
            21,
            "server 10.0.3.32:80 max_conns=100;",
            "      - { name: 10.0.3.32_80",
        ),
    ] {
        let comment = at(file, line, rest);
        let pos = text
            .find(&comment)
            .unwrap_or_else(|| panic!("no {comment:?} in\n{text}"));
        let next = text[pos..]
            .lines()
            .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .unwrap();
        assert!(
            next.starts_with(before),
            "{comment} is followed by {next:?}"
        );
    }
    // Irrelevant directives are skipped silently; the standard proxy headers are carried.
    for quiet in [
        "worker_processes",
        "sendfile",
        "mime.types",
        "multi_accept",
        "X-Forwarded-For $proxy",
        "zone shop_app",
    ] {
        assert!(!text.contains(quiet), "{quiet} is noted:\n{text}");
    }
    assert!(lb.notes.iter().all(|n| n.line > 0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_intranet_carries_ip_hash_learn_proxy_protocol_and_notes_the_rest() {
    let conf = fixture("intranet/nginx.conf");
    let (lb, text, c) = translate(&conf);
    assert_eq!(c.listeners.len(), 1, "{text}");
    let l = &c.listeners[0];
    assert_eq!(l.name, "http-10.1.0.1-80");
    assert_eq!(l.bind.to_string(), "10.1.0.1:80");
    assert!(l.proxy_protocol);
    assert_eq!(
        c.trusted_proxies,
        ["10.1.0.250/32".parse::<ipnet::IpNet>().unwrap()]
    );
    assert_eq!(pool_name(&c, l.pool.unwrap()), "portal");
    let routes: Vec<(&str, &str)> = l
        .routes
        .iter()
        .map(|r| (r.path_prefix.as_deref().unwrap(), pool_name(&c, r.pool)))
        .collect();
    assert_eq!(
        routes,
        [
            ("/reports/", "reports"),
            ("/metrics/", "192.168.10.20_9100"),
            ("/wiki/", "wiki")
        ]
    );

    let portal = pool(&c, "portal");
    assert_eq!(portal.sticky.mode, StickyMode::IpHash);
    assert_eq!(portal.sticky.ip_hash_key, IpHashKey::Subnet);
    assert_eq!(portal.servers.len(), 2, "the unix: socket is skipped");
    let reports = pool(&c, "reports");
    assert_eq!(reports.sticky.ip_hash_key, IpHashKey::Address);
    assert_eq!(reports.servers[0].weight, 3);
    assert_eq!(reports.servers[1].address.to_string(), "[fd00::8]:8081");
    let wiki = pool(&c, "wiki");
    assert_eq!(wiki.sticky.mode, StickyMode::Learn);
    assert_eq!(wiki.sticky.learn.cookie, "JSESSIONID");
    assert_eq!(wiki.sticky.learn.idle_timeout, Duration::from_secs(1800));
    assert_eq!(wiki.servers.len(), 1, "the host name is skipped");
    assert_eq!(pool(&c, "legacy").balance, Balance::RandomTwo);
    assert_eq!(
        pool(&c, "192.168.10.20_9100").servers[0]
            .address
            .to_string(),
        "192.168.10.20:9100"
    );

    let conf_s = conf.display().to_string();
    let params = fixture("intranet/proxy_params").display().to_string();
    for needle in [
        format!("# import: {conf_s}:2: error_log /var/log/nginx/error.log warn;"),
        format!("# import: {conf_s}:9: ip_hash; — placement cannot be carried"),
        format!("# import: {conf_s}:12: server unix:/run/portal.sock;"),
        format!(
            "# import: {conf_s}:20: sticky learn create=$upstream_cookie_jsessionid lookup=$cookie_jsessionid zone=wiki_sessions:1m timeout=30m; — learn: the sessions nginx learned cannot be carried"
        ),
        format!("# import: {conf_s}:26: server tomcat-wiki.internal:8080;"),
        format!("# import: {conf_s}:46: location = /health {{ … }}"),
        format!("# import: {conf_s}:47: location @fallback {{ … }}"),
        format!("# import: {conf_s}:48: location ~ ^/legacy/(.*)$ {{ … }}"),
        format!("# import: {conf_s}:49: rewrite ^/old/(.*)$ /new/$1 permanent;"),
        format!("# import: {params}:2: proxy_set_header X-Real-IP $remote_addr;"),
        format!("# import: {params}:5: proxy_buffering off;"),
    ] {
        assert!(text.contains(&needle), "no {needle:?} in\n{text}");
    }
    assert!(!lb.notes.is_empty());
}

#[test]
fn broken_nginx_files_are_refused_with_file_and_line() {
    let dir = harness::temp_dir("import-nginx-broken");
    let cases: [(&str, usize, &str); 6] = [
        (
            "http {\n  upstream a {\n    server 10.0.0.1:80\n  }\n}\n",
            3,
            "missing `;`",
        ),
        (
            "events {}\nhttp {\n  server {\n    listen 80;\n",
            3,
            "never closed",
        ),
        ("http {\n}\n}\n", 3, "unexpected `}`"),
        ("http {\n  add_header X \"open;\n}\n", 2, "unterminated"),
        (
            "http {\n  server {\n    location / {\n      proxy_pass http://nowhere;\n    }\n  }\n}\n",
            4,
            "no such upstream",
        ),
        (
            "http {\n  upstream a {\n    server unix:/x.sock;\n  }\n}\n",
            2,
            "no server",
        ),
    ];
    for (i, (text, line, why)) in cases.iter().enumerate() {
        let f = dir.join(format!("case{i}.conf"));
        std::fs::write(&f, text).unwrap();
        let e = nginx::import(&f, &Options::default()).unwrap_err();
        assert_eq!((e.file.as_path(), e.line), (f.as_path(), *line), "{e}");
        assert!(e.why.contains(why), "{e}");
    }

    // An include cycle, and a missing include, name the include's own file and line.
    std::fs::write(dir.join("a.conf"), "http {\n  include b.conf;\n}\n").unwrap();
    std::fs::write(dir.join("b.conf"), "\n\ninclude a.conf;\n").unwrap();
    let e = nginx::import(&dir.join("a.conf"), &Options::default()).unwrap_err();
    assert_eq!((e.file.clone(), e.line), (dir.join("b.conf"), 3), "{e}");
    assert!(e.why.contains("cycle"), "{e}");
    std::fs::write(dir.join("c.conf"), "http {\n\n  include missing.conf;\n}\n").unwrap();
    let e = nginx::import(&dir.join("c.conf"), &Options::default()).unwrap_err();
    assert_eq!((e.file.clone(), e.line), (dir.join("c.conf"), 3), "{e}");
    // A glob that matches nothing is fine, as in nginx.
    std::fs::write(
        dir.join("d.conf"),
        "http {\n  include none.d/*.conf;\n  upstream a { server 10.0.0.1:8080; }\n  server { listen 8080; location / { proxy_pass http://a; } }\n}\n",
    )
    .unwrap();
    assert!(nginx::import(&dir.join("d.conf"), &Options::default()).is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}

fn import_cmd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_limpet"))
        .arg("import")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_binary_exits_0_when_all_is_carried_2_with_notes_1_for_garbage() {
    let dir = harness::temp_dir("import-nginx-exit");
    let clean = dir.join("nginx.conf");
    std::fs::write(
        &clean,
        "events { worker_connections 512; }\nhttp {\n  upstream app {\n    server 10.0.0.1:8080 weight=2;\n    server 10.0.0.2:8080 backup;\n  }\n  server {\n    listen 8080;\n    location / { proxy_pass http://app; }\n  }\n}\n",
    )
    .unwrap();
    let out = import_cmd(&[clean.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let yaml = String::from_utf8(out.stdout).unwrap();
    let c = limpet::config::parse(&yaml, Path::new("lb.yaml")).unwrap();
    assert_eq!(c.listeners[0].bind.to_string(), "0.0.0.0:8080");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The shop has notes: exit 2, the notes on stderr, a valid lb.yaml on stdout.
    let shop = shop();
    let out = import_cmd(&["--from", "nginx", shop.join("nginx.conf").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "limpet: import: {}:4: proxy_set_header X-Request-Id",
            shop.join("snippets/proxy.conf").display()
        )),
        "{err}"
    );
    let yaml = String::from_utf8(out.stdout).unwrap();
    limpet::config::parse(&yaml, Path::new("lb.yaml")).unwrap();
    let lb = dir.join("lb.yaml");
    std::fs::write(&lb, &yaml).unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_limpet"))
        .args(["check", "--config"])
        .arg(&lb)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(0), "{check:?}");

    // Garbage, and an HAProxy file read as nginx: exit 1, nothing on stdout.
    let garbage = dir.join("nginx-garbage.conf");
    std::fs::write(&garbage, "http {\n  server {\n    listen 80\n").unwrap();
    let haproxy = dir.join("haproxy.cfg");
    std::fs::write(
        &haproxy,
        "global\n    maxconn 100\n\nfrontend www\n    bind :80\n    default_backend app\n\nbackend app\n    server s1 10.0.0.1:8080\n",
    )
    .unwrap();
    for (args, line) in [
        (
            vec![garbage.to_str().unwrap()],
            format!("{}:3:", garbage.display()),
        ),
        (
            vec!["--from", "nginx", haproxy.to_str().unwrap()],
            format!("{}:1:", haproxy.display()),
        ),
    ] {
        let out = import_cmd(&args);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(out.stdout.is_empty());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&line), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&shop);
}

mod tokenizer {
    use std::path::Path;

    use proptest::prelude::*;
    use proptest::test_runner::Config as RunnerConfig;

    use limpet::import::nginx::parse::parse_str;

    proptest! {
        #![proptest_config(RunnerConfig::with_cases(512))]
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
            let _ = parse_str(&text, Path::new("nginx.conf"));
        }

        #[test]
        fn nginx_shaped_noise_never_panics(
            parts in proptest::collection::vec(prop_oneof![
                Just("{".to_owned()), Just("}".to_owned()), Just(";".to_owned()),
                Just("\n".to_owned()), Just("#".to_owned()), Just("\"".to_owned()),
                Just("'".to_owned()), Just("\\".to_owned()), Just("${".to_owned()),
                "[a-z_$0-9.:/]{1,12}", " {1,3}",
            ], 0..60),
        ) {
            let text: String = parts.concat();
            if let Ok(list) = parse_str(&text, Path::new("nginx.conf")) {
                // Every directive names a line within the text.
                let lines = text.lines().count().max(1);
                fn check(list: &[limpet::import::directive::Directive], lines: usize) {
                    for d in list {
                        assert!(d.line >= 1 && d.line <= lines, "{d:?}");
                        check(d.children(), lines);
                    }
                }
                check(&list, lines);
            }
        }
    }
}

/// The same nginx.conf, through nginx and then through limpet: the same
/// paths reach the same pools.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutover_drill_nginx_and_limpet_route_the_same_paths_to_the_same_pools() {
    let nginx_bin = Path::new("/usr/sbin/nginx");
    if !nginx_bin.exists() {
        assert!(
            std::env::var_os("LIMPET_REQUIRE_OLD_BALANCERS").is_none(),
            "LIMPET_REQUIRE_OLD_BALANCERS is set but /usr/sbin/nginx is missing"
        );
        eprintln!("SKIPPED: /usr/sbin/nginx is not installed");
        return;
    }
    let nodes = harness::nodes(4).await;
    let dir = harness::temp_dir("import-nginx-drill");
    let port = harness::closed_port();
    let d = dir.display();
    let conf = format!(
        "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\nevents {{}}\n\nhttp {{\n    access_log off;\n    client_body_temp_path {d}/body;\n    proxy_temp_path {d}/proxy;\n    fastcgi_temp_path {d}/fastcgi;\n    uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n\n    upstream app {{\n        ip_hash;\n        server {};\n        server {};\n    }}\n    upstream static {{\n        server {};\n        server {};\n    }}\n\n    server {{\n        listen {port};\n        location /static/ {{ proxy_pass http://static; }}\n        location / {{ proxy_pass http://app; }}\n    }}\n}}\n",
        nodes[0].addr(),
        nodes[1].addr(),
        nodes[2].addr(),
        nodes[3].addr(),
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new(nginx_bin)
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _nginx = Kill(child);
    let via_nginx = format!("http://{port}");
    let c = harness::client();
    assert!(
        eventually(Duration::from_secs(10), || {
            let c = c.clone();
            let url = format!("{via_nginx}/");
            async move { c.get(url).send().await.is_ok() }
        })
        .await,
        "nginx did not answer: {}",
        std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
    );
    let app = ["node1", "node2"];
    let stat = ["node3", "node4"];
    let check = |base: String| {
        let c = c.clone();
        async move {
            for _ in 0..6 {
                let (_, v) = harness::get_json(&c, &format!("{base}/static/x")).await;
                assert!(
                    stat.contains(&harness::server_of(&v).as_str()),
                    "{base}: {v}"
                );
                let (_, v) = harness::get_json(&c, &format!("{base}/")).await;
                assert!(
                    app.contains(&harness::server_of(&v).as_str()),
                    "{base}: {v}"
                );
            }
        }
    };
    check(via_nginx).await;

    let out = import_cmd(&[path.to_str().unwrap()]);
    assert!(matches!(out.status.code(), Some(0 | 2)), "{out:?}");
    let yaml = String::from_utf8(out.stdout).unwrap();
    assert!(
        yaml.contains("path_prefix: /static/, pool: static"),
        "{yaml}"
    );
    let lb = harness::Lb::start(&yaml).await;
    check(lb.url("")).await;
    lb.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
