//! HTTPS to servers (`tls:` on a server): a private CA and a server name,
//! an IP address in the certificate, connection reuse, health checks over
//! TLS, and a server whose certificate limpet cannot verify (502, and down
//! for the health checks).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use crate::harness::{self, Lb, nodes};
use crate::pki::{Ca, Leaf};

/// An HTTPS server with `leaf` in front of the demo node at `backend`,
/// counting the connections it accepts.
async fn https_node(leaf: &Leaf, backend: SocketAddr) -> (SocketAddr, Arc<AtomicUsize>) {
    let (addr, accepted, _) = https_node_renewable(leaf, backend).await;
    (addr, accepted)
}

/// The certificate an [`https_node_renewable`] serves to new connections.
type Serving = Arc<Mutex<tokio_rustls::TlsAcceptor>>;

/// [`https_node`], whose certificate can be replaced (for new connections).
async fn https_node_renewable(
    leaf: &Leaf,
    backend: SocketAddr,
) -> (SocketAddr, Arc<AtomicUsize>, Serving) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let serving: Serving = Arc::new(Mutex::new(tokio_rustls::TlsAcceptor::from(
        leaf.server_config(),
    )));
    let count = Arc::clone(&accepted);
    let current = Arc::clone(&serving);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::Relaxed);
            let acceptor = current.lock().unwrap().clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (addr, accepted, serving)
}

/// Pool `app` with one server `name` at `addr` and its `tls` setting.
fn config(name: &str, addr: SocketAddr, tls: &str, pool_extra: &str) -> String {
    format!(
        "listeners:\n  - name: http\n    bind: 127.0.0.1:1\n    pool: app\nadmin:\n  bind: 127.0.0.1:2\nlog:\n  level: error\npools:\n  app:\n{pool_extra}\n    passive:\n      max_fails: 0\n    servers:\n      - {{ name: {name}, address: \"{addr}\", tls: {tls} }}\n"
    )
}

#[tokio::test]
async fn a_server_behind_a_private_ca_is_reached_over_https_and_its_connections_reused() {
    let dir = harness::temp_dir("backend-tls");
    let ca = Ca::new("internal CA");
    let ca_file = ca.write(&dir, "ca.pem");
    let nodes = nodes(2).await;
    // One certificate names the server, the other only its IP address.
    let (named, named_conns) = https_node(&ca.leaf(&["app.internal"]), nodes[0].addr()).await;
    let (by_ip, _) = https_node(&ca.leaf(&["127.0.0.1"]), nodes[1].addr()).await;

    let yaml = config(
        "node1",
        named,
        &format!(
            "{{ ca: \"{}\", server_name: app.internal }}",
            ca_file.display()
        ),
        "",
    );
    let lb = Lb::start(&yaml).await;
    let c = harness::client();
    for i in 0..10 {
        let (status, v) = harness::get_json(&c, &lb.url(&format!("/r{i}"))).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(harness::server_of(&v), "node1");
    }
    assert_eq!(
        named_conns.load(Ordering::Relaxed),
        1,
        "ten requests in a row share one TLS connection"
    );
    lb.shutdown().await;

    // No server_name: the address is verified against an IP entry.
    let yaml = config(
        "node2",
        by_ip,
        &format!("{{ ca: \"{}\" }}", ca_file.display()),
        "",
    );
    let lb = Lb::start(&yaml).await;
    let (status, v) = harness::get_json(&harness::client(), &lb.url("/")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(harness::server_of(&v), "node2");
    lb.shutdown().await;
}

#[tokio::test]
async fn health_checks_speak_tls_to_such_a_server() {
    let dir = harness::temp_dir("backend-tls-health");
    let ca = Ca::new("internal CA");
    let ca_file = ca.write(&dir, "ca.pem");
    let nodes = nodes(1).await;
    let (addr, _) = https_node(&ca.leaf(&["app.internal"]), nodes[0].addr()).await;
    let health = "    health_check:\n      type: http\n      path: /health\n      interval: 100ms\n      rise: 1\n      fall: 1";
    let yaml = config(
        "node1",
        addr,
        &format!(
            "{{ ca: \"{}\", server_name: app.internal }}",
            ca_file.display()
        ),
        health,
    );
    let lb = Lb::start(&yaml).await;
    assert!(
        harness::eventually(Duration::from_secs(5), || async {
            nodes[0].health_checks() >= 2
        })
        .await,
        "the HTTP check reached the node through TLS"
    );
    assert!(lb.live("app", "node1").is_up());
    nodes[0].set_health(503);
    assert!(
        harness::eventually(Duration::from_secs(5), || async {
            !lb.live("app", "node1").is_up()
        })
        .await
    );
    lb.shutdown().await;
}

#[tokio::test]
async fn a_server_whose_certificate_cannot_be_verified_fails_with_502_and_fails_its_checks() {
    let dir = harness::temp_dir("backend-tls-bad");
    let ours = Ca::new("internal CA");
    let theirs = Ca::new("somebody else's CA");
    let ours_file = ours.write(&dir, "ca.pem");
    let nodes = nodes(1).await;
    let (addr, _) = https_node(
        &theirs.leaf(&["app.internal", "127.0.0.1"]),
        nodes[0].addr(),
    )
    .await;

    for tls in [
        format!(
            "{{ ca: \"{}\", server_name: app.internal }}",
            ours_file.display()
        ),
        // The system roots do not know a test CA either.
        "true".to_owned(),
    ] {
        let lb = Lb::start(&config("node1", addr, &tls, "")).await;
        let res = harness::client().get(lb.url("/")).send().await.unwrap();
        assert_eq!(res.status(), 502, "{tls}");
        let text = res.text().await.unwrap();
        assert!(!text.contains("127.0.0.1"), "no address leaks: {text}");
        lb.shutdown().await;
    }
    assert_eq!(nodes[0].requests(), 0, "nothing was sent unverified");

    // The right CA but the wrong name is refused too.
    let (addr2, _) = https_node(&ours.leaf(&["other.internal"]), nodes[0].addr()).await;
    let lb = Lb::start(&config(
        "node1",
        addr2,
        &format!(
            "{{ ca: \"{}\", server_name: app.internal }}",
            ours_file.display()
        ),
        "",
    ))
    .await;
    let res = harness::client().get(lb.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 502);
    lb.shutdown().await;

    // A TCP check completes the handshake, so it fails as well.
    let check =
        "    health_check:\n      type: tcp\n      interval: 100ms\n      rise: 1\n      fall: 1";
    let lb = Lb::start(&config(
        "node1",
        addr,
        &format!(
            "{{ ca: \"{}\", server_name: app.internal }}",
            ours_file.display()
        ),
        check,
    ))
    .await;
    assert!(
        harness::eventually(Duration::from_secs(5), || async {
            harness::metric(
                &lb.metrics().await,
                "limpet_server_up",
                "pool=\"app\",server=\"node1\"",
            ) == 0.0
        })
        .await
    );
    lb.shutdown().await;
}

#[test]
fn server_tls_settings_are_checked_when_the_file_is_loaded() {
    let parse = |tls: &str| {
        let yaml = config("a", "127.0.0.1:9".parse().unwrap(), tls, "");
        limpet::config::parse(&yaml, Path::new("lb.yaml"))
    };
    let e = parse("{ ca: /nonexistent/ca.pem }")
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    let e = parse("{ server_name: \"bad name!\" }")
        .unwrap_err()
        .to_string();
    assert!(e.contains("server_name"), "{e}");
    // Neither a flag nor the options: the error says what `tls` may be.
    for wrong in ["{ cert: x }", "maybe", "{ ca: 5 }"] {
        let e = parse(wrong).unwrap_err().to_string();
        assert!(e.contains("lb.yaml:"), "{e}");
        assert!(
            e.contains("true, false or { ca: FILE, server_name: NAME }"),
            "{wrong}: {e}"
        );
    }
    assert!(parse("false").is_ok());
}

#[tokio::test]
async fn a_ca_file_renewed_in_place_is_read_again_on_reload() {
    // The server's certificate moves to a new CA, and the operator writes
    // the new CA over the old file and reloads: requests and health checks
    // verify against the new one (not the file name's old contents).
    let dir = harness::temp_dir("backend-tls-renew");
    let old_ca = Ca::new("internal CA 2025");
    let ca_file = old_ca.write(&dir, "ca.pem");
    let nodes = nodes(1).await;
    let (addr, _, serving) =
        https_node_renewable(&old_ca.leaf(&["app.internal"]), nodes[0].addr()).await;
    let health = "    health_check:\n      type: http\n      path: /health\n      interval: 50ms\n      rise: 1\n      fall: 1";
    let yaml = config(
        "node1",
        addr,
        &format!(
            "{{ ca: \"{}\", server_name: app.internal }}",
            ca_file.display()
        ),
        health,
    );
    let mut lb = Lb::start(&yaml).await;
    let c = harness::client();
    assert_eq!(harness::get_json(&c, &lb.url("/")).await.0, 200);

    let new_ca = Ca::new("internal CA 2026");
    *serving.lock().unwrap() =
        tokio_rustls::TlsAcceptor::from(new_ca.leaf(&["app.internal"]).server_config());
    assert_eq!(new_ca.write(&dir, "ca.pem"), ca_file);
    lb.reload(&yaml).await;
    assert!(
        harness::eventually(Duration::from_secs(5), || async {
            lb.live("app", "node1").is_healthy()
                && harness::get_json(&harness::client(), &lb.url("/")).await.0 == 200
        })
        .await,
        "still verifying against the old CA after the reload"
    );
    // And it stays so: the next health checks pass with the new CA (fall
    // is 1: one failure would show).
    let live = lb.live("app", "node1");
    let (passed, failed) = (&live.checks.success, &live.checks.failure);
    let (p0, f0) = (
        passed.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    assert!(
        harness::eventually(Duration::from_secs(5), || async {
            passed.load(Ordering::Relaxed) >= p0 + 3
        })
        .await
    );
    assert_eq!(
        failed.load(Ordering::Relaxed),
        f0,
        "a check failed with the new CA"
    );
    assert!(live.is_healthy());
    assert_eq!(harness::get_json(&c, &lb.url("/")).await.0, 200);
}
