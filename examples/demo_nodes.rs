//! N demo backends (Tomcat-like [`DemoNode`]s) and nothing else: the
//! backends of the side-by-side benchmark in `benches/compare/`, where
//! limpet, HAProxy and nginx are put in front of the same nodes.
//!
//! ```text
//! cargo run --release --example demo_nodes -- --nodes 3 --port-base 19000
//! ```
//!
//! Node `i` (1-based) has route `node<i>` and listens on
//! `127.0.0.1:<port-base + i>`. One line per node is printed
//! (`node1 127.0.0.1:19001`), then `ready`; the program runs until SIGINT or
//! SIGTERM.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use limpet_demo::DemoNode;
use tokio::signal::unix::{SignalKind, signal};

const USAGE: &str =
    "usage: demo_nodes [--nodes N] [--port-base PORT]   (nodes on 127.0.0.1:PORT+1..PORT+N)";

struct Args {
    nodes: u16,
    port_base: u16,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        nodes: 3,
        port_base: 19000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
            None => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<u16, String> {
            let v = inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value"))?;
            v.parse::<u16>()
                .map_err(|_| format!("{name}: `{v}` is not a number between 0 and 65535"))
        };
        match key.as_str() {
            "--nodes" | "-n" => args.nodes = value("--nodes")?,
            "--port-base" | "-p" => args.port_base = value("--port-base")?,
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if args.nodes == 0 {
        return Err("--nodes must be at least 1".to_owned());
    }
    if u32::from(args.port_base) + u32::from(args.nodes) > u32::from(u16::MAX) {
        return Err("--port-base + --nodes must stay below 65536".to_owned());
    }
    Ok(args)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("demo_nodes: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    let mut nodes = Vec::with_capacity(usize::from(args.nodes));
    for i in 1..=args.nodes {
        let route = format!("node{i}");
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port_base + i));
        match DemoNode::start_on(&route, addr).await {
            Ok(node) => {
                println!("{route} {}", node.addr());
                nodes.push(node);
            }
            Err(e) => {
                eprintln!("demo_nodes: cannot start {route} on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!("ready");

    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("demo_nodes: cannot install a SIGTERM handler: {e}");
            return ExitCode::FAILURE;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    for node in &nodes {
        node.stop().await;
    }
    ExitCode::SUCCESS
}
