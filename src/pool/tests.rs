//! `Pool::decide`, rule by rule: one row per rule of the decision (hit,
//! drain, disabled, down, removed server, `on_server_down: error`, already
//! tried, backup), each naming the pool's state, the request's affinity
//! and what must be decided.

use std::path::Path;

use super::*;
use crate::decision::{Affinity, NoServer, Outcome};
use crate::server::Slots;
use crate::sticky::Found;

/// How a test server is, besides its name (`a`, `b`, `c`, …).
#[derive(Clone, Copy)]
struct S {
    state: ServerState,
    up: bool,
    backup: bool,
}

const ACTIVE: S = S {
    state: ServerState::Active,
    up: true,
    backup: false,
};
const DRAIN: S = S {
    state: ServerState::Drain,
    ..ACTIVE
};
const DISABLED: S = S {
    state: ServerState::Disabled,
    ..ACTIVE
};
const DOWN: S = S {
    up: false,
    ..ACTIVE
};
const BACKUP: S = S {
    backup: true,
    ..ACTIVE
};

const NAMES: [&str; 4] = ["a", "b", "c", "d"];

/// A cookie-mode pool of these servers.
fn pool(servers: &[S], on_down: &str) -> Pool {
    let list: String = servers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!(
                "      - {{ name: {}, address: \"127.0.0.1:{}\", backup: {} }}\n",
                NAMES[i],
                9000 + i,
                s.backup
            )
        })
        .collect();
    let yaml = format!(
        "listeners: [{{ name: l, bind: \"127.0.0.1:1\", pool: p }}]\npools:\n  p:\n    sticky:\n      mode: cookie\n      on_server_down: {on_down}\n    servers:\n{list}"
    );
    let config = crate::config::parse(&yaml, Path::new("t.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let pool = Pool::new(&config.pools[0], None, &Slots::default());
    for (i, s) in servers.iter().enumerate() {
        pool.servers[i].live.set_state(s.state);
        pool.servers[i].live.set_healthy(s.up);
    }
    pool
}

fn found(affinity: Affinity) -> Found {
    Found {
        affinity,
        key: Some(42),
        ..Found::default()
    }
}

/// What a decision must be.
#[derive(Debug)]
enum Want {
    /// This server, with this outcome.
    Server(&'static str, Outcome),
    /// Any of these servers, with this outcome.
    OneOf(&'static [&'static str], Outcome),
    No(NoServer),
}

struct Row {
    rule: &'static str,
    servers: &'static [S],
    on_down: &'static str,
    affinity: Affinity,
    tried: &'static [usize],
    want: Want,
}

fn rows() -> Vec<Row> {
    use Outcome::{Hit, New, Redispatch, UnknownRoute};
    vec![
        Row {
            rule: "an affine server that is up and active is kept",
            servers: &[ACTIVE, ACTIVE, ACTIVE],
            on_down: "redispatch",
            affinity: Affinity::Server(1),
            tried: &[],
            want: Want::Server("b", Hit),
        },
        Row {
            rule: "a draining server keeps the requests that carry affinity to it",
            servers: &[ACTIVE, DRAIN, ACTIVE],
            on_down: "redispatch",
            affinity: Affinity::Server(1),
            tried: &[],
            want: Want::Server("b", Hit),
        },
        Row {
            rule: "a draining server gets no new session",
            servers: &[DRAIN, ACTIVE],
            on_down: "redispatch",
            affinity: Affinity::None,
            tried: &[],
            want: Want::Server("b", New),
        },
        Row {
            rule: "a disabled affine server's session moves to a replacement",
            servers: &[ACTIVE, DISABLED, ACTIVE],
            on_down: "redispatch",
            affinity: Affinity::Server(1),
            tried: &[],
            want: Want::OneOf(&["a", "c"], Redispatch),
        },
        Row {
            rule: "a down affine server's session moves to a replacement",
            servers: &[ACTIVE, DOWN, ACTIVE],
            on_down: "redispatch",
            affinity: Affinity::Server(1),
            tried: &[],
            want: Want::OneOf(&["a", "c"], Redispatch),
        },
        Row {
            rule: "on_server_down: error keeps affinity to a down server (503)",
            servers: &[ACTIVE, DOWN],
            on_down: "error",
            affinity: Affinity::Server(1),
            tried: &[],
            want: Want::No(NoServer::AffineDown),
        },
        Row {
            rule: "on_server_down: error after the affine server failed this request (502)",
            servers: &[ACTIVE, ACTIVE],
            on_down: "error",
            affinity: Affinity::Server(1),
            tried: &[1],
            want: Want::No(NoServer::AffineFailed),
        },
        Row {
            rule: "an affine server already tried for this request is replaced",
            servers: &[ACTIVE, ACTIVE],
            on_down: "redispatch",
            affinity: Affinity::Server(1),
            tried: &[1],
            want: Want::Server("a", Redispatch),
        },
        Row {
            rule: "a removed server's session moves, even with on_server_down: error",
            servers: &[ACTIVE, ACTIVE],
            on_down: "error",
            affinity: Affinity::Removed,
            tried: &[],
            want: Want::OneOf(&["a", "b"], Redispatch),
        },
        Row {
            rule: "a route no server has is placed anew and counted as such",
            servers: &[ACTIVE],
            on_down: "redispatch",
            affinity: Affinity::UnknownRoute,
            tried: &[],
            want: Want::Server("a", UnknownRoute),
        },
        Row {
            rule: "every server tried: 502",
            servers: &[ACTIVE, ACTIVE],
            on_down: "redispatch",
            affinity: Affinity::None,
            tried: &[0, 1],
            want: Want::No(NoServer::AllFailed),
        },
        Row {
            rule: "nobody usable and nobody tried: 503",
            servers: &[DOWN, DISABLED],
            on_down: "redispatch",
            affinity: Affinity::None,
            tried: &[],
            want: Want::No(NoServer::NoneUsable),
        },
        Row {
            rule: "a backup gets no new session while a primary can take it",
            // (First in the list: round robin would start with it.)
            servers: &[BACKUP, ACTIVE],
            on_down: "redispatch",
            affinity: Affinity::None,
            tried: &[],
            want: Want::Server("b", New),
        },
        Row {
            rule: "a backup takes new sessions when every primary is down",
            servers: &[DOWN, DOWN, BACKUP],
            on_down: "redispatch",
            affinity: Affinity::None,
            tried: &[],
            want: Want::Server("c", New),
        },
        Row {
            rule: "a backup takes a down primary's session when no primary is left",
            servers: &[DOWN, BACKUP],
            on_down: "redispatch",
            affinity: Affinity::Server(0),
            tried: &[],
            want: Want::Server("b", Redispatch),
        },
        Row {
            rule: "a backup takes the retry when the only primary failed this request",
            servers: &[ACTIVE, BACKUP],
            on_down: "redispatch",
            affinity: Affinity::None,
            tried: &[0],
            want: Want::Server("b", New),
        },
        Row {
            rule: "a session on a backup stays there while it serves",
            servers: &[ACTIVE, BACKUP],
            on_down: "redispatch",
            affinity: Affinity::Server(1),
            tried: &[],
            want: Want::Server("b", Hit),
        },
        Row {
            rule: "a down primary's session prefers another primary to a backup",
            servers: &[DOWN, ACTIVE, BACKUP],
            on_down: "redispatch",
            affinity: Affinity::Server(0),
            tried: &[],
            want: Want::Server("b", Redispatch),
        },
    ]
}

#[test]
fn every_rule_of_the_decision() {
    for row in rows() {
        let p = pool(row.servers, row.on_down);
        let got = p.decide(&found(row.affinity), row.tried);
        let name = |d: &Decision| NAMES[d.server];
        match (&row.want, &got) {
            (Want::Server(s, o), Ok(d)) => {
                assert_eq!((name(d), d.outcome), (*s, *o), "{}", row.rule);
            }
            (Want::OneOf(set, o), Ok(d)) => {
                assert!(set.contains(&name(d)), "{}: got {}", row.rule, name(d));
                assert_eq!(d.outcome, *o, "{}", row.rule);
            }
            (Want::No(e), Err(got)) => assert_eq!(got, e, "{}", row.rule),
            (want, got) => panic!("{}: wanted {want:?}, got {got:?}", row.rule),
        }
    }
}

#[test]
fn a_replacement_is_the_same_for_every_request_of_a_session() {
    let p = pool(&[ACTIVE, DOWN, ACTIVE, ACTIVE], "redispatch");
    let first = p.decide(&found(Affinity::Server(1)), &[]).map(|d| d.server);
    for _ in 0..20 {
        assert_eq!(
            p.decide(&found(Affinity::Server(1)), &[]).map(|d| d.server),
            first
        );
    }
}
