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

use clap::{CommandFactory, Parser};
use limpet_demo::DemoNode;
use tokio::signal::unix::{SignalKind, signal};

/// N demo backends (Tomcat-like nodes) on 127.0.0.1:PORT+1..PORT+N, routes
/// node1..nodeN.
#[derive(Parser)]
#[command(name = "demo_nodes")]
struct Args {
    /// How many nodes.
    #[arg(short, long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u16).range(1..))]
    nodes: u16,
    /// Node i listens on 127.0.0.1:PORT+i.
    #[arg(short, long, value_name = "PORT", default_value_t = 19000)]
    port_base: u16,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    if u32::from(args.port_base) + u32::from(args.nodes) > u32::from(u16::MAX) {
        Args::command()
            .error(
                clap::error::ErrorKind::ValueValidation,
                "--port-base + --nodes must stay below 65536",
            )
            .exit();
    }

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
