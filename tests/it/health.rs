//! Active and passive health checks, slow start, on_server_down: error.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::harness::*;

fn checked(nodes: &[limpet_demo::DemoNode], check: &str, extra: &str) -> String {
    sticky_config(
        nodes,
        &format!("    health_check:\n{check}{extra}"),
        &[],
        "",
    )
}

#[tokio::test]
async fn an_http_check_marks_down_after_fall_failures_and_up_after_rise_successes() {
    let n = nodes(2).await;
    let check = "      type: http\n      path: /health\n      interval: 50ms\n      timeout: 500ms\n      rise: 3\n      fall: 2\n";
    let lb = Lb::start(&checked(&n, check, "")).await;
    let node2 = live(&lb, "app", "node2");
    assert!(
        eventually(Duration::from_secs(5), || async {
            n[1].health_checks() >= 2
        })
        .await
    );
    assert!(node2.is_up());

    n[1].set_health(500);
    let before = n[1].health_checks();
    assert!(eventually(Duration::from_secs(5), || async { !node2.is_up() }).await);
    let failing = n[1].health_checks() - before;
    assert!(
        (2..=3).contains(&failing),
        "down after {failing} failed checks, fall is 2"
    );
    // Down: traffic goes elsewhere.
    for _ in 0..10 {
        assert_eq!(
            server_of(&get_json(&client(), &lb.url("/")).await.1),
            "node1"
        );
    }

    n[1].set_health(200);
    let before = n[1].health_checks();
    assert!(eventually(Duration::from_secs(5), || async { node2.is_up() }).await);
    let passing = n[1].health_checks() - before;
    assert!(
        (3..=4).contains(&passing),
        "up after {passing} good checks, rise is 3"
    );
}

#[tokio::test]
async fn expect_status_accepts_codes_and_ranges() {
    let pair = nodes(2).await;
    let check = "      path: /health\n      interval: 50ms\n      rise: 1\n      fall: 1\n      expect_status: \"200-299,302\"\n";
    let lb = Lb::start(&checked(&pair, check, "")).await;
    let node = live(&lb, "app", "node1");
    pair[0].set_health(302);
    let seen = pair[0].health_checks();
    assert!(
        eventually(Duration::from_secs(5), || async {
            pair[0].health_checks() >= seen + 2
        })
        .await
    );
    assert!(node.is_up(), "302 is expected");
    pair[0].set_health(301);
    assert!(
        eventually(Duration::from_secs(5), || async { !node.is_up() }).await,
        "301 is not expected"
    );
    pair[0].set_health(204);
    assert!(
        eventually(Duration::from_secs(5), || async { node.is_up() }).await,
        "204 is in 200-299"
    );
}

#[tokio::test]
async fn a_tcp_check_follows_the_listener() {
    let n = nodes(2).await;
    let check = "      type: tcp\n      interval: 50ms\n      timeout: 200ms\n      rise: 2\n      fall: 2\n";
    let lb = Lb::start(&checked(&n, check, "")).await;
    let node2 = live(&lb, "app", "node2");
    n[1].set_health(500); // a tcp check does not care
    // Three more checks (fall is 2): every one passed.
    let passed = || node2.checks.success.load(Ordering::Relaxed);
    let before = passed();
    assert!(eventually(Duration::from_secs(5), || async { passed() >= before + 3 }).await);
    assert_eq!(node2.checks.failure.load(Ordering::Relaxed), 0);
    assert!(node2.is_up());
    n[1].stop().await;
    assert!(eventually(Duration::from_secs(5), || async { !node2.is_up() }).await);
    n[1].restart().await.unwrap();
    assert!(eventually(Duration::from_secs(5), || async { node2.is_up() }).await);
    assert_eq!(n[1].health_checks(), 0, "a tcp check sent an HTTP request");
}

#[tokio::test]
async fn a_server_that_fails_its_first_check_takes_no_traffic() {
    let n = nodes(2).await;
    // node2's /health fails from the start, before limpet ever sees it.
    n[1].set_health(500);
    // fall: 3 at 1 s intervals: checks alone would take two more seconds to
    // mark node2 down. Only "the first check decides" keeps the traffic
    // below off it (a server counts as healthy until it is first checked).
    let check = "      type: http\n      path: /health\n      interval: 1s\n      timeout: 500ms\n      rise: 2\n      fall: 3\n";
    let lb = Lb::start(&checked(&n, check, "")).await;
    let node2 = live(&lb, "app", "node2");
    // Wait for the first check of node2: node2 answered it and limpet has
    // recorded its verdict.
    assert!(
        eventually(Duration::from_secs(5), || async {
            n[1].health_checks() >= 1 && node2.was_checked()
        })
        .await,
        "node2 was never health-checked"
    );
    // requests() counts everything but /health, so any traffic shows.
    let before = n[1].requests();
    assert_eq!(before, 0, "node2 served traffic before any was sent");
    let c = client();
    for i in 0..20 {
        let (status, v) = get_json(&c, &lb.url("/")).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(server_of(&v), "node1", "request {i} went to node2: {v}");
    }
    assert_eq!(
        n[1].requests(),
        before,
        "node2 failed its first check but took traffic"
    );
    assert_eq!(n[0].requests(), 20);
    let checks = n[1].health_checks();
    assert!(
        checks < 3,
        "node2 had {checks} checks by the end: fall (3) alone could have kept it out"
    );
}

#[tokio::test]
async fn passive_checks_mark_a_server_down_for_fail_timeout_and_then_try_it_again() {
    let n = nodes(3).await;
    let passive = "    passive:\n      max_fails: 2\n      fail_timeout: 1s\n    retries: 2\n";
    let lb = Lb::start(&sticky_config(&n, passive, &[], "")).await;
    let node2 = live(&lb, "app", "node2");
    n[1].stop().await;
    let c = client();
    for _ in 0..9 {
        assert_eq!(get_json(&c, &lb.url("/")).await.0, 200);
    }
    assert!(
        !node2.is_up(),
        "two refused connects within 1s must mark node2 down"
    );
    let downed = Instant::now();
    n[1].restart().await.unwrap();
    assert!(eventually(Duration::from_secs(5), || async { node2.is_up() }).await);
    assert!(
        downed.elapsed() >= Duration::from_millis(700),
        "came back before fail_timeout"
    );
    let seen = servers_seen(&c, &lb.url("/"), 9).await;
    assert!(
        seen.iter().any(|s| s == "node2"),
        "node2 was not tried again: {seen:?}"
    );

    // max_fails: 0 turns passive checks off.
    let off = "    passive:\n      max_fails: 0\n";
    let lb = Lb::start(&sticky_config(&n, off, &[], "")).await;
    let node2 = live(&lb, "app", "node2");
    n[1].stop().await;
    for _ in 0..9 {
        assert_eq!(get_json(&c, &lb.url("/")).await.0, 200);
    }
    assert!(node2.is_up());
}

#[tokio::test]
async fn on_server_down_error_gives_503_and_the_session_returns_when_its_server_does() {
    let n = nodes(2).await;
    let sticky = "    sticky:\n      mode: jvm_route\n      on_server_down: error\n    health_check:\n      interval: 50ms\n      rise: 1\n      fall: 1\n";
    let lb = Lb::start(&sticky_config(&n, sticky, &[], "")).await;
    let node2 = live(&lb, "app", "node2");
    let c = client();
    let cookie = "JSESSIONID=S1.node2";
    assert_eq!(server_with_cookie(&c, &lb.url("/"), cookie).await, "node2");
    n[1].set_health(500);
    assert!(eventually(Duration::from_secs(5), || async { !node2.is_up() }).await);
    for _ in 0..5 {
        let res = c
            .get(lb.url("/"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 503);
    }
    // Sessions without affinity to node2 are served.
    assert_eq!(get_json(&c, &lb.url("/")).await.0, 200);
    n[1].set_health(200);
    assert!(eventually(Duration::from_secs(5), || async { node2.is_up() }).await);
    assert_eq!(server_with_cookie(&c, &lb.url("/"), cookie).await, "node2");
}

#[tokio::test]
async fn slow_start_ramps_new_placements_to_a_recovered_server() {
    let n = nodes(2).await;
    let extra = "    slow_start: 3s\n    health_check:\n      interval: 50ms\n      rise: 1\n      fall: 1\n";
    let lb = Lb::start(&sticky_config(&n, extra, &[], "")).await;
    let node2 = live(&lb, "app", "node2");
    n[1].set_health(500);
    assert!(eventually(Duration::from_secs(5), || async { !node2.is_up() }).await);
    n[1].set_health(200);
    assert!(eventually(Duration::from_secs(5), || async { node2.is_up() }).await);
    let share = |seen: Vec<String>| seen.iter().filter(|s| *s == "node2").count();
    let c = client();
    let early = share(servers_seen(&c, &lb.url("/"), 100).await);
    assert!(
        eventually(Duration::from_secs(10), || async {
            node2.ramp(Duration::from_secs(3)) >= 1.0
        })
        .await
    );
    let late = share(servers_seen(&c, &lb.url("/"), 100).await);
    assert!(early < 30, "a recovering server got {early}/100 at once");
    assert!(
        late >= 45,
        "the recovered server got only {late}/100 after slow_start"
    );
    assert!(early < late);
}
