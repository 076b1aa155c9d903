//! Forwarding: bodies stream both ways, headers are rewritten as the
//! contract says, routes pick pools, upgrades are tunnelled.

use std::net::IpAddr;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

#[tokio::test]
async fn a_large_post_body_reaches_the_server_intact_and_echoes_back() {
    let n = nodes(1).await;
    let lb = Lb::start(&config(&n, "", "")).await;
    let body: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let res = client()
        .post(lb.url("/echo"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let back = res.bytes().await.unwrap();
    assert_eq!(back.len(), body.len());
    assert!(back[..] == body[..], "echoed body differs");

    let res = client()
        .post(lb.url("/upload"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["body_bytes"], body.len() as u64);
    let sum: u64 = body
        .iter()
        .map(|&b| u64::from(b))
        .fold(0u64, u64::wrapping_add);
    assert_eq!(v["body_sum"], sum);
}

#[tokio::test]
async fn a_chunked_request_body_and_a_chunked_response_stream_through() {
    let n = nodes(1).await;
    let lb = Lb::start(&config(&n, "", "")).await;
    // A request body of unknown length goes out chunked.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..64).map(|i| Ok(vec![i as u8; 10_000])).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let res = client()
        .post(lb.url("/upload"))
        .body(body)
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["body_bytes"], 640_000);

    // A chunked response arrives chunk by chunk, complete.
    let res = client()
        .get(lb.url("/stream?chunks=200&size=5000"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("content-length").is_none());
    let mut stream = res.bytes_stream();
    let mut total = 0;
    let mut frames = 0;
    while let Some(chunk) = stream.next().await {
        total += chunk.unwrap().len();
        frames += 1;
    }
    assert_eq!(total, 200 * 5000);
    assert!(frames > 1, "response was not streamed");
}

#[tokio::test]
async fn host_is_preserved_and_forwarded_headers_are_set() {
    let n = nodes(1).await;
    let lb = Lb::start(&config(&n, "", "")).await;
    let res = client()
        .get(lb.url("/h"))
        .header("host", "shop.example.com")
        .header("x-forwarded-for", "198.51.100.7")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = res.json().await.unwrap();
    let h = &v["headers"];
    assert_eq!(h["host"], "shop.example.com");
    // The peer is appended to the chain it sent, trusted or not.
    assert_eq!(h["x-forwarded-for"], "198.51.100.7, 127.0.0.1");
    // An untrusted peer cannot claim the scheme.
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "shop.example.com");
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_in_both_directions() {
    let n = nodes(1).await;
    let lb = Lb::start(&config(&n, "", "")).await;
    let req = b"GET /hop HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, x-private\r\nX-Private: secret\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nX-Kept: yes\r\n\r\n";
    let out = raw(lb.addr, req, Duration::from_millis(500)).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let body = &out[out.find("\r\n\r\n").unwrap() + 4..];
    let json_start = body.find('{').unwrap();
    let v: serde_json::Value =
        serde_json::from_str(body[json_start..].trim_end_matches(|c| c != '}')).unwrap();
    let h = v["headers"].as_object().unwrap();
    for gone in [
        "connection",
        "x-private",
        "keep-alive",
        "proxy-connection",
        "te",
    ] {
        assert!(!h.contains_key(gone), "{gone} reached the server: {h:?}");
    }
    assert_eq!(h["x-kept"], "yes");
}

#[tokio::test]
async fn a_trusted_proxy_may_say_the_scheme_and_an_untrusted_one_may_not() {
    let n = nodes(1).await;
    let lb = Lb::start(&config(&n, "", "trusted_proxies: [127.0.0.2/32]")).await;
    let send = |src: [u8; 4]| {
        let c = browser(Some(IpAddr::from(src)));
        let url = lb.url("/");
        async move {
            let res = c
                .get(url)
                .header("x-forwarded-for", "203.0.113.9")
                .header("x-forwarded-proto", "https")
                .send()
                .await
                .unwrap();
            res.json::<serde_json::Value>().await.unwrap()
        }
    };
    let trusted = send([127, 0, 0, 2]).await;
    assert_eq!(trusted["headers"]["x-forwarded-proto"], "https");
    assert_eq!(
        trusted["headers"]["x-forwarded-for"],
        "203.0.113.9, 127.0.0.2"
    );
    let untrusted = send([127, 0, 0, 3]).await;
    assert_eq!(untrusted["headers"]["x-forwarded-proto"], "http");
    assert_eq!(
        untrusted["headers"]["x-forwarded-for"],
        "203.0.113.9, 127.0.0.3"
    );
}

#[tokio::test]
async fn routes_send_hosts_and_path_prefixes_to_their_pools() {
    let n = nodes(3).await;
    let yaml = format!(
        "listeners:\n  - name: http\n    bind: 127.0.0.1:1\n    pool: app\n    routes:\n      - {{ host: static.example.com, pool: static }}\n      - {{ path_prefix: /api/, pool: api }}\n      - {{ host: \"*.img.example.com\", path_prefix: /i/, pool: static }}\npools:\n  app:\n    servers:\n      - {{ name: node1, address: \"{}\" }}\n  api:\n    servers:\n      - {{ name: node2, address: \"{}\" }}\n  static:\n    servers:\n      - {{ name: node3, address: \"{}\" }}\n",
        n[0].addr(),
        n[1].addr(),
        n[2].addr()
    );
    let lb = Lb::start(&yaml).await;
    let c = client();
    let at = |host: &'static str, path: &'static str| {
        let c = c.clone();
        let url = lb.url(path);
        async move {
            let v: serde_json::Value = c
                .get(url)
                .header("host", host)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            server_of(&v)
        }
    };
    assert_eq!(at("www.example.com", "/").await, "node1");
    assert_eq!(at("STATIC.example.com:8080", "/anything").await, "node3");
    assert_eq!(at("www.example.com", "/api/users").await, "node2");
    assert_eq!(at("www.example.com", "/apix").await, "node1");
    assert_eq!(at("a.img.example.com", "/i/logo.png").await, "node3");
    assert_eq!(at("a.img.example.com", "/other").await, "node1");
}

#[tokio::test]
async fn an_upgrade_request_is_tunnelled_both_ways() {
    let n = nodes(1).await;
    let lb = Lb::start(&config(&n, "", "")).await;
    let mut s = tokio::net::TcpStream::connect(lb.addr).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut byte))
            .await
            .unwrap()
            .unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    for msg in [&b"hello"[..], b"second message", &[0u8, 255, 10, 13]] {
        s.write_all(msg).await.unwrap();
        let mut back = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back, msg);
    }
}

#[tokio::test]
async fn http2_cleartext_clients_are_served() {
    let n = nodes(1).await;
    let lb = Lb::start(&config(&n, "", "")).await;
    let c = h2_client();
    let res = c.get(lb.url("/h2")).send().await.unwrap();
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(server_of(&v), "node1");
    assert_eq!(v["headers"]["host"], lb.addr.to_string());
}

#[tokio::test]
async fn http2_cookies_reach_an_http1_server_as_one_header() {
    let n = nodes(1).await;
    let lb = Lb::start(&config(&n, "", "")).await;
    let c = h2_client();
    let res = c
        .get(lb.url("/"))
        .header("cookie", "a=1")
        .header("cookie", "JSESSIONID=X.node1")
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(
        v["cookie_headers"], 1,
        "the server got several Cookie fields"
    );
    assert_eq!(v["headers"]["cookie"], "a=1; JSESSIONID=X.node1");
}
