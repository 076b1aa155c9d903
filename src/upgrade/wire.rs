//! The handoff on the wire, over a Unix stream socket: a fixed header that
//! carries the listening sockets as `SCM_RIGHTS` descriptors (HAProxy's
//! `-x` passes its sockets the same way), then the message as JSON. The
//! header names the message's format version, so a reader refuses a newer
//! one before it parses anything; a reader takes every older version (new
//! fields have defaults).
//!
//! ```text
//! "LIMPETUP" | version: u32 BE | length: u64 BE | (descriptors)   20 bytes
//! JSON message, `length` bytes
//! ```
//! The new process answers with one JSON line: `{"ready":true}` once it
//! serves, or `{"error":"…"}`.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use serde::{Deserialize, Serialize};

use crate::config::tickets::SavedKey;
use crate::memory::PoolMemory;

/// The format this limpet writes, and the newest it reads.
pub const VERSION: u32 = 1;

const MAGIC: &[u8; 8] = b"LIMPETUP";
const HEADER: usize = 20;

/// At most this many sockets change hands (listeners, a socket per worker
/// each, and the admin's): as many as one message carries (Linux's
/// `SCM_MAX_FD`).
pub const MAX_SOCKETS: usize = 253;

/// A message larger than this is refused (a learned table of millions of
/// sessions is a few hundred megabytes of JSON).
const MAX_LENGTH: u64 = 1 << 30;

/// What the old process hands over.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handoff {
    /// One per descriptor, in the order they were sent.
    #[serde(default)]
    pub sockets: Vec<Socket>,
    #[serde(default)]
    pub pools: Vec<PoolMemory>,
    /// TLS session ticket keys, newest first (config/tickets.rs).
    #[serde(default)]
    pub tickets: Vec<SavedKey>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Socket {
    /// The address in the configuration the socket was bound for.
    pub bind: SocketAddr,
    /// The admin endpoint's socket (else a listener's).
    #[serde(default)]
    pub admin: bool,
}

/// The new process's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    #[serde(default)]
    pub ready: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("the upgrade socket failed: {0}")]
    Io(#[from] io::Error),
    #[error("the upgrade socket did not start with a limpet handoff")]
    NotAHandoff,
    #[error(
        "the running limpet hands over state in format {found}, newer than this binary reads ({VERSION}); upgrade to a newer limpet, or restart"
    )]
    Newer { found: u32 },
    #[error("the handoff message is {0} bytes, more than limpet accepts")]
    TooLong(u64),
    #[error("the handoff message is not valid: {0}")]
    Garbled(serde_json::Error),
    #[error("{got} sockets arrived for {said} named in the handoff")]
    Sockets { got: usize, said: usize },
}

/// Sends `handoff` with `fds` (one per `handoff.sockets`, in order).
pub fn send<F: AsFd>(stream: &UnixStream, handoff: &Handoff, fds: &[F]) -> Result<(), WireError> {
    send_version(stream, VERSION, handoff, fds)
}

fn send_version<F: AsFd>(
    stream: &UnixStream,
    version: u32,
    handoff: &Handoff,
    fds: &[F],
) -> Result<(), WireError> {
    let body = serde_json::to_vec(handoff).map_err(WireError::Garbled)?;
    let mut header = [0u8; HEADER];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&version.to_be_bytes());
    header[12..].copy_from_slice(&(body.len() as u64).to_be_bytes());
    let borrowed: Vec<_> = fds.iter().map(AsFd::as_fd).collect();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_SOCKETS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !borrowed.is_empty() && !control.push(SendAncillaryMessage::ScmRights(&borrowed)) {
        return Err(WireError::Sockets {
            got: borrowed.len(),
            said: MAX_SOCKETS,
        });
    }
    let mut sent = 0;
    while sent == 0 {
        sent = rustix::net::sendmsg(
            stream,
            &[IoSlice::new(&header)],
            &mut control,
            SendFlags::empty(),
        )
        .map_err(io::Error::from)?;
    }
    // The descriptors went with the first byte; the rest is plain bytes.
    let mut w = stream;
    w.write_all(&header[sent..])?;
    w.write_all(&body)?;
    w.flush()?;
    Ok(())
}

/// Receives a handoff and its sockets.
pub fn receive(stream: &UnixStream) -> Result<(Handoff, Vec<OwnedFd>), WireError> {
    let mut header = [0u8; HEADER];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_SOCKETS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = rustix::net::recvmsg(
        stream,
        &mut [IoSliceMut::new(&mut header)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .map_err(io::Error::from)?
    .bytes;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = msg {
            fds.extend(received);
        }
    }
    if got == 0 {
        return Err(WireError::NotAHandoff);
    }
    let mut r = stream;
    r.read_exact(&mut header[got..])?;
    if &header[..8] != MAGIC {
        return Err(WireError::NotAHandoff);
    }
    let version = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
    if version > VERSION {
        return Err(WireError::Newer { found: version });
    }
    let mut length = [0u8; 8];
    length.copy_from_slice(&header[12..]);
    let length = u64::from_be_bytes(length);
    if length > MAX_LENGTH {
        return Err(WireError::TooLong(length));
    }
    let mut body = vec![0u8; usize::try_from(length).map_err(|_| WireError::TooLong(length))?];
    r.read_exact(&mut body)?;
    let handoff: Handoff = serde_json::from_slice(&body).map_err(WireError::Garbled)?;
    if handoff.sockets.len() != fds.len() {
        return Err(WireError::Sockets {
            got: fds.len(),
            said: handoff.sockets.len(),
        });
    }
    Ok((handoff, fds))
}

/// Writes the new process's answer.
pub fn answer(stream: &UnixStream, answer: &Answer) -> io::Result<()> {
    let mut line = serde_json::to_vec(answer).map_err(io::Error::other)?;
    line.push(b'\n');
    let mut w = stream;
    w.write_all(&line)?;
    w.flush()
}

/// Reads the new process's answer; `None` if it closed the socket first.
pub fn read_answer(stream: &UnixStream) -> io::Result<Option<Answer>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    let mut r = stream;
    loop {
        match r.read(&mut byte)? {
            0 => return Ok(None),
            _ if byte[0] == b'\n' => break,
            _ if line.len() > 64 * 1024 => return Err(io::Error::other("answer too long")),
            _ => line.push(byte[0]),
        }
    }
    serde_json::from_slice(&line)
        .map(Some)
        .map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handoff(n: usize) -> Handoff {
        Handoff {
            sockets: (0..n)
                .map(|i| Socket {
                    bind: SocketAddr::from(([127, 0, 0, 1], 8000 + u16::try_from(i).unwrap_or(0))),
                    admin: i == 0,
                })
                .collect(),
            pools: Vec::new(),
            tickets: Vec::new(),
        }
    }

    #[test]
    fn a_handoff_and_its_sockets_arrive_whole() {
        let (a, b) = UnixStream::pair().unwrap();
        let listeners: Vec<std::net::TcpListener> = (0..3)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let sent = handoff(3);
        send(&a, &sent, &listeners).unwrap();
        let (got, fds) = receive(&b).unwrap();
        assert_eq!(got, sent);
        // The descriptors are the same sockets.
        for (fd, l) in fds.into_iter().zip(&listeners) {
            let t = std::net::TcpListener::from(fd);
            assert_eq!(t.local_addr().unwrap(), l.local_addr().unwrap());
        }
        answer(
            &b,
            &Answer {
                ready: true,
                error: None,
            },
        )
        .unwrap();
        assert_eq!(
            read_answer(&a).unwrap(),
            Some(Answer {
                ready: true,
                error: None
            })
        );
        drop(b);
        assert_eq!(read_answer(&a).unwrap(), None);
    }

    #[test]
    fn a_newer_format_is_refused_and_an_older_one_read() {
        let (a, b) = UnixStream::pair().unwrap();
        send_version::<OwnedFd>(&a, VERSION + 1, &handoff(0), &[]).unwrap();
        assert!(matches!(
            receive(&b),
            Err(WireError::Newer { found }) if found == VERSION + 1
        ));
        // Version 1 with fields this version does not know and without the
        // ones it added later: read, the unknown ones ignored.
        let (a, b) = UnixStream::pair().unwrap();
        let body = br#"{"sockets":[],"future":{"x":1}}"#;
        let mut header = MAGIC.to_vec();
        header.extend_from_slice(&1u32.to_be_bytes());
        header.extend_from_slice(&(body.len() as u64).to_be_bytes());
        (&a).write_all(&header).unwrap();
        (&a).write_all(body).unwrap();
        let (got, fds) = receive(&b).unwrap();
        assert_eq!(got, Handoff::default());
        assert!(fds.is_empty());
    }

    #[test]
    fn garbage_is_no_handoff() {
        let (a, b) = UnixStream::pair().unwrap();
        (&a).write_all(b"GET / HTTP/1.1\r\n\r\n\r\n").unwrap();
        assert!(matches!(receive(&b), Err(WireError::NotAHandoff)));
        let (a, b) = UnixStream::pair().unwrap();
        drop(a);
        assert!(matches!(receive(&b), Err(WireError::NotAHandoff)));
    }
}
