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
    let e = error_of(&GOOD.replace("127.0.0.1:9001", "localhost"));
    assert!(e.starts_with("lb.yaml:8:33:"), "{e}");
    assert!(e.contains("must be an IP address and port"), "{e}");
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
