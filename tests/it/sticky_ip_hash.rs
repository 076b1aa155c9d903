//! ip_hash mode: the client address (or subnet) names the server,
//! consistently.

use std::collections::{HashMap, HashSet};

use crate::harness::*;

const IP: &str = "    sticky:\n      mode: ip_hash\n";

async fn home_of(lb: &Lb, ip: std::net::IpAddr) -> String {
    server_of(&get_json(&browser(Some(ip)), &lb.url("/")).await.1)
}

#[tokio::test]
async fn a_client_address_stays_on_one_server_for_50_requests_while_addresses_spread() {
    let n = nodes(3).await;
    let lb = Lb::start(&sticky_config(&n, IP, &[], "")).await;
    let mut homes = HashSet::new();
    for i in 0..12 {
        // a fresh client (no cookies, new connections) each time
        let mut seen = Vec::new();
        for _ in 0..50 {
            seen.push(server_of(
                &get_json(&client_from(source_ip(i)), &lb.url("/")).await.1,
            ));
        }
        homes.insert(one_server(&seen));
    }
    assert_eq!(homes.len(), 3, "{homes:?}");
}

#[tokio::test]
async fn subnet_keys_group_a_slash_24() {
    let n = nodes(3).await;
    let sticky = "    sticky:\n      mode: ip_hash\n      ip_hash:\n        key: subnet\n";
    let lb = Lb::start(&sticky_config(&n, sticky, &[], "")).await;
    for net in 5..9u8 {
        let mut seen = Vec::new();
        for host in [1u8, 7, 42, 200] {
            seen.push(home_of(&lb, [127, 0, net, host].into()).await);
        }
        one_server(&seen);
    }
}

#[tokio::test]
async fn the_real_client_behind_a_trusted_proxy_is_the_key() {
    let n = nodes(3).await;
    let lb = Lb::start(&sticky_config(
        &n,
        IP,
        &[],
        "trusted_proxies: [127.0.0.1/32]",
    ))
    .await;
    let mut homes = HashSet::new();
    for i in 0..12 {
        let mut seen = Vec::new();
        for _ in 0..5 {
            let res = client()
                .get(lb.url("/"))
                .header("x-forwarded-for", format!("198.51.100.{i}"))
                .send()
                .await
                .unwrap();
            seen.push(server_of(&res.json().await.unwrap()));
        }
        homes.insert(one_server(&seen));
    }
    assert_eq!(
        homes.len(),
        3,
        "forwarded clients did not spread: {homes:?}"
    );
}

#[tokio::test]
async fn removing_a_server_moves_only_its_clients_and_they_return() {
    let n = nodes(3).await;
    let mut lb = Lb::start(&sticky_config(&n, IP, &[], "")).await;
    let ips: Vec<_> = (0..300).map(source_ip).collect();
    let mut before = HashMap::new();
    for ip in &ips {
        before.insert(*ip, home_of(&lb, *ip).await);
    }
    let counts =
        |m: &HashMap<std::net::IpAddr, String>, s: &str| m.values().filter(|v| *v == s).count();
    for s in ["node1", "node2", "node3"] {
        assert!(
            counts(&before, s) > 60,
            "uneven spread: {} on {s}",
            counts(&before, s)
        );
    }
    // node3 leaves the configuration
    lb.reload(&sticky_config(&n[..2], IP, &[], "")).await;
    for ip in &ips {
        let now = home_of(&lb, *ip).await;
        if before[ip] != "node3" {
            assert_eq!(now, before[ip], "{ip} moved although its server stayed");
        } else {
            assert_ne!(now, "node3");
        }
    }
    // node3 comes back: everyone is home again
    lb.reload(&sticky_config(&n, IP, &[], "")).await;
    for ip in &ips {
        assert_eq!(home_of(&lb, *ip).await, before[ip]);
    }
}

#[tokio::test]
async fn a_draining_server_keeps_recent_addresses_only_and_disabled_keeps_none() {
    let n = nodes(3).await;
    let mut lb = Lb::start(&sticky_config(&n, IP, &[], "")).await;
    let old: Vec<_> = (0..60).map(source_ip).collect();
    let fresh: Vec<_> = (1000..1060).map(source_ip).collect();
    let mut old_on2 = Vec::new();
    for ip in &old {
        if home_of(&lb, *ip).await == "node2" {
            old_on2.push(*ip);
        }
    }
    assert!(!old_on2.is_empty());
    lb.reload(&sticky_config(&n, IP, &["active", "drain", "active"], ""))
        .await;
    for ip in &old_on2 {
        assert_eq!(
            home_of(&lb, *ip).await,
            "node2",
            "{ip} lost its draining server"
        );
    }
    for ip in &fresh {
        assert_ne!(
            home_of(&lb, *ip).await,
            "node2",
            "{ip} was newly placed on a draining server"
        );
    }
    lb.reload(&sticky_config(
        &n,
        IP,
        &["active", "disabled", "active"],
        "",
    ))
    .await;
    for ip in &old_on2 {
        assert_ne!(home_of(&lb, *ip).await, "node2");
    }
}
