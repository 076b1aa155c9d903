//! HTTP/1.1 on the wire (RFC 9112), black box: raw bytes written to
//! limpet over TCP, responses parsed minimally (status line, fields, body
//! by Content-Length, chunked or close), and where the scenario needs a
//! server that behaves in a particular way, a raw server written here (a
//! task on 127.0.0.1:0 that reads request heads and writes canned bytes).
//! The behaviours pinned here hold for both engines (`http1: limpet`, the
//! default, and `http1: hyper`, the fallback CI runs too). A test that
//! begins with [`limpet_engine_only`] pins what RFC 9110/9112 require and
//! hyper's path does not do; its reason says what hyper's path does.
//!
//! Already pinned on the wire elsewhere, so not repeated here:
//! * a large body both ways (8 MiB, compared byte for byte):
//!   `forwarding::a_large_post_body_reaches_the_server_intact_and_echoes_back`;
//! * hop-by-hop request fields (those `Connection` names, `Keep-Alive`,
//!   `TE`, `Proxy-Connection`) kept from the server:
//!   `forwarding::hop_by_hop_headers_are_removed_in_both_directions` (the
//!   request direction only; the response direction is here);
//! * `X-Forwarded-For` gets the client appended:
//!   `forwarding::host_is_preserved_and_forwarded_headers_are_set`;
//! * an absolute-form target routes by its authority, which the server gets
//!   as `Host`: `hostile::an_absolute_form_target_routes_by_its_authority_and_the_server_sees_it`
//!   (the request line the server reads is checked here);
//! * an upgrade to a server that answers 101 becomes a tunnel both ways:
//!   `forwarding::an_upgrade_request_is_tunnelled_both_ways` (bytes that
//!   come with the server's 101 are checked here);
//! * a server that resets or closes a GET's connection before answering:
//!   the request moves to another server and the client sees 200:
//!   `failover::a_server_that_resets_connections_mid_request_loses_no_request`
//!   and `failover::a_kept_alive_connection_closed_as_the_request_goes_out_blames_no_server`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::harness::*;

/// The longest any read (or any report from a test server) is waited for.
const WAIT: Duration = Duration::from_secs(5);

/// No message a test exchanges is larger: a peer that sends more fails
/// the read instead of filling memory.
const MAX_BUFFERED: usize = 16 << 20;

/// A start line and its fields, as received.
#[derive(Debug, Clone)]
struct Head {
    line: String,
    /// Names as sent; values with surrounding whitespace trimmed.
    fields: Vec<(String, String)>,
}

impl Head {
    fn parse(bytes: &[u8]) -> Head {
        let text = String::from_utf8_lossy(bytes);
        let mut lines = text.split("\r\n");
        let line = lines.next().unwrap_or_default().to_owned();
        let fields = lines
            .filter(|l| !l.is_empty())
            .map(|l| match l.split_once(':') {
                Some((n, v)) => (n.to_owned(), v.trim_matches([' ', '\t']).to_owned()),
                None => (l.to_owned(), String::new()),
            })
            .collect();
        Head { line, fields }
    }

    /// The first value of field `name` (any case).
    fn get(&self, name: &str) -> Option<&str> {
        self.all(name).into_iter().next()
    }

    /// Every value of field `name` (any case), in order.
    fn all(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Does field `name` list `token` (comma-separated, any case)?
    fn lists(&self, name: &str, token: &str) -> bool {
        self.all(name)
            .iter()
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// The status code of a response's start line (0 if none).
    fn status(&self) -> u16 {
        status_of(&self.line)
    }

    fn method(&self) -> &str {
        self.line.split(' ').next().unwrap_or_default()
    }

    fn target(&self) -> &str {
        self.line.split(' ').nth(1).unwrap_or_default()
    }

    fn chunked(&self) -> bool {
        self.lists("transfer-encoding", "chunked")
    }

    fn content_length(&self) -> Option<usize> {
        self.get("content-length").map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("bad Content-Length {v:?}"))
        })
    }
}

/// One message: its head, its decoded body and its trailer fields.
#[derive(Debug, Clone)]
struct Message {
    head: Head,
    body: Vec<u8>,
    trailers: Vec<(String, String)>,
}

impl Message {
    fn status(&self) -> u16 {
        self.head.status()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {:?}\n{:?}",
                String::from_utf8_lossy(&self.body),
                self.head
            )
        })
    }
}

/// How a body ends (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy)]
enum Framing {
    None,
    Length(usize),
    Chunked,
    Close,
}

/// One side of a TCP connection with what it has read and not used yet.
/// Every read waits [`WAIT`] at most; the reading methods answer `None`
/// when the peer closed, reset or said nothing for that long, and the
/// caller decides whether that fails the test.
struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
    /// The peer closed or reset the connection (not merely went quiet).
    eof: bool,
}

impl Conn {
    async fn connect(addr: SocketAddr) -> Conn {
        let s = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .unwrap();
        Conn::new(s)
    }

    fn new(s: TcpStream) -> Conn {
        Conn {
            s,
            buf: Vec::new(),
            eof: false,
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        tokio::time::timeout(WAIT, self.s.write_all(bytes))
            .await
            .expect("write timed out")
            .unwrap();
    }

    /// Reads once more: the number of bytes, `None` at the end (closed,
    /// reset, or nothing within [`WAIT`]).
    async fn fill(&mut self) -> Option<usize> {
        assert!(
            self.buf.len() < MAX_BUFFERED,
            "more than {MAX_BUFFERED} bytes unread"
        );
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout(WAIT, self.s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                self.eof = true;
                None
            }
            Err(_) => None,
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Some(n)
            }
        }
    }

    /// The bytes up to and including `delim`, taken from the buffer.
    async fn until(&mut self, delim: &[u8]) -> Option<Vec<u8>> {
        loop {
            if let Some(at) = find(&self.buf, delim) {
                return Some(self.buf.drain(..at + delim.len()).collect());
            }
            self.fill().await?;
        }
    }

    /// The next `n` bytes.
    async fn exact(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            self.fill().await?;
        }
        Some(self.buf.drain(..n).collect())
    }

    /// Everything until the peer closes.
    async fn rest_until_close(&mut self) -> Vec<u8> {
        while self.fill().await.is_some() {}
        std::mem::take(&mut self.buf)
    }

    /// The next head (start line and fields); `None` if the peer closed
    /// before a whole one came.
    async fn head(&mut self) -> Option<Head> {
        let bytes = self.until(b"\r\n\r\n").await?;
        Some(Head::parse(&bytes[..bytes.len() - 4]))
    }

    /// A chunked body: the data, decoded, and the trailer fields.
    async fn chunked(&mut self) -> Option<(Vec<u8>, Vec<(String, String)>)> {
        let mut data = Vec::new();
        // Bounded: every chunk but the last adds at least a byte, and
        // `fill` refuses more than MAX_BUFFERED.
        loop {
            let line = self.until(b"\r\n").await?;
            let line = String::from_utf8_lossy(&line[..line.len() - 2]).into_owned();
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16)
                .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
            if size == 0 {
                break;
            }
            assert!(data.len() + size <= MAX_BUFFERED, "chunked body too large");
            data.extend(self.exact(size).await?);
            assert_eq!(
                self.exact(2).await?,
                b"\r\n",
                "chunk data not followed by CRLF"
            );
        }
        let mut trailers = Vec::new();
        loop {
            let line = self.until(b"\r\n").await?;
            if line.len() == 2 {
                return Some((data, trailers));
            }
            trailers.extend(Head::parse(&[&b"-\r\n"[..], &line[..]].concat()).fields);
        }
    }

    /// A body framed as `framing` says.
    async fn body(&mut self, framing: Framing) -> Option<(Vec<u8>, Vec<(String, String)>)> {
        match framing {
            Framing::None => Some((Vec::new(), Vec::new())),
            Framing::Length(n) => Some((self.exact(n).await?, Vec::new())),
            Framing::Chunked => self.chunked().await,
            Framing::Close => Some((self.rest_until_close().await, Vec::new())),
        }
    }

    /// The next request (a server's read); `None` once the peer is gone.
    async fn request(&mut self) -> Option<Message> {
        let head = self.head().await?;
        let framing = if head.chunked() {
            Framing::Chunked
        } else {
            head.content_length().map_or(Framing::None, Framing::Length)
        };
        let (body, trailers) = self.body(framing).await?;
        Some(Message {
            head,
            body,
            trailers,
        })
    }

    /// The next response, interim or final, to a request with `method`.
    /// Fails the test if none comes whole within [`WAIT`] a read.
    async fn response(&mut self, method: &str) -> Message {
        let head = self.head().await.unwrap_or_else(|| {
            panic!(
                "no response head; unread: {:?}",
                String::from_utf8_lossy(&self.buf)
            )
        });
        let status = head.status();
        let framing =
            if method == "HEAD" || (100..200).contains(&status) || status == 204 || status == 304 {
                Framing::None
            } else if head.chunked() {
                Framing::Chunked
            } else if let Some(n) = head.content_length() {
                Framing::Length(n)
            } else {
                Framing::Close
            };
        let (body, trailers) = self
            .body(framing)
            .await
            .unwrap_or_else(|| panic!("the body ({framing:?}) of {head:?} was cut short"));
        Message {
            head,
            body,
            trailers,
        }
    }

    /// The interim (1xx) responses before the final one, and the final one.
    async fn final_response(&mut self, method: &str) -> (Vec<Message>, Message) {
        let mut interim = Vec::new();
        // Bounded: a server would need 10 interim responses to get past.
        for _ in 0..10 {
            let res = self.response(method).await;
            if (100..200).contains(&res.status()) {
                interim.push(res);
            } else {
                return (interim, res);
            }
        }
        panic!("more than 10 interim responses: {interim:?}");
    }

    /// Did the peer close (or reset) the connection, with nothing more to
    /// read, within [`WAIT`]?
    async fn closed(&mut self) -> bool {
        self.buf.is_empty() && self.fill().await.is_none() && self.eof
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A raw server on 127.0.0.1:0 that runs `serve` on every connection it
/// accepts, for as long as the test runs.
async fn server<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(Conn) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = Arc::new(serve);
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(serve(Conn::new(s)));
        }
    });
    addr
}

/// A raw server that answers every request it reads with the bytes
/// `answer` gives for it (closing the connection after an
/// [`Answer::close`]), and reports the requests it read.
async fn canned<F>(answer: F) -> (SocketAddr, mpsc::UnboundedReceiver<Message>)
where
    F: Fn(&Message) -> Answer + Send + Sync + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let answer = Arc::new(answer);
    let addr = server(move |mut conn| {
        let (tx, answer) = (tx.clone(), Arc::clone(&answer));
        async move {
            while let Some(req) = conn.request().await {
                let Answer { bytes, close } = answer(&req);
                let _ = tx.send(req);
                if conn.s.write_all(&bytes).await.is_err() || close {
                    return;
                }
            }
        }
    })
    .await;
    (addr, rx)
}

/// What a [`canned`] server writes for a request.
struct Answer {
    bytes: Vec<u8>,
    /// Close the connection once written.
    close: bool,
}

impl Answer {
    fn keep(bytes: impl AsRef<[u8]>) -> Answer {
        Answer {
            bytes: bytes.as_ref().to_vec(),
            close: false,
        }
    }

    fn close(bytes: impl AsRef<[u8]>) -> Answer {
        Answer {
            bytes: bytes.as_ref().to_vec(),
            close: true,
        }
    }
}

/// `200 OK` with `body` and its Content-Length.
fn ok(body: &str) -> Answer {
    Answer::keep(format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ))
}

/// The next request a test server reported.
async fn seen(rx: &mut mpsc::UnboundedReceiver<Message>) -> Message {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("the server read no request")
        .expect("the server is gone")
}

/// limpet with one listener and pool `app` of this one server.
async fn lb_for(server: SocketAddr) -> Lb {
    Lb::start(&format!(
        "listeners:\n  - name: http\n    bind: 127.0.0.1:1\n    pool: app\nlog:\n  level: error\npools:\n  app:\n    servers:\n      - {{ name: raw, address: \"{server}\" }}\n"
    ))
    .await
}

/// A GET of `path` on an HTTP/1.1 connection that stays open.
fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")
}

#[tokio::test]
async fn three_pipelined_gets_get_three_responses_in_order_on_one_connection() {
    let n = nodes(1).await;
    let lb = Lb::start(&config(&n, "", "")).await;
    let mut c = Conn::connect(lb.addr).await;
    c.send(format!("{}{}{}", get("/one"), get("/two"), get("/three")).as_bytes())
        .await;
    for path in ["/one", "/two", "/three"] {
        let res = c.response("GET").await;
        assert_eq!(res.status(), 200, "{res:?}");
        let v = res.json();
        assert_eq!(v["path"], path, "out of order");
        assert_eq!(server_of(&v), "node1");
    }
    assert_eq!(n[0].requests(), 3);
    // The connection goes on.
    c.send(get("/four").as_bytes()).await;
    assert_eq!(c.response("GET").await.json()["path"], "/four");
}

#[tokio::test]
async fn a_pipelined_post_body_ends_where_its_content_length_says() {
    let n = nodes(1).await;
    let lb = Lb::start(&config(&n, "", "")).await;
    let mut c = Conn::connect(lb.addr).await;
    // The body holds what looks like a request: it is body all the same.
    let body = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    c.send(
        format!(
            "{}POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}{}",
            get("/before"),
            body.len(),
            get("/after")
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(c.response("GET").await.json()["path"], "/before");
    let v = c.response("POST").await.json();
    assert_eq!(v["path"], "/upload");
    assert_eq!(v["body_bytes"], body.len());
    assert_eq!(c.response("GET").await.json()["path"], "/after");
    assert_eq!(n[0].requests(), 3);
}

#[tokio::test]
async fn a_post_expecting_100_continue_gets_it_then_its_body_reaches_the_server() {
    let n = nodes(1).await;
    let lb = Lb::start(&config(&n, "", "")).await;
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let mut c = Conn::connect(lb.addr).await;
    c.send(
        format!(
            "POST /upload HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await;
    // The body waits for the go-ahead, from limpet or from the server.
    // Today hyper's server sends it as soon as the body is wanted, once
    // the head is on its way to the server, and hyper's client drops the
    // server's own 100: exactly one arrives.
    let go = c.response("POST").await;
    assert_eq!(go.head.line, "HTTP/1.1 100 Continue", "{go:?}");
    c.send(&body).await;
    let (interim, res) = c.final_response("POST").await;
    assert!(interim.is_empty(), "a second 100: {interim:?}");
    assert_eq!(res.status(), 200);
    let v = res.json();
    assert_eq!(v["body_bytes"], body.len());
    let sum: u64 = body.iter().map(|&b| u64::from(b)).sum();
    assert_eq!(v["body_sum"], sum);
}

#[tokio::test]
async fn a_server_that_refuses_an_expectation_with_417_is_heard_by_a_client_that_waits() {
    // The server answers the head at once, without a 100 and without
    // reading the body, and closes.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let server = server(move |mut conn| {
        let tx = tx.clone();
        async move {
            let Some(head) = conn.head().await else {
                return;
            };
            let _ = tx.send(head);
            let _ = conn
                .s
                .write_all(b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await;
        }
    })
    .await;
    let lb = lb_for(server).await;
    let mut c = Conn::connect(lb.addr).await;
    // The head only: the client waits for the go-ahead before its body,
    // and the server's refusal comes. Today a 100 from limpet comes
    // first (hyper's server sends it when the body is wanted, whatever
    // the server says); any interim response is let pass here.
    c.send(
        b"POST /upload HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1000\r\n\r\n",
    )
    .await;
    let (interim, res) = c.final_response("POST").await;
    assert_eq!(res.status(), 417, "{interim:?} {res:?}");
    let head = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(head.get("expect"), Some("100-continue"));
}

#[tokio::test]
async fn a_servers_103_early_hints_is_followed_by_the_final_response_intact() {
    let (server, _rx) = canned(|req| {
        let body = format!("final answer to {}", req.head.target());
        Answer::keep(format!(
            "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    })
    .await;
    let lb = lb_for(server).await;
    let mut c = Conn::connect(lb.addr).await;
    for path in ["/a", "/b"] {
        c.send(get(path).as_bytes()).await;
        // hyper's client drops a server's 1xx today, so none reaches the
        // client; forwarding the 103 first is right too (see the ignored
        // test below). Either way the final response comes whole, and
        // the connection goes on.
        let (interim, res) = c.final_response("GET").await;
        assert!(interim.iter().all(|r| r.status() == 103), "{interim:?}");
        assert_eq!(res.status(), 200);
        assert_eq!(res.body, format!("final answer to {path}").as_bytes());
    }
}

#[tokio::test]
async fn a_servers_103_early_hints_reaches_the_client_first_without_its_hop_by_hop_fields() {
    if limpet_engine_only(
        "hyper's client drops a server's 1xx responses; RFC 9110 §15.2: a proxy MUST forward them",
    ) {
        return;
    }
    let (server, _rx) = canned(|_| {
        Answer::keep(
            "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\nConnection: keep-alive, X-Hop\r\n\
             X-Hop: 1\r\nKeep-Alive: timeout=5\r\nX-End: 2\r\n\r\n\
             HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        )
    })
    .await;
    let lb = lb_for(server).await;
    let mut c = Conn::connect(lb.addr).await;
    c.send(get("/").as_bytes()).await;
    let (interim, res) = c.final_response("GET").await;
    assert_eq!(interim.len(), 1, "{interim:?}");
    let hints = &interim[0].head;
    assert_eq!(hints.line, "HTTP/1.1 103 Early Hints", "{hints:?}");
    assert_eq!(
        hints.get("link"),
        Some("</a.css>; rel=preload"),
        "{hints:?}"
    );
    assert_eq!(hints.get("x-end"), Some("2"), "{hints:?}");
    for hop in ["connection", "x-hop", "keep-alive"] {
        assert_eq!(hints.get(hop), None, "{hop} was passed on: {hints:?}");
    }
    assert_eq!(res.status(), 200);
    assert_eq!(res.body, b"ok");
}

#[tokio::test]
async fn a_head_response_has_the_servers_content_length_and_no_body_and_the_connection_goes_on() {
    let (server, _rx) = canned(|req| {
        if req.head.method() == "HEAD" {
            // What a GET would have: 1234 bytes, none of them sent.
            Answer::keep(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1234\r\n\r\n",
            )
        } else {
            ok("after the HEAD")
        }
    })
    .await;
    let lb = lb_for(server).await;
    let mut c = Conn::connect(lb.addr).await;
    c.send(b"HEAD /doc HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let res = c.response("HEAD").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.head.content_length(), Some(1234), "{res:?}");
    // No body bytes: the next thing on the wire is the next response.
    c.send(get("/next").as_bytes()).await;
    let next = c.response("GET").await;
    assert!(next.head.line.starts_with("HTTP/1.1 200"), "{next:?}");
    assert_eq!(next.body, b"after the HEAD");
}

#[tokio::test]
async fn a_204_and_a_304_carry_no_body_and_the_connection_is_reused() {
    let (server, mut rx) = canned(|req| match req.head.target() {
        "/204" => Answer::keep("HTTP/1.1 204 No Content\r\nX-Kind: none\r\n\r\n"),
        // A 304's Content-Length is the size of the representation it
        // stands for (RFC 9110 §8.6): no body follows all the same.
        "/304" => {
            Answer::keep("HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 42\r\n\r\n")
        }
        _ => ok("plain"),
    })
    .await;
    let lb = lb_for(server).await;
    let mut c = Conn::connect(lb.addr).await;
    c.send(get("/204").as_bytes()).await;
    let res = c.response("GET").await;
    assert_eq!(res.status(), 204);
    assert_eq!(res.head.get("x-kind"), Some("none"));
    assert!(res.head.get("transfer-encoding").is_none(), "{res:?}");
    c.send(b"GET /304 HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"v1\"\r\n\r\n")
        .await;
    let res = c.response("GET").await;
    assert_eq!(res.status(), 304);
    assert_eq!(res.head.get("etag"), Some("\"v1\""));
    assert!(res.head.get("transfer-encoding").is_none(), "{res:?}");
    c.send(get("/plain").as_bytes()).await;
    let res = c.response("GET").await;
    assert_eq!(res.status(), 200, "{res:?}");
    assert_eq!(res.body, b"plain");
    for target in ["/204", "/304", "/plain"] {
        assert_eq!(seen(&mut rx).await.head.target(), target);
    }
}

#[tokio::test]
async fn a_client_that_says_connection_close_gets_its_response_then_limpet_closes() {
    let n = nodes(1).await;
    let lb = Lb::start(&config(&n, "", "")).await;
    let mut c = Conn::connect(lb.addr).await;
    c.send(b"GET /bye HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let res = c.response("GET").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json()["path"], "/bye");
    // RFC 9112 §9.6: the server says so (SHOULD), and closes (MUST).
    assert!(res.head.lists("connection", "close"), "{res:?}");
    assert!(c.closed().await, "limpet kept the connection open");
}

#[tokio::test]
async fn an_http10_request_without_keep_alive_gets_its_response_then_the_close() {
    let n = nodes(1).await;
    let lb = Lb::start(&config(&n, "", "")).await;
    let mut c = Conn::connect(lb.addr).await;
    c.send(b"GET /old HTTP/1.0\r\nHost: x\r\n\r\n").await;
    let res = c.response("GET").await;
    assert_eq!(res.status(), 200, "{res:?}");
    assert_eq!(res.json()["path"], "/old");
    assert!(res.head.get("transfer-encoding").is_none(), "{res:?}");
    assert!(c.closed().await, "limpet kept an HTTP/1.0 connection open");
}

#[tokio::test]
async fn an_http10_request_with_keep_alive_keeps_its_connection() {
    let n = nodes(1).await;
    let lb = Lb::start(&config(&n, "", "")).await;
    let mut c = Conn::connect(lb.addr).await;
    for path in ["/one", "/two"] {
        c.send(
            format!("GET {path} HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n").as_bytes(),
        )
        .await;
        let res = c.response("GET").await;
        assert_eq!(res.status(), 200, "{res:?}");
        // An HTTP/1.0 client learns that the connection persists from the
        // response (RFC 9112 §9.3), whose body has a length it knows.
        assert!(res.head.lists("connection", "keep-alive"), "{res:?}");
        assert!(res.head.content_length().is_some(), "{res:?}");
        assert_eq!(res.json()["path"], path);
    }
    assert_eq!(n[0].requests(), 2);
}

#[tokio::test]
async fn a_chunked_response_to_an_http10_client_is_not_chunked() {
    let (server, _rx) = canned(|_| {
        Answer::keep("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    })
    .await;
    let lb = lb_for(server).await;
    let mut c = Conn::connect(lb.addr).await;
    c.send(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").await;
    // RFC 9112 §6.1: no Transfer-Encoding to an HTTP/1.0 client; the body
    // ends with the connection (or has a length).
    let res = c.response("GET").await;
    assert_eq!(res.status(), 200, "{res:?}");
    assert!(res.head.get("transfer-encoding").is_none(), "{res:?}");
    assert_eq!(res.body, b"hello world");
}

#[tokio::test]
async fn a_chunked_request_body_with_extensions_and_a_trailer_reaches_the_server_decoded() {
    let (server, mut rx) = canned(|req| ok(&format!("{} bytes", req.body.len()))).await;
    let lb = lb_for(server).await;
    let mut c = Conn::connect(lb.addr).await;
    c.send(
        b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
          5;name=value\r\nhello\r\n\
          6;flag\r\n world\r\n\
          A\r\n, chunked!\r\n\
          0\r\nX-Checksum: abc\r\n\r\n",
    )
    .await;
    let res = c.response("POST").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.body, b"21 bytes");
    let req = seen(&mut rx).await;
    assert_eq!(req.body, b"hello world, chunked!");
    // The trailer field may be dropped (RFC 9110 §6.5.1); hyper's path
    // drops it today, so nothing is asserted of `req.trailers`.
    let _ = req.trailers;
    // The connection goes on after the chunked body's end.
    c.send(get("/next").as_bytes()).await;
    assert_eq!(c.response("GET").await.status(), 200);
}

#[tokio::test]
async fn a_chunked_response_with_extensions_and_a_trailer_reaches_the_client_decoded() {
    let (server, _rx) = canned(|_| {
        Answer::keep(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n\
             5;name=value\r\nhello\r\n\
             6;flag\r\n world\r\n\
             A\r\n, chunked!\r\n\
             0\r\nX-Checksum: abc\r\n\r\n",
        )
    })
    .await;
    let lb = lb_for(server).await;
    let mut c = Conn::connect(lb.addr).await;
    for _ in 0..2 {
        c.send(get("/").as_bytes()).await;
        let res = c.response("GET").await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.body, b"hello world, chunked!");
    }
}

#[tokio::test]
async fn a_response_delimited_by_the_servers_close_reaches_the_client_whole() {
    let body: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let answer = body.clone();
    let (server, _rx) = canned(move |_| {
        let mut bytes = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n".to_vec();
        bytes.extend_from_slice(&answer);
        Answer::close(bytes)
    })
    .await;
    let lb = lb_for(server).await;
    let mut c = Conn::connect(lb.addr).await;
    for _ in 0..2 {
        c.send(get("/").as_bytes()).await;
        let res = c.response("GET").await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.body.len(), body.len());
        assert!(res.body == body, "the body differs");
    }
}

#[tokio::test]
async fn a_field_the_server_names_in_connection_does_not_reach_the_client() {
    let (server, _rx) = canned(|_| {
        Answer::keep(
            "HTTP/1.1 200 OK\r\nConnection: x-foo\r\nX-Foo: private to the hop\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nok",
        )
    })
    .await;
    let lb = lb_for(server).await;
    let mut c = Conn::connect(lb.addr).await;
    c.send(get("/").as_bytes()).await;
    let res = c.response("GET").await;
    assert_eq!(res.status(), 200);
    for gone in ["x-foo", "keep-alive", "proxy-connection"] {
        assert!(
            res.head.get(gone).is_none(),
            "{gone} reached the client: {res:?}"
        );
    }
    assert!(!res.head.lists("connection", "x-foo"), "{res:?}");
    assert_eq!(res.head.get("x-kept"), Some("yes"));
    assert_eq!(res.body, b"ok");
}

#[tokio::test]
async fn a_field_in_odd_case_with_inner_spaces_reaches_the_server_with_its_value_trimmed() {
    let (server, mut rx) = canned(|_| ok("ok")).await;
    let lb = lb_for(server).await;
    let mut c = Conn::connect(lb.addr).await;
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-OdD-Case:  a  b \t\r\n\r\n")
        .await;
    assert_eq!(c.response("GET").await.status(), 200);
    let req = seen(&mut rx).await;
    // The name in any case (hyper writes it in lower case, limpet's own
    // engine as sent); the value without the whitespace around it, the
    // spaces inside kept.
    let raw = req
        .head
        .fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("x-odd-case"))
        .unwrap_or_else(|| panic!("no X-OdD-Case: {:?}", req.head));
    assert_eq!(raw.1, "a  b");
}

#[tokio::test]
async fn an_absolute_form_target_reaches_the_server_in_origin_form_with_its_authority_as_host() {
    let (server, mut rx) = canned(|_| ok("ok")).await;
    let lb = lb_for(server).await;
    let mut c = Conn::connect(lb.addr).await;
    c.send(b"GET http://shop.example:8080/p?q=1 HTTP/1.1\r\nHost: other.example\r\n\r\n")
        .await;
    assert_eq!(c.response("GET").await.status(), 200);
    let req = seen(&mut rx).await;
    assert_eq!(req.head.line, "GET /p?q=1 HTTP/1.1");
    assert_eq!(req.head.all("host"), ["shop.example:8080"]);
}

#[tokio::test]
async fn bytes_that_come_with_a_servers_101_reach_the_client_and_the_tunnel_runs_both_ways() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let server = server(move |mut conn| {
        let tx = tx.clone();
        async move {
            let Some(req) = conn.request().await else {
                return;
            };
            let _ = tx.send(req);
            // The 101 and the new protocol's first bytes in one write.
            let hello = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nserver speaks first;";
            if conn.s.write_all(hello).await.is_err() {
                return;
            }
            // Then an echo, each message sent back with a prefix. Bounded
            // by the test's three messages.
            for _ in 0..3 {
                let mut buf = [0u8; 1024];
                let n = match tokio::time::timeout(WAIT, conn.s.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => n,
                    _ => return,
                };
                let back = [b"echo:", &buf[..n]].concat();
                if conn.s.write_all(&back).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    let lb = lb_for(server).await;
    let mut c = Conn::connect(lb.addr).await;
    c.send(b"GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n")
        .await;
    let res = c.response("GET").await;
    assert_eq!(res.status(), 101, "{res:?}");
    assert!(res.head.lists("upgrade", "websocket"), "{res:?}");
    assert!(res.head.lists("connection", "upgrade"), "{res:?}");
    let req = seen(&mut rx).await;
    assert!(req.head.lists("upgrade", "websocket"), "{req:?}");
    assert!(req.head.lists("connection", "upgrade"), "{req:?}");
    assert_eq!(req.head.get("sec-websocket-version"), Some("13"));
    let first = b"server speaks first;";
    assert_eq!(c.exact(first.len()).await.as_deref(), Some(&first[..]));
    // Messages are sent one at a time, each answered before the next.
    for msg in [&b"ping"[..], b"\x00\xff\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n"] {
        c.send(msg).await;
        let want = [b"echo:", msg].concat();
        assert_eq!(c.exact(want.len()).await, Some(want));
    }
}

#[tokio::test]
async fn a_malformed_response_head_from_the_server_gives_502() {
    for garbage in [
        &b"HTTP/1.1 2xx OK\r\nContent-Length: 2\r\n\r\nok"[..],
        b"this is not http at all\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Field Name: x\r\nContent-Length: 2\r\n\r\nok",
        // Two lengths that disagree: RFC 9112 §6.3 (5), a proxy answers 502.
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
    ] {
        let (server, _rx) = canned(move |_| Answer::close(garbage)).await;
        let lb = lb_for(server).await;
        let mut c = Conn::connect(lb.addr).await;
        c.send(get("/").as_bytes()).await;
        let res = c.response("GET").await;
        assert_eq!(
            res.status(),
            502,
            "{} → {res:?}",
            String::from_utf8_lossy(garbage)
        );
    }
}

#[tokio::test]
async fn a_101_the_client_did_not_ask_for_gives_502() {
    if limpet_engine_only("the hyper engine answers what hyper's client makes of the 101") {
        return;
    }
    let (server, _rx) = canned(|_| {
        Answer::close(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nraw bytes")
    })
    .await;
    let lb = lb_for(server).await;
    let mut c = Conn::connect(lb.addr).await;
    c.send(get("/").as_bytes()).await;
    let res = c.response("GET").await;
    assert_eq!(res.status(), 502, "{res:?}");
}

#[tokio::test]
async fn a_response_keeps_the_servers_date_and_gets_one_when_it_has_none() {
    let (server, _rx) = canned(|req| match req.head.target() {
        "/dated" => Answer::keep(
            "HTTP/1.1 200 OK\r\nDate: Tue, 01 Jan 2019 00:00:00 GMT\r\nContent-Length: 2\r\n\r\nok",
        ),
        _ => ok("ok"),
    })
    .await;
    let lb = lb_for(server).await;
    let mut c = Conn::connect(lb.addr).await;
    c.send(get("/dated").as_bytes()).await;
    let res = c.response("GET").await;
    assert_eq!(
        res.head.all("date"),
        ["Tue, 01 Jan 2019 00:00:00 GMT"],
        "{res:?}"
    );
    // RFC 9110 §6.6.1: a recipient with a clock that forwards a response
    // without Date adds one.
    c.send(get("/undated").as_bytes()).await;
    let res = c.response("GET").await;
    let date = res.head.all("date");
    assert_eq!(date.len(), 1, "{res:?}");
    assert!(date[0].ends_with(" GMT"), "{res:?}");
}

#[tokio::test]
async fn a_response_the_server_cuts_short_is_cut_short_for_the_client_too() {
    for cut in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok"[..],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    ] {
        let (server, _rx) = canned(move |_| Answer::close(cut)).await;
        let lb = lb_for(server).await;
        let mut c = Conn::connect(lb.addr).await;
        c.send(get("/").as_bytes()).await;
        let head = c.head().await.expect("no response head");
        let case = String::from_utf8_lossy(cut);
        // A 502 if limpet saw the end before it answered; else the head
        // came, and the body must not look complete: a length that is not
        // reached, or chunks without their last one, then the close.
        if head.status() == 502 {
            continue;
        }
        assert_eq!(head.status(), 200, "{case} → {head:?}");
        let framing = if head.chunked() {
            Framing::Chunked
        } else if let Some(n) = head.content_length() {
            Framing::Length(n)
        } else {
            panic!("{case} → {head:?}: delimited by the close, the cut cannot be seen");
        };
        assert!(
            c.body(framing).await.is_none(),
            "{case} → a complete body for the client"
        );
        assert!(c.eof, "{case} → limpet kept the connection open");
    }
}

#[tokio::test]
async fn a_request_with_both_chunked_and_content_length_is_forwarded_chunked_alone_then_closed() {
    let (server, mut rx) = canned(|_| ok("ok")).await;
    let lb = lb_for(server).await;
    let mut c = Conn::connect(lb.addr).await;
    c.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        .await;
    // RFC 9112 §6.3 (3): chunked wins, the length goes, and the connection
    // closes after the response (or the request is refused).
    let res = c.response("POST").await;
    if res.status() == 400 {
        assert!(c.closed().await, "limpet kept the connection open");
        return;
    }
    assert_eq!(res.status(), 200, "{res:?}");
    let req = seen(&mut rx).await;
    assert!(req.head.get("content-length").is_none(), "{req:?}");
    assert_eq!(req.body, b"hello");
    assert!(c.closed().await, "limpet kept the connection open");
}

#[tokio::test]
async fn a_response_with_both_chunked_and_content_length_reaches_the_client_framed_by_chunked_alone()
 {
    if limpet_engine_only(
        "hyper's path forwards the server's Content-Length beside chunked, and the client gets a truncated body; RFC 9112 §6.3 (3): an intermediary MUST remove it first",
    ) {
        return;
    }
    let (server, _rx) = canned(|_| {
        Answer::keep("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    })
    .await;
    let lb = lb_for(server).await;
    let mut c = Conn::connect(lb.addr).await;
    c.send(get("/").as_bytes()).await;
    let res = c.response("GET").await;
    // A 502 is right too ("ought to be handled as an error").
    if res.status() == 502 {
        return;
    }
    assert_eq!(res.status(), 200, "{res:?}");
    assert_ne!(res.head.get("content-length"), Some("3"), "{res:?}");
    assert_eq!(res.body, b"hello");
}

#[tokio::test]
async fn a_response_with_a_transfer_coding_besides_chunked_is_not_passed_off_as_plain() {
    if limpet_engine_only(
        "hyper's path drops a server's `gzip` transfer coding and passes the coded bytes off as plain; it must be kept or refused (502), as requests get 501",
    ) {
        return;
    }
    let (server, _rx) = canned(|_| {
        Answer::keep(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        )
    })
    .await;
    let lb = lb_for(server).await;
    let mut c = Conn::connect(lb.addr).await;
    c.send(get("/").as_bytes()).await;
    let res = c.response("GET").await;
    assert!(
        res.status() == 502 || res.head.lists("transfer-encoding", "gzip"),
        "{res:?}"
    );
}

/// Is the fallback engine (`LIMPET_HTTP1=hyper`) under test, which does not
/// do what the calling test pins? Then the test is skipped, saying why.
fn limpet_engine_only(why_not_hyper: &str) -> bool {
    let hyper = std::env::var("LIMPET_HTTP1").is_ok_and(|v| v == "hyper");
    if hyper {
        eprintln!("skipped on http1: hyper: {why_not_hyper}");
    }
    hyper
}

#[tokio::test]
async fn a_body_left_unread_by_limpets_own_answer_is_never_read_as_a_request() {
    // The pool's only server is disabled: limpet answers 503 itself as
    // soon as it decides, before it streams the (chunked) body. The body
    // holds a request; it must not be served as the next one.
    let (server, _rx) =
        canned(|_| Answer::keep("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")).await;
    let lb = Lb::start(&format!(
        "listeners:\n  - name: http\n    bind: 127.0.0.1:1\n    pool: app\nlog:\n  level: error\npools:\n  app:\n    servers:\n      - {{ name: raw, address: \"{server}\", state: disabled }}\n"
    ))
    .await;
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: elsewhere.example\r\n\r\n";
    let mut c = Conn::connect(lb.addr).await;
    c.send(
        format!(
            "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{smuggled}\r\n0\r\n\r\n",
            smuggled.len()
        )
        .as_bytes(),
    )
    .await;
    let res = c.response("POST").await;
    assert_eq!(res.status(), 503, "{res:?}");
    // Closed (limpet's path), or the body skipped (hyper's): either way,
    // nothing answers the request inside the body.
    let closed = c.closed().await;
    assert!(
        closed || c.buf.is_empty(),
        "the request inside the body was served: {:?}",
        String::from_utf8_lossy(&c.buf)
    );
}

#[tokio::test]
async fn the_http1_key_picks_the_engine_whatever_the_environment_says() {
    // The engines differ on a server's 103 (limpet's passes it on, hyper's
    // drops it): that tells which one served. The file's key wins over
    // LIMPET_HTTP1, so this holds in both of CI's runs.
    let (server, _rx) = canned(|_| {
        Answer::keep(
            "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        )
    })
    .await;
    for (engine, interims) in [("limpet", 1), ("hyper", 0)] {
        let lb = Lb::start(&format!(
            "http1: {engine}\nlisteners:\n  - name: http\n    bind: 127.0.0.1:1\n    pool: app\nlog:\n  level: error\npools:\n  app:\n    servers:\n      - {{ name: raw, address: \"{server}\" }}\n"
        ))
        .await;
        let mut c = Conn::connect(lb.addr).await;
        c.send(get("/").as_bytes()).await;
        let (interim, res) = c.final_response("GET").await;
        assert_eq!(interim.len(), interims, "http1: {engine}: {interim:?}");
        assert_eq!(res.status(), 200);
        assert_eq!(res.body, b"ok");
    }
}
