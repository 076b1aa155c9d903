//! Logs an operator can rotate and that never block a request, with the
//! real binary: `log.file` is reopened on SIGUSR1 (logrotate's
//! `postrotate`), SIGUSR1 without a file and SIGPIPE leave limpet serving,
//! a log sink that blocks (a pipe nobody reads) stalls no request and the
//! lines it loses are counted, and the access line carries host, retries,
//! upstream time and the user agent.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

/// One listener on `{BIND}`, an admin endpoint on `admin`, pool `app` with
/// these servers, and this `log` section body.
fn yaml(servers: &str, admin: SocketAddr, log: &str) -> String {
    format!(
        "listeners:\n  - name: http\n    bind: \"{{BIND}}\"\n    pool: app\nadmin:\n  bind: \"{admin}\"\nlog:\n{log}pools:\n  app:\n    balance: round_robin\n    servers:\n{servers}"
    )
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Access lines in `path` for requests to `target`.
fn access_lines(path: &Path, target: &str) -> usize {
    lines(path)
        .iter()
        .filter(|l| l.contains("limpet::access") && l.contains(target))
        .count()
}

#[tokio::test]
async fn the_log_file_is_reopened_on_sigusr1_after_logrotate_renamed_it() {
    let n = nodes(1).await;
    let dir = temp_dir("logs-rotate");
    let log = dir.join("limpet.log");
    let p = Proc::start(
        "logs-rotate",
        &yaml(
            &servers_yaml(&n),
            closed_port(),
            &format!("  level: info\n  file: \"{}\"\n", log.display()),
        ),
    )
    .await;
    let c = client();
    let get = |path: &'static str| {
        let c = c.clone();
        let url = format!("http://{}{path}", p.addr);
        async move { c.get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get("/before").await, 200);
    assert!(
        eventually(Duration::from_secs(5), || async {
            access_lines(&log, "/before") == 1
        })
        .await
    );
    // Nothing went to stderr.
    assert!(!p.log().contains("limpet::access"), "{}", p.log());

    let rotated = dir.join("limpet.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    p.signal("USR1");
    // limpet says it reopens: that line is the first in the new file.
    assert!(
        eventually(Duration::from_secs(5), || async {
            lines(&log)
                .iter()
                .any(|l| l.contains("reopening the log file"))
        })
        .await,
        "{:?} {}",
        lines(&rotated),
        p.log()
    );
    // Every line after it lands in the new file.
    assert_eq!(get("/after").await, 200);
    assert!(
        eventually(Duration::from_secs(5), || async {
            access_lines(&log, "/after") == 1
        })
        .await,
        "new lines in a new file: {:?}",
        lines(&log)
    );
    assert_eq!(access_lines(&rotated, "/after"), 0);
    assert_eq!(access_lines(&rotated, "/before"), 1);
}

#[tokio::test]
async fn sigusr1_without_a_log_file_and_sigpipe_leave_limpet_serving() {
    let n = nodes(1).await;
    let mut p = Proc::start("logs-signals", &proc_config(&n, "")).await;
    let url = format!("http://{}/", p.addr);
    for sig in ["USR1", "PIPE", "USR1"] {
        p.signal(sig);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            client().get(&url).send().await.unwrap().status(),
            200,
            "after SIG{sig}"
        );
    }
    assert!(p.child.try_wait().unwrap().is_none(), "still running");
}

#[tokio::test]
async fn a_log_sink_that_blocks_stalls_no_request_and_the_dropped_lines_are_counted() {
    let n = nodes(1).await;
    let dir = temp_dir("logs-blocked");
    let admin = closed_port();
    let addr = closed_port();
    let text =
        yaml(&servers_yaml(&n), admin, "  level: info\n").replace("{BIND}", &addr.to_string());
    std::fs::write(dir.join("lb.yaml"), text).unwrap();
    // stderr is a pipe that nobody reads: it fills after 64 KiB, and the
    // log writer blocks on it for good.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_limpet"))
        .arg("--config")
        .arg(dir.join("lb.yaml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let _unread = child.stderr.take();
    assert!(
        eventually(Duration::from_secs(10), || async {
            tokio::net::TcpStream::connect(addr).await.is_ok()
        })
        .await
    );
    // Far more access lines than the pipe and the writer's queue hold.
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let url = format!("http://{addr}/flood/{t}");
        tasks.push(tokio::spawn(async move {
            let c = client();
            let mut ok = 0;
            for _ in 0..800 {
                if c.get(&url).send().await.is_ok_and(|r| r.status() == 200) {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap();
    }
    assert_eq!(ok, 6400, "every request answered");
    let metrics = get_text(&format!("http://{admin}/metrics")).await;
    let dropped = metric(&metrics, "limpet_log_lines_dropped_total", "");
    assert!(dropped > 0.0, "dropped lines are counted: {dropped}");
    eprintln!(
        "6400 requests in {:?}, {dropped} log lines dropped",
        started.elapsed()
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn the_access_line_has_host_retries_upstream_time_and_the_user_agent() {
    let n = nodes(1).await;
    let dir = temp_dir("logs-access");
    let log = dir.join("access.json");
    // A server that refuses connections first (round robin): the request
    // is retried on node1.
    let (dead, _refusing) = refusing_port();
    let servers = format!(
        "      - {{ name: dead, address: \"{dead}\" }}\n{}",
        servers_yaml(&n)
    );
    let p = Proc::start(
        "logs-access",
        &yaml(
            &servers,
            closed_port(),
            &format!(
                "  level: info\n  format: json\n  file: \"{}\"\n",
                log.display()
            ),
        ),
    )
    .await;
    let ua = "Mozilla/5.0 \"quoted\" \\ and\ttab";
    for _ in 0..2 {
        let res = client()
            .get(format!("http://{}/who?secret=1", p.addr))
            .header("host", "shop.example")
            .header("user-agent", ua)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    let access = || -> Vec<Value> {
        lines(&log)
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["target"] == "limpet::access")
            .collect()
    };
    assert!(
        eventually(Duration::from_secs(5), || async { access().len() == 2 }).await,
        "{:?}",
        lines(&log)
    );
    let entries = access();
    for e in &entries {
        assert_eq!(e["host"], "shop.example", "{e}");
        assert_eq!(e["path"], "/who", "the query is not logged: {e}");
        assert_eq!(e["user_agent"], ua, "{e}");
        assert!(e["upstream_ms"].as_f64().unwrap() >= 0.0, "{e}");
        assert_eq!(e["server"], "node1", "{e}");
    }
    let retries: Vec<u64> = entries
        .iter()
        .map(|e| e["retries"].as_u64().unwrap())
        .collect();
    assert!(
        retries.contains(&1),
        "one request went to `dead` first: {retries:?}"
    );

    // HTTP/2 has no Host field: the log names the `:authority`.
    let res = h2_client()
        .get(format!("http://{}/h2", p.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    assert!(
        eventually(Duration::from_secs(5), || async { access().len() == 3 }).await,
        "{:?}",
        lines(&log)
    );
    let h2 = access().into_iter().find(|e| e["path"] == "/h2").unwrap();
    assert_eq!(h2["host"], p.addr.to_string(), "{h2}");
}
