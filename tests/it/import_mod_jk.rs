//! `limpet import --from mod_jk`: a workers.properties becomes a pool whose
//! servers are the lb worker's members, reached over HTTP (`--http-port`),
//! sticky by Tomcat's jvmRoute as mod_jk was.

use std::path::Path;
use std::time::Duration;

use limpet::config::{Balance, OnServerDown, ServerState, StickyMode};
use limpet::import::Format;

use crate::import_apache::{comment_for, fixture, row, run_import, servers, translate};

#[test]
fn a_workers_properties_lb_worker_becomes_a_jvm_route_pool_on_the_http_port() {
    let dir = fixture("mod_jk");
    let file = dir.join("workers.properties");
    let (_, yaml, c) = translate(&file, Format::ModJk, Some(8080));

    assert_eq!(c.listeners.len(), 1);
    let l = &c.listeners[0];
    assert_eq!(
        (l.name.as_str(), l.bind.to_string().as_str()),
        ("http", "0.0.0.0:8080")
    );
    assert_eq!(l.pool, Some(0));

    let p = &c.pools[0];
    assert_eq!(p.name, "loadbalancer");
    assert_eq!(p.balance, Balance::LeastConn);
    assert_eq!(p.sticky.mode, StickyMode::JvmRoute);
    assert_eq!(p.sticky.on_server_down, OnServerDown::Error);
    assert_eq!(p.sticky.jvm_route.cookie.to_string(), "JSESSIONID");
    assert_eq!(p.sticky.jvm_route.path_param.to_string(), "jsessionid");
    assert_eq!(
        servers(p),
        [
            row(
                "node1",
                "10.0.1.11:8080",
                "node1",
                2,
                false,
                ServerState::Active
            ),
            row(
                "node2",
                "10.0.1.12:8080",
                "tc2",
                1,
                false,
                ServerState::Active
            ),
            row(
                "node3",
                "10.0.1.13:8080",
                "node3",
                1,
                false,
                ServerState::Drain
            ),
        ]
    );
    // The template's timeouts, inherited through reference=.
    assert_eq!(c.timeouts.connect, Duration::from_millis(2000));
    assert_eq!(c.timeouts.backend_response, Duration::from_secs(60));

    let expect = [
        (3, "JkMount rules are in Apache's configuration"),
        (3, "status page"),
        (11, "AJP CPing"),
        (14, "AJP becomes HTTP to port 8080"),
        (25, "distance"),
    ];
    for (line, what) in expect {
        let found = yaml
            .lines()
            .filter(|l| l.contains(&format!("# import: {}:{line}: ", file.display())))
            .any(|l| l.contains(what));
        assert!(found, "no note {what:?} at line {line}\n{yaml}");
    }
    assert!(comment_for(&yaml, &file, 28).is_none(), "{yaml}");
}

#[test]
fn mod_jk_exits_1_without_the_http_port_and_on_a_file_of_another_kind() {
    let dir = fixture("mod_jk");
    let file = dir.join("workers.properties");
    let (code, out, err) = run_import(&[file.to_str().unwrap()]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(
        err.contains("--http-port") && err.contains("workers.properties:"),
        "{err}"
    );

    let (code, out, err) = run_import(&["--http-port", "8080", file.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(out.contains("mode: jvm_route"), "{out}");

    let conf =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/import/apache/httpd.conf");
    let (code, out, err) = run_import(&[
        "--from",
        "mod_jk",
        "--http-port",
        "8080",
        conf.to_str().unwrap(),
    ]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(err.contains("not a mod_jk workers.properties"), "{err}");
}
