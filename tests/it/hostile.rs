//! Hostile clients: a client cannot take servers out of rotation, slow or
//! broken bodies fail only their own request, ambiguous requests get their
//! 4xx (raw sockets where a well-behaved client cannot send the bytes),
//! cookies are bytes, routes match normalized paths, and only trusted peers
//! may speak for the client.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

/// Sends `request` on a new connection and returns the response head (up to
/// the blank line), or what came before the server closed.
pub async fn raw_head(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    read_head(&mut s).await
}

async fn read_head(s: &mut tokio::net::TcpStream) -> String {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let end = Instant::now() + Duration::from_secs(10);
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && Instant::now() < end {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(k)) => head.extend_from_slice(&buf[..k]),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

fn status(head: &str) -> u16 {
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// 30 plain requests: every one must succeed; returns who answered.
async fn normal_traffic(lb: &Lb) -> HashMap<String, usize> {
    let c = client();
    let mut seen = HashMap::new();
    for _ in 0..30 {
        let (code, v) = get_json(&c, &lb.url("/static/x")).await;
        assert_eq!(code, 200, "{v}");
        *seen.entry(server_of(&v)).or_insert(0) += 1;
    }
    seen
}

#[tokio::test]
async fn a_malformed_or_abandoned_body_per_server_takes_no_server_out() {
    let n = nodes(3).await;
    // One worker, so one round-robin cursor (each worker has its own): the
    // three malformed bodies go to node1, node2 and node3 in some order,
    // and so do the three abandoned ones.
    let lb = Lb::start(&config(&n, "", "workers: 1\n")).await;
    for _ in 0..3 {
        let head = raw_head(
            lb.addr,
            b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz-not-a-size\r\n\r\n",
        )
        .await;
        assert_eq!(status(&head), 400, "{head}");
    }
    let reached = || n.iter().map(|n| n.requests()).sum::<u64>();
    for _ in 0..3 {
        let before = reached();
        let mut s = tokio::net::TcpStream::connect(lb.addr).await.unwrap();
        s.write_all(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n0123456789",
        )
        .await
        .unwrap();
        // The upload is under way on its server, then the client hangs up.
        assert!(
            eventually(Duration::from_secs(5), || async { reached() > before }).await,
            "the upload reached no server"
        );
        drop(s);
    }
    // Each server ended one request of each kind: a 400 and an abandoned
    // one (499).
    let ended = |node: &str| {
        let mut codes = live(&lb, "app", node).stats.by_code();
        codes.sort_unstable();
        codes
    };
    assert!(
        eventually(Duration::from_secs(5), || async {
            ["node1", "node2", "node3"]
                .iter()
                .all(|node| ended(node) == [(400, 1), (499, 1)])
        })
        .await,
        "per server, not one 400 and one 499: {:?}",
        ["node1", "node2", "node3"].map(ended)
    );
    for node in ["node1", "node2", "node3"] {
        assert!(live(&lb, "app", node).is_up(), "{node} is marked down");
    }
    let seen = normal_traffic(&lb).await;
    assert_eq!(seen.len(), 3, "a server was taken out: {seen:?}");
}

#[tokio::test]
async fn a_slow_600k_upload_outlasts_backend_response_and_succeeds() {
    let n = nodes(1).await;
    let lb = Lb::start(&config(&n, "", "timeouts:\n  backend_response: 2s\n")).await;
    // 60 chunks of 10 KB, one every 100 ms: 6 s of upload.
    let chunks = futures_stream(60, 10_000, Duration::from_millis(100));
    let res = client()
        .post(lb.url("/upload"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["body_bytes"], 600_000);
}

/// `count` chunks of `size` bytes, `every` apart: a slow client, whose
/// pauses are the scenario rather than a wait for something to happen.
fn futures_stream(
    count: usize,
    size: usize,
    every: Duration,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    futures_util::stream::unfold(0usize, move |i| async move {
        if i == count {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(every).await;
        }
        Some((Ok(vec![b'x'; size]), i + 1))
    })
}

#[tokio::test]
async fn a_client_that_pauses_past_client_body_gets_408_and_the_server_stays_up() {
    let n = nodes(2).await;
    let lb = Lb::start(&config(&n, "", "timeouts:\n  client_body: 300ms\n")).await;
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(lb.addr).await.unwrap();
        s.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
            .await
            .unwrap();
        let started = Instant::now();
        let head = read_head(&mut s).await;
        assert_eq!(status(&head), 408, "{head}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }
    let seen = normal_traffic(&lb).await;
    assert_eq!(seen.len(), 2, "a server was taken out: {seen:?}");
}

#[tokio::test]
async fn ambiguous_requests_get_their_status() {
    let n = nodes(1).await;
    let lb = Lb::start(&config(&n, "", "limits:\n  max_headers: 20\n")).await;
    let cases: &[(&[u8], u16)] = &[
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", 400),
        (b"GET foo HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            501,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n",
            501,
        ),
        (b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 405),
        // An absolute-form target's authority is held to Host's rules, and
        // HTTP/1.1 needs Host even then (RFC 9112 §3.2).
        (b"GET http://a:99999/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET http://a b/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET http://a/ HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.0\r\n\r\n", 200),
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 200),
    ];
    for (request, want) in cases {
        let head = raw_head(lb.addr, request).await;
        assert_eq!(
            status(&head),
            *want,
            "{}\n→ {head}",
            String::from_utf8_lossy(request)
        );
    }
    let many: String = (0..21).map(|i| format!("X-H{i}: v\r\n")).collect();
    let head = raw_head(
        lb.addr,
        format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status(&head), 431, "{head}");
    let enough: String = (0..19).map(|i| format!("X-H{i}: v\r\n")).collect();
    let head = raw_head(
        lb.addr,
        format!("GET / HTTP/1.1\r\nHost: a\r\n{enough}\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status(&head), 200, "{head}");
    // Only the well-formed requests reached the server.
    assert_eq!(n[0].requests(), 3);
}

#[tokio::test]
async fn an_absolute_form_target_routes_by_its_authority_and_the_server_sees_it() {
    let n = nodes(2).await;
    let yaml = format!(
        "listeners:\n  - name: http\n    bind: 127.0.0.1:1\n    pool: app\n    routes:\n      - {{ host: api.example, pool: api }}\npools:\n  app:\n    servers:\n      - {{ name: node1, address: \"{}\" }}\n  api:\n    servers:\n      - {{ name: node2, address: \"{}\" }}\n",
        n[0].addr(),
        n[1].addr()
    );
    let lb = Lb::start(&yaml).await;
    let out = raw(
        lb.addr,
        b"GET http://api.example/x HTTP/1.1\r\nHost: www.example\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let body = &out[out.find("\r\n\r\n").unwrap() + 4..];
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(server_of(&v), "node2");
    assert_eq!(v["headers"]["host"], "api.example");
    assert_eq!(v["path"], "/x");
}

#[tokio::test]
async fn an_http2_authority_that_disagrees_with_host_gets_400() {
    let n = nodes(1).await;
    let lb = Lb::start(&config(&n, "", "")).await;
    let send = |host: Option<&'static str>| {
        let addr = lb.addr;
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut sender, conn) = hyper::client::conn::http2::handshake(
                hyper_util::rt::TokioExecutor::new(),
                hyper_util::rt::TokioIo::new(tcp),
            )
            .await
            .unwrap();
            tokio::spawn(conn);
            let mut req = http::Request::builder().uri(format!("http://{addr}/"));
            if let Some(h) = host {
                req = req.header("host", h);
            }
            let res = sender
                .send_request(
                    req.body(http_body_util::Empty::<bytes::Bytes>::new())
                        .unwrap(),
                )
                .await
                .unwrap();
            res.status().as_u16()
        }
    };
    assert_eq!(send(None).await, 200);
    assert_eq!(send(Some("elsewhere.example")).await, 400);
}

#[tokio::test]
async fn cookies_with_non_ascii_bytes_reach_the_server_and_ours_is_removed() {
    let n = nodes(2).await;
    let lb = Lb::start(&sticky_config(
        &n,
        "    sticky:\n      mode: cookie\n",
        &[],
        "",
    ))
    .await;
    let mut req = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nCookie: SERVERID=node2; name=\xc3\xa9t\xc3\xa9\r\nCookie: other=\xff1\r\n\r\n".to_vec();
    let out = raw(lb.addr, &req, Duration::from_secs(5)).await;
    let body = &out[out.find("\r\n\r\n").unwrap() + 4..];
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(server_of(&v), "node2");
    let cookie = v["headers"]["cookie"].as_str().unwrap();
    assert!(cookie.contains("name=été"), "{cookie}");
    assert!(cookie.contains("other="), "{cookie}");
    assert!(!cookie.contains("SERVERID"), "{cookie}");
    // A jvm_route id next to a non-ASCII cookie is still found.
    let lb2 = Lb::start(&sticky_config(
        &n,
        "    sticky:\n      mode: jvm_route\n",
        &[],
        "",
    ))
    .await;
    req = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nCookie: x=\xc3\xa9\r\nCookie: JSESSIONID=ABC.node2\r\n\r\n".to_vec();
    let out = raw(lb2.addr, &req, Duration::from_secs(5)).await;
    let body = &out[out.find("\r\n\r\n").unwrap() + 4..];
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(server_of(&v), "node2");
    assert!(v["headers"]["cookie"].as_str().unwrap().contains("x=é"));
}

#[tokio::test]
async fn a_flood_of_unknown_ids_does_not_evict_sessions_servers_issued() {
    const CAPACITY: usize = 30;
    let n = nodes(3).await;
    let sticky = format!(
        "    sticky:\n      mode: learn\n      learn:\n        capacity: {CAPACITY}\n        persist: false\n"
    );
    let lb = Lb::start(&sticky_config(&n, &sticky, &[], "")).await;
    // CAPACITY real sessions, issued by the servers (Set-Cookie JSESSIONID).
    let mut browsers = Vec::new();
    for _ in 0..CAPACITY {
        let b = browser(None);
        let home = one_server(&servers_seen(&b, &lb.url("/"), 1).await);
        let (_, v) = get_json(&b, &lb.url("/")).await;
        let id = v["session"].as_str().unwrap().to_owned();
        browsers.push((b, home, id));
    }
    // A stranger sends 3× capacity invented ids (request_learn is on); one
    // more than a multiple of the 3 servers, so that round robin cannot send
    // an evicted session home by chance.
    let c = client();
    for i in 0..3 * CAPACITY + 1 {
        let res = c
            .get(lb.url("/static/x"))
            .header("cookie", format!("JSESSIONID=FLOOD{i:06}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    let snap = lb.limpet.as_ref().unwrap().snapshot();
    let pool = snap.pool("app").unwrap();
    let table = pool.sticky.learned().unwrap();
    assert!(
        table.len() <= (CAPACITY + CAPACITY / 4) as u64,
        "{}",
        table.len()
    );
    assert!(table.on_probation() <= (CAPACITY / 4) as u64);
    let limpet::sticky::Sticky::Learn(learn) = &pool.sticky else {
        unreachable!()
    };
    // Every server-issued session is still in the table and still sticks,
    // and the demo nodes created no new session.
    for (b, home, id) in &browsers {
        assert!(
            table.get(learn.key(id.as_bytes())).is_some(),
            "session {id} was evicted by the flood"
        );
        let (code, v) = get_json(b, &lb.url("/")).await;
        assert_eq!(code, 200);
        assert_eq!(&server_of(&v), home, "a real session moved");
        assert_eq!(v["new_session"], false);
    }
}

#[tokio::test]
async fn path_prefix_routes_match_the_normalized_path_and_forward_it_as_received() {
    let n = nodes(2).await;
    let yaml = format!(
        "listeners:\n  - name: http\n    bind: 127.0.0.1:1\n    pool: app\n    routes:\n      - {{ path_prefix: /admin/, pool: admin }}\npools:\n  app:\n    servers:\n      - {{ name: node1, address: \"{}\" }}\n  admin:\n    servers:\n      - {{ name: node2, address: \"{}\" }}\n",
        n[0].addr(),
        n[1].addr()
    );
    let lb = Lb::start(&yaml).await;
    for path in [
        "/admin/",
        "/x/../admin/",
        "//admin/",
        "/%61dmin/",
        "/admin;x/",
        "/./admin/a",
    ] {
        let out = raw(
            lb.addr,
            format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").as_bytes(),
            Duration::from_secs(5),
        )
        .await;
        let body = &out[out.find("\r\n\r\n").unwrap() + 4..];
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(server_of(&v), "node2", "{path} missed the /admin/ route");
        assert_eq!(v["path"], path, "forwarded as received");
    }
    let (_, v) = get_json(&client(), &lb.url("/administrator")).await;
    assert_eq!(server_of(&v), "node1");
}

#[tokio::test]
async fn forwarded_and_x_real_ip_from_an_untrusted_peer_are_removed() {
    let n = nodes(1).await;
    let lb = Lb::start(&config(&n, "", "trusted_proxies: [127.0.0.3]\n")).await;
    let send = |ip: [u8; 4]| {
        let url = lb.url("/");
        async move {
            let res = client_from(ip.into())
                .get(url)
                .header("forwarded", "for=6.6.6.6")
                .header("x-real-ip", "6.6.6.6")
                .send()
                .await
                .unwrap();
            res.json::<serde_json::Value>().await.unwrap()
        }
    };
    let v = send([127, 0, 0, 2]).await;
    assert!(v["headers"].get("forwarded").is_none(), "{v}");
    assert!(v["headers"].get("x-real-ip").is_none(), "{v}");
    let v = send([127, 0, 0, 3]).await;
    assert_eq!(v["headers"]["forwarded"], "for=6.6.6.6");
    assert_eq!(v["headers"]["x-real-ip"], "6.6.6.6");
}

#[tokio::test]
async fn http2_cookie_crumbs_with_non_ascii_bytes_are_joined_for_the_server() {
    let n = nodes(2).await;
    let lb = Lb::start(&sticky_config(
        &n,
        "    sticky:\n      mode: jvm_route\n",
        &[],
        "",
    ))
    .await;
    let res = h2_client()
        .get(lb.url("/"))
        .header(
            "cookie",
            http::HeaderValue::from_bytes(b"pref=\xc3\xa9").unwrap(),
        )
        .header("cookie", "JSESSIONID=ABC.node2")
        .header("cookie", "theme=dark")
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(server_of(&v), "node2");
    assert_eq!(v["cookie_headers"], 1);
    assert_eq!(
        v["headers"]["cookie"],
        "pref=é; JSESSIONID=ABC.node2; theme=dark"
    );
}

/// Requests in flight on the servers of pool `app`, as limpet counts them.
fn active(lb: &Lb, nodes: &[limpet_demo::DemoNode]) -> u32 {
    nodes
        .iter()
        .map(|n| live(lb, "app", n.route()).active())
        .sum()
}

#[tokio::test]
async fn a_client_gone_while_its_request_waits_frees_its_place_and_is_logged_499() {
    let n = nodes(2).await;
    let lb = Lb::start(&config(
        &n,
        "    balance: least_conn",
        "admin:\n  bind: 127.0.0.1:2\n",
    ))
    .await;

    // HTTP/1.1: the client closes its connection while the server thinks.
    let mut s = tokio::net::TcpStream::connect(lb.addr).await.unwrap();
    s.write_all(b"GET /slow?ms=4000 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(eventually(Duration::from_secs(5), || async { active(&lb, &n) == 1 }).await);
    drop(s);
    // Long before the server would have answered.
    assert!(
        eventually(Duration::from_secs(2), || async { active(&lb, &n) == 0 }).await,
        "the in-flight count stayed at {}",
        active(&lb, &n)
    );

    // HTTP/2: the client resets the stream (gives up after 300 ms).
    let h2 = h2_client();
    let gave_up = h2
        .get(lb.url("/slow?ms=4000"))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(gave_up.is_err());
    assert!(
        eventually(Duration::from_secs(2), || async { active(&lb, &n) == 0 }).await,
        "the in-flight count stayed at {}",
        active(&lb, &n)
    );

    // Both counted (and logged) as 499, on the server they waited for.
    let text = lb.metrics().await;
    let gone: f64 = n
        .iter()
        .map(|node| {
            metric(
                &text,
                "limpet_requests_total",
                &format!("pool=\"app\",server=\"{}\",code=\"499\"", node.route()),
            )
        })
        .sum();
    assert_eq!(gone, 2.0, "{text}");
    // The same HTTP/2 connection goes on serving.
    assert_eq!(h2.get(lb.url("/")).send().await.unwrap().status(), 200);
}

/// A server that answers every request at once, before (and while) reading
/// its body, and keeps the connection.
async fn answers_before_the_body() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut pending = Vec::new();
                loop {
                    let Ok(n) = s.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    pending.extend_from_slice(&buf[..n]);
                    // Every request head gets its answer at once; the bytes
                    // of bodies in between are read and dropped.
                    while let Some(at) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        pending.drain(..at + 4);
                        let body = br#"{"server":"eager"}"#;
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
                    pending.clear();
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_upload_still_going_after_its_answer_holds_up_no_other_request() {
    // The server answers a slow upload at once and keeps the connection:
    // that connection is not free until the upload ends, and the next
    // request must not wait for it.
    let server = answers_before_the_body().await;
    // One worker: both requests share its idle connections.
    let lb = Lb::start(&format!(
        "workers: 1\nlisteners:\n  - name: http\n    bind: 127.0.0.1:1\n    pool: app\nlog:\n  level: error\npools:\n  app:\n    servers:\n      - {{ name: eager, address: \"{server}\" }}\n"
    ))
    .await;
    // 6 chunks, one every 500 ms: the upload lasts 2.5 s.
    let upload = client()
        .post(lb.url("/upload"))
        .body(reqwest::Body::wrap_stream(futures_stream(
            6,
            1000,
            Duration::from_millis(500),
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 200);
    let t = Instant::now();
    let (status, _) = get_json(&client(), &lb.url("/next")).await;
    assert_eq!(status, 200);
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "the next request waited {:?} for the upload's connection",
        t.elapsed()
    );
}
