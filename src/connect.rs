//! Connecting to a server: TCP, then a TLS handshake when the server is
//! spoken to over HTTPS (`tls:` on the server). The data path and the
//! health checks both connect here, so a check sees the server the way
//! requests do.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_util::either::Either;

use crate::config::ServerTls;

/// A connection to a server: plain (`Left`) or TLS (`Right`).
pub type ServerIo = Either<TcpStream, Box<TlsStream<TcpStream>>>;

/// Opens a connection to `addr`; with `tls`, completes the handshake and
/// verifies the server's certificate. No timeout: callers bound it.
pub async fn connect(addr: SocketAddr, tls: Option<&ServerTls>) -> io::Result<ServerIo> {
    let stream = TcpStream::connect(addr).await?;
    let _ = stream.set_nodelay(true);
    let Some(tls) = tls else {
        return Ok(Either::Left(stream));
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(&tls.client));
    let stream = connector
        .connect(tls.server_name.clone(), stream)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("TLS: {e}")))?;
    Ok(Either::Right(Box::new(stream)))
}
