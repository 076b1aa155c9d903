//! Configuration errors name file:line:column and say what is wrong; `limpet
//! check` exits 0 or 1.

use std::path::Path;
use std::process::Command;

use limpet::config::parse;

fn error_of(yaml: &str) -> String {
    match parse(yaml, Path::new("lb.yaml")) {
        Ok(_) => panic!("accepted an invalid config:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

const GOOD: &str = "\
listeners:
  - name: http
    bind: 127.0.0.1:8080
    pool: app
pools:
  app:
    servers:
      - { name: node1, address: 127.0.0.1:9001 }
";

#[test]
fn the_repository_configs_are_valid() {
    for file in ["lb.yaml", "examples/tomcat/lb.yaml"] {
        let text = std::fs::read_to_string(file).unwrap();
        if let Err(e) = parse(&text, Path::new(file)) {
            panic!("{e}");
        }
    }
}

#[test]
fn a_minimal_config_is_valid_and_gets_the_contract_defaults() {
    let c = parse(GOOD, Path::new("lb.yaml")).unwrap();
    assert_eq!(c.timeouts.connect.as_secs(), 3);
    assert_eq!(c.timeouts.request_header.as_secs(), 10);
    assert_eq!(c.limits.max_header_bytes, 65536);
    assert_eq!(c.pools[0].retries, 2);
    assert_eq!(c.pools[0].servers[0].route, "node1");
    assert_eq!(c.pools[0].servers[0].weight, 1);
}

#[test]
fn an_unknown_key_is_an_error_with_its_position() {
    let e = error_of(&GOOD.replace("    pool: app\n", "    pool: app\n    pol: x\n"));
    assert!(e.starts_with("lb.yaml:5:5:"), "{e}");
    assert!(e.contains("unknown field `pol`"), "{e}");
}

#[test]
fn a_duplicate_listener_name_is_an_error() {
    let y = GOOD.replace(
        "    pool: app\n",
        "    pool: app\n  - name: http\n    bind: 127.0.0.1:8081\n    pool: app\n",
    );
    let e = error_of(&y);
    assert!(e.starts_with("lb.yaml:5:11:"), "{e}");
    assert!(e.contains("listener \"http\" is defined twice"), "{e}");
}

#[test]
fn a_duplicate_pool_name_is_an_error() {
    let y = format!("{GOOD}  app:\n    servers:\n      - {{ name: n, address: 127.0.0.1:1 }}\n");
    let e = error_of(&y);
    assert!(e.starts_with("lb.yaml:"), "{e}");
    assert!(
        e.to_lowercase().contains("duplicate") || e.contains("defined twice"),
        "{e}"
    );
}

#[test]
fn a_duplicate_server_name_is_an_error() {
    let y = format!("{GOOD}      - {{ name: node1, address: 127.0.0.1:9002 }}\n");
    let e = error_of(&y);
    assert!(e.starts_with("lb.yaml:9:17:"), "{e}");
    assert!(
        e.contains("server \"node1\" appears twice in pool \"app\""),
        "{e}"
    );
}

#[test]
fn a_listener_naming_a_missing_pool_is_an_error() {
    let e = error_of(&GOOD.replace("    pool: app\n", "    pool: nope\n"));
    assert!(e.starts_with("lb.yaml:4:11:"), "{e}");
    assert!(
        e.contains("pool \"nope\" is not defined under `pools`"),
        "{e}"
    );
}

#[test]
fn a_route_naming_a_missing_pool_is_an_error() {
    let e = error_of(&GOOD.replace(
        "    pool: app\n",
        "    pool: app\n    routes:\n      - { path_prefix: /s/, pool: static }\n",
    ));
    assert!(e.starts_with("lb.yaml:6:35:"), "{e}");
    assert!(e.contains("pool \"static\" is not defined"), "{e}");
}

#[test]
fn a_pool_without_servers_is_an_error() {
    let e = error_of(
        &GOOD
            .replace("      - { name: node1, address: 127.0.0.1:9001 }\n", "")
            .replace("servers:", "servers: []"),
    );
    assert!(e.starts_with("lb.yaml:7:14:"), "{e}");
    assert!(e.contains("has no servers"), "{e}");
}

#[test]
fn a_bad_socket_address_is_an_error() {
    // A server's address may be a host name, but it needs a port.
    let e = error_of(&GOOD.replace("127.0.0.1:9001", "localhost"));
    assert!(e.starts_with("lb.yaml:8:33:"), "{e}");
    assert!(
        e.contains("must be an IP address or a host name, and a port"),
        "{e}"
    );
    for bad in ["tomcat a:8080", "tomcat:0", "-:80x", "\"[::1]\""] {
        let e = error_of(&GOOD.replace("127.0.0.1:9001", bad));
        assert!(
            e.contains("must be an IP address or a host name"),
            "{bad}: {e}"
        );
    }
    let c = limpet::config::parse(
        &GOOD.replace("127.0.0.1:9001", "tomcat-1.internal:9001"),
        std::path::Path::new("lb.yaml"),
    )
    .unwrap();
    let s = &c.pools[0].servers[0];
    assert_eq!(s.host.as_deref(), Some("tomcat-1.internal"));
    assert_eq!(s.address.port(), 9001);
    assert!(!s.resolved);
    let e = error_of(&GOOD.replace("127.0.0.1:8080", "127.0.0.1:99999"));
    assert!(e.starts_with("lb.yaml:3:11:"), "{e}");
}

#[test]
fn weight_zero_is_an_error() {
    let e = error_of(&GOOD.replace(
        "address: 127.0.0.1:9001 }",
        "address: 127.0.0.1:9001, weight: 0 }",
    ));
    assert!(e.starts_with("lb.yaml:8:57:"), "{e}");
    assert!(e.contains("`weight` must be between 1 and 256"), "{e}");
}

#[test]
fn conflicting_binds_are_an_error() {
    let y = GOOD.replace(
        "    pool: app\n",
        "    pool: app\n  - name: other\n    bind: 0.0.0.0:8080\n    pool: app\n",
    );
    let e = error_of(&y);
    assert!(e.starts_with("lb.yaml:6:11:"), "{e}");
    assert!(e.contains("conflicts with listener \"http\""), "{e}");
}

#[test]
fn bad_durations_and_choices_are_errors() {
    let e = error_of(&format!("{GOOD}timeouts:\n  connect: soon\n"));
    assert!(e.starts_with("lb.yaml:10:12:"), "{e}");
    assert!(e.contains("must be a duration"), "{e}");
    let e = error_of(&GOOD.replace("  app:\n", "  app:\n    balance: fastest\n"));
    assert!(
        e.contains("`pools.app.balance` must be one of round_robin, least_conn, random_two"),
        "{e}"
    );
}

#[test]
fn broken_yaml_is_an_error_with_its_position() {
    let e = error_of("listeners: [\n");
    assert!(e.starts_with("lb.yaml:1:"), "{e}");
}

#[test]
fn limpet_check_exits_0_for_a_valid_file_and_1_with_the_error() {
    let dir = std::env::temp_dir().join(format!("limpet-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.yaml");
    std::fs::write(&good, GOOD).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, GOOD.replace("pool: app", "pool: nope")).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_limpet"))
        .args(["check", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let out = Command::new(env!("CARGO_BIN_EXE_limpet"))
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml:4:11: pool \"nope\" is not defined"),
        "{err}"
    );

    // Starting refuses the same file with the same error.
    let out = Command::new(env!("CARGO_BIN_EXE_limpet"))
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.yaml:4:11:"));

    let out = Command::new(env!("CARGO_BIN_EXE_limpet"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("limpet "));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn limpet_check_names_the_position_and_the_values_of_a_bad_http1() {
    let dir = crate::harness::temp_dir("check-http1");
    let file = dir.join("lb.yaml");
    std::fs::write(&file, format!("{GOOD}http1: fast\n")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_limpet"))
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("lb.yaml:9:8: `http1` must be one of limpet, hyper, not \"fast\"."),
        "{err}"
    );

    // Without the key, LIMPET_HTTP1 decides, and must be one of the two.
    std::fs::write(&file, GOOD).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_limpet"))
        .args(["check", "--config"])
        .arg(&file)
        .env("LIMPET_HTTP1", "fast")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("LIMPET_HTTP1: expected limpet or hyper, not \"fast\"."),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn names_that_could_escape_a_file_name_or_a_label_are_errors() {
    let e = error_of(
        &GOOD
            .replace("  app:\n", "  ../etc:\n")
            .replace("pool: app", "pool: ../etc"),
    );
    assert!(e.contains("a name must be 1 to 64 letters"), "{e}");
    let e = error_of(&GOOD.replace("name: node1", "name: \"node 1\""));
    assert!(e.starts_with("lb.yaml:8:17:"), "{e}");
}

#[test]
fn every_number_and_duration_has_a_range_that_check_enforces() {
    let cases: &[(&str, &str)] = &[
        (
            "limits:\n  max_connections: 18446744073709551615\n",
            "`max_connections` must be between 1 and 1000000",
        ),
        (
            "timeouts:\n  client_idle: 18446744073709551615s\n",
            "`timeouts.client_idle` must be",
        ),
        (
            "timeouts:\n  request_header: 500000000000s\n",
            "`timeouts.request_header` must be between 1ms and 1h",
        ),
        (
            "timeouts:\n  connect: 500us\n",
            "`timeouts.connect` must be between 1ms and 1h",
        ),
        (
            "limits:\n  max_headers: 0\n",
            "`max_headers` must be between 1 and 1000",
        ),
        ("workers: 0\n", "`workers` must be `auto` or a number"),
        ("workers: [1]\n", "`workers` must be `auto` or a number"),
    ];
    for (extra, want) in cases {
        let e = error_of(&format!("{GOOD}{extra}"));
        assert!(e.contains(want), "{extra}: {e}");
        assert!(
            e.starts_with("lb.yaml:9:") || e.starts_with("lb.yaml:10:"),
            "{e}"
        );
    }
}

#[test]
fn what_cannot_work_is_rejected() {
    // Port 0 picks a free port for a listener, but names no server.
    parse(
        &GOOD.replace("bind: 127.0.0.1:8080", "bind: 127.0.0.1:0"),
        Path::new("lb.yaml"),
    )
    .unwrap();
    let e = error_of(&GOOD.replace("address: 127.0.0.1:9001", "address: 127.0.0.1:0"));
    assert!(e.contains("must name a port from 1 to 65535"), "{e}");
    let e = error_of(&GOOD.replace(
        "    pool: app\n",
        "    pool: app\n    routes:\n      - { host: \"a b.example\", pool: app }\n",
    ));
    assert!(e.contains("a route `host` must be a host name"), "{e}");
    let e = error_of(&GOOD.replace(
        "    pool: app\n",
        "    pool: app\n    routes:\n      - { path_prefix: /a/../b/, pool: app }\n",
    ));
    assert!(e.contains("write it as \"/b/\""), "{e}");
    let file = std::env::temp_dir().join(format!("limpet-state-file-{}", std::process::id()));
    std::fs::write(&file, "x").unwrap();
    let e = error_of(&format!("{GOOD}state_dir: \"{}\"\n", file.display()));
    assert!(e.contains("exists and is not a directory"), "{e}");
    let _ = std::fs::remove_file(&file);
}

#[test]
fn quoted_numbers_and_booleans_are_errors() {
    let e = error_of(&GOOD.replace(
        "address: 127.0.0.1:9001 }",
        "address: 127.0.0.1:9001, weight: '5' }",
    ));
    assert!(e.starts_with("lb.yaml:8:"), "{e}");
    assert!(e.contains("without quotes"), "{e}");
    let e = error_of(&format!(
        "{GOOD}    sticky:\n      mode: cookie\n      cookie:\n        secure: \"true\"\n"
    ));
    assert!(e.contains("without quotes"), "{e}");
    // Unquoted, they are fine.
    let ok = GOOD.replace(
        "address: 127.0.0.1:9001 }",
        "address: 127.0.0.1:9001, weight: 5 }",
    );
    assert!(parse(&ok, Path::new("lb.yaml")).is_ok());
}

mod fuzz {
    //! The config loader under arbitrary input: it never panics, and every
    //! configuration it accepts starts, serves a request and stops.

    use std::path::Path;

    use proptest::prelude::*;
    use proptest::test_runner::{Config as RunnerConfig, TestRunner};

    use limpet::config::parse;

    proptest! {
        #![proptest_config(RunnerConfig::with_cases(512))]
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
            let _ = parse(&text, Path::new("lb.yaml"));
        }

        #[test]
        fn yaml_shaped_noise_never_panics(
            lines in proptest::collection::vec(
                ("[ -]{0,6}", "[a-z_]{1,16}", prop_oneof![
                    Just(String::new()),
                    "[-a-zA-Z0-9_.:/' \\[\\]{},]{0,20}",
                ]),
                0..20,
            )
        ) {
            let text: String = lines
                .iter()
                .map(|(indent, key, value)| format!("{indent}{key}: {value}\n"))
                .collect();
            let _ = parse(&text, Path::new("lb.yaml"));
        }
    }

    /// Mostly `valid` values (edges included), sometimes `invalid` ones.
    fn pick(
        valid: &'static [&'static str],
        invalid: &'static [&'static str],
    ) -> impl Strategy<Value = &'static str> {
        prop_oneof![
            12 => proptest::sample::select(valid),
            1 => proptest::sample::select(invalid),
        ]
    }

    const BAD: &[&str] = &[
        "0s",
        "999us",
        "18446744073709551615s",
        "soon",
        "-1s",
        "'5s'",
    ];

    /// Configurations built from edge values, in range and just outside.
    fn config(node: std::net::SocketAddr) -> impl Strategy<Value = String> {
        let short = || pick(&["1ms", "10ms", "2s", "1h"], BAD);
        let long = || pick(&["1ms", "10ms", "2s", "1h", "24h"], BAD);
        (
            (short(), short(), long(), long(), long(), pick(&["0s", "1ms", "24h"], &["25h"])),
            (
                pick(&["1", "1000000"], &["1000001", "0", "18446744073709551615", "'7'"]),
                pick(&["1024", "16777216"], &["1023", "99999999999"]),
                pick(&["1", "1000"], &["1001", "0"]),
            ),
            (
                pick(&["none", "ip_hash", "cookie", "jvm_route", "learn"], &["sticky"]),
                pick(&["1", "256"], &["257", "0", "'1'"]),
                pick(&["0", "16"], &["17"]),
                pick(&["1", "100000000"], &["100000001", "0"]),
                pick(&["100ms", "30d"], &["31d", "99ms"]),
                pick(&["1s", "400d"], &["401d", "0s"]),
                pick(&["1", "100"], &["101", "0"]),
                pick(&["10ms", "1h"], &["9ms", "2h"]),
            ),
        )
            .prop_map(
                move |(
                    (connect, header, body, response, idle, grace),
                    (conns, header_bytes, headers),
                    (mode, weight, retries, capacity, idle_timeout, max_age, rise, interval),
                )| {
                    format!(
                        "listeners:\n  - name: http\n    bind: 127.0.0.1:1\n    pool: app\n\
                         timeouts:\n  connect: {connect}\n  request_header: {header}\n  client_body: {body}\n  backend_response: {response}\n  client_idle: {idle}\n  shutdown_grace: {grace}\n\
                         limits:\n  max_connections: {conns}\n  max_header_bytes: {header_bytes}\n  max_headers: {headers}\n\
                         log:\n  level: error\n\
                         pools:\n  app:\n    retries: {retries}\n    sticky:\n      mode: {mode}\n      cookie:\n        max_age: {max_age}\n      learn:\n        capacity: {capacity}\n        idle_timeout: {idle_timeout}\n        persist: false\n\
                         \x20   health_check:\n      interval: {interval}\n      rise: {rise}\n\
                         \x20   servers:\n      - {{ name: n1, address: \"{node}\", weight: {weight} }}\n"
                    )
                },
            )
    }

    /// Runs the real binary for every accepted configuration: it starts,
    /// answers a request, never panics, and exits 0 on SIGTERM. The answer
    /// is the server's 200, or limpet's own where the file allows it: for a
    /// request_header timeout under a second, 408, or none at all (the
    /// timer runs from the accept, and a connection silent until then is
    /// closed quietly); 502/503/504 for a connect or backend_response
    /// timeout under a second; 431 with `max_headers: 1` (the request has
    /// two).
    #[test]
    fn every_accepted_config_starts_serves_and_stops() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let node = rt.block_on(limpet_demo::DemoNode::start("n1")).unwrap();
        let mut runner = TestRunner::new(RunnerConfig {
            cases: 100,
            failure_persistence: None,
            ..RunnerConfig::default()
        });
        let accepted = std::cell::Cell::new(0);
        runner
            .run(&config(node.addr()), |yaml| {
                let Ok(parsed) = parse(&yaml, Path::new("lb.yaml")) else {
                    return Ok(());
                };
                accepted.set(accepted.get() + 1);
                let short = |d: std::time::Duration| d < std::time::Duration::from_secs(1);
                let mut allowed = vec!["200"];
                if short(parsed.timeouts.request_header) {
                    allowed.extend(["408", ""]);
                }
                if short(parsed.timeouts.connect) || short(parsed.timeouts.backend_response) {
                    allowed.extend(["502", "503", "504"]);
                }
                if parsed.limits.max_headers < 2 {
                    allowed.push("431");
                }
                rt.block_on(async {
                    let yaml = yaml.replace("bind: 127.0.0.1:1", "bind: \"{BIND}\"");
                    let mut p = crate::harness::Proc::start("fuzz", &yaml).await;
                    let answer = crate::harness::raw(
                        p.addr,
                        b"GET /static/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                        std::time::Duration::from_secs(2),
                    )
                    .await;
                    let status = answer
                        .strip_prefix("HTTP/1.1 ")
                        .and_then(|rest| rest.get(..3))
                        .unwrap_or_default();
                    assert!(
                        allowed.contains(&status),
                        "{status} is not one of {allowed:?}\n{yaml}\n{answer}\n{}",
                        p.log()
                    );
                    p.signal("TERM");
                    let code = p.wait_exit(std::time::Duration::from_secs(10)).await;
                    let log = p.log();
                    assert_eq!(code, Some(0), "{yaml}\n{log}");
                    assert!(!log.contains("panicked"), "{yaml}\n{log}");
                });
                Ok(())
            })
            .unwrap();
        assert!(
            accepted.get() >= 10,
            "only {} generated configs were valid",
            accepted.get()
        );
    }
}

#[test]
fn the_complete_file_in_the_configuration_reference_passes_limpet_check() {
    use crate::pki::Ca;
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md"),
    )
    .unwrap();
    let block = doc
        .split("## A complete file")
        .nth(1)
        .and_then(|rest| rest.split("```yaml\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .unwrap();
    // The files it names, made here.
    let dir = crate::harness::temp_dir("config-reference");
    let ca = Ca::new("limpet test CA");
    let (lb_crt, lb_key) = ca.leaf(&["lb.example"]).write(&dir, "lb");
    let (shop_crt, shop_key) = ca.leaf(&["shop.example"]).write(&dir, "shop");
    let token = dir.join("token");
    crate::harness::write_mode(&token, "s3cret-token-of-some-length\n", 0o600);
    let ca_file = ca.write(&dir, "internal-ca.pem");
    let mut yaml = block.to_owned();
    for (from, to) in [
        ("/etc/limpet/certs/lb.crt", &lb_crt),
        ("/etc/limpet/certs/lb.key", &lb_key),
        ("/etc/limpet/certs/shop.crt", &shop_crt),
        ("/etc/limpet/certs/shop.key", &shop_key),
        ("/etc/limpet/token", &token),
        ("/etc/limpet/internal-ca.pem", &ca_file),
    ] {
        assert!(yaml.contains(from), "{from}");
        yaml = yaml.replace(from, &to.display().to_string());
    }
    let config = parse(&yaml, Path::new("lb.yaml")).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    assert_eq!(config.listeners.len(), 2);
    assert!(config.listeners[1].certs.is_some());
}

#[test]
fn resolvers_and_discover_are_checked_when_the_file_is_loaded() {
    let with_discover = |discover: &str| {
        GOOD.replace(
            "    servers:\n      - { name: node1, address: 127.0.0.1:9001 }\n",
            &format!("    discover: {discover}\n"),
        )
    };
    for (discover, says) in [
        ("{ srv: _http._tcp.x, a: x, port: 80 }", "one of `srv:`"),
        ("{ }", "one of `srv:`"),
        ("{ a: tomcat.internal }", "needs `port:`"),
        ("{ srv: _http._tcp.x, port: 80 }", "goes with `a:`"),
        ("{ srv: \"not a name\" }", "must be a DNS name"),
        ("{ a: x, port: 0 }", "port"),
        ("{ srv: x, weight: 0 }", "weight"),
        ("{ srv: x, max_servers: 0 }", "max_servers"),
        ("{ srv: x, colour: red }", "colour"),
    ] {
        let e = error_of(&with_discover(discover));
        assert!(
            e.contains("lb.yaml:") && e.contains(says),
            "{discover}: {e}"
        );
    }
    // A pool with discover needs no servers; one with neither is an error.
    let c = parse(
        &with_discover("{ srv: _http._tcp.tomcat.test }"),
        Path::new("lb.yaml"),
    )
    .unwrap();
    assert!(c.pools[0].servers.is_empty() && c.pools[0].discover.is_some());
    let e = error_of(&GOOD.replace(
        "    servers:\n      - { name: node1, address: 127.0.0.1:9001 }\n",
        "    retries: 1\n",
    ));
    assert!(e.contains("no servers") && e.contains("discover"), "{e}");

    for (resolvers, says) in [
        ("{ nameservers: [nowhere] }", "resolvers.nameservers[0]"),
        (
            "{ nameservers: [\"10.0.0.2:0\"] }",
            "resolvers.nameservers[0]",
        ),
        ("{ interval: 100ms }", "resolvers.interval"),
        ("{ timeout: 1h }", "resolvers.timeout"),
        ("{ retries: 3 }", "retries"),
    ] {
        let e = error_of(&format!("{GOOD}resolvers: {resolvers}\n"));
        assert!(
            e.contains("lb.yaml:") && e.contains(says),
            "{resolvers}: {e}"
        );
    }
    let c = parse(
        &format!("{GOOD}resolvers: {{ nameservers: [10.0.0.2, \"10.0.0.3:5353\"] }}\n"),
        Path::new("lb.yaml"),
    )
    .unwrap();
    let ports: Vec<u16> = c.resolvers.nameservers.iter().map(|a| a.port()).collect();
    assert_eq!(ports, [53, 5353]);
}
