//! Several limpet instances: the learned table shared through a real
//! `redis-server` (started by the test on its own port), and the
//! deterministic agreement of the other modes. Every test runs two limpet
//! processes with the same `lb.yaml`, as behind a keepalived VIP or an L4
//! balancer. They skip when `redis-server` is missing, unless
//! `LIMPET_REQUIRE_REDIS` is set (CI sets it).

use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use limpet_demo::DemoNode;

use crate::harness::{self, Proc, eventually, nodes, servers_yaml};

/// A `redis-server` of the test's own, on a free loopback port, without
/// persistence.
pub(super) struct Redis {
    pub(super) child: Option<Child>,
    pub(super) port: u16,
}

impl Redis {
    /// Starts one, or `None` when redis-server is not installed (and CI
    /// does not require it).
    pub(super) async fn start() -> Option<Redis> {
        let port = harness::closed_port().port();
        let mut r = Redis { child: None, port };
        if !r.spawn() {
            assert!(
                std::env::var_os("LIMPET_REQUIRE_REDIS").is_none(),
                "redis-server is not installed and LIMPET_REQUIRE_REDIS is set"
            );
            eprintln!("redis-server is not installed: skipping");
            return None;
        }
        r.wait_ready().await;
        Some(r)
    }

    fn spawn(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match child {
            Ok(c) => {
                self.child = Some(c);
                true
            }
            Err(_) => false,
        }
    }

    pub(super) async fn wait_ready(&self) {
        let port = self.port;
        assert!(
            eventually(Duration::from_secs(10), || async move { ping(port).await }).await,
            "redis-server did not start on port {port}"
        );
    }

    pub(super) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Killed: every connection to it drops, and it forgets everything.
    pub(super) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Started again, empty, on the same port.
    async fn restart(&mut self) {
        self.kill();
        assert!(self.spawn());
        self.wait_ready().await;
    }

    pub(super) async fn conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// The ids of the connections subscribed to a channel.
    async fn subscribers(&self) -> Vec<u64> {
        let mut c = self.conn().await;
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .arg("TYPE")
            .arg("pubsub")
            .query_async(&mut c)
            .await
            .unwrap();
        list.lines()
            .filter_map(|l| l.strip_prefix("id=")?.split(' ').next()?.parse().ok())
            .collect()
    }

    /// The session keys of pool `app`.
    pub(super) async fn sessions(&self) -> Vec<String> {
        let mut c = self.conn().await;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("limpet:app:*")
            .query_async(&mut c)
            .await
            .unwrap();
        keys.into_iter().filter(|k| !k.contains('@')).collect()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn ping(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    if s.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(
        tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await,
        Ok(Ok(n)) if buf[..n].starts_with(b"+PONG")
    )
}

/// One limpet process with an admin endpoint.
pub(super) struct Instance {
    pub(super) proc: Proc,
    pub(super) admin: SocketAddr,
}

impl Instance {
    /// `pool` is the pool block's extra lines (sticky and so on).
    pub(super) async fn start(name: &str, nodes: &[DemoNode], pool: &str) -> Instance {
        Instance::start_in(name, &harness::temp_dir(name), nodes, pool).await
    }

    /// With its `state_dir` in `dir`.
    pub(super) async fn start_in(
        name: &str,
        dir: &std::path::Path,
        nodes: &[DemoNode],
        pool: &str,
    ) -> Instance {
        Instance::start_env(name, dir, nodes, pool, "").await
    }

    /// `env` is put before the command (`VAR=value …`).
    pub(super) async fn start_env(
        name: &str,
        dir: &std::path::Path,
        nodes: &[DemoNode],
        pool: &str,
        env: &str,
    ) -> Instance {
        Instance::start_top(name, dir, nodes, pool, "", env).await
    }

    /// With `top` added as top-level lines (`timeouts:` and so on).
    pub(super) async fn start_top(
        name: &str,
        dir: &std::path::Path,
        nodes: &[DemoNode],
        pool: &str,
        top: &str,
        env: &str,
    ) -> Instance {
        let admin = harness::closed_port();
        let yaml = format!(
            "listeners:\n  - name: http\n    bind: \"{{BIND}}\"\n    pool: app\nadmin:\n  bind: \"{admin}\"\nlog:\n  level: info\n{top}state_dir: \"{{STATE}}\"\npools:\n  app:\n{pool}\n    servers:\n{}",
            servers_yaml(nodes)
        );
        let yaml = yaml.replace("{STATE}", &dir.display().to_string());
        let proc = Proc::start_with(name, &yaml, env).await;
        Instance { proc, admin }
    }

    /// Two instances `<name>-a` and `<name>-b` with the same pool, both
    /// connected to their store.
    pub(super) async fn pair(name: &str, nodes: &[DemoNode], pool: &str) -> (Instance, Instance) {
        let a = Instance::start(&format!("{name}-a"), nodes, pool).await;
        let b = Instance::start(&format!("{name}-b"), nodes, pool).await;
        a.wait_store(true).await;
        b.wait_store(true).await;
        (a, b)
    }

    pub(super) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proc.addr)
    }

    pub(super) async fn metrics(&self) -> String {
        harness::get_text(&format!("http://{}/metrics", self.admin)).await
    }

    pub(super) async fn store_up(&self) -> bool {
        harness::metric(&self.metrics().await, "limpet_store_up", "pool=\"app\"") == 1.0
    }

    /// Waits (15 s at most) until the log holds `text`; fails the test,
    /// showing the log, if it does not.
    pub(super) async fn wait_log(&self, text: &str) {
        assert!(
            eventually(Duration::from_secs(15), || async {
                self.proc.log().contains(text)
            })
            .await,
            "no {text:?} in the log: {}",
            self.proc.log()
        );
    }

    pub(super) async fn wait_store(&self, up: bool) {
        assert!(
            eventually(Duration::from_secs(15), || async {
                self.store_up().await == up
            })
            .await,
            "limpet_store_up never became {up}: {}",
            self.proc.log()
        );
    }
}

/// A learn pool sharing through `redis`. The lookup budget is generous
/// (1 s) so that a loaded CI machine does not turn a slow lookup into a
/// different node; the test of the budget itself sets its own.
pub(super) fn learn_pool(redis: &Redis, extra: &str) -> String {
    learn_pool_with_timeout(redis, "1s", extra)
}

pub(super) fn learn_pool_with_timeout(redis: &Redis, store_timeout: &str, extra: &str) -> String {
    format!(
        "    sticky:\n      mode: learn\n      learn:\n        store: \"{}\"\n        store_timeout: {store_timeout}\n{extra}",
        redis.url()
    )
}

/// GET through `url` with `browser`: (status, server).
pub(super) async fn visit(browser: &reqwest::Client, url: &str) -> (u16, String) {
    let (status, v) = harness::get_json(browser, url).await;
    (status, harness::server_of(&v))
}

#[tokio::test]
async fn a_session_learned_through_one_instance_is_routed_to_its_node_through_the_other() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let nodes = nodes(3).await;
    let (a, b) = Instance::pair("store-", &nodes, &learn_pool(&redis, "")).await;

    for i in 0..12 {
        let browser = harness::browser(None);
        let (status, home) = visit(&browser, &a.url(&format!("/s{i}"))).await;
        assert_eq!(status, 200);
        // In Redis before the answer reached the browser: no waiting here.
        assert_eq!(redis.sessions().await.len(), i + 1);
        // The same browser, now through B (the VIP moved): the same node,
        // several times.
        for n in 0..3 {
            let got = visit(&browser, &b.url("/")).await;
            if got != (200, home.clone()) {
                panic!(
                    "session {i}, visit {n} through B: {got:?}, expected {home}\n{}\n{}",
                    b.metrics().await,
                    b.proc.log()
                );
            }
        }
        // And back.
        assert_eq!(visit(&browser, &a.url("/")).await, (200, home));
    }
    let text = b.metrics().await;
    let hits = harness::metric(
        &text,
        "limpet_store_lookups_total",
        "pool=\"app\",result=\"hit\"",
    );
    let known = harness::metric(&text, "limpet_learned_sessions", "pool=\"app\"");
    // B knew each session either from A's announcement or by looking it up.
    assert!(
        known >= 12.0,
        "B's table holds the sessions: {known}, lookups hit {hits}"
    );
    // The API and the status page say where the store is and that it is up.
    let (_, pools) =
        harness::get_json(&harness::client(), &format!("http://{}/api/pools", b.admin)).await;
    assert_eq!(pools["pools"][0]["store"]["up"], true, "{pools}");
    assert_eq!(pools["pools"][0]["store"]["url"], redis.url());
    let page = harness::get_text(&format!("http://{}/status", b.admin)).await;
    assert!(page.contains("Shared store"), "{page}");
    // Keys are hashes, never the ids.
    let keys = redis.sessions().await;
    assert!(keys.len() >= 12, "{keys:?}");
    assert!(keys.iter().all(|k| {
        let h = k.trim_start_matches("limpet:app:");
        h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit())
    }));
}

/// Holds Redis's write commands (and announcements) for `ms`; reads go on.
pub(super) async fn pause_writes(redis: &Redis, ms: u64) {
    let mut c = redis.conn().await;
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(ms)
        .arg("WRITE")
        .query_async(&mut c)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_new_session_is_in_the_store_before_its_answer_reaches_the_browser() {
    // An L4 balancer may send the browser's next request to the other
    // instance at once: the session must be in Redis by then.
    let Some(redis) = Redis::start().await else {
        return;
    };
    let nodes = nodes(3).await;
    let (a, b) = Instance::pair("store-w", &nodes, &learn_pool(&redis, "")).await;
    for i in 0..3 {
        // Redis holds writes for 300 ms: the answer waits for the write
        // (within store_timeout, 1 s here), not the other way round.
        pause_writes(&redis, 300).await;
        let browser = harness::browser(None);
        let (status, home) = visit(&browser, &a.url(&format!("/w{i}"))).await;
        assert_eq!(status, 200);
        assert_eq!(redis.sessions().await.len(), i + 1, "{}", a.proc.log());
        assert_eq!(visit(&browser, &b.url("/")).await, (200, home));
    }
}

/// How many times Redis ran `command` (INFO commandstats).
async fn calls(redis: &Redis, command: &str) -> u64 {
    let mut c = redis.conn().await;
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut c)
        .await
        .unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_session_cookie_sent_again_on_every_answer_is_written_once() {
    // Sliding expiry: the server re-sends the same cookie (`a=1` from
    // /set-cookies) on every answer. Only the first one is news.
    let Some(redis) = Redis::start().await else {
        return;
    };
    let nodes = nodes(3).await;
    let (a, b) = Instance::pair("store-r", &nodes, &learn_pool(&redis, "        cookie: a")).await;
    let browser = harness::browser(None);
    let (_, home) = visit(&browser, &a.url("/set-cookies")).await;
    assert_eq!(redis.sessions().await.len(), 1);
    let (sets, publishes) = (calls(&redis, "set").await, calls(&redis, "publish").await);
    for _ in 0..10 {
        assert_eq!(
            visit(&browser, &a.url("/set-cookies")).await,
            (200, home.clone())
        );
    }
    assert_eq!(calls(&redis, "set").await, sets);
    assert_eq!(calls(&redis, "publish").await, publishes);
    // Still shared.
    assert_eq!(visit(&browser, &b.url("/")).await, (200, home));
}

#[tokio::test]
async fn a_slow_write_delays_a_new_session_no_longer_than_store_timeout() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let nodes = nodes(2).await;
    let a = Instance::start(
        "store-ta",
        &nodes,
        &learn_pool_with_timeout(&redis, "100ms", ""),
    )
    .await;
    a.wait_store(true).await;
    pause_writes(&redis, 1500).await;
    let mut browsers = Vec::new();
    for i in 0..5 {
        let browser = harness::browser(None);
        let t = Instant::now();
        let (status, home) = visit(&browser, &a.url(&format!("/n{i}"))).await;
        let took = t.elapsed();
        assert_eq!(status, 200);
        assert!(
            took < Duration::from_millis(100 + 700),
            "new session {i} took {took:?}"
        );
        browsers.push((browser, home));
    }
    // Sent again from the queue once Redis takes writes: all there.
    assert!(
        eventually(Duration::from_secs(10), || async {
            redis.sessions().await.len() == 5
        })
        .await,
        "{:?}",
        redis.sessions().await
    );
    for (browser, home) in &browsers {
        assert_eq!(&visit(browser, &a.url("/")).await.1, home);
    }
}

#[tokio::test]
async fn a_session_b_finds_by_lookup_after_missing_the_announcement() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let nodes = nodes(3).await;
    let a = Instance::start("store-la", &nodes, &learn_pool(&redis, "")).await;
    a.wait_store(true).await;
    let mut homes = Vec::new();
    for i in 0..6 {
        let browser = harness::browser(None);
        let (_, home) = visit(&browser, &a.url(&format!("/x{i}"))).await;
        homes.push((browser, home));
    }
    // B starts after the sessions were learned: it heard nothing, and
    // looks each one up on its first request.
    let b = Instance::start("store-lb", &nodes, &learn_pool(&redis, "")).await;
    b.wait_store(true).await;
    for (browser, home) in &homes {
        assert_eq!(visit(browser, &b.url("/")).await, (200, home.clone()));
    }
    let hits = harness::metric(
        &b.metrics().await,
        "limpet_store_lookups_total",
        "pool=\"app\",result=\"hit\"",
    );
    assert_eq!(hits, 6.0);
}

/// The session of `browser` (cookie `a`, on node `home`) fails over
/// through A: its node dies, A moves it on the next request, the node
/// comes back. B never saw the node fail (no health checks, no traffic);
/// only A's announcement can tell it. Returns where the session went, once
/// B routes it there too.
async fn failover_through_a(
    a: &Instance,
    b: &Instance,
    nodes: &[DemoNode],
    browser: &reqwest::Client,
    home: &str,
) -> String {
    let node = nodes.iter().find(|n| n.route() == home).unwrap();
    node.stop().await;
    let (status, moved) = visit(browser, &a.url("/")).await;
    assert_eq!(status, 200);
    assert_ne!(moved, home);
    node.restart().await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            visit(browser, &b.url("/")).await.1 == moved
        })
        .await,
        "B did not follow the failover A saw"
    );
    moved
}

#[tokio::test]
async fn a_failover_seen_by_one_instance_is_followed_by_the_other() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let nodes = nodes(3).await;
    // The session is the cookie `a`, which the demo nodes set on
    // /set-cookies and never change: like sessions kept in memcached, the
    // id survives a failover, so only limpet's rewrite moves it.
    let pool = learn_pool(&redis, "        cookie: a");
    let (a, b) = Instance::pair("store-f", &nodes, &pool).await;

    let browser = harness::browser(None);
    let (_, home) = visit(&browser, &a.url("/set-cookies")).await;
    assert_eq!(visit(&browser, &b.url("/")).await.1, home, "B knows it");
    let moved = failover_through_a(&a, &b, &nodes, &browser, &home).await;
    for _ in 0..5 {
        assert_eq!(visit(&browser, &b.url("/")).await.1, moved);
        assert_eq!(visit(&browser, &a.url("/")).await.1, moved);
    }
}

#[tokio::test]
async fn an_instance_restarted_with_its_saved_table_follows_what_moved_while_it_was_down() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let nodes = nodes(3).await;
    // Cookie `a` survives a failover: only the tables can move it.
    let pool = learn_pool(&redis, "        cookie: a");
    let dir_a = harness::temp_dir("store-pa");
    let mut a = Instance::start_in("store-pa", &dir_a, &nodes, &pool).await;
    let b = Instance::start("store-pb", &nodes, &pool).await;
    a.wait_store(true).await;
    b.wait_store(true).await;
    let browser = harness::browser(None);
    let (_, home) = visit(&browser, &a.url("/set-cookies")).await;
    assert_eq!(visit(&browser, &b.url("/")).await.1, home);

    // A stops (its table saved to state_dir); while it is down the node
    // fails, B moves the session, and the node comes back.
    a.proc.signal("TERM");
    assert_eq!(a.proc.wait_exit(Duration::from_secs(10)).await, Some(0));
    let node = nodes.iter().find(|n| n.route() == home).unwrap();
    node.stop().await;
    let (_, moved) = visit(&browser, &b.url("/")).await;
    assert_ne!(moved, home);
    node.restart().await.unwrap();

    // A comes back with its saved table, which still says `home`: Redis
    // says otherwise, and Redis wins.
    let a2 = Instance::start_in("store-pa2", &dir_a, &nodes, &pool).await;
    a2.wait_store(true).await;
    assert!(
        a2.proc.logged("learned sessions restored", 1).await,
        "{}",
        a2.proc.log()
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            visit(&browser, &a2.url("/")).await.1 == moved
        })
        .await,
        "A routes by its stale saved table: {}",
        a2.proc.log()
    );
    for _ in 0..3 {
        assert_eq!(visit(&browser, &a2.url("/")).await.1, moved);
        assert_eq!(visit(&browser, &b.url("/")).await.1, moved);
    }
}

#[tokio::test]
async fn store_counters_survive_a_reload_that_replaces_the_store() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let nodes = nodes(2).await;
    let a = Instance::start("store-ca", &nodes, &learn_pool(&redis, "")).await;
    a.wait_store(true).await;
    let misses = || async {
        harness::metric(
            &a.metrics().await,
            "limpet_store_lookups_total",
            "pool=\"app\",result=\"miss\"",
        )
    };
    let unknown = |i: u32| {
        harness::client()
            .get(a.url("/static/x"))
            .header("cookie", format!("JSESSIONID=NEVERSEEN{i}"))
            .send()
    };
    assert_eq!(unknown(1).await.unwrap().status(), 200);
    assert_eq!(misses().await, 1.0);

    // A new capacity: a new table, so a new store behind the same Redis.
    let file = a.proc.dir.join("lb.yaml");
    let yaml = std::fs::read_to_string(&file).unwrap();
    let changed = yaml.replace("      learn:\n", "      learn:\n        capacity: 5000\n");
    assert_ne!(changed, yaml);
    std::fs::write(&file, changed).unwrap();
    a.proc.signal("HUP");
    assert!(
        eventually(Duration::from_secs(5), || async {
            harness::metric(
                &a.metrics().await,
                "limpet_config_reloads_total",
                "result=\"success\"",
            ) == 1.0
        })
        .await,
        "{}",
        a.proc.log()
    );
    a.wait_store(true).await;
    assert_eq!(unknown(2).await.unwrap().status(), 200);
    // Counted on from 1, not from 0: counters reset only at a restart.
    assert_eq!(misses().await, 2.0);
}

/// A TCP forwarder to `to` whose open connections can be frozen: from then
/// on they carry nothing either way but stay open, as connections to a
/// Redis that moved behind a VIP do. New connections work.
struct Freezer {
    addr: std::net::SocketAddr,
    epoch: Arc<std::sync::atomic::AtomicU64>,
}

impl Freezer {
    async fn start(to: u16) -> Freezer {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let epoch = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let current = Arc::clone(&epoch);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await else {
                    continue;
                };
                let born = current.load(Ordering::SeqCst);
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                for (mut from, mut to) in
                    [(cr, sw), (sr, cw)].map(|(r, w)| (tokio::io::BufReader::new(r), w))
                {
                    let current = Arc::clone(&current);
                    tokio::spawn(async move {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let mut buf = [0u8; 16384];
                        loop {
                            let Ok(n) = from.read(&mut buf).await else {
                                return;
                            };
                            if n == 0 {
                                return;
                            }
                            if current.load(Ordering::SeqCst) != born {
                                // Frozen: hold both sockets, carry nothing.
                                std::future::pending::<()>().await;
                            }
                            if to.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            }
        });
        Freezer { addr, epoch }
    }

    fn url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }

    /// Every connection open now carries nothing from now on.
    fn freeze(&self) {
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_subscriber_on_a_connection_gone_silent_subscribes_again() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let nodes = nodes(3).await;
    let pool = learn_pool(&redis, "        cookie: a");
    let a = Instance::start("store-za", &nodes, &pool).await;
    // B reaches Redis through a forwarder that can leave its connections
    // half open.
    let freezer = Freezer::start(redis.port).await;
    let b = Instance::start(
        "store-zb",
        &nodes,
        &pool.replace(&redis.url(), &freezer.url()),
    )
    .await;
    a.wait_store(true).await;
    b.wait_store(true).await;
    let browser = harness::browser(None);
    let (_, home) = visit(&browser, &a.url("/set-cookies")).await;
    assert_eq!(visit(&browser, &b.url("/")).await.1, home, "B knows it");

    // B's connections go silent. Its commands time out and reconnect by
    // themselves; its subscription must notice too.
    let subscribed = redis.subscribers().await;
    freezer.freeze();
    b.wait_log("subscribing again").await;
    b.wait_store(true).await;
    // B's new subscription is in place (a subscriber Redis did not have
    // before), then a failover that only the announcement can tell B about
    // (the cookie survives it).
    assert!(
        eventually(Duration::from_secs(10), || async {
            let now = redis.subscribers().await;
            now.iter().any(|id| !subscribed.contains(id))
        })
        .await,
        "B did not subscribe again"
    );
    failover_through_a(&a, &b, &nodes, &browser, &home).await;
}

#[tokio::test]
async fn redis_killed_mid_traffic_fails_no_request_and_sharing_resumes_when_it_returns() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    let nodes = nodes(3).await;
    let (a, b) = Instance::pair("store-k", &nodes, &learn_pool(&redis, "")).await;

    let mut sessions = Vec::new();
    for i in 0..10 {
        let browser = harness::browser(None);
        let (_, home) = visit(&browser, &a.url(&format!("/k{i}"))).await;
        assert_eq!(visit(&browser, &b.url("/")).await.1, home);
        sessions.push((browser, home));
    }

    // Traffic through both while Redis dies: every request answered, every
    // session on its node (from each instance's local table).
    let started = Instant::now();
    let mut round = 0;
    while started.elapsed() < Duration::from_secs(3) || round < 3 {
        if round == 1 {
            redis.kill();
        }
        for (browser, home) in &sessions {
            for lb in [&a, &b] {
                let (status, server) = visit(browser, &lb.url("/")).await;
                assert_eq!((status, &server), (200, home), "round {round}");
            }
        }
        round += 1;
    }
    a.wait_store(false).await;
    b.wait_store(false).await;
    let errors = harness::metric(
        &a.metrics().await,
        "limpet_store_errors_total",
        "pool=\"app\"",
    );
    assert!(errors > 0.0);
    // One log line per state change, not one per failure.
    assert!(a.proc.logged("unreachable", 1).await, "{}", a.proc.log());
    let log = a.proc.log();
    assert_eq!(log.matches("unreachable").count(), 1, "{log}");

    // A session learned while Redis is down stays local to A for now.
    let late = harness::browser(None);
    let (_, late_home) = visit(&late, &a.url("/late")).await;

    // Redis returns, empty: both instances publish their tables again and
    // share from then on.
    redis.restart().await;
    a.wait_store(true).await;
    b.wait_store(true).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            redis.sessions().await.len() >= 11
        })
        .await,
        "the local tables were published again"
    );
    assert_eq!(visit(&late, &b.url("/")).await.1, late_home);
    let fresh = harness::browser(None);
    let (_, fresh_home) = visit(&fresh, &b.url("/fresh")).await;
    assert_eq!(visit(&fresh, &a.url("/")).await.1, fresh_home);
    assert!(a.proc.logged("is reachable", 2).await, "{}", a.proc.log());
    assert_eq!(
        a.proc.log().matches("is reachable").count(),
        2,
        "{}",
        a.proc.log()
    );
}

#[tokio::test]
async fn a_slow_redis_delays_no_request_beyond_store_timeout() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let nodes = nodes(2).await;
    // Started with a generous budget, then reloaded with 100 ms: the
    // reload must reach the running store.
    let a = Instance::start(
        "store-sa",
        &nodes,
        &learn_pool_with_timeout(&redis, "5s", ""),
    )
    .await;
    a.wait_store(true).await;
    let file = a.proc.dir.join("lb.yaml");
    let yaml = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        yaml.replace("store_timeout: 5s", "store_timeout: 100ms"),
    )
    .unwrap();
    a.proc.signal("HUP");
    assert!(
        eventually(Duration::from_secs(5), || async {
            harness::metric(
                &a.metrics().await,
                "limpet_config_reloads_total",
                "result=\"success\"",
            ) == 1.0
        })
        .await,
        "{}",
        a.proc.log()
    );
    let known = harness::browser(None);
    let (_, home) = visit(&known, &a.url("/")).await;

    // Redis stops answering anyone for 4 s.
    let mut c = redis.conn().await;
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(4000)
        .arg("ALL")
        .query_async(&mut c)
        .await
        .unwrap();

    // A session id this instance has never seen: looked up, and the
    // lookup gives up at store_timeout (100 ms).
    let client = harness::client();
    for i in 0..5 {
        let t = Instant::now();
        let res = client
            .get(a.url("/"))
            .header("cookie", format!("JSESSIONID=UNKNOWN{i}.x"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let took = t.elapsed();
        assert!(
            took < Duration::from_millis(100 + 700),
            "request {i} took {took:?}"
        );
    }
    // A session the local table knows never waits for Redis.
    let t = Instant::now();
    assert_eq!(visit(&known, &a.url("/")).await.1, home);
    assert!(t.elapsed() < Duration::from_millis(500));
    let text = a.metrics().await;
    let failed = harness::metric(
        &text,
        "limpet_store_lookups_total",
        "pool=\"app\",result=\"error\"",
    ) + harness::metric(
        &text,
        "limpet_store_lookups_total",
        "pool=\"app\",result=\"skipped\"",
    );
    assert!(failed >= 5.0, "{text}");
}

#[tokio::test]
async fn persist_to_state_dir_keeps_working_beside_the_store() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    let nodes = nodes(3).await;
    let dir = harness::temp_dir("store-persist");
    let pool = learn_pool(&redis, "");
    let mut a = Instance::start_in("store-pa", &dir, &nodes, &pool).await;
    a.wait_store(true).await;
    let mut sessions = Vec::new();
    for i in 0..6 {
        let browser = harness::browser(None);
        let (_, home) = visit(&browser, &a.url(&format!("/p{i}"))).await;
        sessions.push((browser, home));
    }
    a.proc.signal("TERM");
    assert_eq!(a.proc.wait_exit(Duration::from_secs(10)).await, Some(0));
    // Redis is gone too: the restarted instance has only its state_dir.
    redis.kill();
    let a2 = Instance::start_in("store-pa2", &dir, &nodes, &pool).await;
    // In another order than they were made: a fresh round robin would not
    // put them back by chance.
    for (browser, home) in sessions.iter().rev() {
        assert_eq!(&visit(browser, &a2.url("/")).await.1, home);
    }
    assert!(!a2.store_up().await);
}

#[tokio::test]
async fn rediss_with_a_password_from_a_file() {
    if Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(std::env::var_os("LIMPET_REQUIRE_REDIS").is_none());
        return;
    }
    let dir = harness::temp_dir("store-tls");
    let ca = crate::pki::Ca::new("redis CA");
    let ca_file = ca.write(&dir, "ca.pem");
    let (cert, key) = ca.leaf(&["127.0.0.1"]).write(&dir, "redis");
    let port = harness::closed_port().port();
    let mut server = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .arg("--tls-cert-file")
        .arg(&cert)
        .arg("--tls-key-file")
        .arg(&key)
        .args([
            "--tls-auth-clients",
            "no",
            "--requirepass",
            "s3cret",
            "--save",
            "",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await
    );
    let good = dir.join("good.pw");
    let bad = dir.join("bad.pw");
    harness::write_mode(&good, "s3cret\n", 0o600);
    harness::write_mode(&bad, "wrong\n", 0o600);
    let pool = |pw: &std::path::Path| {
        format!(
            "    sticky:\n      mode: learn\n      learn:\n        store: \"rediss://127.0.0.1:{port}/0\"\n        store_password_file: \"{}\"",
            pw.display()
        )
    };
    // limpet verifies Redis's certificate against the system roots; here
    // the test CA stands in for them (SSL_CERT_FILE).
    let env = format!("SSL_CERT_FILE='{}'", ca_file.display());
    let nodes = nodes(3).await;
    let a = Instance::start_env(
        "store-tls-a",
        &harness::temp_dir("store-tls-a"),
        &nodes,
        &pool(&good),
        &env,
    )
    .await;
    let b = Instance::start_env(
        "store-tls-b",
        &harness::temp_dir("store-tls-b"),
        &nodes,
        &pool(&good),
        &env,
    )
    .await;
    a.wait_store(true).await;
    b.wait_store(true).await;
    for i in 0..6 {
        let browser = harness::browser(None);
        let (_, home) = visit(&browser, &a.url(&format!("/t{i}"))).await;
        assert_eq!(visit(&browser, &b.url("/")).await.1, home);
    }
    // A wrong password: the store stays down, said once, and limpet serves.
    let c = Instance::start_env(
        "store-tls-c",
        &harness::temp_dir("store-tls-c"),
        &nodes,
        &pool(&bad),
        &env,
    )
    .await;
    c.wait_log("unreachable").await;
    assert!(!c.store_up().await);
    let (status, _) = visit(&harness::browser(None), &c.url("/")).await;
    assert_eq!(status, 200);
    // Said once: three more failed checks (250 ms, 500 ms, 1 s apart) add
    // no line. A request's access line, logged after them, shows that
    // every line before it has reached the log.
    let errors = || async {
        harness::metric(
            &c.metrics().await,
            "limpet_store_errors_total",
            "pool=\"app\"",
        )
    };
    let first = errors().await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            errors().await >= first + 3.0
        })
        .await
    );
    assert_eq!(
        visit(&harness::browser(None), &c.url("/after-retries"))
            .await
            .0,
        200
    );
    assert!(c.proc.logged("/after-retries", 1).await, "{}", c.proc.log());
    let log = c.proc.log();
    assert_eq!(log.matches("unreachable").count(), 1, "{log}");
    assert!(!log.contains("s3cret") && !log.contains("wrong"), "{log}");
    let _ = server.kill();
    let _ = server.wait();
}

/// The sticky block of each mode, for the drill.
fn mode_pool(mode: &str, redis: Option<&Redis>) -> String {
    match mode {
        "learn" => learn_pool(redis.unwrap(), ""),
        "cookie" => "    sticky:\n      mode: cookie".to_owned(),
        other => format!("    sticky:\n      mode: {other}"),
    }
}

/// The VIP switch drill in one mode: sessions made through A; A stops and
/// a node dies during the switch; through B every session stays on its
/// node and the dead node's sessions each move to one replacement; A,
/// started again, agrees on every replacement.
async fn vip_switch(mode: &str) {
    let redis = if mode == "learn" {
        match Redis::start().await {
            Some(r) => Some(r),
            None => return,
        }
    } else {
        None
    };
    let nodes = nodes(3).await;
    let pool = mode_pool(mode, redis.as_ref());
    let a = Instance::start(&format!("vip-{mode}-a"), &nodes, &pool).await;
    let b = Instance::start(&format!("vip-{mode}-b"), &nodes, &pool).await;
    if mode == "learn" {
        a.wait_store(true).await;
        b.wait_store(true).await;
    }

    // 24 users, each from its own address (ip_hash needs that), through A.
    let mut users: Vec<(IpAddr, reqwest::Client, String)> = Vec::new();
    for i in 0..24 {
        let ip = harness::source_ip(200 + i);
        let browser = harness::browser(Some(ip));
        let (status, home) = visit(&browser, &a.url(&format!("/u{i}"))).await;
        assert_eq!(status, 200);
        assert_eq!(visit(&browser, &a.url("/")).await.1, home);
        users.push((ip, browser, home));
    }
    if mode == "ip_hash" {
        // A new client is placed alike by both instances.
        for (ip, _, home) in &users {
            let c = harness::client_from(*ip);
            assert_eq!(visit(&c, &b.url("/")).await.1, *home, "{mode}: {ip}");
        }
    }

    // The switch: A goes away, and so does the node most users are on.
    let mut count = std::collections::HashMap::new();
    for (_, _, home) in &users {
        *count.entry(home.clone()).or_insert(0) += 1;
    }
    let dying = count.iter().max_by_key(|(_, n)| **n).unwrap().0.clone();
    let mut a = a;
    a.proc.signal("TERM");
    assert!(a.proc.wait_exit(Duration::from_secs(10)).await.is_some());
    nodes
        .iter()
        .find(|n| n.route() == dying)
        .unwrap()
        .stop()
        .await;

    let mut replacement = std::collections::HashMap::new();
    for (ip, browser, home) in &users {
        let (status, now) = visit(browser, &b.url("/")).await;
        assert_eq!(status, 200, "{mode}");
        if *home == dying {
            assert_ne!(now, dying);
            replacement.insert(*ip, now.clone());
        } else {
            assert_eq!(&now, home, "{mode}: {ip} stays on its node");
        }
        // It stays there.
        assert_eq!(visit(browser, &b.url("/")).await.1, now, "{mode}");
    }
    assert!(!replacement.is_empty());

    // A comes back (the VIP returns): it agrees on every replacement.
    let a2 = Instance::start(&format!("vip-{mode}-a2"), &nodes, &pool).await;
    if mode == "learn" {
        a2.wait_store(true).await;
    }
    for (ip, browser, home) in &users {
        let expect = replacement.get(ip).unwrap_or(home);
        assert_eq!(
            &visit(browser, &a2.url("/")).await.1,
            expect,
            "{mode}: {ip} through A again"
        );
    }
    drop(redis);
}

#[tokio::test]
async fn vip_switch_drill_ip_hash() {
    vip_switch("ip_hash").await;
}

#[tokio::test]
async fn vip_switch_drill_cookie() {
    vip_switch("cookie").await;
}

#[tokio::test]
async fn vip_switch_drill_jvm_route() {
    vip_switch("jvm_route").await;
}

#[tokio::test]
async fn vip_switch_drill_learn() {
    vip_switch("learn").await;
}

#[test]
fn store_settings_are_checked_when_the_file_is_loaded() {
    let dir = harness::temp_dir("store-config");
    let parse = |learn: &str| {
        let yaml = format!(
            "listeners:\n  - name: http\n    bind: 127.0.0.1:1\n    pool: app\npools:\n  app:\n    sticky:\n      mode: learn\n      learn:\n{learn}\n    servers:\n      - {{ name: a, address: 127.0.0.1:9 }}\n"
        );
        limpet::config::parse(&yaml, std::path::Path::new("lb.yaml"))
    };
    let e = parse("        store: http://127.0.0.1:6379")
        .unwrap_err()
        .to_string();
    assert!(e.contains("redis://"), "{e}");
    let e = parse("        store: \"redis://127.0.0.1:notaport\"")
        .unwrap_err()
        .to_string();
    assert!(e.contains("lb.yaml:"), "{e}");
    let e = parse("        store_timeout: 10ms")
        .unwrap_err()
        .to_string();
    assert!(e.contains("needs `learn.store`"), "{e}");
    let e = parse("        store: redis://127.0.0.1:6379/0\n        store_timeout: 1h")
        .unwrap_err()
        .to_string();
    assert!(e.contains("store_timeout"), "{e}");

    // The password from a file, never shown.
    let pw = dir.join("redis.pw");
    harness::write_mode(&pw, "s3cret\n", 0o600);
    let config = parse(&format!(
        "        store: redis://127.0.0.1:6379/0\n        store_password_file: \"{}\"",
        pw.display()
    ))
    .unwrap();
    let store = config.pools[0].sticky.learn.store.clone().unwrap();
    let limpet::config::StoreTarget::Redis(info) = &store.target else {
        panic!("{store:?}");
    };
    assert_eq!(info.redis_settings().password(), Some("s3cret"));
    assert!(!format!("{store:?}").contains("s3cret"));
    // With Sentinel, the file's password is the master's.
    let config = parse(&format!(
        "        store: redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster/3\n        store_password_file: \"{}\"",
        pw.display()
    ))
    .unwrap();
    let store = config.pools[0].sticky.learn.store.clone().unwrap();
    let limpet::config::StoreTarget::Sentinel(s) = &store.target else {
        panic!("{store:?}");
    };
    assert_eq!(s.sentinels.len(), 2);
    assert_eq!(s.master, "mymaster");
    assert_eq!(s.settings.db(), 3);
    assert_eq!(s.settings.password(), Some("s3cret"));
    assert!(!format!("{store:?}").contains("s3cret"));
    for bad in [
        "redis+sentinel://127.0.0.1:26379",
        "redis+sentinel://127.0.0.1:26379,,127.0.0.2/m",
        "rediss+sentinel://127.0.0.1:26379/m/notadb",
    ] {
        let e = parse(&format!("        store: \"{bad}\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("lb.yaml:") && e.contains("Sentinel"), "{e}");
    }
    // A world-readable password file is refused.
    harness::write_mode(&pw, "s3cret\n", 0o644);
    let e = parse(&format!(
        "        store: redis://127.0.0.1:6379/0\n        store_password_file: \"{}\"",
        pw.display()
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("chmod 600"), "{e}");
    // A password in the URL works, with a warning, and is masked.
    let config = parse("        store: redis://:hunter2@127.0.0.1:6379/0").unwrap();
    assert!(
        config
            .warnings
            .iter()
            .any(|w| w.contains("store_password_file"))
    );
    assert!(!config.warnings.iter().any(|w| w.contains("hunter2")));
    assert!(!format!("{:?}", config.pools[0].sticky.learn.store).contains("hunter2"));
}

#[tokio::test]
async fn a_client_repeating_an_unknown_id_costs_a_handful_of_gets_not_one_per_request() {
    // A bot (or a browser after the session expired everywhere) sends the
    // same id nobody knows, request after request: the store is asked once
    // per short interval, not for each of them. Without `request_learn`
    // the id is never bound locally, so only the remembered "not there"
    // keeps the store from being asked every time.
    let Some(redis) = Redis::start().await else {
        return;
    };
    let nodes = nodes(3).await;
    let a = Instance::start(
        "store-neg",
        &nodes,
        &learn_pool(&redis, "        request_learn: false\n"),
    )
    .await;
    a.wait_store(true).await;
    let gets = calls(&redis, "get").await;
    let client = harness::client();
    for _ in 0..200 {
        let res = client
            .get(a.url("/static/x"))
            .header("Cookie", "JSESSIONID=0123456789ABCDEF0123456789ABCDEF")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    let asked = calls(&redis, "get").await - gets;
    assert!(
        asked <= 5,
        "{asked} GETs for 200 requests with one unknown id"
    );
}
