//! Edge rules where limpet answers as nginx and HAProxy do: the default
//! certificate's exact names before any wildcard, HTTP/2 cookie crumbs
//! counted as one field, `:authority` and `Host` compared without the
//! scheme's default port, a trailing dot that does not slip past a host
//! route, and `strict_sni` refusing a Host the connection's certificate
//! does not name.

use std::path::Path;

use serde_json::Value;

use crate::harness::{self, Lb, nodes, servers_yaml};
use crate::pki::{self, Ca};

/// A TLS listener `https` (default certificate `cert`/`key`, `extra`
/// listener lines) on pool `app` (node1), with a route for host
/// `b.example` to pool `static` (node2).
fn config(nodes: &[limpet_demo::DemoNode], cert: &Path, key: &Path, extra: &str) -> String {
    format!(
        "listeners:\n  - name: https\n    bind: 127.0.0.1:1\n    pool: app\n    routes:\n      - {{ host: b.example, pool: static }}\n    tls:\n      cert: \"{}\"\n      key: \"{}\"\n{extra}log:\n  level: warn\npools:\n  app:\n    servers:\n{}  static:\n    servers:\n{}",
        cert.display(),
        key.display(),
        servers_yaml(&nodes[..1]),
        servers_yaml(&nodes[1..2]),
    )
}

/// An HTTP/2 connection to `lb` with SNI `name`.
async fn h2(lb: &Lb, ca: &Ca, name: &str) -> hyper::client::conn::http2::SendRequest<pki::Body> {
    let tls = pki::connect(lb.addr, ca.client(&[b"h2"]), name)
        .await
        .unwrap();
    pki::h2(tls).await
}

/// One request on a new HTTP/1.1 connection with SNI `name`: its status
/// and JSON body.
async fn once_h1(lb: &Lb, ca: &Ca, name: &str, req: http::Request<pki::Body>) -> (u16, Value) {
    let tls = pki::connect(lb.addr, ca.client(&[b"http/1.1"]), name)
        .await
        .unwrap();
    let (status, _, v) = pki::read(pki::h1(tls).await.send_request(req).await.unwrap()).await;
    (status, v)
}

/// One request on a new HTTP/2 connection with SNI `name`.
async fn once_h2(lb: &Lb, ca: &Ca, name: &str, req: http::Request<pki::Body>) -> (u16, Value) {
    let (status, _, v) = pki::read(h2(lb, ca, name).await.send_request(req).await.unwrap()).await;
    (status, v)
}

/// A GET over HTTP/2 with these `cookie` crumbs.
fn with_crumbs(crumbs: &[String]) -> http::Request<pki::Body> {
    let mut req = pki::get("https://localhost/crumbs", None);
    for c in crumbs {
        req.headers_mut().append("cookie", c.parse().unwrap());
    }
    req
}

#[tokio::test]
async fn the_default_certificates_exact_name_wins_over_an_sni_wildcard() {
    let dir = harness::temp_dir("edge-sni-order");
    let ca = Ca::new("limpet test CA");
    let own = ca.leaf(&["own.w.example"]);
    let wild = ca.leaf(&["*.w.example"]);
    let (oc, ok) = own.write(&dir, "own");
    let (wc, wk) = wild.write(&dir, "wild");
    let extra = format!(
        "      sni:\n        - {{ cert: \"{}\", key: \"{}\" }}\n",
        wc.display(),
        wk.display()
    );
    let nodes = nodes(2).await;
    let lb = Lb::start(&config(&nodes, &oc, &ok, &extra)).await;
    let client = ca.client(&[b"http/1.1"]);
    let served = |name: &'static str| {
        let client = client.clone();
        let addr = lb.addr;
        async move { pki::peer_cert(&pki::connect(addr, client, name).await.unwrap()) }
    };
    assert_eq!(served("own.w.example").await, own.der);
    assert_eq!(served("other.w.example").await, wild.der);
    lb.shutdown().await;
}

#[tokio::test]
async fn http2_cookie_crumbs_count_as_one_field_as_over_http1() {
    let dir = harness::temp_dir("edge-crumbs");
    let ca = Ca::new("limpet test CA");
    let (cert, key) = ca.leaf(&["localhost"]).write(&dir, "lb");
    let nodes = nodes(2).await;
    let lb = Lb::start(&config(&nodes, &cert, &key, "")).await;
    // 101 cookies: one crumb each over HTTP/2 (as browsers send them), one
    // field over HTTP/1.1. limits.max_headers is 100.
    let cookies: Vec<String> = (0..101).map(|i| format!("c{i}=v{i}")).collect();
    let (status, v) = once_h2(&lb, &ca, "localhost", with_crumbs(&cookies)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["headers"]["cookie"], cookies.join("; "));
    let mut req = pki::get("/crumbs", Some("localhost"));
    req.headers_mut()
        .insert("cookie", cookies.join("; ").parse().unwrap());
    assert_eq!(once_h1(&lb, &ca, "localhost", req).await.0, 200);
    lb.shutdown().await;

    // The joined field is held to max_header_bytes, crumbs or not.
    let yaml = config(&nodes, &cert, &key, "")
        .replace("log:\n", "limits:\n  max_header_bytes: 4096\nlog:\n");
    let lb = Lb::start(&yaml).await;
    let big: Vec<String> = (0..50)
        .map(|i| format!("c{i}={}", "x".repeat(96)))
        .collect();
    assert_eq!(
        once_h2(&lb, &ca, "localhost", with_crumbs(&big)).await.0,
        431
    );
    lb.shutdown().await;
}

#[tokio::test]
async fn an_authority_and_a_host_that_differ_only_by_the_default_port_agree() {
    let dir = harness::temp_dir("edge-authority");
    let ca = Ca::new("limpet test CA");
    let (cert, key) = ca.leaf(&["localhost"]).write(&dir, "lb");
    let nodes = nodes(2).await;
    let lb = Lb::start(&config(&nodes, &cert, &key, "")).await;
    let mut conn = h2(&lb, &ca, "localhost").await;
    for (uri, host, want) in [
        ("https://localhost/", "localhost:443", 200),
        ("https://localhost:443/", "localhost", 200),
        ("https://localhost/", "localhost:8443", 400),
    ] {
        let req = pki::get(uri, Some(host));
        let (status, _, _) = pki::read(conn.send_request(req).await.unwrap()).await;
        assert_eq!(status, want, "{uri} with host {host}");
        if status == 400 {
            conn = h2(&lb, &ca, "localhost").await;
        }
    }
    lb.shutdown().await;
}

#[tokio::test]
async fn a_trailing_dot_does_not_slip_past_a_host_route() {
    let dir = harness::temp_dir("edge-dot");
    let ca = Ca::new("limpet test CA");
    let (cert, key) = ca.leaf(&["localhost", "b.example"]).write(&dir, "lb");
    let nodes = nodes(2).await;
    let lb = Lb::start(&config(&nodes, &cert, &key, "")).await;
    for host in ["b.example", "b.example.", "B.Example.:443"] {
        let req = pki::get("/", Some(host));
        let (status, v) = once_h1(&lb, &ca, "b.example", req).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(harness::server_of(&v), "node2", "Host {host}");
        // Forwarded as received.
        assert_eq!(v["headers"]["host"], host);
    }
    let req = pki::get("https://b.example./", None);
    let (status, v) = once_h2(&lb, &ca, "b.example", req).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(harness::server_of(&v), "node2", ":authority b.example.");
    // Two dots are another name.
    let req = pki::get("/", Some("b.example.."));
    let (_, v) = once_h1(&lb, &ca, "localhost", req).await;
    assert_eq!(harness::server_of(&v), "node1");
    lb.shutdown().await;
}

#[tokio::test]
async fn strict_sni_answers_421_to_a_host_the_connections_certificate_does_not_name() {
    let dir = harness::temp_dir("edge-strict-sni");
    let ca = Ca::new("limpet test CA");
    let (ac, ak) = ca.leaf(&["a.example"]).write(&dir, "a");
    let (bc, bk) = ca.leaf(&["b.example"]).write(&dir, "b");
    let sni = format!(
        "      sni:\n        - {{ cert: \"{}\", key: \"{}\" }}\n",
        bc.display(),
        bk.display()
    );
    let nodes = nodes(2).await;

    // Off (the default): the Host picks the pool, whatever the certificate.
    let lb = Lb::start(&config(&nodes, &ac, &ak, &sni)).await;
    let req = pki::get("/", Some("b.example"));
    let (status, v) = once_h1(&lb, &ca, "a.example", req).await;
    assert_eq!((status, harness::server_of(&v)), (200, "node2".to_owned()));
    lb.shutdown().await;

    let lb = Lb::start(&config(
        &nodes,
        &ac,
        &ak,
        &format!("{sni}    strict_sni: true\n"),
    ))
    .await;
    // Over a.example's certificate, b.example's pool is out of reach.
    for (host, want) in [
        ("b.example", 421),
        ("a.example", 200),
        ("A.example.:443", 200),
        ("c.example", 421),
    ] {
        let req = pki::get("/", Some(host));
        let (status, _) = once_h1(&lb, &ca, "a.example", req).await;
        assert_eq!(status, want, "Host {host} over a.example's certificate");
    }
    let mut conn = h2(&lb, &ca, "b.example").await;
    for (uri, want) in [
        ("https://b.example/", 200),
        ("https://a.example/", 421),
        ("https://b.example/again", 200),
    ] {
        let (status, _, v) = pki::read(conn.send_request(pki::get(uri, None)).await.unwrap()).await;
        assert_eq!(status, want, "{uri} over b.example's certificate: {v}");
    }
    lb.shutdown().await;
}

#[test]
fn strict_sni_and_trust_forwarded_after_proxy_need_what_they_refine() {
    let plain = "listeners:\n  - name: http\n    bind: 127.0.0.1:1\n    pool: app\n    strict_sni: true\npools:\n  app:\n    servers:\n      - { name: a, address: \"127.0.0.1:9\" }\n";
    let e = limpet::config::parse(plain, Path::new("lb.yaml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("lb.yaml:5:") && e.contains("does not terminate TLS"),
        "{e}"
    );
    let yaml = plain.replace("strict_sni", "trust_forwarded_after_proxy");
    let e = limpet::config::parse(&yaml, Path::new("lb.yaml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("lb.yaml:5:") && e.contains("a `proxy_protocol: true` listener only"),
        "{e}"
    );
}
