//! The PROXY protocol (v1 text, v2 binary) on a listener behind an L4
//! balancer: from a trusted peer the address it carries is the client for
//! `ip_hash`, `X-Forwarded-For` and the logs; from any other peer, or when
//! the header is garbled, truncated or missing, the connection is closed
//! within `timeouts.request_header`, with one log line.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::harness::{self, Lb, nodes, servers_yaml};
use crate::pki::{self, Ca};

const HEADER_TIMEOUT: Duration = Duration::from_millis(500);

/// Listener `pp` (PROXY protocol) and listener `direct` (plain) on pool
/// `app`; only 127.0.0.1 is a trusted proxy.
fn config(nodes: &[limpet_demo::DemoNode], pool_extra: &str) -> String {
    format!(
        "listeners:\n  - name: pp\n    bind: 127.0.0.1:1\n    pool: app\n    proxy_protocol: true\n  - name: direct\n    bind: 127.0.0.1:3\n    pool: app\ntrusted_proxies: [127.0.0.1/32]\ntimeouts:\n  request_header: 500ms\nlog:\n  level: warn\npools:\n  app:\n{pool_extra}\n    servers:\n{}",
        servers_yaml(nodes)
    )
}

fn v1(client: SocketAddr) -> Vec<u8> {
    let family = if client.is_ipv4() { "TCP4" } else { "TCP6" };
    let dst = if client.is_ipv4() { "127.0.0.1" } else { "::1" };
    format!(
        "PROXY {family} {} {dst} {} 80\r\n",
        client.ip(),
        client.port()
    )
    .into_bytes()
}

const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

fn v2(client: SocketAddr) -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.push(0x21); // version 2, PROXY
    let mut body = Vec::new();
    match client.ip() {
        IpAddr::V4(ip) => {
            h.push(0x11); // TCP over IPv4
            body.extend_from_slice(&ip.octets());
            body.extend_from_slice(&[127, 0, 0, 1]);
        }
        IpAddr::V6(ip) => {
            h.push(0x21); // TCP over IPv6
            body.extend_from_slice(&ip.octets());
            body.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
        }
    }
    body.extend_from_slice(&client.port().to_be_bytes());
    body.extend_from_slice(&80u16.to_be_bytes());
    // A TLV (PP2_TYPE_AUTHORITY) the balancer may add: skipped.
    body.extend_from_slice(&[0x02, 0x00, 0x04]);
    body.extend_from_slice(b"shop");
    h.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    h.extend_from_slice(&body);
    h
}

/// v2 LOCAL: a health check of the balancer itself, no addresses.
fn v2_local() -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    h
}

const GET: &[u8] = b"GET /who HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n";

/// Connects from `from`, sends `bytes` and reads until the server closes
/// (or 5 s pass); returns what came back and how long it took.
async fn exchange(addr: SocketAddr, from: IpAddr, bytes: &[u8]) -> (String, Duration) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    let started = Instant::now();
    if !bytes.is_empty() {
        s.write_all(bytes).await.unwrap();
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    (
        String::from_utf8_lossy(&out).into_owned(),
        started.elapsed(),
    )
}

/// The JSON body of a raw HTTP/1.1 answer.
fn body(answer: &str) -> serde_json::Value {
    let text = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(text).unwrap_or(serde_json::Value::Null)
}

const LOCALHOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

#[tokio::test]
async fn v1_and_v2_from_a_trusted_peer_drive_ip_hash_and_x_forwarded_for() {
    let nodes = nodes(3).await;
    let lb = Lb::start(&config(&nodes, "    sticky:\n      mode: ip_hash")).await;
    let direct = lb.limpet.as_ref().unwrap().addr("direct").unwrap();
    let mut seen = std::collections::HashSet::new();
    for i in 0..16u32 {
        let client_ip = harness::source_ip(i);
        let client = SocketAddr::new(client_ip, 40000 + u16::try_from(i).unwrap());
        // The server a direct connection from that address goes to.
        let (status, v) = harness::get_json(
            &harness::client_from(client_ip),
            &format!("http://{direct}/who"),
        )
        .await;
        assert_eq!(status, 200);
        let home = harness::server_of(&v);
        seen.insert(home.clone());

        for header in [v1(client), v2(client)] {
            let mut bytes = header;
            bytes.extend_from_slice(GET);
            let (answer, _) = exchange(lb.addr, LOCALHOST, &bytes).await;
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            let v = body(&answer);
            assert_eq!(
                harness::server_of(&v),
                home,
                "ip_hash uses the PROXY address"
            );
            assert_eq!(
                v["headers"]["x-forwarded-for"],
                client_ip.to_string(),
                "{v}"
            );
        }
    }
    assert!(
        seen.len() > 1,
        "the addresses spread over servers: {seen:?}"
    );

    // IPv6 in a v1 and a v2 header.
    let six: SocketAddr = "[2001:db8::7]:5555".parse().unwrap();
    for header in [v1(six), v2(six)] {
        let mut bytes = header;
        bytes.extend_from_slice(GET);
        let (answer, _) = exchange(lb.addr, LOCALHOST, &bytes).await;
        assert_eq!(body(&answer)["headers"]["x-forwarded-for"], "2001:db8::7");
    }
    lb.shutdown().await;
}

#[tokio::test]
async fn unknown_and_local_leave_the_peer_as_the_client() {
    let nodes = nodes(1).await;
    let lb = Lb::start(&config(&nodes, "")).await;
    for header in [b"PROXY UNKNOWN\r\n".to_vec(), v2_local()] {
        let mut bytes = header.clone();
        bytes.extend_from_slice(GET);
        let (answer, _) = exchange(lb.addr, LOCALHOST, &bytes).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert_eq!(body(&answer)["headers"]["x-forwarded-for"], "127.0.0.1");

        // The peer (the L4 balancer) is trusted, but it writes no
        // X-Forwarded-* headers: any in the request come from the end
        // client, who must not choose its own address or scheme.
        let mut bytes = header;
        bytes.extend_from_slice(
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n",
        );
        let (answer, _) = exchange(lb.addr, LOCALHOST, &bytes).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let headers = &body(&answer)["headers"];
        // As from any untrusted client: its list kept, the peer appended.
        assert_eq!(
            headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1",
            "{answer}"
        );
        assert_eq!(headers["x-forwarded-proto"], "http", "{answer}");
    }
    lb.shutdown().await;
}

#[tokio::test]
async fn a_header_from_a_peer_not_in_trusted_proxies_is_refused() {
    let nodes = nodes(1).await;
    let lb = Lb::start(&config(&nodes, "")).await;
    let stranger = harness::source_ip(7);
    let mut bytes = v1("198.51.100.1:1234".parse().unwrap());
    bytes.extend_from_slice(GET);
    let (answer, took) = exchange(lb.addr, stranger, &bytes).await;
    assert_eq!(answer, "", "closed without an answer");
    assert!(took < Duration::from_secs(2), "closed at once: {took:?}");
    // Without a header it is refused too: the listener expects one.
    let (answer, _) = exchange(lb.addr, stranger, GET).await;
    assert_eq!(answer, "");
    assert_eq!(nodes[0].requests(), 0);
    lb.shutdown().await;
}

#[tokio::test]
async fn garbage_truncated_oversized_and_silent_peers_are_closed_within_the_timeout() {
    let nodes = nodes(1).await;
    let lb = Lb::start(&config(&nodes, "")).await;
    let limit = HEADER_TIMEOUT + Duration::from_secs(2);

    // Not a PROXY header: closed as soon as that is clear.
    let (answer, took) = exchange(lb.addr, LOCALHOST, GET).await;
    assert_eq!(answer, "");
    assert!(took < limit, "{took:?}");

    // A broken address, a bad v2 version, a v1 line too long.
    let long = format!("PROXY TCP4 {} 127.0.0.1 1 2\r\n", "1".repeat(200));
    let mut bad_version = V2_SIGNATURE.to_vec();
    bad_version.extend_from_slice(&[0x31, 0x11, 0x00, 0x0c]);
    for bytes in [
        b"PROXY TCP4 300.1.1.1 127.0.0.1 1 2\r\n".to_vec(),
        bad_version,
        long.into_bytes(),
        vec![0u8; 64],
    ] {
        let (answer, took) = exchange(lb.addr, LOCALHOST, &bytes).await;
        assert_eq!(answer, "", "{bytes:?}");
        assert!(took < limit, "{took:?}");
    }

    // Truncated, then silent; silent from the start; a v2 header that
    // announces more bytes than ever come: closed at request_header.
    let mut partial_v2 = V2_SIGNATURE.to_vec();
    partial_v2.extend_from_slice(&[0x21, 0x11, 0xff, 0xff, 1, 2, 3]);
    for bytes in [b"PROXY TCP4 192.0".to_vec(), Vec::new(), partial_v2] {
        let (answer, took) = exchange(lb.addr, LOCALHOST, &bytes).await;
        assert_eq!(answer, "");
        assert!(
            took >= HEADER_TIMEOUT - Duration::from_millis(50) && took < limit,
            "closed after {took:?}"
        );
    }
    assert_eq!(nodes[0].requests(), 0);

    // limpet is still fine.
    let mut bytes = v1("192.0.2.1:1000".parse().unwrap());
    bytes.extend_from_slice(GET);
    let (answer, _) = exchange(lb.addr, LOCALHOST, &bytes).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    lb.shutdown().await;
}

#[tokio::test]
async fn a_garbled_header_costs_one_log_line() {
    let nodes = nodes(1).await;
    let yaml = format!(
        "listeners:\n  - name: pp\n    bind: \"{{BIND}}\"\n    pool: app\n    proxy_protocol: true\ntrusted_proxies: [127.0.0.1]\nlog:\n  level: warn\npools:\n  app:\n    servers:\n{}",
        servers_yaml(&nodes)
    );
    let p = harness::Proc::start("pp-log", &yaml).await;
    // Not a header at all; a v1 header with a field too many (the parser's
    // own message for it holds a CR LF, which must not split the line).
    let garbled: [&[u8]; 2] = [
        b"HELLO\r\n\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 11 22 33\r\nGET / HTTP/1.1\r\n\r\n",
    ];
    for bytes in garbled {
        // (The harness's readiness probe connected once without a header.)
        let before = p.log().lines().count();
        let (answer, _) = exchange(p.addr, LOCALHOST, bytes).await;
        assert_eq!(answer, "");
        let logged = harness::eventually(Duration::from_secs(5), || async {
            p.log().lines().count() > before
        })
        .await;
        // Give a second line time to show up, if there were one.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let log = p.log();
        assert!(logged, "{log}");
        let lines: Vec<&str> = log.lines().skip(before).collect();
        assert_eq!(lines.len(), 1, "{log}");
        assert!(lines[0].contains("PROXY"), "{log}");
        assert!(lines[0].contains("127.0.0.1"), "the peer is named: {log}");
    }
}

#[tokio::test]
async fn on_a_tls_listener_the_header_comes_before_the_handshake() {
    let dir = harness::temp_dir("pp-tls");
    let ca = Ca::new("limpet test CA");
    let (cert, key) = ca.leaf(&["localhost"]).write(&dir, "lb");
    let nodes = nodes(1).await;
    let yaml = config(&nodes, "").replace(
        "    proxy_protocol: true\n",
        &format!(
            "    proxy_protocol: true\n    tls:\n      cert: \"{}\"\n      key: \"{}\"\n",
            cert.display(),
            key.display()
        ),
    );
    let lb = Lb::start(&yaml).await;
    for header in [
        v1("203.0.113.9:777".parse().unwrap()),
        v2("203.0.113.9:777".parse().unwrap()),
    ] {
        let mut tcp = TcpStream::connect(lb.addr).await.unwrap();
        tcp.write_all(&header).await.unwrap();
        let tls = pki::connect_over(tcp, ca.client(&[b"h2"]), "localhost")
            .await
            .unwrap();
        let mut h2 = pki::h2(tls).await;
        let res = h2
            .send_request(pki::get("https://localhost/who", None))
            .await
            .unwrap();
        let (status, _, v) = pki::read(res).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["headers"]["x-forwarded-for"], "203.0.113.9");
        assert_eq!(v["headers"]["x-forwarded-proto"], "https");
    }
    lb.shutdown().await;
}

#[test]
fn proxy_protocol_without_trusted_proxies_is_a_config_error() {
    let yaml = "listeners:\n  - name: pp\n    bind: 127.0.0.1:1\n    pool: app\n    proxy_protocol: true\npools:\n  app:\n    servers:\n      - { name: a, address: 127.0.0.1:9 }\n";
    let e = limpet::config::parse(yaml, std::path::Path::new("lb.yaml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("trusted_proxies"), "{e}");
    assert!(e.starts_with("lb.yaml:5:"), "{e}");
}

#[tokio::test]
async fn a_v1_header_sent_one_byte_at_a_time_is_served() {
    let nodes = nodes(1).await;
    let lb = Lb::start(&config(&nodes, "")).await;
    let client: SocketAddr = "192.0.2.44:1111".parse().unwrap();
    let mut s = TcpStream::connect(lb.addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    // Every segment ends somewhere in the line, among them right after the
    // source port (`… 1111 `).
    for byte in v1(client) {
        s.write_all(&[byte]).await.unwrap();
        s.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    s.write_all(GET).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let answer = String::from_utf8_lossy(&out);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(body(&answer)["headers"]["x-forwarded-for"], "192.0.2.44");
    // A signed or zero port is no port.
    for bad in [
        "PROXY TCP4 192.0.2.44 127.0.0.1 +80 80\r\n",
        "PROXY TCP4 192.0.2.44 127.0.0.1 0 80\r\n",
        "PROXY TCP4 192.0.2.44 127.0.0.1 80 0\r\n",
    ] {
        let mut bytes = bad.as_bytes().to_vec();
        bytes.extend_from_slice(GET);
        let (answer, _) = exchange(lb.addr, LOCALHOST, &bytes).await;
        assert_eq!(answer, "", "{bad:?} is refused");
    }
    lb.shutdown().await;
}

/// Requests from PROXY source 127.0.0.1 (itself in `trusted_proxies`), each
/// claiming another client in `X-Forwarded-For`: the servers they reach,
/// and the `X-Forwarded-Proto` the servers saw.
async fn claims_behind_proxy(lb: &Lb) -> (std::collections::HashSet<String>, Vec<String>) {
    let mut servers = std::collections::HashSet::new();
    let mut protos = Vec::new();
    for i in 0..12 {
        let mut bytes = v1("127.0.0.1:4000".parse().unwrap());
        bytes.extend_from_slice(
            format!("GET /who HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.{i}\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        let (answer, _) = exchange(lb.addr, LOCALHOST, &bytes).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let v = body(&answer);
        // Passed on either way, the PROXY source appended.
        assert_eq!(
            v["headers"]["x-forwarded-for"],
            format!("203.0.113.{i}, 127.0.0.1")
        );
        servers.insert(harness::server_of(&v));
        protos.push(
            v["headers"]["x-forwarded-proto"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
        );
    }
    (servers, protos)
}

#[tokio::test]
async fn behind_a_proxy_header_its_source_is_the_client_and_x_forwarded_for_is_only_passed_on() {
    let nodes = nodes(3).await;
    let lb = Lb::start(&config(&nodes, "    sticky:\n      mode: ip_hash")).await;
    let (servers, protos) = claims_behind_proxy(&lb).await;
    assert_eq!(
        servers.len(),
        1,
        "ip_hash follows the PROXY source: {servers:?}"
    );
    assert!(protos.iter().all(|p| p == "http"), "{protos:?}");
    lb.shutdown().await;

    // The L4 balancer fronts trusted L7 proxies: their headers are believed.
    let yaml = config(&nodes, "    sticky:\n      mode: ip_hash").replace(
        "proxy_protocol: true\n",
        "proxy_protocol: true\n    trust_forwarded_after_proxy: true\n",
    );
    let lb = Lb::start(&yaml).await;
    let (servers, protos) = claims_behind_proxy(&lb).await;
    assert!(servers.len() > 1, "the claimed clients spread: {servers:?}");
    assert!(protos.iter().all(|p| p == "https"), "{protos:?}");
    lb.shutdown().await;
}
