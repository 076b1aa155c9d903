//! The real binary: SIGTERM lets in-flight requests finish and exits 0;
//! SIGHUP reloads a good file and keeps the running configuration on a bad one.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::*;

struct Proc {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Proc {
    /// Runs the binary with `yaml`, whose listener binds `{BIND}`.
    async fn start(name: &str, yaml: &str) -> Proc {
        let dir = std::env::temp_dir().join(format!("limpet-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // The binary binds by itself: take a free port and hand it over.
        let addr = closed_port();
        std::fs::write(
            dir.join("lb.yaml"),
            yaml.replace("{BIND}", &addr.to_string()),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_limpet"))
            .arg("--config")
            .arg(dir.join("lb.yaml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let p = Proc { child, addr, dir };
        assert!(
            eventually(Duration::from_secs(10), || async {
                tokio::net::TcpStream::connect(addr).await.is_ok()
            })
            .await,
            "limpet did not start listening"
        );
        p
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }

    fn rewrite(&self, yaml: &str) {
        std::fs::write(
            self.dir.join("lb.yaml"),
            yaml.replace("{BIND}", &self.addr.to_string()),
        )
        .unwrap();
    }

    async fn wait_exit(&mut self, deadline: Duration) -> Option<i32> {
        let mut code = None;
        eventually(deadline, || {
            let r = self.child.try_wait().unwrap();
            code = r.map(|s| s.code().unwrap_or(-1));
            async move { r.is_some() }
        })
        .await;
        code
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn yaml_for(nodes: &[&limpet::demo::DemoNode]) -> String {
    let servers: String = nodes
        .iter()
        .map(|n| {
            format!(
                "      - {{ name: {}, address: \"{}\" }}\n",
                n.route(),
                n.addr()
            )
        })
        .collect();
    format!(
        "listeners:\n  - name: http\n    bind: \"{{BIND}}\"\n    pool: app\ntimeouts:\n  shutdown_grace: 10s\nlog:\n  level: warn\npools:\n  app:\n    servers:\n{servers}"
    )
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_request_finish_and_exits_0() {
    let n = nodes(1).await;
    let mut p = Proc::start("term", &yaml_for(&[&n[0]])).await;
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
    let p = Proc::start("hup", &yaml_for(&[&n[0]])).await;
    let url = format!("http://{}/", p.addr);
    let (_, v) = get_json(&client(), &url).await;
    assert_eq!(server_of(&v), "node1");

    p.rewrite(&yaml_for(&[&n[1]]));
    p.signal("HUP");
    assert!(
        eventually(Duration::from_secs(5), || async {
            server_of(&get_json(&client(), &url).await.1) == "node2"
        })
        .await
    );

    p.rewrite("listeners: [ this is not valid");
    p.signal("HUP");
    for _ in 0..10 {
        let (status, v) = get_json(&client(), &url).await;
        assert_eq!(status, 200);
        assert_eq!(server_of(&v), "node2");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
