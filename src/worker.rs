//! Workers: `workers` threads, each running its own single-threaded event
//! loop (nginx's worker processes, HAProxy's threads). Every listener has
//! a socket per worker, bound with SO_REUSEPORT (nginx's `reuseport`,
//! HAProxy's default per thread): the kernel spreads new connections over
//! them and wakes only the worker whose socket got one. A worker serves
//! that connection's requests on its own thread, with its own connections
//! to servers and its own counter shards. Shared across workers: only the
//! immutable snapshot, server health and states, and the learned tables.

use std::rc::Rc;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

use crate::listener;
use crate::proxy::Local;
use crate::runtime::Shared;

enum Cmd {
    /// Accept on `socket` (a copy of one of the listener's sockets) until
    /// `stop`; `done` is held until its connections are closed.
    Listen {
        id: u64,
        socket: std::net::TcpListener,
        permits: Arc<Semaphore>,
        stop: CancellationToken,
        done: TaskTrackerToken,
    },
}

struct Worker {
    cmds: mpsc::UnboundedSender<Cmd>,
    thread: std::thread::JoinHandle<()>,
}

/// The running workers.
pub struct Workers {
    workers: Vec<Worker>,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("count", &self.workers.len())
            .finish()
    }
}

/// How many workers `workers: auto` means: one per CPU.
pub fn auto() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Workers {
    /// Starts `n` worker threads.
    pub fn start(n: usize, shared: &Arc<Shared>) -> std::io::Result<Workers> {
        let mut workers = Vec::with_capacity(n);
        for id in 0..n.max(1) {
            let (cmds, rx) = mpsc::unbounded_channel();
            let shared = Arc::clone(shared);
            let thread = std::thread::Builder::new()
                .name(format!("limpet-worker-{id}"))
                .spawn(move || run(id, shared, rx))?;
            workers.push(Worker { cmds, thread });
        }
        Ok(Workers { workers })
    }

    pub fn len(&self) -> usize {
        self.workers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// Makes the workers accept on a listener's `sockets` until `stop` is
    /// cancelled: worker `i` on socket `i`, and every socket and every
    /// worker taken: a worker with no socket of its own shares one (the
    /// kernel refused a group), a socket beyond the workers goes to one
    /// that has a socket already (a process before this one had more
    /// workers, and a socket nobody accepts on would hold its connections
    /// forever). `done` tracks each accept loop until its connections are
    /// closed (counted from now, before the worker has even begun).
    pub fn listen(
        &self,
        id: u64,
        sockets: &[std::net::TcpListener],
        permits: &Arc<Semaphore>,
        stop: &CancellationToken,
        done: &TaskTracker,
    ) -> std::io::Result<()> {
        if sockets.is_empty() || self.workers.is_empty() {
            return Ok(());
        }
        for i in 0..sockets.len().max(self.workers.len()) {
            let w = &self.workers[i % self.workers.len()];
            let copy = sockets[i % sockets.len()].try_clone()?;
            copy.set_nonblocking(true)?;
            let _ = w.cmds.send(Cmd::Listen {
                id,
                socket: copy,
                permits: Arc::clone(permits),
                stop: stop.clone(),
                done: done.token(),
            });
        }
        Ok(())
    }

    /// Stops the workers (after their listeners have stopped) and waits for
    /// their threads.
    pub fn join(self) {
        for w in self.workers {
            drop(w.cmds);
            let _ = w.thread.join();
        }
    }
}

fn run(id: usize, shared: Arc<Shared>, mut cmds: mpsc::UnboundedReceiver<Cmd>) {
    crate::metrics::pin_shard(id);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(worker = id, error = %e, "cannot start a worker's event loop");
            return;
        }
    };
    let tasks = tokio::task::LocalSet::new();
    tasks.block_on(&rt, async move {
        let local = Rc::new(Local::new(id, shared));
        while let Some(cmd) = cmds.recv().await {
            match cmd {
                Cmd::Listen {
                    id: socket_id,
                    socket,
                    permits,
                    stop,
                    done,
                } => {
                    let listener = match tokio::net::TcpListener::from_std(socket) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(worker = id, error = %e, "cannot accept on a listener");
                            drop(done);
                            continue;
                        }
                    };
                    let serve = listener::serve(listener::Acceptor {
                        listener,
                        id: socket_id,
                        local: Rc::clone(&local),
                        permits,
                        stop,
                    });
                    tokio::task::spawn_local(async move {
                        serve.await;
                        drop(done);
                    });
                }
            }
        }
    });
}
