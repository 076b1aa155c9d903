//! In-place upgrade on `SIGUSR2`, as nginx re-executes itself and HAProxy
//! hands its sockets over with `-x`: the running process starts the binary
//! now at its own path (a package manager has renamed a new file over it)
//! with the same arguments and environment, and hands it every listening
//! socket, what it remembers ([`crate::memory`]) and its TLS session
//! ticket keys over a Unix socket ([`wire`]). The new process takes them
//! over before it accepts its first connection, then says it is serving;
//! only then does the old one stop
//! accepting, finish its requests within `shutdown_grace` and exit 0. Both
//! accept on the same sockets in between, so no connection is refused.
//!
//! If the new process fails (a broken binary, a bad `lb.yaml`, a handoff
//! format it cannot read), the old one logs why and keeps serving.
//!
//! ```text
//! old: SIGUSR2 → listen on @limpet-upgrade-<pid>-<n> → spawn exe (LIMPET_UPGRADE_SOCKET)
//! new:   load lb.yaml → connect → receive sockets + memory → start → {"ready":true}
//! old: stop accepting → drain → exit 0          new: READY=1, MAINPID= (systemd)
//! ```

pub mod wire;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::Limpet;
use crate::config::Config;
use crate::control::{ADMIN_SOCKET, Sockets};
use crate::memory::PoolMemory;
use wire::{Answer, Handoff, Socket, WireError};

/// The environment variable that tells a new process where the old one
/// waits with its sockets.
pub const ENV: &str = "LIMPET_UPGRADE_SOCKET";

/// How long the new process has to start serving.
const STARTUP: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("cannot open the upgrade socket: {0}")]
    Socket(std::io::Error),
    #[error("cannot start {path}: {source}")]
    Spawn {
        path: String,
        source: std::io::Error,
    },
    #[error("the new process exited ({0}) before taking over; its error is in the log above")]
    Exited(std::process::ExitStatus),
    #[error("the new process did not take over within {STARTUP:?}")]
    Timeout,
    #[error("the new process closed the upgrade socket without serving{}; its error is in the log above", .0.map(|s| format!(" ({s})")).unwrap_or_default())]
    Closed(Option<std::process::ExitStatus>),
    #[error("the new process refused: {0}")]
    Refused(String),
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("the upgrade task failed: {0}")]
    Task(String),
}

/// In the old process: starts `exe` and hands everything over. Returns the
/// new process's id once it serves; on error the new process is stopped
/// (if it still runs) and this one goes on as before.
pub async fn hand_over(limpet: &Limpet, exe: &Path) -> Result<u32, UpgradeError> {
    use std::os::linux::net::SocketAddrExt;
    let name = format!(
        "limpet-upgrade-{}-{}",
        std::process::id(),
        crate::clock::unix_ms()
    );
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
        .map_err(UpgradeError::Socket)?;
    let std_listener = std::os::unix::net::UnixListener::bind_addr(&addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(UpgradeError::Socket)?;
    let listener =
        tokio::net::UnixListener::from_std(std_listener).map_err(UpgradeError::Socket)?;
    let mut child = tokio::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(ENV, &name)
        .stdin(std::process::Stdio::null())
        .spawn()
        .map_err(|source| UpgradeError::Spawn {
            path: exe.display().to_string(),
            source,
        })?;
    let pid = child.id().unwrap_or(0);
    tracing::info!(pid, binary = %exe.display(), "upgrade: started the new process");
    let result = talk(limpet, &listener, &mut child).await;
    if result.is_err() {
        // Whatever state it is in, it must not serve beside this one.
        let _ = child.start_kill();
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
    }
    result.map(|()| pid)
}

/// Waits for the new process, hands over, and reads its answer.
async fn talk(
    limpet: &Limpet,
    listener: &tokio::net::UnixListener,
    child: &mut tokio::process::Child,
) -> Result<(), UpgradeError> {
    // The socket has a name any local process could connect to: only the
    // process just started is handed anything (SO_PEERCRED says who it is).
    let expected = child.id();
    let deadline = tokio::time::Instant::now() + STARTUP;
    let stream = loop {
        let stream = tokio::select! {
            r = listener.accept() => r.map_err(UpgradeError::Socket)?.0,
            status = child.wait() => {
                return Err(status.map_or_else(|e| UpgradeError::Task(e.to_string()), UpgradeError::Exited));
            }
            () = tokio::time::sleep_until(deadline) => return Err(UpgradeError::Timeout),
        };
        let peer = rustix::net::sockopt::socket_peercred(&stream).ok();
        match peer.map(|c| u32::try_from(c.pid.as_raw_nonzero().get()).unwrap_or(0)) {
            Some(pid) if Some(pid) == expected => break stream,
            other => {
                tracing::warn!(peer_pid = ?other, "upgrade: a process other than the new limpet connected to the upgrade socket; ignored")
            }
        }
    };
    let stream = stream
        .into_std()
        .and_then(|s| s.set_nonblocking(false).map(|()| s))
        .and_then(|s| s.set_read_timeout(Some(STARTUP)).map(|()| s))
        .map_err(UpgradeError::Socket)?;
    // What it takes over is read now, as late as possible.
    let sockets = limpet.sockets().await.map_err(UpgradeError::Socket)?;
    let handoff = Handoff {
        sockets: sockets
            .iter()
            .map(|(bind, admin, _)| Socket {
                bind: *bind,
                admin: *admin,
            })
            .collect(),
        pools: limpet.snapshot().memory(),
        tickets: crate::config::tickets::shared().map_or_else(Vec::new, |t| t.export()),
    };
    let fds: Vec<std::net::TcpListener> = sockets.into_iter().map(|(_, _, l)| l).collect();
    let answered = tokio::task::spawn_blocking(move || -> Result<Option<Answer>, UpgradeError> {
        wire::send(&stream, &handoff, &fds)?;
        wire::read_answer(&stream).map_err(|e| UpgradeError::Wire(e.into()))
    })
    .await
    .map_err(|e| UpgradeError::Task(e.to_string()))?;
    match answered {
        Ok(Some(Answer { ready: true, .. })) => Ok(()),
        Ok(Some(Answer { error, .. })) => Err(UpgradeError::Refused(
            error.unwrap_or_else(|| "no reason given".to_owned()),
        )),
        Ok(None) => Err(UpgradeError::Closed(child.try_wait().ok().flatten())),
        Err(e) => Err(e),
    }
}

/// In the new process: what the old one handed over.
#[derive(Debug)]
pub struct Inherited {
    stream: UnixStream,
    /// The sockets the configuration still listens on, by listener name
    /// ([`ADMIN_SOCKET`] for the admin endpoint): every socket of a
    /// listener's group, as [`Limpet::start_upgraded`] takes them.
    pub bound: Sockets,
    pub memory: Vec<PoolMemory>,
}

/// In the new process: connects to the old one (`name` from [`ENV`]) and
/// takes its sockets and memory. A socket is used again by the listener
/// whose `bind` it was bound for (all of a listener's group: whatever the
/// number of workers, every socket is accepted on); one the configuration
/// no longer has is closed here, and the old process serves what is queued
/// in it before it closes its own copy (`listener/sockets.rs`).
pub fn take_over(name: &OsStr, config: &Config) -> Result<Inherited, UpgradeError> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_encoded_bytes())
        .map_err(UpgradeError::Socket)?;
    let stream = UnixStream::connect_addr(&addr).map_err(UpgradeError::Socket)?;
    let (handoff, fds) = match wire::receive(&stream) {
        Ok(got) => got,
        Err(e) => {
            let _ = wire::answer(
                &stream,
                &Answer {
                    ready: false,
                    error: Some(e.to_string()),
                },
            );
            return Err(e.into());
        }
    };
    if let Some(tickets) = crate::config::tickets::shared() {
        tickets.import(&handoff.tickets);
    }
    let mut bound: Sockets = HashMap::new();
    for (socket, fd) in handoff.sockets.iter().zip(fds) {
        let listener = std::net::TcpListener::from(fd);
        let name = if socket.admin {
            config
                .admin
                .as_ref()
                .filter(|a| a.bind == socket.bind)
                .map(|_| ADMIN_SOCKET.to_owned())
        } else {
            config
                .listeners
                .iter()
                .find(|l| l.bind == socket.bind)
                .map(|l| l.name.clone())
        };
        if let Some(name) = name {
            bound.entry(name).or_default().push(listener);
        }
    }
    Ok(Inherited {
        stream,
        bound,
        memory: handoff.pools,
    })
}

impl Inherited {
    /// Tells the old process that this one serves (it then drains and
    /// exits), and systemd that this is the main process now.
    pub fn ready(self) {
        if let Err(e) = wire::answer(
            &self.stream,
            &Answer {
                ready: true,
                error: None,
            },
        ) {
            tracing::warn!(error = %e, "cannot tell the old process that this one serves");
        }
        crate::systemd::notify(&format!("MAINPID={}\nREADY=1", std::process::id()));
    }

    /// Tells the old process why this one cannot serve (it keeps serving).
    pub fn failed(self, why: &str) {
        let _ = wire::answer(
            &self.stream,
            &Answer {
                ready: false,
                error: Some(why.to_owned()),
            },
        );
    }
}
