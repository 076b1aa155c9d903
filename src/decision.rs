//! The vocabulary of the sticky decision, shared by the sticky modes (which
//! read what ties a request to a server) and the pool (which decides).

/// What the sticky mode found in a request, before health is considered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Affinity {
    /// Nothing ties the request to a server.
    None,
    /// The request belongs to this server (index into the pool's servers).
    Server(usize),
    /// ip_hash: the request belongs to the server weighted rendezvous
    /// hashing ranks first for its key, among servers that are not disabled
    /// (a draining one only if it served this key recently).
    Home,
    /// The request names a route that no server of this pool has.
    UnknownRoute,
    /// The request belongs to a server a reload removed: its sessions move
    /// like a dead server's (deterministic replacement, route rewritten).
    Removed,
}

/// The sticky outcome of a decision, as logged and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Hit,
    New,
    Redispatch,
    UnknownRoute,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::New => "new",
            Outcome::Redispatch => "redispatch",
            Outcome::UnknownRoute => "unknown_route",
        }
    }
}

/// Which server takes a request, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub server: usize,
    pub outcome: Outcome,
    /// The server the request had affinity to, when it was redispatched.
    pub from: Option<usize>,
}

/// Why no server could be chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoServer {
    /// No server is usable and none was tried: 503.
    NoneUsable,
    /// Every usable server was tried and failed: 502.
    AllFailed,
    /// The affine server is down and the pool says `on_server_down:
    /// error`: 503, affinity kept.
    AffineDown,
    /// The affine server failed this request and the pool says
    /// `on_server_down: error`: 502 (it was tried).
    AffineFailed,
}

/// Why a server is blamed for a failed attempt (`proxy/verdict.rs`),
/// named when it marks the server down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The connection was refused, reset or timed out while connecting.
    Connect,
    /// It closed the connection before the request could be written.
    ClosedBeforeRequest,
    /// It closed or reset the connection, or answered garbage, after the
    /// request was written.
    FailedAfterRequest,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Connect => "cannot connect",
            Cause::ClosedBeforeRequest => "closed the connection before the request",
            Cause::FailedAfterRequest => "failed after the request was sent",
        }
    }
}
