//! The per-request decision on the hot path: client address → route → pool
//! → server. Run with `cargo bench --bench decide`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::IpAddr;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use limpet::pool::Affinity;
use limpet::proxy::{client_addr, route};
use limpet::runtime::Snapshot;

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
        let snap = Snapshot::build(&cfg, None);
        c.bench_function(&format!("route+decide/{balance}"), |b| {
            b.iter(|| {
                let client = client_addr::resolve(peer, req.headers(), &snap.trusted_proxies);
                let pool = route::pick(&snap.listeners[0], black_box(&req)).unwrap();
                let d = pool.decide(Affinity::None, None, &[]).unwrap();
                black_box((client, d))
            })
        });
    }
}

criterion_group!(benches, bench_decide);
criterion_main!(benches);
