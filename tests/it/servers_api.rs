//! Servers added and removed at run time through the admin API
//! (`POST /api/pools/{pool}/servers`, `DELETE …/servers/{server}`): status
//! codes and the token, traffic and sessions of a server that comes and
//! goes, a new server that takes nothing before its first passing check,
//! and API servers across reloads.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

const TOKEN: &str = "api-servers-token";

fn admin_with_token(dir: &Path) -> String {
    let file = dir.join("token");
    write_mode(&file, &format!("{TOKEN}\n"), 0o600);
    format!(
        "admin:\n  bind: 127.0.0.1:2\n  token_file: \"{}\"\n",
        file.display()
    )
}

/// `method` on `path` with `body`, with the token or without: (status, body).
async fn call(lb: &Lb, method: &str, path: &str, body: &str, token: bool) -> (u16, String) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = client()
        .request(method, lb.admin_url(path))
        .body(body.to_owned());
    if token {
        req = req.header("authorization", format!("Bearer {TOKEN}"));
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

fn add_body(name: &str, addr: std::net::SocketAddr) -> String {
    format!(r#"{{"name":"{name}","address":"{addr}"}}"#)
}

/// The pool's servers in `/api/pools`.
async fn servers(lb: &Lb) -> Vec<Value> {
    let (_, v) = get_json(&client(), &lb.admin_url("/api/pools")).await;
    v["pools"][0]["servers"].as_array().unwrap().clone()
}

async fn source_of(lb: &Lb, name: &str) -> Option<String> {
    servers(lb)
        .await
        .iter()
        .find(|s| s["name"] == name)
        .map(|s| s["source"].as_str().unwrap().to_owned())
}

async fn count(lb: &Lb, source: &str) -> f64 {
    let text = get_text(&lb.admin_url("/metrics")).await;
    metric(
        &text,
        "limpet_servers",
        &format!("pool=\"app\",source=\"{source}\""),
    )
}

/// Does a request without a cookie reach `server` within `tries`?
async fn reaches(lb: &Lb, server: &str, tries: usize) -> bool {
    let c = client();
    for _ in 0..tries {
        let (_, v) = get_json(&c, &lb.url("/static/x")).await;
        if server_of(&v) == server {
            return true;
        }
    }
    false
}

#[tokio::test]
async fn servers_are_added_and_removed_at_run_time_with_the_tokens_rules() {
    let n = nodes(3).await;
    let dir = temp_dir("servers-api");
    let sticky = "    sticky:\n      mode: cookie\n";
    let lb = Lb::start(&sticky_config(
        &n[..2],
        sticky,
        &[],
        &admin_with_token(&dir),
    ))
    .await;
    let node3 = add_body("node3", n[2].addr());

    // Adding needs the token, a pool that exists, a free name and route,
    // and a body the file would take.
    assert_eq!(
        call(&lb, "POST", "/api/pools/app/servers", &node3, false)
            .await
            .0,
        401
    );
    let (status, text) = call(&lb, "POST", "/api/pools/nope/servers", &node3, true).await;
    assert_eq!(status, 404, "{text}");
    for (body, says) in [
        ("{", "request body"),
        (r#"{"name":"x","address":"nowhere"}"#, "address"),
        (
            r#"{"name":"x","address":"127.0.0.1:1","weight":1000}"#,
            "weight",
        ),
        (
            r#"{"name":"x","address":"127.0.0.1:1","colour":"red"}"#,
            "colour",
        ),
    ] {
        let (status, text) = call(&lb, "POST", "/api/pools/app/servers", body, true).await;
        assert_eq!(status, 400, "{body}: {text}");
        assert!(text.contains(says), "{body}: {text}");
    }
    let (status, text) = call(&lb, "POST", "/api/pools/app/servers", &node3, true).await;
    assert_eq!(status, 201, "{text}");
    let added: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(added["name"], "node3");
    assert_eq!(added["source"], "api");
    assert_eq!(added["address"], n[2].addr().to_string());
    let (status, text) = call(&lb, "POST", "/api/pools/app/servers", &node3, true).await;
    assert_eq!(status, 409, "{text}");
    let taken = format!(
        r#"{{"name":"node9","address":"{}","route":"node1"}}"#,
        n[2].addr()
    );
    let (status, text) = call(&lb, "POST", "/api/pools/app/servers", &taken, true).await;
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("route"), "{text}");

    assert_eq!(source_of(&lb, "node3").await.as_deref(), Some("api"));
    assert_eq!(source_of(&lb, "node1").await.as_deref(), Some("file"));
    assert_eq!(count(&lb, "api").await, 1.0);
    assert_eq!(count(&lb, "file").await, 2.0);
    assert!(reaches(&lb, "node3", 30).await, "node3 takes new sessions");
    let page = get_text(&lb.admin_url("/status")).await;
    assert!(page.contains("(api)"), "{page}");

    // A session on each server.
    let c = client();
    for s in ["node1", "node2", "node3"] {
        let on = server_with_cookie(&c, &lb.url("/"), &format!("SERVERID={s}")).await;
        assert_eq!(on, s);
    }

    // Removing: only the API's own servers, with the token.
    let (status, text) = call(&lb, "DELETE", "/api/pools/app/servers/node1", "", true).await;
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("configuration file"), "{text}");
    assert_eq!(
        call(&lb, "DELETE", "/api/pools/app/servers/node9", "", true)
            .await
            .0,
        404
    );
    assert_eq!(
        call(&lb, "DELETE", "/api/pools/app/servers/node3", "", false)
            .await
            .0,
        401
    );
    assert_eq!(
        call(&lb, "GET", "/api/pools/app/servers/node3", "", true)
            .await
            .0,
        405
    );
    let (status, text) = call(&lb, "DELETE", "/api/pools/app/servers/node3", "", true).await;
    assert_eq!(status, 204, "{text}");
    assert_eq!(source_of(&lb, "node3").await, None);
    assert_eq!(count(&lb, "api").await, 0.0);

    // node3's sessions move, each to one replacement, as a dead server's;
    // the others stay.
    let moved = server_with_cookie(&c, &lb.url("/"), "SERVERID=node3").await;
    assert!(moved == "node1" || moved == "node2", "{moved}");
    for _ in 0..5 {
        assert_eq!(
            server_with_cookie(&c, &lb.url("/"), "SERVERID=node3").await,
            moved
        );
        for s in ["node1", "node2"] {
            assert_eq!(
                server_with_cookie(&c, &lb.url("/"), &format!("SERVERID={s}")).await,
                s
            );
        }
    }
    assert!(!reaches(&lb, "node3", 20).await, "node3 is gone");
}

#[tokio::test]
async fn a_server_added_where_checks_run_takes_nothing_before_its_first_passing_check() {
    let n = nodes(3).await;
    let dir = temp_dir("servers-api-checks");
    // Checks every 2 s: the first one comes anywhere within 2 s of the
    // add, so the requests right after it show what the server is before.
    let check = "    health_check:\n      type: http\n      path: /health\n      interval: 2s\n      rise: 1\n      fall: 1\n";
    let lb = Lb::start(&sticky_config(&n[..2], check, &[], &admin_with_token(&dir))).await;
    n[2].set_health(500);
    let (status, text) = call(
        &lb,
        "POST",
        "/api/pools/app/servers",
        &add_body("node3", n[2].addr()),
        true,
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let added: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(added["up"], false, "down until a check passes: {added}");
    assert!(
        !reaches(&lb, "node3", 30).await,
        "node3 took traffic before a check"
    );
    // Checked (and failing): still nothing.
    assert!(
        eventually(Duration::from_secs(6), || async {
            n[2].health_checks() >= 1
        })
        .await,
        "node3 is never checked"
    );
    assert!(
        !reaches(&lb, "node3", 30).await,
        "node3 took traffic before a passing check"
    );
    n[2].set_health(200);
    assert!(
        eventually(Duration::from_secs(5), || async {
            servers(&lb)
                .await
                .iter()
                .any(|s| s["name"] == "node3" && s["up"] == true)
        })
        .await,
        "node3 never came up"
    );
    assert!(
        reaches(&lb, "node3", 30).await,
        "node3 takes traffic once up"
    );
}

#[tokio::test]
async fn an_api_server_outlives_a_reload_unless_the_file_names_it() {
    let n = nodes(3).await;
    let dir = temp_dir("servers-api-reload");
    let path = dir.join("lb.yaml");
    let yaml = sticky_config(&n[..2], "", &[], &admin_with_token(&dir));
    std::fs::write(&path, &yaml).unwrap();
    let lb = Lb::start_file(&path).await;
    let body = add_body("node3", n[2].addr());
    assert_eq!(
        call(&lb, "POST", "/api/pools/app/servers", &body, true)
            .await
            .0,
        201
    );

    // A reload keeps it.
    assert_eq!(call(&lb, "POST", "/api/reload", "", true).await.0, 200);
    assert_eq!(source_of(&lb, "node3").await.as_deref(), Some("api"));
    assert!(reaches(&lb, "node3", 30).await);

    // The file comes to define node3: the file's wins, and stays after
    // the next reload.
    std::fs::write(&path, sticky_config(&n, "", &[], &admin_with_token(&dir))).unwrap();
    assert_eq!(call(&lb, "POST", "/api/reload", "", true).await.0, 200);
    assert_eq!(source_of(&lb, "node3").await.as_deref(), Some("file"));
    let (status, _) = call(&lb, "DELETE", "/api/pools/app/servers/node3", "", true).await;
    assert_eq!(status, 409, "the file's server is not the API's to remove");
    // Taken out of the file again: gone (the API's was replaced, not kept).
    std::fs::write(&path, &yaml).unwrap();
    assert_eq!(call(&lb, "POST", "/api/reload", "", true).await.0, 200);
    assert_eq!(source_of(&lb, "node3").await, None);
}
