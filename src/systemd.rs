//! systemd's readiness protocol (`Type=notify`): one datagram to the socket
//! in `$NOTIFY_SOCKET` (`READY=1` once serving; after an in-place upgrade
//! the new process also sends `MAINPID=`, so systemd follows it; that needs
//! `NotifyAccess=all`). Without `$NOTIFY_SOCKET` it does nothing. A few
//! lines instead of a crate: the protocol is one `sendto`.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (`KEY=value` lines) to systemd, if it listens.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = UnixDatagram::unbound().and_then(|socket| {
        let bytes = path.as_encoded_bytes();
        match bytes.strip_prefix(b"@") {
            // An abstract socket: '@' stands for the leading NUL.
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                socket.send_to_addr(state.as_bytes(), &addr)
            }
            None => socket.send_to(state.as_bytes(), &path),
        }
    });
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot notify systemd ({state:?})");
    }
}
