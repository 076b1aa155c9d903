//! jvm_route mode: the route suffix of Tomcat's session id names the server.

use std::collections::HashSet;

use crate::harness::*;

const JVM: &str = "    sticky:\n      mode: jvm_route\n";

#[tokio::test]
async fn a_session_stays_on_the_node_its_id_names_for_50_requests_while_new_ones_spread() {
    let n = nodes(3).await;
    let lb = Lb::start(&sticky_config(&n, JVM, &[], "")).await;
    let mut homes = HashSet::new();
    for _ in 0..6 {
        let b = browser(None);
        let seen = servers_seen(&b, &lb.url("/cart"), 50).await;
        homes.insert(one_server(&seen));
        // the node's own counter proves it was one session
        let (_, v) = get_json(&b, &lb.url("/cart")).await;
        assert_eq!(v["counter"], 51);
    }
    assert_eq!(homes.len(), 3, "{homes:?}");
}

#[tokio::test]
async fn the_route_comes_from_the_cookie_or_the_path_parameter_and_the_cookie_wins() {
    let n = nodes(3).await;
    let lb = Lb::start(&sticky_config(&n, JVM, &[], "")).await;
    let c = client();
    for _ in 0..10 {
        assert_eq!(
            server_with_cookie(&c, &lb.url("/"), "JSESSIONID=ABCDEF.node2").await,
            "node2"
        );
        let (_, v) = get_json(&c, &lb.url("/cart;jsessionid=ABCDEF.node3?x=1")).await;
        assert_eq!(server_of(&v), "node3");
        let (_, v) = get_json(&c, &lb.url("/cart;JSESSIONID=ABCDEF.node1")).await;
        assert_eq!(server_of(&v), "node1");
        let res = c
            .get(lb.url("/cart;jsessionid=ABCDEF.node3"))
            .header("cookie", "JSESSIONID=ABCDEF.node1")
            .send()
            .await
            .unwrap();
        assert_eq!(
            server_of(&res.json().await.unwrap()),
            "node1",
            "the cookie must win"
        );
    }
}

#[tokio::test]
async fn the_first_separator_splits_and_the_first_known_route_of_several_cookies_wins() {
    let n = nodes(3).await;
    let sticky = "    sticky:\n      mode: jvm_route\n      jvm_route:\n        cookie: SID\n        separator: \"-\"\n";
    let lb = Lb::start(&sticky_config(&n, sticky, &[], "")).await;
    let c = client();
    for _ in 0..5 {
        let res = c
            .get(lb.url("/"))
            .header("cookie", "SID=X-nodeZ; SID=Y-node3; SID=W-node1")
            .send()
            .await
            .unwrap();
        assert_eq!(server_of(&res.json().await.unwrap()), "node3");
        // after the FIRST separator: "A-node2" is route node2, "A-b-node2" is route "b-node2" (unknown)
        assert_eq!(
            server_with_cookie(&c, &lb.url("/"), "SID=A-node2").await,
            "node2"
        );
    }
}

#[tokio::test]
async fn an_unknown_route_is_placed_by_the_balancer() {
    let n = nodes(3).await;
    let lb = Lb::start(&sticky_config(&n, JVM, &[], "")).await;
    let c = client();
    let mut placed = HashSet::new();
    for i in 0..9 {
        let res = c
            .get(lb.url("/"))
            .header("cookie", format!("JSESSIONID=S{i}.node7"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        placed.insert(server_of(&res.json().await.unwrap()));
        let (_, v) = get_json(&c, &lb.url(&format!("/;jsessionid=S{i}"))).await;
        placed.insert(server_of(&v));
    }
    assert_eq!(placed.len(), 3, "{placed:?}");
}

#[tokio::test]
async fn drain_keeps_sessions_named_for_it_and_disabled_moves_them() {
    let n = nodes(3).await;
    let mut lb = Lb::start(&sticky_config(&n, JVM, &["active", "drain", "active"], "")).await;
    let c = client();
    for _ in 0..10 {
        assert_eq!(
            server_with_cookie(&c, &lb.url("/"), "JSESSIONID=D.node2").await,
            "node2"
        );
    }
    for _ in 0..20 {
        let (_, v) = get_json(&browser(None), &lb.url("/")).await;
        assert_ne!(server_of(&v), "node2");
    }
    lb.reload(&sticky_config(
        &n,
        JVM,
        &["active", "disabled", "active"],
        "",
    ))
    .await;
    let res = c
        .get(lb.url("/"))
        .header("cookie", "JSESSIONID=D.node2")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_ne!(server_of(&res.json().await.unwrap()), "node2");
}
