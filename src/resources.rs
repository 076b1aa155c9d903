//! limpet's own operating-system resources. At start the descriptor limit is
//! raised to the hard limit (as HAProxy does) and a warning names the gap
//! when it is below what `max_connections` needs. Running out of descriptors,
//! memory or local ports is limpet's problem, never a server's: it is logged
//! here, at most once a second with a count of what was suppressed.

use std::sync::atomic::{AtomicU64, Ordering};

use rustix::io::Errno;

use crate::clock;

/// Descriptors one proxied connection can hold: the client's and a server's.
const PER_CONNECTION: u64 = 2;
/// Listeners, health checks, state files, the runtime's own.
const SPARE: u64 = 64;

/// What starting limpet did to the descriptor limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoFile {
    pub soft: u64,
    pub hard: u64,
    /// Descriptors `max_connections` needs.
    pub needed: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and warns when that is
/// still below `max_connections` × 2 plus a spare.
pub fn raise_nofile(max_connections: usize) -> NoFile {
    let needed = (max_connections as u64)
        .saturating_mul(PER_CONNECTION)
        .saturating_add(SPARE);
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let (Some(soft), hard) = (limit.current, limit.maximum) else {
        return NoFile {
            soft: u64::MAX,
            hard: u64::MAX,
            needed,
        };
    };
    let hard_n = hard.unwrap_or(u64::MAX);
    let mut now = soft;
    if soft < hard_n {
        let raised = rustix::process::Rlimit {
            current: hard,
            maximum: hard,
        };
        match rustix::process::setrlimit(rustix::process::Resource::Nofile, raised) {
            Ok(()) => now = hard_n,
            Err(e) => {
                tracing::warn!(soft, hard = hard_n, error = %e, "cannot raise the file descriptor limit")
            }
        }
    }
    if now < needed {
        tracing::warn!(
            limit = now,
            needed,
            max_connections,
            "the file descriptor limit is below what limits.max_connections needs (2 per connection plus {SPARE}); raise it (LimitNOFILE= in systemd, ulimit -n) or lower max_connections"
        );
    }
    NoFile {
        soft: now,
        hard: hard_n,
        needed,
    }
}

/// Is `errno` a shortage of limpet's own (not a server's failure)?
pub fn is_exhaustion(errno: i32) -> bool {
    [
        Errno::MFILE,
        Errno::NFILE,
        Errno::NOBUFS,
        Errno::NOMEM,
        Errno::ADDRNOTAVAIL,
    ]
    .iter()
    .any(|e| e.raw_os_error() == errno)
}

static LAST_LOG_MS: AtomicU64 = AtomicU64::new(0);
static SUPPRESSED: AtomicU64 = AtomicU64::new(0);

/// Logs a shortage, at most once a second.
pub fn exhausted(doing: &str, errno: i32) {
    let now = clock::ms();
    let last = LAST_LOG_MS.load(Ordering::Relaxed);
    if last != 0 && now.saturating_sub(last) < 1000
        || LAST_LOG_MS
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        SUPPRESSED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let suppressed = SUPPRESSED.swap(0, Ordering::Relaxed);
    tracing::error!(
        error = %std::io::Error::from_raw_os_error(errno),
        suppressed,
        "limpet is out of resources while {doing}; requests get 503 and servers are not blamed"
    );
}
