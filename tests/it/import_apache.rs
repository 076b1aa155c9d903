//! `limpet import --from apache`: an httpd.conf with its included sites
//! becomes an lb.yaml that limpet loads, with every directive it does not
//! carry over named by FILE:LINE; and, against a real Apache httpd, a
//! browser's session cookies reach the same Tomcat through limpet.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use limpet::config::{Balance, OnServerDown, ServerState, StickyMode};
use limpet::import::model::Lb;
use limpet::import::{Format, Options};

use crate::harness::{self, eventually};
use crate::pki::Ca;

/// The fixture directory copied into a temp dir, `@CERTS@` replaced by a
/// directory holding freshly made certificates.
pub fn fixture(kind: &str) -> PathBuf {
    let dir = harness::temp_dir(&format!("import-{kind}"));
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let ca = Ca::new("import test CA");
    ca.leaf(&["shop.example.com"]).write(&certs, "shop");
    ca.leaf(&["intranet.example.com"]).write(&certs, "intranet");
    copy(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/import")
            .join(kind),
        &dir,
        &certs,
    );
    dir
}

fn copy(from: &Path, to: &Path, certs: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy(&e.path(), &target, certs);
        } else {
            let text = std::fs::read_to_string(e.path()).unwrap();
            std::fs::write(
                &target,
                text.replace("@CERTS@", &certs.display().to_string()),
            )
            .unwrap();
        }
    }
}

/// Imports `file`, writes it, and loads what was written as limpet does.
pub fn translate(
    file: &Path,
    format: Format,
    http_port: Option<u16>,
) -> (Lb, String, limpet::config::Config) {
    let lb = limpet::import::import(file, format, &Options { http_port })
        .unwrap_or_else(|e| panic!("import failed: {e}"));
    let yaml = limpet::import::write::yaml(&lb, &file.display().to_string(), format.name());
    let config = limpet::config::parse(&yaml, Path::new("lb.yaml"))
        .unwrap_or_else(|e| panic!("limpet check refuses the output: {e}\n{yaml}"));
    (lb, yaml, config)
}

/// The `# import:` line for `file:line`, if any.
pub fn comment_for<'a>(yaml: &'a str, file: &Path, line: usize) -> Option<&'a str> {
    let needle = format!("# import: {}:{line}: ", file.display());
    yaml.lines().find(|l| l.trim_start().starts_with(&needle))
}

/// Runs the real binary: (exit code, stdout, stderr).
pub fn run_import(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_limpet"))
        .arg("import")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn pool<'a>(c: &'a limpet::config::Config, name: &str) -> &'a limpet::config::PoolConfig {
    c.pools
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no pool {name}"))
}

/// Each server as (name, address, route, weight, backup, state).
pub type ServerRow = (String, String, String, u32, bool, ServerState);

pub fn servers(p: &limpet::config::PoolConfig) -> Vec<ServerRow> {
    p.servers
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                s.address.to_string(),
                s.route.clone(),
                s.weight,
                s.backup,
                s.state,
            )
        })
        .collect()
}

/// The row [`servers`] gives for a server.
pub fn row(
    name: &str,
    address: &str,
    route: &str,
    weight: u32,
    backup: bool,
    state: ServerState,
) -> ServerRow {
    (
        name.into(),
        address.into(),
        route.into(),
        weight,
        backup,
        state,
    )
}

fn pool_index(c: &limpet::config::Config, name: &str) -> usize {
    c.pools.iter().position(|p| p.name == name).unwrap()
}

#[test]
fn an_httpd_conf_with_included_sites_becomes_listeners_pools_and_sticky_routes() {
    let dir = fixture("apache");
    let conf = dir.join("httpd.conf");
    let (_, yaml, c) = translate(&conf, Format::Apache, Some(8080));

    // Listeners: port 80 redirects to HTTPS, port 443 terminates TLS for two names.
    assert_eq!(c.listeners.len(), 2, "{yaml}");
    let http = &c.listeners[0];
    assert_eq!(
        (http.name.as_str(), http.bind.to_string().as_str()),
        ("http", "0.0.0.0:80")
    );
    assert!(http.redirect_https);
    let https = &c.listeners[1];
    assert_eq!(
        (https.name.as_str(), https.bind.to_string().as_str()),
        ("https", "0.0.0.0:443")
    );
    assert!(https.tls.is_some());
    assert!(yaml.contains("sni:\n        - { cert: "), "{yaml}");
    assert_eq!(https.pool, Some(pool_index(&c, "shop")));
    let routes: Vec<(Option<&str>, Option<&str>, &str)> = https
        .routes
        .iter()
        .map(|r| {
            (
                r.host.as_deref(),
                r.path_prefix.as_deref(),
                c.pools[r.pool].name.as_str(),
            )
        })
        .collect();
    assert_eq!(
        routes,
        [
            (Some("shop.example.com"), Some("/api/"), "api"),
            (Some("intranet.example.com"), None, "intranet"),
        ]
    );

    // The JSESSIONID balancer: jvm_route with the members' routes.
    let shop = pool(&c, "shop");
    assert_eq!(shop.balance, Balance::LeastConn);
    assert_eq!(shop.sticky.mode, StickyMode::JvmRoute);
    assert_eq!(shop.sticky.on_server_down, OnServerDown::Error);
    assert_eq!(shop.sticky.jvm_route.cookie.to_string(), "JSESSIONID");
    assert_eq!(shop.sticky.jvm_route.path_param.to_string(), "jsessionid");
    assert_eq!(shop.sticky.jvm_route.separator.to_string(), ".");
    let s = servers(shop);
    assert_eq!(
        s,
        [
            row(
                "node1",
                "10.0.1.11:8080",
                "node1",
                2,
                false,
                ServerState::Active
            ),
            row(
                "node2",
                "10.0.1.12:8080",
                "node2",
                1,
                true,
                ServerState::Active
            ),
            row(
                "node3",
                "10.0.1.13:8080",
                "node3",
                1,
                false,
                ServerState::Disabled
            ),
        ]
    );

    // The API: bytraffic is round robin, +N drains.
    let api = pool(&c, "api");
    assert_eq!(api.balance, Balance::RoundRobin);
    assert_eq!(api.sticky.mode, StickyMode::None);
    assert_eq!(api.servers[1].state, ServerState::Drain);

    // The ROUTEID balancer: cookie mode, routes `.<route>`, Apache's cookie path.
    let intranet = pool(&c, "intranet");
    assert_eq!(intranet.sticky.mode, StickyMode::Cookie);
    assert_eq!(intranet.sticky.cookie.name.to_string(), "ROUTEID");
    assert_eq!(intranet.sticky.cookie.path.to_string(), "/");
    let routes: Vec<&str> = intranet.servers.iter().map(|s| s.route.as_str()).collect();
    assert_eq!(routes, [".i1", ".i2"]);
    assert_eq!(intranet.passive.fail_timeout, Duration::from_secs(30));

    // Timeouts: ProxyTimeout wins over Timeout.
    assert_eq!(c.timeouts.backend_response, Duration::from_secs(90));
    assert_eq!(c.timeouts.client_idle, Duration::from_secs(5));
}

#[test]
fn what_is_not_carried_over_is_named_by_file_and_line_even_in_included_files() {
    let dir = fixture("apache");
    let conf = dir.join("httpd.conf");
    let site = dir.join("sites-enabled/10-shop.conf");
    let intranet = dir.join("sites-enabled/20-intranet.conf");
    let (_, yaml, _) = translate(&conf, Format::Apache, Some(8080));
    let expect = [
        (&conf, 12, "LogFormat"),
        (&conf, 28, "AJP becomes HTTP to port 8080"),
        (&conf, 37, "lbmethod=bytraffic"),
        (&conf, 41, "mod_security"),
        (&site, 15, "SSLProtocol"),
        (&site, 16, "RequestHeader"),
        (&site, 17, "Apache served this path itself"),
        (&site, 22, "access control"),
        (&intranet, 14, "Strict-Transport-Security"),
        (&intranet, 16, "AuthType"),
        (&intranet, 19, "Require valid-user"),
    ];
    for (file, line, what) in expect {
        let c = comment_for(&yaml, file, line)
            .unwrap_or_else(|| panic!("no note for {}:{line}\n{yaml}", file.display()));
        assert!(c.contains(what), "{c}");
    }
    // Carried over silently: ProxyPreserveHost, ProxyPassReverse, LoadModule, the redirect.
    for (file, line) in [
        (&conf, 4),
        (&conf, 21),
        (&site, 20),
        (&site, 7),
        (&intranet, 13),
    ] {
        assert!(
            comment_for(&yaml, file, line).is_none(),
            "{}:{line}\n{yaml}",
            file.display()
        );
    }
    // The AJP note sits right before its server.
    assert!(yaml.contains("AJP becomes HTTP to port 8080 (--http-port): enable each Tomcat's HTTP connector and its RemoteIpValve, see docs/migrating.md \"From AJP to HTTP\"\n      - { name: node3"), "{yaml}");
}

#[test]
fn the_command_exits_0_2_or_1_and_prints_nothing_on_failure() {
    let dir = fixture("apache");
    let conf = dir.join("httpd.conf");
    let conf = conf.to_str().unwrap();
    let (code, out, err) = run_import(&["--http-port", "8080", conf]);
    assert_eq!(code, 2, "{err}");
    assert!(
        out.starts_with("# lb.yaml imported from Apache httpd configuration"),
        "{out}"
    );
    assert!(
        err.contains("limpet: import: ") && err.contains("10-shop.conf:16: RequestHeader"),
        "{err}"
    );

    // An ajp:// member without --http-port: 1, naming the flag.
    let (code, out, err) = run_import(&[conf]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(
        err.contains("httpd.conf:28:") && err.contains("--http-port"),
        "{err}"
    );

    // Everything carried over: 0.
    let clean = dir.join("clean.conf");
    std::fs::write(&clean, "Listen 8080\n<Proxy balancer://app>\n  BalancerMember http://127.0.0.1:9001 route=node1\n  BalancerMember http://127.0.0.1:9002 route=node2\n</Proxy>\nProxyPass / balancer://app/ stickysession=JSESSIONID|jsessionid\nProxyPassReverse / balancer://app/\n").unwrap();
    let (code, out, err) = run_import(&["--from", "apache", clean.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}\n{out}");
    assert!(out.contains("mode: jvm_route"), "{out}");

    // Garbage, an unclosed section, and a workers.properties read as Apache: 1.
    let garbage = dir.join("garbage.conf");
    std::fs::write(
        &garbage,
        "<VirtualHost *:80>\nProxyPass / http://10.0.0.1:8080/\n",
    )
    .unwrap();
    let (code, out, err) = run_import(&["--from", "apache", garbage.to_str().unwrap()]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(
        err.contains("garbage.conf:1:") && err.contains("never closed"),
        "{err}"
    );
    let wrong = dir.join("workers.properties");
    std::fs::write(
        &wrong,
        "worker.list=lb\nworker.lb.type=lb\nworker.lb.balance_workers=a\n",
    )
    .unwrap();
    let (code, out, err) = run_import(&["--from", "apache", wrong.to_str().unwrap()]);
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
}

/// A real Apache httpd, run in the foreground from a temporary directory.
struct Apache {
    child: Child,
    addr: std::net::SocketAddr,
    conf: PathBuf,
}

impl Drop for Apache {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const APACHE: &str = "/usr/sbin/apache2";
const MODULES: &str = "/usr/lib/apache2/modules";

/// None (after printing SKIPPED) when Apache is not installed and
/// `LIMPET_REQUIRE_OLD_BALANCERS` is unset.
async fn apache(name: &str, site: &str) -> Option<Apache> {
    if !Path::new(APACHE).exists() {
        assert!(
            std::env::var_os("LIMPET_REQUIRE_OLD_BALANCERS").is_none(),
            "{APACHE} is missing and LIMPET_REQUIRE_OLD_BALANCERS is set"
        );
        eprintln!("SKIPPED: {APACHE} is not installed");
        return None;
    }
    let dir = harness::temp_dir(name);
    let addr = harness::closed_port();
    let modules: String = [
        ("mpm_event", "mpm_event"),
        ("authz_core", "authz_core"),
        ("proxy", "proxy"),
        ("proxy_http", "proxy_http"),
        ("proxy_balancer", "proxy_balancer"),
        ("lbmethod_byrequests", "lbmethod_byrequests"),
        ("slotmem_shm", "slotmem_shm"),
        ("headers", "headers"),
        ("unixd", "unixd"),
    ]
    .iter()
    // unixd is built into Debian's httpd; load it only where it is not.
    .map(|(m, f)| {
        format!(
            "<IfModule !{m}_module>\n  LoadModule {m}_module {MODULES}/mod_{f}.so\n</IfModule>\n"
        )
    })
    .collect();
    let text = format!(
        "ServerRoot \"{d}\"\nPidFile {d}/httpd.pid\nErrorLog {d}/error.log\nMutex file:{d}\nDefaultRuntimeDir {d}\nServerName localhost\n{modules}Listen {addr}\n{site}",
        d = dir.display()
    );
    let conf = dir.join("httpd.conf");
    std::fs::write(&conf, text).unwrap();
    let child = Command::new(APACHE)
        .arg("-f")
        .arg(&conf)
        .arg("-DFOREGROUND")
        .env_remove("APACHE_RUN_DIR")
        .env_remove("APACHE_LOCK_DIR")
        .env_remove("APACHE_LOG_DIR")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
        .spawn()
        .unwrap();
    let a = Apache { child, addr, conf };
    let up = eventually(Duration::from_secs(15), || async {
        harness::client()
            .get(format!("http://{addr}/"))
            .send()
            .await
            .is_ok()
    })
    .await;
    assert!(
        up,
        "apache did not answer: {}{}",
        std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default(),
        std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
    );
    Some(a)
}

/// `name=value` of the first `Set-Cookie` naming `name`.
fn cookie_pair(res: &reqwest::Response, name: &str) -> Option<String> {
    harness::set_cookies(res)
        .into_iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .and_then(|c| c.split(';').next().map(str::to_owned))
}

/// The JSON answer to `GET url` with this `Cookie` header.
async fn json_with_cookie(c: &reqwest::Client, url: &str, cookie: &str) -> serde_json::Value {
    let res = c.get(url).header("cookie", cookie).send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// Logs in through `old` (sending back what it sets), then replays the
/// cookies to `new`: the same server answers, and the session continues.
async fn same_session_through(
    old: std::net::SocketAddr,
    new: std::net::SocketAddr,
    names: &[&str],
) {
    let c = harness::client();
    let res = c.get(format!("http://{old}/login")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let cookies: Vec<String> = names.iter().filter_map(|n| cookie_pair(&res, n)).collect();
    assert_eq!(
        cookies.len(),
        names.len(),
        "{:?}",
        harness::set_cookies(&res)
    );
    let first: serde_json::Value = res.json().await.unwrap();
    let server = harness::server_of(&first);
    let header = cookies.join("; ");
    let mut last = 0;
    for _ in 0..3 {
        let v = json_with_cookie(&c, &format!("http://{old}/cart"), &header).await;
        assert_eq!(harness::server_of(&v), server, "{v}");
        last = v["counter"].as_u64().unwrap_or(0);
    }
    for _ in 0..5 {
        let v = json_with_cookie(&c, &format!("http://{new}/cart"), &header).await;
        assert_eq!(harness::server_of(&v), server, "{v}");
        let count = v["counter"].as_u64().unwrap_or(0);
        assert_eq!(count, last + 1, "the session did not continue: {v}");
        last = count;
    }
}

fn members(nodes: &[limpet_demo::DemoNode]) -> String {
    nodes
        .iter()
        .map(|n| {
            format!(
                "    BalancerMember http://{} route={}\n",
                n.addr(),
                n.route()
            )
        })
        .collect()
}

fn imported_yaml(conf: &Path) -> String {
    let (code, out, err) = run_import(&["--from", "apache", conf.to_str().unwrap()]);
    assert!(code == 0 || code == 2, "{err}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_made_through_apache_with_jsessionid_routes_stays_on_its_tomcat_through_limpet() {
    let nodes = harness::nodes(3).await;
    let site = format!(
        "<Proxy balancer://app>\n{}    ProxySet lbmethod=byrequests\n</Proxy>\nProxyPass / balancer://app/ stickysession=JSESSIONID|jsessionid\nProxyPassReverse / balancer://app/\n",
        members(&nodes)
    );
    let Some(apache) = apache("apache-jvm-route", &site).await else {
        return;
    };
    let yaml = imported_yaml(&apache.conf);
    assert!(yaml.contains("mode: jvm_route"), "{yaml}");
    let lb = harness::Lb::start(&yaml).await;
    same_session_through(apache.addr, lb.addr, &["JSESSIONID"]).await;
    lb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_pinned_by_apaches_routeid_cookie_stays_on_its_tomcat_through_limpet() {
    let nodes = harness::nodes(3).await;
    let site = format!(
        "Header add Set-Cookie \"ROUTEID=.%{{BALANCER_WORKER_ROUTE}}e; path=/\" env=BALANCER_ROUTE_CHANGED\n<Proxy balancer://app>\n{}    ProxySet stickysession=ROUTEID\n</Proxy>\nProxyPass / balancer://app/\n",
        members(&nodes)
    );
    let Some(apache) = apache("apache-routeid", &site).await else {
        return;
    };
    let yaml = imported_yaml(&apache.conf);
    assert!(
        yaml.contains("mode: cookie") && yaml.contains("name: ROUTEID"),
        "{yaml}"
    );
    let lb = harness::Lb::start(&yaml).await;
    same_session_through(apache.addr, lb.addr, &["ROUTEID", "JSESSIONID"]).await;
    lb.shutdown().await;
}

#[test]
fn a_vhost_on_one_address_joins_the_wildcard_listener_of_its_port() {
    let dir = crate::harness::temp_dir("import-apache-ipvhost");
    let conf = dir.join("httpd.conf");
    std::fs::write(
        &conf,
        "Listen 80\n\
         <VirtualHost 10.0.0.5:80>\n  ServerName intra.example\n  ProxyPass / http://10.0.1.1:8080/\n</VirtualHost>\n\
         <VirtualHost *:80>\n  ServerName www.example\n  ProxyPass / http://10.0.1.2:8080/\n</VirtualHost>\n",
    )
    .unwrap();
    let (code, yaml, stderr) = run_import(&["--from", "apache", conf.to_str().unwrap()]);
    assert!(code == 0 || code == 2, "{code}: {stderr}");
    let config = limpet::config::parse(&yaml, std::path::Path::new("lb.yaml"))
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    assert_eq!(config.listeners.len(), 1, "{yaml}");
    assert_eq!(config.listeners[0].bind.to_string(), "0.0.0.0:80");
    let hosts: Vec<&str> = config.listeners[0]
        .routes
        .iter()
        .filter_map(|r| r.host.as_deref())
        .collect();
    // The first vhost is the address's default, as in Apache; the other
    // is reached by its name.
    assert_eq!(hosts, ["www.example"], "{yaml}");
    assert!(config.listeners[0].pool.is_some(), "{yaml}");
}
