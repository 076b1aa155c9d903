//! A raw HTTP/1.1 client for the demo node's tests: it writes a request by
//! hand, reads the whole answer (de-chunking the body) and exposes status,
//! headers and body, so tests see exactly what went over the wire.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub(super) const TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub(super) struct Raw {
    pub(super) status: u16,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
}

impl Raw {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub(super) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The JSESSIONID value from the first Set-Cookie, if any.
    pub(super) fn session_cookie(&self) -> Option<String> {
        self.all("set-cookie").iter().find_map(|c| {
            c.strip_prefix("JSESSIONID=")
                .and_then(|rest| rest.split(';').next())
                .map(str::to_owned)
        })
    }
}

pub(super) fn parse(buf: &[u8]) -> Raw {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no end of head");
    let head = std::str::from_utf8(&buf[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let mut rest = &buf[split + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        let mut body = Vec::new();
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap(), 16).unwrap();
            rest = &rest[eol + 2..];
            if size == 0 {
                break;
            }
            body.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
        body
    } else {
        rest.to_vec()
    };
    Raw {
        status,
        headers,
        body,
    }
}

/// Send a raw request (with `Connection: close`) and read the whole answer.
pub(super) async fn send(addr: SocketAddr, request: &str) -> io::Result<Raw> {
    tokio::time::timeout(TIMEOUT, async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf).await?;
        if buf.is_empty() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no answer"));
        }
        Ok(parse(&buf))
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "timeout"))?
}

pub(super) async fn get(addr: SocketAddr, path: &str, extra: &str) -> Raw {
    send(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: demo\r\n{extra}Connection: close\r\n\r\n"),
    )
    .await
    .unwrap()
}
