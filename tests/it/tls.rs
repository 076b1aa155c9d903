//! TLS at the edge: limpet terminates TLS with certificates made by the test
//! (a test CA), serves HTTP/1.1 and HTTP/2 by ALPN, picks certificates by
//! SNI, marks its sticky cookie `Secure`, re-reads certificates on reload,
//! redirects plain HTTP, and answers real `curl --http2` and
//! `openssl s_client`. The checks with curl and openssl skip when the tool
//! is missing, unless `LIMPET_REQUIRE_TLS_TOOLS` is set (CI sets it).

use std::path::Path;
use std::time::Duration;

use crate::harness::{self, Lb, nodes, servers_yaml};
use crate::pki::{self, Ca};

/// A TLS listener named `https` on pool `app` with `tls_block` (indented
/// for the listener), and these pool lines.
fn tls_config(nodes: &[limpet_demo::DemoNode], tls_block: &str, pool_extra: &str) -> String {
    format!(
        "listeners:\n  - name: https\n    bind: 127.0.0.1:1\n    pool: app\n    tls:\n{tls_block}\nlog:\n  level: warn\npools:\n  app:\n{pool_extra}\n    servers:\n{}",
        servers_yaml(nodes)
    )
}

fn cert_block(cert: &Path, key: &Path) -> String {
    format!(
        "      cert: \"{}\"\n      key: \"{}\"",
        cert.display(),
        key.display()
    )
}

#[tokio::test]
async fn http1_and_h2_are_served_by_alpn_with_x_forwarded_proto_https() {
    let dir = harness::temp_dir("tls-alpn");
    let ca = Ca::new("limpet test CA");
    let (cert, key) = ca.leaf(&["localhost", "127.0.0.1"]).write(&dir, "lb");
    let nodes = nodes(1).await;
    let lb = Lb::start(&tls_config(&nodes, &cert_block(&cert, &key), "")).await;

    // A client offering both gets h2.
    let tls = pki::connect(lb.addr, ca.client(&[b"h2", b"http/1.1"]), "localhost")
        .await
        .unwrap();
    assert_eq!(pki::alpn(&tls).as_deref(), Some(&b"h2"[..]));
    let mut h2 = pki::h2(tls).await;
    let res = h2
        .send_request(pki::get("https://localhost/a", None))
        .await
        .unwrap();
    assert_eq!(res.version(), http::Version::HTTP_2);
    let (status, _, v) = pki::read(res).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["headers"]["x-forwarded-proto"], "https");
    assert_eq!(v["path"], "/a");

    // A client offering only http/1.1 gets it.
    let h1_only = ca.client(&[b"http/1.1"]);
    let tls = pki::connect(lb.addr, h1_only.clone(), "localhost")
        .await
        .unwrap();
    assert_eq!(pki::alpn(&tls).as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(
        tls.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Full)
    );
    let mut h1 = pki::h1(tls).await;
    for path in ["/one", "/two"] {
        let res = h1
            .send_request(pki::get(path, Some("localhost")))
            .await
            .unwrap();
        assert_eq!(res.version(), http::Version::HTTP_11);
        let (status, _, v) = pki::read(res).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["headers"]["x-forwarded-proto"], "https");
    }
    // The client came back: its session is resumed, no full handshake.
    let again = pki::connect(lb.addr, h1_only, "localhost").await.unwrap();
    assert_eq!(
        again.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );

    // No ALPN at all is HTTP/1.1.
    let tls = pki::connect(lb.addr, ca.client(&[]), "127.0.0.1")
        .await
        .unwrap();
    assert_eq!(pki::alpn(&tls), None);
    let mut h1 = pki::h1(tls).await;
    let res = h1
        .send_request(pki::get("/", Some("127.0.0.1")))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // Plain HTTP on the TLS port is not served.
    let answer = harness::raw(
        lb.addr,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(!answer.contains("200 OK"), "{answer}");
    lb.shutdown().await;
}

#[tokio::test]
async fn sni_chooses_the_certificate_exact_then_wildcard_then_the_default() {
    let dir = harness::temp_dir("tls-sni");
    let ca = Ca::new("limpet test CA");
    let default = ca.leaf(&["default.test", "127.0.0.1"]);
    let shop = ca.leaf(&["shop.test"]);
    let wild = ca.leaf(&["*.wild.test"]);
    let (dc, dk) = default.write(&dir, "default");
    let (sc, sk) = shop.write(&dir, "shop");
    let (wc, wk) = wild.write(&dir, "wild");
    let block = format!(
        "{}\n      sni:\n        - {{ cert: \"{}\", key: \"{}\" }}\n        - {{ cert: \"{}\", key: \"{}\" }}",
        cert_block(&dc, &dk),
        sc.display(),
        sk.display(),
        wc.display(),
        wk.display()
    );
    let nodes = nodes(1).await;
    let lb = Lb::start(&tls_config(&nodes, &block, "")).await;
    let client = ca.client(&[b"http/1.1"]);

    let served = |name: &'static str| {
        let client = client.clone();
        let addr = lb.addr;
        async move {
            pki::connect(addr, client, name)
                .await
                .map(|t| pki::peer_cert(&t))
        }
    };
    assert_eq!(served("shop.test").await.unwrap(), shop.der);
    assert_eq!(
        served("SHOP.test").await.unwrap(),
        shop.der,
        "SNI is case-insensitive"
    );
    assert_eq!(served("a.wild.test").await.unwrap(), wild.der);
    assert_eq!(served("default.test").await.unwrap(), default.der);
    // No SNI (an IP address): the default certificate.
    assert_eq!(served("127.0.0.1").await.unwrap(), default.der);
    // An unknown name gets the default certificate, which does not name it.
    let e = served("other.test").await.unwrap_err();
    assert!(e.to_string().contains("certificate"), "{e}");
    // A wildcard covers one label only.
    assert!(served("a.b.wild.test").await.is_err());
    lb.shutdown().await;
}

#[tokio::test]
async fn the_sticky_cookie_is_secure_and_an_h2_connection_of_one_session_sticks() {
    let dir = harness::temp_dir("tls-cookie");
    let ca = Ca::new("limpet test CA");
    let (cert, key) = ca.leaf(&["localhost", "127.0.0.1"]).write(&dir, "lb");
    let nodes = nodes(3).await;
    let yaml = tls_config(
        &nodes,
        &cert_block(&cert, &key),
        "    sticky:\n      mode: cookie\n      cookie:\n        name: SERVERID\n        secure: true",
    );
    let lb = Lb::start(&yaml).await;
    let url = format!("https://localhost:{}/", lb.addr.port());
    let browser = {
        let tls = (*ca.client(&[b"h2", b"http/1.1"])).clone();
        harness::reqwest_builder()
            .no_proxy()
            .cookie_store(true)
            .resolve("localhost", lb.addr)
            .timeout(Duration::from_secs(10))
            .tls_backend_preconfigured(tls)
            .build()
            .unwrap()
    };
    let first = browser.get(&url).send().await.unwrap();
    assert_eq!(first.version(), reqwest::Version::HTTP_2);
    let cookies = harness::set_cookies(&first);
    let ours = cookies
        .iter()
        .find(|c| c.starts_with("SERVERID="))
        .unwrap_or_else(|| panic!("no SERVERID cookie in {cookies:?}"));
    assert!(ours.contains("Secure"), "{ours}");
    let v: serde_json::Value = first.json().await.unwrap();
    let home = harness::server_of(&v);

    // Many requests of the session at once, multiplexed on one h2 connection.
    let mut all = Vec::new();
    for i in 0..30 {
        let b = browser.clone();
        let url = format!("{url}r{i}");
        all.push(tokio::spawn(async move {
            let res = b.get(&url).send().await.unwrap();
            assert_eq!(res.version(), reqwest::Version::HTTP_2);
            let v: serde_json::Value = res.json().await.unwrap();
            harness::server_of(&v)
        }));
    }
    for t in all {
        assert_eq!(t.await.unwrap(), home);
    }

    // Cookies sent as several h2 `cookie` fields reach the HTTP/1.1
    // server as one field, and the sticky one still routes.
    let tls = pki::connect(lb.addr, ca.client(&[b"h2"]), "localhost")
        .await
        .unwrap();
    let mut h2 = pki::h2(tls).await;
    for node in ["node1", "node2", "node3"] {
        let mut req = pki::get("https://localhost/split", None);
        req.headers_mut().append("cookie", "a=1".parse().unwrap());
        req.headers_mut()
            .append("cookie", format!("SERVERID={node}").parse().unwrap());
        req.headers_mut().append("cookie", "b=2".parse().unwrap());
        let (status, _, v) = pki::read(h2.send_request(req).await.unwrap()).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(harness::server_of(&v), node);
        assert_eq!(v["cookie_headers"], 1, "{v}");
        // limpet's own cookie is not forwarded (HAProxy's `indirect`).
        assert_eq!(v["headers"]["cookie"], "a=1; b=2");
    }
    lb.shutdown().await;
}

#[tokio::test]
async fn a_replaced_certificate_is_served_to_new_connections_after_a_reload_and_old_ones_go_on() {
    let dir = harness::temp_dir("tls-reload");
    let ca = Ca::new("limpet test CA");
    let old = ca.leaf(&["localhost"]);
    let (cert, key) = old.write(&dir, "lb");
    let nodes = nodes(1).await;
    let yaml = tls_config(&nodes, &cert_block(&cert, &key), "");
    let mut lb = Lb::start(&yaml).await;
    let client = ca.client(&[b"http/1.1"]);

    let tls = pki::connect(lb.addr, client.clone(), "localhost")
        .await
        .unwrap();
    assert_eq!(pki::peer_cert(&tls), old.der);
    let mut kept = pki::h1(tls).await;
    let res = kept
        .send_request(pki::get("/before", Some("localhost")))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let _ = pki::read(res).await;

    // The operator renews the certificate in place and reloads.
    let new = ca.leaf(&["localhost"]);
    new.write(&dir, "lb");
    lb.reload(&yaml).await;

    let fresh = pki::connect(lb.addr, client.clone(), "localhost")
        .await
        .unwrap();
    assert_eq!(pki::peer_cert(&fresh), new.der);
    // The connection opened before the reload still works.
    let res = kept
        .send_request(pki::get("/after", Some("localhost")))
        .await
        .unwrap();
    let (status, _, v) = pki::read(res).await;
    assert_eq!(status, 200);
    assert_eq!(v["path"], "/after");
    lb.shutdown().await;
}

#[tokio::test]
async fn certificate_problems_are_config_errors_naming_the_file_and_expiry_is_a_warning() {
    let dir = harness::temp_dir("tls-config");
    let ca = Ca::new("limpet test CA");
    let (cert_a, _) = ca.leaf(&["a.test"]).write(&dir, "a");
    let (_, key_b) = ca.leaf(&["b.test"]).write(&dir, "b");
    let nodes = nodes(1).await;
    let parse = |block: String| {
        limpet::config::parse(&tls_config(&nodes, &block, ""), Path::new("lb.yaml"))
    };

    // A key that belongs to another certificate.
    let e = parse(cert_block(&cert_a, &key_b)).unwrap_err().to_string();
    assert!(e.contains("does not match"), "{e}");
    assert!(e.contains(&key_b.display().to_string()), "{e}");
    assert!(e.contains("lb.yaml:"), "an error names the position: {e}");

    // An unreadable file.
    let missing = dir.join("missing.crt");
    let e = parse(cert_block(&missing, &key_b)).unwrap_err().to_string();
    assert!(e.contains(&missing.display().to_string()), "{e}");

    // Not PEM at all.
    let junk = dir.join("junk.crt");
    std::fs::write(&junk, "hello").unwrap();
    let e = parse(cert_block(&junk, &key_b)).unwrap_err().to_string();
    assert!(e.contains("junk.crt"), "{e}");

    // Expired: loads, with a warning.
    let expired = ca.leaf_with(&["old.test"], |p| {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    });
    let (ec, ek) = expired.write(&dir, "expired");
    let config = parse(cert_block(&ec, &ek)).unwrap();
    assert!(
        config.warnings.iter().any(|w| w.contains("expired")),
        "{:?}",
        config.warnings
    );

    // A private key every user may read is refused, as a token file is.
    let (c, k) = ca.leaf(&["localhost"]).write(&dir, "ok");
    harness::write_mode(&k, &std::fs::read_to_string(&k).unwrap(), 0o644);
    let e = parse(cert_block(&c, &k)).unwrap_err().to_string();
    assert!(
        e.contains("readable by every user") && e.contains("chmod 600"),
        "{e}"
    );
    harness::write_mode(&k, &std::fs::read_to_string(&k).unwrap(), 0o600);
    let config = parse(cert_block(&c, &k)).unwrap();
    assert_eq!(config.warnings, Vec::<String>::new());

    // A TLS listener in front of a cookie pool without `secure: true`.
    let yaml = tls_config(
        &nodes,
        &cert_block(&c, &k),
        "    sticky:\n      mode: cookie",
    );
    let config = limpet::config::parse(&yaml, Path::new("lb.yaml")).unwrap();
    assert!(
        config.warnings.iter().any(|w| w.contains("secure: true")),
        "{:?}",
        config.warnings
    );

    // redirect_https on the TLS listener itself would loop.
    let yaml = tls_config(&nodes, &cert_block(&c, &k), "").replace(
        "    pool: app\n    tls:",
        "    pool: app\n    redirect_https: true\n    tls:",
    );
    let e = limpet::config::parse(&yaml, Path::new("lb.yaml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("redirect_https"), "{e}");
}

#[tokio::test]
async fn limpet_check_prints_the_warning_for_an_insecure_cookie_behind_tls() {
    let dir = harness::temp_dir("tls-check");
    let ca = Ca::new("limpet test CA");
    let (c, k) = ca.leaf(&["localhost"]).write(&dir, "lb");
    let nodes = nodes(1).await;
    let yaml = tls_config(
        &nodes,
        &cert_block(&c, &k),
        "    sticky:\n      mode: cookie",
    );
    let file = dir.join("lb.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_limpet"))
        .arg("check")
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("secure: true"), "{text}");
}

#[tokio::test]
async fn redirect_https_answers_308_to_the_same_target_without_the_port() {
    let nodes = nodes(1).await;
    let yaml = harness::config(&nodes, "", "").replace(
        "    pool: app\n",
        "    pool: app\n    redirect_https: true\n",
    );
    let lb = Lb::start(&yaml).await;
    let c = harness::reqwest_builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let answer = harness::raw(
        lb.addr,
        b"POST /cart?id=7 HTTP/1.1\r\nHost: shop.example:8080\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
        Duration::from_secs(3),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 308"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("location: https://shop.example/cart?id=7\r\n"),
        "{answer}"
    );
    let res = c.get(lb.url("/x?y=1")).send().await.unwrap();
    assert_eq!(res.status(), 308);
    assert_eq!(res.headers()["location"], "https://127.0.0.1/x?y=1");
    assert_eq!(nodes[0].requests(), 0, "nothing reached a server");
    lb.shutdown().await;
}

/// Is `tool` installed? Missing is a failure only when CI says the tools
/// must be there.
fn have(tool: &str) -> bool {
    let found = std::process::Command::new(tool)
        .arg("--version")
        .output()
        .is_ok()
        || std::process::Command::new(tool)
            .arg("version")
            .output()
            .is_ok();
    if !found {
        assert!(
            std::env::var_os("LIMPET_REQUIRE_TLS_TOOLS").is_none(),
            "{tool} is not installed and LIMPET_REQUIRE_TLS_TOOLS is set"
        );
        eprintln!("{tool} is not installed: skipping its check");
    }
    found
}

#[tokio::test]
async fn real_curl_over_http2_and_openssl_s_client_succeed() {
    let dir = harness::temp_dir("tls-tools");
    let ca = Ca::new("limpet test CA");
    let ca_file = ca.write(&dir, "ca.pem");
    let (cert, key) = ca.leaf(&["shop.test", "127.0.0.1"]).write(&dir, "lb");
    let nodes = nodes(2).await;
    let lb = Lb::start(&tls_config(
        &nodes,
        &cert_block(&cert, &key),
        "    sticky:\n      mode: cookie\n      cookie:\n        secure: true",
    ))
    .await;
    let port = lb.addr.port();

    if have("curl") {
        let jar = dir.join("jar.txt");
        // The demo nodes run on this test's thread: wait for tools without
        // blocking it.
        let curl = async |path: &str| {
            let out = tokio::process::Command::new("curl")
                .args(["--silent", "--show-error", "--http2", "--cacert"])
                .arg(&ca_file)
                .args(["--resolve", &format!("shop.test:{port}:127.0.0.1")])
                .arg("--cookie-jar")
                .arg(&jar)
                .arg("--cookie")
                .arg(&jar)
                .args(["--write-out", "\n%{http_version} %{http_code}"])
                .arg(format!("https://shop.test:{port}{path}"))
                .output()
                .await
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                out.status.success(),
                "{text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            text
        };
        let first = curl("/").await;
        assert!(first.ends_with("\n2 200"), "{first}");
        let v: serde_json::Value = serde_json::from_str(first.lines().next().unwrap()).unwrap();
        let home = harness::server_of(&v);
        for _ in 0..4 {
            let again = curl("/").await;
            let v: serde_json::Value = serde_json::from_str(again.lines().next().unwrap()).unwrap();
            assert_eq!(harness::server_of(&v), home, "curl's cookie jar sticks");
        }
    }

    if have("openssl") {
        let out = tokio::process::Command::new("openssl")
            .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
            .args(["-servername", "shop.test", "-verify_return_error"])
            .args(["-alpn", "h2,http/1.1", "-CAfile"])
            .arg(&ca_file)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
        assert!(text.contains("ALPN protocol: h2"), "{text}");
        assert!(
            text.contains("TLSv1.3") || text.contains("TLSv1.2"),
            "{text}"
        );
        // TLS 1.1 and below are refused.
        let old = tokio::process::Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{port}"),
                // OpenSSL itself refuses TLS 1.1 at its default security level.
                "-tls1_1",
                "-cipher",
                "DEFAULT@SECLEVEL=0",
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .unwrap();
        let said = String::from_utf8_lossy(&old.stderr);
        assert!(!old.status.success(), "TLS 1.1 must be refused");
        // rustls answers a TLS 1.1 hello with an alert.
        assert!(said.contains("alert"), "{said}");
    }
    lb.shutdown().await;
}

#[tokio::test]
async fn a_tls_session_resumes_across_a_reload_unless_the_certificates_changed() {
    let dir = harness::temp_dir("tls-resume-reload");
    let ca = Ca::new("limpet test CA");
    let (cert, key) = ca.leaf(&["localhost"]).write(&dir, "lb");
    let nodes = nodes(1).await;
    let yaml = tls_config(&nodes, &cert_block(&cert, &key), "");
    let mut lb = Lb::start(&yaml).await;
    let client = ca.client(&[b"http/1.1"]);
    assert_eq!(
        handshake(lb.addr, client.clone()).await,
        Some(rustls::HandshakeKind::Full)
    );
    // A reload with the same certificates: the ticket still opens.
    lb.reload(&yaml).await;
    assert_eq!(
        handshake(lb.addr, client.clone()).await,
        Some(rustls::HandshakeKind::Resumed)
    );
    // Renewed certificates: sessions start anew.
    ca.leaf(&["localhost"]).write(&dir, "lb");
    lb.reload(&yaml).await;
    assert_eq!(
        handshake(lb.addr, client).await,
        Some(rustls::HandshakeKind::Full)
    );
    lb.shutdown().await;
}

/// A connection with one request (so the server's session ticket is read):
/// how its handshake went.
async fn handshake(
    addr: std::net::SocketAddr,
    client: std::sync::Arc<rustls::ClientConfig>,
) -> Option<rustls::HandshakeKind> {
    let tls = pki::connect(addr, client, "localhost").await.unwrap();
    let kind = tls.get_ref().1.handshake_kind();
    let mut h1 = pki::h1(tls).await;
    let res = h1
        .send_request(pki::get("/", Some("localhost")))
        .await
        .unwrap();
    assert_eq!(pki::read(res).await.0, 200);
    kind
}

#[tokio::test]
async fn each_certificates_expiry_is_a_metric_updated_by_a_reload() {
    let dir = harness::temp_dir("tls-expiry");
    let ca = Ca::new("limpet test CA");
    let until = |y: i32| {
        move |p: &mut rcgen::CertificateParams| p.not_after = rcgen::date_time_ymd(y, 1, 1)
    };
    let (cert, key) = ca.leaf_with(&["localhost"], until(2030)).write(&dir, "lb");
    let nodes = nodes(1).await;
    let yaml = format!(
        "{}admin:\n  bind: 127.0.0.1:2\n",
        tls_config(&nodes, &cert_block(&cert, &key), "")
    );
    let mut lb = Lb::start(&yaml).await;
    let labels = format!("listener=\"https\",certificate=\"{}\"", cert.display());
    let expiry =
        |text: &str| harness::metric(text, "limpet_tls_certificate_expiry_seconds", &labels);
    // 2030-01-01T00:00:00Z
    assert_eq!(expiry(&lb.metrics().await), 1_893_456_000.0);
    ca.leaf_with(&["localhost"], until(2031)).write(&dir, "lb");
    lb.reload(&yaml).await;
    assert_eq!(expiry(&lb.metrics().await), 1_924_992_000.0);
    lb.shutdown().await;
}

#[tokio::test]
async fn a_key_inside_the_certificate_file_serves_as_both_as_haproxy_has_it() {
    let dir = harness::temp_dir("tls-combined");
    let ca = Ca::new("limpet test CA");
    let leaf = ca.leaf(&["localhost"]);
    let pem = dir.join("lb.pem");
    harness::write_mode(&pem, &format!("{}{}", leaf.cert_pem, leaf.key_pem), 0o600);
    let nodes = nodes(1).await;
    let lb = Lb::start(&tls_config(&nodes, &cert_block(&pem, &pem), "")).await;
    let tls = pki::connect(lb.addr, ca.client(&[b"http/1.1"]), "localhost")
        .await
        .unwrap();
    assert_eq!(pki::peer_cert(&tls), leaf.der);
    lb.shutdown().await;
}
