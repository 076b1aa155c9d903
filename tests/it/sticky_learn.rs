//! learn mode: limpet learns the server of each session id from the
//! server's own Set-Cookie (or from the request, with request_learn).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::harness::*;

const LEARN: &str = "    sticky:\n      mode: learn\n      learn:\n        persist: false\n";

fn learned(lb: &Lb) -> u64 {
    let snap = lb.limpet.as_ref().unwrap().snapshot();
    snap.pool("app").unwrap().sticky.learned().unwrap().len()
}

/// Replaces the demo's `.nodeN` suffix so that only the learned table can
/// tell where a session lives.
fn strip_route(id: &str) -> String {
    id.split('.').next().unwrap().to_owned()
}

#[tokio::test]
async fn a_session_learned_from_set_cookie_stays_for_50_requests_while_new_ones_spread() {
    let n = nodes(3).await;
    let lb = Lb::start(&sticky_config(&n, LEARN, &[], "")).await;
    let mut homes = HashSet::new();
    for _ in 0..6 {
        let b = browser(None);
        homes.insert(one_server(&servers_seen(&b, &lb.url("/"), 50).await));
    }
    assert_eq!(homes.len(), 3, "{homes:?}");
    assert_eq!(learned(&lb), 6);
}

#[tokio::test]
async fn request_learn_binds_an_unknown_id_to_the_server_that_served_it() {
    let n = nodes(3).await;
    let sticky = "    sticky:\n      mode: learn\n      learn:\n        cookie: SID\n        persist: false\n";
    let lb = Lb::start(&sticky_config(&n, sticky, &[], "")).await;
    let c = client();
    let mut homes = HashSet::new();
    for s in 0..6 {
        let mut seen = Vec::new();
        for _ in 0..20 {
            let res = c
                .get(lb.url("/"))
                .header("cookie", format!("SID=session-{s}"))
                .send()
                .await
                .unwrap();
            seen.push(server_of(&res.json().await.unwrap()));
        }
        homes.insert(one_server(&seen));
    }
    assert_eq!(homes.len(), 3, "{homes:?}");

    let off = "    sticky:\n      mode: learn\n      learn:\n        cookie: SID\n        request_learn: false\n        persist: false\n";
    let lb = Lb::start(&sticky_config(&n, off, &[], "")).await;
    let mut seen = HashSet::new();
    for _ in 0..6 {
        let res = c
            .get(lb.url("/"))
            .header("cookie", "SID=never-learned")
            .send()
            .await
            .unwrap();
        seen.insert(server_of(&res.json().await.unwrap()));
    }
    assert!(
        seen.len() > 1,
        "without request_learn an unknown id must not stick"
    );
    assert_eq!(learned(&lb), 0);
}

#[tokio::test]
async fn the_id_is_read_from_the_path_parameter_too() {
    let n = nodes(3).await;
    let lb = Lb::start(&sticky_config(&n, LEARN, &[], "")).await;
    let res = client().get(lb.url("/")).send().await.unwrap();
    let id = set_cookies(&res)
        .into_iter()
        .find(|c| c.starts_with("JSESSIONID="))
        .unwrap();
    let id = id["JSESSIONID=".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let home = server_of(&res.json().await.unwrap());
    for _ in 0..10 {
        let (_, v) = get_json(&client(), &lb.url(&format!("/cart;jsessionid={id}"))).await;
        assert_eq!(server_of(&v), home);
    }
}

#[tokio::test]
async fn only_the_first_max_len_characters_are_the_key() {
    let n = nodes(3).await;
    let sticky = "    sticky:\n      mode: learn\n      learn:\n        max_len: 32\n        persist: false\n";
    let lb = Lb::start(&sticky_config(&n, sticky, &[], "")).await;
    let c = client();
    let mut homes: HashMap<String, String> = HashMap::new();
    for _ in 0..3 {
        let res = c.get(lb.url("/")).send().await.unwrap();
        let id = set_cookies(&res)
            .into_iter()
            .find(|c| c.starts_with("JSESSIONID="))
            .unwrap();
        let hex = strip_route(&id["JSESSIONID=".len()..]);
        homes.insert(hex, server_of(&res.json().await.unwrap()));
    }
    for (hex, home) in &homes {
        // same first 32 characters, another tail: the same key
        for _ in 0..5 {
            let res = c
                .get(lb.url("/"))
                .header("cookie", format!("JSESSIONID={hex}.other-tail"))
                .send()
                .await
                .unwrap();
            assert_eq!(&server_of(&res.json().await.unwrap()), home);
        }
    }
}

#[tokio::test]
async fn a_session_the_server_ends_is_forgotten() {
    let n = nodes(2).await;
    let lb = Lb::start(&sticky_config(&n, LEARN, &[], "")).await;
    let b = browser(None);
    servers_seen(&b, &lb.url("/"), 3).await;
    assert_eq!(learned(&lb), 1);
    let res = b.get(lb.url("/logout")).send().await.unwrap();
    assert!(set_cookies(&res).iter().any(|c| c.contains("Max-Age=0")));
    assert!(eventually(Duration::from_secs(5), || async { learned(&lb) == 0 }).await);
}

#[tokio::test]
async fn unused_entries_expire_after_idle_timeout() {
    let n = nodes(2).await;
    let sticky = "    sticky:\n      mode: learn\n      learn:\n        idle_timeout: 400ms\n        persist: false\n";
    let lb = Lb::start(&sticky_config(&n, sticky, &[], "")).await;
    let b = browser(None);
    servers_seen(&b, &lb.url("/"), 2).await;
    assert_eq!(learned(&lb), 1);
    // Used within the timeout, it stays: four uses 150 ms apart outlast the
    // 400 ms timeout only if each use renews the entry. The pauses are the
    // scenario (time passing while the table's clock is the real one), not
    // a wait for something to happen.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        servers_seen(&b, &lb.url("/"), 1).await;
    }
    assert_eq!(learned(&lb), 1);
    assert!(eventually(Duration::from_secs(5), || async { learned(&lb) == 0 }).await);
}

#[tokio::test]
async fn capacity_bounds_the_table_and_evicts_the_least_recently_used() {
    let n = nodes(2).await;
    let sticky = "    sticky:\n      mode: learn\n      learn:\n        capacity: 5\n        persist: false\n";
    let lb = Lb::start(&sticky_config(&n, sticky, &[], "")).await;
    let session = |b: reqwest::Client| {
        let url = lb.url("/");
        async move {
            let (_, v) = get_json(&b, &url).await;
            v["session"].as_str().unwrap().to_owned()
        }
    };
    let keep = browser(None);
    let keep_id = session(keep.clone()).await;
    let mut others = Vec::new();
    for _ in 0..12 {
        others.push(session(browser(None)).await);
        // "keep" is used all the time, so it is never the least recently used.
        assert_eq!(session(keep.clone()).await, keep_id);
    }
    let snap = lb.limpet.as_ref().unwrap().snapshot();
    let pool = snap.pool("app").unwrap();
    let limpet::sticky::Sticky::Learn(learn) = &pool.sticky else {
        unreachable!()
    };
    let has = |id: &str| learn.table.get(learn.key(id.as_bytes())).is_some();
    assert!(learned(&lb) <= 5, "table grew to {}", learned(&lb));
    assert!(has(&keep_id), "the most recently used session was evicted");
    assert!(
        !has(&others[0]),
        "the least recently used session is still there"
    );
    assert!(has(&others[11]), "the newest session was evicted");
}

#[tokio::test]
async fn the_table_survives_a_restart_and_a_corrupt_file_is_set_aside() {
    let n = nodes(3).await;
    let dir = std::env::temp_dir().join(format!("limpet-learn-state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let top = format!("state_dir: \"{}\"", dir.display());
    let sticky = "    sticky:\n      mode: learn\n      learn:\n        cookie: SID\n";
    let lb = Lb::start(&sticky_config(&n, sticky, &[], &top)).await;
    let c = client();
    let ask = |lb: &Lb, sid: usize| {
        let c = c.clone();
        let url = lb.url("/");
        async move { server_with_cookie(&c, &url, &format!("SID=s{sid}")).await }
    };
    let mut homes = Vec::new();
    for s in 0..9 {
        homes.push(ask(&lb, s).await);
    }
    lb.shutdown().await;
    assert!(dir.join("learned-app.json").exists());

    // A new limpet (request_learn would bind afresh by round robin; the
    // restored table must win for every one of the 9 sessions).
    let lb = Lb::start(&sticky_config(&n, sticky, &[], &top)).await;
    assert_eq!(learned(&lb), 9);
    for (s, home) in homes.iter().enumerate() {
        assert_eq!(
            &ask(&lb, s).await,
            home,
            "session s{s} moved across the restart"
        );
    }
    lb.shutdown().await;

    std::fs::write(
        dir.join("learned-app.json"),
        b"\x00\x01 definitely not json",
    )
    .unwrap();
    let lb = Lb::start(&sticky_config(&n, sticky, &[], &top)).await;
    assert_eq!(learned(&lb), 0);
    let aside: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "the corrupt file was not set aside");
    assert_eq!(
        ask(&lb, 0).await.len(),
        5,
        "limpet serves after a corrupt state file"
    );
    lb.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn drain_keeps_learned_sessions_and_disabled_moves_them() {
    let n = nodes(3).await;
    let sticky = "    sticky:\n      mode: learn\n      learn:\n        cookie: SID\n        persist: false\n";
    let mut lb = Lb::start(&sticky_config(&n, sticky, &[], "")).await;
    let c = client();
    let ask = |lb: &Lb, sid: String| {
        let c = c.clone();
        let url = lb.url("/");
        async move { server_with_cookie(&c, &url, &format!("SID={sid}")).await }
    };
    let mut on2 = None;
    for s in 0..6 {
        if ask(&lb, format!("d{s}")).await == "node2" {
            on2 = Some(format!("d{s}"));
        }
    }
    let on2 = on2.unwrap();
    lb.reload(&sticky_config(
        &n,
        sticky,
        &["active", "drain", "active"],
        "",
    ))
    .await;
    for _ in 0..10 {
        assert_eq!(ask(&lb, on2.clone()).await, "node2");
    }
    for s in 0..20 {
        assert_ne!(ask(&lb, format!("new{s}")).await, "node2");
    }
    lb.reload(&sticky_config(
        &n,
        sticky,
        &["active", "disabled", "active"],
        "",
    ))
    .await;
    let moved = ask(&lb, on2.clone()).await;
    assert_ne!(moved, "node2");
    // the entry was rewritten: it stays on its replacement
    for _ in 0..10 {
        assert_eq!(ask(&lb, on2.clone()).await, moved);
    }
}

#[tokio::test]
async fn a_reload_keeps_the_learned_table() {
    let n = nodes(3).await;
    let sticky = "    sticky:\n      mode: learn\n      learn:\n        cookie: SID\n        persist: false\n";
    let mut lb = Lb::start(&sticky_config(&n, sticky, &[], "")).await;
    let c = client();
    let mut homes = Vec::new();
    for s in 0..9 {
        homes.push(server_with_cookie(&c, &lb.url("/"), &format!("SID=r{s}")).await);
    }
    // Same pool, another balance: the table must carry over.
    let changed = sticky.replace("    sticky:", "    balance: least_conn\n    sticky:");
    lb.reload(&sticky_config(&n, &changed, &[], "")).await;
    assert_eq!(learned(&lb), 9);
    for (s, home) in homes.iter().enumerate() {
        assert_eq!(
            &server_with_cookie(&c, &lb.url("/"), &format!("SID=r{s}")).await,
            home
        );
    }
}
