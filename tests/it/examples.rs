//! The operator examples stay correct: the Prometheus rules and configuration
//! pass `promtool`, the Grafana dashboard queries only metrics limpet exports,
//! and the systemd unit checks the configuration before starting.
//!
//! The `promtool` tests are skipped when `promtool` is not installed, unless
//! `LIMPET_REQUIRE_PROMTOOL` is set (then a missing `promtool` fails them).

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The metric names of limpet's contract, with the standard process metrics.
const METRICS: &[&str] = &[
    "limpet_requests_total",
    "limpet_request_duration_seconds",
    "limpet_sticky_decisions_total",
    "limpet_server_up",
    "limpet_server_state",
    "limpet_server_active_requests",
    "limpet_health_checks_total",
    "limpet_learned_sessions",
    "limpet_store_up",
    "limpet_store_errors_total",
    "limpet_store_lookups_total",
    "limpet_connections_active",
    "limpet_config_reloads_total",
    "limpet_build_info",
    "limpet_tls_certificate_expiry_seconds",
    "limpet_log_lines_dropped_total",
    "process_resident_memory_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_cpu_seconds_total",
    "process_start_time_seconds",
];

/// The series a histogram exports besides its name.
const HISTOGRAMS: &[&str] = &["limpet_request_duration_seconds"];

fn crate_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(file: &str) -> String {
    let path: PathBuf = crate_root().join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs `promtool` with `args` in the crate root and asserts it succeeds.
/// Returns without checking anything when `promtool` is not installed and
/// `LIMPET_REQUIRE_PROMTOOL` is not set.
fn promtool(args: &[&str]) {
    let output = match Command::new("promtool")
        .args(args)
        .current_dir(crate_root())
        .output()
    {
        Ok(output) => output,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            if std::env::var_os("LIMPET_REQUIRE_PROMTOOL").is_some() {
                panic!("promtool not installed, and LIMPET_REQUIRE_PROMTOOL is set");
            }
            eprintln!("SKIPPED: promtool not installed");
            return;
        }
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    assert!(
        output.status.success(),
        "promtool {} failed ({}):\n{}{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Every `limpet_…` and `process_…` name in `text` (whole identifiers only).
fn metric_names(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut names = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts = (text[i..].starts_with("limpet_") || text[i..].starts_with("process_"))
            && (i == 0 || !is_name_byte(bytes[i - 1]));
        if starts {
            let end = bytes[i..]
                .iter()
                .position(|&b| !is_name_byte(b))
                .map_or(bytes.len(), |n| i + n);
            names.push(&text[i..end]);
            i = end;
        } else {
            i += 1;
        }
    }
    names
}

fn is_known_metric(name: &str) -> bool {
    METRICS.contains(&name)
        || HISTOGRAMS.iter().any(|h| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| name.strip_prefix(h) == Some(suffix))
        })
}

/// Collects every string under an `expr` key (the panels' queries) or a
/// `definition` key (the template variables' queries).
fn queries<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr" | "definition", Value::String(s)) => out.push(s),
                    _ => queries(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| queries(v, out)),
        _ => {}
    }
}

#[test]
fn the_alert_rules_pass_promtool() {
    promtool(&["check", "rules", "examples/prometheus/alerts.yml"]);
}

#[test]
fn the_certificate_alert_fires_14_days_before_expiry() {
    promtool(&["test", "rules", "examples/prometheus/alerts_test.yml"]);
}

#[test]
fn the_prometheus_config_passes_promtool() {
    // Also checks the rule files it names, relative to the configuration file.
    promtool(&["check", "config", "examples/prometheus/prometheus.yml"]);
}

#[test]
fn the_alert_rules_query_only_limpet_metrics() {
    let rules = read("examples/prometheus/alerts.yml");
    let names = metric_names(&rules);
    assert!(names.contains(&"limpet_server_up"), "{names:?}");
    for name in names {
        assert!(
            is_known_metric(name),
            "alerts.yml uses unknown metric {name}"
        );
    }
}

#[test]
fn the_grafana_dashboard_is_json_and_queries_only_limpet_metrics() {
    let text = read("examples/prometheus/grafana-dashboard.json");
    let dashboard: Value = serde_json::from_str(&text).expect("grafana-dashboard.json is not JSON");
    assert!(
        dashboard["panels"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
    );
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    for variable in ["datasource", "instance", "pool"] {
        assert!(
            variables.contains(&variable),
            "no ${variable} in {variables:?}"
        );
    }

    let mut exprs = Vec::new();
    queries(&dashboard, &mut exprs);
    assert!(exprs.len() >= 10, "only {} queries", exprs.len());
    let mut used = Vec::new();
    for expr in &exprs {
        for name in metric_names(expr) {
            assert!(is_known_metric(name), "unknown metric {name} in {expr}");
            used.push(name);
        }
    }
    for name in [
        "limpet_requests_total",
        "limpet_request_duration_seconds_bucket",
        "limpet_server_up",
        "limpet_sticky_decisions_total",
        "process_resident_memory_bytes",
    ] {
        assert!(used.contains(&name), "the dashboard never queries {name}");
    }
}

#[test]
fn the_systemd_unit_checks_the_config_before_start_and_reloads_with_sighup() {
    let unit = read("examples/systemd/limpet.service");
    let has = |prefix: &str, needle: &str| {
        unit.lines()
            .map(str::trim)
            .any(|l| l.starts_with(prefix) && l.contains(needle))
    };
    assert!(has("ExecStartPre=", "limpet check"), "{unit}");
    assert!(has("ExecStart=", "--config"), "{unit}");
    assert!(has("ExecReload=", "-HUP"), "{unit}");
    assert!(has("LimitNOFILE=", ""), "{unit}");
    assert!(has("User=limpet", ""), "{unit}");
    assert!(has("NoNewPrivileges=true", ""), "{unit}");
}

#[test]
fn metric_names_are_whole_identifiers() {
    assert_eq!(
        metric_names(
            "sum(rate(limpet_requests_total{a=\"b\"}[5m])) / my_limpet_x + process_open_fds"
        ),
        ["limpet_requests_total", "process_open_fds"]
    );
    assert!(is_known_metric("limpet_request_duration_seconds_bucket"));
    assert!(!is_known_metric("limpet_requests_total_bucket"));
    assert!(!is_known_metric("limpet_request_duration_seconds_max"));
}
