//! The test harness: limpet started in-process on listeners pre-bound to
//! `127.0.0.1:0`, demo nodes that answer `{"server":"node1",...}`, a
//! browser-like client (cookie jar, optional source address), and
//! `eventually` to poll with a deadline instead of sleeping.

#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use limpet::Limpet;
use limpet_demo::DemoNode;
use serde_json::Value;

/// limpet running in this test process.
pub struct Lb {
    pub limpet: Option<Limpet>,
    pub addr: SocketAddr,
    /// The admin endpoint, when the config has an `admin` section.
    pub admin: Option<SocketAddr>,
}

impl Lb {
    /// Starts limpet with `yaml`; every listener is pre-bound to 127.0.0.1:0
    /// (the `bind` of a test config is a placeholder).
    pub async fn start(yaml: &str) -> Lb {
        let config = limpet::config::parse(yaml, Path::new("test.yaml"))
            .unwrap_or_else(|e| panic!("test config invalid: {e}\n{yaml}"));
        Lb::start_config(config).await
    }

    /// Starts limpet from a configuration file (so that a reload through
    /// the admin API reads it again).
    pub async fn start_file(path: &Path) -> Lb {
        let yaml = std::fs::read_to_string(path).unwrap();
        let config = limpet::config::parse(&yaml, path).unwrap();
        Lb::start_config(config).await
    }

    async fn start_config(config: limpet::config::Config) -> Lb {
        let mut bound = HashMap::new();
        for l in &config.listeners {
            bound.insert(
                l.name.clone(),
                std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
            );
        }
        if config.admin.is_some() {
            bound.insert(
                limpet::control::ADMIN_SOCKET.to_owned(),
                std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
            );
        }
        let limpet = Limpet::start_with(config, bound).await.unwrap();
        let addr = limpet.local_addrs()[0];
        let admin = limpet.admin_addr();
        Lb {
            limpet: Some(limpet),
            addr,
            admin,
        }
    }

    /// A URL on the admin endpoint.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin.expect("no admin section"), path)
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        get_text(&self.admin_url("/metrics")).await
    }

    /// The live state of server `server` of pool `pool`.
    pub fn live(&self, pool: &str, server: &str) -> std::sync::Arc<limpet::server::Live> {
        live(self, pool, server)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Reloads with `yaml`; listeners that are new get pre-bound sockets.
    pub async fn reload_new(&self, yaml: &str, new_listeners: &[&str]) {
        let config = limpet::config::parse(yaml, Path::new("test.yaml")).unwrap();
        let mut bound = HashMap::new();
        for name in new_listeners {
            bound.insert(
                (*name).to_owned(),
                std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
            );
        }
        self.limpet
            .as_ref()
            .unwrap()
            .reload_with(config, bound)
            .await
            .unwrap();
    }

    pub async fn reload(&mut self, yaml: &str) {
        let config = limpet::config::parse(yaml, Path::new("test.yaml")).unwrap();
        self.limpet.as_ref().unwrap().reload(config).await.unwrap();
    }

    pub async fn shutdown(mut self) {
        if let Some(l) = self.limpet.take() {
            l.shutdown().await;
        }
    }
}

/// The value of the series `name{labels}` in a metrics text, where
/// `labels` is exactly as exposed (`pool="app",server="node1"`); 0 if absent.
pub fn metric(text: &str, name: &str, labels: &str) -> f64 {
    let series = if labels.is_empty() {
        name.to_owned()
    } else {
        format!("{name}{{{labels}}}")
    };
    text.lines()
        .find_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            (k == series).then(|| v.parse::<f64>().ok()).flatten()
        })
        .unwrap_or(0.0)
}

/// Removes what earlier runs of the tests left in the temporary directory:
/// the `limpet-<name>-<pid>-<n>` directories of a process that is gone.
/// This run's stay behind it, so that a failed test's files can be read;
/// the next run removes them.
fn sweep_earlier_runs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("limpet-")) else {
                continue;
            };
            let mut parts = rest.rsplitn(3, '-');
            let (Some(n), Some(pid), Some(_)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let (Ok(_), Ok(pid)) = (n.parse::<u32>(), pid.parse::<u32>()) else {
                continue;
            };
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    });
}

/// A fresh temporary directory for one test.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    sweep_earlier_runs();
    let dir = std::env::temp_dir().join(format!(
        "limpet-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `text` to `path` with permission bits `mode`.
pub fn write_mode(path: &Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Starts demo nodes named node1..nodeN.
pub async fn nodes(n: usize) -> Vec<DemoNode> {
    let mut v = Vec::new();
    for i in 1..=n {
        v.push(DemoNode::start(&format!("node{i}")).await.unwrap());
    }
    v
}

/// The `servers:` list of a pool for these nodes (name = route = nodeN).
pub fn servers_yaml(nodes: &[DemoNode]) -> String {
    nodes
        .iter()
        .map(|n| {
            format!(
                "      - {{ name: {}, address: \"{}\" }}\n",
                n.route(),
                n.addr()
            )
        })
        .collect()
}

/// The `servers:` entries for these nodes with these weights.
pub fn weighted_servers_yaml<'a>(nodes: impl IntoIterator<Item = (&'a DemoNode, u32)>) -> String {
    nodes
        .into_iter()
        .map(|(n, w)| {
            format!(
                "      - {{ name: {}, address: \"{}\", weight: {w} }}\n",
                n.route(),
                n.addr()
            )
        })
        .collect()
}

/// A minimal config: one listener `http`, one pool `app` with `pool_extra`
/// lines (indented 4 spaces) and these nodes, plus `top_extra` top-level lines.
pub fn config(nodes: &[DemoNode], pool_extra: &str, top_extra: &str) -> String {
    format!(
        "listeners:\n  - name: http\n    bind: 127.0.0.1:1\n    pool: app\nlog:\n  level: warn\n{top_extra}\npools:\n  app:\n{pool_extra}\n    servers:\n{}",
        servers_yaml(nodes)
    )
}

/// A client like a browser: keeps cookies, optionally from a given source address.
pub fn browser(source: Option<IpAddr>) -> reqwest::Client {
    browser_with_jar(source).0
}

/// A [`browser`], and its cookie jar for the test to read.
pub fn browser_with_jar(
    source: Option<IpAddr>,
) -> (reqwest::Client, std::sync::Arc<reqwest::cookie::Jar>) {
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let mut b = reqwest_builder()
        .no_proxy()
        .cookie_provider(std::sync::Arc::clone(&jar))
        .timeout(Duration::from_secs(10));
    if let Some(ip) = source {
        b = b.local_address(ip);
    }
    (b.build().unwrap(), jar)
}

/// The cookie `name=value` that `jar` holds for `url`, if any.
pub fn jar_cookie(jar: &reqwest::cookie::Jar, url: &str, name: &str) -> Option<String> {
    use reqwest::cookie::CookieStore;
    let header = jar.cookies(&url.parse().unwrap())?;
    header
        .to_str()
        .unwrap()
        .split("; ")
        .find(|pair| pair.split_once('=').is_some_and(|(n, _)| n == name))
        .map(str::to_owned)
}

/// A client without a cookie jar.
pub fn client() -> reqwest::Client {
    reqwest_builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// GET `url` and return (status, JSON body or Null).
/// The body of `GET url` (any status), as text.
pub async fn get_text(url: &str) -> String {
    client()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

pub async fn get_json(c: &reqwest::Client, url: &str) -> (u16, Value) {
    let res = c.get(url).send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The name of the server that answered.
pub fn server_of(v: &Value) -> String {
    v["server"].as_str().unwrap_or("-").to_owned()
}

/// Polls `check` until it returns true or `deadline` passes.
pub async fn eventually<F, Fut>(deadline: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = Instant::now() + deadline;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A free port for a program that binds it itself (bound here, then
/// closed): redis-server, HAProxy, nginx and Apache, and limpet's admin
/// endpoint where a test must know its port before the process starts. Another program may take
/// the port in between: everything that can be handed a bound socket is
/// (`Lb`), and a server that must refuse connections is `refusing_port`.
pub fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// An address that refuses connections for as long as the returned socket
/// lives: bound but not listening, so no other test can take the port.
pub fn refusing_port() -> (SocketAddr, socket2::Socket) {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let addr = s.local_addr().unwrap().as_socket().unwrap();
    (addr, s)
}

/// Sends raw bytes and reads the whole answer until the server closes or
/// `wait` passes.
pub async fn raw(addr: SocketAddr, request: &[u8], wait: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of a raw HTTP/1 answer (0 if there is none).
pub fn status_of(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Loopback source address number `i` in 127.0.x.y (never 127.0.0.1).
pub fn source_ip(i: u32) -> IpAddr {
    let n = 256 + i; // skip 127.0.0.*
    IpAddr::from([127, 0, (n >> 8) as u8, (n & 0xff) as u8])
}

/// Sends `n` requests with `c` and returns the servers that answered.
pub async fn servers_seen(c: &reqwest::Client, url: &str, n: usize) -> Vec<String> {
    let mut seen = Vec::with_capacity(n);
    for _ in 0..n {
        let (status, v) = get_json(c, url).await;
        assert_eq!(status, 200, "{v}");
        seen.push(server_of(&v));
    }
    seen
}

/// Asserts every element is the same and returns it.
pub fn one_server(seen: &[String]) -> String {
    let first = seen.first().cloned().unwrap_or_default();
    assert!(
        seen.iter().all(|s| *s == first),
        "requests moved between servers: {seen:?}"
    );
    first
}

/// The raw `Set-Cookie` lines of a response.
pub fn set_cookies(res: &reqwest::Response) -> Vec<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// A config whose pool `app` has `sticky_yaml` (lines indented 4 spaces)
/// and the given server states.
pub fn sticky_config(
    nodes: &[DemoNode],
    sticky_yaml: &str,
    states: &[&str],
    top_extra: &str,
) -> String {
    let servers: String = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            format!(
                "      - {{ name: {}, address: \"{}\", state: {} }}\n",
                n.route(),
                n.addr(),
                states.get(i).copied().unwrap_or("active")
            )
        })
        .collect();
    format!(
        "listeners:\n  - name: http\n    bind: 127.0.0.1:1\n    pool: app\nlog:\n  level: warn\n{top_extra}\npools:\n  app:\n{sticky_yaml}\n    servers:\n{servers}"
    )
}

/// The server that answers `url` for a request carrying `cookie`.
pub async fn server_with_cookie(c: &reqwest::Client, url: &str, cookie: &str) -> String {
    let res = c.get(url).header("cookie", cookie).send().await.unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    server_of(&res.json().await.unwrap())
}

/// The live state of server `server` of pool `pool` in the running snapshot.
pub fn live(lb: &Lb, pool: &str, server: &str) -> std::sync::Arc<limpet::server::Live> {
    let snap = lb.limpet.as_ref().unwrap().snapshot();
    let p = snap.pool(pool).unwrap();
    let i = p.servers.by_name(server).unwrap();
    std::sync::Arc::clone(&p.servers[i].live)
}

/// The server that pool `pool`'s learned table (learn mode) names for the
/// session id `id`.
pub fn learned_server(lb: &Lb, pool: &str, id: &str) -> Option<String> {
    let snap = lb.limpet.as_ref().unwrap().snapshot();
    let limpet::sticky::Sticky::Learn(learn) = &snap.pool(pool).unwrap().sticky else {
        panic!("pool {pool} is not in learn mode");
    };
    learn
        .table
        .get(learn.key(id.as_bytes()))
        .map(|s| s.to_string())
}

/// The failover bindings that pool `pool` (jvm_route mode) holds.
pub fn jvm_route_bindings(lb: &Lb, pool: &str) -> u64 {
    let snap = lb.limpet.as_ref().unwrap().snapshot();
    let limpet::sticky::Sticky::JvmRoute(j) = &snap.pool(pool).unwrap().sticky else {
        panic!("pool {pool} is not in jvm_route mode");
    };
    j.bindings()
}

/// A client (no cookie jar) whose connections come from `ip`.
pub fn client_from(ip: IpAddr) -> reqwest::Client {
    reqwest_builder()
        .no_proxy()
        .local_address(ip)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// An HTTP/2 cleartext (prior knowledge) client.
pub fn h2_client() -> reqwest::Client {
    reqwest_builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap()
}

/// A config for [`Proc`]: one listener on `{BIND}`, pool `app` with these
/// nodes, and `top_extra` top-level lines.
pub fn proc_config(nodes: &[DemoNode], top_extra: &str) -> String {
    format!(
        "listeners:\n  - name: http\n    bind: \"{{BIND}}\"\n    pool: app\n{top_extra}log:\n  level: warn\npools:\n  app:\n    servers:\n{}",
        servers_yaml(nodes)
    )
}

/// What `{BIND}` stands for in a [`Proc`] configuration: port 0, a free
/// port the binary picks and names in its "listening" log line.
pub const ANY_PORT: &str = "127.0.0.1:0";

/// The `log.level` of a test configuration (`info` without one).
fn config_level(yaml: &str) -> &str {
    yaml.lines()
        .find_map(|l| l.trim().strip_prefix("level:"))
        .map_or("info", |v| v.trim().trim_matches('"'))
}

/// The `log.file` of a test configuration, where the "listening" line goes.
fn log_file(yaml: &str) -> Option<std::path::PathBuf> {
    yaml.lines()
        .find_map(|l| l.trim().strip_prefix("file:"))
        .map(|v| v.trim().trim_matches('"').into())
}

/// The address in the first "listening" line of a log, text or JSON.
fn listening(log: &str) -> Option<SocketAddr> {
    let line = log
        .lines()
        .find(|l| l.contains("listening") && l.contains("addr"))?;
    let at = line.find("addr")? + "addr".len();
    let rest = line[at..].trim_start_matches(['=', '"', ':', ' ']);
    let end = rest
        .find(|c: char| !(c.is_ascii_hexdigit() || ".:[]".contains(c)))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The real `limpet` binary, for signals, exit codes and process limits.
/// Its config is `yaml` with `{BIND}` for port 0 ([`ANY_PORT`]); `addr` is
/// the port it got. What it logs goes to `stderr.log` in its own temporary
/// directory.
pub struct Proc {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    pub dir: std::path::PathBuf,
}

impl Proc {
    pub async fn start(name: &str, yaml: &str) -> Proc {
        Proc::start_with(name, yaml, "").await
    }

    /// Runs the binary under `sh -c "<prefix> exec limpet …"`, e.g. with
    /// `ulimit -n 64;` as the prefix.
    pub async fn start_with(name: &str, yaml: &str, prefix: &str) -> Proc {
        Proc::spawn(
            name,
            yaml,
            prefix,
            Path::new(env!("CARGO_BIN_EXE_limpet")),
            &[],
        )
        .await
    }

    /// Runs the binary at `exe` (a copy, for upgrades) with these
    /// environment variables added.
    pub async fn start_exe(name: &str, yaml: &str, exe: &Path, env: &[(&str, &str)]) -> Proc {
        Proc::spawn(name, yaml, "", exe, env).await
    }

    async fn spawn(name: &str, yaml: &str, prefix: &str, exe: &Path, env: &[(&str, &str)]) -> Proc {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        sweep_earlier_runs();
        let dir = std::env::temp_dir().join(format!(
            "limpet-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // The binary binds port 0 itself and names the port it got in its
        // "listening" line, which the level of any test config lets through.
        std::fs::write(dir.join("lb.yaml"), yaml.replace("{BIND}", ANY_PORT)).unwrap();
        let level = config_level(yaml);
        let stderr = std::fs::File::create(dir.join("stderr.log")).unwrap();
        let child = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{prefix} exec \"$0\" --config \"$1\"",))
            .arg(exe)
            .arg(dir.join("lb.yaml"))
            .env("RUST_LOG", format!("{level},limpet::control=info"))
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let log_file = log_file(yaml);
        let mut p = Proc {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir,
        };
        let mut addr = None;
        eventually(Duration::from_secs(10), || {
            let text = match &log_file {
                Some(f) => std::fs::read_to_string(f).unwrap_or_default(),
                None => p.log(),
            };
            addr = listening(&text);
            async move { addr.is_some() }
        })
        .await;
        let Some(addr) = addr else {
            panic!("limpet did not say where it listens: {}", p.log());
        };
        p.addr = addr;
        p
    }

    pub fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Writes a new configuration (for a reload). `{BIND}` stays port 0:
    /// the same `bind`, so the listener keeps the port it got.
    pub fn rewrite(&self, yaml: &str) {
        std::fs::write(self.dir.join("lb.yaml"), yaml.replace("{BIND}", ANY_PORT)).unwrap();
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Waits (5 s at most) until the log holds `text` `n` times or more.
    /// Lines reach the log from limpet's writer thread a moment after the
    /// event, so a test polls for them as for anything else.
    pub async fn logged(&self, text: &str, n: usize) -> bool {
        eventually(Duration::from_secs(5), || async {
            self.log().matches(text).count() >= n
        })
        .await
    }

    /// What the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    pub async fn wait_exit(&mut self, deadline: Duration) -> Option<i32> {
        let mut code = None;
        eventually(deadline, || {
            let r = self.child.try_wait().unwrap();
            code = r.map(|s| s.code().unwrap_or(-1));
            async move { r.is_some() }
        })
        .await;
        code
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// reqwest's builder, with rustls' ring provider installed (the tests'
/// reqwest has no provider of its own; limpet uses ring too).
pub fn reqwest_builder() -> reqwest::ClientBuilder {
    static PROVIDER: std::sync::Once = std::sync::Once::new();
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
}

/// Steady load on `base`: `clients` clients requesting `{base}/load/{i}`
/// in a loop, half on a kept-alive connection, half on a new connection
/// per request (those meet every socket of a listener's group).
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ok: std::sync::Arc<std::sync::atomic::AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<Vec<String>>>,
}

impl Load {
    pub fn start(base: &str, clients: usize) -> Load {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for i in 0..clients {
            let (stop, ok) = (stop.clone(), ok.clone());
            let url = format!("{base}/load/{i}");
            tasks.push(tokio::spawn(async move {
                let c = if i % 2 == 0 {
                    client()
                } else {
                    reqwest_builder()
                        .no_proxy()
                        .pool_max_idle_per_host(0)
                        .timeout(Duration::from_secs(10))
                        .build()
                        .unwrap()
                };
                let mut errors = Vec::new();
                // Bounded: the test stops it within seconds.
                for _ in 0..100_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    match c.get(&url).send().await {
                        Ok(r) if r.status() == 200 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => errors.push(format!("status {}", r.status())),
                        Err(e) => errors.push(format!("{e:?}")),
                    }
                }
                errors
            }));
        }
        Load { stop, ok, tasks }
    }

    /// How many requests were answered 200 so far.
    pub fn answered(&self) -> u64 {
        self.ok.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits (10 s at most) until `n` more requests are answered.
    pub async fn runs(&self, n: u64) -> bool {
        let from = self.answered();
        eventually(Duration::from_secs(10), || async {
            self.answered() >= from + n
        })
        .await
    }

    /// Stops the clients: how many requests were answered 200, and what
    /// went wrong with the others.
    pub async fn stop(self) -> (u64, Vec<String>) {
        use std::sync::atomic::Ordering;
        self.stop.store(true, Ordering::Relaxed);
        let mut errors = Vec::new();
        for t in self.tasks {
            errors.extend(t.await.unwrap());
        }
        (self.ok.load(Ordering::Relaxed), errors)
    }
}
