//! The per-request decision on the hot path: client address → route → pool
//! → server. Run with `cargo bench --bench decide`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::IpAddr;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use limpet::proxy::{client_addr, route};
use limpet::runtime::Snapshot;
use limpet::sticky::Found;

fn config(balance: &str) -> String {
    let servers: String = (1..=8)
        .map(|i| {
            format!(
                "      - {{ name: node{i}, address: 127.0.0.1:{}, weight: {} }}\n",
                9000 + i,
                1 + i % 3
            )
        })
        .collect();
    format!(
        "listeners:\n  - name: http\n    bind: 127.0.0.1:8080\n    pool: app\n    routes:\n      - {{ host: static.example.com, pool: static }}\n      - {{ path_prefix: /api/, pool: app }}\ntrusted_proxies: [10.0.0.0/8]\npools:\n  static:\n    servers:\n      - {{ name: s1, address: 127.0.0.1:9100 }}\n  app:\n    balance: {balance}\n    servers:\n{servers}"
    )
}

fn bench_decide(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let req = Request::builder()
        .uri("/api/cart?item=42")
        .header("host", "shop.example.com")
        .header("x-forwarded-for", "203.0.113.9")
        .header(
            "cookie",
            "JSESSIONID=8A3F2C1D9E7B6A5F4C3D2E1F0A9B8C7D.node2; theme=dark",
        )
        .body(())
        .unwrap();
    let peer: IpAddr = [10, 1, 2, 3].into();
    for balance in ["round_robin", "least_conn", "random_two"] {
        let cfg = limpet::config::parse(&config(balance), Path::new("bench.yaml")).unwrap();
        let snap = Snapshot::detached(&cfg);
        c.bench_function(&format!("route+decide/{balance}"), |b| {
            b.iter(|| {
                let client = client_addr::resolve(peer, req.headers(), &snap.trusted_proxies);
                let i = route::pick(
                    &snap.listeners[0],
                    Some("shop.example.com"),
                    black_box(req.uri().path()),
                )
                .unwrap();
                let d = snap.pools[i].decide(&Found::default(), &[]).unwrap();
                black_box((client, d))
            })
        });
    }
}

fn sticky_config(mode: &str) -> String {
    let servers: String = (1..=8)
        .map(|i| {
            format!(
                "      - {{ name: node{i}, address: 127.0.0.1:{} }}\n",
                9000 + i
            )
        })
        .collect();
    format!(
        "listeners:\n  - name: http\n    bind: 127.0.0.1:8080\n    pool: app\npools:\n  app:\n    sticky:\n      mode: {mode}\n      learn:\n        persist: false\n    servers:\n{servers}"
    )
}

/// The sticky step of a request that carries affinity (the common case):
/// read the request, decide, let the mode act on the response.
fn bench_sticky(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let client: IpAddr = [203, 0, 113, 9].into();
    for (mode, cookie) in [
        ("ip_hash", "theme=dark"),
        ("cookie", "theme=dark; SERVERID=node3"),
        (
            "jvm_route",
            "theme=dark; JSESSIONID=8A3F2C1D9E7B6A5F4C3D2E1F0A9B8C7D.node3",
        ),
        (
            "learn",
            "theme=dark; JSESSIONID=8A3F2C1D9E7B6A5F4C3D2E1F0A9B8C7D.node3",
        ),
    ] {
        let cfg = limpet::config::parse(&sticky_config(mode), Path::new("bench.yaml")).unwrap();
        let snap = Snapshot::detached(&cfg);
        let pool = &snap.pools[0];
        let req = Request::builder()
            .uri("/cart")
            .header("cookie", cookie)
            .body(())
            .unwrap();
        let mut response = http::HeaderMap::new();
        // learn: teach the table the session once
        let found = pool
            .sticky
            .find(&pool.servers, req.headers(), "/cart", client);
        let d = pool.decide(&found, &[]).unwrap();
        pool.sticky.respond(&pool.servers, &found, d, &mut response);
        c.bench_function(&format!("sticky/{mode}"), |b| {
            b.iter(|| {
                let found =
                    pool.sticky
                        .find(&pool.servers, black_box(req.headers()), "/cart", client);
                let d = pool.decide(&found, &[]).unwrap();
                pool.sticky.respond(&pool.servers, &found, d, &mut response);
                black_box(d)
            })
        });
    }
}

/// What metrics cost per request: one status count, one histogram bucket
/// and sum, one sticky outcome, on the worker's own shard.
fn bench_metrics(c: &mut Criterion) {
    let stats = limpet::metrics::RequestStats::default();
    let pool = limpet::metrics::PoolStats::default();
    let took = std::time::Duration::from_micros(750);
    c.bench_function("metrics/record", |b| {
        b.iter(|| {
            stats.record(black_box(200), black_box(took));
            pool.decided(black_box(limpet::decision::Outcome::Hit));
        })
    });
}

criterion_group!(benches, bench_decide, bench_sticky, bench_metrics);
criterion_main!(benches);
