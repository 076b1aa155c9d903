//! Servers that come and go through DNS, against the test's own DNS server
//! (`dns.rs`, TTL 1 s): a server named by host name that follows its A
//! record, a pool of StatefulSet-like pods found by SRV, DNS gone silent or
//! answering NXDOMAIN, `max_servers`, and two instances agreeing on where a
//! removed pod's sessions go.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use limpet_demo::DemoNode;
use serde_json::Value;

use crate::dns::DnsServer;
use crate::harness::*;

const LOCAL: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// `resolvers:` naming `dns`, re-resolving every second.
fn resolvers(dns: &DnsServer) -> String {
    format!(
        "resolvers:\n  nameservers: [\"{}\"]\n  interval: 1s\n  timeout: 300ms\nadmin:\n  bind: 127.0.0.1:2\n",
        dns.addr()
    )
}

/// The pool's servers in `/api/pools`.
async fn servers(lb: &Lb) -> Vec<Value> {
    let (_, v) = get_json(&client(), &lb.admin_url("/api/pools")).await;
    v["pools"][0]["servers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn server(lb: &Lb, name: &str) -> Option<Value> {
    servers(lb).await.into_iter().find(|s| s["name"] == name)
}

async fn names(lb: &Lb) -> Vec<String> {
    let mut v: Vec<String> = servers(lb)
        .await
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

async fn wait_for(lb: &Lb, what: &str, mut ok: impl FnMut(&[Value]) -> bool) {
    let end = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = servers(lb).await;
        if ok(&now) {
            return;
        }
        assert!(std::time::Instant::now() < end, "{what}: {now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn up(list: &[Value], name: &str) -> bool {
    list.iter().any(|s| s["name"] == name && s["up"] == true)
}

fn resolutions(text: &str, result: &str) -> f64 {
    metric(
        text,
        "limpet_dns_resolutions_total",
        &format!("pool=\"app\",result=\"{result}\""),
    )
}

#[tokio::test]
async fn a_server_by_host_name_follows_its_changed_a_record_and_keeps_its_sessions() {
    let dns = DnsServer::start().await;
    let old = DemoNode::start_on("old", SocketAddr::from(([127, 0, 0, 2], 0)))
        .await
        .unwrap();
    let port = old.addr().port();
    let _new = DemoNode::start_on("new", SocketAddr::from(([127, 0, 0, 3], port)))
        .await
        .unwrap();
    let other = DemoNode::start("other").await.unwrap();
    dns.set_a("app1.test", &[Ipv4Addr::new(127, 0, 0, 2)]);
    let yaml = format!(
        "listeners:\n  - name: http\n    bind: 127.0.0.1:1\n    pool: app\n{}pools:\n  app:\n    sticky:\n      mode: cookie\n    servers:\n      - {{ name: app1, address: \"app1.test:{port}\" }}\n      - {{ name: app2, address: \"{}\" }}\n",
        resolvers(&dns),
        other.addr()
    );
    let lb = Lb::start(&yaml).await;
    wait_for(&lb, "app1 resolves", |s| up(s, "app1")).await;
    let app1 = server(&lb, "app1").await.unwrap();
    assert_eq!(app1["address"], format!("127.0.0.2:{port}"));
    assert_eq!(app1["host"], "app1.test");
    let c = client();
    assert_eq!(
        server_with_cookie(&c, &lb.url("/"), "SERVERID=app1").await,
        "old"
    );

    // Requests go on while the record changes: none fails, and the
    // session of app1 reaches the new address under the same name.
    dns.set_a("app1.test", &[Ipv4Addr::new(127, 0, 0, 3)]);
    let mut seen_new = false;
    for _ in 0..400 {
        let res = c
            .get(lb.url("/"))
            .header("cookie", "SERVERID=app1")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "a request failed while app1 moved");
        let v: Value = res.json().await.unwrap();
        let by = server_of(&v);
        assert!(by == "old" || by == "new", "{by}");
        if by == "new" {
            seen_new = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(seen_new, "app1 never followed its A record");
    for _ in 0..5 {
        assert_eq!(
            server_with_cookie(&c, &lb.url("/"), "SERVERID=app1").await,
            "new"
        );
        assert_eq!(
            server_with_cookie(&c, &lb.url("/"), "SERVERID=app2").await,
            "other"
        );
    }
    let app1 = server(&lb, "app1").await.unwrap();
    assert_eq!(app1["address"], format!("127.0.0.3:{port}"));
    assert_eq!(
        (&app1["route"], &app1["source"]),
        (&"app1".into(), &"file".into())
    );
    let text = get_text(&lb.admin_url("/metrics")).await;
    assert!(resolutions(&text, "success") >= 2.0, "{text}");

    // Several A records: the first (sorted) serves, the others are named.
    dns.set_a(
        "app1.test",
        &[Ipv4Addr::new(127, 0, 0, 9), Ipv4Addr::new(127, 0, 0, 3)],
    );
    wait_for(&lb, "two addresses", |s| {
        s.iter().any(|s| {
            s["name"] == "app1"
                && s["other_addresses"] == serde_json::json!([format!("127.0.0.9:{port}")])
        })
    })
    .await;
    assert_eq!(
        server_with_cookie(&c, &lb.url("/"), "SERVERID=app1").await,
        "new"
    );
}

/// A StatefulSet: pods `tomcat-<i>` on their own ports, named by SRV.
struct Pods {
    nodes: Vec<DemoNode>,
}

impl Pods {
    async fn start(n: usize) -> Pods {
        let mut nodes = Vec::new();
        for i in 0..n {
            nodes.push(DemoNode::start(&format!("tomcat-{i}")).await.unwrap());
        }
        Pods { nodes }
    }

    /// The SRV record names pods `which`.
    fn publish(&self, dns: &DnsServer, which: &[usize]) {
        for (i, n) in self.nodes.iter().enumerate() {
            dns.set_a(&format!("tomcat-{i}.tomcat.test"), &[LOCAL]);
            let _ = n;
        }
        let targets: Vec<(u16, u16, u16, String)> = which
            .iter()
            .map(|&i| {
                (
                    0,
                    10,
                    self.nodes[i].addr().port(),
                    format!("tomcat-{i}.tomcat.test"),
                )
            })
            .collect();
        let records: Vec<(u16, u16, u16, &str)> = targets
            .iter()
            .map(|(p, w, port, t)| (*p, *w, *port, t.as_str()))
            .collect();
        dns.set_srv("_http._tcp.tomcat.test", &records);
    }
}

fn srv_yaml(dns: &DnsServer, extra: &str) -> String {
    format!(
        "listeners:\n  - name: http\n    bind: 127.0.0.1:1\n    pool: app\n{}pools:\n  app:\n    sticky:\n      mode: jvm_route\n    health_check:\n      type: http\n      path: /health\n      interval: 300ms\n      rise: 1\n      fall: 1\n    discover:\n      srv: _http._tcp.tomcat.test\n{extra}",
        resolvers(dns)
    )
}

/// The pod a session id reaches.
async fn pod_of(lb: &Lb, id: &str) -> String {
    server_with_cookie(&client(), &lb.url("/"), &format!("JSESSIONID={id}")).await
}

#[tokio::test]
async fn pods_found_by_srv_keep_their_sessions_and_a_removed_pods_sessions_move_once() {
    let dns = DnsServer::start().await;
    let pods = Pods::start(4).await;
    pods.publish(&dns, &[0, 1, 2]);
    let lb = Lb::start(&srv_yaml(&dns, "")).await;
    wait_for(&lb, "three pods up", |s| {
        (0..3).all(|i| up(s, &format!("tomcat-{i}")))
    })
    .await;
    assert_eq!(names(&lb).await, ["tomcat-0", "tomcat-1", "tomcat-2"]);
    let t1 = server(&lb, "tomcat-1").await.unwrap();
    assert_eq!(
        (&t1["route"], &t1["source"]),
        (&"tomcat-1".into(), &"dns".into())
    );
    assert_eq!(t1["address"], pods.nodes[1].addr().to_string());

    // jvm_route sessions reach their pods, with no configuration.
    let ids: Vec<String> = (0..12)
        .map(|i| format!("{:032X}.tomcat-{}", i, i % 3))
        .collect();
    for id in &ids {
        let pod = id.rsplit('.').next().unwrap();
        assert_eq!(pod_of(&lb, id).await, pod, "{id}");
    }

    // A fourth pod, failing its checks: listed, takes nothing.
    pods.nodes[3].set_health(500);
    pods.publish(&dns, &[0, 1, 2, 3]);
    wait_for(&lb, "tomcat-3 listed", |s| {
        s.iter().any(|s| s["name"] == "tomcat-3")
    })
    .await;
    assert!(!up(&servers(&lb).await, "tomcat-3"));
    let c = client();
    for _ in 0..30 {
        let (_, v) = get_json(&c, &lb.url("/")).await;
        assert_ne!(
            server_of(&v),
            "tomcat-3",
            "a new session on a pod not yet up"
        );
    }
    pods.nodes[3].set_health(200);
    wait_for(&lb, "tomcat-3 up", |s| up(s, "tomcat-3")).await;
    let mut reached = false;
    for _ in 0..40 {
        let (_, v) = get_json(&c, &lb.url("/")).await;
        reached |= server_of(&v) == "tomcat-3";
    }
    assert!(reached, "tomcat-3 never took a new session");

    // tomcat-1 leaves DNS: each of its sessions moves to one replacement,
    // every other session stays.
    pods.publish(&dns, &[0, 2, 3]);
    wait_for(&lb, "tomcat-1 gone", |s| {
        !s.iter().any(|s| s["name"] == "tomcat-1")
    })
    .await;
    for id in &ids {
        let pod = id.rsplit('.').next().unwrap();
        let now = pod_of(&lb, id).await;
        if pod == "tomcat-1" {
            assert_ne!(now, "tomcat-1");
            for _ in 0..3 {
                assert_eq!(pod_of(&lb, id).await, now, "{id} moved twice");
            }
        } else {
            assert_eq!(now, pod, "{id} moved though its pod stayed");
        }
    }
    let text = get_text(&lb.admin_url("/metrics")).await;
    assert_eq!(
        metric(&text, "limpet_servers", "pool=\"app\",source=\"dns\""),
        3.0
    );
}

#[tokio::test]
async fn max_servers_takes_the_first_by_name() {
    let dns = DnsServer::start().await;
    let pods = Pods::start(3).await;
    pods.publish(&dns, &[2, 0, 1]);
    let lb = Lb::start(&srv_yaml(&dns, "      max_servers: 2\n")).await;
    wait_for(&lb, "two pods", |s| s.len() == 2).await;
    assert_eq!(names(&lb).await, ["tomcat-0", "tomcat-1"]);
}

#[tokio::test]
async fn two_instances_agree_where_a_removed_pods_sessions_go() {
    let dns = DnsServer::start().await;
    let pods = Pods::start(4).await;
    pods.publish(&dns, &[0, 1, 2, 3]);
    let a = Lb::start(&srv_yaml(&dns, "")).await;
    let b = Lb::start(&srv_yaml(&dns, "")).await;
    for lb in [&a, &b] {
        wait_for(lb, "four pods up", |s| {
            (0..4).all(|i| up(s, &format!("tomcat-{i}")))
        })
        .await;
    }
    let ids: Vec<String> = (0..16).map(|i| format!("{:032X}.tomcat-2", i)).collect();
    pods.publish(&dns, &[0, 1, 3]);
    for lb in [&a, &b] {
        wait_for(lb, "tomcat-2 gone", |s| {
            !s.iter().any(|s| s["name"] == "tomcat-2")
        })
        .await;
    }
    let mut places = std::collections::HashSet::new();
    for id in &ids {
        let on_a = pod_of(&a, id).await;
        assert_eq!(pod_of(&b, id).await, on_a, "{id}");
        places.insert(on_a);
    }
    // Spread over the survivors, not piled on one.
    assert!(places.len() >= 2, "{places:?}");
}

#[tokio::test]
async fn dns_gone_silent_or_answering_nxdomain_never_moves_a_session_and_is_said_once() {
    let dns = DnsServer::start().await;
    let n1 = DemoNode::start("node1").await.unwrap();
    let n2 = DemoNode::start("node2").await.unwrap();
    dns.nxdomain();
    let yaml = format!(
        "listeners:\n  - name: http\n    bind: \"{{BIND}}\"\n    pool: app\n{}log:\n  level: info\npools:\n  app:\n    sticky:\n      mode: cookie\n    servers:\n      - {{ name: node1, address: \"node1.test:{}\" }}\n      - {{ name: node2, address: \"{}\" }}\n",
        resolvers(&dns).replace("127.0.0.1:2", &closed_port().to_string()),
        n1.addr().port(),
        n2.addr()
    );
    // NXDOMAIN at start: limpet starts; node1 is down until it resolves.
    let p = Proc::start_with("dns-silent", &yaml, "").await;
    let admin = yaml
        .lines()
        .skip_while(|l| !l.starts_with("admin:"))
        .find_map(|l| l.trim().strip_prefix("bind: "))
        .unwrap()
        .to_owned();
    let api = format!("http://{admin}/api/pools");
    let metrics = format!("http://{admin}/metrics");
    let node1 = |v: &Value| {
        v["pools"][0]["servers"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == "node1").cloned())
            .unwrap()
    };
    assert!(
        eventually(Duration::from_secs(5), || async {
            resolutions(&get_text(&metrics).await, "nxdomain") >= 2.0
        })
        .await
    );
    let (_, v) = get_json(&client(), &api).await;
    assert_eq!(node1(&v)["up"], false, "{v}");
    assert_eq!(node1(&v)["resolved"], false, "{v}");
    let c = client();
    let url = format!("http://{}/", p.addr);
    assert_eq!(
        server_with_cookie(&c, &url, "SERVERID=node2").await,
        "node2"
    );
    let warned = |log: &str| log.lines().filter(|l| l.contains("cannot resolve")).count();
    assert_eq!(warned(&p.log()), 1, "{}", p.log());

    dns.answer();
    dns.set_a("node1.test", &[LOCAL]);
    assert!(
        eventually(Duration::from_secs(5), || async {
            let (_, v) = get_json(&client(), &api).await;
            node1(&v)["up"] == true
        })
        .await,
        "node1 never resolved"
    );
    assert_eq!(
        server_with_cookie(&c, &url, "SERVERID=node1").await,
        "node1"
    );

    // DNS goes silent: sessions stay, one more line, failures counted.
    let failures = resolutions(&get_text(&metrics).await, "failure");
    dns.silent();
    assert!(
        eventually(Duration::from_secs(6), || async {
            resolutions(&get_text(&metrics).await, "failure") >= failures + 3.0
        })
        .await,
        "no failures counted"
    );
    for _ in 0..5 {
        assert_eq!(
            server_with_cookie(&c, &url, "SERVERID=node1").await,
            "node1"
        );
        assert_eq!(
            server_with_cookie(&c, &url, "SERVERID=node2").await,
            "node2"
        );
    }
    assert_eq!(warned(&p.log()), 2, "{}", p.log());
}

#[tokio::test]
async fn a_server_added_through_the_api_by_host_name_is_resolved_too() {
    let dns = DnsServer::start().await;
    let n1 = DemoNode::start("node1").await.unwrap();
    let n2 = DemoNode::start_on("node2", SocketAddr::from(([127, 0, 0, 4], 0)))
        .await
        .unwrap();
    dns.set_a("node2.test", &[Ipv4Addr::new(127, 0, 0, 4)]);
    let yaml = format!(
        "listeners:\n  - name: http\n    bind: 127.0.0.1:1\n    pool: app\n{}pools:\n  app:\n    sticky:\n      mode: cookie\n    servers:\n      - {{ name: node1, address: \"{}\" }}\n",
        resolvers(&dns),
        n1.addr()
    );
    let lb = Lb::start(&yaml).await;
    let res = client()
        .post(lb.admin_url("/api/pools/app/servers"))
        .body(format!(
            r#"{{"name":"node2","address":"node2.test:{}"}}"#,
            n2.addr().port()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    wait_for(&lb, "node2 resolves", |s| up(s, "node2")).await;
    let node2 = server(&lb, "node2").await.unwrap();
    assert_eq!(
        (&node2["source"], &node2["host"]),
        (&"api".into(), &"node2.test".into())
    );
    assert_eq!(
        server_with_cookie(&client(), &lb.url("/"), "SERVERID=node2").await,
        "node2"
    );
}

#[tokio::test]
async fn discover_a_makes_one_server_per_address_and_follows_the_record() {
    let dns = DnsServer::start().await;
    let first = DemoNode::start_on("at-2", SocketAddr::from(([127, 0, 0, 2], 0)))
        .await
        .unwrap();
    let port = first.addr().port();
    let _second = DemoNode::start_on("at-3", SocketAddr::from(([127, 0, 0, 3], port)))
        .await
        .unwrap();
    let _third = DemoNode::start_on("at-5", SocketAddr::from(([127, 0, 0, 5], port)))
        .await
        .unwrap();
    dns.set_a(
        "tomcat.test",
        &[Ipv4Addr::new(127, 0, 0, 3), Ipv4Addr::new(127, 0, 0, 2)],
    );
    let yaml = format!(
        "listeners:\n  - name: http\n    bind: 127.0.0.1:1\n    pool: app\n{}pools:\n  app:\n    sticky:\n      mode: cookie\n    discover:\n      a: tomcat.test\n      port: {port}\n      weight: 3\n",
        resolvers(&dns)
    );
    let lb = Lb::start(&yaml).await;
    wait_for(&lb, "two servers", |s| s.len() == 2).await;
    assert_eq!(names(&lb).await, ["127.0.0.2", "127.0.0.3"]);
    let s = server(&lb, "127.0.0.3").await.unwrap();
    assert_eq!(
        (&s["route"], &s["weight"]),
        (&"127.0.0.3".into(), &3.into())
    );
    let c = client();
    assert_eq!(
        server_with_cookie(&c, &lb.url("/"), "SERVERID=127.0.0.3").await,
        "at-3"
    );
    // An address leaves, another comes: its sessions move, the others stay.
    dns.set_a(
        "tomcat.test",
        &[Ipv4Addr::new(127, 0, 0, 5), Ipv4Addr::new(127, 0, 0, 3)],
    );
    wait_for(&lb, "127.0.0.5 in, 127.0.0.2 out", |s| {
        s.len() == 2 && up(s, "127.0.0.5") && !s.iter().any(|s| s["name"] == "127.0.0.2")
    })
    .await;
    assert_eq!(
        server_with_cookie(&c, &lb.url("/"), "SERVERID=127.0.0.3").await,
        "at-3"
    );
    let moved = server_with_cookie(&c, &lb.url("/"), "SERVERID=127.0.0.2").await;
    assert!(moved == "at-3" || moved == "at-5", "{moved}");
}

/// A keep-alive HTTP backend answering `{"server":"old"}`, counting the
/// connections it had and those the client closed.
async fn counting_backend(
    addr: SocketAddr,
) -> (
    SocketAddr,
    std::sync::Arc<(std::sync::atomic::AtomicU64, std::sync::atomic::AtomicU64)>,
) {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counts = std::sync::Arc::new(Default::default());
    let c = std::sync::Arc::clone(&counts);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let c: std::sync::Arc<(std::sync::atomic::AtomicU64, std::sync::atomic::AtomicU64)> =
                std::sync::Arc::clone(&c);
            c.0.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let body = br#"{"server":"old"}"#;
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                            body.len()
                        );
                        let _ = s.write_all(head.as_bytes()).await;
                        let _ = s.write_all(body).await;
                    }
                }
                c.1.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (addr, counts)
}

#[tokio::test]
async fn a_server_that_moves_has_its_idle_connections_to_the_old_address_closed() {
    use std::sync::atomic::Ordering;
    let dns = DnsServer::start().await;
    let (old, counts) = counting_backend(SocketAddr::from(([127, 0, 0, 6], 0))).await;
    let _new = DemoNode::start_on("new", SocketAddr::from(([127, 0, 0, 7], old.port())))
        .await
        .unwrap();
    dns.set_a("app.test", &[Ipv4Addr::new(127, 0, 0, 6)]);
    let yaml = format!(
        "workers: 1\nlisteners:\n  - name: http\n    bind: 127.0.0.1:1\n    pool: app\n{}pools:\n  app:\n    servers:\n      - {{ name: app, address: \"app.test:{}\" }}\n",
        resolvers(&dns),
        old.port()
    );
    let lb = Lb::start(&yaml).await;
    wait_for(&lb, "app resolves", |s| up(s, "app")).await;
    let c = client();
    for _ in 0..3 {
        let (_, v) = get_json(&c, &lb.url("/")).await;
        assert_eq!(server_of(&v), "old");
    }
    assert!(counts.0.load(Ordering::SeqCst) >= 1);
    assert_eq!(
        counts.1.load(Ordering::SeqCst),
        0,
        "kept alive while in use"
    );

    dns.set_a("app.test", &[Ipv4Addr::new(127, 0, 0, 7)]);
    wait_for(&lb, "app moves", |s| {
        s.iter()
            .any(|s| s["name"] == "app" && s["address"] == format!("127.0.0.7:{}", old.port()))
    })
    .await;
    // The worker picks the new snapshot up with its next request, and
    // closes its idle connections to the old address then, not 15 s later.
    let (_, v) = get_json(&c, &lb.url("/")).await;
    assert_eq!(server_of(&v), "new");
    assert!(
        eventually(Duration::from_secs(2), || async {
            counts.1.load(Ordering::SeqCst) == counts.0.load(Ordering::SeqCst)
        })
        .await,
        "idle connections to the old address left open: {} of {}",
        counts.0.load(Ordering::SeqCst) - counts.1.load(Ordering::SeqCst),
        counts.0.load(Ordering::SeqCst)
    );
}
