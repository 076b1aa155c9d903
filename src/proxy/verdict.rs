//! After one attempt at a server: whom to blame, and whether to try again.
//! The rules of `forward.rs` (its module documentation) as one pure
//! function over what happened, so each rule is a row of a table test and
//! the send loop only acts on the answer.

use super::error::ProxyError;
pub use crate::decision::Cause;

/// A kept-alive connection the server closed may give a request back this
/// many times before the server is counted as failing.
pub const STALE_TRIES: u32 = 4;

/// What became of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The connect failed. `exhausted`: for want of limpet's own
    /// descriptors, memory or ports, not the server's doing.
    ConnectFailed { exhausted: bool },
    /// The connection closed before the request was written: hyper gave
    /// the request back.
    ClosedBeforeWrite,
    /// The client's body failed (malformed, gone, too slow).
    ClientFault(ProxyError),
    /// The server closed while limpet waited for a slow client's body.
    ServerGaveUpOnClient,
    /// Closed or reset after the request was written. `incomplete`: before
    /// a byte of answer (a kept-alive connection timing out just then).
    FailedAfterWrite { incomplete: bool },
    /// No response head within `backend_response`.
    Timeout,
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Another attempt: with the request given back (it was never written)
    /// or with the copy kept for a replay.
    Retry,
    /// Answer the client with this.
    Fail(ProxyError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// The server to count against (its passive check, and it is not tried
    /// again for this request). `None`: nobody's fault, or the client's,
    /// or limpet's.
    pub blame: Option<Cause>,
    /// A stale kept-alive connection: try again without counting a try.
    pub stale: bool,
    pub next: Next,
}

/// The attempt's context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    /// The connection was a kept-alive one, reused.
    pub reused: bool,
    /// Stale connections met so far for this request.
    pub stale: u32,
    /// A copy of the request is kept for a replay (an idempotent request
    /// whose body can be sent again, with tries left).
    pub replayable: bool,
    /// Servers tried and blamed before this attempt, and the pool's `retries`.
    pub tried: usize,
    pub retries: u32,
}

/// The rules: see `forward.rs`.
pub fn classify(attempt: Attempt, cx: Context) -> Verdict {
    let fail = |e| Verdict {
        blame: None,
        stale: false,
        next: Next::Fail(e),
    };
    let stale_left = cx.reused && cx.stale < STALE_TRIES;
    // A blamed server is one more try; past the budget, the client gets 502.
    let blamed = |cause, can_retry: bool| {
        let within = cx.tried < cx.retries as usize;
        Verdict {
            blame: Some(cause),
            stale: false,
            next: if can_retry && within {
                Next::Retry
            } else {
                Next::Fail(ProxyError::Unreachable)
            },
        }
    };
    match attempt {
        Attempt::ConnectFailed { exhausted: true } => fail(ProxyError::Exhausted),
        Attempt::ConnectFailed { exhausted: false } => blamed(Cause::Connect, true),
        Attempt::ClosedBeforeWrite if stale_left => Verdict {
            blame: None,
            stale: true,
            next: Next::Retry,
        },
        Attempt::ClosedBeforeWrite => blamed(Cause::ClosedBeforeRequest, true),
        Attempt::ClientFault(e) => fail(e),
        Attempt::ServerGaveUpOnClient => fail(ProxyError::Unreachable),
        Attempt::FailedAfterWrite { incomplete: true } if stale_left => Verdict {
            blame: None,
            stale: true,
            next: if cx.replayable {
                Next::Retry
            } else {
                // It may have been acted on: not sent twice.
                Next::Fail(ProxyError::Unreachable)
            },
        },
        Attempt::FailedAfterWrite { .. } => blamed(Cause::FailedAfterRequest, cx.replayable),
        Attempt::Timeout => fail(ProxyError::Timeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRESH: Context = Context {
        reused: false,
        stale: 0,
        replayable: true,
        tried: 0,
        retries: 2,
    };
    const REUSED: Context = Context {
        reused: true,
        ..FRESH
    };

    fn v(blame: Option<Cause>, stale: bool, next: Next) -> Verdict {
        Verdict { blame, stale, next }
    }

    #[test]
    fn every_rule_of_forward_rs() {
        use Attempt as A;
        use Next::{Fail, Retry};
        let rows: &[(&str, Attempt, Context, Verdict)] = &[
            (
                "a refused connect blames the server and moves any request",
                A::ConnectFailed { exhausted: false },
                Context {
                    replayable: false,
                    ..FRESH
                },
                v(Some(Cause::Connect), false, Retry),
            ),
            (
                "limpet out of descriptors blames nobody: 503",
                A::ConnectFailed { exhausted: true },
                FRESH,
                v(None, false, Fail(ProxyError::Exhausted)),
            ),
            (
                "a stale kept-alive connection gives the request back, no blame",
                A::ClosedBeforeWrite,
                REUSED,
                v(None, true, Retry),
            ),
            (
                "too many stale connections: the server is blamed",
                A::ClosedBeforeWrite,
                Context {
                    stale: STALE_TRIES,
                    ..REUSED
                },
                v(Some(Cause::ClosedBeforeRequest), false, Retry),
            ),
            (
                "a fresh connection closed before the request: blamed, moved",
                A::ClosedBeforeWrite,
                Context {
                    replayable: false,
                    ..FRESH
                },
                v(Some(Cause::ClosedBeforeRequest), false, Retry),
            ),
            (
                "the client's broken body is the client's: no blame, its error",
                A::ClientFault(ProxyError::BodyTimeout),
                FRESH,
                v(None, false, Fail(ProxyError::BodyTimeout)),
            ),
            (
                "a server giving up on a slow client is not blamed",
                A::ServerGaveUpOnClient,
                FRESH,
                v(None, false, Fail(ProxyError::Unreachable)),
            ),
            (
                "a reused connection closed as the request went out: replayed, no blame",
                A::FailedAfterWrite { incomplete: true },
                REUSED,
                v(None, true, Retry),
            ),
            (
                "... but a request that cannot be replayed gets 502, still no blame",
                A::FailedAfterWrite { incomplete: true },
                Context {
                    replayable: false,
                    ..REUSED
                },
                v(None, true, Fail(ProxyError::Unreachable)),
            ),
            (
                "a reset after the request: blamed, replayed when it can be",
                A::FailedAfterWrite { incomplete: false },
                REUSED,
                v(Some(Cause::FailedAfterRequest), false, Retry),
            ),
            (
                "a reset after a POST: blamed, 502 (never sent twice)",
                A::FailedAfterWrite { incomplete: true },
                Context {
                    replayable: false,
                    ..FRESH
                },
                v(
                    Some(Cause::FailedAfterRequest),
                    false,
                    Fail(ProxyError::Unreachable),
                ),
            ),
            (
                "no tries left: blamed, 502",
                A::ConnectFailed { exhausted: false },
                Context { tried: 2, ..FRESH },
                v(Some(Cause::Connect), false, Fail(ProxyError::Unreachable)),
            ),
            (
                "retries: 0 moves nothing",
                A::ClosedBeforeWrite,
                Context {
                    retries: 0,
                    ..FRESH
                },
                v(
                    Some(Cause::ClosedBeforeRequest),
                    false,
                    Fail(ProxyError::Unreachable),
                ),
            ),
            (
                "slow is not dead: a timeout blames nobody",
                A::Timeout,
                FRESH,
                v(None, false, Fail(ProxyError::Timeout)),
            ),
        ];
        for (rule, attempt, cx, want) in rows {
            assert_eq!(classify(*attempt, *cx), *want, "{rule}");
        }
    }
}
