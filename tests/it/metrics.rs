//! `/metrics`: valid exposition text (checked by promtool), every metric of
//! the contract with its labels, and exact counts for a known sequence of
//! requests.

use std::time::Duration;

use crate::harness::*;

const ADMIN: &str = "admin:\n  bind: 127.0.0.1:2\n";

/// Runs `promtool check metrics` on `text`; None when promtool is absent.
fn promtool(text: &str) -> Option<(bool, String)> {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(text.as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success(), said))
}

#[tokio::test]
async fn metrics_are_valid_exposition_text_with_every_contract_metric_and_exact_counts() {
    let n = nodes(3).await;
    let sticky = "    sticky:\n      mode: cookie\n    passive:\n      max_fails: 0\n";
    let lb = Lb::start(&sticky_config(&n, sticky, &[], ADMIN)).await;
    let c = client();
    // 3 new sessions (round robin: node1, node2, node3), then 4 hits on node2.
    for _ in 0..3 {
        assert_eq!(
            c.get(lb.url("/static/a")).send().await.unwrap().status(),
            200
        );
    }
    for _ in 0..4 {
        let res = c
            .get(lb.url("/static/a"))
            .header("cookie", "SERVERID=node2")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    // An unknown route, a 404 from the server, and a request limpet refuses.
    let res = c
        .get(lb.url("/status/404"))
        .header("cookie", "SERVERID=nobody")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let out = raw(lb.addr, b"GET / HTTP/1.1\r\n\r\n", Duration::from_secs(2)).await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    // node3 dies: its session is redispatched (counted per request).
    n[2].stop().await;
    for _ in 0..2 {
        let res = c
            .get(lb.url("/static/a"))
            .header("cookie", "SERVERID=node3")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }

    // A request is counted when its response has been sent: wait for all 11.
    let all = |text: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with("limpet_requests_total{"))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    };
    let counted = eventually(Duration::from_secs(5), || async {
        all(&lb.metrics().await) == 11.0
    })
    .await;
    assert!(counted, "{}", lb.metrics().await);
    let text = lb.metrics().await;
    if let Some((ok, said)) = promtool(&text) {
        assert!(ok, "promtool rejects /metrics:\n{said}\n{text}");
    } else if std::env::var_os("LIMPET_REQUIRE_PROMTOOL").is_some() {
        panic!("promtool is required");
    } else {
        eprintln!("SKIPPED: promtool not installed; parsing by hand only");
    }
    let m = |name: &str, labels: &str| metric(&text, name, labels);
    let ok = |server: &str| {
        m(
            "limpet_requests_total",
            &format!("pool=\"app\",server=\"{server}\",code=\"200\""),
        )
    };
    // node3 answered its new session only; both redispatched requests went
    // to the one replacement rendezvous hashing names for this client.
    let node2 = ok("node2");
    assert_eq!(ok("node3"), 1.0, "{text}");
    assert!(
        [(1.0, 7.0), (3.0, 5.0)].contains(&(ok("node1"), node2)),
        "{text}"
    );
    assert_eq!(
        m(
            "limpet_requests_total",
            "pool=\"app\",server=\"node1\",code=\"404\""
        ) + m(
            "limpet_requests_total",
            "pool=\"app\",server=\"node2\",code=\"404\""
        ) + m(
            "limpet_requests_total",
            "pool=\"app\",server=\"node3\",code=\"404\""
        ),
        1.0
    );
    assert_eq!(
        m(
            "limpet_requests_total",
            "pool=\"\",server=\"\",code=\"400\""
        ),
        1.0
    );
    let outcome = |o: &str| {
        m(
            "limpet_sticky_decisions_total",
            &format!("pool=\"app\",mode=\"cookie\",outcome=\"{o}\""),
        )
    };
    assert_eq!(outcome("new"), 3.0, "{text}");
    assert_eq!(outcome("hit"), 4.0);
    assert_eq!(outcome("unknown_route"), 1.0);
    assert_eq!(outcome("redispatch"), 2.0);
    assert_eq!(
        m(
            "limpet_request_duration_seconds_count",
            "pool=\"app\",server=\"node2\""
        ),
        node2
            + m(
                "limpet_requests_total",
                "pool=\"app\",server=\"node2\",code=\"404\""
            ),
        "{text}"
    );
    assert_eq!(
        m(
            "limpet_request_duration_seconds_bucket",
            "pool=\"app\",server=\"node2\",le=\"+Inf\""
        ),
        m(
            "limpet_request_duration_seconds_count",
            "pool=\"app\",server=\"node2\""
        )
    );
    assert!(text.contains(
        "limpet_request_duration_seconds_bucket{pool=\"app\",server=\"node1\",le=\"0.0005\"}"
    ));
    assert!(text.contains("le=\"30\""), "{text}");
    for s in ["node1", "node2", "node3"] {
        assert_eq!(
            m("limpet_server_up", &format!("pool=\"app\",server=\"{s}\"")),
            1.0
        );
        assert_eq!(
            m(
                "limpet_server_state",
                &format!("pool=\"app\",server=\"{s}\",state=\"active\"")
            ),
            1.0
        );
        assert_eq!(
            m(
                "limpet_server_state",
                &format!("pool=\"app\",server=\"{s}\",state=\"drain\"")
            ),
            0.0
        );
        assert!(text.contains(&format!(
            "limpet_server_active_requests{{pool=\"app\",server=\"{s}\"}} 0"
        )));
        assert!(text.contains(&format!(
            "limpet_health_checks_total{{pool=\"app\",server=\"{s}\",result=\"success\"}} 0"
        )));
    }
    assert!(text.contains("limpet_connections_active{listener=\"http\"}"));
    assert_eq!(m("limpet_config_reloads_total", "result=\"success\""), 0.0);
    assert!(text.contains("limpet_config_reloads_total{result=\"failure\"} 0"));
    assert_eq!(
        m(
            "limpet_build_info",
            &format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))
        ),
        1.0
    );
    for p in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        assert!(m(p, "") > 0.0, "{p} missing: {text}");
    }
    assert!(text.contains("\nprocess_cpu_seconds_total "), "{text}");
    // No client data in labels.
    assert!(!text.contains("nobody"));
}

#[tokio::test]
async fn server_up_flips_to_0_when_a_backend_dies_and_back() {
    let n = nodes(2).await;
    let check = "    health_check:\n      interval: 50ms\n      timeout: 200ms\n      rise: 1\n      fall: 1\n";
    let lb = Lb::start(&sticky_config(&n, check, &[], ADMIN)).await;
    let up = || async {
        metric(
            &lb.metrics().await,
            "limpet_server_up",
            "pool=\"app\",server=\"node2\"",
        )
    };
    assert!(eventually(Duration::from_secs(5), || async { up().await == 1.0 }).await);
    n[1].stop().await;
    assert!(eventually(Duration::from_secs(5), || async { up().await == 0.0 }).await);
    n[1].restart().await.unwrap();
    assert!(eventually(Duration::from_secs(5), || async { up().await == 1.0 }).await);
    let text = lb.metrics().await;
    assert!(
        metric(
            &text,
            "limpet_health_checks_total",
            "pool=\"app\",server=\"node2\",result=\"failure\""
        ) >= 1.0
    );
    assert!(
        metric(
            &text,
            "limpet_health_checks_total",
            "pool=\"app\",server=\"node2\",result=\"success\""
        ) >= 1.0
    );
}

#[tokio::test]
async fn learned_sessions_and_connections_are_gauged_and_counters_survive_a_reload() {
    let n = nodes(2).await;
    let learn = "    sticky:\n      mode: learn\n      learn:\n        persist: false\n";
    let mut lb = Lb::start(&sticky_config(&n, learn, &[], ADMIN)).await;
    for _ in 0..3 {
        let b = browser(None);
        servers_seen(&b, &lb.url("/"), 2).await;
    }
    let text = lb.metrics().await;
    assert_eq!(
        metric(&text, "limpet_learned_sessions", "pool=\"app\""),
        3.0
    );
    let before: f64 = ["node1", "node2"]
        .iter()
        .map(|s| {
            metric(
                &text,
                "limpet_requests_total",
                &format!("pool=\"app\",server=\"{s}\",code=\"200\""),
            )
        })
        .sum();
    assert_eq!(before, 6.0);
    // A kept-open connection is gauged.
    let mut s = tokio::net::TcpStream::connect(lb.addr).await.unwrap();
    use tokio::io::AsyncWriteExt;
    s.write_all(b"GET /static/x HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            metric(
                &lb.metrics().await,
                "limpet_connections_active",
                "listener=\"http\"",
            ) >= 1.0
        })
        .await
    );
    // A reload keeps every counter and the table; a removed server is no
    // longer exported.
    lb.reload(&sticky_config(&n[..1], learn, &[], ADMIN)).await;
    let text = lb.metrics().await;
    assert_eq!(
        metric(&text, "limpet_config_reloads_total", "result=\"success\""),
        1.0
    );
    assert_eq!(
        metric(&text, "limpet_learned_sessions", "pool=\"app\""),
        3.0
    );
    assert!(!text.contains("server=\"node2\""), "{text}");
    assert!(
        metric(
            &text,
            "limpet_requests_total",
            "pool=\"app\",server=\"node1\",code=\"200\""
        ) >= 1.0
    );
}
