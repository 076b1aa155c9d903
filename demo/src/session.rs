//! Sessions of the demo node, as Tomcat keeps them: the ids a request names
//! (`JSESSIONID` cookies, then `;jsessionid=` path parameters), the store
//! that finds, re-suffixes with this node's jvmRoute, creates or ends a
//! session, and the `Set-Cookie` headers that hand the id back.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};

use http::header::{self, HeaderMap, HeaderValue};

use super::{Shared, lock};

/// Session store keyed by the hex part of the id (the part before the first
/// `.`); each entry remembers the full id it currently has.
pub(super) type SessionMap = Arc<Sessions>;

/// The store in shards, each behind its own lock, so a benchmark creating
/// hundreds of thousands of sessions measures the balancer, not one lock
/// held while one big map doubles (a 1M-entry rehash took tens of ms).
pub(super) struct Sessions {
    shards: Box<[Mutex<HashMap<String, SessionEntry>>]>,
    hasher: RandomState,
}

const SHARDS: usize = 64;

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl Sessions {
    fn shard(&self, hex: &str) -> &Mutex<HashMap<String, SessionEntry>> {
        let i = self.hasher.hash_one(hex) as usize % self.shards.len();
        &self.shards[i]
    }

    pub(super) fn clear(&self) {
        for shard in &self.shards {
            lock(shard).clear();
        }
    }

    pub(super) fn len(&self) -> usize {
        self.shards.iter().map(|shard| lock(shard).len()).sum()
    }
}

pub(super) struct SessionEntry {
    id: String,
    counter: u64,
}

/// The session a request ended up in.
pub(super) struct Session {
    pub(super) id: String,
    pub(super) counter: u64,
    pub(super) new: bool,
    set_cookie: bool,
}

fn hex_part(id: &str) -> &str {
    id.split('.').next().unwrap_or(id)
}

fn random_hex() -> String {
    format!("{:016X}{:016X}", fastrand::u64(..), fastrand::u64(..))
}

/// The candidates in the order a store tries them: every exact id match
/// first, then every match on the hex part.
fn in_order(candidates: &[String]) -> impl Iterator<Item = (bool, &String)> {
    let exact = candidates.iter().map(|c| (true, c));
    exact.chain(candidates.iter().map(|c| (false, c)))
}

impl Shared {
    /// Find (re-suffixing if needed) or create the request's session and
    /// count the request in it.
    pub(super) fn touch_session(&self, candidates: &[String]) -> Session {
        let want = |hex: &str| format!("{hex}.{}", self.route);
        for (exact, requested) in in_order(candidates) {
            let hex = hex_part(requested);
            let mut map = lock(self.sessions.shard(hex));
            let Some(entry) = map.get_mut(hex) else {
                continue;
            };
            if exact && entry.id != *requested {
                continue;
            }
            let want = want(hex);
            entry.counter += 1;
            entry.id.clone_from(&want);
            return Session {
                set_cookie: *requested != want,
                id: want,
                counter: entry.counter,
                new: false,
            };
        }
        loop {
            let hex = random_hex();
            let mut map = lock(self.sessions.shard(&hex));
            if map.contains_key(&hex) {
                continue;
            }
            let id = want(&hex);
            map.insert(
                hex,
                SessionEntry {
                    id: id.clone(),
                    counter: 1,
                },
            );
            return Session {
                id,
                counter: 1,
                new: true,
                set_cookie: true,
            };
        }
    }

    /// Remove the request's session, if any (counting this request in it).
    pub(super) fn end_session(&self, candidates: &[String]) -> Option<Session> {
        for (exact, requested) in in_order(candidates) {
            let hex = hex_part(requested);
            let mut map = lock(self.sessions.shard(hex));
            if !map.get(hex).is_some_and(|e| !exact || e.id == *requested) {
                continue;
            }
            let entry = map.remove(hex)?;
            return Some(Session {
                id: format!("{hex}.{}", self.route),
                counter: entry.counter + 1,
                new: false,
                set_cookie: true,
            });
        }
        None
    }
}

/// Session ids a request names: every `JSESSIONID` cookie in order, then
/// every `;jsessionid=` path parameter.
pub(super) fn session_candidates(headers: &HeaderMap, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    for value in headers.get_all(header::COOKIE) {
        let value = String::from_utf8_lossy(value.as_bytes());
        for pair in value.split(';') {
            if let Some((name, id)) = pair.split_once('=')
                && name.trim() == "JSESSIONID"
            {
                let id = id.trim().trim_matches('"');
                if !id.is_empty() {
                    out.push(id.to_owned());
                }
            }
        }
    }
    const PARAM: &str = ";jsessionid=";
    let lower = path.to_ascii_lowercase();
    let mut from = 0;
    while let Some(pos) = lower.get(from..).and_then(|rest| rest.find(PARAM)) {
        let start = from + pos + PARAM.len();
        let rest = path.get(start..).unwrap_or("");
        let end = rest.find(['?', '/', ';']).unwrap_or(rest.len());
        let id = rest.get(..end).unwrap_or("");
        if !id.is_empty() {
            out.push(id.to_owned());
        }
        from = start + end;
    }
    out
}

pub(super) fn set_cookie(headers: &mut HeaderMap, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.append(header::SET_COOKIE, value);
    }
}

pub(super) fn session_cookie(headers: &mut HeaderMap, session: &Session) {
    if session.set_cookie {
        set_cookie(
            headers,
            &format!("JSESSIONID={}; Path=/; HttpOnly", session.id),
        );
    }
}

pub(super) fn expire_cookie(headers: &mut HeaderMap, id: &str) {
    set_cookie(
        headers,
        &format!("JSESSIONID={id}; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"),
    );
}
