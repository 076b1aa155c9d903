//! The failover drill, for each sticky mode: 30 sessions over 3 servers
//! with a steady, bounded stream of GETs; one server dies; no client sees an
//! error, every affected session moves to exactly one replacement, the
//! others never move; the server returns; moved sessions stay put.
//!
//! The demo nodes form one cluster that shares its sessions, like Tomcat's
//! DeltaManager, and re-suffix a failed-over session id with their own
//! route, like JvmRouteBinderValve.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures_util::future::join_all;
use limpet_demo::DemoNode;

use crate::harness::*;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum How {
    /// close the listener and every connection
    Stop,
    /// keep accepting, then reset every connection (a JVM being killed)
    Reset,
}

struct Drill {
    lb: Lb,
    nodes: Vec<DemoNode>,
    sessions: Vec<reqwest::Client>,
    /// each session's cookie jar
    jars: Vec<std::sync::Arc<reqwest::cookie::Jar>>,
    /// per session, the server of each request
    history: Vec<Vec<String>>,
    failed: usize,
}

impl Drill {
    async fn new(sticky: &str, by_address: bool) -> Drill {
        let nodes = DemoNode::start_cluster(&["node1", "node2", "node3"])
            .await
            .unwrap();
        let extra = format!(
            "{sticky}    retries: 2\n    health_check:\n      interval: 100ms\n      timeout: 300ms\n      rise: 2\n      fall: 2\n"
        );
        let lb = Lb::start(&sticky_config(&nodes, &extra, &[], "")).await;
        let (sessions, jars) = (0..30)
            .map(|i| browser_with_jar(by_address.then(|| source_ip(i))))
            .unzip();
        Drill {
            lb,
            nodes,
            sessions,
            jars,
            history: vec![Vec::new(); 30],
            failed: 0,
        }
    }

    /// One GET from every session, all at once.
    async fn round(&mut self) {
        let url = self.lb.url("/cart");
        let results = join_all(self.sessions.iter().map(|c| {
            let c = c.clone();
            let url = url.clone();
            async move {
                match c.get(url).send().await {
                    Ok(res) if res.status() == 200 => {
                        Ok(server_of(&res.json().await.unwrap_or_default()))
                    }
                    Ok(res) => Err(format!("status {}", res.status())),
                    Err(e) => Err(e.to_string()),
                }
            }
        }))
        .await;
        for (i, r) in results.into_iter().enumerate() {
            match r {
                Ok(s) => self.history[i].push(s),
                Err(e) => {
                    eprintln!("session {i}: {e}");
                    self.failed += 1;
                }
            }
        }
    }
}

/// Runs the drill; returns, per session, (home, replacement if it moved).
async fn drill(sticky: &str, by_address: bool, how: How) -> (Drill, Vec<(String, Option<String>)>) {
    let mut d = Drill::new(sticky, by_address).await;
    for _ in 0..3 {
        d.round().await;
    }
    let homes: Vec<String> = (0..30)
        .map(|i| one_server(&d.history[i]).to_owned())
        .collect();
    let spread: HashSet<&String> = homes.iter().collect();
    assert_eq!(spread.len(), 3, "sessions did not spread: {homes:?}");

    match how {
        How::Stop => d.nodes[1].stop().await,
        How::Reset => d.nodes[1].set_reset_mode(true),
    }
    let before: Vec<usize> = d.history.iter().map(Vec::len).collect();
    for _ in 0..6 {
        d.round().await;
    }
    assert_eq!(d.failed, 0, "clients saw failed requests during failover");

    let mut moved = Vec::new();
    for i in 0..30 {
        let after = &d.history[i][before[i]..];
        if homes[i] == "node2" {
            let replacement = one_server(after);
            assert_ne!(replacement, "node2");
            moved.push((homes[i].clone(), Some(replacement)));
        } else {
            assert!(
                after.iter().all(|s| *s == homes[i]),
                "session {i} moved although node {} stayed: {after:?}",
                homes[i]
            );
            moved.push((homes[i].clone(), None));
        }
    }
    (d, moved)
}

/// node2 comes back; moved sessions stay on their replacement (or, for
/// ip_hash, go home); untouched ones never move.
async fn recover(d: &mut Drill, moved: &[(String, Option<String>)], go_home: bool) {
    d.nodes[1].set_reset_mode(false);
    d.nodes[1].restart().await.unwrap();
    let node2 = live(&d.lb, "app", "node2");
    assert!(eventually(Duration::from_secs(10), || async { node2.is_up() }).await);
    let before: Vec<usize> = d.history.iter().map(Vec::len).collect();
    for _ in 0..3 {
        d.round().await;
    }
    assert_eq!(d.failed, 0);
    for (i, (home, replacement)) in moved.iter().enumerate() {
        let after = &d.history[i][before[i]..];
        let expected = match replacement {
            Some(r) if !go_home => r,
            _ => home,
        };
        assert!(
            after.iter().all(|s| s == expected),
            "session {i} (home {home}, moved to {replacement:?}) went to {after:?}"
        );
    }
}

fn spread_over_survivors(moved: &[(String, Option<String>)]) -> HashSet<String> {
    moved.iter().filter_map(|(_, r)| r.clone()).collect()
}

async fn new_sessions_reach(d: &Drill, server: &str, by_address: bool) {
    let mut seen = HashSet::new();
    for i in 0..30 {
        let c = browser(by_address.then(|| source_ip(500 + i)));
        seen.insert(server_of(&get_json(&c, &d.lb.url("/")).await.1));
    }
    assert!(
        seen.contains(server),
        "no new session reached {server}: {seen:?}"
    );
}

#[tokio::test]
async fn cookie_mode_survives_a_dead_server_and_reissues_the_cookie() {
    let sticky = "    sticky:\n      mode: cookie\n";
    let (mut d, moved) = drill(sticky, true, How::Stop).await;
    // The replacement is chosen from the client address: deterministic and spread.
    assert_eq!(spread_over_survivors(&moved).len(), 2, "{moved:?}");
    // Every moved client holds a cookie reissued for the server that has
    // answered it since (as the demo node names itself), and that cookie
    // alone, from another client, leads there.
    for (i, (_, r)) in moved.iter().enumerate() {
        let Some(r) = r else { continue };
        let held = jar_cookie(&d.jars[i], &d.lb.url("/"), "SERVERID");
        assert_eq!(held, Some(format!("SERVERID={r}")), "session {i}");
        let res = d.sessions[i].get(d.lb.url("/")).send().await.unwrap();
        assert!(
            set_cookies(&res).is_empty(),
            "the client should already hold the reissued cookie"
        );
        assert_eq!(
            &server_with_cookie(&client(), &d.lb.url("/"), &held.unwrap()).await,
            r
        );
    }
    recover(&mut d, &moved, false).await;
    new_sessions_reach(&d, "node2", false).await;
}

#[tokio::test]
async fn jvm_route_mode_moves_the_session_and_follows_the_id_the_cluster_re_suffixed() {
    // (The binding itself, which matters when no new id is issued, is
    // jvm_route_binding_wins_over_the_old_route_after_the_node_returns.)
    let sticky = "    sticky:\n      mode: jvm_route\n";
    let (mut d, moved) = drill(sticky, false, How::Stop).await;
    let mut old_ids = Vec::new();
    for (i, (_, r)) in moved.iter().enumerate() {
        if let Some(r) = r {
            // The cluster re-suffixed the id (JvmRouteBinderValve); the counter went on.
            let (_, v) = get_json(&d.sessions[i], &d.lb.url("/cart")).await;
            let id = v["session"].as_str().unwrap();
            assert!(id.ends_with(&format!(".{r}")), "{v}");
            assert_eq!(
                v["counter"],
                d.history[i].len() as u64 + 1,
                "the session was not continued: {v}"
            );
            old_ids.push(format!("{}.node2", id.split('.').next().unwrap()));
        }
    }
    // Routing follows the new ids: the bindings made at the failover were
    // released when the cluster issued them.
    assert_eq!(jvm_route_bindings(&d.lb, "app"), 0);
    recover(&mut d, &moved, false).await;
    // So an old id, sent again, follows its own route home (a request that
    // touches no session: no new id).
    for old in &old_ids {
        assert_eq!(
            server_with_cookie(
                &client(),
                &d.lb.url("/static/app.js"),
                &format!("JSESSIONID={old}")
            )
            .await,
            "node2",
            "{old} is still bound"
        );
    }
    new_sessions_reach(&d, "node2", false).await;
}

#[tokio::test]
async fn jvm_route_binding_wins_over_the_old_route_after_the_node_returns() {
    // Requests that issue no new id (static resources here; or servers
    // without JvmRouteBinderValve): the binding alone keeps the session in
    // one place.
    let nodes = nodes(3).await;
    let extra = "    sticky:\n      mode: jvm_route\n    health_check:\n      interval: 50ms\n      rise: 1\n      fall: 1\n";
    let lb = Lb::start(&sticky_config(&nodes, extra, &[], "")).await;
    let c = client();
    let ids: Vec<String> = (0..12)
        .map(|i| format!("JSESSIONID=SESSION{i}.node2"))
        .collect();
    for id in &ids {
        assert_eq!(
            server_with_cookie(&c, &lb.url("/static/app.js"), id).await,
            "node2"
        );
    }
    nodes[1].set_health(500);
    let node2 = live(&lb, "app", "node2");
    assert!(eventually(Duration::from_secs(5), || async { !node2.is_up() }).await);
    assert_eq!(jvm_route_bindings(&lb, "app"), 0);
    let mut replacement = HashMap::new();
    for id in &ids {
        let r = server_with_cookie(&c, &lb.url("/static/app.js"), id).await;
        assert_ne!(r, "node2");
        replacement.insert(id.clone(), r);
    }
    // One binding per moved session.
    assert_eq!(jvm_route_bindings(&lb, "app"), ids.len() as u64);
    assert_eq!(
        replacement.values().collect::<HashSet<_>>().len(),
        2,
        "all moved sessions landed on one node"
    );
    nodes[1].set_health(200);
    assert!(eventually(Duration::from_secs(5), || async { node2.is_up() }).await);
    for id in &ids {
        for _ in 0..3 {
            assert_eq!(
                &server_with_cookie(&c, &lb.url("/static/app.js"), id).await,
                &replacement[id],
                "{id} bounced back"
            );
        }
    }
    // A session that never moved still goes to node2.
    assert_eq!(
        server_with_cookie(&c, &lb.url("/static/app.js"), "JSESSIONID=OTHER.node2").await,
        "node2"
    );
}

#[tokio::test]
async fn learn_mode_rewrites_the_table_entry() {
    let sticky = "    sticky:\n      mode: learn\n      learn:\n        persist: false\n";
    let (mut d, moved) = drill(sticky, false, How::Stop).await;
    // Each moved session's entry, under the id node2 issued, now names the
    // server that has answered the session since (as the demo node names
    // itself). The cluster re-suffixed the id too (`<hex>.node2` became
    // `<hex>.<replacement>`), which limpet learned as a new entry.
    let mut old_ids = Vec::new();
    for (i, (_, r)) in moved.iter().enumerate() {
        let Some(r) = r else { continue };
        let (_, v) = get_json(&d.sessions[i], &d.lb.url("/cart")).await;
        let hex = v["session"].as_str().unwrap().split('.').next().unwrap();
        let old = format!("{hex}.node2");
        assert_eq!(
            learned_server(&d.lb, "app", &old).as_deref(),
            Some(r.as_str()),
            "session {i}: the entry of {old}"
        );
        old_ids.push((old, r.clone()));
    }
    recover(&mut d, &moved, false).await;
    // With node2 back, the old id still leads to the replacement.
    for (old, r) in &old_ids {
        assert_eq!(
            &server_with_cookie(
                &client(),
                &d.lb.url("/static/app.js"),
                &format!("JSESSIONID={old}")
            )
            .await,
            r
        );
    }
    new_sessions_reach(&d, "node2", false).await;
}

#[tokio::test]
async fn ip_hash_moves_only_the_dead_servers_clients_and_brings_them_home() {
    let sticky = "    sticky:\n      mode: ip_hash\n";
    let (mut d, moved) = drill(sticky, true, How::Stop).await;
    assert_eq!(spread_over_survivors(&moved).len(), 2, "{moved:?}");
    recover(&mut d, &moved, true).await;
    new_sessions_reach(&d, "node2", true).await;
}

#[tokio::test]
async fn a_server_that_resets_connections_mid_request_loses_no_request() {
    for (sticky, by_address) in [
        ("    sticky:\n      mode: jvm_route\n", false),
        ("    sticky:\n      mode: cookie\n", true),
    ] {
        let (mut d, moved) = drill(sticky, by_address, How::Reset).await;
        recover(&mut d, &moved, false).await;
    }
}

#[tokio::test]
async fn a_post_whose_connect_is_refused_is_retried_with_its_body() {
    let n = nodes(3).await;
    // passive checks off: node2 must stay a candidate for the POST too
    let extra = "    sticky:\n      mode: jvm_route\n    passive:\n      max_fails: 0\n";
    let lb = Lb::start(&sticky_config(&n, extra, &[], "")).await;
    n[1].stop().await;
    let c = client();
    for i in 0..10 {
        let body = format!("order={i}&qty=3");
        let res = c
            .post(lb.url("/checkout"))
            .header("cookie", "JSESSIONID=P.node2")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let v: serde_json::Value = res.json().await.unwrap();
        assert_ne!(server_of(&v), "node2");
        assert_eq!(v["body_bytes"], body.len() as u64);
    }
}

#[tokio::test]
async fn a_small_put_reset_by_a_dying_server_is_replayed_with_its_body_and_a_post_is_not() {
    let n = nodes(2).await;
    // passive checks off: node2 must stay a candidate for the POST too
    let extra = "    sticky:\n      mode: jvm_route\n    passive:\n      max_fails: 0\n";
    let lb = Lb::start(&sticky_config(&n, extra, &[], "")).await;
    n[1].set_reset_mode(true);
    let c = client();
    let body = "x".repeat(10_000);
    // PUT is idempotent and its body is small: read first, replayed on node1.
    let res = c
        .put(lb.url("/doc"))
        .header("cookie", "JSESSIONID=P.node2")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(server_of(&v), "node1");
    assert_eq!(v["body_bytes"], 10_000);
    // POST may have been acted on: not replayed after the server saw it.
    let res = c
        .post(lb.url("/order"))
        .header("cookie", "JSESSIONID=Q.node2")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 502);
}

/// A server that answers the first request of each connection (keeping it
/// alive) and closes the connection when a second one arrives on it, as a
/// server whose keep-alive ran out just as the request went out.
async fn one_request_per_connection() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut got = Vec::new();
                let mut answered = false;
                loop {
                    let Ok(n) = s.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    if !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        continue;
                    }
                    if answered {
                        return; // closed without a byte of answer
                    }
                    answered = true;
                    got.clear();
                    let body = br#"{"server":"racy"}"#;
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    );
                    if s.write_all(head.as_bytes()).await.is_err()
                        || s.write_all(body).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_kept_alive_connection_closed_as_the_request_goes_out_blames_no_server() {
    // Two such servers, passive checks that take a server out at the first
    // failure: every reused connection meets the keep-alive race, which is
    // retried on a fresh connection and counts against nobody.
    let (a, b) = (
        one_request_per_connection().await,
        one_request_per_connection().await,
    );
    let lb = Lb::start(&format!(
        "listeners:\n  - name: http\n    bind: 127.0.0.1:1\n    pool: app\nlog:\n  level: error\npools:\n  app:\n    passive:\n      max_fails: 1\n      fail_timeout: 30s\n    servers:\n      - {{ name: a, address: \"{a}\" }}\n      - {{ name: b, address: \"{b}\" }}\n"
    ))
    .await;
    let c = client();
    for i in 0..20 {
        let (status, v) = get_json(&c, &lb.url(&format!("/{i}"))).await;
        assert_eq!(status, 200, "request {i}: {v}");
    }
    assert!(lb.live("app", "a").is_up() && lb.live("app", "b").is_up());
}
