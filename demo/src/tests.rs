//! Tests of the demo node as scenarios: a raw HTTP/1.1 client (or hyper's
//! h2 client) talks to a real node on `127.0.0.1:0` and checks sessions,
//! special paths, stop/restart, reset mode and upgrades.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod raw;

use std::io;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::handlers::{push_json_str, strip_path_params};
use super::session::session_candidates;
use super::{DemoNode, NODE_HEADER};
use raw::{TIMEOUT, get, parse, send};

#[tokio::test]
async fn new_session_then_same_cookie_counts() {
    let node = DemoNode::start("node1").await.unwrap();
    let first = get(node.addr(), "/", "").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("content-type"), Some("application/json"));
    assert_eq!(first.header(NODE_HEADER), Some("node1"));
    let cookie = first.all("set-cookie");
    assert_eq!(cookie.len(), 1);
    assert!(
        cookie[0].ends_with(".node1; Path=/; HttpOnly"),
        "{cookie:?}"
    );
    let id = first.session_cookie().unwrap();
    let (hex, route) = id.split_once('.').unwrap();
    assert_eq!(route, "node1");
    assert_eq!(hex.len(), 32);
    assert!(
        hex.chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
    );
    let text = first.text();
    assert!(
        text.contains("\"counter\":1,\"new_session\":true"),
        "{text}"
    );
    assert!(text.starts_with("{\"server\":\"node1\""), "{text}");

    let second = get(
        node.addr(),
        "/x?q=1",
        &format!("Cookie: JSESSIONID={id}\r\n"),
    )
    .await;
    assert!(second.all("set-cookie").is_empty());
    let text = second.text();
    assert!(text.contains(&format!("\"session\":\"{id}\"")), "{text}");
    assert!(
        text.contains("\"counter\":2,\"new_session\":false"),
        "{text}"
    );
    assert!(text.contains("\"path\":\"/x?q=1\""), "{text}");

    // Path parameter, and an unknown cookie before the known one.
    let third = get(
        node.addr(),
        &format!("/a;JSESSIONID={id}?q=2"),
        "Cookie: JSESSIONID=DEADBEEF.node1\r\n",
    )
    .await;
    assert!(third.text().contains("\"counter\":3"), "{}", third.text());
    assert_eq!(node.requests(), 3);
    assert_eq!(node.in_flight(), 0);
    assert_eq!(node.session_count(), 1);
}

#[tokio::test]
async fn body_and_headers_in_json() {
    let node = DemoNode::start("node1").await.unwrap();
    let resp = send(
        node.addr(),
        "POST /p HTTP/1.1\r\nHost: demo\r\nX-Q: a\"b\\c\r\nX-M: 1\r\nX-M: 2\r\n\
         Cookie: a=1\r\nCookie: b=2\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    )
    .await
    .unwrap();
    let text = resp.text();
    assert!(text.contains("\"method\":\"POST\""), "{text}");
    assert!(text.contains("\"body_bytes\":3,\"body_sum\":294"), "{text}");
    assert!(text.contains("\"x-q\":\"a\\\"b\\\\c\""), "{text}");
    assert!(text.contains("\"x-m\":\"1, 2\""), "{text}");
    assert!(text.contains("\"cookie\":\"a=1; b=2\""), "{text}");
    assert!(text.contains("\"host\":\"demo\""), "{text}");
}

#[test]
fn json_escaping() {
    let mut out = String::new();
    push_json_str(&mut out, "a\"\\\n\u{1}é");
    assert_eq!(out, "\"a\\\"\\\\\\u000A\\u0001é\"");
}

#[test]
fn candidates_and_paths() {
    let mut headers = HeaderMap::new();
    headers.append(
        header::COOKIE,
        HeaderValue::from_static("x=1; JSESSIONID=A.n1"),
    );
    headers.append(header::COOKIE, HeaderValue::from_static("JSESSIONID=B.n2"));
    let c = session_candidates(&headers, "/a;jsessionid=C.n3/b;JsessionId=D;x=1");
    assert_eq!(c, ["A.n1", "B.n2", "C.n3", "D"]);
    assert_eq!(strip_path_params("/slow;jsessionid=X"), "/slow");
    assert_eq!(strip_path_params("/a;x=1/b"), "/a/b");
}

#[tokio::test]
async fn stop_refuses_then_restart_serves_with_sessions() {
    let node = DemoNode::start("node1").await.unwrap();
    let id = get(node.addr(), "/", "").await.session_cookie().unwrap();
    let mut idle = TcpStream::connect(node.addr()).await.unwrap();
    node.stop().await;
    assert!(!node.is_running());
    let err = TcpStream::connect(node.addr()).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    // The open connection was closed too.
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(TIMEOUT, idle.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");

    node.restart().await.unwrap();
    let resp = get(node.addr(), "/", &format!("Cookie: JSESSIONID={id}\r\n")).await;
    assert!(resp.text().contains("\"counter\":2"), "{}", resp.text());

    node.stop().await;
    node.forget_sessions();
    node.restart().await.unwrap();
    let resp = get(node.addr(), "/", &format!("Cookie: JSESSIONID={id}\r\n")).await;
    assert!(
        resp.text().contains("\"new_session\":true"),
        "{}",
        resp.text()
    );
    assert_ne!(resp.session_cookie().unwrap(), id);
}

#[tokio::test]
async fn reset_mode_resets() {
    let node = DemoNode::start("node1").await.unwrap();
    node.set_reset_mode(true);
    let err = send(node.addr(), "GET / HTTP/1.1\r\nHost: demo\r\n\r\n")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err:?}");
    assert_eq!(node.requests(), 0);
    node.set_reset_mode(false);
    assert_eq!(get(node.addr(), "/", "").await.status, 200);
    assert_eq!(node.requests(), 1);
}

#[tokio::test]
async fn health_status_switch() {
    let node = DemoNode::start("node1").await.unwrap();
    let ok = get(node.addr(), "/health", "").await;
    assert_eq!((ok.status, ok.text().as_str()), (200, "ok"));
    node.set_health(503);
    let fail = get(node.addr(), "/health", "").await;
    assert_eq!((fail.status, fail.text().as_str()), (503, "fail"));
    assert_eq!(node.health_checks(), 2);
    assert_eq!(node.requests(), 0);
}

#[tokio::test]
async fn cluster_re_suffixes_sessions() {
    let nodes = DemoNode::start_cluster(&["node1", "node2"]).await.unwrap();
    let id = get(nodes[0].addr(), "/", "")
        .await
        .session_cookie()
        .unwrap();
    let hex = id.split('.').next().unwrap().to_owned();

    let on2 = get(
        nodes[1].addr(),
        "/",
        &format!("Cookie: JSESSIONID={id}\r\n"),
    )
    .await;
    assert_eq!(on2.session_cookie().unwrap(), format!("{hex}.node2"));
    let text = on2.text();
    assert!(text.contains("\"server\":\"node2\""), "{text}");
    assert!(
        text.contains("\"counter\":2,\"new_session\":false"),
        "{text}"
    );

    let back = get(
        nodes[0].addr(),
        "/",
        &format!("Cookie: JSESSIONID={hex}.node2\r\n"),
    )
    .await;
    assert_eq!(back.session_cookie().unwrap(), format!("{hex}.node1"));
    assert!(back.text().contains("\"counter\":3"), "{}", back.text());

    // A standalone node does not know the cluster's sessions.
    let alone = DemoNode::start("node3").await.unwrap();
    let other = get(alone.addr(), "/", &format!("Cookie: JSESSIONID={id}\r\n")).await;
    assert!(other.text().contains("\"new_session\":true"));
}

#[tokio::test]
async fn logout_expires_session() {
    let node = DemoNode::start("node1").await.unwrap();
    let id = get(node.addr(), "/", "").await.session_cookie().unwrap();
    let out = get(
        node.addr(),
        "/logout",
        &format!("Cookie: JSESSIONID={id}\r\n"),
    )
    .await;
    assert_eq!(
        out.all("set-cookie"),
        [format!(
            "JSESSIONID={id}; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
        )]
    );
    assert_eq!(node.session_count(), 0);
    let again = get(node.addr(), "/", &format!("Cookie: JSESSIONID={id}\r\n")).await;
    assert!(again.text().contains("\"new_session\":true"));
}

#[tokio::test]
async fn special_paths() {
    let node = DemoNode::start("node1").await.unwrap();
    let addr = node.addr();

    let stream = get(addr, "/stream?chunks=3&size=5", "").await;
    assert_eq!(stream.status, 200);
    assert_eq!(stream.header("transfer-encoding"), Some("chunked"));
    assert_eq!(stream.body, b"x".repeat(15));

    let echo = send(
        addr,
        "POST /echo HTTP/1.1\r\nHost: demo\r\nContent-Type: text/odd\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(echo.header("content-type"), Some("text/odd"));
    assert_eq!(echo.body, b"hello");

    let cookies = get(addr, "/set-cookies", "").await;
    let all = cookies.all("set-cookie");
    assert_eq!(all.len(), 3, "{all:?}");
    assert_eq!(&all[1..], ["a=1; Path=/", "b=2; Path=/"]);

    let teapot = get(addr, "/status/418", "").await;
    assert_eq!(teapot.status, 418);
    assert!(teapot.text().contains("\"session\":"));
    assert_eq!(get(addr, "/status/abc", "").await.status, 400);
    assert_eq!(get(addr, "/status/204", "").await.status, 204);
}

#[tokio::test]
async fn slow_counts_in_flight() {
    let node = DemoNode::start("node1").await.unwrap();
    let addr = node.addr();
    let slow = tokio::spawn(async move { get(addr, "/slow?ms=300", "").await });
    tokio::time::timeout(TIMEOUT, async {
        while node.in_flight() != 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    let resp = slow.await.unwrap();
    assert!(resp.text().contains("\"counter\":1"));
    assert_eq!(node.in_flight(), 0);
}

#[tokio::test]
async fn upgrade_echoes_bytes() {
    let node = DemoNode::start("node1").await.unwrap();
    tokio::time::timeout(TIMEOUT, async {
        let mut stream = TcpStream::connect(node.addr()).await.unwrap();
        stream
            .write_all(
                b"GET /ws HTTP/1.1\r\nHost: demo\r\nUpgrade: websocket\r\n\
                  Connection: Upgrade\r\n\r\n",
            )
            .await
            .unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        let resp = parse(&head);
        assert_eq!(resp.status, 101);
        assert_eq!(resp.header("upgrade"), Some("websocket"));
        assert_eq!(resp.header("connection"), Some("upgrade"));
        stream.write_all(b"ping!").await.unwrap();
        let mut buf = [0u8; 5];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping!");
        stream.shutdown().await.unwrap();
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    })
    .await
    .unwrap();
}

/// An HTTP/2 (prior knowledge) connection to `node`, driven by a task.
async fn h2(
    node: &DemoNode,
) -> (
    hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
) {
    let stream = TcpStream::connect(node.addr()).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .unwrap();
    (send, tokio::spawn(conn))
}

#[tokio::test]
async fn h2c_prior_knowledge() {
    let node = DemoNode::start("node1").await.unwrap();
    tokio::time::timeout(TIMEOUT, async {
        let (mut send, _conn) = h2(&node).await;
        let req = Request::get(format!("http://{}/h2?x=1", node.addr()))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), Version::HTTP_2);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("\"path\":\"/h2?x=1\""), "{text}");
        assert!(text.contains("\"host\":\"127.0.0.1:"), "{text}");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_closes_upgraded_and_busy_connections() {
    let node = DemoNode::start("node1").await.unwrap();
    let addr = node.addr();
    let mut upgraded = TcpStream::connect(addr).await.unwrap();
    upgraded
        .write_all(b"GET / HTTP/1.1\r\nHost: demo\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(TIMEOUT, upgraded.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 101"));
    let slow =
        tokio::spawn(
            async move { send(addr, "GET /slow?ms=5000 HTTP/1.1\r\nHost: d\r\n\r\n").await },
        );
    tokio::time::timeout(TIMEOUT, async {
        while node.in_flight() != 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    node.stop().await;
    assert_eq!(node.in_flight(), 0);
    let read = tokio::time::timeout(TIMEOUT, upgraded.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // The slow request's connection was closed without an answer.
    assert!(slow.await.unwrap().is_err());
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_mode_resets_h2_connection() {
    let node = DemoNode::start("node1").await.unwrap();
    tokio::time::timeout(TIMEOUT, async {
        let (mut send, conn) = h2(&node).await;
        let req = || {
            Request::get(format!("http://{}/", node.addr()))
                .body(Empty::<Bytes>::new())
                .unwrap()
        };
        assert_eq!(send.send_request(req()).await.unwrap().status(), 200);
        node.set_reset_mode(true);
        assert!(send.send_request(req()).await.is_err());
        assert!(conn.await.unwrap().is_err());
    })
    .await
    .unwrap();
    assert_eq!(node.requests(), 1);
}

#[tokio::test]
async fn the_control_port_stops_and_starts_a_node() {
    let nodes = std::sync::Arc::new(vec![
        DemoNode::start("node1").await.unwrap(),
        DemoNode::start("node2").await.unwrap(),
    ]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let control = listener.local_addr().unwrap();
    let task = tokio::spawn(super::control::serve_control(
        listener,
        std::sync::Arc::clone(&nodes),
    ));
    let post = |path: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: demo\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
    };
    let r = send(control, &post("/nodes/node2/stop")).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!nodes[1].is_running());
    assert!(
        TcpStream::connect(nodes[1].addr()).await.is_err(),
        "refused like a dead JVM"
    );
    let listing = get(control, "/nodes", "").await.text();
    assert!(
        listing.contains("node2") && listing.contains("stopped"),
        "{listing}"
    );
    let r = send(control, &post("/nodes/node2/start")).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(nodes[1].is_running());
    assert_eq!(get(nodes[1].addr(), "/", "").await.status, 200);
    let r = send(control, &post("/nodes/node9/stop")).await.unwrap();
    assert_eq!(r.status, 404);
    task.abort();
}
