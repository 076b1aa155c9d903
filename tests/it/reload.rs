//! A reload under steady load applies the whole file: a weight change takes
//! effect, an added server is health-checked and gets traffic, a removed one
//! gets none and its sessions move once, an added listener answers — and no
//! request fails, and learned sessions are kept.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::harness::*;

fn yaml(nodes: &[(&limpet_demo::DemoNode, u32)], second_listener: bool) -> String {
    let servers = weighted_servers_yaml(nodes.iter().copied());
    let second = if second_listener {
        "  - name: second\n    bind: 127.0.0.1:3\n    pool: app\n"
    } else {
        ""
    };
    format!(
        "listeners:\n  - name: http\n    bind: 127.0.0.1:1\n    pool: app\n{second}admin:\n  bind: 127.0.0.1:2\nlog:\n  level: warn\npools:\n  app:\n    sticky:\n      mode: learn\n      learn:\n        persist: false\n    health_check:\n      interval: 50ms\n      timeout: 500ms\n      rise: 1\n      fall: 2\n    servers:\n{servers}"
    )
}

#[tokio::test]
async fn a_reload_under_load_applies_the_whole_file_without_a_failed_request() {
    let n = nodes(4).await;
    let before = yaml(&[(&n[0], 1), (&n[1], 1), (&n[2], 1)], false);
    let lb = Lb::start(&before).await;

    // 15 sessions, learned by limpet.
    let mut sessions = Vec::new();
    for _ in 0..15 {
        let b = browser(None);
        let (_, v) = get_json(&b, &lb.url("/")).await;
        sessions.push((b, server_of(&v)));
    }
    assert!(sessions.iter().any(|(_, s)| s == "node2"));
    let sessions = Arc::new(sessions);

    // Steady load: every session, round after round, until told to stop
    // (at most 300 rounds). `done` counts the answered requests.
    let stop = Arc::new(AtomicBool::new(false));
    let reloaded = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let load = tokio::spawn({
        let (sessions, stop, reloaded, done, url) = (
            Arc::clone(&sessions),
            Arc::clone(&stop),
            Arc::clone(&reloaded),
            Arc::clone(&done),
            lb.url("/"),
        );
        async move {
            let mut seen: Vec<(usize, bool, u16, String)> = Vec::new();
            for _ in 0..300 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                for (i, (b, _)) in sessions.iter().enumerate() {
                    let after = reloaded.load(Ordering::Relaxed);
                    let (code, v) = get_json(b, &url).await;
                    seen.push((i, after, code, server_of(&v)));
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
            seen
        }
    });
    // `n` more requests of the load answered: as the load goes round the
    // sessions in turn, 15 of them are one request of every session.
    let answered = |n: usize| {
        let from = done.load(Ordering::Relaxed);
        let done = Arc::clone(&done);
        async move {
            eventually(Duration::from_secs(10), || async {
                done.load(Ordering::Relaxed) >= from + n
            })
            .await
        }
    };
    // The load is under way: a whole round before the reload.
    assert!(answered(sessions.len()).await, "the load did not start");

    // The reload: node1 weight 3, node2 removed, node4 added, a listener added.
    let checks_before = n[3].health_checks();
    let after = yaml(&[(&n[0], 3), (&n[2], 1), (&n[3], 1)], true);
    lb.reload_new(&after, &["second"]).await;
    reloaded.store(true, Ordering::Relaxed);

    // The added server is health-checked.
    assert!(
        eventually(Duration::from_secs(5), || async {
            n[3].health_checks() > checks_before
        })
        .await,
        "node4 was never health-checked"
    );
    // The added listener answers.
    let second = lb.limpet.as_ref().unwrap().addr("second").unwrap();
    let (code, v) = get_json(&client(), &format!("http://{second}/static/x")).await;
    assert_eq!(code, 200, "{v}");
    // New placements follow the new weights (3:1:1) and reach node4. (One
    // keep-alive connection: one worker, whose smooth sequence is exact.)
    let mut placed: HashMap<String, usize> = HashMap::new();
    let c = client();
    for _ in 0..50 {
        let (code, v) = get_json(&c, &lb.url("/static/x")).await;
        assert_eq!(code, 200);
        *placed.entry(server_of(&v)).or_default() += 1;
    }
    assert_eq!(placed.get("node1"), Some(&30), "{placed:?}");
    assert_eq!(placed.get("node3"), Some(&10), "{placed:?}");
    assert_eq!(placed.get("node4"), Some(&10), "{placed:?}");
    // A request that began before the reload has ended by now.
    let node2_served = n[1].requests();

    // Every session (node2's among them) sends one more request.
    assert!(answered(sessions.len()).await, "the load stopped");
    stop.store(true, Ordering::Relaxed);
    let seen = load.await.unwrap();

    // Zero failed requests throughout.
    let failed: Vec<_> = seen.iter().filter(|s| s.2 != 200).collect();
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    assert!(seen.iter().any(|s| s.1), "no load after the reload");
    assert!(
        !seen.iter().any(|s| s.1 && s.3 == "node2"),
        "a request that began after the reload reached the removed node2"
    );
    // The removed server got nothing after the reload.
    assert_eq!(
        n[1].requests(),
        node2_served,
        "node2 got traffic after its removal"
    );
    for (i, (_, home)) in sessions.iter().enumerate() {
        let after: Vec<&String> = seen
            .iter()
            .filter(|s| s.0 == i && s.1)
            .map(|s| &s.3)
            .collect();
        if home == "node2" {
            // It moved once: one replacement for every later request.
            let places: HashSet<&&String> = after.iter().collect();
            assert_eq!(
                places.len(),
                1,
                "session {i} of node2 moved more than once: {after:?}"
            );
            assert!(!after.iter().any(|s| *s == "node2"));
        } else {
            // Learned sessions of the servers that stay were kept.
            assert!(
                after.iter().all(|s| *s == home),
                "session {i} left {home}: {after:?}"
            );
        }
    }
    let text = lb.metrics().await;
    assert_eq!(
        metric(&text, "limpet_config_reloads_total", "result=\"success\""),
        1.0
    );
    assert!(
        metric(
            &text,
            "limpet_sticky_decisions_total",
            "pool=\"app\",mode=\"learn\",outcome=\"redispatch\""
        ) >= 1.0
    );
}

/// A configuration with listeners `http` and `second` in front of `n`
/// (`extra` added at the top level), and the same without `second`.
fn second_listener(n: &[limpet_demo::DemoNode], extra: &str) -> (String, String) {
    let second = "  - name: second\n    bind: 127.0.0.1:3\n    pool: app\n";
    let two = format!(
        "listeners:\n  - name: http\n    bind: 127.0.0.1:1\n    pool: app\n{second}log:\n  level: warn\n{extra}pools:\n  app:\n    servers:\n{}",
        servers_yaml(n)
    );
    let one = two.replace(second, "");
    (two, one)
}

#[tokio::test]
async fn a_removed_listener_stops_accepting_and_the_others_keep_their_sockets() {
    let n = nodes(1).await;
    let (two, one) = second_listener(&n, "");
    let lb = Lb::start(&two).await;
    let second = lb.limpet.as_ref().unwrap().addr("second").unwrap();
    assert_eq!(
        get_json(&client(), &format!("http://{second}/")).await.0,
        200
    );
    lb.reload_new(&one, &[]).await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            tokio::net::TcpStream::connect(second).await.is_err()
        })
        .await,
        "the removed listener still accepts"
    );
    assert_eq!(lb.limpet.as_ref().unwrap().local_addrs(), vec![lb.addr]);
    assert_eq!(get_json(&client(), &lb.url("/")).await.0, 200);
}

/// A removed listener's kept-alive connections close between two requests
/// (`listener/drain.rs`): an idle one within its grace, long before
/// `client_idle`, and one that sends a request just then gets one answer
/// (its listener is gone: 503) and is closed after it. An answer given
/// before the request was forwarded used to leave the head in the buffer,
/// and the connection answered it again and again.
#[tokio::test]
async fn a_removed_listeners_kept_alive_connections_close_between_requests() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let n = nodes(1).await;
    let (two, one) = second_listener(&n, "timeouts:\n  client_idle: 60s\n");
    let lb = Lb::start(&two).await;
    let second = lb.limpet.as_ref().unwrap().addr("second").unwrap();
    let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    // Two connections, each with one request answered and kept alive.
    let mut idle = tokio::net::TcpStream::connect(second).await.unwrap();
    let mut busy = tokio::net::TcpStream::connect(second).await.unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    for s in [&mut idle, &mut busy] {
        s.write_all(request).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(buf[..got].starts_with(b"HTTP/1.1 200"));
    }
    lb.reload_new(&one, &[]).await;
    // A request during the grace is answered, and closes the connection.
    busy.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut chunk = [0u8; 4096];
        // Bounded: one answer is a few hundred bytes.
        while answer.len() < 64 * 1024 {
            match busy.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(read.is_ok(), "the connection stayed open after its answer");
    assert_eq!(answer.matches("http/1.1 ").count(), 1, "{answer:.300}");
    assert!(
        answer.starts_with("http/1.1 200") || answer.starts_with("http/1.1 503"),
        "{answer:.300}"
    );
    // ... and says so before the connection closes.
    let head = answer.split("\r\n\r\n").next().unwrap_or_default();
    assert!(head.contains("\r\nconnection: close\r\n"), "{answer:.300}");
    // The idle one is closed within the grace (1 s), not after client_idle.
    let closed = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
}

/// An answer limpet gives itself on a connection whose listener stopped
/// while the request was in flight (here the server took longer than
/// `backend_response`: 504) says `Connection: close`, and the connection
/// closes after it.
#[tokio::test]
async fn limpets_own_answer_after_its_listener_stopped_closes_the_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let n = nodes(1).await;
    let (two, one) = second_listener(&n, "timeouts:\n  backend_response: 1s\n");
    let lb = Lb::start(&two).await;
    let second = lb.limpet.as_ref().unwrap().addr("second").unwrap();
    let mut s = tokio::net::TcpStream::connect(second).await.unwrap();
    s.write_all(b"GET /slow?ms=4000 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(eventually(Duration::from_secs(5), || async { n[0].in_flight() == 1 }).await);
    lb.reload_new(&one, &[]).await;
    let mut answer = Vec::new();
    // Bounded by the deadline; one answer is a few hundred bytes.
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(read.is_ok(), "the connection stayed open: {answer}");
    assert!(answer.starts_with("http/1.1 504"), "{answer}");
    let head = answer.split("\r\n\r\n").next().unwrap_or_default();
    assert!(head.contains("\r\nconnection: close\r\n"), "{answer}");
}

/// `workers` applies at the next upgrade, not on a reload: a reload that
/// changes it keeps every socket of the listener's group (one closed would
/// reset the connections the kernel queued in it), so under load, with new
/// connections meeting every socket, no request fails.
#[tokio::test]
async fn a_reload_that_changes_workers_fails_no_request() {
    let n = nodes(2).await;
    let yaml = |workers: usize| config(&n, "", &format!("workers: {workers}\n"));
    let mut lb = Lb::start(&yaml(3)).await;
    let load = Load::start(&format!("http://{}", lb.addr), 6);
    assert!(load.runs(50).await);
    lb.reload(&yaml(1)).await;
    assert!(load.runs(50).await);
    lb.reload(&yaml(4)).await;
    assert!(load.runs(50).await);
    let (_, errors) = load.stop().await;
    assert_eq!(errors, Vec::<String>::new());
}
