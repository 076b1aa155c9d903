//! In-place upgrade (`SIGUSR2`) with the real binary, copied to a
//! directory of its own and replaced there the way a package manager does
//! (a new file renamed over the old): no request fails and no connection is
//! refused while the new process takes over; the old one finishes its
//! requests and exits 0; what clients depend on (learned sessions, a drain,
//! a failover binding, a server found down) is still there; a new binary
//! or `lb.yaml` that cannot start leaves the old process serving.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::*;

/// A directory for test `name` with the binary copied into it (an upgrade
/// replaces this copy): the directory and the copy.
fn installed(name: &str) -> (Installed, PathBuf) {
    let dir = temp_dir(&format!("{name}-bin"));
    let exe = dir.join("limpet");
    std::fs::copy(env!("CARGO_BIN_EXE_limpet"), &exe).unwrap();
    (Installed(dir), exe)
}

/// The directory of [`installed`], removed when the test ends: it holds
/// copies of the binary, a few hundred megabytes a test.
struct Installed(PathBuf);

impl std::ops::Deref for Installed {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Replaces `exe` as a package manager does: a new file, renamed over it.
fn replace(exe: &Path, with: &Path) {
    let tmp = exe.with_extension("new");
    std::fs::copy(with, &tmp).unwrap();
    std::fs::rename(&tmp, exe).unwrap();
}

/// A new binary that waits 2 s, then runs `real`: an upgrade under way
/// for that long.
fn slow_binary(dir: &Path, real: &Path) -> PathBuf {
    let slow = dir.join("slow");
    write_mode(
        &slow,
        &format!("#!/bin/sh\nsleep 2\nexec \"{}\" \"$@\"\n", real.display()),
        0o755,
    );
    slow
}

/// A new process started by an upgrade; killed when the test ends.
struct Successor(u32);

impl Drop for Successor {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &self.0.to_string()])
            .status();
    }
}

impl Successor {
    fn alive(&self) -> bool {
        Path::new(&format!("/proc/{}", self.0)).exists()
            && !std::fs::read_to_string(format!("/proc/{}/stat", self.0))
                .unwrap_or_default()
                .contains(") Z ")
    }
}

/// Waits for the old process to log that the new one serves; its pid.
async fn upgraded(p: &Proc) -> Successor {
    let mut pid = None;
    let found = eventually(Duration::from_secs(20), || {
        pid = p
            .log()
            .lines()
            .find(|l| l.contains("the new process serves"))
            .and_then(|l| l.split("pid=").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u32>().ok());
        let done = pid.is_some();
        async move { done }
    })
    .await;
    assert!(found, "no upgrade: {}", p.log());
    Successor(pid.unwrap())
}

/// `SIGUSR2`, and the old process's exit once the new one serves.
async fn upgrade(p: &mut Proc) -> Successor {
    p.signal("USR2");
    let new = upgraded(p).await;
    assert_eq!(
        p.wait_exit(Duration::from_secs(15)).await,
        Some(0),
        "{}",
        p.log()
    );
    new
}

/// A new session through `p`: its `JSESSIONID=…` and the server that
/// issued it.
async fn login(c: &reqwest::Client, p: &Proc) -> (String, String) {
    let res = c
        .get(format!("http://{}/login", p.addr))
        .send()
        .await
        .unwrap();
    let cookie = set_cookies(&res)
        .into_iter()
        .find(|s| s.starts_with("JSESSIONID="))
        .unwrap();
    let v: serde_json::Value = res.json().await.unwrap();
    (cookie.split(';').next().unwrap().to_owned(), server_of(&v))
}

/// `learn` with `persist: false`, checks every `interval`.
fn learn_yaml(nodes: &[limpet_demo::DemoNode], extra: &str) -> String {
    format!(
        "listeners:\n  - name: http\n    bind: \"{{BIND}}\"\n    pool: app\nadmin:\n  bind: \"{}\"\ntimeouts:\n  shutdown_grace: 10s\nlog:\n  level: info\npools:\n  app:\n{extra}    servers:\n{}",
        closed_port(),
        servers_yaml(nodes)
    )
}

#[tokio::test]
async fn an_upgrade_under_load_fails_no_request_and_the_old_process_exits() {
    upgrade_under_load("upgrade-load", "", "").await;
}

/// A listener has a socket per worker (SO_REUSEPORT), and the kernel hands
/// each socket its share of new connections: the new process must accept
/// on every socket the old one had, also with fewer workers, or the
/// connections the kernel queues in the others wait forever.
#[tokio::test]
async fn an_upgrade_to_fewer_workers_under_load_fails_no_request() {
    upgrade_under_load("upgrade-fewer", "workers: 3\n", "workers: 1\n").await;
}

/// The new process with more workers than the old one had sockets adds
/// sockets to the listener's group.
#[tokio::test]
async fn an_upgrade_to_more_workers_under_load_fails_no_request() {
    upgrade_under_load("upgrade-more", "workers: 1\n", "workers: 3\n").await;
}

/// Load (half the clients keep their connection, half open one per
/// request) and a slow request across an upgrade from a process with
/// `before` in its configuration to one with `after`.
async fn upgrade_under_load(name: &str, before: &str, after: &str) {
    let n = nodes(2).await;
    let (_installed, exe) = installed(name);
    let yaml = |extra: &str| {
        info(proc_config(
            &n,
            &format!("{extra}timeouts:\n  shutdown_grace: 10s\n"),
        ))
    };
    let mut p = Proc::start_exe(name, &yaml(before), &exe, &[]).await;
    let base = format!("http://{}", p.addr);

    // A slow request, on the old process.
    let url = format!("{base}/slow?ms=2500");
    let slow = tokio::spawn(async move {
        let res = client().get(url).send().await.unwrap();
        res.status().as_u16()
    });
    assert!(
        eventually(Duration::from_secs(5), || async {
            n.iter().map(|n| n.in_flight()).sum::<u64>() == 1
        })
        .await
    );

    // Clients: half keep their connection, half open one per request.
    let load = Load::start(&base, 6);
    tokio::time::sleep(Duration::from_millis(500)).await;
    p.rewrite(&yaml(after));
    replace(&exe, Path::new(env!("CARGO_BIN_EXE_limpet")));
    p.signal("USR2");
    let new = upgraded(&p).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (ok, errors) = load.stop().await;
    assert_eq!(errors, Vec::<String>::new());
    assert!(ok > 100, "load ran");

    // The slow request finished on the old process, which then left.
    assert_eq!(slow.await.unwrap(), 200);
    assert_eq!(
        p.wait_exit(Duration::from_secs(15)).await,
        Some(0),
        "{}",
        p.log()
    );
    assert!(new.alive());
    // The listener is the new process's now.
    let (status, v) = get_json(&client(), &format!("{base}/after")).await;
    assert_eq!(status, 200, "{v}");
}

/// A connection the old process accepted but could not serve yet (its
/// `max_connections` were all taken) when the new one took over is
/// answered by the old one once a slot frees up: accepted means served,
/// whichever process stops.
#[tokio::test]
async fn a_connection_waiting_for_a_slot_is_answered_across_an_upgrade() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let n = nodes(1).await;
    let (_installed, exe) = installed("upgrade-slot");
    let yaml = info(proc_config(
        &n,
        "workers: 1\nlimits:\n  max_connections: 1\ntimeouts:\n  shutdown_grace: 10s\n",
    ));
    let mut p = Proc::start_exe("upgrade-slot", &yaml, &exe, &[]).await;
    // The only slot, held by a slow request.
    let url = p.url("/slow?ms=1500");
    let slow = tokio::spawn(async move { client().get(url).send().await.unwrap().status() });
    assert!(eventually(Duration::from_secs(5), || async { n[0].in_flight() == 1 }).await);
    // A connection with its request sent, waiting for the slot.
    let mut waiting = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    waiting
        .write_all(b"GET /waiting HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = tokio::spawn(async move {
        let mut got = Vec::new();
        let read = waiting.read_to_end(&mut got).await;
        (
            read.map_err(|e| e.kind()),
            String::from_utf8_lossy(&got).into_owned(),
        )
    });
    let _new = upgrade(&mut p).await;
    assert_eq!(slow.await.unwrap(), 200);
    let (read, text) = answer.await.unwrap();
    assert!(
        read.is_ok() && text.starts_with("HTTP/1.1 200"),
        "{read:?}: {text:?}"
    );
}

#[tokio::test]
async fn learned_sessions_a_drain_and_a_server_found_down_survive_an_upgrade() {
    let n = nodes(3).await;
    let (_installed, exe) = installed("upgrade-state");
    // node3's checks fail; the old process finds it down at once.
    let check = "    health_check:\n      type: http\n      path: /health\n      rise: 1\n      fall: 1\n      interval: 100ms\n";
    let yaml = learn_yaml(
        &n,
        &format!("    sticky:\n      mode: learn\n      learn:\n        persist: false\n{check}"),
    );
    n[2].set_health(500);
    let mut p = Proc::start_exe("upgrade-state", &yaml, &exe, &[]).await;
    let admin = admin_of(&p);
    let up = |server: &'static str| {
        let url = format!("http://{admin}/api/pools");
        async move {
            let (_, v) = get_json(&client(), &url).await;
            v["pools"][0]["servers"]
                .as_array()
                .and_then(|a| a.iter().find(|s| s["name"] == server))
                .map(|s| s["up"] == true)
        }
    };
    assert!(
        eventually(Duration::from_secs(10), || async {
            up("node3").await == Some(false)
        })
        .await
    );
    // Sessions learned on the old process, one per node that is up.
    let c = client();
    let mut sessions = Vec::new();
    for _ in 0..12 {
        sessions.push(login(&c, &p).await);
    }
    assert!(
        sessions.iter().all(|(_, s)| s != "node3"),
        "node3 is down: {sessions:?}"
    );
    // A drain set through the admin API.
    let res = c
        .put(format!("http://{admin}/api/pools/app/servers/node2/state"))
        .body(r#"{"state":"drain"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // The new process checks rarely (its first check comes anywhere within
    // the hour): what it knows of node3 it has from the old one.
    let slow = std::fs::read_to_string(p.dir.join("lb.yaml"))
        .unwrap()
        .replace("interval: 100ms", "interval: 1h");
    std::fs::write(p.dir.join("lb.yaml"), slow).unwrap();
    let _new = upgrade(&mut p).await;

    // Every session still reaches its server, on the new process.
    for (cookie, server) in &sessions {
        assert_eq!(
            &server_with_cookie(&c, &p.url("/"), cookie).await,
            server,
            "{cookie}"
        );
    }
    let (_, pools) = get_json(&c, &format!("http://{admin}/api/pools")).await;
    let servers = pools["pools"][0]["servers"].as_array().unwrap().clone();
    let field = |name: &str, key: &str| {
        servers
            .iter()
            .find(|s| s["name"] == name)
            .map(|s| s[key].clone())
            .unwrap()
    };
    assert_eq!(field("node2", "state"), "drain", "{servers:?}");
    assert_eq!(field("node3", "up"), false, "{servers:?}");
    // New sessions go to neither.
    for _ in 0..6 {
        let (_, v) = get_json(&client(), &p.url("/new")).await;
        assert_eq!(server_of(&v), "node1");
    }
}

#[tokio::test]
async fn a_server_added_through_the_api_survives_an_upgrade() {
    let n = nodes(3).await;
    let (_installed, exe) = installed("upgrade-api-server");
    let yaml = learn_yaml(
        &n[..2],
        "    sticky:\n      mode: learn\n      learn:\n        persist: false\n",
    );
    let mut p = Proc::start_exe("upgrade-api-server", &yaml, &exe, &[]).await;
    let admin = admin_of(&p);
    let c = client();
    let res = c
        .post(format!("http://{admin}/api/pools/app/servers"))
        .body(format!(
            r#"{{"name":"node3","address":"{}","weight":2}}"#,
            n[2].addr()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    // A session learned on node3 through the old process.
    let mut on_node3 = None;
    for _ in 0..30 {
        let (cookie, server) = login(&c, &p).await;
        if server == "node3" {
            on_node3 = Some(cookie);
            break;
        }
    }
    let cookie = on_node3.expect("no session reached node3");

    let _new = upgrade(&mut p).await;
    let (_, pools) = get_json(&c, &format!("http://{admin}/api/pools")).await;
    let node3 = pools["pools"][0]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "node3")
        .cloned();
    let node3 = node3.unwrap_or_else(|| panic!("node3 is gone after the upgrade: {pools}"));
    assert_eq!(node3["source"], "api");
    assert_eq!(node3["weight"], 2);
    assert_eq!(server_with_cookie(&c, &p.url("/"), &cookie).await, "node3");
    // Still the API's to remove.
    let res = c
        .delete(format!("http://{admin}/api/pools/app/servers/node3"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
}

#[tokio::test]
async fn a_jvm_route_failover_binding_survives_an_upgrade() {
    let n = nodes(3).await;
    let (_installed, exe) = installed("upgrade-jvm");
    let yaml = learn_yaml(&n, "    sticky:\n      mode: jvm_route\n");
    let mut p = Proc::start_exe("upgrade-jvm", &yaml, &exe, &[]).await;
    let c = client();
    // Static resources: the server issues no new id, so only the binding
    // keeps a moved session where it moved.
    let url = p.url("/static/app.js");
    // A session of node2, moved to its replacement when node2 went away.
    let cookie = "JSESSIONID=ABC123.node2";
    let admin = admin_of(&p);
    let res = c
        .put(format!("http://{admin}/api/pools/app/servers/node2/state"))
        .body(r#"{"state":"disabled"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let moved_to = server_with_cookie(&c, &url, cookie).await;
    assert_ne!(moved_to, "node2");
    // node2 comes back: the binding keeps the session where it now lives.
    let res = c
        .put(format!("http://{admin}/api/pools/app/servers/node2/state"))
        .body(r#"{"state":"active"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(server_with_cookie(&c, &url, cookie).await, moved_to);

    let _new = upgrade(&mut p).await;
    assert_eq!(
        server_with_cookie(&c, &url, cookie).await,
        moved_to,
        "the binding came along"
    );
}

#[tokio::test]
async fn a_new_binary_or_file_that_cannot_start_leaves_the_old_process_serving() {
    let n = nodes(1).await;
    let (dir, exe) = installed("upgrade-fail");
    let yaml = info(proc_config(&n, ""));
    let p = Proc::start_exe("upgrade-fail", &yaml, &exe, &[]).await;
    let real = dir.join("real-limpet");
    std::fs::copy(env!("CARGO_BIN_EXE_limpet"), &real).unwrap();

    // A binary that exits 1.
    let broken = dir.join("broken");
    write_mode(
        &broken,
        "#!/bin/sh\necho broken binary >&2\nexit 1\n",
        0o755,
    );
    replace(&exe, &broken);
    p.signal("USR2");
    assert!(
        eventually(Duration::from_secs(10), || async {
            p.log().contains("upgrade failed")
        })
        .await,
        "{}",
        p.log()
    );
    assert!(p.log().contains("ERROR"), "{}", p.log());
    assert_eq!(client().get(p.url("/")).send().await.unwrap().status(), 200);

    // A good binary, a broken lb.yaml.
    replace(&exe, &real);
    let good = std::fs::read_to_string(p.dir.join("lb.yaml")).unwrap();
    std::fs::write(p.dir.join("lb.yaml"), "listeners: [").unwrap();
    p.signal("USR2");
    assert!(
        eventually(Duration::from_secs(10), || async {
            p.log().matches("upgrade failed").count() == 2
        })
        .await,
        "{}",
        p.log()
    );
    assert_eq!(client().get(p.url("/")).send().await.unwrap().status(), 200);
    std::fs::write(p.dir.join("lb.yaml"), good).unwrap();

    // A slow new binary: a second SIGUSR2 meanwhile starts nothing more.
    replace(&exe, &slow_binary(&dir, &real));
    p.signal("USR2");
    tokio::time::sleep(Duration::from_millis(300)).await;
    p.signal("USR2");
    let _new = upgraded(&p).await;
    let log = p.log();
    assert!(
        log.contains("SIGUSR2 ignored: an upgrade is already under way"),
        "{log}"
    );
    assert_eq!(
        log.matches("upgrade: started the new process").count(),
        3,
        "{log}"
    );
}

#[tokio::test]
async fn under_systemd_the_new_process_reports_its_pid_and_readiness() {
    use std::os::unix::net::UnixDatagram;
    let n = nodes(1).await;
    let (dir, exe) = installed("upgrade-notify");
    let sock = dir.join("notify.sock");
    let systemd = UnixDatagram::bind(&sock).unwrap();
    systemd
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let path = sock.display().to_string();
    let mut p = Proc::start_exe(
        "upgrade-notify",
        &info(proc_config(&n, "")),
        &exe,
        &[("NOTIFY_SOCKET", &path)],
    )
    .await;
    let mut buf = [0u8; 256];
    let len = systemd.recv(&mut buf).unwrap();
    assert_eq!(&buf[..len], b"READY=1");
    p.signal("USR2");
    let new = upgraded(&p).await;
    let len = systemd.recv(&mut buf).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&buf[..len]),
        format!("MAINPID={}\nREADY=1", new.0)
    );
    assert_eq!(p.wait_exit(Duration::from_secs(15)).await, Some(0));
}

/// `yaml` logging at `info`, where the upgrade's steps are.
fn info(yaml: String) -> String {
    yaml.replace("level: warn", "level: info")
}

/// The admin address of a process started with [`learn_yaml`].
fn admin_of(p: &Proc) -> String {
    let yaml = std::fs::read_to_string(p.dir.join("lb.yaml")).unwrap();
    yaml.lines()
        .skip_while(|l| !l.starts_with("admin:"))
        .find_map(|l| l.trim().strip_prefix("bind: "))
        .unwrap()
        .trim_matches('"')
        .to_owned()
}

#[tokio::test]
async fn a_stranger_on_the_upgrade_socket_is_handed_nothing() {
    let n = nodes(1).await;
    let (dir, exe) = installed("upgrade-stranger");
    let p = Proc::start_exe("upgrade-stranger", &info(proc_config(&n, "")), &exe, &[]).await;
    // A new binary that takes its time: the socket waits meanwhile.
    let real = dir.join("real-limpet");
    std::fs::copy(env!("CARGO_BIN_EXE_limpet"), &real).unwrap();
    replace(&exe, &slow_binary(&dir, &real));
    p.signal("USR2");
    // The upgrade socket's name, as any local process can see it.
    let prefix = format!("@limpet-upgrade-{}-", p.child.id());
    let mut name = None;
    assert!(
        eventually(Duration::from_secs(5), || {
            name = std::fs::read_to_string("/proc/net/unix")
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.split_whitespace().nth(7))
                .find(|n| n.starts_with(&prefix))
                .map(str::to_owned);
            let found = name.is_some();
            async move { found }
        })
        .await
    );
    let stranger = {
        use std::os::linux::net::SocketAddrExt;
        let name = name.unwrap();
        let addr =
            std::os::unix::net::SocketAddr::from_abstract_name(&name.as_bytes()[1..]).unwrap();
        std::os::unix::net::UnixStream::connect_addr(&addr).unwrap()
    };
    stranger
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut got = Vec::new();
    let _ = std::io::Read::read_to_end(&mut &stranger, &mut got);
    assert!(got.is_empty(), "a stranger got {} bytes", got.len());
    // The real new process takes over all the same.
    let _new = upgraded(&p).await;
    assert!(
        p.log()
            .contains("a process other than the new limpet connected"),
        "{}",
        p.log()
    );
}

#[tokio::test]
async fn a_tls_session_resumes_on_the_new_process() {
    use crate::pki::{self, Ca};
    let n = nodes(1).await;
    let (dir, exe) = installed("upgrade-tls");
    let ca = Ca::new("limpet test CA");
    let (cert, key) = ca.leaf(&["localhost"]).write(&dir, "lb");
    let yaml = info(proc_config(&n, "")).replace(
        "    pool: app\n",
        &format!(
            "    pool: app\n    tls:\n      cert: \"{}\"\n      key: \"{}\"\n",
            cert.display(),
            key.display()
        ),
    );
    let mut p = Proc::start_exe("upgrade-tls", &yaml, &exe, &[]).await;
    // One client configuration: it keeps the tickets it is given.
    let client = ca.client(&[b"http/1.1"]);
    let get = |tls| async move {
        let mut h1 = pki::h1(tls).await;
        let res = h1
            .send_request(pki::get("/", Some("localhost")))
            .await
            .unwrap();
        pki::read(res).await.0
    };
    let tls = pki::connect(p.addr, client.clone(), "localhost")
        .await
        .unwrap();
    assert_eq!(
        tls.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Full)
    );
    assert_eq!(get(tls).await, 200);

    let _new = upgrade(&mut p).await;
    let tls = pki::connect(p.addr, client, "localhost").await.unwrap();
    assert_eq!(
        tls.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed),
        "the new process opened the old one's ticket"
    );
    assert_eq!(get(tls).await, 200);
}
