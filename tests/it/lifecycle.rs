//! The real binary: SIGTERM lets in-flight requests finish and exits 0;
//! SIGHUP reloads a good file and keeps the running configuration on a bad one.

use std::time::Duration;

use crate::harness::*;

fn yaml_for(nodes: &[limpet_demo::DemoNode]) -> String {
    proc_config(nodes, "timeouts:\n  shutdown_grace: 10s\n")
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_request_finish_and_exits_0() {
    let n = nodes(1).await;
    let mut p = Proc::start("term", &yaml_for(&n[0..1])).await;
    let url = format!("http://{}/slow?ms=1500", p.addr);
    let slow = tokio::spawn(async move {
        let res = client().get(url).send().await.unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    });
    assert!(eventually(Duration::from_secs(5), || async { n[0].in_flight() == 1 }).await);
    p.signal("TERM");
    // New connections are refused while the slow request finishes.
    let addr = p.addr;
    assert!(
        eventually(Duration::from_secs(5), || async {
            tokio::net::TcpStream::connect(addr).await.is_err()
        })
        .await
    );
    let (status, body) = slow.await.unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("\"server\":\"node1\""));
    assert_eq!(p.wait_exit(Duration::from_secs(10)).await, Some(0));
}

#[tokio::test]
async fn sighup_reloads_a_good_file_and_keeps_running_on_a_bad_one() {
    let n = nodes(2).await;
    let admin = closed_port();
    let yaml_for = |nodes: &[limpet_demo::DemoNode]| {
        proc_config(nodes, &format!("admin:\n  bind: \"{admin}\"\n"))
    };
    let p = Proc::start("hup", &yaml_for(&n[0..1])).await;
    let url = format!("http://{}/", p.addr);
    let reloads = |result: &'static str| async move {
        let text = get_text(&format!("http://{admin}/metrics")).await;
        metric(
            &text,
            "limpet_config_reloads_total",
            &format!("result=\"{result}\""),
        )
    };
    let (_, v) = get_json(&client(), &url).await;
    assert_eq!(server_of(&v), "node1");

    p.rewrite(&yaml_for(&n[1..2]));
    p.signal("HUP");
    assert!(
        eventually(Duration::from_secs(5), || async {
            server_of(&get_json(&client(), &url).await.1) == "node2"
        })
        .await
    );

    assert_eq!(reloads("success").await, 1.0);

    p.rewrite("listeners: [ this is not valid");
    p.signal("HUP");
    assert!(
        eventually(Duration::from_secs(5), || async {
            reloads("failure").await == 1.0
        })
        .await,
        "a failed reload was not counted: {}",
        p.log()
    );
    assert!(p.logged("reload rejected", 1).await, "{}", p.log());
    for _ in 0..10 {
        let (status, v) = get_json(&client(), &url).await;
        assert_eq!(status, 200);
        assert_eq!(server_of(&v), "node2");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_reload_that_changes_workers_says_it_needs_a_restart() {
    let n = nodes(1).await;
    let p = Proc::start("workers", &proc_config(&n, "workers: 2\n")).await;
    p.rewrite(&proc_config(&n, "workers: 1\n"));
    p.signal("HUP");
    assert!(
        eventually(Duration::from_secs(5), || async {
            p.log()
                .contains("`workers` changed: it applies after a restart or an upgrade")
        })
        .await,
        "{}",
        p.log()
    );
}
