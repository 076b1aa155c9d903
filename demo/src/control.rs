//! The demo's control port: stop a node as if its JVM died, and start it
//! again, so a newcomer watches limpet's health checks take it out, its
//! sessions move to their replacement, and the node come back, on
//! `/status`.
//!
//! ```text
//! curl -X POST http://127.0.0.1:9000/nodes/node2/stop
//! curl -X POST http://127.0.0.1:9000/nodes/node2/start
//! curl http://127.0.0.1:9000/nodes
//! ```

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::DemoNode;

/// Serves the control port on `listener` until the task is dropped.
pub async fn serve_control(listener: TcpListener, nodes: Arc<Vec<DemoNode>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let nodes = Arc::clone(&nodes);
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let nodes = Arc::clone(&nodes);
                async move { Ok::<_, Infallible>(answer(&nodes, &req).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn answer(nodes: &[DemoNode], req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let parts: Vec<&str> = req.uri().path().trim_matches('/').split('/').collect();
    let text = |status: StatusCode, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body + "\n")));
        *r.status_mut() = status;
        r
    };
    match (req.method(), parts.as_slice()) {
        (&Method::GET, ["nodes"]) => text(
            StatusCode::OK,
            nodes
                .iter()
                .map(|n| {
                    let state = if n.is_running() { "running" } else { "stopped" };
                    format!("{} {} {state}", n.route(), n.addr())
                })
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        (&Method::POST, ["nodes", name, action @ ("stop" | "start")]) => {
            let Some(node) = nodes.iter().find(|n| n.route() == *name) else {
                return text(StatusCode::NOT_FOUND, format!("no node {name}"));
            };
            if *action == "stop" {
                node.stop().await;
                return text(
                    StatusCode::OK,
                    format!("{name} stopped (connections refused, like a killed JVM)"),
                );
            }
            match node.restart().await {
                Ok(()) => text(StatusCode::OK, format!("{name} started")),
                Err(e) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("{name} cannot start: {e}"),
                ),
            }
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "GET /nodes, POST /nodes/<name>/stop, POST /nodes/<name>/start".to_owned(),
        ),
    }
}
