//! The demo: three Tomcat-like nodes on 127.0.0.1:9001-9003 and limpet in
//! front of them with the repository's `lb.yaml`, ready to curl.
//!
//! ```text
//! cargo run --release --example demo
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use clap::Parser;
use limpet::Limpet;
use limpet_demo::DemoNode;

/// Three Tomcat-like demo nodes on 127.0.0.1:9001-9003 (control port 9000)
/// and limpet in front of them.
#[derive(Parser)]
#[command(name = "demo")]
struct Args {
    /// limpet's configuration.
    #[arg(default_value = "lb.yaml")]
    config: PathBuf,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let config = match limpet::config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("demo: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = limpet::logging::init(&config.log) {
        eprintln!("demo: cannot open the log file: {e}");
        std::process::exit(1);
    }

    let mut nodes = Vec::new();
    for (i, port) in [9001u16, 9002, 9003].into_iter().enumerate() {
        let addr = ([127, 0, 0, 1], port).into();
        match DemoNode::start_on(&format!("node{}", i + 1), addr).await {
            Ok(n) => nodes.push(n),
            Err(e) => {
                eprintln!("demo: cannot start demo node on {addr}: {e}");
                std::process::exit(1);
            }
        }
    }
    let nodes = std::sync::Arc::new(nodes);
    let control_addr = std::net::SocketAddr::from(([127, 0, 0, 1], 9000));
    match tokio::net::TcpListener::bind(control_addr).await {
        Ok(l) => {
            tokio::spawn(limpet_demo::control::serve_control(
                l,
                std::sync::Arc::clone(&nodes),
            ));
        }
        Err(e) => {
            eprintln!("demo: cannot open the control port {control_addr}: {e}");
            std::process::exit(1);
        }
    }
    let limpet = match Limpet::start(config).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("demo: {e}");
            std::process::exit(1);
        }
    };
    let lb = limpet.local_addrs()[0];
    println!(
        "\nlimpet is listening on http://{lb} in front of {} demo Tomcat nodes.\n\n\
         Try:\n\
         \x20 curl -si http://{lb}/                     # a new session: JSON naming the node, Set-Cookie JSESSIONID=<id>.<node>\n\
         \x20 rm -f /tmp/limpet-jar\n\
         \x20 for i in 1 2 3 4 5; do curl -s -c /tmp/limpet-jar -b /tmp/limpet-jar http://{lb}/cart; echo; done\n\
         \x20     # sticky (jvm_route): every request of the session on one node, its counter 1, 2, 3, 4, 5\n\
         \x20 curl -s 'http://{lb}/cart;jsessionid=ABC.node2'   # a URL-rewriting client: the route node2 is honoured\n\
         \x20 curl -s http://{lb}/static/logo.png       # the `static` pool (route by path prefix)\n\
         \x20 curl -s -X POST --data-binary @Cargo.toml http://{lb}/upload\n\
         \x20 curl -sN 'http://{lb}/stream?chunks=5&size=10'\n\
         \x20 curl -s -o /dev/null -w '%{{http_code}}\\n' 'http://{lb}/slow?ms=100'\n\
         \x20 curl -s http://127.0.0.1:9090/api/pools   # the admin API (the `admin` section of lb.yaml)\n\
         \x20 curl -s http://127.0.0.1:9090/metrics | grep limpet_requests_total\n\
         \x20 open http://127.0.0.1:9090/status in a browser: servers, health, traffic, failovers\n\
         \x20 curl -X PUT -d '{{\"state\":\"drain\"}}' http://127.0.0.1:9090/api/pools/app/servers/node1/state\n\
         \x20 curl -X POST http://127.0.0.1:9090/api/reload   # re-reads lb.yaml (like SIGHUP)\n\n\
         Failover: kill a node as if its JVM died, watch http://127.0.0.1:9090/status, bring it back:\n\
         \x20 curl -s -c /tmp/limpet-jar -b /tmp/limpet-jar http://{lb}/cart   # note your session's node\n\
         \x20 curl -X POST http://127.0.0.1:9000/nodes/node2/stop    # down within 2 s; its sessions move to one replacement\n\
         \x20 curl -s -c /tmp/limpet-jar -b /tmp/limpet-jar http://{lb}/cart   # no error: the session goes on elsewhere\n\
         \x20 curl -X POST http://127.0.0.1:9000/nodes/node2/start   # up again after 2 passing checks\n\n\
         Ctrl-C stops the demo.\n",
        nodes.len()
    );
    let _ = tokio::signal::ctrl_c().await;
    limpet.shutdown().await;
    for n in nodes.iter() {
        n.stop().await;
    }
}
