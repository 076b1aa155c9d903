//! cookie mode: limpet's own cookie names the server.

use std::collections::HashSet;

use crate::harness::*;

const COOKIE: &str = "    sticky:\n      mode: cookie\n";

#[tokio::test]
async fn a_browser_stays_on_its_server_for_50_requests_while_new_browsers_spread() {
    let n = nodes(3).await;
    let lb = Lb::start(&sticky_config(&n, COOKIE, &[], "")).await;
    let mut homes = HashSet::new();
    for _ in 0..6 {
        let b = browser(None);
        let seen = servers_seen(&b, &lb.url("/"), 50).await;
        homes.insert(one_server(&seen));
    }
    assert_eq!(homes.len(), 3, "new browsers did not spread: {homes:?}");
}

#[tokio::test]
async fn the_cookie_has_exactly_the_configured_attributes() {
    let n = nodes(2).await;
    let sticky = "    sticky:\n      mode: cookie\n      cookie:\n        name: LB\n        path: /shop\n        domain: example.com\n        max_age: 2h\n        secure: true\n        http_only: false\n        same_site: strict\n";
    let lb = Lb::start(&sticky_config(&n, sticky, &[], "")).await;
    let res = client().get(lb.url("/shop/cart")).send().await.unwrap();
    let ours: Vec<String> = set_cookies(&res)
        .into_iter()
        .filter(|c| c.starts_with("LB="))
        .collect();
    assert_eq!(ours.len(), 1, "{ours:?}");
    let route = if ours[0].starts_with("LB=node1;") {
        "node1"
    } else {
        "node2"
    };
    assert_eq!(
        ours[0],
        format!(
            "LB={route}; Path=/shop; Domain=example.com; Max-Age=7200; Secure; SameSite=Strict"
        )
    );

    let defaults = Lb::start(&sticky_config(&n, COOKIE, &[], "")).await;
    let res = client().get(defaults.url("/")).send().await.unwrap();
    let ours: Vec<String> = set_cookies(&res)
        .into_iter()
        .filter(|c| c.starts_with("SERVERID="))
        .collect();
    assert_eq!(ours.len(), 1);
    assert!(
        ours[0].ends_with("; Path=/; HttpOnly; SameSite=Lax"),
        "{}",
        ours[0]
    );
    assert!(
        !ours[0].contains("Max-Age") && !ours[0].contains("Domain") && !ours[0].contains("Secure")
    );
}

#[tokio::test]
async fn indirect_hides_the_cookie_from_the_server_and_does_not_resend_it() {
    let n = nodes(2).await;
    let lb = Lb::start(&sticky_config(&n, COOKIE, &[], "")).await;
    let c = client();
    let first = c.get(lb.url("/")).send().await.unwrap();
    let cookie = set_cookies(&first)
        .into_iter()
        .find(|c| c.starts_with("SERVERID="))
        .unwrap();
    assert_eq!(first.headers().get("cache-control").unwrap(), "private");
    let value = cookie.split(';').next().unwrap().to_owned();
    for _ in 0..5 {
        let res = c
            .get(lb.url("/"))
            .header("cookie", format!("{value}; theme=dark"))
            .send()
            .await
            .unwrap();
        assert!(
            set_cookies(&res)
                .iter()
                .all(|c| !c.starts_with("SERVERID=")),
            "re-sent our cookie"
        );
        assert!(
            res.headers().get("cache-control").is_none(),
            "nocache header without an insertion"
        );
        let v: serde_json::Value = res.json().await.unwrap();
        assert_eq!(
            v["headers"]["cookie"], "theme=dark",
            "the server saw our cookie"
        );
    }
}

#[tokio::test]
async fn without_indirect_the_server_sees_the_cookie_and_it_is_refreshed_every_time() {
    let n = nodes(2).await;
    let sticky = "    sticky:\n      mode: cookie\n      cookie:\n        indirect: false\n        nocache: false\n";
    let lb = Lb::start(&sticky_config(&n, sticky, &[], "")).await;
    let c = client();
    let first = c.get(lb.url("/")).send().await.unwrap();
    let value = set_cookies(&first)
        .into_iter()
        .find(|c| c.starts_with("SERVERID="))
        .unwrap();
    assert!(first.headers().get("cache-control").is_none());
    let value = value.split(';').next().unwrap().to_owned();
    let res = c
        .get(lb.url("/"))
        .header("cookie", &value)
        .send()
        .await
        .unwrap();
    assert!(set_cookies(&res).iter().any(|c| c.starts_with(&value)));
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["headers"]["cookie"], value);
}

#[tokio::test]
async fn an_unknown_or_malformed_cookie_gets_a_fresh_placement_and_cookie() {
    let n = nodes(3).await;
    let lb = Lb::start(&sticky_config(&n, COOKIE, &[], "")).await;
    let c = client();
    let mut placed = HashSet::new();
    for bad in [
        "SERVERID=node9",
        "SERVERID=",
        "SERVERID=\"%%\"",
        "SERVERID",
        "SERVERID=a=b=c",
    ] {
        for _ in 0..3 {
            let res = c
                .get(lb.url("/"))
                .header("cookie", bad)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200, "{bad}");
            let fresh = set_cookies(&res)
                .into_iter()
                .find(|c| c.starts_with("SERVERID="))
                .unwrap();
            let v: serde_json::Value = res.json().await.unwrap();
            assert!(
                fresh.starts_with(&format!("SERVERID={};", server_of(&v))),
                "{fresh}"
            );
            placed.insert(server_of(&v));
        }
    }
    assert_eq!(
        placed.len(),
        3,
        "unknown cookies were not placed by the balancer: {placed:?}"
    );
}

#[tokio::test]
async fn the_servers_own_set_cookie_headers_pass_through_untouched() {
    let n = nodes(1).await;
    let lb = Lb::start(&sticky_config(&n, COOKIE, &[], "")).await;
    let res = client().get(lb.url("/set-cookies")).send().await.unwrap();
    let all = set_cookies(&res);
    assert!(all.contains(&"a=1; Path=/".to_owned()), "{all:?}");
    assert!(all.contains(&"b=2; Path=/".to_owned()), "{all:?}");
    assert!(
        all.iter()
            .any(|c| c.starts_with("JSESSIONID=") && c.contains(".node1")),
        "{all:?}"
    );
    assert!(
        all.iter().any(|c| c.starts_with("SERVERID=node1;")),
        "{all:?}"
    );
    assert_eq!(all.len(), 4, "{all:?}");
}

#[tokio::test]
async fn a_draining_server_keeps_its_browsers_and_gets_no_new_ones_and_disabled_gets_nothing() {
    let n = nodes(3).await;
    let mut lb = Lb::start(&sticky_config(&n, COOKIE, &[], "")).await;
    // Find a browser on node2.
    let mut on2 = None;
    for _ in 0..12 {
        let b = browser(None);
        if one_server(&servers_seen(&b, &lb.url("/"), 2).await) == "node2" {
            on2 = Some(b);
            break;
        }
    }
    let on2 = on2.expect("no browser placed on node2");
    lb.reload(&sticky_config(
        &n,
        COOKIE,
        &["active", "drain", "active"],
        "",
    ))
    .await;
    assert_eq!(
        one_server(&servers_seen(&on2, &lb.url("/"), 20).await),
        "node2"
    );
    for _ in 0..20 {
        let (_, v) = get_json(&browser(None), &lb.url("/")).await;
        assert_ne!(
            server_of(&v),
            "node2",
            "a draining server got a new browser"
        );
    }
    lb.reload(&sticky_config(
        &n,
        COOKIE,
        &["active", "disabled", "active"],
        "",
    ))
    .await;
    let moved = one_server(&servers_seen(&on2, &lb.url("/"), 20).await);
    assert_ne!(moved, "node2");
}

#[tokio::test]
async fn an_haproxy_cookie_with_maxidle_dates_keeps_its_server() {
    // HAProxy with `maxidle`/`maxlife` writes `SERVERID=<value>|<date>|<date>`:
    // a visitor arriving with it after the cutover keeps its server.
    let n = nodes(3).await;
    let lb = Lb::start(&sticky_config(
        &n,
        "    sticky:\n      mode: cookie\n",
        &[],
        "",
    ))
    .await;
    for node in ["node1", "node2", "node3"] {
        let res = client()
            .get(lb.url("/"))
            .header("cookie", format!("SERVERID={node}|bsjC5A|bsjC4d"))
            .send()
            .await
            .unwrap();
        assert!(
            set_cookies(&res)
                .iter()
                .all(|c| !c.starts_with("SERVERID="))
        );
        assert_eq!(server_of(&res.json().await.unwrap()), node);
    }
    // A value that is a route up to `|` only when cut there.
    assert_eq!(
        server_with_cookie(&client(), &lb.url("/"), "SERVERID=node2").await,
        "node2"
    );
    lb.shutdown().await;
}
