//! The pooled HTTP/1.1 client that talks to servers: keep-alive connections
//! reused across requests, a connect timeout, and an idle timeout kept below
//! Tomcat's default keep-alive (20 s) so limpet never reuses a connection the
//! server is closing.

use std::time::Duration;

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::body::ReqBody;

pub type HttpClient = Client<HttpConnector, ReqBody>;

/// Idle pooled connections to servers are closed after this long.
pub const POOL_IDLE: Duration = Duration::from_secs(15);

pub fn build(connect_timeout: Duration) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
    connector.enforce_http(true);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE)
        .build(connector)
}
