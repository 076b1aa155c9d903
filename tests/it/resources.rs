//! limpet's own resources: the descriptor limit is raised at start, and
//! running out of descriptors is limpet's problem (503), never a reason to
//! mark a healthy server down.

use std::collections::HashSet;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

/// `Max open files` soft and hard limits of a process.
fn nofile(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_owned();
    let mut words = line["Max open files".len()..].split_whitespace();
    (
        words.next().unwrap().to_owned(),
        words.next().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn the_soft_descriptor_limit_is_raised_to_the_hard_limit_with_a_warning_when_short() {
    let n = nodes(1).await;
    let p = Proc::start_with(
        "nofile",
        &proc_config(&n, ""),
        "ulimit -S -n 256; ulimit -H -n 4096;",
    )
    .await;
    assert_eq!(nofile(p.child.id()), ("4096".into(), "4096".into()));
    // The default max_connections (10000) needs more than 4096.
    assert!(
        eventually(Duration::from_secs(5), || async {
            p.log().contains("file descriptor limit is below")
        })
        .await,
        "{}",
        p.log()
    );
}

/// One request on its own connection; its status, or 0 if the connection
/// failed.
async fn one(addr: std::net::SocketAddr, path: &str) -> u16 {
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return 0;
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return 0;
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out)
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn running_out_of_descriptors_never_takes_a_healthy_server_down() {
    let n = nodes(2).await;
    let admin = closed_port();
    let extra = format!("limits:\n  max_connections: 1000\nadmin:\n  bind: \"{admin}\"\n");
    // Active checks that one failure takes down (fall: 1), every 20 ms:
    // some run while descriptors are out.
    let yaml = proc_config(&n, &extra).replace(
        "  app:\n",
        "  app:\n    health_check:\n      interval: 20ms\n      timeout: 1s\n      fall: 1\n      rise: 1\n",
    );
    let p = Proc::start_with("emfile", &yaml, "ulimit -n 40;").await;
    // 60 slow requests at once need about 120 descriptors: far more than 40.
    let load: Vec<_> = (0..60)
        .map(|_| tokio::spawn(one(p.addr, "/slow?ms=1500")))
        .collect();
    let mut codes = Vec::new();
    for t in load {
        codes.push(t.await.unwrap());
    }
    assert!(
        p.logged("out of resources", 1).await,
        "descriptors never ran out; the test proves nothing:\n{}",
        p.log()
    );
    assert!(
        codes.iter().all(|c| [0, 200, 503].contains(c)),
        "unexpected answers: {codes:?}"
    );
    assert!(
        !p.log().contains("server is down"),
        "a health check blamed a server for limpet's own limit:\n{}",
        p.log()
    );
    // limpet's own 503s are not put on a server's account (its 5xx alerts).
    let text = get_text(&format!("http://{admin}/metrics")).await;
    for node in &n {
        let series = format!("pool=\"app\",server=\"{}\",code=\"503\"", node.route());
        assert_eq!(
            metric(&text, "limpet_requests_total", &series),
            0.0,
            "{text}"
        );
    }
    // Both servers are still in rotation: plain traffic reaches each. The
    // slow requests' descriptors are being given back meanwhile, so limpet
    // may still answer its own 503 for a moment; never a server's fault.
    let mut seen = HashSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while seen.len() < 2 && std::time::Instant::now() < deadline {
        let (code, v) = get_json(&client(), &format!("http://{}/static/x", p.addr)).await;
        assert!(code == 200 || code == 503, "{code} {v}");
        if code == 200 {
            seen.insert(server_of(&v));
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(
        seen.len(),
        2,
        "a server was marked down: {seen:?}\n{}",
        p.log()
    );
    assert!(!p.log().contains("server is down"), "{}", p.log());
}
