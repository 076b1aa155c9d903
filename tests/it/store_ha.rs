//! Issue 20: the shared session table through a Redis Sentinel failover,
//! and the instances' tables converging on Redis's: the TTL refresh
//! corrects a table that missed an announcement, failover rewrites are
//! compare-and-set, a flushed Redis gets every instance's sessions back,
//! and SIGTERM flushes the writes still queued. Real `redis-server`
//! processes (masters, a replica, Sentinels) on free loopback ports, limpet
//! as real processes (the harness of [`super::store`]). The tests skip when
//! redis-server is missing, unless `LIMPET_REQUIRE_REDIS` is set.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use limpet::rendezvous::{key_hash, score, server_hash};
use limpet_demo::DemoNode;

use super::store::{Instance, Redis, learn_pool, learn_pool_with_timeout, pause_writes, visit};
use crate::harness::{self, eventually, nodes};

/// Is redis-server installed? Without it a test skips, unless CI requires
/// it (`LIMPET_REQUIRE_REDIS`).
fn redis_installed() -> bool {
    let ok = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("LIMPET_REQUIRE_REDIS").is_none(),
            "redis-server is not installed and LIMPET_REQUIRE_REDIS is set"
        );
        eprintln!("redis-server is not installed: skipping");
    }
    ok
}

/// `redis-server` on `port` with `args`, its output in `dir/<name>.log`;
/// answering PING when this returns.
async fn spawn(dir: &Path, name: &str, port: u16, args: &[String]) -> Redis {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    let child = Command::new("redis-server")
        .args(args)
        .stdout(log)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Redis {
        child: Some(child),
        port,
    };
    server.wait_ready().await;
    server
}

/// A data server (master or replica) without persistence, its files in
/// `dir/<name>/`.
async fn data_server(dir: &Path, name: &str, extra: &[String]) -> Redis {
    let home = dir.join(name);
    std::fs::create_dir_all(&home).unwrap();
    let port = harness::closed_port().port();
    let mut args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "no",
        "--dir",
        &home.display().to_string(),
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend_from_slice(extra);
    spawn(dir, name, port, &args).await
}

/// `cmd` sent to the redis-server on `port` (a Sentinel too): `None` if it
/// cannot be reached or does not answer within a second.
async fn ask<T: redis::FromRedisValue>(port: u16, cmd: &redis::Cmd) -> Option<T> {
    let work = async {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
        let mut c = client.get_multiplexed_async_connection().await.ok()?;
        cmd.query_async(&mut c).await.ok()
    };
    tokio::time::timeout(Duration::from_secs(1), work)
        .await
        .ok()
        .flatten()
}

/// The `INFO <section>` text of the server on `port` (empty if it does not
/// answer).
async fn info(port: u16, section: &str) -> String {
    let mut cmd = redis::cmd("INFO");
    cmd.arg(section);
    ask(port, &cmd).await.unwrap_or_default()
}

/// A master, its replica and three Sentinels watching them as `mymaster`
/// (quorum 2, down after 1 s), each a redis-server on its own free
/// loopback port, their files in a temporary directory. All killed on
/// drop.
struct SentinelCluster {
    master: Redis,
    replica: Redis,
    sentinels: Vec<Redis>,
    dir: PathBuf,
}

impl SentinelCluster {
    /// Started and ready to fail over: the replica in sync, and every
    /// Sentinel knowing the replica and the two other Sentinels. `None`
    /// when redis-server is not installed (and CI does not require it).
    async fn start() -> Option<SentinelCluster> {
        if !redis_installed() {
            return None;
        }
        let dir = harness::temp_dir("sentinel");
        let master = data_server(&dir, "master", &[]).await;
        let of = ["--replicaof", "127.0.0.1", &master.port.to_string()].map(str::to_owned);
        let replica = data_server(&dir, "replica", &of).await;
        let mut sentinels = Vec::new();
        for i in 0..3 {
            let port = harness::closed_port().port();
            let conf = dir.join(format!("sentinel{i}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\nprotected-mode no\ndir \"{}\"\n\
                     sentinel monitor mymaster 127.0.0.1 {} 2\n\
                     sentinel down-after-milliseconds mymaster 1000\n\
                     sentinel failover-timeout mymaster 3000\n\
                     sentinel parallel-syncs mymaster 1\n",
                    dir.display(),
                    master.port
                ),
            )
            .unwrap();
            let args = [conf.display().to_string(), "--sentinel".to_owned()];
            sentinels.push(spawn(&dir, &format!("sentinel{i}"), port, &args).await);
        }
        let cluster = SentinelCluster {
            master,
            replica,
            sentinels,
            dir,
        };
        let port = cluster.replica.port;
        assert!(
            eventually(Duration::from_secs(10), || async move {
                info(port, "replication")
                    .await
                    .contains("master_link_status:up")
            })
            .await,
            "the replica did not sync: {}",
            cluster.logs()
        );
        for s in &cluster.sentinels {
            let port = s.port;
            assert!(
                eventually(Duration::from_secs(15), || async move {
                    let mut cmd = redis::cmd("SENTINEL");
                    cmd.arg("MASTER").arg("mymaster");
                    let fields: Vec<String> = ask(port, &cmd).await.unwrap_or_default();
                    let field = |name: &str| {
                        fields
                            .chunks(2)
                            .find(|kv| kv[0] == name)
                            .and_then(|kv| kv.get(1)?.parse::<u32>().ok())
                    };
                    field("num-slaves") == Some(1) && field("num-other-sentinels") == Some(2)
                })
                .await,
                "Sentinel on {port} does not see the replica and the other Sentinels: {}",
                cluster.logs()
            );
        }
        Some(cluster)
    }

    /// The store URL of the master named `name`, through the Sentinels.
    fn url(&self, name: &str) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis+sentinel://{}/{name}", hosts.join(","))
    }

    /// The master's port as the Sentinel on `port` names it.
    async fn master_port_from(port: u16) -> Option<u16> {
        let mut cmd = redis::cmd("SENTINEL");
        cmd.arg("get-master-addr-by-name").arg("mymaster");
        let addr: Vec<String> = ask(port, &cmd).await?;
        addr.get(1)?.parse().ok()
    }

    /// The master's port as the first Sentinel that answers names it.
    async fn master_port(&self) -> Option<u16> {
        for s in &self.sentinels {
            if let Some(port) = SentinelCluster::master_port_from(s.port).await {
                return Some(port);
            }
        }
        None
    }

    /// `kill -9` of the master: every connection to it drops at once.
    fn kill_master(&mut self) {
        self.master.kill();
    }

    /// Has the replica been promoted: every Sentinel names it as the
    /// master, and it says it is one?
    async fn promoted(&self) -> bool {
        for s in &self.sentinels {
            if SentinelCluster::master_port_from(s.port).await != Some(self.replica.port) {
                return false;
            }
        }
        info(self.replica.port, "replication")
            .await
            .contains("role:master")
    }

    /// `n` new sessions learned through `a` and routed by `b` (each a
    /// browser and its node), and on the replica too (replication is
    /// asynchronous) before the test goes on.
    async fn learned_through(
        &self,
        a: &Instance,
        b: &Instance,
        n: usize,
    ) -> Vec<(reqwest::Client, String)> {
        let mut sessions = Vec::new();
        for i in 0..n {
            let browser = harness::browser(None);
            let (status, home) = visit(&browser, &a.url(&format!("/s{i}"))).await;
            assert_eq!(status, 200);
            assert_eq!(
                visit(&browser, &b.url("/")).await,
                (200, home.clone()),
                "session {i} through B"
            );
            sessions.push((browser, home));
        }
        assert!(
            eventually(Duration::from_secs(10), || async {
                self.replica.sessions().await.len() == n
            })
            .await,
            "{:?}",
            self.replica.sessions().await
        );
        sessions
    }

    /// What the servers logged, for a failure message.
    fn logs(&self) -> String {
        let mut out = String::new();
        for name in ["master", "replica", "sentinel0", "sentinel1", "sentinel2"] {
            let text =
                std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
            out.push_str(&format!("--- {name}\n{text}"));
        }
        out
    }
}

impl Drop for SentinelCluster {
    fn drop(&mut self) {
        self.master.kill();
        self.replica.kill();
        for s in &mut self.sentinels {
            s.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TCP relay to the Redis on port `to` whose subscriber connections can
/// be made deaf: from [`Relay::deafen`] on, a connection that had sent
/// `SUBSCRIBE` carries nothing more to its client but stays open, as a
/// subscriber connection gone half open. Commands, and connections made
/// later, go through. The instance behind it misses the announcements made
/// meanwhile, deterministically (a killed subscriber reconnects within
/// milliseconds, and may or may not hear the next one).
struct Relay {
    addr: SocketAddr,
    epoch: Arc<AtomicU64>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(to: u16) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let epoch = Arc::new(AtomicU64::new(0));
        let current = Arc::clone(&epoch);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await else {
                    continue;
                };
                Relay::carry(client, server, Arc::clone(&current));
            }
        });
        Relay {
            addr,
            epoch,
            accept,
        }
    }

    /// Carries one connection both ways.
    fn carry(client: tokio::net::TcpStream, server: tokio::net::TcpStream, epoch: Arc<AtomicU64>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let born = epoch.load(Ordering::SeqCst);
        let subscriber = Arc::new(AtomicBool::new(false));
        let (mut cr, mut cw) = client.into_split();
        let (mut sr, mut sw) = server.into_split();
        let seen = Arc::clone(&subscriber);
        tokio::spawn(async move {
            let mut buf = [0u8; 16384];
            // Bounded by the connection: ends when either side closes.
            while let Ok(n @ 1..) = cr.read(&mut buf).await {
                if buf[..n]
                    .windows(9)
                    .any(|w| w.eq_ignore_ascii_case(b"subscribe"))
                {
                    seen.store(true, Ordering::SeqCst);
                }
                if sw.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        });
        tokio::spawn(async move {
            let mut buf = [0u8; 16384];
            while let Ok(n @ 1..) = sr.read(&mut buf).await {
                if subscriber.load(Ordering::SeqCst) && epoch.load(Ordering::SeqCst) != born {
                    // Deaf: hold both sockets, carry nothing.
                    std::future::pending::<()>().await;
                }
                if cw.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        });
    }

    fn url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }

    /// Every subscriber connection open now hears nothing from now on.
    fn deafen(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// A learn pool sharing through the store at `url`.
fn learn_at(url: &str, store_timeout: &str, extra: &str) -> String {
    format!(
        "    sticky:\n      mode: learn\n      learn:\n        store: \"{url}\"\n        store_timeout: {store_timeout}\n{extra}"
    )
}

/// A learn pool on the session cookie `a` (set by the demo nodes on
/// `/set-cookies`, never changed: it survives a failover, so only limpet's
/// rewrite moves it) with `idle_timeout: 10s`: a refresh period of 1 s.
fn convergent_pool(redis: &Redis) -> String {
    learn_pool(redis, "        cookie: a\n        idle_timeout: 10s")
}

/// The Redis key of session id `id` in pool `app`: the table key, a
/// fixed-seed hash of the id's first 64 characters (the default `max_len`).
fn key_of(id: &str) -> String {
    let end = id.char_indices().nth(64).map_or(id.len(), |(i, _)| i);
    format!("limpet:app:{:016x}", key_hash(&id.as_bytes()[..end]))
}

/// The `JSESSIONID` that `jar` holds for `url`.
fn session_id(jar: &reqwest::cookie::Jar, url: &str) -> String {
    let pair = harness::jar_cookie(jar, url, "JSESSIONID").expect("no JSESSIONID");
    pair.trim_start_matches("JSESSIONID=").to_owned()
}

/// The value of `key` on `redis` (the server a session is on).
async fn value(redis: &Redis, key: &str) -> Option<String> {
    let mut cmd = redis::cmd("GET");
    cmd.arg(key);
    ask::<Option<String>>(redis.port, &cmd).await.flatten()
}

/// `limpet_store_lookups_total{pool="app",result=<result>}` of `lb`.
async fn lookups(lb: &Instance, result: &str) -> f64 {
    let labels = format!("pool=\"app\",result=\"{result}\"");
    harness::metric(&lb.metrics().await, "limpet_store_lookups_total", &labels)
}

/// `limpet_learned_sessions{pool="app"}` of `lb`.
async fn learned(lb: &Instance) -> f64 {
    harness::metric(
        &lb.metrics().await,
        "limpet_learned_sessions",
        "pool=\"app\"",
    )
}

/// GET `url`: the server that answered. Fails the test, saying `what`, on
/// an error, a status other than 200, or an answer slower than `budget`.
async fn visit_within(
    browser: &reqwest::Client,
    url: &str,
    budget: Duration,
    what: &str,
) -> String {
    let t = Instant::now();
    let res = browser
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{what}: {e:?}"));
    let status = res.status().as_u16();
    let v: serde_json::Value = res.json().await.unwrap_or_default();
    let took = t.elapsed();
    assert_eq!(status, 200, "{what}: {v}");
    assert!(took < budget, "{what} took {took:?}");
    harness::server_of(&v)
}

/// Sets server `server` of pool `app` of `lb` to `state` through the admin
/// API (no `token_file`: loopback needs no token).
async fn set_state(lb: &Instance, server: &str, state: &str) {
    let res = harness::client()
        .put(format!(
            "http://{}/api/pools/app/servers/{server}/state",
            lb.admin
        ))
        .body(format!("{{\"state\":\"{state}\"}}"))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    assert_eq!(status, 200, "{}", res.text().await.unwrap());
}

/// Where pool `app` moves session id `id` when none of `gone` can take it
/// and every other of `nodes` takes placements: the rendezvous winner
/// (all weights 1), as every instance computes it.
fn replacement(id: &str, nodes: &[DemoNode], gone: &[&str]) -> String {
    let key = key_hash(id.as_bytes());
    nodes
        .iter()
        .map(DemoNode::route)
        .filter(|r| !gone.contains(r))
        .max_by(|x, y| score(key, server_hash(x), 1).total_cmp(&score(key, server_hash(y), 1)))
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn the_harness_sentinels_promote_the_replica_when_the_master_is_killed() {
    let Some(mut cluster) = SentinelCluster::start().await else {
        return;
    };
    assert_eq!(cluster.master_port().await, Some(cluster.master.port));
    cluster.kill_master();
    assert!(
        eventually(Duration::from_secs(15), || cluster.promoted()).await,
        "no promotion: {}",
        cluster.logs()
    );
    assert_eq!(cluster.master_port().await, Some(cluster.replica.port));
}

#[tokio::test]
async fn sessions_survive_a_sentinel_failover_and_new_ones_reach_the_promoted_master() {
    let Some(mut cluster) = SentinelCluster::start().await else {
        return;
    };
    let nodes = nodes(3).await;
    let pool = learn_at(&cluster.url("mymaster"), "200ms", "");
    let (a, b) = Instance::pair("ha-sentinel", &nodes, &pool).await;

    let sessions = cluster.learned_through(&a, &b, 6).await;

    // Traffic through both while the master dies and the Sentinels promote
    // the replica: every request answered by its session's node, none
    // waiting longer than store_timeout (200 ms) and a margin.
    let budget = Duration::from_millis(200 + 1000);
    let started = Instant::now();
    let mut promoted = false;
    // Since when both have said the store is up after the promotion: they
    // must go on saying it for 2 s (two health checks), so that neither
    // is still reading a check made before the master died.
    let mut settled: Option<Instant> = None;
    // A session learned through A while the master is dead: its write is
    // queued, and must reach the promoted master.
    let mut during = None;
    for round in 0..1000 {
        if round == 1 {
            cluster.kill_master();
        }
        if round == 2 {
            let (browser, jar) = harness::browser_with_jar(None);
            let url = a.url("/during");
            let home =
                visit_within(&browser, &url, budget, "a new session during the failover").await;
            during = Some((browser, key_of(&session_id(&jar, &url)), home));
        }
        for (i, (browser, home)) in sessions.iter().enumerate() {
            for (lb, name) in [(&a, "A"), (&b, "B")] {
                let what = format!("round {round}, session {i} through {name}");
                let got = visit_within(browser, &lb.url("/"), budget, &what).await;
                assert_eq!(&got, home, "{what}");
            }
        }
        if round >= 1 {
            promoted = promoted || cluster.promoted().await;
            if promoted && a.store_up().await && b.store_up().await {
                settled.get_or_insert_with(Instant::now);
            } else {
                settled = None;
            }
        }
        if settled.is_some_and(|t| t.elapsed() > Duration::from_secs(2))
            || started.elapsed() > Duration::from_secs(25)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(promoted, "no promotion: {}", cluster.logs());
    assert!(
        settled.is_some_and(|t| t.elapsed() > Duration::from_secs(2)),
        "the store did not come back on both: A {}, B {}\n{}\n{}",
        a.store_up().await,
        b.store_up().await,
        a.proc.log(),
        b.proc.log()
    );

    for (browser, home) in &sessions {
        assert_eq!(visit(browser, &b.url("/")).await, (200, home.clone()));
    }
    // The queued write of the session learned during the failover reached
    // the promoted master, and B routes that session too.
    let (browser, key, home) = during.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            value(&cluster.replica, &key).await.as_deref() == Some(home.as_str())
        })
        .await,
        "the session learned during the failover ({key} on {home}) is not on the promoted master: {:?}\n{}",
        cluster.replica.sessions().await,
        a.proc.log()
    );
    assert_eq!(visit(&browser, &b.url("/")).await, (200, home));
    // The table survived: an instance started now, which knows nothing,
    // finds every session learned before the failover on the promoted
    // master.
    let c = Instance::start("ha-sentinel-c", &nodes, &pool).await;
    c.wait_store(true).await;
    for (i, (browser, home)) in sessions.iter().enumerate() {
        assert_eq!(
            visit(browser, &c.url("/")).await,
            (200, home.clone()),
            "session {i} through C"
        );
    }
    assert_eq!(lookups(&c, "hit").await, 6.0);
    // Sessions learned through A now are on the promoted master, and B
    // (which never heard of them otherwise) routes them.
    for i in 0..4 {
        let (browser, jar) = harness::browser_with_jar(None);
        let url = a.url(&format!("/after{i}"));
        let (status, home) = visit(&browser, &url).await;
        assert_eq!(status, 200);
        let key = key_of(&session_id(&jar, &url));
        assert!(
            eventually(Duration::from_secs(5), || async {
                value(&cluster.replica, &key).await.as_deref() == Some(home.as_str())
            })
            .await,
            "new session {i} ({key} on {home}) is not on the promoted master: {:?}\n{}",
            cluster.replica.sessions().await,
            a.proc.log()
        );
        for n in 0..3 {
            assert_eq!(
                visit(&browser, &b.url("/")).await,
                (200, home.clone()),
                "new session {i}, visit {n} through B"
            );
        }
    }
}

/// A master that Sentinel demotes without dying (`SENTINEL FAILOVER`: the
/// replica is promoted, and the old master, still up, takes writes until
/// Sentinel makes it a replica seconds later, which drops them) is left
/// for the promoted one: each instance asks the Sentinels again (every
/// 5 s) or sees by its health check (`ROLE`) that it holds a replica, and
/// follows. No session is lost: those learned meanwhile, written only to
/// the old master, are published again (`SET … NX`) to the promoted one.
#[tokio::test]
async fn a_master_sentinel_demotes_alive_is_left_and_sessions_learned_meanwhile_kept() {
    let Some(cluster) = SentinelCluster::start().await else {
        return;
    };
    let nodes = nodes(3).await;
    let pool = learn_at(&cluster.url("mymaster"), "200ms", "");
    let (a, b) = Instance::pair("ha-demoted", &nodes, &pool).await;
    a.wait_store(true).await;
    b.wait_store(true).await;

    let sessions = cluster.learned_through(&a, &b, 4).await;

    let mut failover = redis::cmd("SENTINEL");
    failover.arg("FAILOVER").arg("mymaster");
    let said: Option<String> = ask(cluster.sentinels[0].port, &failover).await;
    assert_eq!(said.as_deref(), Some("OK"), "{}", cluster.logs());
    // New sessions through A until it follows the promoted master (some
    // of them written to the old master after the promotion), while the
    // old ones are answered by their nodes through both.
    let followed = "Sentinel names a new master";
    let mut during = Vec::new();
    let started = Instant::now();
    // Bounded: A asks the Sentinels again within 5 s.
    while !a.proc.log().contains(followed) && started.elapsed() < Duration::from_secs(15) {
        let (browser, jar) = harness::browser_with_jar(None);
        let url = a.url(&format!("/during{}", during.len()));
        let (status, home) = visit(&browser, &url).await;
        assert_eq!(status, 200);
        during.push((browser, key_of(&session_id(&jar, &url)), home));
        for (i, (browser, home)) in sessions.iter().enumerate() {
            assert_eq!(
                visit(browser, &b.url("/")).await,
                (200, home.clone()),
                "session {i} through B during the failover"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let master = cluster.master.port;
    assert!(
        eventually(Duration::from_secs(20), || async {
            cluster.promoted().await && info(master, "replication").await.contains("role:slave")
        })
        .await,
        "the old master was not demoted: {}",
        cluster.logs()
    );
    for (lb, name) in [(&a, "A"), (&b, "B")] {
        assert!(
            eventually(Duration::from_secs(10), || async {
                lb.proc.log().contains(followed) && lb.store_up().await
            })
            .await,
            "{name} did not follow the promoted master:\n{}",
            lb.proc.log()
        );
    }

    // Every session learned during the failover is on the promoted master
    // (the old one dropped what it took after the promotion), and B routes
    // it.
    for (i, (browser, key, home)) in during.iter().enumerate() {
        assert!(
            eventually(Duration::from_secs(10), || async {
                value(&cluster.replica, key).await.as_deref() == Some(home.as_str())
            })
            .await,
            "session {i} of {} learned during the failover ({key} on {home}) is not on the promoted master: {:?}\n{}",
            during.len(),
            cluster.replica.sessions().await,
            a.proc.log()
        );
        assert_eq!(visit(browser, &b.url("/")).await, (200, home.clone()));
    }
    for (i, (browser, home)) in sessions.iter().enumerate() {
        assert_eq!(
            visit(browser, &a.url("/")).await,
            (200, home.clone()),
            "session {i} through A after the failover"
        );
    }
    assert_eq!(
        cluster.replica.sessions().await.len(),
        sessions.len() + during.len()
    );
}

#[tokio::test]
async fn a_master_name_no_sentinel_knows_leaves_the_store_down_and_requests_served() {
    let Some(cluster) = SentinelCluster::start().await else {
        return;
    };
    let nodes = nodes(2).await;
    let pool = learn_at(&cluster.url("nosuchmaster"), "200ms", "");
    let a = Instance::start("ha-unknown", &nodes, &pool).await;
    // Several health checks (one a second, or faster with backoff) fail.
    let errors = || async {
        harness::metric(
            &a.metrics().await,
            "limpet_store_errors_total",
            "pool=\"app\"",
        )
    };
    assert!(
        eventually(Duration::from_secs(10), || async { errors().await >= 3.0 }).await,
        "{}",
        a.proc.log()
    );
    assert!(!a.store_up().await);
    // Served from the local table.
    let browser = harness::browser(None);
    let (status, home) = visit(&browser, &a.url("/x")).await;
    assert_eq!(status, 200);
    for _ in 0..3 {
        assert_eq!(visit(&browser, &a.url("/after")).await, (200, home.clone()));
    }
    // Said once: the access line of the last request, logged after the
    // checks, shows every line before it has reached the log.
    assert!(a.proc.logged("/after", 3).await, "{}", a.proc.log());
    let log = a.proc.log();
    let said = log
        .lines()
        .filter(|l| (l.contains("WARN") || l.contains("ERROR")) && l.contains("nosuchmaster"))
        .count();
    assert_eq!(said, 1, "{log}");
}

#[tokio::test]
async fn after_flushall_every_instance_publishes_its_sessions_again() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let nodes = nodes(3).await;
    // A reaches Redis through a relay that can leave its subscriber deaf.
    let relay = Relay::start(redis.port).await;
    let pool = learn_pool(&redis, "");
    let a = Instance::start(
        "ha-flush-a",
        &nodes,
        &pool.replace(&redis.url(), &relay.url()),
    )
    .await;
    a.wait_store(true).await;
    let mut sessions = Vec::new();
    for i in 0..4 {
        let browser = harness::browser(None);
        let (_, home) = visit(&browser, &a.url(&format!("/fa{i}"))).await;
        sessions.push((browser, home));
    }
    // B starts after A's sessions were learned, and A does not hear B's:
    // each instance alone knows its own four.
    let b = Instance::start("ha-flush-b", &nodes, &pool).await;
    b.wait_store(true).await;
    relay.deafen();
    for i in 0..4 {
        let browser = harness::browser(None);
        let (_, home) = visit(&browser, &b.url(&format!("/fb{i}"))).await;
        sessions.push((browser, home));
    }
    assert_eq!(redis.sessions().await.len(), 8);
    assert_eq!(learned(&a).await, 4.0, "A knows only its own sessions");
    assert_eq!(learned(&b).await, 4.0, "B knows only its own sessions");

    let mut c = redis.conn().await;
    let _: () = redis::cmd("FLUSHALL").query_async(&mut c).await.unwrap();
    // Both publish theirs again, not only the first to notice.
    assert!(
        eventually(Duration::from_secs(8), || async {
            redis.sessions().await.len() == 8
        })
        .await,
        "{:?}\n{}\n{}",
        redis.sessions().await,
        a.proc.log(),
        b.proc.log()
    );
    let marker = value(&redis, "limpet:app:@present").await;
    assert!(marker.is_some(), "no marker after the republish");

    // A third instance, which knows nothing, routes every session.
    let fresh = Instance::start("ha-flush-c", &nodes, &pool).await;
    fresh.wait_store(true).await;
    for (i, (browser, home)) in sessions.iter().enumerate() {
        assert_eq!(
            visit(browser, &fresh.url("/")).await,
            (200, home.clone()),
            "session {i} through C"
        );
    }
    assert_eq!(lookups(&fresh, "hit").await, 8.0);
}

#[tokio::test]
async fn a_session_learned_right_before_sigterm_reaches_redis_within_shutdown_grace() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let nodes = nodes(3).await;
    // A short store_timeout: the learning request does not wait for Redis.
    let pool = learn_pool_with_timeout(&redis, "100ms", "");
    let mut a = Instance::start_top(
        "ha-term-a",
        &harness::temp_dir("ha-term-a"),
        &nodes,
        &pool,
        "timeouts:\n  shutdown_grace: 10s\n",
        "",
    )
    .await;
    a.wait_store(true).await;
    pause_writes(&redis, 2000).await;
    let (browser, jar) = harness::browser_with_jar(None);
    let url = a.url("/term");
    let (status, home) = visit(&browser, &url).await;
    assert_eq!(status, 200);
    let key = key_of(&session_id(&jar, &url));
    // Still queued (reads go on while writes are paused).
    assert!(redis.sessions().await.is_empty());
    a.proc.signal("TERM");
    assert_eq!(
        a.proc.wait_exit(Duration::from_secs(15)).await,
        Some(0),
        "{}",
        a.proc.log()
    );
    assert_eq!(
        value(&redis, &key).await,
        Some(home.clone()),
        "the queued write was not flushed before the exit: {}",
        a.proc.log()
    );
    // A fresh instance finds it.
    let fresh = Instance::start("ha-term-b", &nodes, &pool).await;
    fresh.wait_store(true).await;
    assert_eq!(visit(&browser, &fresh.url("/")).await, (200, home));
    assert_eq!(lookups(&fresh, "hit").await, 1.0);
}

#[tokio::test]
async fn an_instance_that_missed_a_move_follows_redis_within_a_refresh_period() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let nodes = nodes(3).await;
    let pool = convergent_pool(&redis);
    let a = Instance::start("ha-refresh-a", &nodes, &pool).await;
    // B reaches Redis through a relay that can leave its subscriber deaf.
    let relay = Relay::start(redis.port).await;
    let b = Instance::start(
        "ha-refresh-b",
        &nodes,
        &pool.replace(&redis.url(), &relay.url()),
    )
    .await;
    a.wait_store(true).await;
    b.wait_store(true).await;
    let browser = harness::browser(None);
    let (_, home) = visit(&browser, &a.url("/set-cookies")).await;
    assert_eq!(visit(&browser, &b.url("/")).await.1, home, "B knows it");

    // B stops hearing announcements; A moves the session; the node comes
    // back before B sees anything, so B's own requests fail nowhere.
    relay.deafen();
    let corrected = lookups(&b, "corrected").await;
    let node = nodes.iter().find(|n| n.route() == home).unwrap();
    node.stop().await;
    let (status, moved) = visit(&browser, &a.url("/")).await;
    assert_eq!(status, 200);
    assert_ne!(moved, home);
    node.restart().await.unwrap();
    assert_eq!(value(&redis, &key_of("1")).await, Some(moved.clone()));

    // B's table still says `home`; the TTL refresh (once a second with
    // idle_timeout 10s) brings Redis's answer within a request or two.
    let seen = std::cell::RefCell::new(Vec::new());
    let followed = eventually(Duration::from_secs(6), || async {
        let (status, now) = visit(&browser, &b.url("/")).await;
        assert_eq!(status, 200);
        seen.borrow_mut().push(now.clone());
        now == moved
    })
    .await;
    assert!(
        followed,
        "B never followed the move to {moved}: {:?}\n{}",
        seen.borrow(),
        b.proc.log()
    );
    assert!(
        lookups(&b, "corrected").await > corrected,
        "B followed, but not through a correction: {:?}",
        seen.borrow()
    );
    for _ in 0..3 {
        assert_eq!(visit(&browser, &b.url("/")).await.1, moved);
        assert_eq!(visit(&browser, &a.url("/")).await.1, moved);
    }
}

#[tokio::test]
async fn two_instances_moving_one_session_at_once_end_on_one_server() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let nodes = nodes(3).await;
    // A refresh period of a minute (idle_timeout 1h): what makes A and B
    // agree within seconds is the compare-and-set, not a TTL refresh.
    let pool = learn_pool(&redis, "        cookie: a\n        idle_timeout: 1h");
    let (a, b) = Instance::pair("ha-race", &nodes, &pool).await;
    let browser = harness::browser(None);
    let (_, home) = visit(&browser, &a.url("/set-cookies")).await;
    assert_eq!(visit(&browser, &b.url("/")).await.1, home, "B knows it");

    // B would move the session (id `1`) to `theirs`; A has `theirs` in
    // drain (no new placements, its sessions stay), so A moves it to the
    // third node.
    let theirs = replacement("1", &nodes, &[&home]);
    let ours = replacement("1", &nodes, &[&home, &theirs]);
    set_state(&a, &theirs, "drain").await;

    let counted = lookups(&a, "corrected").await + lookups(&b, "corrected").await;
    nodes
        .iter()
        .find(|n| n.route() == home)
        .unwrap()
        .stop()
        .await;
    let (url_a, url_b) = (a.url("/"), b.url("/"));
    let (through_a, through_b) = tokio::join!(visit(&browser, &url_a), visit(&browser, &url_b));
    assert_eq!(through_a.0, 200);
    assert_eq!(through_b.0, 200);
    assert!(
        [&ours, &theirs].contains(&&through_a.1) && [&ours, &theirs].contains(&&through_b.1),
        "{through_a:?} {through_b:?}: expected {ours} or {theirs}"
    );

    // Whoever won, both follow Redis, which names the winner.
    let key = key_of("1");
    let last = std::cell::RefCell::new((String::new(), String::new(), None));
    let agreed = eventually(Duration::from_secs(6), || async {
        let on_a = visit(&browser, &a.url("/")).await.1;
        let on_b = visit(&browser, &b.url("/")).await.1;
        let stored = value(&redis, &key).await;
        let same = on_a == on_b && stored.as_deref() == Some(on_a.as_str());
        *last.borrow_mut() = (on_a, on_b, stored);
        same
    })
    .await;
    assert!(
        agreed,
        "A, B and Redis: {:?} (first answers {through_a:?} {through_b:?})\n{}\n{}",
        last.borrow(),
        a.proc.log(),
        b.proc.log()
    );
    let winner = last.borrow().0.clone();
    assert!(winner == ours || winner == theirs, "{winner}");
    // The loser follows either through its compare-and-set (counted as
    // `corrected`) or, if the winner's announcement reached it first,
    // through that; never by announcing its own server over the winner's.
    let _ = counted;
    for _ in 0..3 {
        assert_eq!(visit(&browser, &a.url("/")).await.1, winner);
        assert_eq!(visit(&browser, &b.url("/")).await.1, winner);
    }
    assert_eq!(value(&redis, &key).await, Some(winner));
}

#[test]
fn sentinel_store_urls_are_checked_when_the_file_is_loaded() {
    let parse = |store: &str| {
        let yaml = format!(
            "listeners:\n  - name: http\n    bind: 127.0.0.1:1\n    pool: app\npools:\n  app:\n    sticky:\n      mode: learn\n      learn:\n        store: \"{store}\"\n    servers:\n      - {{ name: a, address: 127.0.0.1:9 }}\n"
        );
        limpet::config::parse(&yaml, Path::new("lb.yaml"))
    };
    for ok in [
        "redis+sentinel://127.0.0.1:26379/mymaster",
        "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380,127.0.0.1:26381/mymaster",
        "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster/3",
        "rediss+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster",
    ] {
        if let Err(e) = parse(ok) {
            panic!("{ok}: {e}");
        }
    }
    // Without a master name there is nothing to ask the Sentinels for.
    for bad in [
        "redis+sentinel://127.0.0.1:26379",
        "redis+sentinel://127.0.0.1:26379/",
        "redis+sentinel://127.0.0.1:notaport/mymaster",
    ] {
        let e = parse(bad).expect_err(bad).to_string();
        assert!(e.contains("lb.yaml:"), "{bad}: {e}");
    }
}

#[tokio::test]
async fn a_value_in_redis_that_is_not_a_server_name_never_takes_the_store_down() {
    // Something else wrote bytes that are not text under a session's key.
    // An instance restarted with that session in its saved table checks it
    // against Redis: the foreign value is no answer, not a failure.
    let Some(redis) = Redis::start().await else {
        return;
    };
    let nodes = nodes(2).await;
    let pool = learn_pool(&redis, "        cookie: a");
    let dir = harness::temp_dir("ha-foreign");
    let mut a = Instance::start_in("ha-foreign", &dir, &nodes, &pool).await;
    a.wait_store(true).await;
    let browser = harness::browser(None);
    let (_, home) = visit(&browser, &a.url("/set-cookies")).await;
    a.proc.signal("TERM");
    assert_eq!(a.proc.wait_exit(Duration::from_secs(10)).await, Some(0));

    let mut c = redis.conn().await;
    let _: () = redis::cmd("SET")
        .arg(key_of("1"))
        .arg(&[0xff_u8, 0xfe, 0x00][..])
        .query_async(&mut c)
        .await
        .unwrap();
    let a2 = Instance::start_in("ha-foreign2", &dir, &nodes, &pool).await;
    a2.wait_store(true).await;
    assert_eq!(visit(&browser, &a2.url("/")).await.1, home);
}

/// `REPLICAOF` on the Redis on `port`: a replica of the one on `of`, or a
/// master (`None`).
async fn replica_of(port: u16, of: Option<u16>) {
    let mut cmd = redis::cmd("REPLICAOF");
    match of {
        Some(of) => cmd.arg("127.0.0.1").arg(of),
        None => cmd.arg("NO").arg("ONE"),
    };
    assert_eq!(ask::<String>(port, &cmd).await.as_deref(), Some("OK"));
}

/// One Sentinel watching the Redis on `master` as `mymaster` (quorum 1),
/// `extra` added to its configuration; naming it when this returns.
async fn lone_sentinel(dir: &Path, master: u16, extra: &str) -> Redis {
    let port = harness::closed_port().port();
    let conf = dir.join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbind 127.0.0.1\nprotected-mode no\ndir \"{}\"\n{extra}\n\
             sentinel monitor mymaster 127.0.0.1 {master} 1\n",
            dir.display(),
        ),
    )
    .unwrap();
    let args = [conf.display().to_string(), "--sentinel".to_owned()];
    let sentinel = spawn(dir, "sentinel", port, &args).await;
    assert_eq!(SentinelCluster::master_port_from(port).await, Some(master));
    sentinel
}

/// `rediss+sentinel://`: TLS to the Sentinel and to the master it names,
/// both verified against the roots limpet trusts (here the test CA, through
/// `SSL_CERT_FILE`); two instances share their sessions through it. Each
/// server also has a plain port, for the test's own commands.
#[tokio::test]
async fn rediss_sentinel_speaks_tls_to_the_sentinel_and_to_the_master_it_names() {
    if !redis_installed() {
        return;
    }
    let dir = harness::temp_dir("sentinel-tls");
    let ca = crate::pki::Ca::new("redis CA");
    let ca_file = ca.write(&dir, "ca.pem");
    let (cert, key) = ca.leaf(&["127.0.0.1"]).write(&dir, "redis");
    let tls = |port: u16| -> Vec<String> {
        vec![
            format!("tls-port {port}"),
            format!("tls-cert-file \"{}\"", cert.display()),
            format!("tls-key-file \"{}\"", key.display()),
            format!("tls-ca-cert-file \"{}\"", ca_file.display()),
            "tls-auth-clients no".to_owned(),
            "tls-replication yes".to_owned(),
        ]
    };
    let as_args = |lines: Vec<String>| -> Vec<String> {
        lines
            .iter()
            .flat_map(|l| {
                let (k, v) = l.split_once(' ').unwrap_or((l, ""));
                [format!("--{k}"), v.trim_matches('"').to_owned()]
            })
            .collect()
    };
    let master_tls = harness::closed_port().port();
    let mut master = data_server(&dir, "master", &as_args(tls(master_tls))).await;
    let sentinel_tls = harness::closed_port().port();
    let mut sentinel = lone_sentinel(&dir, master_tls, &tls(sentinel_tls).join("\n")).await;

    let url = format!("rediss+sentinel://127.0.0.1:{sentinel_tls}/mymaster");
    let pool = learn_at(&url, "200ms", "");
    let env = format!("SSL_CERT_FILE='{}'", ca_file.display());
    let nodes = nodes(3).await;
    let start = |name: &'static str| {
        let (nodes, pool, env) = (&nodes, &pool, &env);
        async move { Instance::start_env(name, &harness::temp_dir(name), nodes, pool, env).await }
    };
    let a = start("sentinel-tls-a").await;
    let b = start("sentinel-tls-b").await;
    a.wait_store(true).await;
    b.wait_store(true).await;
    assert!(
        a.proc.log().contains(&format!("at=127.0.0.1:{master_tls}")),
        "{}",
        a.proc.log()
    );
    for i in 0..4 {
        let browser = harness::browser(None);
        let (status, home) = visit(&browser, &a.url(&format!("/t{i}"))).await;
        assert_eq!(status, 200);
        assert_eq!(visit(&browser, &b.url("/")).await, (200, home));
    }
    assert_eq!(master.sessions().await.len(), 4);

    // Without the CA the Sentinel is not trusted: the store stays down,
    // said with the reason, and requests are served.
    let c = Instance::start("sentinel-tls-c", &nodes, &pool).await;
    c.wait_log("invalid peer certificate").await;
    assert!(!c.store_up().await);
    assert_eq!(visit(&harness::browser(None), &c.url("/")).await.0, 200);
    master.kill();
    sentinel.kill();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The server Sentinel names is a replica (here a Sentinel set up to watch
/// a replica as its master, as a botched reconfiguration would leave it):
/// it is not taken as the master (its `ROLE` says otherwise), the store
/// stays down, requests are served from the local table, and once the
/// server is a master the store comes back by itself and gets the session
/// learned meanwhile.
#[tokio::test]
async fn a_sentinel_that_names_a_replica_keeps_the_store_down_until_it_is_a_master() {
    if !redis_installed() {
        return;
    }
    let dir = harness::temp_dir("sentinel-role");
    let upstream = data_server(&dir, "upstream", &[]).await;
    let of = ["--replicaof", "127.0.0.1", &upstream.port.to_string()].map(str::to_owned);
    let mut named = data_server(&dir, "named", &of).await;
    let mut sentinel = lone_sentinel(&dir, named.port, "").await;
    let port = sentinel.port;

    let nodes = nodes(2).await;
    let pool = learn_at(
        &format!("redis+sentinel://127.0.0.1:{port}/mymaster"),
        "200ms",
        "",
    );
    let a = Instance::start("sentinel-role", &nodes, &pool).await;
    a.wait_log("unreachable").await;
    assert!(!a.store_up().await);
    let browser = harness::browser(None);
    let (status, home) = visit(&browser, &a.url("/")).await;
    assert_eq!(status, 200);
    assert_eq!(visit(&browser, &a.url("/")).await, (200, home.clone()));

    replica_of(named.port, None).await;
    a.wait_store(true).await;
    // The session learned while the store was down reaches it (the table
    // is published once the store is up).
    assert!(
        eventually(Duration::from_secs(5), || async {
            named.sessions().await.len() == 1
        })
        .await,
        "{:?}\n{}",
        named.sessions().await,
        a.proc.log()
    );
    assert_eq!(visit(&browser, &a.url("/")).await, (200, home));
    named.kill();
    sentinel.kill();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The master limpet writes to becomes a replica behind Sentinel's back
/// (`REPLICAOF` on it; Sentinel still names it): the health check's `ROLE`
/// sees it within about a second, before the next time the sentinels are
/// asked (every 5 s), and the store is down, requests served; when the
/// server is a master again, the store is up by itself.
#[tokio::test]
async fn a_master_made_a_replica_takes_the_store_down_within_a_check() {
    if !redis_installed() {
        return;
    }
    let dir = harness::temp_dir("sentinel-demoted");
    let mut master = data_server(&dir, "master", &[]).await;
    let mut other = data_server(&dir, "other", &[]).await;
    let mut sentinel = lone_sentinel(&dir, master.port, "").await;
    let nodes = nodes(2).await;
    let url = format!("redis+sentinel://127.0.0.1:{}/mymaster", sentinel.port);
    let a = Instance::start("sentinel-demoted", &nodes, &learn_at(&url, "200ms", "")).await;
    a.wait_store(true).await;
    let browser = harness::browser(None);
    let (status, home) = visit(&browser, &a.url("/")).await;
    assert_eq!(status, 200);

    replica_of(master.port, Some(other.port)).await;
    assert!(
        eventually(Duration::from_secs(3), || async { !a.store_up().await }).await,
        "the store stayed up on a replica: {}",
        a.proc.log()
    );
    assert_eq!(visit(&browser, &a.url("/")).await, (200, home.clone()));

    replica_of(master.port, None).await;
    a.wait_store(true).await;
    assert_eq!(visit(&browser, &a.url("/")).await, (200, home));
    master.kill();
    other.kill();
    sentinel.kill();
    let _ = std::fs::remove_dir_all(&dir);
}
