//! The admin endpoint: its API (token, 401/404/400/405), drain through the
//! API in every sticky mode, run-time states across reloads, a reload
//! through the API, and the status page in a real browser.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

const TOKEN: &str = "s3cret-token-for-tests";

fn with_token(dir: &Path) -> String {
    let file = dir.join("token");
    write_mode(&file, &format!("{TOKEN}\n"), 0o600);
    format!(
        "admin:\n  bind: 127.0.0.1:2\n  token_file: \"{}\"\n",
        file.display()
    )
}

async fn put_state(
    lb: &Lb,
    pool: &str,
    server: &str,
    body: &str,
    token: Option<&str>,
) -> (u16, String) {
    let mut req = client()
        .put(lb.admin_url(&format!("/api/pools/{pool}/servers/{server}/state")))
        .body(body.to_owned());
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// `POST /api/reload`, without a token.
async fn reload_through_api(lb: &Lb) -> reqwest::Response {
    client()
        .post(lb.admin_url("/api/reload"))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_api_lists_pools_and_changes_states_only_with_the_token() {
    let n = nodes(2).await;
    let dir = temp_dir("admin-api");
    let learn = "    sticky:\n      mode: learn\n      learn:\n        persist: false\n";
    let lb = Lb::start(&sticky_config(&n, learn, &[], &with_token(&dir))).await;
    get_json(&browser(None), &lb.url("/")).await;
    // A request is counted once its response has been sent.
    let served = |v: &Value| -> u64 {
        v["pools"][0]["servers"]
            .as_array()
            .map_or(0, |a| a.iter().filter_map(|s| s["requests"].as_u64()).sum())
    };
    assert!(
        eventually(Duration::from_secs(5), || async {
            served(&get_json(&client(), &lb.admin_url("/api/pools")).await.1) == 1
        })
        .await
    );
    let (status, v) = get_json(&client(), &lb.admin_url("/api/pools")).await;
    assert_eq!(status, 200);
    let pool = &v["pools"][0];
    assert_eq!(pool["name"], "app");
    assert_eq!(pool["mode"], "learn");
    assert_eq!(pool["learned_sessions"], 1);
    let s = &pool["servers"][0];
    assert_eq!(s["name"], "node1");
    assert_eq!(s["address"], n[0].addr().to_string());
    assert_eq!(s["route"], "node1");
    assert_eq!(s["weight"], 1);
    assert_eq!(s["state"], "active");
    assert_eq!(s["configured_state"], "active");
    assert_eq!(s["up"], true);
    assert_eq!(s["active_requests"], 0);
    assert!(s.get("last_check").is_some());

    let drain = r#"{"state":"drain"}"#;
    assert_eq!(put_state(&lb, "app", "node1", drain, None).await.0, 401);
    assert_eq!(
        put_state(&lb, "app", "node1", drain, Some("wrong")).await.0,
        401
    );
    assert_eq!(lb.live("app", "node1").state().as_str(), "active");
    assert_eq!(
        put_state(&lb, "nope", "node1", drain, Some(TOKEN)).await.0,
        404
    );
    assert_eq!(
        put_state(&lb, "app", "nope", drain, Some(TOKEN)).await.0,
        404
    );
    let (status, msg) = put_state(&lb, "app", "node1", "{not json", Some(TOKEN)).await;
    assert_eq!(status, 400);
    assert!(msg.contains("\"state\""), "{msg}");
    let (status, msg) = put_state(&lb, "app", "node1", r#"{"state":"sleep"}"#, Some(TOKEN)).await;
    assert_eq!(status, 400);
    assert!(msg.contains("active, drain, disabled"), "{msg}");
    let (status, body) = put_state(&lb, "app", "node1", drain, Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["state"], "drain");
    assert_eq!(v["configured_state"], "active");
    assert_eq!(lb.live("app", "node1").state().as_str(), "drain");

    // Wrong methods and unknown paths.
    let res = client()
        .get(lb.admin_url("/api/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["allow"], "POST");
    let res = client()
        .delete(lb.admin_url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    let res = client().get(lb.admin_url("/nothing")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    // Reading needs no token; reloading does.
    let res = reload_through_api(&lb).await;
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn token_file_problems_are_config_errors_and_a_shared_group_a_warning() {
    let dir = temp_dir("admin-token");
    let base = "listeners:\n  - { name: http, bind: 127.0.0.1:8080, pool: app }\npools:\n  app:\n    servers:\n      - { name: a, address: 127.0.0.1:9001 }\n";
    let conf = |file: &Path| format!("{base}admin:\n  token_file: \"{}\"\n", file.display());
    let parse = |y: &str| limpet::config::parse(y, Path::new("lb.yaml"));
    let missing = dir.join("missing");
    let e = parse(&conf(&missing)).unwrap_err().to_string();
    assert!(e.contains("cannot read the token file"), "{e}");
    let empty = dir.join("empty");
    write_mode(&empty, "\n", 0o600);
    let e = parse(&conf(&empty)).unwrap_err().to_string();
    assert!(e.contains("is empty"), "{e}");
    let open = dir.join("open");
    write_mode(&open, "tok\n", 0o644);
    let e = parse(&conf(&open)).unwrap_err().to_string();
    assert!(e.contains("readable by every user"), "{e}");
    let group = dir.join("group");
    write_mode(&group, "tok\n", 0o640);
    let c = parse(&conf(&group)).unwrap();
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("readable by its group")),
        "{:?}",
        c.warnings
    );
    let ok = dir.join("ok");
    write_mode(&ok, "tok\n", 0o600);
    let c = parse(&conf(&ok)).unwrap();
    assert!(c.admin.unwrap().token.unwrap().matches(b"tok"));
    // The admin endpoint never shares a proxy listener's port.
    let e = parse(&format!("{base}admin:\n  bind: 0.0.0.0:8080\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("conflicts with listener \"http\""), "{e}");
    // Without the section, nothing listens; an empty section listens on the default.
    assert!(parse(base).unwrap().admin.is_none());
    let c = parse(&format!("{base}admin:\n")).unwrap();
    assert_eq!(c.admin.unwrap().bind.to_string(), "127.0.0.1:9090");
}

#[tokio::test]
async fn without_an_admin_section_no_admin_endpoint_runs() {
    let n = nodes(1).await;
    let lb = Lb::start(&config(&n, "", "")).await;
    assert!(lb.admin.is_none());
    assert!(lb.limpet.as_ref().unwrap().admin_addr().is_none());
}

/// The sessions of each mode, and how to tell which server one is on.
struct Sessions {
    /// (client, server it is on)
    held: Vec<(reqwest::Client, String)>,
}

async fn sessions(lb: &Lb, mode: &str, count: u32) -> Sessions {
    let mut held = Vec::new();
    for i in 0..count {
        let c = if mode == "ip_hash" {
            client_from(source_ip(100 + i))
        } else {
            browser(None)
        };
        let (_, v) = get_json(&c, &lb.url("/")).await;
        held.push((c, server_of(&v)));
    }
    Sessions { held }
}

#[tokio::test]
async fn drain_through_the_api_keeps_existing_sessions_and_places_new_ones_elsewhere_in_every_mode()
{
    for mode in ["ip_hash", "cookie", "jvm_route", "learn"] {
        let n = nodes(3).await;
        let sticky =
            format!("    sticky:\n      mode: {mode}\n      learn:\n        persist: false\n");
        let admin = "admin:\n  bind: 127.0.0.1:2\n";
        let lb = Lb::start(&sticky_config(&n, &sticky, &[], admin)).await;
        let s = sessions(&lb, mode, 12).await;
        let on_node1: Vec<_> = s.held.iter().filter(|(_, at)| at == "node1").collect();
        assert!(!on_node1.is_empty(), "{mode}: no session on node1");
        let (status, _) = put_state(&lb, "app", "node1", r#"{"state":"drain"}"#, None).await;
        assert_eq!(status, 200);
        // Existing sessions stay where they are, node1's included.
        for (c, at) in &s.held {
            for _ in 0..3 {
                let (code, v) = get_json(c, &lb.url("/")).await;
                assert_eq!(code, 200);
                assert_eq!(&server_of(&v), at, "{mode}: a session moved");
            }
        }
        // New sessions never land on node1.
        let fresh = sessions(&lb, mode, 0).await;
        drop(fresh);
        let mut placed = HashSet::new();
        for i in 0..20 {
            let c = if mode == "ip_hash" {
                client_from(source_ip(500 + i))
            } else {
                browser(None)
            };
            let (_, v) = get_json(&c, &lb.url("/")).await;
            placed.insert(server_of(&v));
        }
        assert!(
            !placed.contains("node1"),
            "{mode}: new sessions reached a draining server: {placed:?}"
        );
        assert!(!placed.is_empty());
    }
}

#[tokio::test]
async fn a_state_set_at_run_time_survives_a_reload_unless_the_file_changes_it() {
    let n = nodes(2).await;
    let admin = "admin:\n  bind: 127.0.0.1:2\n";
    let mut lb = Lb::start(&sticky_config(&n, "", &[], admin)).await;
    assert_eq!(
        put_state(&lb, "app", "node1", r#"{"state":"drain"}"#, None)
            .await
            .0,
        200
    );
    lb.reload(&sticky_config(&n, "    retries: 1\n", &[], admin))
        .await;
    assert_eq!(lb.live("app", "node1").state().as_str(), "drain");
    lb.reload(&sticky_config(&n, "", &["disabled"], admin))
        .await;
    assert_eq!(lb.live("app", "node1").state().as_str(), "disabled");
    lb.reload(&sticky_config(&n, "", &["active"], admin)).await;
    assert_eq!(lb.live("app", "node1").state().as_str(), "active");
}

#[tokio::test]
async fn a_reload_through_the_api_applies_a_good_file_and_reports_a_bad_one() {
    let n = nodes(2).await;
    let dir = temp_dir("admin-reload");
    let file = dir.join("lb.yaml");
    let admin = "admin:\n  bind: 127.0.0.1:2\n";
    std::fs::write(&file, sticky_config(&n[..1], "", &[], admin)).unwrap();
    let lb = Lb::start_file(&file).await;
    assert_eq!(
        server_of(&get_json(&client(), &lb.url("/")).await.1),
        "node1"
    );

    std::fs::write(&file, sticky_config(&n[1..], "", &[], admin)).unwrap();
    let res = reload_through_api(&lb).await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["result"], "success");
    assert_eq!(
        server_of(&get_json(&client(), &lb.url("/")).await.1),
        "node2"
    );

    std::fs::write(&file, "listeners: [ broken").unwrap();
    let res = reload_through_api(&lb).await;
    assert_eq!(res.status(), 422);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["result"], "failure");
    assert!(v["error"].as_str().unwrap().contains("lb.yaml:1:"), "{v}");
    assert_eq!(
        server_of(&get_json(&client(), &lb.url("/")).await.1),
        "node2"
    );
    let text = lb.metrics().await;
    assert_eq!(
        metric(&text, "limpet_config_reloads_total", "result=\"success\""),
        1.0
    );
    assert_eq!(
        metric(&text, "limpet_config_reloads_total", "result=\"failure\""),
        1.0
    );
}

/// Headless Chromium, as the machine's Debian package installs it.
fn chromium() -> Option<&'static str> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

fn chromium_run(bin: &str, profile: &Path, args: &[String]) -> std::process::Output {
    let mut cmd = std::process::Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args);
    cmd.output().unwrap()
}

#[tokio::test]
async fn the_status_page_renders_every_server_and_shows_a_dead_one_down_in_a_real_browser() {
    let Some(bin) = chromium() else {
        if std::env::var_os("LIMPET_REQUIRE_CHROMIUM").is_some() {
            panic!("chromium is required");
        }
        eprintln!("SKIPPED: chromium not installed");
        return;
    };
    let n = nodes(3).await;
    let check = "    health_check:\n      interval: 50ms\n      timeout: 200ms\n      rise: 1\n      fall: 1\n    sticky:\n      mode: cookie\n";
    let admin = "admin:\n  bind: 127.0.0.1:2\n";
    let lb = Lb::start(&sticky_config(
        &n,
        check,
        &["active", "drain", "active"],
        admin,
    ))
    .await;
    for _ in 0..6 {
        get_json(&client(), &lb.url("/static/x")).await;
    }
    n[2].stop().await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            !lb.live("app", "node3").is_up()
        })
        .await
    );
    // A session of node3 fails over, so the page lists a failover.
    let res = client()
        .get(lb.url("/static/x"))
        .header("cookie", "SERVERID=node3")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let url = lb.admin_url("/status");
    // The chart needs two readings of the counters (one every 5 s).
    assert!(
        eventually(Duration::from_secs(15), || async {
            get_text(&url).await.contains("class=\"series\"")
        })
        .await
    );
    let profile = temp_dir("chromium");
    let dom = tokio::task::spawn_blocking({
        let url = url.clone();
        let profile = profile.clone();
        move || chromium_run(bin, &profile, &["--dump-dom".into(), url])
    })
    .await
    .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    assert!(dom.contains("Pool app"), "{dom}");
    for (server, up, state) in [
        ("node1", "true", "active"),
        ("node2", "true", "drain"),
        ("node3", "false", "active"),
    ] {
        let row = format!("data-server=\"{server}\" data-up=\"{up}\" data-state=\"{state}\"");
        assert!(dom.contains(&row), "no row {row} in:\n{dom}");
    }
    assert!(dom.contains("<span class=\"down\">down</span>"), "{dom}");
    // The failover: from node3 to the one server taking new sessions
    // (node2 drains).
    assert!(dom.contains("<table class=\"failovers\">"), "{dom}");
    assert!(dom.contains("<td>node3</td><td>node1</td>"), "{dom}");
    // The pool's figures and its chart, as the browser built them.
    assert!(dom.contains("data-outcome=\"redispatch\">1<"), "{dom}");
    assert!(dom.contains("data-outcome=\"new\">"), "{dom}");
    assert!(dom.contains("class=\"num p99\""), "{dom}");
    assert!(
        dom.contains("<figure class=\"chart\" data-pool=\"app\">"),
        "{dom}"
    );
    for server in ["node1", "node2", "node3"] {
        let series = format!("class=\"series\" data-server=\"{server}\" d=\"M");
        assert!(dom.contains(&series), "no line for {server}:\n{dom}");
    }
    assert!(dom.contains("class=\"uptime\""), "{dom}");

    // Kept for a look: target/tmp/status-page.png (wherever the target
    // directory is).
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let out = tokio::task::spawn_blocking(move || {
        chromium_run(
            bin,
            &profile,
            &[
                format!("--screenshot={}", shot.display()),
                "--window-size=1200,900".into(),
                url,
            ],
        )
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    assert!(std::fs::metadata(&shot).unwrap().len() > 1000);
}

/// Holds a connection from `from` to `to` open, sending nothing, and
/// opens another whenever limpet closes it; counts the closes.
fn hold_open(
    from: std::net::IpAddr,
    to: std::net::SocketAddr,
    closed: std::sync::Arc<std::sync::atomic::AtomicU32>,
) -> tokio::task::JoinHandle<()> {
    use tokio::io::AsyncReadExt;
    tokio::spawn(async move {
        loop {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind((from, 0).into()).unwrap();
            let Ok(mut s) = socket.connect(to).await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let mut buf = [0u8; 64];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
            closed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    })
}

#[tokio::test]
async fn eighty_idle_neighbours_reopening_their_connections_do_not_lock_the_operator_out() {
    let n = nodes(1).await;
    let lb = Lb::start(&config(&n, "", "admin:\n  bind: 127.0.0.1:2\n")).await;
    let admin = lb.admin.unwrap();
    let closed = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    // 80 connections from five neighbours (16 each), none sending a byte,
    // each reopened as soon as limpet closes it.
    let held: Vec<_> = (0..80)
        .map(|i| {
            hold_open(
                source_ip(10 + i / 16),
                admin,
                std::sync::Arc::clone(&closed),
            )
        })
        .collect();
    assert!(
        eventually(Duration::from_secs(5), || async {
            closed.load(std::sync::atomic::Ordering::Relaxed) >= 16
        })
        .await,
        "the 80 connections never filled the admin endpoint"
    );
    // The keepalived check, from elsewhere, is still answered, long before
    // the 10 s header timeout would free a slot.
    for i in 0..5 {
        let operator = client_from(source_ip(200 + i));
        let started = std::time::Instant::now();
        let res = operator
            .get(lb.admin_url("/api/pools"))
            .timeout(Duration::from_secs(3))
            .send()
            .await;
        let status = res.map(|r| r.status().as_u16());
        assert!(matches!(status, Ok(200)), "check {i}: {status:?}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }
    for h in held {
        h.abort();
    }
}

#[tokio::test]
async fn one_peer_gets_at_most_16_admin_connections_and_silent_ones_are_closed_in_time() {
    use tokio::io::AsyncReadExt;
    let n = nodes(1).await;
    let lb = Lb::start(&config(&n, "", "admin:\n  bind: 127.0.0.1:2\n")).await;
    let admin = lb.admin.unwrap();
    let connect = || async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind((source_ip(30), 0).into()).unwrap();
        socket.connect(admin).await.unwrap()
    };
    let mut silent = Vec::new();
    for _ in 0..16 {
        silent.push(connect().await);
    }
    // The 17th from the same address is closed at once...
    let mut surplus = connect().await;
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), surplus.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    // ...while another address is served.
    let (status, _) = get_json(&client_from(source_ip(31)), &lb.admin_url("/api/pools")).await;
    assert_eq!(status, 200);
    // The silent ones are closed after the header timeout (10 s).
    let started = std::time::Instant::now();
    for mut s in silent {
        let read = tokio::time::timeout(Duration::from_secs(15), s.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "an idle admin connection stayed open: {read:?}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(13));
}

#[tokio::test]
async fn a_store_password_with_at_signs_shows_nowhere_on_the_page_the_api_or_a_failed_reload() {
    let n = nodes(1).await;
    let (redis, _held) = refusing_port();
    let dir = temp_dir("admin-mask");
    let file = dir.join("lb.yaml");
    let learn = |store: &str| {
        format!(
            "    sticky:\n      mode: learn\n      learn:\n        persist: false\n        store: \"{store}\"\n"
        )
    };
    let admin = "admin:\n  bind: 127.0.0.1:2\n";
    let store = format!("redis://:p@ss@word@{redis}/0");
    std::fs::write(&file, sticky_config(&n, &learn(&store), &[], admin)).unwrap();
    let lb = Lb::start_file(&file).await;

    let (_, v) = get_json(&client(), &lb.admin_url("/api/pools")).await;
    assert_eq!(
        v["pools"][0]["store"]["url"],
        format!("redis://:***@{redis}/0")
    );
    let page = get_text(&lb.admin_url("/status")).await;
    assert!(page.contains(&format!("redis://:***@{redis}/0")), "{page}");
    for part in ["p@", "ss@", "word"] {
        assert!(!page.contains(part), "{part} on the page: {page}");
        assert!(!v.to_string().contains(part), "{part} in the API: {v}");
    }

    // A reload that fails on the store's URL says which, without the password.
    let bad = format!("redis://:p@ss@word@{}:notaport/0", redis.ip());
    std::fs::write(&file, sticky_config(&n, &learn(&bad), &[], admin)).unwrap();
    let res = reload_through_api(&lb).await;
    assert_eq!(res.status(), 422);
    let error = res.json::<Value>().await.unwrap()["error"].to_string();
    assert!(error.contains("notaport"), "{error}");
    for part in ["p@", "ss@", "word"] {
        assert!(
            !error.contains(part),
            "{part} in the reload's error: {error}"
        );
    }
}

/// Sends `head` (request line and fields, no blank line) and `body` to the
/// admin endpoint on a connection of its own; the answer's status.
async fn admin_status(lb: &Lb, head: &str, body: &str) -> u16 {
    let request = format!(
        "{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = raw(
        lb.admin.unwrap(),
        request.as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    status_of(&answer)
}

#[tokio::test]
async fn a_cross_site_page_changes_nothing_and_a_rebinding_page_reads_nothing() {
    let n = nodes(2).await;
    let admin = "admin:\n  bind: 127.0.0.1:2\n  hosts: [Limpet-Admin.example.net]\n";
    let mut lb = Lb::start(&sticky_config(&n, "", &[], admin)).await;
    let own = lb.admin.unwrap();
    let disable = "PUT /api/pools/app/servers/node1/state HTTP/1.1";
    let off = r#"{"state":"disabled"}"#;

    // A page on evil.example posts a "simple" request (no preflight)...
    let evil_post = format!(
        "POST /api/reload HTTP/1.1\r\nHost: {own}\r\nOrigin: https://evil.example\r\nContent-Type: text/plain"
    );
    assert_eq!(admin_status(&lb, &evil_post, "x").await, 403);
    // ...or a browser says the request is cross-site without an Origin.
    let fetch = format!("{disable}\r\nHost: {own}\r\nSec-Fetch-Site: cross-site");
    assert_eq!(admin_status(&lb, &fetch, off).await, 403);
    // A page whose name now resolves to 127.0.0.1 (DNS rebinding) is its
    // own origin, but the Host is not one the admin answers to.
    let rebound = format!("rebind.evil.example:{}", own.port());
    let read = format!("GET /api/pools HTTP/1.1\r\nHost: {rebound}");
    assert_eq!(admin_status(&lb, &read, "").await, 403);
    let write = format!("{disable}\r\nHost: {rebound}\r\nOrigin: http://{rebound}");
    assert_eq!(admin_status(&lb, &write, off).await, 403);
    assert_eq!(lb.live("app", "node1").state().as_str(), "active");

    // curl and scripts (no Origin), the admin's own page, IP literals,
    // localhost and the names in `admin.hosts` (any case) are served.
    for host in [
        own.to_string(),
        format!("localhost:{}", own.port()),
        "[::1]:9090".to_owned(),
        "LIMPET-admin.Example.NET".to_owned(),
    ] {
        let read = format!("GET /api/pools HTTP/1.1\r\nHost: {host}");
        assert_eq!(admin_status(&lb, &read, "").await, 200, "{host}");
    }
    let same =
        format!("{disable}\r\nHost: {own}\r\nOrigin: http://{own}\r\nSec-Fetch-Site: same-origin");
    assert_eq!(admin_status(&lb, &same, r#"{"state":"drain"}"#).await, 200);
    assert_eq!(lb.live("app", "node1").state().as_str(), "drain");
    let script = format!("{disable}\r\nHost: {own}");
    assert_eq!(
        admin_status(&lb, &script, r#"{"state":"active"}"#).await,
        200
    );

    // `admin.hosts` follows a reload.
    let moved = "admin:\n  bind: 127.0.0.1:2\n  hosts: [ops.example.net]\n";
    lb.reload(&sticky_config(&n, "", &[], moved)).await;
    let read = |host: &str| format!("GET /api/pools HTTP/1.1\r\nHost: {host}");
    assert_eq!(admin_status(&lb, &read("ops.example.net"), "").await, 200);
    assert_eq!(
        admin_status(&lb, &read("limpet-admin.example.net"), "").await,
        403
    );
}

#[test]
fn admin_hosts_are_names_and_an_open_admin_without_a_token_is_a_warning() {
    let base = "listeners:\n  - { name: http, bind: 127.0.0.1:8080, pool: app }\npools:\n  app:\n    servers:\n      - { name: a, address: 127.0.0.1:9001 }\n";
    let parse =
        |admin: &str| limpet::config::parse(&format!("{base}{admin}"), Path::new("lb.yaml"));
    for (bad, says) in [
        ("admin.example.net:9090", "without a port"),
        ("http://admin.example.net", "without a port"),
        ("*.example.net", "no wildcard"),
        ("10.0.0.5", "always answers to IP addresses"),
        ("[::1]", "always answers to IP addresses"),
        ("", "without a port"),
    ] {
        let e = parse(&format!("admin:\n  hosts: [\"{bad}\"]\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("lb.yaml:") && e.contains(says), "{bad}: {e}");
    }
    let c = parse("admin:\n  hosts: [Ops.Example.NET, localhost]\n").unwrap();
    assert_eq!(c.admin.unwrap().hosts, ["ops.example.net", "localhost"]);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);

    // Reachable from elsewhere and no token: `limpet check` and the start say so.
    let c = parse("admin:\n  bind: 0.0.0.0:9090\n").unwrap();
    assert!(
        c.warnings.iter().any(|w| w.contains("token_file")),
        "{:?}",
        c.warnings
    );
    let dir = temp_dir("admin-open");
    let with = with_token(&dir).replace("127.0.0.1:2", "0.0.0.0:9090");
    assert!(parse(&with).unwrap().warnings.is_empty());
}

#[tokio::test]
async fn the_admin_takes_any_case_of_bearer_and_holds_requests_to_the_proxys_host_rules() {
    let n = nodes(1).await;
    let dir = temp_dir("admin-rules");
    let lb = Lb::start(&config(&n, "", &with_token(&dir))).await;
    let own = lb.admin.unwrap();
    let put = "PUT /api/pools/app/servers/node1/state HTTP/1.1";
    let drain = r#"{"state":"drain"}"#;
    // The scheme is case-insensitive (RFC 9110 §11.1).
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let head = format!("{put}\r\nHost: {own}\r\nAuthorization: {scheme} {TOKEN}");
        assert_eq!(admin_status(&lb, &head, drain).await, 200, "{scheme}");
    }
    // Two Authorization fields: which one counts? Neither.
    let head = format!(
        "{put}\r\nHost: {own}\r\nAuthorization: Bearer {TOKEN}\r\nAuthorization: Bearer wrong"
    );
    assert_eq!(admin_status(&lb, &head, drain).await, 400);
    // Host as the proxy listeners take it.
    let get = "GET /api/pools HTTP/1.1";
    let two_hosts = format!("{get}\r\nHost: {own}\r\nHost: {own}");
    assert_eq!(admin_status(&lb, &two_hosts, "").await, 400);
    assert_eq!(admin_status(&lb, get, "").await, 400);
    assert_eq!(admin_status(&lb, "GET /api/pools HTTP/1.0", "").await, 200);

    // The status page runs nothing and loads nothing, and is not sniffed.
    let res = client().get(lb.admin_url("/status")).send().await.unwrap();
    let csp = res.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.starts_with("default-src 'none'; style-src 'unsafe-inline'"),
        "{csp}"
    );
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    let page = res.text().await.unwrap();
    assert!(
        !page.contains("<script") && !page.contains("<img"),
        "{page}"
    );
}
