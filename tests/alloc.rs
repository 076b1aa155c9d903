//! Allocations on the hot path, counted by a global allocator (dhat): the
//! sticky find + decide of a request with affinity allocates nothing, in
//! every mode, nor does the h1 codec once warm, and a whole proxied request
//! stays under a small fixed bound.
//! The test's own client and server allocate nothing per request (fixed
//! buffers), so what is counted is limpet's.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::path::Path;

use limpet::runtime::Snapshot;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Heap blocks allocated so far, by every thread.
fn allocations() -> u64 {
    dhat::HeapStats::get().total_blocks
}

fn config(mode: &str, backend: &str) -> String {
    let servers: String = (1..=4)
        .map(|i| format!("      - {{ name: node{i}, address: \"{backend}\" }}\n"))
        .collect();
    format!(
        "listeners:\n  - {{ name: http, bind: 127.0.0.1:1, pool: app }}\nworkers: 1\nlog: {{ level: error, access: false }}\npools:\n  app:\n    sticky:\n      mode: {mode}\n      learn: {{ persist: false }}\n    servers:\n{servers}"
    )
}

#[test]
fn the_hot_path_allocates_nothing_for_affinity_and_a_small_fixed_number_per_request() {
    let _profiler = dhat::Profiler::builder().testing().build();
    find_and_decide_of_a_request_with_affinity_allocate_nothing_in_every_mode();
    the_h1_codec_allocates_nothing_once_its_field_vecs_have_grown();
    a_proxied_request_with_affinity_allocates_a_small_fixed_number_of_times();
}

fn find_and_decide_of_a_request_with_affinity_allocate_nothing_in_every_mode() {
    let client: IpAddr = [192, 0, 2, 7].into();
    for (mode, cookie) in [
        ("ip_hash", ""),
        ("cookie", "theme=dark; SERVERID=node3"),
        (
            "jvm_route",
            "theme=dark; JSESSIONID=8A3F2C1D9E7B6A5F4C3D2E1F0A9B8C7D.node3",
        ),
        (
            "learn",
            "theme=dark; JSESSIONID=8A3F2C1D9E7B6A5F4C3D2E1F0A9B8C7D",
        ),
    ] {
        let cfg = limpet::config::parse(&config(mode, "127.0.0.1:9"), Path::new("t.yaml")).unwrap();
        let snap = Snapshot::detached(&cfg);
        let pool = &snap.pools[0];
        let mut headers = http::HeaderMap::new();
        if !cookie.is_empty() {
            headers.insert("cookie", http::HeaderValue::from_static(cookie));
        }
        // learn: the server issued this session once.
        if let Some(table) = pool.sticky.learned() {
            let limpet::sticky::Sticky::Learn(learn) = &pool.sticky else {
                unreachable!()
            };
            table.insert_number(
                learn.key(b"8A3F2C1D9E7B6A5F4C3D2E1F0A9B8C7D"),
                table.number(&pool.servers[2].name),
            );
        }
        // Warm caches (first reads, thread-locals).
        for _ in 0..100 {
            let found = pool.sticky.find(&pool.servers, &headers, "/cart", client);
            pool.decide(&found, &[]).unwrap();
        }
        let before = allocations();
        for _ in 0..1000 {
            let found = pool.sticky.find(&pool.servers, &headers, "/cart", client);
            let d = pool.decide(&found, &[]).unwrap();
            assert_eq!(d.outcome, limpet::decision::Outcome::Hit, "{mode}");
            std::hint::black_box(d);
        }
        let per_1000 = allocations() - before;
        assert_eq!(
            per_1000, 0,
            "{mode}: {per_1000} allocations in 1000 find + decide"
        );
    }
}

/// limpet's own HTTP/1 codec (issue 19): a request head parsed, checked
/// and framed, its chunked body decoded, the response head parsed and
/// framed, over and over with the same heads and decoder.
fn the_h1_codec_allocates_nothing_once_its_field_vecs_have_grown() {
    use limpet::h1::{self, Parsed, RequestHead, ResponseHead, chunked::Decoder};
    let limits = limpet::config::Limits::default();
    let req = b"POST /cart?item=1 HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: alloc-test\r\nAccept: */*\r\nConnection: keep-alive\r\nCookie: theme=dark; SERVERID=node2\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n";
    let res = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\nset-cookie: SERVERID=node2\r\n\r\nok";
    let mut request = RequestHead::default();
    let mut response = ResponseHead::default();
    let mut body = Decoder::new(&limits, false);
    let mut round = || {
        assert_eq!(
            h1::parse_request(req, &limits, &mut request),
            Ok(Parsed::Complete)
        );
        assert!(h1::check::request(&request, req).unwrap().is_some());
        assert_eq!(h1::framing::request(&request), h1::Framing::Chunked);
        body.reset();
        let mut at = request.len;
        while !body.is_done() {
            at += body.decode(&req[at..]).unwrap().consumed;
        }
        assert_eq!(at, req.len());
        assert_eq!(
            h1::parse_response(res, &limits, &mut response),
            Ok(Parsed::Complete)
        );
        let framing = h1::framing::response(&request.method, &response);
        std::hint::black_box(framing);
    };
    round();
    let before = allocations();
    for _ in 0..1000 {
        round();
    }
    let per_1000 = allocations() - before;
    assert_eq!(
        per_1000, 0,
        "{per_1000} allocations in 1000 rounds of the h1 codec"
    );
}

/// A keep-alive HTTP/1.1 server answering every request with `ok`.
fn backend() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || serve(s));
        }
    });
    addr
}

fn serve(mut s: TcpStream) {
    let mut buf = vec![0u8; 65536];
    let mut have = 0;
    loop {
        match s.read(&mut buf[have..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => have += n,
        }
        while let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
            let reply =
                b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok";
            if s.write_all(reply).is_err() {
                return;
            }
            buf.copy_within(end + 4..have, 0);
            have -= end + 4;
        }
    }
}

/// Sends `n` keep-alive requests on one connection, reading each answer.
fn requests(addr: std::net::SocketAddr, n: usize) {
    let mut s = TcpStream::connect(addr).unwrap();
    let req = b"GET /cart?item=1 HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: alloc-test\r\nAccept: */*\r\nConnection: keep-alive\r\nCookie: theme=dark; SERVERID=node2\r\n\r\n";
    let mut buf = vec![0u8; 65536];
    for _ in 0..n {
        s.write_all(req).unwrap();
        let mut have = 0;
        loop {
            let k = s.read(&mut buf[have..]).unwrap();
            assert!(k > 0, "limpet closed the connection");
            have += k;
            if let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                let head = &buf[..end];
                assert!(head.starts_with(b"HTTP/1.1 200"), "not a 200");
                // Every answer is "ok": content-length 2.
                if have >= end + 4 + 2 {
                    break;
                }
            }
        }
    }
}

fn a_proxied_request_with_affinity_allocates_a_small_fixed_number_of_times() {
    let addr = backend();
    let cfg =
        limpet::config::parse(&config("cookie", &addr.to_string()), Path::new("t.yaml")).unwrap();
    // limpet's own HTTP/1 path (issue 19's target: at most 2): the access
    // log's copy of the path, host and user agent (1); the connection's
    // buffers are reused from one request to the next.
    //
    // hyper's path (`http1: hyper`, the fallback), 10: hyper's own work is
    // 6 (a read buffer and a parsed head on each side, the client's
    // response channel, the response body channel); limpet adds the copy
    // of an idempotent request's header kept for a replay (2) and, in
    // cookie mode, the Cookie field without its own cookie (1).
    let bound: u64 = match cfg.http1 {
        limpet::config::Http1::Limpet => 2,
        limpet::config::Http1::Hyper => 10,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut sockets = HashMap::new();
    sockets.insert("http".to_owned(), TcpListener::bind("127.0.0.1:0").unwrap());
    let lb = rt
        .block_on(limpet::Limpet::start_with(cfg, sockets))
        .unwrap();
    let lb_addr = lb.local_addrs()[0];
    let client = std::thread::spawn(move || {
        requests(lb_addr, 500); // warm up: connections, buffers, caches
        let before = allocations();
        requests(lb_addr, 2000);
        (allocations() - before) as f64 / 2000.0
    });
    let per_request = client.join().unwrap();
    println!("allocations per proxied request: {per_request:.2}");
    assert!(
        per_request <= bound as f64,
        "{per_request:.2} allocations per request, the bound is {bound}"
    );
    rt.block_on(lb.shutdown());
}
