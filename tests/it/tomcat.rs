//! The real thing: three Tomcat 10 nodes (Debian's tomcat10, DeltaManager
//! replication, JvmRouteBinderValve; examples/tomcat) behind limpet in
//! jvm_route mode. A node is SIGKILLed while a browser is mid-session: no
//! request fails, the session's counter goes on on one surviving node, and
//! limpet follows the re-suffixed `.nodeN` id.
//!
//! Needs `apt-get install tomcat10` (.ci/run installs it). Without Tomcat the
//! test says so and passes, unless LIMPET_REQUIRE_TOMCAT=1 (set by CI).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::harness::*;

/// The ports of the three nodes (index 0 is node1): HTTP connectors,
/// Tribes receivers and shutdown ports. Free ports picked by the kernel,
/// none fixed, so two runs of this test can share a machine.
#[derive(Debug)]
struct Ports {
    http: [u16; 3],
    cluster: [u16; 3],
    shutdown: [u16; 3],
}

impl Ports {
    /// Binds nine listeners on 127.0.0.1:0 at once (so the nine ports are
    /// distinct), reads their ports and closes them for Tomcat to bind.
    fn pick() -> Ports {
        let listeners: Vec<TcpListener> = (0..9)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let p: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        drop(listeners);
        Ports {
            http: [p[0], p[1], p[2]],
            cluster: [p[3], p[4], p[5]],
            shutdown: [p[6], p[7], p[8]],
        }
    }
}

/// "p1,p2,p3", the form of examples/tomcat/common.sh's LIMPET_TOMCAT_*_PORTS.
fn port_list(ports: &[u16; 3]) -> String {
    ports.map(|p| p.to_string()).join(",")
}

/// Three Tomcat nodes in their own temporary directory, on their own ports;
/// stopped (and the directory removed) on drop.
struct Cluster {
    dir: PathBuf,
    ports: Ports,
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/tomcat")
        .join(name)
}

impl Cluster {
    fn start() -> Cluster {
        let dir = std::env::temp_dir().join(format!("limpet-it-tomcat-{}", std::process::id()));
        let c = Cluster {
            dir,
            ports: Ports::pick(),
        };
        eprintln!("tomcat nodes in {} on {:?}", c.dir.display(), c.ports);
        assert!(
            c.run(Command::new(script("start.sh")).arg(&c.dir)),
            "examples/tomcat/start.sh failed"
        );
        c
    }

    /// Runs one of the example's scripts against this cluster's ports.
    fn run(&self, cmd: &mut Command) -> bool {
        let out = cmd
            .env("LIMPET_TOMCAT_ADDRESS", "127.0.0.1")
            .env("LIMPET_TOMCAT_HTTP_PORTS", port_list(&self.ports.http))
            .env(
                "LIMPET_TOMCAT_CLUSTER_PORTS",
                port_list(&self.ports.cluster),
            )
            .env(
                "LIMPET_TOMCAT_SHUTDOWN_PORTS",
                port_list(&self.ports.shutdown),
            )
            .output()
            .unwrap();
        if !out.status.success() {
            eprintln!(
                "{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        out.status.success()
    }

    fn kill(&self, n: usize) {
        assert!(
            self.run(
                Command::new(script("kill-node.sh"))
                    .arg(n.to_string())
                    .arg(&self.dir)
            )
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.run(Command::new(script("stop.sh")).arg(&self.dir));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tomcat_installed() -> bool {
    Path::new("/usr/share/tomcat10/bin/catalina.sh").exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tomcat_killed_mid_session_loses_no_request_and_the_session_goes_on() {
    if !tomcat_installed() {
        assert!(
            std::env::var("LIMPET_REQUIRE_TOMCAT").is_err(),
            "tomcat10 is required here but not installed"
        );
        eprintln!("SKIPPED: tomcat10 is not installed (apt-get install tomcat10)");
        return;
    }
    let cluster = Arc::new(tokio::task::spawn_blocking(Cluster::start).await.unwrap());
    let servers: String = (1..=3)
        .map(|i| {
            format!(
                "      - {{ name: node{i}, address: \"127.0.0.1:{}\", route: node{i} }}\n",
                cluster.ports.http[i - 1]
            )
        })
        .collect();
    let yaml = format!(
        "listeners:\n  - name: http\n    bind: 127.0.0.1:1\n    pool: tomcat\nlog:\n  level: warn\npools:\n  tomcat:\n    sticky:\n      mode: jvm_route\n    retries: 2\n    health_check:\n      path: /health\n      interval: 500ms\n      timeout: 500ms\n      rise: 2\n      fall: 2\n    servers:\n{servers}"
    );
    let lb = Lb::start(&yaml).await;
    let b = browser(None);
    let url = lb.url("/cart");

    let mut history: Vec<(String, String, u64)> = Vec::new();
    let step = |history: &mut Vec<(String, String, u64)>, v: serde_json::Value| {
        let server = server_of(&v);
        let session = v["session"].as_str().unwrap_or("").to_owned();
        let counter = v["counter"].as_u64().unwrap_or(0);
        history.push((server, session, counter));
    };
    for _ in 0..10 {
        let (status, v) = get_json(&b, &url).await;
        assert_eq!(status, 200, "{v}");
        step(&mut history, v);
    }
    let home = history[0].0.clone();
    assert!(
        history.iter().all(|(s, _, _)| *s == home),
        "not sticky before the kill: {history:?}"
    );
    assert!(history[0].1.ends_with(&format!(".{home}")));
    let victim: usize = home.trim_start_matches("node").parse().unwrap();

    // Requests keep coming while the node dies.
    let killer = {
        let cluster = Arc::clone(&cluster);
        tokio::task::spawn_blocking(move || {
            std::thread::sleep(Duration::from_millis(30));
            cluster.kill(victim);
        })
    };
    for _ in 0..30 {
        let (status, v) = get_json(&b, &url).await;
        assert_eq!(status, 200, "a request failed during failover: {v}");
        step(&mut history, v);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    killer.await.unwrap();
    for _ in 0..20 {
        let (status, v) = get_json(&b, &url).await;
        assert_eq!(status, 200, "{v}");
        step(&mut history, v);
    }

    // One session all along: the counter never restarts or goes back. It
    // may skip one value where the node died: a GET the node had processed
    // when it was killed, before it could answer, is replayed on the
    // replacement (idempotent retry), and the replicated counter saw both.
    let mut skipped = 0;
    for pair in history.windows(2) {
        let step = pair[1].2 as i64 - pair[0].2 as i64;
        assert!(
            step == 1 || step == 2,
            "the session was lost or forked: {history:?}"
        );
        if step == 2 {
            skipped += 1;
            assert_ne!(
                pair[0].0, pair[1].0,
                "a skip away from the failover: {history:?}"
            );
        }
    }
    assert!(skipped <= 1, "{history:?}");
    assert_eq!(history[0].2, 1);
    // After the move, one surviving node, and the id names it.
    let (last_server, last_session, _) = history.last().unwrap().clone();
    assert_ne!(last_server, home);
    assert!(
        last_session.ends_with(&format!(".{last_server}")),
        "{last_session}"
    );
    let moved_at = history.iter().position(|(s, _, _)| *s != home).unwrap();
    assert!(
        history[moved_at..]
            .iter()
            .all(|(s, _, _)| *s == last_server),
        "bounced: {history:?}"
    );
    lb.shutdown().await;
    drop(cluster);
}
