//! `servers[].backup`: a backup server takes requests only while no other
//! server of its pool can; a session that landed on it stays while it
//! serves; new sessions go back to the primaries as soon as one returns.

use std::time::Duration;

use crate::harness::*;

#[tokio::test]
async fn a_backup_server_serves_only_while_every_primary_is_down() {
    let n = nodes(3).await;
    let check = "    health_check:\n      type: http\n      path: /health\n      interval: 50ms\n      rise: 1\n      fall: 1\n    sticky:\n      mode: cookie\n";
    let yaml = sticky_config(&n, check, &[], "admin:\n  bind: 127.0.0.1:2\n").replace(
        &format!("name: node3, address: \"{}\", state: active", n[2].addr()),
        &format!(
            "name: node3, address: \"{}\", state: active, backup: true",
            n[2].addr()
        ),
    );
    assert!(yaml.contains("backup: true"), "{yaml}");
    let lb = Lb::start(&yaml).await;
    let c = client();

    // Primaries up: the backup gets nothing.
    let seen = servers_seen(&c, &lb.url("/static/a"), 30).await;
    assert!(!seen.iter().any(|s| s == "node3"), "{seen:?}");
    let session_of_node1 = "SERVERID=node1";
    assert_eq!(
        server_with_cookie(&c, &lb.url("/"), session_of_node1).await,
        "node1"
    );

    // Every primary down: the backup takes new sessions and moved ones.
    n[0].set_health(500);
    n[1].set_health(500);
    for server in ["node1", "node2"] {
        let live = lb.live("app", server);
        assert!(eventually(Duration::from_secs(5), || async { !live.is_up() }).await);
    }
    let seen = servers_seen(&c, &lb.url("/static/b"), 10).await;
    assert!(seen.iter().all(|s| s == "node3"), "{seen:?}");
    assert_eq!(
        server_with_cookie(&c, &lb.url("/"), session_of_node1).await,
        "node3"
    );

    // node1 returns: new sessions go to it; a session on the backup stays.
    n[0].set_health(200);
    let node1 = lb.live("app", "node1");
    assert!(eventually(Duration::from_secs(5), || async { node1.is_up() }).await);
    let seen = servers_seen(&c, &lb.url("/static/c"), 10).await;
    assert!(seen.iter().all(|s| s == "node1"), "{seen:?}");
    assert_eq!(
        server_with_cookie(&c, &lb.url("/"), "SERVERID=node3").await,
        "node3"
    );

    // Shown as such.
    let (_, pools) = get_json(&c, &lb.admin_url("/api/pools")).await;
    let servers = pools["pools"][0]["servers"].as_array().unwrap();
    let backup: Vec<bool> = servers.iter().map(|s| s["backup"] == true).collect();
    assert_eq!(backup, [false, false, true]);
    assert!(
        get_text(&lb.admin_url("/status"))
            .await
            .contains("(backup)")
    );
    lb.shutdown().await;
}
