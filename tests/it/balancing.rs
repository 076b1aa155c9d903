//! Placement of requests without affinity: weights, least connections,
//! power of two choices, server states, and retries past a dead server.

use std::collections::HashMap;
use std::time::Duration;

use crate::harness::*;

async fn spread(lb: &Lb, n: usize) -> HashMap<String, usize> {
    let c = client();
    let mut counts = HashMap::new();
    for _ in 0..n {
        let (status, v) = get_json(&c, &lb.url("/")).await;
        assert_eq!(status, 200);
        *counts.entry(server_of(&v)).or_insert(0) += 1;
    }
    counts
}

fn weighted(nodes: &[limpet_demo::DemoNode], weights: &[u32], balance: &str) -> String {
    let servers = weighted_servers_yaml(nodes.iter().zip(weights.iter().copied()));
    format!(
        "listeners:\n  - name: http\n    bind: 127.0.0.1:1\n    pool: app\nlog:\n  level: warn\npools:\n  app:\n    balance: {balance}\n    servers:\n{servers}"
    )
}

#[tokio::test]
async fn round_robin_honours_weights_1_to_3() {
    let n = nodes(2).await;
    let lb = Lb::start(&weighted(&n, &[1, 3], "round_robin")).await;
    let counts = spread(&lb, 400).await;
    // smooth weighted round robin is exact over whole periods
    assert_eq!(counts.get("node1"), Some(&100), "{counts:?}");
    assert_eq!(counts.get("node2"), Some(&300), "{counts:?}");
}

#[tokio::test]
async fn random_two_honours_weights_1_to_3_within_tolerance() {
    let n = nodes(2).await;
    let lb = Lb::start(&weighted(&n, &[1, 3], "random_two")).await;
    let counts = spread(&lb, 400).await;
    let heavy = *counts.get("node2").unwrap_or(&0) as f64 / 400.0;
    // Sequential requests: both candidates idle, so the draw decides.
    assert!((0.6..0.9).contains(&heavy), "{counts:?}");
}

#[tokio::test]
async fn least_conn_avoids_a_busy_server() {
    let n = nodes(2).await;
    let lb = Lb::start(&weighted(&n, &[1, 1], "least_conn")).await;
    let slow_url = lb.url("/slow?ms=3000");
    let slow = tokio::spawn(async move {
        client()
            .get(slow_url)
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    assert!(
        eventually(Duration::from_secs(5), || async {
            n[0].in_flight() + n[1].in_flight() == 1
        })
        .await
    );
    let busy = if n[0].in_flight() == 1 {
        "node1"
    } else {
        "node2"
    };
    let counts = spread(&lb, 20).await;
    assert_eq!(
        counts.get(busy),
        None,
        "a busy server got requests: {counts:?}"
    );
    assert_eq!(slow.await.unwrap().unwrap(), 200);
}

#[tokio::test]
async fn drain_and_disabled_servers_get_no_new_requests() {
    let n = nodes(3).await;
    let servers = format!(
        "      - {{ name: node1, address: \"{}\" }}\n      - {{ name: node2, address: \"{}\", state: drain }}\n      - {{ name: node3, address: \"{}\", state: disabled }}\n",
        n[0].addr(),
        n[1].addr(),
        n[2].addr()
    );
    let yaml = format!(
        "listeners:\n  - name: http\n    bind: 127.0.0.1:1\n    pool: app\npools:\n  app:\n    servers:\n{servers}"
    );
    let lb = Lb::start(&yaml).await;
    let counts = spread(&lb, 30).await;
    assert_eq!(counts.get("node1"), Some(&30), "{counts:?}");
}

#[tokio::test]
async fn every_server_disabled_gives_503() {
    let n = nodes(2).await;
    let servers: String = n
        .iter()
        .map(|n| {
            format!(
                "      - {{ name: {}, address: \"{}\", state: disabled }}\n",
                n.route(),
                n.addr()
            )
        })
        .collect();
    let yaml = format!(
        "listeners:\n  - name: http\n    bind: 127.0.0.1:1\n    pool: app\npools:\n  app:\n    servers:\n{servers}"
    );
    let lb = Lb::start(&yaml).await;
    let res = client().get(lb.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    let body = res.text().await.unwrap();
    assert!(body.contains("503"), "{body}");
    assert!(
        !body.contains("127.0.0.1"),
        "the error leaks an address: {body}"
    );
    assert_eq!(n[0].requests() + n[1].requests(), 0);
}

#[tokio::test]
async fn retries_hide_a_stopped_server_from_every_method() {
    let n = nodes(3).await;
    let lb = Lb::start(&config(&n, "    retries: 2\n", "")).await;
    n[1].stop().await;
    let c = client();
    for i in 0..30 {
        let res = if i % 2 == 0 {
            c.get(lb.url("/")).send().await.unwrap()
        } else {
            c.post(lb.url("/form"))
                .body("a=1&b=2")
                .send()
                .await
                .unwrap()
        };
        assert_eq!(res.status(), 200, "request {i} failed");
        let v: serde_json::Value = res.json().await.unwrap();
        assert_ne!(server_of(&v), "node2");
        if i % 2 == 1 {
            assert_eq!(v["body_bytes"], 7, "the POST body was lost on retry");
        }
    }
}

#[tokio::test]
async fn every_server_refusing_gives_502_without_leaking_addresses() {
    let (a, _a) = refusing_port();
    let (b, _b) = refusing_port();
    let dead = [a, b];
    let yaml = format!(
        "listeners:\n  - name: http\n    bind: 127.0.0.1:1\n    pool: app\npools:\n  app:\n    retries: 3\n    servers:\n      - {{ name: a, address: \"{}\" }}\n      - {{ name: b, address: \"{}\" }}\n",
        dead[0], dead[1]
    );
    let lb = Lb::start(&yaml).await;
    let res = client().get(lb.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 502);
    let body = res.text().await.unwrap();
    assert!(
        !body.contains("127.0.0.1"),
        "the error leaks an address: {body}"
    );
}
