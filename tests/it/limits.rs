//! Timeouts and limits: 504 for a slow server, 408 for a trickled header,
//! 431 for a huge header, idle keep-alive connections closed, the
//! connection limit.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

#[tokio::test]
async fn a_slow_server_gives_504() {
    let n = nodes(1).await;
    let lb = Lb::start(&config(&n, "", "timeouts:\n  backend_response: 300ms\n")).await;
    let started = Instant::now();
    let res = client().get(lb.url("/slow?ms=3000")).send().await.unwrap();
    assert_eq!(res.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(2));
    // A fast request on the same server still works.
    assert_eq!(
        client().get(lb.url("/")).send().await.unwrap().status(),
        200
    );
}

/// `backend_response` counts from each request on a kept-alive
/// connection: a later request is not held to an earlier one's deadline,
/// and a slow one still gets 504 in time.
#[tokio::test]
async fn backend_response_counts_from_each_request_on_a_kept_alive_connection() {
    let n = nodes(1).await;
    let lb = Lb::start(&config(&n, "", "timeouts:\n  backend_response: 600ms\n")).await;
    let mut s = tokio::net::TcpStream::connect(lb.addr).await.unwrap();
    let mut get = async |path: &str| {
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        read_response(&mut s).await
    };
    assert!(get("/").await.starts_with("HTTP/1.1 200"));
    // The first request's deadline passes while this one is answered
    // (400 + 400 ms > 600 ms), within its own.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(get("/slow?ms=400").await.starts_with("HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(get("/slow?ms=300").await.starts_with("HTTP/1.1 200"));
    let started = Instant::now();
    assert!(get("/slow?ms=3000").await.starts_with("HTTP/1.1 504"));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(550) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

/// One response head and its `Content-Length` body from `s`, as text.
async fn read_response(s: &mut tokio::net::TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if got.len() >= end + 4 + len {
                return String::from_utf8_lossy(&got).into_owned();
            }
        }
        assert!(Instant::now() < deadline, "no whole response: {got:?}");
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn a_trickled_header_gets_408_and_the_connection_is_cut() {
    let n = nodes(1).await;
    let lb = Lb::start(&config(&n, "", "timeouts:\n  request_header: 300ms\n")).await;
    let s = tokio::net::TcpStream::connect(lb.addr).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    wr.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    // Slowloris: one more header byte every 50 ms, never the end of the
    // header. The deadline counts from the first byte, so it still holds.
    let trickle = tokio::spawn(async move {
        for b in b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
            if wr.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut out = Vec::new();
    let reader = async {
        let mut buf = [0u8; 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(k) => out.extend_from_slice(&buf[..k]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .unwrap();
    trickle.abort();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(n[0].requests(), 0);
}

#[tokio::test]
async fn a_keep_alive_connection_may_idle_longer_than_the_header_timeout() {
    let n = nodes(1).await;
    let lb = Lb::start(&config(
        &n,
        "",
        "timeouts:\n  request_header: 200ms\n  client_idle: 5s\n",
    ))
    .await;
    let mut s = tokio::net::TcpStream::connect(lb.addr).await.unwrap();
    let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    for _ in 0..2 {
        s.write_all(req).await.unwrap();
        let mut buf = vec![0u8; 65536];
        let k = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(buf[..k].starts_with(b"HTTP/1.1 200"));
        // idle longer than request_header, less than client_idle
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_client_idle() {
    let n = nodes(1).await;
    let lb = Lb::start(&config(&n, "", "timeouts:\n  client_idle: 300ms\n")).await;
    let mut s = tokio::net::TcpStream::connect(lb.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let k = s.read(&mut buf).await.unwrap();
    assert!(buf[..k].starts_with(b"HTTP/1.1 200"));
    let started = Instant::now();
    let k = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(k, 0, "expected the idle connection to be closed");
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn a_huge_header_gets_431() {
    let n = nodes(1).await;
    let lb = Lb::start(&config(&n, "", "limits:\n  max_header_bytes: 16384\n")).await;
    let big = "a".repeat(20_000);
    let res = client()
        .get(lb.url("/"))
        .header("x-big", &big)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 431);
    // Past hyper's read buffer too: a 100 KB header, over a raw socket,
    // because limpet may answer and close while the request is still being
    // written (a reqwest error there would hide whether 431 came back).
    let (answer, end) = huge_header_answer(lb.addr, 100_000).await;
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "expected a 431 for a 100 KB header, got {:?} ({end})",
        answer.get(..200).unwrap_or(&answer)
    );
    // A normal request is fine.
    assert_eq!(
        client()
            .get(lb.url("/"))
            .header("x-small", "1")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(n[0].requests(), 1);
}

#[tokio::test]
async fn a_malformed_request_gets_400() {
    let n = nodes(1).await;
    let lb = Lb::start(&config(&n, "", "")).await;
    let out = raw(
        lb.addr,
        b"GET / HTTP/1.1\r\nHost: x\r\nbad header line\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert_eq!(n[0].requests(), 0);
}

#[tokio::test]
async fn connections_beyond_max_connections_wait_for_a_free_slot() {
    let n = nodes(1).await;
    let lb = Lb::start(&config(&n, "", "limits:\n  max_connections: 1\n")).await;
    // The first connection holds the only slot with a slow request.
    let slow_url = lb.url("/slow?ms=800");
    let first = tokio::spawn(async move {
        client()
            .get(slow_url)
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    assert!(eventually(Duration::from_secs(5), || async { n[0].in_flight() == 1 }).await);
    let started = Instant::now();
    let res = client().get(lb.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(first.await.unwrap().unwrap(), 200);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "second connection was served while the limit was reached"
    );
}

/// A connection that waits for a slot (accepted by a worker, or still in
/// the kernel's queue of its socket) when limpet stops is answered once
/// the slot frees up: a connection accepted and then closed unanswered,
/// or reset with the socket it was queued in, would fail a client that
/// did nothing wrong, and an upgrade stops the old process the same way.
#[tokio::test]
async fn a_connection_waiting_for_a_slot_is_answered_when_limpet_stops() {
    let n = nodes(1).await;
    let lb = Lb::start(&config(&n, "", "limits:\n  max_connections: 1\n")).await;
    let slow_url = lb.url("/slow?ms=800");
    let first = tokio::spawn(async move {
        client()
            .get(slow_url)
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    assert!(eventually(Duration::from_secs(5), || async { n[0].in_flight() == 1 }).await);
    // Connected (the kernel completed the handshake) and the request sent:
    // it waits for the slot.
    let mut waiting = tokio::net::TcpStream::connect(lb.addr).await.unwrap();
    waiting
        .write_all(b"GET /waiting HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = tokio::spawn(async move {
        let mut got = Vec::new();
        let read = waiting.read_to_end(&mut got).await;
        (
            read.map_err(|e| e.kind()),
            String::from_utf8_lossy(&got).into_owned(),
        )
    });
    lb.shutdown().await;
    assert_eq!(first.await.unwrap().unwrap(), 200);
    let (read, text) = answer.await.unwrap();
    assert!(
        read.is_ok() && text.starts_with("HTTP/1.1 200"),
        "{read:?}: {text:?}"
    );
}

/// Sends a request head with a `header_len`-byte header over a raw socket
/// and returns what limpet answers within 5 s, and how the read ended. The
/// write runs in a task and its errors are ignored: limpet may answer and
/// close, even reset, the connection before the client has written
/// everything. A read that fails before any byte of an answer arrived
/// fails the test.
async fn huge_header_answer(addr: std::net::SocketAddr, header_len: usize) -> (String, String) {
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let mut head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    head.resize(head.len() + header_len, b'b');
    head.extend_from_slice(b"\r\n\r\n");
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&head).await;
        // Keep the write half open (no FIN) until the answer is read.
        wr
    });
    let mut out = Vec::new();
    let reader = async {
        let mut buf = [0u8; 4096];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) => return "closed".to_owned(),
                Ok(k) => out.extend_from_slice(&buf[..k]),
                // A reset after the answer (limpet closed with part of the
                // request unread) is fine; one before it is not.
                Err(e) if out.is_empty() => panic!("no answer, the read failed: {e}"),
                Err(e) => return format!("then {e}"),
            }
        }
    };
    let end = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .unwrap_or_else(|_| "no close within 5 s".to_owned());
    writer.abort();
    (String::from_utf8_lossy(&out).into_owned(), end)
}
