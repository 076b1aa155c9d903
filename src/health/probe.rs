//! One health probe: a TCP connect, or an HTTP/1.1 request on a fresh
//! connection whose status must be in `expect_status`, all within `timeout`.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;

use crate::config::{CheckKind, HealthCheckConfig, ServerTls};

/// Does the server at `addr` pass the check? With `tls`, the check
/// speaks HTTPS (and a TCP check completes the TLS handshake). `None`: no
/// verdict, because limpet itself is out of resources (descriptors,
/// memory, local ports) — never the server's fault.
pub async fn check(
    addr: SocketAddr,
    tls: Option<&ServerTls>,
    cfg: &HealthCheckConfig,
) -> Option<bool> {
    let verdict = match tokio::time::timeout(cfg.timeout, attempt(addr, tls, cfg)).await {
        Ok(Ok(ok)) => ok,
        Ok(Err(ProbeError::Connect(e)))
            if e.raw_os_error()
                .is_some_and(crate::resources::is_exhaustion) =>
        {
            if let Some(code) = e.raw_os_error() {
                crate::resources::exhausted("running a health check", code);
            }
            return None;
        }
        Ok(Err(e)) => {
            tracing::debug!(%addr, error = %e, "health check failed");
            false
        }
        Err(_) => {
            tracing::debug!(%addr, "health check timed out");
            false
        }
    };
    Some(verdict)
}

#[derive(Debug, thiserror::Error)]
enum ProbeError {
    #[error("connect: {0}")]
    Connect(#[from] std::io::Error),
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    #[error("request: {0}")]
    Request(#[from] http::Error),
}

async fn attempt(
    addr: SocketAddr,
    tls: Option<&ServerTls>,
    cfg: &HealthCheckConfig,
) -> Result<bool, ProbeError> {
    let stream = crate::connect::connect(addr, tls).await?;
    if cfg.kind == CheckKind::Tcp {
        return Ok(true);
    }
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(conn);
    let host = cfg.host.clone().unwrap_or_else(|| addr.to_string());
    let req = Request::builder()
        .method(cfg.method.clone())
        .uri(cfg.path.as_str())
        .header(header::HOST, host)
        .header(header::USER_AGENT, "limpet-health-check")
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())?;
    let res = sender.send_request(req).await;
    driver.abort();
    Ok(cfg.expects(res?.status().as_u16()))
}
